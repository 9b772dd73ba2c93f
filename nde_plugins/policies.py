"""What one forward call of a block solves: the per-call policies both ``ODEBlock`` and ``SDEBlock`` share.

A block holds a ``CallPolicy``. On every forward call the policy may change the solve: a solver
schedule (``schedule=``) picks the solver(s) (see ``schedules``), and in training an end-time
sampler (``end_time=``) draws the integration times, one draw shared by every solver of the call.
The block then runs the solve(s) the policy describes through one callable it provides,
``solve(y0, grid, time_map) -> states at grid``, so the ODE and SDE blocks share every rule here
and differ only in that callable. Step statistics of all the solves of one call go into one
``StepStats``, and step regularizers read it as usual: the order on a call is policy -> solve(s)
-> statistics -> ``regularization()``.

How drawn times are solved. The sampler returns the *ends* of the grid's intervals (see
``end_times``): interval k runs from the unaltered ``t[k-1]`` to ``ends[k]``.

- Shared by the batch, only the last time drawn (``steer``): one solve on ``[t0, ..., T]``, the
  same cost as a solve with a fixed end T.
- Shared, several times drawn (``steer_intervals``): consecutive solves, each restarting from the
  unaltered start of its interval.
- One draw per sample (``per_sample=True``): a drawn interval [a, T_i] is solved for the whole batch
  at once as the time-rescaled problem dz/ds = (T_i - a) f(a + s (T_i - a), z) on s in [0, 1]. The
  field still sees real time, as a tensor shaped (batch, 1, ..., 1), one time per sample. Adaptive
  step control then sees the whole batch (a step is accepted for all samples together), and a
  fixed grid takes the nominal number of steps, |t_k - t_{k-1}| / step_size, over every sample's
  own interval. Statistics of these solves are in s (step sizes are fractions of the interval).

Under ``torch.distributed`` the policy draws from two streams, fixed at its first draw (the rule
is in ``distributed``): its per-rank stream (``generator``: noise, end times, schedule draws) and
a stream shared by all ranks (``synchronized_generator``: a schedule with ``synchronized=True``,
end times with ``end_time_options={"synchronized": True}``). In one process they are one stream.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ._checks import generator_from
from ._plugin_values import plugin_from, plugin_label, split_plugin_arg
from .contract import BaseSolver, CallState, Member, build_plugin, check_ends, check_members
from .distributed import rank_and_world, rank_seed


@dataclass(frozen=True)
class TimeMap:
    """Real time tau = start + s * span for s in [0, 1]; ``span`` holds one value per sample, shaped to broadcast.

    ``interval`` is the nominal |t_k - t_{k-1}|: a fixed step h in real time becomes h / interval in
    s, so every sample takes the nominal number of steps over its own interval.
    """

    start: float
    span: torch.Tensor
    interval: float

    def time(self, s: torch.Tensor) -> torch.Tensor:
        return self.start + s * self.span

    def step(self, step: float) -> float:
        return step / self.interval


@dataclass(frozen=True)
class Segment:
    """One solve of a forward call: over ``grid`` (shared by the batch) or along ``time_map`` (per sample)."""

    grid: torch.Tensor | None = None
    time_map: TimeMap | None = None


#: ``solve(y0, grid, time_map)``: the block's solve, returning the states at every time of ``grid``
#: (``grid`` is ``[0, 1]`` in s when ``time_map`` is given).
SolveFn = Callable[[torch.Tensor, torch.Tensor, TimeMap | None], torch.Tensor]


class CallPolicy:
    """The per-call policy of one block: its random generator, end-time sampler and solver schedule.

    Args:
        owner: the block's class name, for messages.
        t: the block's validated 1-D grid.
        end_time: a registered end-time sampler name, or None.
        end_time_options: the sampler's options; ``per_sample=True`` draws one end time per sample,
            ``synchronized=True`` draws the same end times on every rank (see ``distributed``).
        seed / generator: where draws come from (a new generator seeded with ``seed``, the given
            one, or torch's global generator when neither is given; both at once is an error);
            under ``torch.distributed`` each rank draws its own stream (see ``distributed``).
        schedule / schedule_options: a registered solver schedule and its options, or None.
        base: the block's base solver, which the schedule is bound to.
    """

    def __init__(
        self, owner: str, t: torch.Tensor, end_time: str | None, end_time_options: Mapping[str, Any] | None,
        seed: int | None, generator: torch.Generator | None, schedule: str | None = None,
        schedule_options: Mapping[str, Any] | None = None, base: BaseSolver | None = None,
    ) -> None:
        # Validated now; which stream each rank draws from is settled at the first draw (``_streams``).
        self._local = generator_from(seed, generator)
        self._seed, self._given = seed, generator
        self._resolved: tuple[torch.Generator | None, torch.Generator | None] | None = None
        self.base = base
        self._fixed: Member | None = None
        self.schedule = None
        self.schedule_label = self.end_time_label = ""
        if schedule is None:
            if schedule_options:
                raise ValueError(f"{owner}: schedule_options are given but schedule is not; name a schedule, e.g. "
                                 "schedule='smoothing'")
        else:
            self.schedule_label, self.schedule = plugin_from(
                "solver_schedule", schedule, schedule_options, owner, "schedule", "smoothing:sigma=0.0125",
                lambda value: callable(getattr(value, "members", None)) and callable(getattr(value, "bind", None)))
            self.schedule.bind(base)
        self.end_time = end_time
        options = dict(_options(owner, "end_time_options", end_time_options))
        factory = None
        if isinstance(end_time, str):  # a spec's options may hold the block's flags too
            name, factory, options = split_plugin_arg("end_time_sampler", end_time, options, "end_time",
                                                      "steer:b=0.5")
            self.end_time_label = plugin_label("end_time_sampler", name)
        self.per_sample = options.pop("per_sample", False)
        if not isinstance(self.per_sample, bool):
            raise TypeError(f"{owner}: end_time_options['per_sample'] must be True or False, got {self.per_sample!r}")
        self.synchronized = options.pop("synchronized", False)
        if not isinstance(self.synchronized, bool):
            raise TypeError(f"{owner}: end_time_options['synchronized'] must be True or False, "
                            f"got {self.synchronized!r}")
        if self.synchronized and self.per_sample:
            raise ValueError(f"{owner}: end_time_options has both per_sample and synchronized; per_sample draws "
                             "one end time for each sample of a rank's own batch, synchronized one end time for "
                             "every rank: keep one of them")
        self.sampler = None
        if end_time is None:
            if end_time_options:
                raise ValueError(f"{owner}: end_time_options are given but end_time is not; name a sampler, e.g. "
                                 "end_time='steer'")
            return
        if factory is not None:
            self.sampler = build_plugin(self.end_time_label, factory, options)
        else:
            self.end_time_label, self.sampler = plugin_from(
                "end_time_sampler", end_time, options or None, owner, "end_time", "steer:b=0.5", callable)
        check = getattr(self.sampler, "check", None)
        if check is not None:
            check(t)

    @property
    def generator(self) -> torch.Generator | None:
        """This rank's own stream (None: torch's global generator)."""
        return self._streams()[0]

    @property
    def synchronized_generator(self) -> torch.Generator | None:
        """The stream every rank draws alike (the per-rank stream itself in one process)."""
        shared = self._streams()[1]
        if shared is None and rank_and_world()[1] > 1:
            raise ValueError("synchronized draws (a schedule with synchronized=True, or end_time_options "
                             "synchronized=True) under torch.distributed need the block's seed=: every rank "
                             "derives the shared stream from it; give seed= instead of generator= or neither")
        return shared

    def _streams(self) -> tuple[torch.Generator | None, torch.Generator | None]:
        """(per-rank stream, synchronized stream), settled on first use by the rule in ``distributed``."""
        if self._resolved is None:
            rank, world = rank_and_world()
            if world == 1:
                self._resolved = (self._local, self._local)
            elif self._given is not None:
                self._resolved = (self._given, None)
            else:
                seed = self._seed
                if seed is None:  # from the global generator, so that torch.manual_seed(k) makes a run reproducible
                    base = int(torch.randint(0, 2**62, ()).item())
                    self._resolved = (torch.Generator().manual_seed(rank_seed(base, rank, world)), None)
                else:
                    self._resolved = (torch.Generator().manual_seed(rank_seed(seed, rank, world)),
                                      torch.Generator().manual_seed(seed))
        return self._resolved

    # -- the streams' state in a checkpoint (the block's ``get_extra_state`` / ``set_extra_state``) ----
    def stream_state(self) -> dict[str, Any]:
        """This process's streams for a checkpoint: ``{"world_size", "ranks": {rank: state}, "synchronized"}``.

        ``ranks`` holds this rank's own stream only (``distributed.gather_state_dict`` merges every
        rank's into one checkpoint); ``synchronized`` the shared stream where it is a separate
        generator. Draws nothing: a stream not settled yet is not saved, and a fresh block settles
        it the same way. torch's global generator is never saved here.
        """
        rank, world = rank_and_world()
        if self._resolved is not None:
            own, shared = self._resolved
        elif world == 1 or self._given is not None:
            own, shared = self._local, None
        else:
            own = shared = None
        state: dict[str, Any] = {"world_size": world, "ranks": {} if own is None else {rank: own.get_state()}}
        if shared is not None and shared is not own:
            state["synchronized"] = shared.get_state()
        return state

    def load_stream_state(self, state: Mapping[str, Any], owner: str) -> None:
        """Continue the streams ``stream_state`` saved; this rank takes its own entry.

        Raises ValueError when the checkpoint holds other ranks' streams but not this one's (a
        checkpoint from one rank's plain ``state_dict()``: loading it on every rank would give every
        rank that rank's draws), or a stream this block does not have. A different world size
        cannot continue per-rank streams: they restart by the seeding rule, with a warning.
        """
        ranks = state.get("ranks", {})
        if not ranks and "synchronized" not in state:
            return
        rank, world = rank_and_world()
        saved_world = state.get("world_size", 1)
        if saved_world != world:
            warnings.warn(f"{owner}: the checkpoint's random streams were saved by a run on {saved_world} "
                          f"process(es), this one has {world}: they restart by the seeding rule (see "
                          "nde_plugins.distributed); the weights and the rest of the state are restored",
                          UserWarning, stacklevel=4)
            return
        if rank not in ranks:
            raise ValueError(
                f"{owner}: the checkpoint holds the random stream(s) of rank(s) {sorted(ranks)} but not of "
                f"this rank ({rank} of {world}); loading another rank's stream would repeat its draws here. "
                "Save with nde_plugins.distributed.gather_state_dict(model) on every rank (one rank writes "
                "the file), or save and load each rank's own state_dict()")
        own = ranks[rank]
        if world == 1:
            if self._local is None:
                raise ValueError(f"{owner}: the checkpoint holds the block's own random stream, but this block "
                                 "draws from torch's global generator; build it with the same seed= or "
                                 "generator= as the saved one")
            self._local.set_state(own)
            return
        if self._given is not None:
            self._given.set_state(own)
            self._resolved = (self._given, None)
            return
        stream = torch.Generator()
        stream.set_state(own)
        shared = None
        if "synchronized" in state:
            shared = torch.Generator()
            shared.set_state(state["synchronized"])
        elif self._seed is not None:
            shared = torch.Generator().manual_seed(self._seed)
        self._resolved = (stream, shared)

    @property
    def active(self) -> bool:
        return self.sampler is not None

    def members(self, training: bool, epoch: int, iteration: int, x: Any = None, field: Any = None
                ) -> list[Member] | None:
        """The solvers of this call; None means the base solver alone (no schedule, nothing fixed)."""
        if self._fixed is not None:
            return [self._fixed]
        if self.schedule is None:
            return None
        # A schedule that must agree over ranks says so with a true ``synchronized`` attribute.
        generator = self.synchronized_generator if getattr(self.schedule, "synchronized", False) else self.generator
        return check_members(self.schedule_label,
                             self.schedule.members(CallState(training, generator, epoch, iteration, x, field)))

    @property
    def is_fixed(self) -> bool:
        return self._fixed is not None

    @contextlib.contextmanager
    def fixed(self, member: Member) -> Iterator[None]:
        """Within the block, solve every call with ``member`` and the given times, whatever the schedule says.

        For evaluations with a chosen solver (ensemble prediction, the proper-ODE check, step
        adaption's test solves): no end time is drawn inside.
        """
        self.base.validate(member)
        previous, self._fixed = self._fixed, member
        try:
            yield
        finally:
            self._fixed = previous

    def ends(self, t: torch.Tensor, batch: int) -> torch.Tensor:
        """A fresh draw of the interval ends (training only), validated against the contract."""
        generator = self.synchronized_generator if self.synchronized else self.generator
        return check_ends(self.end_time_label, t, self.sampler(t, generator, batch if self.per_sample else None),
                          batch if self.per_sample else None)


def _options(owner: str, name: str, options: Any) -> Mapping[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"{owner}: {name} must be a dict of options, got {type(options).__name__}")
    return options


def segments(t: torch.Tensor, ends: torch.Tensor) -> list[Segment]:
    """The solves that realize drawn ``ends`` (shape (n,) shared or (batch, n) per sample) on grid ``t``."""
    per_sample = ends.dim() == 2
    if per_sample:
        drawn = [k for k in range(1, len(t)) if bool((ends[:, k] != t[k]).any())]
    else:
        drawn = [k for k, (end, time) in enumerate(zip(ends.tolist(), t.tolist())) if end != time]
    out: list[Segment] = []
    start = 0
    for k in drawn:
        if per_sample:
            if k - 1 > start:
                out.append(Segment(grid=t[start:k]))
            interval = abs(float(t[k]) - float(t[k - 1]))
            out.append(Segment(time_map=TimeMap(float(t[k - 1]), ends[:, k] - t[k - 1], interval)))
        else:
            # The grid from the unaltered start: ends[start] may itself be a drawn end.
            grid = ends[:k + 1] if start == 0 else torch.cat([t[start:start + 1], ends[start + 1:k + 1]])
            out.append(Segment(grid=grid))
        start = k
    if start < len(t) - 1:
        out.append(Segment(grid=t[start:]))
    return out


def solve_segments(solve: SolveFn, x: torch.Tensor, t: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """States at every grid index (stacked first) after solving the ``segments`` of ``ends`` in order."""
    parts = segments(t, ends)
    if len(parts) == 1 and parts[0].time_map is None:
        return solve(x, parts[0].grid, None)  # the common case: one solve to a shared end time
    if not torch.is_tensor(x):
        raise ValueError("drawing several interval ends (or one per sample) solves interval by interval, which "
                         "needs a tensor state; tuple states work with end times drawn for the last interval only")
    states = [x]
    for segment in parts:
        state = states[-1]
        if segment.time_map is None:
            ys = solve(state, segment.grid, None)
        else:
            span = segment.time_map.span.reshape(-1, *([1] * (state.dim() - 1)))
            unit = torch.tensor([0.0, 1.0], dtype=t.dtype, device=t.device)
            ys = solve(state, unit, TimeMap(segment.time_map.start, span.to(state.dtype), segment.time_map.interval))
        states.extend(ys[1:])
    return torch.stack(states)
