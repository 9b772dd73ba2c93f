"""``nde-plugins train``: train a Neural ODE on a task, alone, --compare'd over seeds, or across processes."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from ..experiments.synthetic import TASKS as SYNTHETIC_TASKS
from ..gradients import GRADIENTS
from ._args import (
    add_threads_argument,
    compare_list,
    end_time_spec,
    method_spec,
    plot_path,
    positive_float,
    positive_int,
    regularizer_spec,
    schedule_spec,
    seed,
    stiffness_ratio,
    use_threads,
)
from ._parser import command
from ._plugin_specs import read_schedule
from ._train_checks import (
    check_before_training,
    check_train_arguments,
    given_end_time,
    given_regularizers,
    resolve_gradient_arguments,
    variants,
)
from ._train_report import (
    plot_training,
    print_digits,
    print_ranks,
    print_stiff,
    print_timeseries,
    run_title,
    series_header,
    solver_text,
    stiff_header,
)
from ._train_synthetic import train_synthetic
from ._usage import UsageError, argument, write_figure
from .launch import BACKENDS, check_global_batch, check_processes, process_group, torchrun_world


def cmd_train(args: argparse.Namespace) -> int:
    """Check the whole command line, then train: one run, the --compare table, or on several processes."""
    from ..experiments import digits, stiff, timeseries

    if args.method is None:
        args.method = "euler" if args.task in SYNTHETIC_TASKS else "dopri5"
    processes = check_processes(args)
    use_threads(args)
    resolve_gradient_arguments(args)
    if args.task in SYNTHETIC_TASKS:
        return train_synthetic(args)
    from ..experiments.compare import COLUMNS, SERIES_COLUMNS, STIFF_COLUMNS, compare_configs, format_table

    check_train_arguments(args)
    check_global_batch(args, processes)
    given = given_regularizers(args)
    end_time = given_end_time(args)
    single = {"regularizers": given, "end_time": end_time[0] if end_time else None,
              "end_time_options": end_time[1] if end_time else {}}
    compared = variants(args, given, end_time) if args.compare is not None else None
    check_before_training(args, compared if compared is not None else {"": single})
    common = {"method": args.method, "rtol": args.rtol, "atol": args.atol, "seed": args.seed,
              "batch_size": args.batch_size, "lr": args.lr, "gradient": args.gradient, **single}
    progress = False if args.json else None
    if args.task == "stiff":
        for flag, value in (("--schedule", args.schedule), ("--step-size", args.step_size)):
            if value is not None:
                raise UsageError(f"argument {flag}: applies to the digits task only")
        base: Any = stiff.StiffConfig(stiffness_ratio=args.stiffness_ratio, variant=args.variant,
                                      iterations=args.iterations, **common)
        run, columns, printer = stiff.train_stiff, STIFF_COLUMNS, print_stiff
        header = f"{stiff_header(args)}, {args.seeds} seeds (mean +- std), {args.threads} thread(s)"
    elif args.task == "timeseries":
        schedule = read_schedule(args.schedule) if args.schedule is not None else (None, {})
        base = timeseries.SeriesConfig(epochs=args.epochs, step_size=args.step_size, schedule=schedule[0],
                                       schedule_options=schedule[1], **common)
        # The block's grid (40 intervals of 1/8) is the task's own: checked here, before training, with the
        # argument to change named (a schedule that needs labels; a drawn end beyond the last interval).
        if args.end_time is not None:
            with argument("--end-time"):
                timeseries.build_block(replace(base, schedule=None, schedule_options={}))
        if args.schedule is not None:
            with argument("--schedule"):
                timeseries.build_block(replace(base, end_time=None, end_time_options={}))
        run, columns, printer = timeseries.train_timeseries, SERIES_COLUMNS, print_timeseries
        header = f"{series_header(args)}, {args.seeds} seeds (mean +- std), {args.threads} thread(s)"
    else:
        schedule = read_schedule(args.schedule) if args.schedule is not None else (None, {})
        base = digits.TrainConfig(epochs=args.epochs, step_size=args.step_size, schedule=schedule[0],
                                  schedule_options=schedule[1], **common)
        run, columns, printer = digits.train_digits, COLUMNS, print_digits
        header = f"digits, {solver_text(args)}, {args.epochs} epochs, " \
                 f"{args.seeds} seeds (mean +- std), {args.threads} thread(s)"
    if processes is not None and torchrun_world() is None:
        # Looked up on the package when it runs, not bound here: nde_plugins.cli._launch is the name to
        # replace to keep torchrun from starting (the tests of --nproc do).
        from . import _launch

        return _launch(processes, args.argv)  # every argument was checked above, before any process starts
    if compared is None:
        with process_group(args, processes) as (rank, backend):
            result = run(base, progress=progress)
        if rank != 0:  # rank 0 reports for all: every rank holds the same numbers
            return 0
        if args.json:
            document = {**result.as_dict(), "threads": args.threads}
            if backend is not None:
                document["processes"] = {"world_size": processes, "backend": backend, "global_batch": args.batch_size,
                                         "batch_per_rank": args.batch_size // processes}
            json.dump(document, sys.stdout, indent=2)
            print()
        else:
            printer(args, result, given, end_time)
            if backend is not None:
                print_ranks(args, result, backend)
        plot_training(args, result, run_title(args, given, end_time), result.history if args.task == "stiff" else None)
        return 0
    results = compare_configs(compared, base, range(args.seed, args.seed + args.seeds),
                              run=lambda config: run(config, progress=progress))
    if args.json:
        json.dump({name: [r.as_dict() for r in runs] for name, runs in results.items()}, sys.stdout, indent=2)
        print()
    else:
        print(header)
        print(format_table(results, columns))
    if args.plot is not None:
        from ..plots import plot_comparison

        write_figure(lambda: plot_comparison(results, columns, args.plot, header), args.plot, quiet=args.json)
    return 0


def add_parser(sub: Any) -> None:
    """The ``train`` subcommand and its arguments."""
    p = command(sub, "train", "train a Neural ODE on an embedded task, optionally with regularizers and a "
                              "random end time")
    p.add_argument("--task", choices=["digits", "stiff", "timeseries", *SYNTHETIC_TASKS], default="digits",
                   help="digits: classifier on scikit-learn's 8x8 digits; stiff: seed 003's stiff toy ODE; "
                        "timeseries: latent-ODE interpolation of irregularly sampled synthetic series (seed 004); "
                        "spheres, three_minima: seed 002's synthetic sets (default %(default)s)")
    p.add_argument("--method", type=method_spec, default=None,
                   help="torchdiffeq method, registered tableau or family spec (default dopri5; euler for "
                        "spheres and three_minima)")
    p.add_argument("--rtol", type=positive_float, default=None,
                   help="relative tolerance > 0 (default 1.4e-8 for digits, 1e-7 for stiff, 1e-5 for timeseries)")
    p.add_argument("--atol", type=positive_float, default=None,
                   help="absolute tolerance > 0 (default 1.4e-8 for digits, 1e-9 for stiff, 1e-5 for timeseries)")
    p.add_argument("--regularizer", type=regularizer_spec, action="append", default=[], metavar="NAME[:weight=W,...]",
                   help="step regularizer (repeatable, each name once); weight=W is a finite number >= 0, "
                        "start=A,end=B (both > 0) anneals exponentially over the epochs")
    p.add_argument("--step-size", type=positive_float, default=None,
                   help="digits, timeseries: run --method on a fixed grid with this step (a family such as rk2 needs "
                        "one)")
    p.add_argument("--schedule", type=schedule_spec, default=None, metavar="NAME[:option=V,...]",
                   help="digits, timeseries: a solver schedule, e.g. smoothing:sigma=0.0125, "
                        "switching:u=0.5|0.5125|0.4875, step_adaption (digits only: it compares accuracies; lists "
                        "use '|')")
    p.add_argument("--end-time", type=end_time_spec, default=None, metavar="NAME[:option=V,...]",
                   help="end-time sampler for training (seed 003, STEER), e.g. steer:b=0.5 draws T ~ U(t1 - b, "
                        "t1 + b) per training call, with 0 < b < |t1 - t0|; per_sample=true draws one T per sample; "
                        "evaluation integrates to t1. On the stiff task steer's default b is the authors' "
                        "dt - 0.001")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="digits, timeseries: epochs, >= 1 (default 15 for digits, 20 for timeseries)")
    p.add_argument("--iterations", type=positive_int, default=None,
                   help="stiff: training iterations, >= 1 (default 3000, the authors' README)")
    p.add_argument("--stiffness-ratio", type=stiffness_ratio, default=None, metavar="R",
                   help="stiff: r in dy/dt = -r y + 3r - 2r e^-t, > 1 (default 1000)")
    p.add_argument("--variant", choices=["pairs_from_zero", "pairs_from_start"], default=None,
                   help="stiff: pairs_from_zero integrates every training pair over [0, dt] as the authors' code "
                        "does; pairs_from_start integrates each pair from its own start time (default "
                        "pairs_from_zero)")
    p.add_argument("--seed", type=seed, default=0,
                   help="training seed, >= 0 (first seed with --seeds; default %(default)s)")
    p.add_argument("--seeds", type=positive_int, default=1, help="number of seeds for --compare, >= 1")
    p.add_argument("--compare", type=compare_list, default=None, metavar="V1,V2,...",
                   help="variants to compare, each 'vanilla' or names joined by '+': regularizers and at most one "
                        "end-time sampler, e.g. vanilla,error_estimate,stiffness,error_estimate+stiffness or "
                        "vanilla,steer (with --end-time steer:b=... for its options)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="batch size, >= 1 (default 128 for digits, 20 for stiff, 64 for timeseries)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate > 0: Adam for digits (default 3e-3) and timeseries (default 1e-2), RMSprop "
                        "for stiff (default 1e-4)")
    p.add_argument("--nproc", type=positive_int, default=None, metavar="N",
                   help="digits: train data-parallel on N local processes (DistributedDataParallel), launched "
                        "through torchrun (python -m torch.distributed.run --standalone --nproc_per_node N); "
                        "--batch-size is the global batch, split evenly over them; 1 trains in this process. Under "
                        "torchrun itself (torchrun ... -m nde_plugins train) leave it out")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="process-group backend across processes (default: nccl for a model on CUDA, gloo otherwise; "
                        "the digits task trains on the CPU, so gloo)")
    p.add_argument("--gradient", choices=GRADIENTS, default=None,
                   help="digits, stiff, timeseries: how gradients are computed: backprop (default: through the "
                        "solver's steps, memory grows with them), adjoint (odeint_adjoint: flat memory; regularizers "
                        "other than kinetic_energy, jacobian_frobenius and taylor are refused) or checkpoint "
                        "(backprop's gradients, the steps recomputed segment by segment in the backward pass: "
                        "memory grows like the square root of the steps, one more evaluation per step). Backward "
                        "and recomputed field evaluations are counted and plotted")
    p.add_argument("--adjoint", action="store_true", help="the same as --gradient adjoint")
    p.add_argument("--plot", type=plot_path, default=None, metavar="PATH",
                   help="write a figure (.png, .pdf or .svg; needs the plots extra): loss, accuracy and NFE per "
                        "iteration, or with --compare the table as bar charts (mean +- std over seeds)")
    add_threads_argument(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_train)
