"""Run several regularizer configurations over seeds and tabulate mean +- std (seed 004's Table 1 layout)."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import replace

from .digits import TrainConfig, TrainResult, train_digits

COLUMNS = (
    ("train acc %", "train_accuracy", "{:.2f}"),
    ("test acc %", "test_accuracy", "{:.2f}"),
    ("train time s", "train_time_s", "{:.2f}"),
    ("predict time s", "predict_time_s", "{:.4f}"),
    ("NFE", "nfe_predict", "{:.1f}"),
)


def compare(
    variants: dict[str, dict], base: TrainConfig, seeds: Sequence[int],
    run: Callable[[TrainConfig], TrainResult] = train_digits,
) -> dict[str, list[TrainResult]]:
    """Train every variant (name -> regularizers) with every seed; interleaved by seed."""
    results: dict[str, list[TrainResult]] = {name: [] for name in variants}
    for seed in seeds:
        for name, regularizers in variants.items():
            results[name].append(run(replace(base, seed=seed, regularizers=regularizers)))
    return results


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


def format_table(results: dict[str, list[TrainResult]]) -> str:
    header = ["method", *(c[0] for c in COLUMNS)]
    rows = [
        [name, *(mean_std([getattr(r, attr) for r in runs], fmt) for _, attr, fmt in COLUMNS)]
        for name, runs in results.items()
    ]
    return format_rows(header, rows)
