"""Seed 003 (STEER, Ghosh et al. 2020, section 4.4): the stiff toy ODE, standard training vs STEER.

The true system is dy/dt = -r y + 3r - 2r e^{-t}, y(0) = 0 (r = 1000 in the paper). Set up as the
authors' code does it (``nde_plugins/experiments/stiff.py``): 120 points on [0, 15], batches of 20
consecutive pairs, an MLP 2-500-500-1 with tanh on (y, t), RMSprop 1e-4, L1 loss, dopri5 at
rtol 1e-7 / atol 1e-9. Every 20 iterations the model is integrated from y(0) = 0 over
linspace(0, 25, 120); the paper's metric is the best (minimum) test MAE over training.
STEER draws the end of each training solve over [0, dt] from U(dt - b, dt + b), with the authors'
b = dt - 0.001.

Both training variants run, because the effect depends on which one does:
``pairs_from_zero`` (the authors' code: every pair integrated over [0, dt] from time 0) and
``pairs_from_start`` (each pair from its own start time). Seeds are paired: standard and STEER runs
of one seed share the initial weights and the batches, so the table reports per-seed ratios and
their median (absolute errors vary by an order of magnitude across seeds). A sweep over the
stiffness ratio r follows (the paper's Fig. 5).

Runs go to ``--workers`` processes with one thread each; all runs share the same load, so times
compare within one invocation.

    python examples/steer_stiff.py [--seeds 4] [--iterations 1000] [--workers 2] [--plot mae.png]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import torch

from nde_plugins.experiments.compare import format_rows
from nde_plugins.experiments.script import figure_file
from nde_plugins.experiments.stiff import VARIANTS, StiffConfig, StiffResult, default_b, interval, train_stiff

METHODS = {"standard": None, "STEER": "steer"}


def _init_worker() -> None:
    torch.set_num_threads(1)


def _run(config: StiffConfig) -> StiffResult:
    return train_stiff(config, progress=False)


def run_all(configs: list[StiffConfig], workers: int) -> list[StiffResult]:
    """Every configuration, in order; in ``workers`` processes (spawned: torch and fork do not mix well)."""
    if workers == 1:
        _init_worker()
        return [_run(config) for config in configs]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker) as pool:
        return list(pool.map(_run, configs))


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _fmt(value: float) -> str:
    return f"{value:.3f}" if value < 100 else f"{value:.1f}"


def _mean_std(values: list[float], fmt: str) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{fmt.format(statistics.fmean(values))} +- {fmt.format(std)}"


def per_seed_table(results: dict, seeds: list[int], variants: list[str]) -> str:
    """Best test MAE per seed, standard vs STEER, the ratio, and the medians."""
    header = ["variant", "seed", "standard", "STEER", "STEER/standard", "best MSE standard", "best MSE STEER",
              "best at iteration"]
    rows = []
    for variant in variants:
        ratios = []
        for seed in seeds:
            std, steer = results[variant, "standard", seed], results[variant, "STEER", seed]
            ratio = steer.best_test_mae / std.best_test_mae
            ratios.append(ratio)
            rows.append([variant, str(seed), _fmt(std.best_test_mae), _fmt(steer.best_test_mae), f"{ratio:.2f}",
                         _fmt(std.best_test_mse), _fmt(steer.best_test_mse),
                         f"{std.best_iteration} / {steer.best_iteration}"])
        medians = [_median([results[variant, m, s].best_test_mae for s in seeds]) for m in METHODS]
        mses = [_median([results[variant, m, s].best_test_mse for s in seeds]) for m in METHODS]
        rows.append([variant, "median", _fmt(medians[0]), _fmt(medians[1]), f"{_median(ratios):.2f}",
                     _fmt(mses[0]), _fmt(mses[1]), ""])
    return format_rows(header, rows)


def summary_table(results: dict, seeds: list[int], variants: list[str]) -> str:
    """Per variant and method: median best / final MAE, STEER wins, NFE and time (mean +- std over seeds)."""
    header = ["variant", "method", "best MAE (median)", "final MAE (median)", "STEER better", "train NFE/iter",
              "test NFE", "train time s"]
    rows = []
    for variant in variants:
        wins = sum(results[variant, "STEER", s].best_test_mae < results[variant, "standard", s].best_test_mae
                   for s in seeds)
        for method in METHODS:
            runs = [results[variant, method, s] for s in seeds]
            rows.append([
                variant, method, _fmt(_median([r.best_test_mae for r in runs])),
                _fmt(_median([r.final_test_mae for r in runs])), f"{wins}/{len(seeds)}" if method == "STEER" else "",
                _mean_std([r.nfe_train for r in runs], "{:.1f}"), _mean_std([r.nfe_test for r in runs], "{:.0f}"),
                _mean_std([r.train_time_s for r in runs], "{:.1f}"),
            ])
    return format_rows(header, rows)


def sweep_table(results: dict, ratios: list[float], seeds: list[int], variants: list[str]) -> str:
    header = ["variant", "r", "standard (median)", "STEER (median)", "median STEER/standard", "STEER better",
              "per seed: standard / STEER"]
    rows = []
    for variant in variants:
        for r in ratios:
            pairs = [(results[variant, "standard", s, r].best_test_mae, results[variant, "STEER", s, r].best_test_mae)
                     for s in seeds]
            rows.append([
                variant, f"{r:g}", _fmt(_median([a for a, _ in pairs])), _fmt(_median([b for _, b in pairs])),
                f"{_median([b / a for a, b in pairs]):.2f}", f"{sum(b < a for a, b in pairs)}/{len(pairs)}",
                ", ".join(f"{_fmt(a)} / {_fmt(b)}" for a, b in pairs),
            ])
    return format_rows(header, rows)


def plot(results: dict, seeds: list[int], variants: list[str], path: str, title: str) -> None:
    """Test MAE over iterations per variant: each seed thin, the median over seeds thick; ``title`` states the run."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator

    fig, axes = plt.subplots(1, len(variants), figsize=(6 * len(variants), 4.6), squeeze=False)
    seeds_text = f"median of {len(seeds)} seeds" if len(seeds) > 1 else "one seed"
    for ax, variant in zip(axes[0], variants):
        for method, color in zip(METHODS, ("tab:red", "tab:blue")):
            curves = [results[variant, method, s].history for s in seeds]
            its = [h["iteration"] for h in curves[0]]
            for curve in curves:
                ax.plot(its, [h["test_mae"] for h in curve], color=color, alpha=0.25, linewidth=0.8)
            median = [statistics.median(c[i]["test_mae"] for c in curves) for i in range(len(its))]
            ax.plot(its, median, color=color, linewidth=2, label=f"{method} ({seeds_text}; thin: single seeds)")
        ax.set_yscale("log")
        # Plain numbers on the log axis ("20" reads better than "2 x 10^1"), minor ones only at 2, 3 and 5
        # times a power of ten: labels at every minor tick crowd together below each power.
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_locator(LogLocator(base=10, subs=(2, 3, 5)))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_title(variant)
        ax.set_xlabel("iteration")
        ax.set_ylabel("test MAE over [0, 25]")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(textwrap.fill(title, 160), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=4, help="paired seeds 0 .. N-1 (default 4)")
    parser.add_argument("--iterations", type=int, default=1000, help="training iterations (the authors: 3000)")
    parser.add_argument("--sweep-ratios", default="10,100,1000", help="stiffness ratios r of the sweep")
    parser.add_argument("--sweep-seeds", type=int, default=3, help="paired seeds of the sweep (default 3)")
    parser.add_argument("--sweep-variants", default="pairs_from_zero",
                        help=f"variants of the sweep, comma-separated among {', '.join(VARIANTS)}")
    parser.add_argument("--workers", type=int, default=2, help="processes, one thread each (default 2)")
    parser.add_argument("--plot", default=None, metavar="PATH", type=figure_file,
                        help="save test MAE over iterations (matplotlib)")
    args = parser.parse_args()
    if args.plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error("--plot needs matplotlib: pip install 'nde_plugins[plots]' (or leave out --plot)")
    sweep_variants = [v.strip() for v in args.sweep_variants.split(",") if v.strip()]
    unknown = sorted(set(sweep_variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--sweep-variants: unknown {unknown}; choose among {', '.join(VARIANTS)}")
    ratios = [float(r) for r in args.sweep_ratios.split(",")]
    seeds, sweep_seeds = list(range(args.seeds)), list(range(args.sweep_seeds))

    base = StiffConfig(iterations=args.iterations)
    jobs: dict[tuple, StiffConfig] = {}
    for variant in VARIANTS:
        for seed in seeds:
            for method, end_time in METHODS.items():
                jobs[variant, method, seed] = replace(base, variant=variant, seed=seed, end_time=end_time)
    for variant in sweep_variants:
        for r in ratios:
            for seed in sweep_seeds:
                for method, end_time in METHODS.items():
                    config = replace(base, variant=variant, seed=seed, end_time=end_time, stiffness_ratio=r)
                    if config not in jobs.values():  # r = 1000 runs of the main table are reused
                        jobs[variant, method, seed, r] = config
    start = time.perf_counter()
    done = dict(zip(jobs, run_all(list(jobs.values()), args.workers)))
    wall = time.perf_counter() - start
    results = dict(done)
    for variant in sweep_variants:
        for r in ratios:
            for seed in sweep_seeds:
                for method in METHODS:
                    key = (variant, method, seed, r)
                    if key not in results:
                        results[key] = results[variant, method, seed]

    print(f"torch {torch.__version__}; seed 003 stiff toy, dy/dt = -r y + 3r - 2r e^-t, y(0) = 0; the authors' code "
          f"setup: {base.n_train} points on [0, {base.train_end:g}], batches of {base.batch_size} consecutive pairs, "
          f"MLP 2-{base.hidden}-{base.hidden}-1 (tanh) on (y, t), N(0, 0.1) weights, RMSprop {base.lr:g}, L1 loss, "
          f"{base.method} rtol {base.rtol:g} atol {base.atol:g}; test: y(0) = 0 over linspace(0, {base.test_end:g}, "
          f"{base.n_test}), MAE every {base.eval_every} iterations, metric = best over training (the paper's)")
    print(f"{args.iterations} iterations per run (the authors' README runs 3000; scaled down to fit ~10 minutes on "
          f"2 cores); STEER b = dt - 0.001 = {default_b(base):.4f} (dt = {interval(base):.4f}); r = 1000; paired seeds "
          f"{seeds[0]}-{seeds[-1]}; {args.workers} worker process(es), 1 thread each; {len(jobs)} runs, "
          f"{wall:.0f} s wall")
    print()
    print("Best test MAE per seed (r = 1000); best at iteration: standard / STEER:")
    print(per_seed_table(results, seeds, list(VARIANTS)))
    print()
    print("Summary over seeds (NFE and time: mean +- std; training time excludes the evaluations):")
    print(summary_table(results, seeds, list(VARIANTS)))
    print()
    print(f"Stiffness sweep: best test MAE, paired seeds {sweep_seeds[0]}-{sweep_seeds[-1]}, {args.iterations} "
          f"iterations (fewer seeds than above; r = 1000 reuses those runs):")
    print(sweep_table(results, ratios, sweep_seeds, sweep_variants))
    if args.plot is not None:
        plot(results, seeds, list(VARIANTS), args.plot,
             f"torch {torch.__version__}; seed 003 stiff toy (r = 1000), the authors' code setup, {args.iterations} "
             f"iterations per run, paired seeds {seeds[0]}-{seeds[-1]}; standard vs STEER (b = dt - 0.001); test MAE "
             f"of the solve from y(0) = 0 over [0, {base.test_end:g}], every {base.eval_every} iterations")
        print(f"\nplot saved to {args.plot}")


if __name__ == "__main__":
    main()
