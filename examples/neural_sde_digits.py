"""Seed 000 (Neural SDE, Liu et al.) on scikit-learn's digits: noise injection as a one-word choice.

Model: the 8x8 image is the initial state h(0) (64 values in [0, 1]); dh = f(h, t) dt + G(h, t) dB
with f = tanh(W2 tanh(W1 [h; t])) (100 hidden units), Euler-Maruyama with dt = 0.1 on [0, 1] as in
the paper, then a linear head. G is ``none`` (the Neural ODE), ``additive``, ``multiplicative`` or
``dropout``. Training is noisy; evaluation either turns the noise off or, with test-time noise (TTN),
averages the softmax of 10 noisy passes.

Reported per variant, mean +- std over seeds: clean test accuracy, accuracy under Gaussian input
noise, under an L-infinity FGSM attack and under PGD (random start, 10 steps). Attacks on a TTN model
differentiate through its averaged prediction with fresh noise at every step. The figure (``--plot``,
by default docs/figures/neural_sde_digits.png) draws the four accuracies as bars per variant.

    python examples/neural_sde_digits.py [--seeds 3] [--epochs 15] [--plot PATH | --no-plot] [--quick]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import nde_plugins as nde
from nde_plugins.experiments.attacks import accuracy, fgsm, pgd
from nde_plugins.experiments.compare import format_rows, mean_std
from nde_plugins.experiments.digits import TimeConcatField, load_digits_split
from nde_plugins.experiments.script import add_figure_options, at_least_one, figure_path

DEFAULT_PLOT = Path(__file__).resolve().parents[1] / "docs" / "figures" / "neural_sde_digits.png"

DIFFUSIONS = {
    "ODE (none)": ("none", {}),
    "additive (sigma=0.2)": ("additive", {"sigma": 0.2}),
    "multiplicative (sigma=0.2)": ("multiplicative", {"sigma": 0.2}),
    "dropout (p=0.9)": ("dropout", {"p": 0.9}),
}


class NeuralSDEClassifier(torch.nn.Module):
    def __init__(self, diffusion: str, options: dict, seed: int, ttn: bool) -> None:
        super().__init__()
        self.block = nde.SDEBlock(TimeConcatField(64, 100), diffusion, options, dt=0.1, seed=seed,
                                  test_time_noise=ttn, samples=10)
        self.head = torch.nn.Linear(64, 10)

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the predicted class probabilities (averaged over TTN samples in eval mode)."""
        if self.training or not self.block.test_time_noise:
            return F.log_softmax(self.head(self.block(x)), dim=-1)
        probs = F.softmax(self.head(self.block(x, return_samples=True)), dim=-1).mean(0)
        return probs.clamp_min(1e-12).log()


def train(diffusion: str, options: dict, seed: int, epochs: int) -> tuple[NeuralSDEClassifier, float]:
    x_train, y_train, _, _ = load_digits_split()
    torch.manual_seed(seed)
    model = NeuralSDEClassifier(diffusion, options, seed, ttn=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(x_train), generator=generator)
        for i in range(0, len(order), 128):
            idx = order[i:i + 128]
            loss = F.nll_loss(model.log_probs(x_train[idx]), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model, time.perf_counter() - start


def evaluate(model: NeuralSDEClassifier, seed: int, args) -> dict[str, float]:
    _, _, x_test, y_test = load_digits_split()
    model.eval()
    g = torch.Generator().manual_seed(1000 + seed)
    noisy = x_test + args.input_noise * torch.randn(x_test.shape, generator=g)
    # The attacks as this example has always run them: NLL of the (TTN-averaged) log-probabilities,
    # no clipping to the pixel box.
    attack = {"loss": F.nll_loss, "box": None}
    return {
        "clean": accuracy(model.log_probs, x_test, y_test),
        "gaussian": accuracy(model.log_probs, noisy, y_test),
        "fgsm": accuracy(model.log_probs, fgsm(model.log_probs, x_test, y_test, args.eps, **attack), y_test),
        "pgd": accuracy(model.log_probs, pgd(model.log_probs, x_test, y_test, args.eps, args.eps / 4, 10,
                                             generator=g, **attack), y_test),
    }


#: (header, key, format) of the table and of the figure's panels.
COLUMNS = (("clean acc %", "clean", "{:.2f}"), ("gaussian noise %", "gaussian", "{:.2f}"),
           ("FGSM %", "fgsm", "{:.2f}"), ("PGD %", "pgd", "{:.2f}"))


def run_all(seeds: list[int], epochs: int, args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """Variant name -> one row of accuracies per seed; a noisy model is also evaluated with TTN."""
    rows: dict[str, list[dict[str, float]]] = {}
    for seed in seeds:
        for label, (diffusion, options) in DIFFUSIONS.items():
            model, train_time = train(diffusion, options, seed, epochs)
            rows.setdefault(label, []).append({**evaluate(model, seed, args), "train s": train_time})
            if diffusion != "none":
                model.block.test_time_noise = True  # same trained weights, evaluated with TTN
                rows.setdefault(f"{label} + TTN", []).append(evaluate(model, seed, args))
    return rows


def plot(rows: dict[str, list[dict[str, float]]], path: Path, title: str) -> None:
    """Bars of clean, noisy-input, FGSM and PGD accuracy per variant (mean, std as error bars, seeds as dots)."""
    from nde_plugins.plots import plot_comparison

    path.parent.mkdir(parents=True, exist_ok=True)
    # Clean and noisy-input accuracies differ by tenths of a point: their panels zoom in.
    plot_comparison(rows, COLUMNS, str(path), title, value=lambda row, key: row[key], zoom=("clean", "gaussian"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=at_least_one, default=3, help="training seeds 0..N-1 (default 3)")
    parser.add_argument("--epochs", type=at_least_one, default=15, help="epochs of Adam (default 15)")
    parser.add_argument("--eps", type=float, default=0.1, help="L-infinity attack radius (pixels in [0, 1])")
    parser.add_argument("--input-noise", type=float, default=0.2, help="std of the Gaussian input noise")
    add_figure_options(parser, DEFAULT_PLOT, "smoke run: 1 seed, 1 epoch")
    args = parser.parse_args(argv)
    path = figure_path(parser, args, DEFAULT_PLOT)
    torch.set_num_threads(1)
    seeds, epochs = ([0], 1) if args.quick else (list(range(args.seeds)), args.epochs)
    start = time.perf_counter()
    rows = run_all(seeds, epochs, args)
    wall = time.perf_counter() - start
    header = (f"torch {torch.__version__}; digits, Euler-Maruyama dt=0.1 on [0, 1], {epochs} epoch(s), Adam 3e-3, "
              f"seeds {seeds[0]}..{seeds[-1]}; Gaussian input noise std {args.input_noise:g}, FGSM/PGD eps "
              f"{args.eps:g} (PGD: 10 steps of eps/4, random start); TTN = mean softmax of 10 noisy passes; "
              f"one thread, {wall:.0f} s wall")
    print(header)
    table = [[label, *(mean_std([r[key] for r in runs], fmt) for _, key, fmt in COLUMNS)]
             for label, runs in rows.items()]
    print(format_rows(["model", *(name for name, _, _ in COLUMNS)], table))
    if path is not None:
        plot(rows, path, header)
        print(f"\nfigure written to {path}")


if __name__ == "__main__":
    main()
