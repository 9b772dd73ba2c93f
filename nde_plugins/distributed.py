"""Blocks under ``torch.distributed``: the seeding rule, rank-consistent decisions and statistics over ranks.

Nothing here is needed in a single process: every function below works unchanged without a
process group (one rank, world size 1) and then costs one ``is_initialized()`` check.

Blocks inside ``DistributedDataParallel``. ``ODEBlock`` and ``SDEBlock`` need no change and no
``find_unused_parameters``: every parameter a training call reaches gets its gradient in the same
backward pass, with statistics, regularizers, end-time samplers, schedules and the adjoint alike.
Regularizers are read outside the wrapped forward (``loss + block.regularization()``); DDP
averages their gradients like any other. The blocks' buffers (the time grid ``t``, a fixed
diffusion ``sigma``) never change, so DDP's buffer broadcast on every forward can be skipped with
``broadcast_buffers=False``. Step and tolerance adaption decide alike on every rank (see
``adaption``); ``update`` is a collective there.

The seeding rule (reproducible for a given world size W; rank r):

- ``seed=s``: the *per-rank stream* of rank r is a generator seeded with ``rank_seed(s, r, W)``,
  which is ``s`` itself when W = 1 (one process draws exactly what it drew before) and a hash of
  (s, r, W) otherwise, so every rank draws its own noise, end times and schedule draws. The
  *synchronized stream* is seeded with ``s`` on every rank: draws asked to agree over ranks
  (``synchronized=True`` on a switching or smoothing schedule, ``end_time_options={"synchronized":
  True}``) come from it. In one process both streams are the same generator, so the flag changes
  nothing there; and a run on W ranks whose draws are all synchronized draws what one process with
  ``seed=s`` draws.
- ``generator=g``: ``g`` is used as given on every rank (the caller owns its seeding);
  synchronized draws on W > 1 ranks need ``seed=`` instead.
- Neither: one process draws from torch's global generator. On W > 1 ranks the block takes ``s``
  from torch's global generator when it first reads its streams and follows the per-rank rule, so a run that
  calls ``torch.manual_seed(k)`` on every rank is reproducible and still draws per rank;
  synchronized draws need ``seed=``.

Checkpoints: a block's ``state_dict()`` saves the streams of its own rank; ``gather_state_dict``
(a collective) puts every rank's into one checkpoint, from which each rank resumes its own draws.
Loading a checkpoint that lacks this rank's stream is refused; one from another world size
restarts the per-rank streams by the rule above, with a warning.

The streams are fixed the first time a block reads them (its first call with a schedule or an
end-time sampler, its first SDE solve), so the process group must be initialized before that
call, as ``DistributedDataParallel`` already requires; building the block earlier is fine.

Why end times are drawn per rank by default: DDP averages gradients over the ranks' local
batches, so per-rank end times make a global step average over W drawn horizons, between one
shared draw and one draw per sample (``per_sample=True``). Ask for ``synchronized`` draws to get
the single-process semantics of one end time per global batch.
"""

from __future__ import annotations

import hashlib
import numbers
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ._checks import _is_bool

#: Seeds handed to ``torch.Generator.manual_seed`` stay below this bound (the hash keeps 63 bits).
_SEED_BOUND = 2**63


def is_distributed() -> bool:
    """True inside an initialized default process group (``torch.distributed`` may be missing from the build)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if not is_distributed():
        return 0, 1
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def rank_seed(seed: int, rank: int, world_size: int) -> int:
    """The seed of rank ``rank``'s own stream in a world of ``world_size`` processes.

    ``seed`` itself for a world of one; otherwise a hash of all three (distinct per rank, the same
    on every run with this world size). A single-process run can rebuild any rank's draws with
    ``ODEBlock(..., seed=rank_seed(seed, rank, world_size))``.
    """
    for name, value, low in (("seed", seed, 0), ("rank", rank, 0), ("world_size", world_size, 1)):
        if _is_bool(value) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"rank_seed: {name} must be an int >= {low}, got {value!r}")
    seed, rank, world_size = int(seed), int(rank), int(world_size)
    if rank >= world_size:
        raise ValueError(f"rank_seed: rank must be below world_size = {world_size}, got {rank}")
    if world_size == 1:
        return seed
    digest = hashlib.blake2b(f"{seed}:{rank}:{world_size}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % _SEED_BOUND


def _device() -> torch.device:
    """Where collectives' tensors live: NCCL reduces CUDA tensors only, every other backend takes CPU ones."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_ranks_sum(values: Sequence[float]) -> list[float]:
    """``values`` summed over all ranks of the default process group (unchanged without one).

    A collective: every rank must call it, in the same order, with as many values.
    """
    if not is_distributed():
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_device())
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def all_ranks_mean(values: Sequence[float]) -> list[float]:
    """``values`` averaged over all ranks of the default process group (unchanged without one).

    A collective, like ``all_ranks_sum``. With equal local batches, the mean of per-rank batch
    means is the mean over the global batch.
    """
    if not is_distributed():
        return list(values)
    world = torch.distributed.get_world_size()
    return [value / world for value in all_ranks_sum(values)]


def step_counts(stats: Any, regularization: torch.Tensor | float | None = None) -> dict[str, float]:
    """One rank's numbers of one forward call: NFE, steps and (when given) the regularization value.

    ``stats`` is a block's ``StepStats`` (``block.stats``) or None (a block without statistics
    counts zero, so that every rank can still join ``all_reduce_counts``). ``regularization`` is
    what ``block.regularization()`` returned; it is read without its graph. Accumulate these over
    an epoch on each rank and reduce once, rather than reducing every step.
    """
    counts = {"nfe_forward": 0.0, "nfe_backward": 0.0, "nfe_diffusion": 0.0, "steps_accepted": 0.0,
              "steps_rejected": 0.0}
    if stats is not None and not hasattr(stats, "nfe_forward"):
        raise TypeError(f"stats must be a block's StepStats (block.stats) or None, got {type(stats).__name__}")
    if stats is not None:
        counts.update(nfe_forward=float(stats.nfe_forward), nfe_backward=float(stats.nfe_backward),
                      nfe_diffusion=float(stats.nfe_diffusion), steps_accepted=float(stats.steps_accepted),
                      steps_rejected=float(stats.steps_rejected))
    if regularization is not None:
        counts["regularization"] = float(regularization.detach()) if torch.is_tensor(regularization) \
            else float(regularization)
    return counts


@dataclass(frozen=True)
class RankCounts:
    """Numbers gathered from every rank: ``per_rank[r]`` holds rank r's, ``total`` their sums."""

    per_rank: tuple[dict[str, float], ...]

    @property
    def world_size(self) -> int:
        return len(self.per_rank)

    @property
    def total(self) -> dict[str, float]:
        return {key: sum(counts[key] for counts in self.per_rank) for key in self.per_rank[0]}

    @property
    def mean(self) -> dict[str, float]:
        return {key: value / self.world_size for key, value in self.total.items()}


def all_reduce_counts(counts: Mapping[str, float]) -> RankCounts:
    """Gather ``counts`` (name -> number) from every rank; one rank's own without a process group.

    A collective: every rank must call it with the same names (checked: a mismatch raises the same
    ``ValueError`` on every rank instead of summing unrelated numbers).
    """
    names = list(counts)
    values = [float(counts[name]) for name in names]
    if not is_distributed():
        return RankCounts((dict(zip(names, values)),))
    device, world = _device(), torch.distributed.get_world_size()
    # First the names' fingerprint and count, so that every rank learns of a mismatch before the
    # values are gathered (gathering tensors of different lengths would fail on some ranks only).
    key = torch.tensor([zlib.crc32("\0".join(names).encode()), len(names)], dtype=torch.float64, device=device)
    keys = [torch.empty_like(key) for _ in range(world)]
    torch.distributed.all_gather(keys, key)
    if any(not torch.equal(other, key) for other in keys):
        raise ValueError("all_reduce_counts: the ranks passed different names; every rank must pass the same keys "
                         f"(this rank: {names})")
    local = torch.tensor(values, dtype=torch.float64, device=device)
    gathered = [torch.empty_like(local) for _ in range(world)]
    torch.distributed.all_gather(gathered, local)
    return RankCounts(tuple(dict(zip(names, part.tolist())) for part in gathered))


def all_reduce_stats(stats: Any, regularization: torch.Tensor | float | None = None) -> RankCounts:
    """NFE, steps and the regularization value of one call on every rank, and their totals.

    ``all_reduce_stats(block.stats, reg).total["nfe_forward"]`` is the forward NFE over all ranks;
    ``.per_rank`` lists each rank's. A collective (see ``all_reduce_counts``).
    """
    return all_reduce_counts(step_counts(stats, regularization))


def gather_state_dict(module: torch.nn.Module) -> dict[str, Any]:
    """``module.state_dict()`` with every rank's random streams in each block's state: a checkpoint to resume from.

    A block's own ``state_dict()`` saves this rank's streams only, so a checkpoint written by one
    rank could not resume the others' draws (loading it elsewhere is refused). Call this on every
    rank (a collective; a rank that does not call it leaves the others waiting for the process
    group's timeout), write the result from one rank, and ``load_state_dict`` it on every rank: each
    takes its own stream. Without a process group it is ``module.state_dict()``.
    """
    state = module.state_dict()
    if not is_distributed():
        return state
    # A block's training-time state is the dict its get_extra_state returns, with its streams under "streams".
    mine = {key: value["streams"]["ranks"] for key, value in state.items()
            if key.endswith("_extra_state") and isinstance(value, dict) and "streams" in value}
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, mine)
    for rank, theirs in enumerate(gathered):
        if set(theirs) != set(mine):
            raise ValueError(f"gather_state_dict: rank {rank} holds blocks at {sorted(theirs)}, this rank at "
                             f"{sorted(mine)}; every rank must pass the same model")
    for key in mine:
        ranks = {rank: stream for theirs in gathered for rank, stream in theirs[key].items()}
        state[key] = {**state[key], "streams": {**state[key]["streams"], "ranks": ranks}}
    return state


__all__ = ["RankCounts", "all_ranks_mean", "all_ranks_sum", "all_reduce_counts", "all_reduce_stats",
           "gather_state_dict", "is_distributed", "rank_and_world", "rank_seed", "step_counts"]
