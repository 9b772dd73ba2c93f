"""What ``train`` prints and draws for one run: the task's numbers, the ranks' numbers, the figure."""

from __future__ import annotations

import argparse
from typing import Any

from ..experiments.tasks import describe_end_time
from ._usage import write_figure

#: A run's end time as ``train`` hands it on: ``(name, options)``, or None for the task's own end.
EndTime = tuple[str, dict[str, Any]] | None


def _regularizers(given: dict[str, dict[str, Any]]) -> str:
    return ", ".join(f"{k}={v['weight']!r}" for k, v in given.items()) or "none"


def solver_text(args: argparse.Namespace) -> str:
    """The solver a digits run used, as the header names it: the step size of a fixed grid or the
    tolerances of an adaptive method, and the schedule when there is one."""
    how = f"step {args.step_size:g}" if args.step_size is not None else f"rtol={args.rtol:g} atol={args.atol:g}"
    schedule = f", schedule {args.schedule}" if getattr(args, "schedule", None) else ""
    return f"{args.method} {how}{schedule}"


def stiff_header(args: argparse.Namespace) -> str:
    """The stiff task's settings on one line (the start of every stiff title)."""
    return (f"stiff toy r={args.stiffness_ratio:g}, {args.variant}, {args.method} rtol={args.rtol:g} "
            f"atol={args.atol:g}, RMSprop lr={args.lr:g}, batch {args.batch_size}, {args.iterations} iterations")


def series_header(args: argparse.Namespace) -> str:
    """The time-series task's settings on one line (the start of every timeseries title)."""
    return (f"timeseries (latent ODE, masked MSE), {solver_text(args)}, Adam lr={args.lr:g}, batch {args.batch_size}, "
            f"{args.epochs} epochs")


def run_title(args: argparse.Namespace, given: dict[str, dict[str, Any]], end_time: EndTime) -> str:
    """One line naming a single digits, stiff or timeseries run (the figure's title)."""
    task = stiff_header(args) if args.task == "stiff" else series_header(args) if args.task == "timeseries" else \
        f"digits, {solver_text(args)}, {args.epochs} epochs"
    return (f"{task}, regularizers: {_regularizers(given)}, end time: {describe_end_time(args.task, end_time)}"
            + (f", gradient {args.gradient}" if args.gradient != "backprop" else "") + f", seed {args.seed}")


def print_digits(args: argparse.Namespace, result: Any, given: dict[str, dict[str, Any]], end_time: EndTime) -> None:
    """The numbers of one digits run."""
    print(f"digits, {solver_text(args)}, regularizers: {_regularizers(given)}, "
          f"end time: {describe_end_time(args.task, end_time)}, {args.epochs} epochs, seed {args.seed}, "
          + (f"gradient {args.gradient}, " if args.gradient != "backprop" else "") + f"{args.threads} thread(s)")
    print(f"  train accuracy   {result.train_accuracy:.2f} %")
    print(f"  test accuracy    {result.test_accuracy:.2f} %")
    print(f"  prediction NFE   {result.nfe_predict}")
    print(f"  training time    {result.train_time_s:.2f} s")
    print(f"  prediction time  {result.predict_time_s:.4f} s")


def print_stiff(args: argparse.Namespace, result: Any, given: dict[str, dict[str, Any]], end_time: EndTime) -> None:
    """The numbers of one stiff run."""
    print(f"{stiff_header(args)}, regularizers: {_regularizers(given)}, end time: "
          f"{describe_end_time(args.task, end_time)}, seed {args.seed}, {args.threads} thread(s)")
    print(f"  best test MAE    {result.best_test_mae:.4f} (iteration {result.best_iteration}; the paper's metric)")
    print(f"  best test MSE    {result.best_test_mse:.4f}")
    print(f"  final test MAE   {result.final_test_mae:.4f}")
    print(f"  training time    {result.train_time_s:.2f} s (evaluations: {result.eval_time_s:.2f} s)")
    print(f"  training NFE     {result.nfe_train:.1f} per iteration (forward)")
    print(f"  test NFE         {result.nfe_test} (last evaluation, y(0) = 0 over [0, 25])")


def print_timeseries(args: argparse.Namespace, result: Any, given: dict[str, dict[str, Any]],
                     end_time: EndTime) -> None:
    """The numbers of one timeseries run."""
    print(f"{series_header(args)}, regularizers: {_regularizers(given)}, end time: "
          f"{describe_end_time(args.task, end_time)}, seed {args.seed}, "
          + (f"gradient {args.gradient}, " if args.gradient != "backprop" else "") + f"{args.threads} thread(s)")
    print(f"  train loss       {1e3 * result.train_loss:.2f} x 1e-3 (masked MSE)")
    print(f"  test loss        {1e3 * result.test_loss:.2f} x 1e-3")
    print(f"  prediction NFE   {result.nfe_predict}")
    print(f"  training time    {result.train_time_s:.2f} s")
    print(f"  prediction time  {result.predict_time_s:.4f} s")


def print_ranks(args: argparse.Namespace, result: Any, backend: str) -> None:
    """The training numbers of every rank and their totals (text output of a run on several processes)."""
    from ..experiments.compare import format_rows

    world = len(result.ranks)
    checksums = {entry["parameter_checksum"] for entry in result.ranks}
    agree = f"identical on every rank (CRC-32 {checksums.pop():08x})" if len(checksums) == 1 else \
        "DIFFERENT across ranks: " + ", ".join(f"{entry['parameter_checksum']:08x}" for entry in result.ranks)
    print(f"  processes        {world} ({backend}), global batch {args.batch_size} = {world} x "
          f"{args.batch_size // world} per step")
    print(f"  parameters       {agree}")
    print("  training solves, summed over each rank's batches:")
    header = ("rank", "samples", "batches", "NFE fwd", "NFE bwd", "steps acc", "steps rej", "regularization",
              "time s")
    keys = ("samples", "batches", "nfe_forward", "nfe_backward", "steps_accepted", "steps_rejected")

    def row(label: str, entry: dict[str, Any]) -> list[str]:
        return [label, *(f"{entry[key]:.0f}" for key in keys), f"{entry['regularization']:.4g}",
                f"{entry['train_time_s']:.2f}" if "train_time_s" in entry else ""]

    rows = [row(str(rank), entry) for rank, entry in enumerate(result.ranks)]
    rows.append(row("total", result.ranks_total))
    print("\n".join(f"    {line}" for line in format_rows(header, rows).splitlines()))


def plot_training(args: argparse.Namespace, result: Any, title: str,
                  evaluations: list[dict[str, Any]] | None = None) -> None:
    """train --plot for one run: loss, accuracy and NFE per iteration (after the results are printed)."""
    if args.plot is None:
        return
    from ..plots import plot_training as draw

    write_figure(lambda: draw(result.iterations, args.plot, title, evaluations), args.plot, quiet=args.json)
