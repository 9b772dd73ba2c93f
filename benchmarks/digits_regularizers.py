"""Headline reproduction of ERNODE/SRNODE (seed 004, Table 1) on scikit-learn's digits.

dopri5 at rtol = atol = 1.4e-8, 15 epochs, Adam 3e-3, batch 128, 3 seeds: vanilla, error_estimate,
stiffness, error_estimate + stiffness. Prints mean +- std of train/test accuracy, training time,
prediction time (one solve over the 360 test images) and prediction NFE, then the targets:
error_estimate cuts prediction NFE by >= 40% with <= 0.5 points of mean accuracy loss and trains
faster than vanilla. ``--sweep`` first tries several error-regularizer weights on seed 0.

This is an accuracy reproduction, not an overhead table: the times are whole trainings and
predictions, one per seed (variants interleaved by seed), not the shuffled rounds of ``_common.measure``.
``--quick`` (1 seed, 2 epochs) only checks that the script runs; ``--json PATH`` keeps every run.

``--gradient checkpoint`` trains every variant with ``gradient="checkpoint"`` (issue 21: the same
gradients as backprop, the steps recomputed segment by segment); ``--memory`` then also measures,
in fresh interpreters, the peak resident memory of training batches of the error_estimate variant
with backprop and with checkpoint (growth over the level after a warm-up batch of 8 images).

The same table comes from the CLI:
    nde-plugins train --task digits --compare vanilla,error_estimate,stiffness,error_estimate+stiffness --seeds 3

    python benchmarks/digits_regularizers.py [--seeds 3] [--epochs 15] [--sweep] [--gradient checkpoint]
                                             [--memory] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics

from _common import Report, json_path, run_child, setup

from nde_plugins.cli import DEFAULT_WEIGHTS
from nde_plugins.experiments.compare import compare, format_table
from nde_plugins.experiments.digits import TrainConfig, train_digits
from nde_plugins.regularizers import ExponentialAnnealing


def quiet(config: TrainConfig):
    return train_digits(config, progress=False)


MEMORY_CHILD = r"""
import json, resource, sys
import torch
from nde_plugins.experiments.digits import DigitsClassifier, build_block, load_digits_split, TrainConfig

gradient, batches = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)
config = TrainConfig(regularizers={"error_estimate": float(sys.argv[3])}, gradient=gradient)
x, y, _, _ = load_digits_split()
torch.manual_seed(config.seed)
model = DigitsClassifier(build_block(config))
optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
# VmHWM, not ru_maxrss: Linux carries a process's ru_maxrss across exec, so a child of this script,
# started after the parent has trained (hundreds of MiB), would report the parent's peak.
peak = lambda: int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])


def step(i, size=config.batch_size):
    idx = torch.arange(i * size, (i + 1) * size) % len(x)
    loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx]) + model.block.regularization()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return model.block.stats


step(0, 8)  # warm-up at a size that leaves no mark: code paths, caches and Adam's state
before = peak()
nfe = [step(i).nfe_forward for i in range(1, batches + 1)]
print(json.dumps({"kib": peak() - before, "nfe": nfe}))
"""


def peak_memory(weight: float, batches: int, repeats: int) -> dict[str, list[dict]]:
    """Peak RSS growth of ``batches`` training batches of the error_estimate variant, per gradient mode."""
    samples: dict[str, list[dict]] = {"backprop": [], "checkpoint": []}
    for _ in range(repeats):
        for gradient in samples:
            samples[gradient].append(run_child(MEMORY_CHILD, [gradient, str(batches), str(weight)],
                                               f"digits {gradient}"))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--sweep", action="store_true", help="also try several error_estimate weights (seed 0)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 seed, 2 epochs (numbers meaningless)")
    parser.add_argument("--gradient", choices=("backprop", "checkpoint"), default="backprop",
                        help="how every variant computes its gradients (default backprop)")
    parser.add_argument("--memory", action="store_true",
                        help="also measure peak memory of error_estimate training with backprop and checkpoint")
    parser.add_argument("--json", type=json_path, default=None, metavar="PATH", help="also write every run here")
    args = parser.parse_args()
    if args.seeds < 1 or args.epochs < 1:
        parser.error(f"--seeds and --epochs must be at least 1; got {args.seeds} and {args.epochs}")
    if args.quick:
        args.seeds, args.epochs = 1, 2
    setup()
    base = TrainConfig(epochs=args.epochs, gradient=args.gradient)
    report = Report(args, f"digits, dopri5 rtol=atol={base.rtol:g}, {args.epochs} epochs, Adam {base.lr:g}, "
                          f"batch {base.batch_size}, gradient {args.gradient}", timed=False)

    if args.sweep:
        sweep = {"vanilla": {}}
        for w in (0.01, 0.1, 1.0, 10.0):
            sweep[f"error_estimate w={w:g}"] = {"error_estimate": w}
        sweep["error_estimate 1->0.01 annealed"] = {"error_estimate": ExponentialAnnealing(1.0, 0.01, args.epochs)}
        sweep["error_estimate E^2 w=0.1"] = {"error_estimate": {"weight": 0.1, "power": 2}}
        for w in (0.0285, 0.3):
            sweep[f"stiffness w={w:g}"] = {"stiffness": w}
        print("\nweight sweep, seed 0")
        swept = compare(sweep, base, [0], run=quiet)
        print(format_table(swept))
        report.record("sweep", {name: [r.as_dict() for r in runs] for name, runs in swept.items()})

    ee, st = DEFAULT_WEIGHTS["error_estimate"], DEFAULT_WEIGHTS["stiffness"]
    variants = {
        "vanilla": {},
        f"error_estimate ({ee:g})": {"error_estimate": ee},
        f"stiffness ({st:g})": {"stiffness": st},
        "error_estimate + stiffness": {"error_estimate": ee, "stiffness": st},
    }
    results = compare(variants, base, range(args.seeds), run=quiet)
    print(f"\nheadline, {args.seeds} seeds (mean +- std)")
    print(format_table(results))
    report.record("headline", {name: [r.as_dict() for r in runs] for name, runs in results.items()})

    vanilla, regularized = results["vanilla"], results[f"error_estimate ({ee:g})"]

    def mean(runs, attr):
        return statistics.fmean(getattr(r, attr) for r in runs)

    nfe_cut = 1 - mean(regularized, "nfe_predict") / mean(vanilla, "nfe_predict")
    acc_change = mean(regularized, "test_accuracy") - mean(vanilla, "test_accuracy")
    train_ratio = mean(regularized, "train_time_s") / mean(vanilla, "train_time_s")
    predict_ratio = mean(regularized, "predict_time_s") / mean(vanilla, "predict_time_s")
    print(f"\nerror_estimate vs vanilla: prediction NFE {-nfe_cut:+.1%} (target <= -40%), test accuracy "
          f"{acc_change:+.2f} points (target >= -0.5), training time x{train_ratio:.2f} (target < 1), "
          f"prediction time x{predict_ratio:.2f}")
    if args.memory:
        batches, repeats = (2, 1) if args.quick else (5, 3)
        samples = peak_memory(ee, batches, repeats)
        medians = {g: statistics.median(s["kib"] for s in runs) / 1024 for g, runs in samples.items()}
        print(f"\npeak memory of {batches} error_estimate training batches (fresh process each, median of {repeats}):")
        for gradient, runs in samples.items():
            print(f"  {gradient:10s} {medians[gradient]:6.1f} MiB (x{medians[gradient] / medians['backprop']:.2f}), "
                  f"NFE per batch {sorted({n for s in runs for n in s['nfe']})}")
        report.record("peak_memory", samples)
    report.finish()


if __name__ == "__main__":
    main()
