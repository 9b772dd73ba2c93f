"""Seed 004 (ERNODE / SRNODE, Pal et al.) on scikit-learn's digits: regularizing the solver's own heuristics.

Model: the digits task of ``nde_plugins/experiments/digits.py`` (the 8x8 image is z(0), the field
tanh(W2 tanh(W1 [z; t])) with 100 hidden units, dopri5 at rtol = atol = 1.4e-8 on [0, 1], a linear
head on z(1); Adam 3e-3, batch 128, 15 epochs). Four variants, paired by seed (same initial weights
and batches): vanilla; the error-estimate regularizer R_E = sum_j E_j |h_j| (weight 0.1); the
stiffness regularizer R_S = sum_j S_j (the paper's weight 0.0285); and both. One argument of the
block each: ``regularizers={"error_estimate": 0.1}``.

Printed: mean +- std over seeds of train / test accuracy, training time, prediction time and
prediction NFE (one solve over the 360 test images), then each regularizer against vanilla (the
paper's Table 1 columns). ``--plot`` draws prediction NFE, test accuracy and training time as bars.
The weight sweep and the pass / fail targets are in ``benchmarks/digits_regularizers.py``; the same
table comes from ``nde-plugins train --task digits --compare vanilla,error_estimate,stiffness,...``.

    python examples/regularizers_digits.py [--seeds 3] [--epochs 15] [--plot PATH | --no-plot] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from nde_plugins.cli import DEFAULT_WEIGHTS
from nde_plugins.experiments.compare import compare, format_table
from nde_plugins.experiments.digits import TrainConfig, TrainResult, train_digits
from nde_plugins.experiments.script import add_figure_options, at_least_one, figure_path

DEFAULT_PLOT = Path(__file__).resolve().parents[1] / "docs" / "figures" / "regularizers_digits.png"


def variants() -> dict[str, dict]:
    """Variant name -> the block's ``regularizers`` argument."""
    ee, st = DEFAULT_WEIGHTS["error_estimate"], DEFAULT_WEIGHTS["stiffness"]
    return {
        "vanilla": {},
        f"error_estimate ({ee:g})": {"error_estimate": ee},
        f"stiffness ({st:g})": {"stiffness": st},
        "error_estimate + stiffness": {"error_estimate": ee, "stiffness": st},
    }


def quiet(config: TrainConfig) -> TrainResult:
    return train_digits(config, progress=False)


def against_vanilla(results: dict[str, list[TrainResult]]) -> list[str]:
    """One line per regularized variant: prediction NFE change, test accuracy change, training time ratio."""

    def mean(runs: list[TrainResult], attr: str) -> float:
        return statistics.fmean(getattr(r, attr) for r in runs)

    vanilla = results["vanilla"]
    lines = []
    for name, runs in results.items():
        if name == "vanilla":
            continue
        nfe = mean(runs, "nfe_predict") / mean(vanilla, "nfe_predict") - 1
        accuracy = mean(runs, "test_accuracy") - mean(vanilla, "test_accuracy")
        train = mean(runs, "train_time_s") / mean(vanilla, "train_time_s")
        lines.append(f"{name} vs vanilla: prediction NFE {nfe:+.1%}, test accuracy {accuracy:+.2f} points, "
                     f"training time x{train:.2f}")
    return lines


# ------------------------------------------------------------------------------------------- plot


#: The figure's panels: (title, TrainResult attribute, format of the mean written on each bar).
PANELS = (("prediction NFE", "nfe_predict", "{:.1f}"), ("test accuracy %", "test_accuracy", "{:.2f}"),
           ("training time s", "train_time_s", "{:.1f}"))


def plot(results: dict[str, list[TrainResult]], path: Path, title: str) -> None:
    """Bars of the PANELS per variant (mean, one std as error bars, each seed as a dot)."""
    from nde_plugins.plots import plot_comparison

    path.parent.mkdir(parents=True, exist_ok=True)
    plot_comparison(results, PANELS, str(path), title, zoom=("test_accuracy",))


# ------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=at_least_one, default=3, help="training seeds 0..N-1 (default 3)")
    parser.add_argument("--epochs", type=at_least_one, default=15, help="epochs of Adam (default 15)")
    add_figure_options(parser, DEFAULT_PLOT, "smoke run in seconds: 1 seed, 1 epoch")
    args = parser.parse_args(argv)
    path = figure_path(parser, args, DEFAULT_PLOT)
    torch.set_num_threads(1)
    seeds, epochs = ([0], 1) if args.quick else (list(range(args.seeds)), args.epochs)
    base = TrainConfig(epochs=epochs)
    start = time.perf_counter()
    results = compare(variants(), base, seeds, run=quiet)
    wall = time.perf_counter() - start

    header = (f"torch {torch.__version__}; digits (fixed 80/20 split), {base.method} rtol=atol={base.rtol:g} on "
              f"[0, 1], {epochs} epoch(s), Adam {base.lr:g}, batch {base.batch_size}, seeds {seeds[0]}..{seeds[-1]} "
              f"(paired), one thread, {wall:.0f} s wall")
    print(header)
    print()
    print(format_table(results))
    print()
    print("\n".join(against_vanilla(results)))
    if path is not None:
        plot(results, path, header)
        print(f"\nfigure written to {path}")


if __name__ == "__main__":
    main()
