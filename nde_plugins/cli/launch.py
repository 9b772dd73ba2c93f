"""``train`` across processes: under torchrun, or launched through it with ``--nproc N``.

``train --nproc N`` checks the whole command line here, then runs the same command line (without
--nproc) on N local processes through torchrun; each of them is a torchrun rank that joins the
default process group and trains its part of every global batch.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence

import torch

from ._usage import UsageError

#: Environment variables torchrun sets in every process it starts; all three mark a torchrun rank.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
#: Seconds a rank waits for the others, at the rendezvous and in every collective, before it fails
#: instead of hanging (every rank runs the same steps, so a healthy peer is never this far behind).
PROCESS_GROUP_TIMEOUT_S = 60
#: Backends train accepts for --backend; the default picks by the device the model trains on.
BACKENDS = ("gloo", "nccl")


def torchrun_rank() -> bool:
    """True when torchrun started this process (it sets RANK, WORLD_SIZE and LOCAL_RANK)."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def torchrun_world() -> int | None:
    """The world size when this process is a torchrun rank, else None; malformed variables are refused."""
    if not torchrun_rank():
        return None
    values = {name: os.environ[name] for name in TORCHRUN_VARIABLES}
    try:
        rank, world = int(values["RANK"]), int(values["WORLD_SIZE"])
    except ValueError:
        rank, world = -1, 0
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"environment: RANK={values['RANK']!r} and WORLD_SIZE={values['WORLD_SIZE']!r} are not a "
                         "rank 0 <= RANK < WORLD_SIZE; launch with torchrun, or unset RANK, WORLD_SIZE and LOCAL_RANK")
    return world


def default_backend(device: torch.device) -> str:
    """NCCL for a model on CUDA (where NCCL is built in), gloo otherwise."""
    if device.type == "cuda" and torch.distributed.is_nccl_available():
        return "nccl"
    return "gloo"


def check_processes(args: argparse.Namespace) -> int | None:
    """How many processes train runs on (None: this one alone, no process group); refuses what cannot run there.

    Checked on the command line as given, before the task's defaults are filled in: the number
    comes from --nproc, or from torchrun's environment when this process is one of its ranks.
    """
    world = torchrun_world()
    if world is not None and args.nproc is not None:
        raise UsageError(f"argument --nproc: this process is already a torchrun rank (WORLD_SIZE={world}); drop "
                         "--nproc, or run nde-plugins train --nproc N without torchrun")
    if world is None and (args.nproc or 1) == 1:
        if args.backend is not None:
            raise UsageError("argument --backend: only applies across processes; add --nproc N (N >= 2) or launch "
                             "with torchrun")
        return None
    flag = "--nproc" if world is None else "--task"
    how = f"--nproc {args.nproc}" if world is None else f"torchrun, WORLD_SIZE={world}"
    if not torch.distributed.is_available():
        raise UsageError(f"argument {flag}: this torch build has no torch.distributed; train in one process")
    if args.task != "digits":
        raise UsageError(f"argument {flag}: training on several processes ({how}) is implemented for --task digits "
                         f"only; run --task {args.task} in one process")
    if args.compare is not None:
        raise UsageError(f"argument --compare: not available across processes ({how}); train the variants one by "
                         "one, each with --regularizer / --end-time")
    if args.backend is not None:
        if not torch.distributed.is_backend_available(args.backend):
            raise UsageError(f"argument --backend: this torch build has no {args.backend} backend; use "
                             f"{default_backend(torch.device('cpu'))}")
        if args.backend == "nccl":
            raise UsageError("argument --backend: the digits task trains on the CPU, and NCCL reduces CUDA tensors "
                             "only; use gloo (the default)")
    return world or args.nproc


def check_global_batch(args: argparse.Namespace, processes: int | None) -> None:
    """The batch size is the global batch: it must split evenly over the processes."""
    if processes is not None and args.batch_size % processes:
        raise UsageError(f"argument --batch-size: {args.batch_size} does not split over {processes} processes; the "
                         f"batch size is the global batch, each process takes an equal part of it: give a multiple "
                         f"of {processes}")


def _without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without --nproc and its value (``--nproc N``, ``--nproc=N`` or an abbreviation argparse accepts).

    train has no other option starting with ``--n``, so every prefix of --nproc names it.
    """
    out: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        name, equals, _ = token.partition("=")
        if name.startswith("--n") and "--nproc".startswith(name):
            if not equals:
                next(tokens, None)
            continue
        out.append(token)
    return out


def torchrun_command(nproc: int, argv: Sequence[str]) -> list[str]:
    """The command that runs ``nde-plugins`` with ``argv`` (minus --nproc) on ``nproc`` local processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            "-m", "nde_plugins", *_without_nproc(argv)]


def _launch(nproc: int, argv: Sequence[str]) -> int:
    """Run train on ``nproc`` processes through torchrun; its exit status.

    torchrun sets OMP_NUM_THREADS=1 for each of several processes when it is unset (and warns that it
    did); it is set here in advance to the same value, which keeps the warning out of the output.
    """
    env = {**os.environ}
    env.setdefault("OMP_NUM_THREADS", "1")
    process = subprocess.Popen(torchrun_command(nproc, argv), env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        # The terminal interrupted torchrun and its ranks as well: give torchrun the time to stop them.
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait()
        raise


@contextlib.contextmanager
def process_group(args: argparse.Namespace, processes: int | None) -> Iterator[tuple[int, str | None]]:
    """(rank, backend) of this process inside the default process group, initialized from torchrun's
    environment and destroyed on the way out; (0, None) when train runs in one process."""
    if processes is None:
        yield 0, None
        return
    backend = args.backend or default_backend(torch.device("cpu"))  # the digits task trains on the CPU
    torch.distributed.init_process_group(backend, timeout=datetime.timedelta(seconds=PROCESS_GROUP_TIMEOUT_S))
    try:
        yield torch.distributed.get_rank(), backend
        # Every rank done with its collectives before any tears the group down: a rank that destroyed
        # the group while its peer's gloo threads were still on the connection aborted the peer at exit
        # ("terminate called without an active exception", SIGABRT) in about a quarter of two-rank runs.
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()
