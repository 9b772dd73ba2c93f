"""Cost of observing a solve: ODEBlock with statistics vs plain torchdiffeq.odeint.

Same MLP field, same tolerances, dopri5, forward + backward, interleaved repeats; ratio of medians
against plain ``torchdiffeq.odeint`` on the bare field. Targets: <= 1.10 with statistics,
<= 1.02 with statistics off. Equal NFE is checked.

    python benchmarks/observation_overhead.py [--repeats 40]
"""

from __future__ import annotations

import argparse

import torch
import torchdiffeq
from _common import CountingMLP, counted, interleaved_medians, size_arguments

import nde_plugins as nde


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size_arguments(parser)
    parser.add_argument("--tol", type=float, default=1e-6)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    field = CountingMLP(args.dim, args.width)
    x = torch.randn(args.batch, args.dim)
    t = torch.tensor([0.0, 1.0])
    with_stats = nde.ODEBlock(field, method="dopri5", rtol=args.tol, atol=args.tol)
    without_stats = nde.ODEBlock(field, method="dopri5", rtol=args.tol, atol=args.tol, record_stats=False)
    nfe = {}

    def plain():
        torchdiffeq.odeint(field, x, t, method="dopri5", rtol=args.tol, atol=args.tol)[-1].square().mean().backward()

    runs = [
        counted(field, plain, nfe, "plain"),
        counted(field, lambda: with_stats(x).square().mean().backward(), nfe, "stats"),
        counted(field, lambda: without_stats(x).square().mean().backward(), nfe, "no stats"),
    ]
    plain_t, stats_t, nostats_t = interleaved_medians(runs, args.repeats)
    print(f"torch {torch.__version__}, torchdiffeq {torchdiffeq.__version__}, dopri5 rtol=atol={args.tol:g}, "
          f"batch {args.batch}, field {args.dim}-{args.width}-{args.dim}, {args.repeats} interleaved repeats, "
          "forward+backward")
    print(f"{'variant':34s} {'median ms':>10s} {'ratio':>7s} {'NFE':>5s} {'target':>7s}")
    print(f"{'torchdiffeq.odeint':34s} {plain_t * 1e3:10.2f} {1:7.3f} {nfe['plain']:5d}")
    print(f"{'ODEBlock, statistics on':34s} {stats_t * 1e3:10.2f} {stats_t / plain_t:7.3f} {nfe['stats']:5d} "
          f"{'<= 1.10':>7s}")
    print(f"{'ODEBlock, record_stats=False':34s} {nostats_t * 1e3:10.2f} {nostats_t / plain_t:7.3f} "
          f"{nfe['no stats']:5d} {'<= 1.02':>7s}")


if __name__ == "__main__":
    main()
