"""Cost of a solver schedule: a training step with ``smoothing`` / ``switching`` against the same step
with the drawn member fixed.

Every round first draws the member each scheduled block will use (from a copy of its generator),
then builds a plain block with exactly that member, so both solve with the same tableau and the
ratio is the cost of the schedule alone (drawing, clamping, building or fetching the member).
rk2 (u0 = 0.5) with 8 fixed steps on [0, 1] (the meta-solver's setup), MLP field, per size,
forward+backward of ``z.square().mean()`` (schedules act in training only):

    ODEBlock(field, "rk2", {drawn member, step_size 0.125})          "fixed member (smoothing)" (and A/A)
    ODEBlock(field, "rk2", schedule="smoothing", sigma=0.0125)       against it
    ODEBlock(field, "rk2", {drawn member, step_size 0.125})          "fixed member (switching)"
    ODEBlock(field, "rk2", schedule="switching", 3 members)          against it

Target: <= 1.02 for both schedules.

    python benchmarks/schedule_overhead.py [--sizes 1,2,16 16,8,32 256,16,64 1024,64,256] [--quick]
"""

from __future__ import annotations

import torch
from _common import BACKWARD, CountingMLP, Report, Timing, call, make_parser, measure, setup

import nde_plugins as nde
from nde_plugins.schedules import CallState

#: Upper bound on the CPU ratio of every scheduled row against its fixed member (the harness marks a miss).
TARGET = 1.02


def main() -> None:
    parser = make_parser(__doc__)
    args = parser.parse_args()
    setup()
    timing = Timing.from_args(args)
    report = Report(args, "solver schedules vs their drawn member fixed, rk2 u0=0.5, 8 fixed steps on [0, 1], "
                          "field dim-width-dim tanh")
    common = dict(method="rk2", options={"u": 0.5, "step_size": 0.125})
    for size in args.sizes:
        field = CountingMLP(size.dim, size.width)
        x = torch.randn(size.batch, size.dim)
        scheduled = {
            "smoothing": nde.ODEBlock(field, schedule="smoothing", schedule_options={"sigma": 0.0125}, seed=0,
                                      **common),
            "switching": nde.ODEBlock(field, schedule="switching", seed=1, **common,
                                      schedule_options={"members": [{"u": 0.5}, {"u": 0.5125}, {"u": 0.4875}]}),
        }
        fixed: dict[str, nde.ODEBlock] = {}

        def fix_the_round_members(scheduled=scheduled, fixed=fixed, field=field) -> None:
            for name, block in scheduled.items():
                generator = block.policy.generator
                state = generator.get_state()
                member = block.schedule.members(CallState(True, generator, block.epoch, block.iteration))[0]
                generator.set_state(state)  # the scheduled block draws this same member in the round
                fixed[name] = nde.ODEBlock(field, method="rk2", options={**member.params, "step_size": 0.125})

        variants, against = {}, {}
        for name in scheduled:
            base = f"fixed member ({name})"
            variants[base] = call(field, lambda n=name, x=x, fixed=fixed: fixed[n](x), BACKWARD)
            variants[name] = call(field, lambda b=scheduled[name], x=x: b(x), BACKWARD)
            against[name] = base
        result = measure(variants, "fixed member (smoothing)", timing, before_round=fix_the_round_members,
                         against=against)
        report.table(f"{size}, {BACKWARD}", result, target=TARGET, meta={"size": size.spec, "mode": BACKWARD})
    report.finish()


if __name__ == "__main__":
    main()
