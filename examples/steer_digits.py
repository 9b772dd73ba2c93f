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

    python examples/steer_digits.py [--seeds 3] [--epochs 15] [--b 0.5] [--workers 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import torch

from nde_plugins.experiments.compare import format_rows, mean_std
from nde_plugins.experiments.digits import (
    TrainConfig,
    TrainResult,
    accuracy_over_end_times,
    fit_digits,
    load_digits_split,
)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--b", type=float, default=0.5, help="STEER half-width, 0 < b < 1 (default 0.5)")
    parser.add_argument("--workers", type=int, default=2, help="processes, one thread each (default 2)")
    args = parser.parse_args()
    if not 0 < args.b < 1:
        parser.error(f"--b must satisfy 0 < b < |t1 - t0| = 1, got {args.b:g}")
    base = TrainConfig(epochs=args.epochs)
    b = args.b
    times = [1 - b, 1 - b / 2, 1.0, 1 + b / 2, 1 + b]
    named = variants(b)
    keys = [(name, seed) for seed in range(args.seeds) for name in named]
    jobs = [(replace(base, seed=seed, **named[name]), times) for name, seed in keys]
    start = time.perf_counter()
    out = dict(zip(keys, run_all(jobs, args.workers)))
    wall = time.perf_counter() - start

    print(f"torch {torch.__version__}; seed 003 STEER on digits (fixed 80/20 split), field tanh MLP 64+1-"
          f"{base.hidden}-64, {base.method} rtol {base.rtol:g} atol {base.atol:g} on [0, 1], Adam {base.lr:g}, batch "
          f"{base.batch_size}, {args.epochs} epochs, seeds 0-{args.seeds - 1} (paired); STEER T ~ U(1 - b, 1 + b) with "
          f"b = {b:g} in training, T = 1 in evaluation; {args.workers} worker process(es), 1 thread each; "
          f"{len(jobs)} runs, {wall:.0f} s wall")
    print()
    header = ["variant", "test acc %", "train acc %", "prediction NFE", "train NFE/batch (last epoch)",
              "train time s"]
    rows = []
    for name in named:
        runs = [out[name, seed][0] for seed in range(args.seeds)]
        rows.append([
            name,
            mean_std([r.test_accuracy for r in runs], "{:.2f}"),
            mean_std([r.train_accuracy for r in runs], "{:.2f}"),
            mean_std([r.nfe_predict for r in runs], "{:.1f}"),
            mean_std([r.history[-1]["mean_nfe"] for r in runs], "{:.1f}"),
            mean_std([r.train_time_s for r in runs], "{:.1f}"),
        ])
    print(format_rows(header, rows))
    print()
    print("Test accuracy % with the solve stopped at T (t1 - b ... t1 + b; mean +- std over seeds); spread = "
          "max - min over T of the mean:")
    header = ["variant", *(f"T={t:g}" for t in times), "spread"]
    rows = []
    for name in named:
        per_t = [[out[name, seed][1][i] for seed in range(args.seeds)] for i in range(len(times))]
        means = [statistics.fmean(values) for values in per_t]
        rows.append([name, *(mean_std(values, "{:.2f}") for values in per_t), f"{max(means) - min(means):.2f}"])
    print(format_rows(header, rows))


if __name__ == "__main__":
    main()
