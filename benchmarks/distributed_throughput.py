"""Digits training throughput under DistributedDataParallel: 1 process against 2 (gloo, CPU).

Each setup trains the digits ODE classifier (``experiments.digits``: DigitsClassifier, build_block)
inside DDP, its samples split by a DistributedSampler, with the same global batch (each of W
ranks takes batch / W samples per step, so every setup takes the same optimizer steps). One
warm-up epoch, then ``--epochs`` timed epochs between barriers; samples/s counts the samples of
all ranks over the slowest rank's time (process start-up and the warm-up are not counted). NFE
come from each rank's ``block.stats``, gathered with ``nde_plugins.distributed.all_reduce_counts``.

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
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp


def _worker(rank: int, world: int, threads: int, args: argparse.Namespace, tmp: str) -> None:
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DistributedSampler

    from nde_plugins.distributed import all_reduce_counts
    from nde_plugins.experiments.digits import DigitsClassifier, TrainConfig, build_block, load_digits_split

    torch.set_num_threads(threads)
    # A rendezvous file in a fresh folder: no port to choose, so no race with other jobs on the machine.
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank,
                                         world_size=world, timeout=datetime.timedelta(seconds=120))
    try:
        x, y, _, _ = load_digits_split()
        config = TrainConfig(method=args.method, rtol=args.tol, atol=args.tol, step_size=args.step_size, seed=0,
                             batch_size=args.batch)
        torch.manual_seed(config.seed)
        model = DigitsClassifier(build_block(config))
        block = model.block
        ddp = DistributedDataParallel(model)
        optimizer = torch.optim.Adam(ddp.parameters(), lr=config.lr)
        # The sampler only needs the dataset's length: indices are taken straight from the tensors.
        sampler = DistributedSampler(range(len(x)), num_replicas=world, rank=rank, shuffle=True, seed=0)
        local = args.batch // world

        def epoch(number: int) -> tuple[int, int, int, int]:
            sampler.set_epoch(number)
            order = torch.tensor(list(sampler))
            samples = nfe_forward = nfe_backward = batches = 0
            for start in range(0, len(order) - local + 1, local):  # full batches only: equal steps per rank
                idx = order[start:start + local]
                loss = torch.nn.functional.cross_entropy(ddp(x[idx]), y[idx]) + block.regularization()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                samples += len(idx)
                nfe_forward += block.stats.nfe_forward
                nfe_backward += block.stats.nfe_backward
                batches += 1
            return samples, nfe_forward, nfe_backward, batches

        epoch(0)  # warm-up: allocator, thread pools, the solver's first calls
        torch.distributed.barrier()
        start = time.perf_counter()
        totals = [0, 0, 0, 0]
        for number in range(1, args.epochs + 1):
            totals = [a + b for a, b in zip(totals, epoch(number))]
        torch.distributed.barrier()
        seconds = time.perf_counter() - start
        samples, nfe_forward, nfe_backward, batches = totals
        counts = all_reduce_counts({"samples": samples, "nfe_forward": nfe_forward, "nfe_backward": nfe_backward,
                                    "batches": batches, "seconds": seconds})
        if rank == 0:
            Path(tmp, "counts.json").write_text(json.dumps(list(counts.per_rank)))
    finally:
        torch.distributed.destroy_process_group()


def run(world: int, threads: int, args: argparse.Namespace) -> list[dict[str, float]]:
    """One setup: ``world`` processes of ``threads`` intra-op threads each; the per-rank numbers."""
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_worker, args=(world, threads, args, tmp), nprocs=world, join=True)
        return json.loads(Path(tmp, "counts.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4, help="timed epochs after one warm-up epoch (default 4)")
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
    print(f"digits training under DDP (gloo, CPU, {os.cpu_count()} cores): {solver}, global batch {args.batch}, "
          f"{args.epochs} timed epochs after 1 warm-up, median of {args.repeats} interleaved rounds")
    # Rounds interleave the setups, so that a slow spell of a shared machine hits every setup alike.
    runs: dict[str, list[list[dict[str, float]]]] = {label: [] for label, _, _ in setups}
    for _ in range(args.repeats):
        for label, world, threads in setups:
            runs[label].append(run(world, threads, args))
    print(f"{'setup':30s} {'samples/s':>10s} {'(min-max)':>15s} {'ratio':>6s}  NFE fwd/batch per rank  NFE fwd total")
    baseline = None
    for label, _, _ in setups:
        rates = sorted(sum(r["samples"] for r in per_rank) / max(r["seconds"] for r in per_rank)
                       for per_rank in runs[label])
        rate = statistics.median(rates)
        baseline = baseline or rate
        last = runs[label][-1]
        nfe = ", ".join(f"{r['nfe_forward'] / r['batches']:.1f}" for r in last)
        total = sum(r["nfe_forward"] for r in last)
        spread = f"({rates[0]:.0f}-{rates[-1]:.0f})"
        print(f"{label:30s} {rate:10.1f} {spread:>15s} {rate / baseline:6.2f}  {nfe:22s} {total:.0f}")


if __name__ == "__main__":
    main()
