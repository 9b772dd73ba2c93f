"""``nde-plugins check``: train a model on a task, then ask whether it is an ODE (the proper-ODE check)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..experiments.synthetic import ADAPTIVE_SCHEDULE
from ..experiments.tasks import check_training_steps
from ._args import add_threads_argument, method_spec, plot_path, positive_float, positive_int, seed, use_threads
from ._parser import command
from ._usage import UsageError, check_block, write_figure


def cmd_check(args: argparse.Namespace) -> int:
    """Train with ``args.method`` at K = ``args.steps`` steps (or under step adaption), check, report."""
    from ..proper_ode import proper_ode_check

    try:
        check_training_steps("K", args.steps)
    except ValueError as exc:
        raise UsageError(f"argument --steps: {exc}") from None
    check_block("--method", method=args.method, options={"step_size": 1.0 / args.steps})
    use_threads(args)
    schedule = ADAPTIVE_SCHEDULE if args.adapt else None
    if args.task == "digits":
        from ..experiments.digits import TrainConfig, fit_digits, load_digits_split

        if args.iterations is not None:
            raise UsageError("argument --iterations: the digits task counts --epochs")
        config = TrainConfig(method=args.method, step_size=1.0 / args.steps, epochs=args.epochs or 15, seed=args.seed,
                             schedule=schedule)
        model, _ = fit_digits(config, progress=False if args.json else None)
        _, _, x_test, y_test = load_digits_split()
        history = []
    else:
        from ..experiments.synthetic import SyntheticConfig, fit_synthetic, load_task

        if args.epochs is not None:
            raise UsageError(f"argument --epochs: the {args.task} task counts --iterations")
        synthetic = SyntheticConfig(task=args.task, method=args.method, steps=args.steps, schedule=schedule,
                                    iterations=args.iterations, seed=args.seed)
        model, result = fit_synthetic(synthetic, progress=False if args.json else None)
        data = load_task(args.task)
        x_test, y_test = data.x_test, data.y_test
        history = result.step_history
    report = proper_ode_check(model, model.block, (x_test, y_test), threshold=args.threshold)
    if args.json:
        print(json.dumps({**report.as_dict(), "task": args.task, "step_history": history, "threads": args.threads},
                         indent=2))
    else:
        how = "under step adaption" if args.adapt else f"at K = {args.steps} steps"
        print(f"{args.task}, trained with {args.method} {how}, seed {args.seed}, {args.threads} thread(s)")
        print(report.table())
    if args.plot is not None:
        from ..plots import plot_check_report

        write_figure(lambda: plot_check_report(report, args.plot, history), args.plot, quiet=args.json)
    return 0


def add_parser(sub: Any) -> None:
    """The ``check`` subcommand and its arguments."""
    p = command(sub, "check", "train a model on a task, then check whether it is an ODE or a map tied to its "
                              "solver (seed 002)")
    p.add_argument("--task", choices=["spheres", "three_minima", "digits"], default="spheres")
    p.add_argument("--method", type=method_spec, default="euler",
                   help="fixed-grid training solver: euler, midpoint, rk4 or a tableau spec such as rk2:u=0.5 "
                        "(default %(default)s)")
    p.add_argument("--steps", type=positive_int, default=8, help="training steps K on [0, 1] (step 1/K; default 8)")
    p.add_argument("--adapt", action="store_true", help="train under step adaption instead (starting at 1/K)")
    p.add_argument("--iterations", type=positive_int, default=None, help="spheres, three_minima: iterations")
    p.add_argument("--epochs", type=positive_int, default=None, help="digits: epochs (default 15)")
    p.add_argument("--threshold", type=positive_float, default=0.1,
                   help="largest accuracy gap of an ODE-like model (default %(default)g)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--plot", type=plot_path, default=None, metavar="PATH",
                   help="write the accuracy-vs-test-solver figure (.png, .pdf or .svg; needs the plots extra)")
    add_threads_argument(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)
