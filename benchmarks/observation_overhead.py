"""Cost of observing a solve: ODEBlock against plain ``torchdiffeq.odeint`` on the same field.

Compared, per size and per mode (forward+backward of ``z.square().mean()``, and a forward under
``torch.no_grad()``):

    torchdiffeq.odeint(field, x, [0, 1], method="dopri5", rtol=tol, atol=tol)   the baseline (and its A/A)
    ODEBlock(field, method="dopri5", rtol=tol, atol=tol)                         statistics on
    ODEBlock(field, ..., record_stats=False)                                     statistics off

The field is an MLP dim-width-dim (tanh) counting its calls; every variant must take the same
steps (the NFE column; a "(!)" marks a round where it did not). Targets (issue 11): statistics on
<= 1.03, ``record_stats=False`` <= 1.01, at every size and in both modes.

    python benchmarks/observation_overhead.py [--sizes 1,2,16 16,8,32 256,16,64 1024,64,256] [--quick]
"""

from __future__ import annotations

import torch
import torchdiffeq
from _common import MODES, CountingMLP, Report, Timing, call, make_parser, measure, positive_float, setup

import nde_plugins as nde

#: Upper bounds on the CPU ratio (the harness marks a row above its bound).
TARGETS = {"ODEBlock, statistics on": 1.03, "ODEBlock, record_stats=False": 1.01}


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--tol", type=positive_float, default=1e-6, help="rtol = atol of every solve (default 1e-6)")
    args = parser.parse_args()
    setup()
    timing = Timing.from_args(args)
    report = Report(args, f"ODEBlock vs torchdiffeq.odeint, dopri5 rtol=atol={args.tol:g}, field dim-width-dim tanh")
    for size in args.sizes:
        field = CountingMLP(size.dim, size.width)
        x = torch.randn(size.batch, size.dim)
        t = torch.tensor([0.0, 1.0])
        with_stats = nde.ODEBlock(field, method="dopri5", rtol=args.tol, atol=args.tol)
        without_stats = nde.ODEBlock(field, method="dopri5", rtol=args.tol, atol=args.tol, record_stats=False)

        def plain(field=field, x=x, t=t):
            return torchdiffeq.odeint(field, x, t, method="dopri5", rtol=args.tol, atol=args.tol)[-1]

        for mode in MODES:
            variants = {
                "torchdiffeq.odeint": call(field, plain, mode),
                "ODEBlock, statistics on": call(field, lambda b=with_stats, x=x: b(x), mode),
                "ODEBlock, record_stats=False": call(field, lambda b=without_stats, x=x: b(x), mode),
            }
            result = measure(variants, "torchdiffeq.odeint", timing)
            report.table(f"{size}, {mode}", result, TARGETS, meta={"size": size.spec, "mode": mode, "tol": args.tol})
    report.finish()


if __name__ == "__main__":
    main()
