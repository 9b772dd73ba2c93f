"""Run several configurations over seeds and tabulate mean +- std (seed 004's Table 1 layout)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from .digits import TrainConfig, TrainResult, train_digits

#: (header, result attribute, format) of the digits table.
COLUMNS = (
    ("train acc %", "train_accuracy", "{:.2f}"),
    ("test acc %", "test_accuracy", "{:.2f}"),
    ("train time s", "train_time_s", "{:.2f}"),
    ("predict time s", "predict_time_s", "{:.4f}"),
    ("NFE", "nfe_predict", "{:.1f}"),
)

#: The same for the stiff task (``StiffResult``).
STIFF_COLUMNS = (
    ("best test MAE", "best_test_mae", "{:.3f}"),
    ("final test MAE", "final_test_mae", "{:.3f}"),
    ("train time s", "train_time_s", "{:.1f}"),
    ("train NFE", "nfe_train", "{:.1f}"),
    ("test NFE", "nfe_test", "{:.0f}"),
)

#: The same for the time-series task (``SeriesResult``); losses x 1e-3, as the seed's Table 2.
SERIES_COLUMNS = (
    ("train loss e-3", "train_loss_e3", "{:.2f}"),
    ("test loss e-3", "test_loss_e3", "{:.2f}"),
    ("train time s", "train_time_s", "{:.2f}"),
    ("predict time s", "predict_time_s", "{:.4f}"),
    ("NFE", "nfe_predict", "{:.1f}"),
)

Config = TypeVar("Config")
Result = TypeVar("Result")


def compare_configs(
    variants: Mapping[str, Mapping[str, Any]], base: Config, seeds: Sequence[int],
    run: Callable[[Config], Result],
) -> dict[str, list[Result]]:
    """Run every variant with every seed, interleaved by seed (machine load drifts alike for all).

    A variant is a name and the fields it changes in ``base`` (a dataclass such as ``TrainConfig``
    or ``StiffConfig``), e.g. ``{"steer": {"end_time": "steer", "end_time_options": {"b": 0.5}}}``.
    """
    results: dict[str, list[Result]] = {name: [] for name in variants}
    for seed in seeds:
        for name, changes in variants.items():
            results[name].append(run(replace(base, seed=seed, **changes)))
    return results


def compare(
    variants: dict[str, dict], base: TrainConfig, seeds: Sequence[int],
    run: Callable[[TrainConfig], TrainResult] = train_digits,
) -> dict[str, list[TrainResult]]:
    """Train every variant (name -> regularizers) with every seed; interleaved by seed."""
    return compare_configs({name: {"regularizers": regs} for name, regs in variants.items()}, base, seeds, run)


def mean_std(values: Sequence[float], fmt: str) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{fmt.format(mean)} +- {fmt.format(std)}"


def format_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: left-aligned columns, a dashed rule under the header."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_table(results: Mapping[str, Sequence[Any]], columns: Sequence[tuple[str, str, str]] = COLUMNS) -> str:
    """One row per variant, mean +- std over its runs of each column ``(header, attribute, format)``."""
    header = ["method", *(c[0] for c in columns)]
    rows = [
        [name, *(mean_std([getattr(r, attr) for r in runs], fmt) for _, attr, fmt in columns)]
        for name, runs in results.items()
    ]
    return format_rows(header, rows)
