"""Are meta-solver models proper ODEs? The proper-ODE check on digits for every built-in family (seed 002 on seed 001).

Trains the digits ODE classifier (``nde_plugins.experiments.digits``) with each built-in family's
default member on a coarse fixed grid of K steps, then checks it with the training method and rk4
at 0.5x to 2x the training steps (f > 1 finer). A user of the meta-solver sees whether the trained
model depends on its solver. The figure (``--plot``, by default
docs/figures/proper_ode_digits_families.png) draws each family's test accuracy against the test
solver's step, for the family's own method and for rk4.

    python examples/proper_ode_digits_families.py [--steps 2] [--epochs 5] [--seed 0] [--plot PATH | --no-plot]
                                                  [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from nde_plugins.experiments.digits import TrainConfig, fit_digits, load_digits_split
from nde_plugins.experiments.script import add_figure_options, at_least_one, figure_path
from nde_plugins.proper_ode import CheckReport, proper_ode_check

FAMILIES = ("rk2", "rk3", "rk4_u1", "rk4_u2", "rk4_u3", "rk4_uv")
DEFAULT_PLOT = Path(__file__).resolve().parents[1] / "docs" / "figures" / "proper_ode_digits_families.png"
#: The test solver every family is also checked with.
REFERENCE = "rk4"


def check_families(steps: int, epochs: int, seed: int) -> dict[str, tuple[float, CheckReport]]:
    """Family -> (train accuracy %, proper-ODE check on the test set) of a model trained with its default member."""
    _, _, x_test, y_test = load_digits_split()
    out = {}
    for family in FAMILIES:
        config = TrainConfig(method=family, step_size=1.0 / steps, epochs=epochs, seed=seed)
        model, result = fit_digits(config, progress=False)
        out[family] = result.train_accuracy, proper_ode_check(model, model.block, (x_test, y_test))
    return out


def accuracy_by_step(report: CheckReport, own: bool) -> tuple[list[float], list[float]]:
    """(test step sizes, test accuracies %) of the family's own test solver or of rk4, coarsest step first.

    Several step factors can round to the same number of steps; each step appears once.
    """
    by_steps: dict[int, float] = {}
    for row in report.rows:
        if (row.solver != REFERENCE) == own and row.steps is not None:
            by_steps.setdefault(row.steps, 100 * row.value)
    ordered = sorted(by_steps)
    return [1.0 / k for k in ordered], [by_steps[k] for k in ordered]


def plot(checks: dict[str, tuple[float, CheckReport]], steps: int, path: Path, title: str) -> None:
    """Two panels (the family's own method, rk4): test accuracy against the test step, one line per family."""
    from nde_plugins.plots import Curves, plot_curves

    panels = []
    ticks: dict[float, str] = {}
    ylim = _honest_range([100 * r.value for _, report in checks.values() for r in report.rows])
    for own in (True, False):
        lines = {}
        for family, (_, report) in checks.items():
            hs, accuracies = accuracy_by_step(report, own)
            ticks |= {h: "1" if h == 1 else f"1/{round(1 / h)}" for h in hs}
            name = f"{family}: {report.verdict}, worst gap {100 * report.worst_gap:.1f} points" if own else family
            lines[name] = (hs, [[a] for a in accuracies])
        solver = "the family's own method (its default member)" if own else REFERENCE
        panels.append(Curves(f"test solver: {solver}", "test step h on [0, 1] (log scale)", "test accuracy %", lines,
                             xscale="log", marks={1.0 / steps: f"training step 1/{steps}"}, xticks=ticks,
                             ylim=ylim, legend_loc="lower left"))
    path.parent.mkdir(parents=True, exist_ok=True)
    images = len(load_digits_split()[3])
    plot_curves(panels, str(path), title, caption="Each model is trained once (one seed) with its family's default "
                "member on the fixed grid of the training step, then evaluated on the test set with the other steps "
                f"({images} images: one image is {100 / images:.2f} points). ODE-like: every test solver of equal or "
                "smaller error (steps at least the training ones) stays within 10 points of the training solver's "
                "accuracy.")


def _honest_range(values: list[float]) -> tuple[float, float]:
    """A y-range from 3.5 points under ``values`` to 1 point over them: differences of one or two test
    images look as small as they are next to the 10-point threshold, and the legend fits underneath."""
    return max(0.0, min(values) - 3.5), min(100.0, max(values) + 1.0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=at_least_one, default=2, help="training steps K on [0, 1] (default 2)")
    parser.add_argument("--epochs", type=at_least_one, default=5, help="epochs of Adam (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    add_figure_options(parser, DEFAULT_PLOT, "smoke run: 1 epoch")
    args = parser.parse_args(argv)
    path = figure_path(parser, args, DEFAULT_PLOT)
    torch.set_num_threads(1)
    epochs = 1 if args.quick else args.epochs
    start = time.perf_counter()
    checks = check_families(args.steps, epochs, args.seed)
    wall = time.perf_counter() - start
    header = (f"torch {torch.__version__}; digits ODE classifier, each family's default member at K = {args.steps} "
              f"fixed steps on [0, 1], {epochs} epoch(s), seed {args.seed}; check: the method itself and {REFERENCE} "
              f"at 0.5x-2x the training steps (f > 1 finer), threshold 10 points; {wall:.0f} s wall")
    print(header)
    print(f"{'family':8s} {'train acc %':>11s} {'test acc %':>10s} {'worst gap':>9s}  verdict")
    for family, (train_accuracy, report) in checks.items():
        print(f"{family:8s} {train_accuracy:11.2f} {100 * report.training_value:10.2f} "
              f"{100 * report.worst_gap:9.2f}  {report.verdict}")
    if path is not None:
        plot(checks, args.steps, path, header)
        print(f"\nfigure written to {path}")


if __name__ == "__main__":
    main()
