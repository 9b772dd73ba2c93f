"""SDEBlock against a hand-written torchsde SDE class on the same problem.

The hand-written baseline is what a user would write: a Module with ``f`` and ``g`` (diagonal
additive noise) passed to ``torchsde.sdeint`` with the same Brownian motion, Euler-Maruyama,
fixed dt = 0.05 on [0, 1], batch 256, forward + backward. Interleaved repeats, ratio of medians
(target <= 1.05). Drift evaluations are counted on both sides.

    python benchmarks/sde_overhead.py [--repeats 40]
"""

from __future__ import annotations

import argparse

import torch
import torchsde
from _common import CountingMLP, counted, interleaved_medians, size_arguments

import nde_plugins as nde


class HandWrittenSDE(torch.nn.Module):
    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, drift: CountingMLP, sigma: float) -> None:
        super().__init__()
        self.drift, self.sigma = drift, sigma

    def f(self, t, y):
        return self.drift(t, y)

    def g(self, t, y):
        return torch.full_like(y, self.sigma)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size_arguments(parser)
    parser.add_argument("--dt", type=float, default=0.05)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    drift = CountingMLP(args.dim, args.width)
    x = torch.randn(args.batch, args.dim)
    ts = torch.tensor([0.0, 1.0])
    hand = HandWrittenSDE(drift, 0.1)
    with_stats = nde.SDEBlock(drift, "additive", {"sigma": 0.1}, dt=args.dt, seed=0)
    without_stats = nde.SDEBlock(drift, "additive", {"sigma": 0.1}, dt=args.dt, seed=0, record_stats=False)
    nfe: dict[str, int] = {}

    def baseline():
        bm = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=x.shape, entropy=0)
        torchsde.sdeint(hand, x, ts, bm=bm, method="euler", dt=args.dt)[-1].square().mean().backward()

    base, on, off = interleaved_medians([
        counted(drift, baseline, nfe, "baseline"),
        counted(drift, lambda: with_stats(x).square().mean().backward(), nfe, "stats"),
        counted(drift, lambda: without_stats(x).square().mean().backward(), nfe, "no stats"),
    ], args.repeats)
    print(f"torch {torch.__version__}, torchsde {torchsde.__version__}, Euler-Maruyama dt={args.dt:g} on [0, 1], "
          f"batch {args.batch}, drift {args.dim}-{args.width}-{args.dim}, additive noise, {args.repeats} "
          "interleaved repeats, forward+backward")
    print(f"{'variant':34s} {'median ms':>10s} {'ratio':>7s} {'drift NFE':>10s}")
    print(f"{'hand-written torchsde SDE':34s} {base * 1e3:10.2f} {1:7.3f} {nfe['baseline']:10d}")
    print(f"{'SDEBlock, statistics on':34s} {on * 1e3:10.2f} {on / base:7.3f} {nfe['stats']:10d}")
    print(f"{'SDEBlock, record_stats=False':34s} {off * 1e3:10.2f} {off / base:7.3f} {nfe['no stats']:10d}")


if __name__ == "__main__":
    main()
