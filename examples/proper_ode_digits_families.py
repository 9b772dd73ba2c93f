"""Are meta-solver models proper ODEs? The proper-ODE check on digits for every built-in family (seed 002 on seed 001).

Trains the digits ODE classifier (``nde_plugins.experiments.digits``) with each built-in family's
default member on a coarse fixed grid of K steps, then checks it with the training method and rk4
at 0.5x to 2x the training steps (f > 1 finer). A user of the meta-solver sees whether the trained
model depends on its solver.

    python examples/proper_ode_digits_families.py [--steps 2] [--epochs 5] [--seed 0]
"""

from __future__ import annotations

import argparse

import torch

from nde_plugins.experiments.digits import TrainConfig, fit_digits, load_digits_split
from nde_plugins.proper_ode import proper_ode_check

FAMILIES = ("rk2", "rk3", "rk4_u1", "rk4_u2", "rk4_u3", "rk4_uv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2, help="training steps K on [0, 1]")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    _, _, x_test, y_test = load_digits_split()
    print(f"torch {torch.__version__}; digits ODE classifier, each family's default member at K = {args.steps} fixed "
          f"steps on [0, 1], {args.epochs} epochs, seed {args.seed}; check: the method itself and rk4 at "
          "0.5x-2x the training steps (f > 1 finer), threshold 10 points")
    print(f"{'family':8s} {'train acc %':>11s} {'test acc %':>10s} {'worst gap':>9s}  verdict")
    for family in FAMILIES:
        config = TrainConfig(method=family, step_size=1.0 / args.steps, epochs=args.epochs, seed=args.seed)
        model, result = fit_digits(config, progress=False)
        report = proper_ode_check(model, model.block, (x_test, y_test))
        print(f"{family:8s} {result.train_accuracy:11.2f} {100 * report.training_value:10.2f} "
              f"{100 * report.worst_gap:9.2f}  {report.verdict}")


if __name__ == "__main__":
    main()
