"""Step statistics three ways: plain torchdiffeq, our ODEBlock, and torchode 1.0.1 (optional extra).

The same problem for all three: the MLP field dim-width-dim (tanh) on a batch of independent
samples, Dormand-Prince 5(4), rtol = atol = ``--tol``, from t = 0 to 1, per size and per mode
(forward+backward of ``z.square().mean()``, and a forward under ``torch.no_grad()``):

    torchdiffeq.odeint(field, x, [0, 1], method="dopri5")             the baseline (and A/A); no statistics
    ODEBlock(field, method="dopri5")                                  statistics on (one step size for the batch)
    torchode: AutoDiffAdjoint(Dopri5, IntegralController), eager      statistics on (one step size per sample)

torchode controls the step of every sample separately (its ``n_f_evals`` / ``n_steps`` are per
sample) and keeps calling the field on the whole batch until the slowest sample is done, so its
field calls (the NFE column, counted by the field) differ from torchdiffeq's and its rows carry a
"(!)": that ratio includes a different amount of work, which is the point of the comparison for
a user choosing where to get step statistics. The per-sample counts are printed under each table.

Needs torchode: ``pip install -e .[bench]``; without it the script says so and exits 0.

    python benchmarks/torchode_compare.py [--sizes 1,2,16 16,8,32 256,16,64 1024,64,256] [--quick]
"""

from __future__ import annotations

import importlib.util
import sys


def main() -> int:
    if importlib.util.find_spec("torchode") is None:
        print("torchode is not installed; `pip install -e .[bench]` (torchode 1.0.1) adds this comparison")
        return 0
    import torch
    import torchdiffeq
    import torchode
    from _common import MODES, CountingMLP, Report, Timing, call, make_parser, measure, positive_float, setup

    import nde_plugins as nde

    parser = make_parser(__doc__)
    parser.add_argument("--tol", type=positive_float, default=1e-6,
                        help="rtol = atol of all three solvers (default 1e-6)")
    args = parser.parse_args()
    setup()
    timing = Timing.from_args(args)
    version = getattr(torchode, "__version__", "?")
    report = Report(args, f"torchdiffeq vs ODEBlock vs torchode {version}, dopri5 rtol=atol={args.tol:g}, "
                          "field dim-width-dim tanh, eager")
    for size in args.sizes:
        field = CountingMLP(size.dim, size.width)
        x = torch.randn(size.batch, size.dim)
        t = torch.tensor([0.0, 1.0])
        block = nde.ODEBlock(field, method="dopri5", rtol=args.tol, atol=args.tol)
        term = torchode.ODETerm(field)
        solver = torchode.AutoDiffAdjoint(torchode.Dopri5(term=term),
                                          torchode.IntegralController(atol=args.tol, rtol=args.tol, term=term))
        t_eval = t.repeat(size.batch, 1)
        last: dict[str, dict] = {}

        def plain(field=field, x=x, t=t):
            return torchdiffeq.odeint(field, x, t, method="dopri5", rtol=args.tol, atol=args.tol)[-1]

        def ode(solver=solver, x=x, t_eval=t_eval, last=last):
            solution = solver.solve(torchode.InitialValueProblem(y0=x, t_eval=t_eval))
            last["stats"] = solution.stats
            return solution.ys[:, -1]

        for mode in MODES:
            variants = {
                "torchdiffeq.odeint": call(field, plain, mode),
                "ODEBlock, statistics on": call(field, lambda b=block, x=x: b(x), mode),
                "torchode (per-sample steps)": call(field, ode, mode),
            }
            result = measure(variants, "torchdiffeq.odeint", timing)
            stats = {k: v.float() for k, v in last["stats"].items()}
            per_sample = ", ".join(f"{k} mean {float(v.mean()):.1f} max {float(v.max()):.0f}" for k, v in stats.items()
                                   if k in ("n_f_evals", "n_steps", "n_accepted"))
            report.table(f"{size}, {mode}", result, notes=[f"torchode per sample: {per_sample}"],
                         meta={"size": size.spec, "mode": mode, "tol": args.tol})
    report.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
