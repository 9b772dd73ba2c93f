"""``train --task spheres|three_minima``: seed 002's synthetic tasks, on a fixed grid or under step adaption."""

from __future__ import annotations

import argparse
import json
import sys

from ..experiments import synthetic
from ..experiments.synthetic import ADAPTIVE_SCHEDULE, SyntheticConfig, accepts_schedule, steps_of
from ._plugin_specs import read_schedule
from ._train_report import plot_training
from ._usage import UsageError, check_block


def train_synthetic(args: argparse.Namespace) -> int:
    """Train one model with ``args`` on a synthetic task, then print it with its proper-ODE check."""
    for flag, value in (("--regularizer", args.regularizer), ("--end-time", args.end_time),
                        ("--compare", args.compare), ("--rtol", args.rtol), ("--atol", args.atol),
                        ("--epochs", args.epochs), ("--stiffness-ratio", args.stiffness_ratio),
                        ("--variant", args.variant), ("--adjoint", args.adjoint),
                        ("--gradient", args.gradient != "backprop")):
        if value:
            raise UsageError(f"argument {flag}: does not apply to --task {args.task} (a fixed-grid Euler task; "
                             f"give --step-size or --schedule {ADAPTIVE_SCHEDULE})")
    schedule = read_schedule(args.schedule)[0] if args.schedule is not None else None
    if not accepts_schedule(schedule):
        raise UsageError(f"argument --schedule: --task {args.task} trains on a fixed grid or with "
                         f"{ADAPTIVE_SCHEDULE}, not {schedule!r}")
    if args.step_size is None and schedule is None:
        raise UsageError(f"argument --step-size: --task {args.task} needs a fixed step (e.g. --step-size 0.125) "
                         f"or --schedule {ADAPTIVE_SCHEDULE}")
    check_block("--method", method=args.method, options={"step_size": args.step_size or 1.0})
    config = SyntheticConfig(task=args.task, method=args.method, schedule=schedule, seed=args.seed,
                             steps=steps_of(args.step_size) if args.step_size else None, iterations=args.iterations,
                             batch_size=args.batch_size or 128, lr=args.lr)
    result = synthetic.train_synthetic(config, progress=False if args.json else None)
    how = "under step adaption" if schedule else f"at K = {config.steps} steps"
    title = f"{args.task}, {args.method} {how}, seed {args.seed}, {args.threads} thread(s)"
    if args.json:
        json.dump({**result.as_dict(), "threads": args.threads}, sys.stdout, indent=2)
        print()
    else:
        print(title)
        print(f"  test accuracy    {100 * result.test_accuracy:.2f} %")
        print(f"  train accuracy   {100 * result.train_accuracy:.2f} %")
        print(f"  NFE / iteration  {result.mean_nfe:.1f} (training solve; {result.mean_nfe_with_checks:.1f} with "
              "checks)")
        print(f"  final steps      {result.final_steps}")
        print(f"  proper-ODE check {result.verdict} (largest gap {100 * result.worst_gap:.1f} points)")
        print(f"  training time    {result.train_time_s:.2f} s")
    plot_training(args, result, title)
    return 0
