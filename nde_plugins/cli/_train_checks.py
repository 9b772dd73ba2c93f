"""``train``'s rules that tie arguments together, checked before any run starts.

Each argument alone was checked as it was parsed. What is checked here needs several of them: an
argument of another task, a --seeds without --compare, a --compare variant without a weight; and
then every block the runs would build is built once (nothing is solved), so that a variant that
would fail after others have trained for minutes is refused at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
from typing import Any

from .. import get_registry
from .._regularization import ExponentialAnnealing
from ..experiments.tasks import default_weights, interval
from ..solvers import resolve_solver
from ._args import MAX_SEED
from ._plugin_specs import read_end_time, read_regularizer, read_schedule, required_options
from ._train_report import EndTime
from ._usage import UsageError, argument, check_block

#: train's arguments that belong to one task only (argument -> the config field it sets).
TASK_ONLY = {"--epochs": ("epochs", ("digits", "timeseries")), "--iterations": ("iterations", ("stiff",)),
             "--stiffness-ratio": ("stiffness_ratio", ("stiff",)), "--variant": ("variant", ("stiff",))}
#: train's arguments whose default depends on the task (taken from the task's config class).
TASK_DEFAULTS = ("rtol", "atol", "lr", "batch_size", "epochs", "iterations", "stiffness_ratio", "variant")


def _config_class(task: str) -> type:
    if task == "stiff":
        from ..experiments.stiff import StiffConfig

        return StiffConfig
    if task == "timeseries":
        from ..experiments.timeseries import SeriesConfig

        return SeriesConfig
    from ..experiments.digits import TrainConfig

    return TrainConfig


def resolve_gradient_arguments(args: argparse.Namespace) -> None:
    """One gradient mode from --gradient and its older spelling --adjoint (``args.gradient``, ``args.adjoint``)."""
    if args.adjoint and args.gradient not in (None, "adjoint"):
        raise UsageError(f"argument --adjoint: means --gradient adjoint, which disagrees with --gradient "
                         f"{args.gradient}; keep one of them")
    args.gradient = "adjoint" if args.adjoint else args.gradient or "backprop"
    args.adjoint = args.gradient == "adjoint"


def check_train_arguments(args: argparse.Namespace) -> None:
    """Rules that tie train's arguments together (each argument alone was checked as it was parsed).

    Also fills in the defaults that depend on the task (tolerances, learning rate, batch size, ...).
    """
    for flag, (attr, tasks) in TASK_ONLY.items():
        if args.task not in tasks and getattr(args, attr) is not None:
            names = " or ".join(f"--task {task}" for task in tasks)
            raise UsageError(f"argument {flag}: only applies with {names}; drop it or add {names.split(' or ')[0]}")
    defaults = {f.name: f.default for f in dataclasses.fields(_config_class(args.task))}
    for attr in TASK_DEFAULTS:
        if getattr(args, attr) is None and attr in defaults:
            setattr(args, attr, defaults[attr])
    if args.compare is None and args.seeds != 1:
        raise UsageError("argument --seeds: only applies with --compare; drop --seeds, or add --compare V1,V2,...")
    if args.seed + args.seeds - 1 > MAX_SEED:
        raise UsageError(f"argument --seeds: --seed {args.seed} + --seeds {args.seeds} - 1 exceeds the largest "
                         "torch seed 2**63 - 1; give a smaller --seed")
    if args.task == "digits" and importlib.util.find_spec("sklearn") is None:
        raise UsageError("argument --task: the digits task needs scikit-learn: pip install 'nde_plugins[tasks]'")
    if args.task == "stiff":
        from ..experiments.stiff import StiffConfig

        largest = StiffConfig.n_train - 2
        if args.batch_size > largest:
            raise UsageError(f"argument --batch-size: the stiff task draws distinct training pairs, at most "
                             f"{largest}; give --batch-size <= {largest} (the authors use 20)")


def given_regularizers(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The --regularizer specs as ``{name: {"weight": ..., **options}}``; each name at most once."""
    given: dict[str, dict[str, Any]] = {}
    for spec in args.regularizer:
        with argument(f"--regularizer {spec!r}"):
            name, value = read_regularizer(spec, args.epochs or 1, args.task)
        if name in given:
            raise UsageError(f"argument --regularizer: {name!r} is given twice; give each regularizer once")
        if args.task == "stiff" and isinstance(value["weight"], ExponentialAnnealing):
            raise UsageError(f"argument --regularizer: {spec!r} anneals over epochs, and the stiff task counts "
                             "iterations, not epochs; give a constant weight=W")
        given[name] = value
    return given


def given_end_time(args: argparse.Namespace) -> EndTime:
    """The --end-time spec as ``(name, options)``, or None without one."""
    if args.end_time is None:
        return None
    with argument(f"--end-time {args.end_time!r}"):
        return read_end_time(args.end_time)


def variants(args: argparse.Namespace, given: dict[str, dict[str, Any]],
             end_time: EndTime) -> dict[str, dict[str, Any]]:
    """Variant name -> the config fields it sets, for --compare.

    Each named regularizer gets its --regularizer spec or its default weight; a named end-time
    sampler gets the options of --end-time when that names it, else its defaults. A --regularizer
    or --end-time that no variant uses is refused: it would be ignored.
    """
    registry = get_registry()
    out: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for item in args.compare:
        regularizers: dict[str, dict[str, Any]] = {}
        changes: dict[str, Any] = {"regularizers": regularizers, "end_time": None, "end_time_options": {}}
        for name in item.split("+") if item != "vanilla" else ():
            used.add(name)
            if registry.find("end_time_sampler", name) is not None:
                options = end_time[1] if end_time is not None and end_time[0] == name else {}
                missing = required_options(registry.get("end_time_sampler", name)) - set(options)
                if missing:
                    needs = ",".join(f"{key}=V" for key in sorted(missing))
                    raise UsageError(f"argument --compare: variant {item!r} uses the end time {name!r}, which needs "
                                     f"{', '.join(sorted(missing))}; give it with --end-time {name}:{needs}")
                changes["end_time"], changes["end_time_options"] = name, options
            elif name in given:
                regularizers[name] = given[name]
            elif name in default_weights(args.task):
                regularizers[name] = {"weight": default_weights(args.task)[name]}
            else:
                raise UsageError(
                    f"argument --compare: variant {item!r} uses {name!r}, which has no default weight; "
                    f"give one with --regularizer {name}:weight=W"
                )
        out[item] = changes
    unused = sorted(set(given) - used)
    if unused:
        raise UsageError(
            f"argument --regularizer: {', '.join(map(repr, unused))} is in no --compare variant and would be "
            "ignored; add it to a variant or drop it"
        )
    if end_time is not None and end_time[0] not in used:
        raise UsageError(
            f"argument --end-time: {end_time[0]!r} is in no --compare variant and would be ignored; add it to a "
            f"variant (e.g. vanilla,{end_time[0]}) or drop it"
        )
    return out


def check_before_training(args: argparse.Namespace, runs: dict[str, dict[str, Any]]) -> None:
    """Refuse a method, tolerance, regularizer or end time the training would refuse, before any run starts.

    With --compare a variant that fails after others have trained for minutes would waste them, so
    every variant is built once here (construction only: nothing is solved). The end time is
    checked on a block of its own, so that an error names --end-time when that is what to change.
    """
    solver = {"t": interval(args.task), "method": args.method, "rtol": args.rtol, "atol": args.atol}
    for label, changes in runs.items():
        regularizers, end_time = changes["regularizers"], changes["end_time"]
        variant = f"--compare (variant {label!r})" if args.compare is not None else None
        check_block(variant or ("--regularizer" if regularizers else "--method"), **solver,
                    regularizers=regularizers or None, gradient=args.gradient)
        if end_time is not None:
            check_block("--end-time" if args.end_time is not None else variant or "--end-time", **solver,
                        end_time=end_time, end_time_options=changes["end_time_options"])
    options = {"step_size": args.step_size} if args.step_size is not None else None
    if args.step_size is None and resolve_solver(args.method).fixed_grid:
        fix = ("the stiff task takes no --step-size: use an adaptive method such as dopri5" if args.task == "stiff"
               else "give --step-size (e.g. --step-size 0.1)")
        raise UsageError(f"argument --method: {args.method} runs on a fixed grid, and without a step size it would "
                         f"take a single step over the whole interval; {fix}")
    check_block("--step-size", **solver, options=options)
    if args.schedule is not None:
        name, schedule_options = read_schedule(args.schedule)
        check_block("--schedule", **solver, options=options, schedule=name, schedule_options=schedule_options)
