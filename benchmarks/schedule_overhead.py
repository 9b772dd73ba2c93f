"""Cost of a solver schedule: a training step with ``smoothing`` / ``switching`` against the same step
with the drawn member fixed.

Every round first draws the member the scheduled block will use (from a copy of its generator),
then builds a plain block with exactly that member, so both solve with the same tableau and the
ratio is the cost of the schedule alone (drawing, clamping, building or fetching the member;
target <= 1.02). The fixed block is timed twice (an A/A pair: the noise floor). rk2 with 8 fixed
steps on [0, 1] (the meta-solver's setup), MLP field, forward + backward, one thread, process CPU
time, variants in a fresh random order every round.

    python benchmarks/schedule_overhead.py [--repeats 40] [--batch 256]
"""

from __future__ import annotations

import argparse

import torch
from _common import CountingMLP, counted, shuffled_medians, size_arguments

import nde_plugins as nde
from nde_plugins.schedules import CallState


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size_arguments(parser)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    field = CountingMLP(args.dim, args.width)
    x = torch.randn(args.batch, args.dim)
    common = dict(method="rk2", options={"u": 0.5, "step_size": 0.125})
    scheduled = {
        "smoothing": nde.ODEBlock(field, schedule="smoothing", schedule_options={"sigma": 0.0125}, seed=0, **common),
        "switching": nde.ODEBlock(field, schedule="switching", seed=1, **common,
                                  schedule_options={"members": [{"u": 0.5}, {"u": 0.5125}, {"u": 0.4875}]}),
    }
    fixed: dict[str, nde.ODEBlock] = {}

    def fix_the_round_members() -> None:
        for name, block in scheduled.items():
            generator = block.policy.generator
            state = generator.get_state()
            member = block.policy.schedule.members(CallState(True, generator, block.epoch, block.iteration))[0]
            generator.set_state(state)  # the scheduled block draws this same member in the round
            for key in (name, f"{name} A/A"):
                fixed[key] = nde.ODEBlock(field, method="rk2", options={**member.params, "step_size": 0.125})

    fix_the_round_members()
    nfe: dict[str, int] = {}

    def step(get_block):
        return lambda: get_block()(x).square().mean().backward()

    runs = {}
    for name in scheduled:
        runs[f"fixed member ({name})"] = counted(field, step(lambda n=name: fixed[n]), nfe, f"fixed member ({name})")
        runs[f"fixed member ({name}, A/A)"] = counted(field, step(lambda n=name: fixed[f"{n} A/A"]), nfe,
                                                      f"fixed member ({name}, A/A)")
        runs[name] = counted(field, step(lambda n=name: scheduled[n]), nfe, name)
    medians = shuffled_medians(runs, args.repeats, before_round=fix_the_round_members)
    print(f"torch {torch.__version__}; rk2 u0=0.5, 8 fixed steps on [0, 1], batch {args.batch}, field "
          f"{args.dim}-{args.width}-{args.dim}, {args.repeats} rounds in random order, process CPU time, "
          "forward+backward")
    print(f"{'variant':32s} {'median ms':>10s} {'ratio':>7s} {'NFE':>5s} {'target':>7s}")
    for name in scheduled:
        base = medians[f"fixed member ({name})"]
        for key, target in ((f"fixed member ({name})", ""), (f"fixed member ({name}, A/A)", ""), (name, "<= 1.02")):
            print(f"{key:32s} {medians[key] * 1e3:10.2f} {medians[key] / base:7.3f} {nfe[key]:5d} {target:>7s}")


if __name__ == "__main__":
    main()
