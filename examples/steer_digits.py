"""Seed 003 (STEER, Ghosh et al. 2020, section 4.3) on scikit-learn's digits: a random end time in training.

Model: the digits task of ``nde_plugins/experiments/digits.py`` (the 8x8 image is z(0), the field
tanh(W2 tanh(W1 [z; t])) with 100 hidden units, dopri5 at rtol = atol = 1.4e-8 on [0, 1], a linear
head on z(1); Adam 3e-3, batch 128). Three variants, paired by seed (same initial weights and
batches): vanilla; STEER, every training solve ending at T ~ U(1 - b, 1 + b); and STEER plus the
error-estimate regularizer (seed 004, weight 0.1). Evaluation always integrates to t1 = 1.

Reported, mean +- std over seeds: test accuracy, prediction NFE (one solve of the test set), the mean
training NFE per batch in the last epoch, and training time. Then the property the paper states
for STEER (its section 3.2, Fig. 2): the state has settled by t1 - b, so test accuracy is about
the same for every end time T in [t1 - b, t1 + b], whereas a vanilla model is tuned to T = t1.
The figure (``--plot``, by default docs/figures/steer_digits.png) draws that accuracy against T on
nine points of [t1 - b, t1 + b] and the training NFE per batch over the epochs.

    python examples/steer_digits.py [--seeds 3] [--epochs 15] [--b 0.5] [--workers 2] [--plot PATH | --no-plot]
                                    [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

from nde_plugins.experiments.compare import format_rows, mean_std
from nde_plugins.experiments.digits import (
    TrainConfig,
    TrainResult,
    accuracy_over_end_times,
    fit_digits,
    load_digits_split,
)
from nde_plugins.experiments.script import add_figure_options, at_least_one, figure_path

DEFAULT_PLOT = Path(__file__).resolve().parents[1] / "docs" / "figures" / "steer_digits.png"
#: End times of the figure: nine points over [t1 - b, t1 + b]; the table shows every second one.
END_TIME_POINTS = 9


def variants(b: float) -> dict[str, dict]:
    steer = {"end_time": "steer", "end_time_options": {"b": b}}
    return {
        "vanilla": {},
        f"STEER (b={b:g})": steer,
        f"STEER (b={b:g}) + error_estimate (0.1)": {**steer, "regularizers": {"error_estimate": 0.1}},
    }


def _init_worker() -> None:
    torch.set_num_threads(1)


def _run(job: tuple[TrainConfig, list[float]]) -> tuple[TrainResult, list[float]]:
    """Train one model; return its report and its test accuracy at each end time (models stay in the worker)."""
    config, times = job
    model, result = fit_digits(config, progress=False)
    _, _, x_test, y_test = load_digits_split()
    return result, accuracy_over_end_times(model, x_test, y_test, times)


def run_all(jobs: list[tuple[TrainConfig, list[float]]], workers: int) -> list[tuple[TrainResult, list[float]]]:
    """Every job, in order; in ``workers`` processes (spawned: torch and fork do not mix well)."""
    if workers == 1:
        _init_worker()
        return [_run(job) for job in jobs]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
        return list(pool.map(_run, jobs))


def end_times(b: float) -> list[float]:
    """``END_TIME_POINTS`` evenly spaced end times from t1 - b to t1 + b (t1 = 1), t1 in the middle."""
    step = 2 * b / (END_TIME_POINTS - 1)
    return [1 - b + i * step for i in range(END_TIME_POINTS)]


def results_table(out: dict, named: list[str], seeds: list[int]) -> str:
    header = ["variant", "test acc %", "train acc %", "prediction NFE", "train NFE/batch (last epoch)",
              "train time s"]
    rows = []
    for name in named:
        runs = [out[name, seed][0] for seed in seeds]
        rows.append([
            name,
            mean_std([r.test_accuracy for r in runs], "{:.2f}"),
            mean_std([r.train_accuracy for r in runs], "{:.2f}"),
            mean_std([r.nfe_predict for r in runs], "{:.1f}"),
            mean_std([r.history[-1]["mean_nfe"] for r in runs], "{:.1f}"),
            mean_std([r.train_time_s for r in runs], "{:.1f}"),
        ])
    return format_rows(header, rows)


def end_time_table(out: dict, named: list[str], seeds: list[int], times: list[float]) -> str:
    """Accuracy at every second end time of ``times`` (mean +- std), and the spread over all of them."""
    header = ["variant", *(f"T={t:g}" for t in times[::2]), "spread"]
    rows = []
    for name in named:
        per_t = [[out[name, seed][1][i] for seed in seeds] for i in range(len(times))]
        means = [statistics.fmean(values) for values in per_t]
        rows.append([name, *(mean_std(values, "{:.2f}") for values in per_t[::2]), f"{max(means) - min(means):.2f}"])
    return format_rows(header, rows)


def plot(out: dict, named: list[str], seeds: list[int], times: list[float], b: float, path: Path,
         title: str) -> None:
    """Test accuracy against the end time T per variant, and the training NFE per batch over the epochs."""
    from nde_plugins.plots import Curves, plot_curves

    accuracy = {name: (times, [[out[name, seed][1][i] for seed in seeds] for i in range(len(times))])
                for name in named}
    epochs = [entry["epoch"] for entry in out[named[0], seeds[0]][0].history]
    nfe = {}
    for name in named:
        runs = [out[name, seed][0] for seed in seeds]
        predict = statistics.fmean(r.nfe_predict for r in runs)
        nfe[f"{name} (prediction NFE {predict:.0f})"] = (
            epochs, [[r.history[e]["mean_nfe"] for r in runs] for e in range(len(epochs))])
    marks = {1 - b: "t1 - b", 1.0: "t1 = 1 (training target, evaluation)", 1 + b: "t1 + b"}
    panels = [
        Curves(f"test accuracy with the solve stopped at T (b = {b:g})", "end time T", "test accuracy %", accuracy,
               marks=marks),
        Curves("training solves: mean NFE per batch", "epoch", "forward NFE per batch", nfe, legend_loc="upper left",
               ylim=(0.0, 1.45 * max(v for _, runs in nfe.values() for seeds_at in runs for v in seeds_at))),
    ]
    spread = "error bars: ±1 std over seeds" if len(seeds) > 1 else "one seed"
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_curves(panels, str(path), title, caption=f"Lines: mean over seeds {seeds[0]}..{seeds[-1]}; {spread}. "
                "STEER trains with T ~ U(1 - b, 1 + b), the vanilla model with T = 1; a model whose state has "
                "settled by t1 - b keeps its accuracy over the whole interval.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=at_least_one, default=3, help="training seeds 0..N-1 (default 3)")
    parser.add_argument("--epochs", type=at_least_one, default=15, help="epochs of Adam (default 15)")
    parser.add_argument("--b", type=float, default=0.5, help="STEER half-width, 0 < b < 1 (default 0.5)")
    parser.add_argument("--workers", type=at_least_one, default=2, help="processes, one thread each (default 2)")
    add_figure_options(parser, DEFAULT_PLOT, "smoke run: 1 seed, 1 epoch")
    args = parser.parse_args(argv)
    if not 0 < args.b < 1:
        parser.error(f"argument --b: must satisfy 0 < b < |t1 - t0| = 1, got {args.b:g}")
    path = figure_path(parser, args, DEFAULT_PLOT)
    seeds, epochs = ([0], 1) if args.quick else (list(range(args.seeds)), args.epochs)
    base = TrainConfig(epochs=epochs)
    b = args.b
    times = end_times(b)
    named = variants(b)
    keys = [(name, seed) for seed in seeds for name in named]
    jobs = [(replace(base, seed=seed, **named[name]), times) for name, seed in keys]
    start = time.perf_counter()
    out = dict(zip(keys, run_all(jobs, args.workers)))
    wall = time.perf_counter() - start

    header = (f"torch {torch.__version__}; seed 003 STEER on digits (fixed 80/20 split), field tanh MLP 64+1-"
              f"{base.hidden}-64, {base.method} rtol {base.rtol:g} atol {base.atol:g} on [0, 1], Adam {base.lr:g}, "
              f"batch {base.batch_size}, {epochs} epoch(s), seeds {seeds[0]}-{seeds[-1]} (paired); STEER T ~ "
              f"U(1 - b, 1 + b) with b = {b:g} in training, T = 1 in evaluation; {args.workers} worker process(es), "
              f"1 thread each; {len(jobs)} runs, {wall:.0f} s wall")
    print(header)
    print()
    print(results_table(out, list(named), seeds))
    print()
    print("Test accuracy % with the solve stopped at T (t1 - b ... t1 + b; mean +- std over seeds); spread = "
          "max - min over T of the mean:")
    print(end_time_table(out, list(named), seeds, times))
    if path is not None:
        plot(out, list(named), seeds, times, b, path, header)
        print(f"\nfigure written to {path}")


if __name__ == "__main__":
    main()
