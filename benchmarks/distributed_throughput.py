"""Digits training throughput: 1 process against 2 under DistributedDataParallel (gloo, CPU).

Each setup runs the digits job itself, ``experiments.digits.fit_digits``, in fresh processes: one
process without a process group (what ``nde-plugins train`` runs), or W ranks of a gloo process
group, where fit_digits trains inside DDP with a DistributedSampler (what ``nde-plugins train
--nproc W`` runs). The global batch is the same in every setup (each of W ranks takes batch / W
samples per step), so every setup makes the same optimizer steps. samples/s counts the samples
of all ranks over the slowest rank's training time (fit_digits' ``train_time_s``: the training
loop of all ``--epochs`` epochs, the first one included; process start-up and evaluation are not
counted). NFE come from each rank's numbers in ``TrainResult.ranks``.

    1 process x 1 thread          the baseline (and, run twice, the A/A row)
    1 process x T threads         one process using every core (T = --threads, default 2)
    2 processes x 1 thread        DDP over two ranks

On a 2-core machine two ranks can at best double a 1-thread process, and only match what one
process reaches with two intra-op threads when the batch is too small for those threads to help;
the gradient all-reduce and the slowest rank's NFE (adaptive solvers take different steps on
different halves) cost on top.

    python benchmarks/distributed_throughput.py [--epochs 4] [--repeats 2] [--method dopri5] [--tol 1e-5]
        [--step-size S] [--batch 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import tempfile
from pathlib import Path

import torch
import torch.multiprocessing as mp


def _worker(rank: int, world: int, threads: int, args: argparse.Namespace, tmp: str) -> None:
    from nde_plugins.experiments.digits import TrainConfig, fit_digits

    torch.set_num_threads(threads)
    config = TrainConfig(method=args.method, rtol=args.tol, atol=args.tol, step_size=args.step_size, seed=0,
                         batch_size=args.batch, epochs=args.epochs)
    if world == 1:  # the single-process path, without a process group
        _, result = fit_digits(config, progress=False)
        Path(tmp, "counts.json").write_text(json.dumps(result.ranks))
        return
    # A rendezvous file in a fresh folder: no port to choose, so no race with other jobs on the machine.
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank,
                                         world_size=world, timeout=datetime.timedelta(seconds=120))
    try:
        _, result = fit_digits(config, progress=False)
        if rank == 0:
            Path(tmp, "counts.json").write_text(json.dumps(result.ranks))
    finally:
        torch.distributed.destroy_process_group()


def _load() -> str:
    """The 1-, 5- and 15-minute load averages, where the system reports them."""
    try:
        return ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except (AttributeError, OSError):
        return "not available"


def run(world: int, threads: int, args: argparse.Namespace) -> list[dict[str, float]]:
    """One setup: ``world`` processes of ``threads`` intra-op threads each; the per-rank numbers."""
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(world, threads, args, tmp), nprocs=world, join=True)
        return json.loads(Path(tmp, "counts.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4, help="training epochs, all timed (default 4)")
    parser.add_argument("--repeats", type=int, default=2, help="rounds over all setups; medians are shown (default 2)")
    parser.add_argument("--method", default="dopri5", help="the block's method (default dopri5)")
    parser.add_argument("--tol", type=float, default=1e-5, help="rtol = atol for adaptive methods (default 1e-5)")
    parser.add_argument("--step-size", type=float, default=None, help="a fixed step (fixed-grid methods)")
    parser.add_argument("--batch", type=int, default=128, help="global batch, split over the ranks (default 128)")
    parser.add_argument("--threads", type=int, default=2, help="threads of the one-process row (default 2)")
    args = parser.parse_args()
    if min(args.epochs, args.repeats, args.threads) < 1 or args.batch < 2 or args.batch % 2:
        parser.error("--epochs, --repeats and --threads must be >= 1, --batch an even number >= 2 (it is split "
                     "over 2 ranks)")

    setups = [("1 proc x 1 thread (A)", 1, 1), ("1 proc x 1 thread (A again)", 1, 1),
              (f"1 proc x {args.threads} threads", 1, args.threads), ("2 procs x 1 thread", 2, 1)]
    solver = args.method + (f" step {args.step_size:g}" if args.step_size else f" rtol=atol={args.tol:g}")
    print(f"digits training, fit_digits (DDP over gloo for 2 processes; CPU, {os.cpu_count()} cores): {solver}, "
          f"global batch {args.batch}, {args.epochs} timed epochs, median of {args.repeats} interleaved rounds")
    # Other work on the cores changes everything here: say how much there was.
    print(f"load average before the runs: {_load()}")
    # Rounds interleave the setups, so that a slow spell of a shared machine hits every setup alike.
    runs: dict[str, list[list[dict[str, float]]]] = {label: [] for label, _, _ in setups}
    for _ in range(args.repeats):
        for label, world, threads in setups:
            runs[label].append(run(world, threads, args))
    print(f"{'setup':30s} {'samples/s':>10s} {'(min-max)':>15s} {'ratio':>6s}  NFE fwd/batch per rank  NFE fwd total")
    baseline = None
    for label, _, _ in setups:
        rates = sorted(sum(r["samples"] for r in per_rank) / max(r["train_time_s"] for r in per_rank)
                       for per_rank in runs[label])
        rate = statistics.median(rates)
        baseline = baseline or rate
        last = runs[label][-1]
        nfe = ", ".join(f"{r['nfe_forward'] / r['batches']:.1f}" for r in last)
        total = sum(r["nfe_forward"] for r in last)
        spread = f"({rates[0]:.0f}-{rates[-1]:.0f})"
        print(f"{label:30s} {rate:10.1f} {spread:>15s} {rate / baseline:6.2f}  {nfe:22s} {total:.0f}")
    print(f"load average after the runs: {_load()}")


if __name__ == "__main__":
    main()
