"""Seed 004's whole comparison (Pal et al., Tables 1 and 2) at CPU scale: eight methods on two tasks.

Methods: vanilla; STEER (a random end time); TayNODE (``taylor``: the integral of the squared K-th
total time derivative); SRNODE (``stiffness``); ERNODE (``error_estimate``); STEER + SRNODE;
STEER + ERNODE; SRNODE + ERNODE. Tasks:

- ``digits`` (Table 1's MNIST classifier scaled to scikit-learn's 8x8 digits; the paper's columns:
  train / test accuracy): ``nde_plugins/experiments/digits.py``, dopri5 at rtol = atol = 1.4e-8 on
  [0, 1], Adam 3e-3, batch 128, 15 epochs.
- ``timeseries`` (Table 2's PhysioNet latent ODE, on the seeded synthetic series of
  ``nde_plugins/experiments/timeseries.py``; the columns: train / test masked MSE x 1e-3): dopri5 at
  rtol = atol = 1e-5 on [0, 5], Adam 1e-2, batch 64, 20 epochs.

Coefficients (``WEIGHTS``; constant, no annealing). The paper's were tuned for MNIST and PhysioNet
at other loss scales, so each was checked on seed 0 of its task by one rule: keep the paper's
coefficient when the test metric stays within a quarter of vanilla's error (accuracy: 25% more
misclassified; loss: 25% more), else take the largest weight of a short sweep that does. Digits:
TayNODE K = 3 at 0.003 (the paper's K and lambda = 3.02e-3: 96.7% against vanilla's 95.8% on seed
0), SRNODE 0.0285 (the paper's), ERNODE 0.1 constant (the sweep of
``benchmarks/digits_regularizers.py``; the paper anneals 100 -> 10 on its MNIST loss), STEER
b = 0.5 (the paper's, T = 1). Time series (vanilla: test loss 0.0402, NFE 98 on seed 0): TayNODE
K = 2 at 0.01 (the paper's; 0.0481, NFE 68; 0.03 gives 0.0549), SRNODE 0.002 (the paper's 0.285
gives 0.102; 0.0285: 0.063, 0.003: 0.052, 0.002: 0.045 at NFE 74), ERNODE 5e-4 (the paper anneals
1000 -> 100 on its NLL; here 1e-3 and above collapse the solve to 20-26 NFE at a loss of 0.096 and
more, while 5e-4 and below leave it at 92-98 NFE: there is no weight in between on this task),
STEER b = 0.0625 (half the grid step: the paper draws each end within half its interval; here only
the last end of a batch is drawn).

Printed per task: mean +- std over seeds of the metrics, training time, prediction time and
prediction NFE, the paper's row beside each, and each method against vanilla. Figures, one per
task (``--plot PATH`` with the task's name added: ``docs/figures/regularizers_table_digits.png`` and
``..._timeseries.png`` by default): the forward NFE of the training solves per epoch (mean over
seeds, band from the lowest to the highest seed) and the training loss, per method.

    python examples/regularizers_table.py [--tasks digits,timeseries] [--seeds 3] [--plot PATH | --no-plot]
                                          [--json results.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from nde_plugins.experiments import digits, timeseries
from nde_plugins.experiments.compare import COLUMNS, SERIES_COLUMNS, compare_configs, format_rows, mean_std
from nde_plugins.experiments.script import add_figure_options, at_least_one, figure_path, json_file

DEFAULT_PLOT = Path(__file__).resolve().parents[1] / "docs" / "figures" / "regularizers_table.png"
TASKS = ("digits", "timeseries")
METHODS = ("vanilla", "STEER", "TayNODE", "SRNODE", "ERNODE", "STEER + SRNODE", "STEER + ERNODE",
           "SRNODE + ERNODE")
#: Per task: the regularizers' weights (and TayNODE's order) and STEER's half-width; see the docstring.
WEIGHTS = {
    "digits": {"error_estimate": 0.1, "stiffness": 0.0285, "taylor": (0.003, {"order": 3}), "steer_b": 0.5},
    "timeseries": {"error_estimate": 5e-4, "stiffness": 0.002, "taylor": (0.01, {"order": 2}), "steer_b": 0.0625},
}
#: The paper's Table 1 (MNIST: train %, test %, train hours, prediction s, NFE) and Table 2 (PhysioNet:
#: train and test loss x 1e-3, train hours, prediction s, NFE), mean +- std.
PAPER = {
    "digits": {
        "vanilla": ("100.0 +- 0.00", "97.94 +- 0.02", "0.98 h", "0.094", "253.0 +- 3.46"),
        "STEER": ("100.0 +- 0.00", "97.94 +- 0.03", "1.31 h", "0.092", "265.0 +- 3.46"),
        "TayNODE": ("98.98 +- 0.06", "97.89 +- 0.00", "1.19 h", "0.079", "80.3 +- 0.43"),
        "SRNODE": ("100.0 +- 0.00", "98.08 +- 0.15", "1.24 h", "0.094", "259.0 +- 3.46"),
        "ERNODE": ("99.71 +- 0.28", "97.32 +- 0.06", "0.82 h", "0.060", "177.0 +- 0.00"),
        "STEER + SRNODE": ("100.0 +- 0.00", "97.88 +- 0.06", "1.55 h", "0.101", "275.0 +- 12.5"),
        "STEER + ERNODE": ("99.91 +- 0.02", "97.61 +- 0.11", "1.37 h", "0.086", "197.0 +- 9.17"),
        "SRNODE + ERNODE": ("99.98 +- 0.03", "97.77 +- 0.05", "1.37 h", "0.081", "221.0 +- 17.3"),
    },
    "timeseries": {
        "vanilla": ("3.48 +- 0.00", "3.55 +- 0.00", "1.75 h", "0.53", "733.0 +- 84.29"),
        "STEER": ("3.43 +- 0.02", "3.48 +- 0.01", "1.62 h", "0.54", "699.0 +- 141.1"),
        "TayNODE": ("4.21 +- 0.02", "4.21 +- 0.01", "12.3 h", "0.22", "167.3 +- 11.93"),
        "SRNODE": ("3.52 +- 1.44", "3.58 +- 0.05", "0.87 h", "0.20", "273.0 +- 0.000"),
        "ERNODE": ("3.51 +- 0.00", "3.57 +- 0.00", "0.94 h", "0.21", "287.0 +- 17.32"),
        "STEER + SRNODE": ("3.67 +- 0.02", "3.73 +- 0.02", "0.89 h", "0.20", "271.0 +- 12.49"),
        "STEER + ERNODE": ("3.41 +- 0.02", "3.48 +- 0.01", "1.03 h", "0.24", "269.0 +- 33.05"),
        "SRNODE + ERNODE": ("3.48 +- 0.11", "3.56 +- 0.03", "1.12 h", "0.21", "263.0 +- 12.49"),
    },
}
QUICK = {"digits": {"epochs": 1}, "timeseries": {"epochs": 1, "n_series": 200}}


def variants(task: str) -> dict[str, dict[str, Any]]:
    """Method name -> the config fields it sets (regularizers and end time) on ``task``."""
    w = WEIGHTS[task]
    parts = {"TayNODE": {"taylor": w["taylor"]}, "SRNODE": {"stiffness": w["stiffness"]},
             "ERNODE": {"error_estimate": w["error_estimate"]}}
    out = {}
    for method in METHODS:
        names = [] if method == "vanilla" else method.split(" + ")
        regularizers = {key: value for name in names if name != "STEER" for key, value in parts[name].items()}
        steer = "STEER" in names
        out[method] = {"regularizers": regularizers, "end_time": "steer" if steer else None,
                       "end_time_options": {"b": w["steer_b"]} if steer else {}}
    return out


def run_task(task: str, seeds: list[int], quick: bool) -> dict[str, list[Any]]:
    if task == "digits":
        base, run = digits.TrainConfig(), digits.train_digits
    else:
        base, run = timeseries.SeriesConfig(), timeseries.train_timeseries
    if quick:
        base = replace(base, **QUICK[task])
    return compare_configs(variants(task), base, seeds, run=lambda config: run(config, progress=False))


# ----------------------------------------------------------------------------------------- tables


def table(task: str, results: dict[str, list[Any]]) -> str:
    """Our row (mean +- std over seeds) and the paper's under it, per method."""
    columns = COLUMNS if task == "digits" else SERIES_COLUMNS
    header = ["method", "", *(c[0] for c in columns)]
    rows = []
    for method, runs in results.items():
        rows.append([method, "here", *(mean_std([getattr(r, attr) for r in runs], fmt) for _, attr, fmt in columns)])
        rows.append(["", "paper", *PAPER[task][method]])
    return format_rows(header, rows)


def against_vanilla(task: str, results: dict[str, list[Any]]) -> list[str]:
    """Per method: prediction NFE, the test metric and the training time against vanilla, here and in the paper."""
    def mean(runs: list[Any], attr: str) -> float:
        return statistics.fmean(getattr(r, attr) for r in runs)

    def number(text: str) -> float:
        return float(text.split()[0])

    metric = "test_accuracy" if task == "digits" else "test_loss_e3"
    unit = "points" if task == "digits" else "x 1e-3"
    vanilla, paper_vanilla = results["vanilla"], PAPER[task]["vanilla"]
    lines = []
    for method, runs in results.items():
        if method == "vanilla":
            continue
        paper = PAPER[task][method]
        nfe = mean(runs, "nfe_predict") / mean(vanilla, "nfe_predict") - 1
        paper_nfe = number(paper[4]) / number(paper_vanilla[4]) - 1
        change = mean(runs, metric) - mean(vanilla, metric)
        paper_change = number(paper[1]) - number(paper_vanilla[1])
        slower = mean(runs, "train_time_s") / mean(vanilla, "train_time_s")
        paper_slower = number(paper[2]) / number(paper_vanilla[2])
        lines.append(f"{method:16s} NFE {nfe:+6.0%} (paper {paper_nfe:+4.0%}), test {metric.split('_')[1]} "
                     f"{change:+.2f} {unit} (paper {paper_change:+.2f}), training time x{slower:.2f} "
                     f"(paper x{paper_slower:.2f})")
    return lines


# ------------------------------------------------------------------------------------------- plot


def _per_epoch_loss(result: Any) -> list[float]:
    losses = result.iterations.loss
    epochs = len(result.history)
    per = len(losses) // epochs
    return [statistics.fmean(losses[e * per:(e + 1) * per]) for e in range(epochs)]


def plot(task: str, results: dict[str, list[Any]], path: Path, title: str) -> None:
    """Training NFE per epoch (mean over seeds, band over seeds) and training loss, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6))
    colors = plt.get_cmap("tab10")
    for i, (method, runs) in enumerate(results.items()):
        epochs = range(1, len(runs[0].history) + 1)
        nfe = [[h["mean_nfe"] for h in r.history] for r in runs]
        mean = [statistics.fmean(column) for column in zip(*nfe)]
        style = "--" if "STEER" in method and method != "STEER" else "-"
        left.plot(epochs, mean, style, color=colors(i), label=method, linewidth=1.6, marker="o", markersize=2.5)
        left.fill_between(epochs, [min(c) for c in zip(*nfe)], [max(c) for c in zip(*nfe)], color=colors(i),
                          alpha=0.12, linewidth=0)
        losses = [statistics.fmean(column) for column in zip(*(_per_epoch_loss(r) for r in runs))]
        right.plot(epochs, losses, style, color=colors(i), label=method, linewidth=1.6, marker="o", markersize=2.5)
    from matplotlib.ticker import MaxNLocator

    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set(xlabel="epoch", ylabel="forward NFE per training solve (epoch mean)", title="NFE over training")
    right.set(xlabel="epoch", ylabel="training loss (epoch mean)", yscale="log",
              title=("cross-entropy" if task == "digits" else "masked MSE") + " (without the penalties)")
    left.legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated among {', '.join(TASKS)}")
    parser.add_argument("--seeds", type=at_least_one, default=3, help="training seeds 0..N-1 (default 3)")
    add_figure_options(parser, DEFAULT_PLOT, "smoke run: 1 seed, 1 epoch, 200 series (the task's name is added to "
                                             "the figure's file name)")
    parser.add_argument("--json", metavar="PATH", type=json_file, help="save every run's result as JSON")
    args = parser.parse_args(argv)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks or set(tasks) - set(TASKS):
        parser.error(f"--tasks: choose among {', '.join(TASKS)}, got {args.tasks!r}")
    plot_path = figure_path(parser, args, DEFAULT_PLOT)
    torch.set_num_threads(1)
    seeds = [0] if args.quick else list(range(args.seeds))
    print(f"torch {torch.__version__}; seeds {seeds[0]}..{seeds[-1]} (paired: same initial weights and batches per "
          "seed across methods), one thread; weights (constant): " + "; ".join(
              f"{task}: " + ", ".join(f"{k} {v}" for k, v in WEIGHTS[task].items()) for task in tasks))
    everything = {}
    for task in tasks:
        start = time.perf_counter()
        results = run_task(task, seeds, args.quick)
        wall = time.perf_counter() - start
        everything[task] = results
        what = ("digits classifier (Table 1: accuracy %)" if task == "digits"
                else "latent-ODE interpolation of synthetic series (Table 2: masked MSE x 1e-3)")
        print(f"\n{task}: {what}; {len(METHODS) * len(seeds)} runs in {wall:.0f} s ({wall / 60:.1f} min)")
        print(table(task, results))
        print("\nagainst vanilla:")
        print("\n".join(against_vanilla(task, results)))
        if plot_path is not None:
            path = plot_path.with_name(f"{plot_path.stem}_{task}{plot_path.suffix}")
            plot(task, results, path, f"seed 004 on {task}: {len(seeds)} seed(s), weights {WEIGHTS[task]}")
            print(f"figure written to {path}")
    if args.json:
        Path(args.json).write_text(json.dumps({task: {m: [r.as_dict() for r in runs] for m, runs in res.items()}
                                               for task, res in everything.items()}))
        print(f"\nresults written to {args.json}")


if __name__ == "__main__":
    main()
