"""Seed 004 (ERNSDE) spiral SDE: fit a Neural SDE to the moments of simulated trajectories.

Data (seed 004, eq. 15): du1 = (-a u1^3 + b u2^3) dt + g u1 dW1, du2 = (-b u1^3 - a u2^3) dt + g u2 dW2
with a = 0.1, b = 2.0, g = 0.2, u(0) = (2, 0), observed at 30 times on [0, 1]; the targets are the
mean and variance over 10,000 simulated paths. The model is a Neural SDE with drift
MLP(u^3) (2 -> 50 -> 2) and a learnable multiplicative diffusion, solved by adaptive
Euler-Maruyama (torchsde's step doubling); each iteration simulates 100 paths and the loss is the
squared error of their mean and variance against the targets. Compared: vanilla vs the error-estimate
regularizer (ERNSDE), with the error ratios rebuilt with their graph from torchsde's full and half
steps. Reported: final loss (on 1,000 fresh paths), prediction NFE (drift evaluations of that solve),
training time. The figure (``--plot``, by default docs/figures/spiral_sde.png) draws the mean path of
the data and of each fitted model (seed 0) in the phase plane, and the final loss and prediction NFE
against the weight.

    python examples/spiral_sde.py [--seeds 3] [--iterations 300] [--weights 0.01,0.03,0.1,1]
                                  [--plot PATH | --no-plot] [--quick]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import torch
import torchsde

import nde_plugins as nde
from nde_plugins.experiments.compare import format_rows, mean_std
from nde_plugins.experiments.script import add_figure_options, at_least_one, figure_path

A, B, G = 0.1, 2.0, 0.2
U0 = torch.tensor([2.0, 0.0])
TIMES = torch.linspace(0.0, 1.0, 30)
DEFAULT_PLOT = Path(__file__).resolve().parents[1] / "docs" / "figures" / "spiral_sde.png"
QUICK_ITERATIONS = 10


class TrueSpiral(torch.nn.Module):
    noise_type, sde_type = "diagonal", "ito"

    def f(self, t, u):
        u1, u2 = u[:, :1], u[:, 1:]
        return torch.cat([-A * u1**3 + B * u2**3, -B * u1**3 - A * u2**3], dim=1)

    def g(self, t, u):
        return G * u


def target_moments(n_paths: int = 10_000) -> tuple[torch.Tensor, torch.Tensor]:
    u0 = U0.expand(n_paths, 2)
    bm = torchsde.BrownianInterval(t0=0.0, t1=1.0, size=u0.shape, entropy=12345)
    with torch.no_grad():
        paths = torchsde.sdeint(TrueSpiral(), u0, TIMES, bm=bm, method="euler", dt=1e-3)
    return paths.mean(1), paths.var(1)


class CubicDrift(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 50), torch.nn.Tanh(), torch.nn.Linear(50, 2))

    def forward(self, t, u):
        return self.net(u**3)


def moments_loss(paths: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    return (paths.mean(1) - mean).square().mean() + (paths.var(1) - var).square().mean()


def fit(seed: int, weight: float, iterations: int, mean, var) -> dict:
    """Train one model; its final loss, prediction NFE, training time and ``"path"``, the mean over
    the 1,000 evaluation paths at each observation time, ``[[u1, u2], ...]``."""
    torch.manual_seed(seed)
    regularizers = {"error_estimate": weight} if weight else None
    block = nde.SDEBlock(CubicDrift(), "multiplicative", {"sigma": 0.1, "learnable": True}, t=TIMES, dt=0.05,
                         adaptive=True, rtol=1e-2, atol=1e-2, seed=seed, return_all=True, regularizers=regularizers)
    optimizer = torch.optim.Adam(block.parameters(), lr=1e-2)
    u0 = U0.expand(100, 2)
    start = time.perf_counter()
    for _ in range(iterations):
        loss = moments_loss(block(u0), mean, var)
        optimizer.zero_grad(set_to_none=True)
        (loss + block.regularization()).backward()
        optimizer.step()
    train_time = time.perf_counter() - start
    with torch.no_grad():
        block.train()  # keep the noise on: the model is a distribution over paths
        paths = block(U0.expand(1000, 2))
        final = moments_loss(paths, mean, var).item()
    return {"loss": final, "nfe": block.stats.nfe_forward, "train s": train_time, "path": paths.mean(1).tolist()}


def label(weight: float) -> str:
    return f"error_estimate ({weight:g})" if weight else "vanilla"


def run_all(seeds: list[int], weights: list[float], iterations: int, mean, var) -> dict[float, list[dict]]:
    """Weight -> one fit per seed (weight 0: vanilla)."""
    results: dict[float, list[dict]] = {}
    for seed in seeds:
        for w in weights:
            results.setdefault(w, []).append(fit(seed, w, iterations, mean, var))
    return results


def plot(results: dict[float, list[dict]], mean: torch.Tensor, path: Path, title: str) -> None:
    """The mean path in the phase plane (data and each weight's seed-0 model), final loss and prediction NFE
    against the weight (mean, std over seeds as error bars)."""
    from nde_plugins.plots import Curves, plot_curves

    weights = list(results)
    paths = {"data (10,000 paths)": ([float(u1) for u1, _ in mean.tolist()], [[float(u2)] for _, u2 in mean.tolist()])}
    for w, runs in results.items():
        paths[label(w)] = ([u1 for u1, _ in runs[0]["path"]], [[u2] for _, u2 in runs[0]["path"]])
    ticks = {float(i): f"{w:g}" if w else "0\n(vanilla)" for i, w in enumerate(weights)}
    positions = list(ticks)
    seeds = len(next(iter(results.values())))

    def against_weight(key: str) -> dict:
        return {"error_estimate weight": (positions, [[r[key] for r in results[w]] for w in weights])}

    panels = [
        Curves("mean path u(t), t in [0, 1], seed 0", "u1", "u2", paths, equal_aspect=True,
               styles={"data (10,000 paths)": {"color": "black", "linewidth": 3.0, "marker": None, "zorder": 0}}),
        Curves("final moment loss (1,000 fresh paths)", "error_estimate weight", "squared error of mean and variance",
               against_weight("loss"), yscale="log", xticks=ticks),
        Curves("prediction NFE (drift evaluations)", "error_estimate weight", "NFE", against_weight("nfe"),
               xticks=ticks),
    ]
    spread = f"error bars: ±1 std over {seeds} seeds" if seeds > 1 else "one seed"
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_curves(panels, str(path), title, caption=f"Loss and NFE: mean over seeds, {spread}. The model is a "
                "distribution over paths: its mean path is the mean of 1,000 noisy solves of the trained SDE.")


def _weights(text: str) -> list[float]:
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers > 0, got {text!r}") from None
    if not all(w > 0 for w in weights):  # 0 is the vanilla model, always run
        raise argparse.ArgumentTypeError(f"must be comma-separated numbers > 0, got {text!r}")
    return weights


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=at_least_one, default=3, help="training seeds 0..N-1 (default 3)")
    parser.add_argument("--iterations", type=at_least_one, default=300, help="Adam iterations (default 300)")
    parser.add_argument("--weights", type=_weights, default="0.01,0.03,0.1,1",
                        help="error_estimate weights to compare with vanilla (default 0.01,0.03,0.1,1)")
    add_figure_options(parser, DEFAULT_PLOT, f"smoke run: 1 seed, {QUICK_ITERATIONS} iterations")
    args = parser.parse_args(argv)
    path = figure_path(parser, args, DEFAULT_PLOT)
    torch.set_num_threads(1)
    # torchsde warns that adaptive Euler-Maruyama is not guaranteed to converge for non-additive noise.
    warnings.filterwarnings("ignore", message="Numerical solution is not guaranteed")
    seeds, iterations = ([0], QUICK_ITERATIONS) if args.quick else (list(range(args.seeds)), args.iterations)
    start = time.perf_counter()
    mean, var = target_moments()
    results = run_all(seeds, [0.0, *args.weights], iterations, mean, var)
    wall = time.perf_counter() - start
    header = (f"torch {torch.__version__}, torchsde {torchsde.__version__}; spiral SDE moments, adaptive "
              f"Euler-Maruyama rtol=atol=1e-2, {iterations} Adam iterations of 100 paths, seeds "
              f"{seeds[0]}..{seeds[-1]} (mean +- std); one thread, {wall:.0f} s wall")
    print(header)
    rows = [
        [label(w), *(mean_std([r[key] for r in runs], fmt)
                     for key, fmt in (("loss", "{:.4f}"), ("nfe", "{:.1f}"), ("train s", "{:.2f}")))]
        for w, runs in results.items()
    ]
    print(format_rows(["model", "final loss", "prediction NFE", "training time s"], rows))
    if path is not None:
        plot(results, mean, path, header)
        print(f"\nfigure written to {path}")


if __name__ == "__main__":
    main()
