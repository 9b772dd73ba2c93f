"""Cost of a random end time: ODEBlock with ``end_time="steer"`` against the same solve to a fixed end.

Every round first draws the end time T the STEER block will draw (from a copy of its generator)
and the baseline block solves to exactly that T, so both take the same steps and the ratio is the
cost of the draw and the policy alone. ``per_sample=True`` (one end time per sample, one batched
time-rescaled solve) is compared with a plain solve to t1 = 1; its NFE differ (marked "(!)"), so
that ratio includes the solver's extra work. Per size, forward+backward of ``z.square().mean()``
(end times are drawn in training only):

    ODEBlock(field, dopri5) with t = [0, T]                      baseline "fixed end T" (and A/A)
    ODEBlock(field, dopri5, end_time="steer", {"b": b})          "steer (shared T)"    against fixed end T
    ODEBlock(field, dopri5) with t = [0, 1]                      "fixed end t1"
    ODEBlock(field, dopri5, end_time="steer", per_sample=True)   "steer per_sample"    against fixed end t1

Target: steer (shared T) <= 1.02.

    python benchmarks/end_time_overhead.py [--sizes 1,2,16 16,8,32 256,16,64 1024,64,256] [--quick] [--b 0.5]
"""

from __future__ import annotations

import torch
from _common import BACKWARD, CountingMLP, Report, Timing, call, make_parser, measure, positive_float, setup

import nde_plugins as nde

#: Upper bound on the CPU ratio (the harness marks a row above it); steer per_sample does other work: none.
TARGETS = {"steer (shared T)": 1.02}


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--tol", type=positive_float, default=1e-6, help="rtol = atol (default 1e-6)")
    parser.add_argument("--b", type=positive_float, default=0.5, help="T ~ Uniform(1 - b, 1 + b) (default 0.5)")
    args = parser.parse_args()
    if not 0 < args.b < 1:
        parser.error(f"--b must lie in (0, 1) so that T stays beyond t0 = 0; got {args.b}")
    setup()
    timing = Timing.from_args(args)
    report = Report(args, f"STEER end times vs a fixed end, dopri5 rtol=atol={args.tol:g}, b={args.b:g}, "
                          "field dim-width-dim tanh")
    common = dict(method="dopri5", rtol=args.tol, atol=args.tol)
    for size in args.sizes:
        field = CountingMLP(size.dim, size.width)
        x = torch.randn(size.batch, size.dim)
        steer = nde.ODEBlock(field, end_time="steer", end_time_options={"b": args.b}, seed=0, **common)
        per_sample = nde.ODEBlock(field, end_time="steer", end_time_options={"b": args.b, "per_sample": True},
                                  seed=1, **common)
        fixed_t, fixed_t1 = nde.ODEBlock(field, **common), nde.ODEBlock(field, **common)

        def fix_the_round_end_time(steer=steer, fixed_t=fixed_t) -> None:
            generator = steer.policy.generator
            state = generator.get_state()
            end = float(steer.policy.sampler(steer.t, generator)[-1])
            generator.set_state(state)  # the STEER block draws this same T in the round
            fixed_t.t = torch.tensor([0.0, end])

        variants = {
            "fixed end T": call(field, lambda b=fixed_t, x=x: b(x), BACKWARD),
            "steer (shared T)": call(field, lambda b=steer, x=x: b(x), BACKWARD),
            "fixed end t1": call(field, lambda b=fixed_t1, x=x: b(x), BACKWARD),
            "steer per_sample": call(field, lambda b=per_sample, x=x: b(x), BACKWARD),
        }
        result = measure(variants, "fixed end T", timing, before_round=fix_the_round_end_time,
                         against={"steer per_sample": "fixed end t1"})
        report.table(f"{size}, {BACKWARD}", result, TARGETS,
                     meta={"size": size.spec, "mode": BACKWARD, "tol": args.tol, "b": args.b})
    report.finish()


if __name__ == "__main__":
    main()
