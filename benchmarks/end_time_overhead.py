"""Cost of a random end time: ODEBlock with ``end_time="steer"`` against the same solve to a fixed end.

Every round draws the next end time T of the STEER block first (from a copy of its generator), and
the baseline block solves to exactly that T, so both take the same steps and the ratio is the cost
of the draw and the policy alone (target <= 1.02). The baseline appears twice (an A/A pair: the
noise floor). ``per_sample=True`` (one end time per sample, one batched time-rescaled solve) is
compared with a plain solve to t1 = 1; its NFE differ, so that ratio includes the solver's work.
Forward + backward, dopri5, MLP field, one thread, process CPU time, variants in a fresh random
order every round.

    python benchmarks/end_time_overhead.py [--repeats 40] [--batch 256]
"""

from __future__ import annotations

import argparse

import torch
import torchdiffeq
from _common import CountingMLP, counted, shuffled_medians, size_arguments

import nde_plugins as nde


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size_arguments(parser)
    parser.add_argument("--tol", type=float, default=1e-6)
    parser.add_argument("--b", type=float, default=0.5)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    field = CountingMLP(args.dim, args.width)
    x = torch.randn(args.batch, args.dim)
    common = dict(method="dopri5", rtol=args.tol, atol=args.tol)
    steer = nde.ODEBlock(field, end_time="steer", end_time_options={"b": args.b}, seed=0, **common)
    per_sample = nde.ODEBlock(field, end_time="steer", end_time_options={"b": args.b, "per_sample": True}, seed=1,
                              **common)
    fixed_a, fixed_b, fixed_t1 = (nde.ODEBlock(field, **common) for _ in range(3))
    generator = steer.policy.generator

    def fix_the_round_end_time() -> None:
        state = generator.get_state()
        end = float(steer.policy.sampler(steer.t, generator)[-1])
        generator.set_state(state)  # the STEER block draws this same T in the round
        for block in (fixed_a, fixed_b):
            block.t = torch.tensor([0.0, end])

    nfe: dict[str, int] = {}

    def step(block):
        return lambda: block(x).square().mean().backward()

    runs = {
        "fixed end T": counted(field, step(fixed_a), nfe, "fixed end T"),
        "fixed end T (A/A)": counted(field, step(fixed_b), nfe, "fixed end T (A/A)"),
        "steer (shared T)": counted(field, step(steer), nfe, "steer (shared T)"),
        "fixed end t1": counted(field, step(fixed_t1), nfe, "fixed end t1"),
        "steer per_sample": counted(field, step(per_sample), nfe, "steer per_sample"),
    }
    medians = shuffled_medians(runs, args.repeats, before_round=fix_the_round_end_time)
    print(f"torch {torch.__version__}, torchdiffeq {torchdiffeq.__version__}, dopri5 rtol=atol={args.tol:g}, "
          f"batch {args.batch}, field {args.dim}-{args.width}-{args.dim}, b={args.b:g}, {args.repeats} rounds in "
          "random order, process CPU time, forward+backward")
    print(f"{'variant':22s} {'median ms':>10s} {'ratio':>7s} {'against':>14s} {'NFE (last)':>11s} {'target':>7s}")
    rows = [
        ("fixed end T", "fixed end T", ""),
        ("fixed end T (A/A)", "fixed end T", ""),
        ("steer (shared T)", "fixed end T", "<= 1.02"),
        ("fixed end t1", "fixed end t1", ""),
        ("steer per_sample", "fixed end t1", ""),
    ]
    for name, against, target in rows:
        ratio = medians[name] / medians[against]
        print(f"{name:22s} {medians[name] * 1e3:10.2f} {ratio:7.3f} {against:>14s} {nfe[name]:11d} {target:>7s}")


if __name__ == "__main__":
    main()
