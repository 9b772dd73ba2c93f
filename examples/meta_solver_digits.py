"""Seed 001 (meta-solver, Gusak et al.) on scikit-learn's digits: solver smoothing and switching vs standard.

The paper's CIFAR-10 comparisons (its Tables 1 and 2) scaled to a CPU: RK2 at u0 = 0.5 with 8 steps
on [0, 1]; six variants, standard / smoothing (Normal, sigma 0.0125) / switching ({0.5, 0.5125,
0.4875}), each without and with FGSM-random adversarial training (AT). Every variant runs on the
same seeds, which fix the initial weights, the batch order and the evaluation attacks' random
starts, so the variants can be compared seed by seed: the paired difference removes most of the
seed-to-seed spread, which with three seeds is larger than the effects the paper reports
(SEEDS-SPEC T6). The model is described in ``nde_plugins/experiments/meta_solver.py``.

Printed: clean, FGSM and PGD accuracy at two radii (mean +- standard error over seeds); the paired
differences smoothing - standard and switching - standard; the accuracy of the standard models
evaluated with other members of the RK2 family (u = 0.1 ... 1.0, the paper's Fig. 3a asks how
robustness depends on u); and the "ensemble of models for free" (mean softmax over the base solver
and 3 solvers drawn once around it, Normal sigma 0.2).

    python examples/meta_solver_digits.py [--seeds 20] [--epochs 30] [--workers 2] [--quick] [--plot PATH]

The default run (120 trainings) takes about 10 minutes on 2 free CPU cores.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

import torch

from nde_plugins.experiments.attacks import FGSM_RANDOM_ALPHA_RATIO
from nde_plugins.experiments.compare import format_rows
from nde_plugins.experiments.digits import load_digits_split
from nde_plugins.experiments.meta_solver import (
    SMOOTHING_OPTIONS,
    SWITCHING_OPTIONS,
    U_GRID,
    MetaConfig,
    MetaResult,
    ensemble_robustness,
    fit_meta,
    mean_se,
    metric_names,
    paired_differences,
    robustness_over_u,
)
from nde_plugins.experiments.script import figure_file

SCHEDULES = {
    "standard": {},
    "smoothing": {"schedule": "smoothing", "schedule_options": SMOOTHING_OPTIONS},
    "switching": {"schedule": "switching", "schedule_options": SWITCHING_OPTIONS},
}
#: Variants whose trained models are also evaluated across u.
SWEPT = ("standard", "standard + AT")
ENSEMBLE_SIZE, ENSEMBLE_SIGMA = 4, 0.2


def variants() -> dict[str, dict]:
    out = {}
    for adversarial in (False, True):
        for name, changes in SCHEDULES.items():
            out[name + (" + AT" if adversarial else "")] = {**changes, "adversarial": adversarial}
    return out


@dataclass
class Job:
    variant: str
    config: MetaConfig
    sweep: bool
    ensemble: bool


@dataclass
class Outcome:
    variant: str
    result: MetaResult
    sweep: list[dict[str, float]] | None
    ensemble: dict[str, float] | None


def _init_worker() -> None:
    torch.set_num_threads(1)


@functools.cache
def _data() -> tuple[torch.Tensor, ...]:
    return load_digits_split()


def _run(job: Job) -> Outcome:
    """Train one model, evaluate it (across u and as an ensemble when asked); the model stays in the worker."""
    data = _data()
    model, result = fit_meta(job.config, data)
    _, _, x_test, y_test = data
    sweep = robustness_over_u(model, x_test, y_test, job.config) if job.sweep else None
    ensemble = None
    if job.ensemble:
        ensemble = ensemble_robustness(model, x_test, y_test, job.config, ENSEMBLE_SIZE, ENSEMBLE_SIGMA)
    return Outcome(job.variant, result, sweep, ensemble)


def run_all(jobs: list[Job], workers: int) -> list[Outcome]:
    """Every job, in order; in ``workers`` processes (spawned: torch and fork do not mix well)."""
    if workers == 1:
        _init_worker()
        return [_run(job) for job in jobs]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
        return list(pool.map(_run, jobs))


def cell(values: list[float]) -> str:
    mean, se = mean_se(values)
    return f"{mean:.2f} +- {se:.2f}"


def diff_cell(pair: tuple[float, float]) -> str:
    mean, se = pair
    return f"{mean:+.2f} +- {se:.2f}"


def print_tables(outcomes: list[Outcome], names: list[str], args: argparse.Namespace) -> None:
    by_variant: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_variant.setdefault(outcome.variant, []).append(outcome)
    metrics = {v: [o.result.metrics for o in runs] for v, runs in by_variant.items()}

    print("\nAccuracy % (mean +- s.e. over seeds), evaluated with the base solver u0 = 0.5")
    rows = [[v, *(cell([m[n] for m in ms]) for n in names),
             cell([o.result.train_time_s for o in by_variant[v]])] for v, ms in metrics.items()]
    print(format_rows(["variant", *names, "train s"], rows))

    print("\nPaired differences, points (mean +- s.e. over seeds of the per-seed difference)")
    rows = []
    for adv in ("", " + AT"):
        for schedule in ("smoothing", "switching"):
            diff = paired_differences(metrics[schedule + adv], metrics["standard" + adv], names)
            rows.append([f"{schedule}{adv} - standard{adv}", *(diff_cell(diff[n]) for n in names)])
    print(format_rows(["difference", *names], rows))

    for variant in SWEPT:
        sweeps = [o.sweep for o in by_variant[variant]]
        print(f"\n{variant}: accuracy % with the block solving RK2 at u instead of u0 = 0.5 (mean +- s.e. over seeds)")
        columns = [*names, "logit shift %"]
        rows = [[f"{u:g}", *(cell([s[i][n] for s in sweeps]) for n in columns)] for i, u in enumerate(U_GRID)]
        print(format_rows(["u", *columns], rows))

    if not args.no_ensemble:
        print(f"\nEnsemble for free: mean softmax over u0 and {ENSEMBLE_SIZE - 1} members u ~ Normal(u0, "
              f"{ENSEMBLE_SIGMA:g}) drawn once per seed; attacks on the ensemble (NLL of its mean probabilities)")
        rows = []
        for v, runs in by_variant.items():
            ens = [o.ensemble for o in runs]
            diff = paired_differences(ens, [o.result.metrics for o in runs], names)
            rows.append([v, *(f"{cell([e[n] for e in ens])} ({diff_cell(diff[n])})" for n in names)])
        print(format_rows(["variant", *(f"{n} (vs single)" for n in names)], rows))


def _pyplot():
    """matplotlib's pyplot on a file backend, imported only for --plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from None
    return plt


def plot(outcomes: list[Outcome], names: list[str], path: str, title: str) -> None:
    """Accuracy against the u of the evaluation solver for the standard models (mean +- s.e. over seeds);
    ``title`` states the run."""
    import textwrap

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(SWEPT), figsize=(5.5 * len(SWEPT) + 1.6, 4.6), sharey=True, squeeze=False)
    base_u = MetaConfig().u
    for ax, variant in zip(axes[0], SWEPT):
        sweeps = [o.sweep for o in outcomes if o.variant == variant]
        for name in names:
            stats = [mean_se([s[i][name] for s in sweeps]) for i in range(len(U_GRID))]
            ax.errorbar(U_GRID, [m for m, _ in stats], yerr=[se for _, se in stats], label=name, capsize=2,
                        marker=".")
        ax.axvline(base_u, color="dimgray", linestyle=":", linewidth=1, label=f"training u0 = {base_u:g}")
        ax.set(title=f"{variant} ({len(sweeps)} seeds)", xlabel="u of the evaluation solver (RK2, 8 steps)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy % (mean ± s.e. over seeds)")
    # Outside the axes: the attack curves fill the whole height.
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, borderaxespad=0)
    fig.suptitle(textwrap.fill(title, 150), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"\nplot written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20, help="paired seeds 0..N-1 (default 20)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--workers", type=int, default=2, help="processes, one thread each (default 2)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 seeds, 2 epochs")
    parser.add_argument("--no-ensemble", action="store_true", help="skip the ensemble-for-free evaluation")
    parser.add_argument("--plot", metavar="PATH", type=figure_file,
                        help="save accuracy vs u of the standard models (needs matplotlib)")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.epochs = 2, 2
    if args.seeds < 2:
        parser.error("--seeds must be >= 2: the standard errors and paired differences need two seeds at least")
    if args.plot:
        _pyplot()  # fail before the runs, not after them
    base = MetaConfig(epochs=args.epochs)
    names = metric_names(base.eval_eps)
    # Interleaved by seed, so that drifting machine load hits every variant alike.
    jobs = [Job(variant, replace(base, seed=seed, **changes), variant in SWEPT, not args.no_ensemble)
            for seed in range(args.seeds) for variant, changes in variants().items()]
    start = time.perf_counter()
    outcomes = run_all(jobs, args.workers)
    wall = time.perf_counter() - start

    alpha = base.train_alpha if base.train_alpha is not None else FGSM_RANDOM_ALPHA_RATIO * base.train_eps
    eps = ", ".join(f"{e:g}" for e in base.eval_eps)
    print(f"torch {torch.__version__}; digits 8x8 (1438 train / 359 test, pixels in [0, 1]); model: the image is "
          f"z(0) of an ODE block, field tanh(W2 tanh(W1 [z; t])) with {base.hidden} hidden units, linear head")
    print(f"solver: RK2 u0 = {base.u:g}, {base.steps} fixed steps of {base.step_size:g} on [0, 1] "
          f"({2 * base.steps} evaluations per solve); Adam, one linear up-down cycle to lr {base.lr:g}, "
          f"{base.epochs} epochs, batch {base.batch_size}; {args.seeds} paired seeds 0..{args.seeds - 1}")
    members = ", ".join(f"{m['u']:g}" for m in SWITCHING_OPTIONS["members"])
    print(f"schedules (one draw per batch, training only): smoothing u ~ Normal(u0, {SMOOTHING_OPTIONS['sigma']:g}) "
          f"(draws beyond 2 sigma -> u0), switching u uniform in {{{members}}}")
    print(f"AT: FGSM with random start, eps {base.train_eps:g}, step {alpha:g} (1.25 eps, Wong et al.), same solver "
          f"draw as the training step; attacks in [0, 1] pixel units at eps {eps}, against the evaluation solver: "
          f"FGSM, PGD {base.pgd_steps} steps of eps*{base.pgd_alpha_ratio:g} from a random start")
    print(f"{len(jobs)} runs in {wall:.0f} s with {args.workers} worker(s)")
    print_tables(outcomes, names, args)
    if args.plot:
        plot(outcomes, names, args.plot,
             f"torch {torch.__version__}; seed 001 on digits: ODE classifier trained with RK2 u0 = {base.u:g}, "
             f"{base.steps} steps, {base.epochs} epochs, {args.seeds} paired seeds, without and with FGSM-random "
             f"adversarial training (eps {base.train_eps:g}); evaluated with RK2 at other u, attacks at eps {eps}")


if __name__ == "__main__":
    main()
