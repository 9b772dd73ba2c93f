"""The per-call core both blocks share: regularizers, the policy, one forward call's work, its state.

``ODEBlock`` and ``SDEBlock`` differ in how one solve runs (torchdiffeq or torchsde) and in what
their constructors accept; everything else about a forward call is here, written once:

1. the schedule picks the call's members (``CallPolicy.members``; no schedule: the base member);
2. in training, unless a member is fixed (``solving_with``), the end-time sampler draws the
   interval ends, one draw shared by every member;
3. every member is solved (over the drawn segments), all solves recorded into one ``StepStats``;
4. several members: the output is their weighted mean;
5. the call's state is written: ``stats``, ``last_t``, ``last_method``, ``iteration``.

``regularization()`` then reads ``stats``; ``update(model_fn, x, y)`` hands a training batch to a
schedule that learns from it. A subclass provides ``_solve_member(handle, stats, y0, grid,
time_map)`` and ``_picked(handle)`` (how ``last_method`` shows a member), and may override
``_prepare(members, x)``: checks before any solve, returning one handle per member (what the block
solves a member with, e.g. its resolved solver; by default the member itself), so that a call
resolves each member once.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ._regularization import build_regularizers, recorded, weighted_regularization
from .contract import BaseSolver, Member
from .policies import CallPolicy, TimeMap, solve_segments
from .specs import parse_method_spec
from .stats import StepStats


def compile_boundary(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, run eagerly under ``torch.compile`` (``torch._dynamo.disable``).

    A block's ``forward`` is one: ``torch.compile`` of a model holding a block compiles what
    surrounds the block and runs the block eagerly. torchdiffeq's input handling (``torch.unique``
    of the time grid, the data-dependent loop of adaptive stepping) cannot be traced, the
    observation hooks are Python by design, and tracing the block's checks only warns; the field
    is then called eagerly too, inside the solve.

    Importing dynamo costs about a second, so it is not imported here: ``torch.compile`` imports
    it before it traces anything, and the disabled twin is made on the first call after that.
    """
    eager: list[Callable[..., Any]] = []

    @functools.wraps(function)
    def boundary(*args: Any, **kwargs: Any) -> Any:
        dynamo = sys.modules.get("torch._dynamo")
        if dynamo is None:
            return function(*args, **kwargs)
        if not eager:
            eager.append(dynamo.disable(function))
        return eager[0](*args, **kwargs)

    return boundary


#: The layout of a block's saved training-time state (``get_extra_state``).
_EXTRA_STATE_VERSION = 1


class SchedulesView:
    """What a schedule sees of its block (``BaseSolver.view``): solve with a member, read the last stats."""

    def __init__(self, block: BlockCore) -> None:
        self._block = block

    def solving_with(self, member: Member | str) -> contextlib.AbstractContextManager[None]:
        """Within the context, every call of the block solves with ``member`` at the block's own times."""
        return self._block.solving_with(member)

    @property
    def stats(self) -> StepStats | None:
        """The step statistics of the block's last call (None before the first)."""
        return self._block.stats


class BlockCore(torch.nn.Module):
    """Base of ``ODEBlock`` and ``SDEBlock``: the per-call machinery (see the module docstring)."""

    def _setup_regularizers(self, regularizers: Mapping[Any, Any] | None, record_stats: bool) -> None:
        """Build the weighted regularizers and what they ask the block to record."""
        self.record_stats = record_stats
        self.regularizers = build_regularizers(regularizers)
        if self.regularizers and not record_stats:
            raise ValueError("regularizers read the step statistics: record_stats must stay True")
        self._needs = recorded(self.regularizers)
        self._vjp_inputs = "input_grad" in self._needs

    def _setup_policy(self, owner: str, t: torch.Tensor, base: BaseSolver, end_time: Any,
                      end_time_options: Mapping[str, Any] | None, seed: int | None,
                      generator: torch.Generator | None, schedule: Any,
                      schedule_options: Mapping[str, Any] | None) -> None:
        """The call policy (draw streams, end-time sampler, schedule bound to ``base``) and the per-call state."""
        self.policy = CallPolicy(owner, t, end_time, end_time_options, seed, generator, schedule, schedule_options,
                                 base)
        self._base_members = [base.member]
        self.epoch = 1
        self.iteration = 0
        self.stats: StepStats | None = None
        self.last_t: torch.Tensor | None = None
        self.last_method: tuple[str, dict] | list[tuple[str, dict]] | None = None

    # -- the public per-block calls -----------------------------------------------------------------
    @property
    def base_solver(self) -> BaseSolver:
        """The block's base solver: method, family, parameters, options (what a schedule is bound to)."""
        return self.policy.base

    @property
    def schedule(self) -> Any:
        """The block's solver schedule object, or None."""
        return self.policy.schedule

    @property
    def end_time_sampler(self) -> Any:
        """The block's end-time sampler object, or None."""
        return self.policy.sampler

    def members_for(self, training: bool) -> list[Member]:
        """The members a call would solve with now (in training a schedule draws afresh, as a call would)."""
        return self.policy.members(training, self.epoch, self.iteration) or list(self._base_members)

    def solving_with(self, member: Member | str) -> contextlib.AbstractContextManager[None]:
        """Within the context, every call solves with ``member`` (a ``Member`` or a method spec) at the block's
        own times, whatever the schedule says, and draws no end time (evaluations with a chosen solver)."""
        if isinstance(member, str):
            method, params = parse_method_spec(member)
            member = Member(method, params)
        elif not isinstance(member, Member):
            raise TypeError(f"solving_with takes a nde_plugins.Member or a method spec, got {type(member).__name__}")
        return self.policy.fixed(member)

    def update(self, model_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> bool:
        """Hand a training batch to the schedule (after ``backward``, before ``optimizer.step``).

        Schedules that learn from batches (step and tolerance adaption) define ``update(model_fn, x,
        y)``; for the others, and without a schedule, this does nothing. Returns whether the
        schedule took the batch. Under ``torch.distributed`` call it on every rank.
        """
        update = getattr(self.policy.schedule, "update", None)
        if update is None:
            return False
        update(model_fn, x, y)
        return True

    def regularization(self) -> torch.Tensor:
        """sum_r weight_r(epoch) * r(stats) over the last forward call."""
        if self.stats is None and self.__dict__.get("_copied_after_call"):
            raise RuntimeError("regularization() reads the statistics of this block's last call, and this block is a "
                               "copy (deepcopy, pickle, AveragedModel) that has not been called since: a copy holds "
                               "the block, not the graph of the original's last call; call it first")
        return weighted_regularization(self.regularizers, self.stats, self.epoch)

    # -- training-time state, saved with the weights ------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        """What a resumed run needs besides the weights (``state_dict()`` saves it as ``_extra_state``).

        The epoch and iteration counters, the state of the block's own random streams (a seeded or
        given generator: schedule draws, end times, SDE noise; under ``torch.distributed`` this
        rank's own stream and the synchronized one, and ``distributed.gather_state_dict`` puts every
        rank's into one checkpoint), and the schedule's ``state_dict()`` where
        it has one (the adapted step or tolerance and their history). torch's global generator is
        the caller's to save (``torch.get_rng_state``).
        """
        policy = self.policy
        schedule_state = getattr(policy.schedule, "state_dict", None)
        return {"version": _EXTRA_STATE_VERSION, "epoch": self.epoch, "iteration": self.iteration,
                "streams": policy.stream_state(), "schedule": schedule_state() if callable(schedule_state) else None}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_extra_state`` saved, so that training continues as if it had not stopped."""
        if not isinstance(state, dict) or state.get("version") != _EXTRA_STATE_VERSION:
            raise ValueError(f"{type(self).__name__}: the saved block state has version "
                             f"{state.get('version') if isinstance(state, dict) else type(state).__name__}; "
                             f"this nde_plugins reads version {_EXTRA_STATE_VERSION}")
        policy = self.policy
        self.epoch, self.iteration = int(state["epoch"]), int(state["iteration"])
        policy.load_stream_state(state["streams"], type(self).__name__)
        load = getattr(policy.schedule, "load_state_dict", None)
        if state["schedule"] is not None and callable(load):
            load(state["schedule"])

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # A state dict saved before blocks kept their training-time state has no _extra_state: it still
        # loads (weights only; the counters, streams and adapted values start afresh), with one warning.
        key = prefix + "_extra_state"
        missing = key not in state_dict
        super()._load_from_state_dict(state_dict, prefix, *args)
        missing_keys = args[2]
        if missing and key in missing_keys:
            missing_keys.remove(key)
            where = prefix or "the top level"
            warnings.warn(f"{type(self).__name__} at {where!r}: the state dict has no training-time state (saved "
                          "before nde_plugins kept it); the weights are loaded, while the epoch and "
                          "iteration counters, random streams and adapted step or tolerance start afresh",
                          UserWarning, stacklevel=2)

    def __getstate__(self) -> dict[str, Any]:
        """What a deepcopy or a pickle keeps: the block, without its last call's statistics.

        The statistics hold that call's graph (tensors that are not graph leaves cannot be copied, and
        a copy should not keep the original's graph alive); a copy regularizes after its own call.
        """
        state = dict(self.__dict__)
        if state.get("stats") is not None:
            state["stats"] = None
            state["_copied_after_call"] = True
        return state

    # -- one forward call ----------------------------------------------------------------------------
    def _call(self, x: Any, t: torch.Tensor, field: Any, repeats: list[Any] | None = None) -> Any:
        """Run one forward call from ``x`` on grid ``t``: members, end time, solves, mean, statistics, state.

        ``repeats``: initial states solved one after the other into the same statistics instead of
        ``x`` (test-time noise chunks); the result is then the list of their outputs.
        """
        if _is_empty(x):
            return self._empty_call(x, t, repeats)
        members = self.policy.members(self.training, self.epoch, self.iteration, x, field) or self._base_members
        handles = self._prepare(members, x)
        # Drop the previous call's statistics first: they hold its graph, which must not live on
        # through this call. (Per-call attributes are written straight into __dict__ here and
        # below: nn.Module.__setattr__ costs microseconds a call, noticeable on small solves.)
        self.__dict__["stats"] = None
        stats = self._new_stats() if self.record_stats else None
        policy = self.policy
        ends = None
        if self.training and policy.sampler is not None and not policy.is_fixed:
            ends = policy.ends(t, _batch_for(policy, x))
        if repeats is not None:
            out = [self._solve_members(members, handles, stats, y0, t, ends) for y0 in repeats]
        elif ends is None and len(members) == 1:  # the common case, without the general loop's cost
            out = self._solve_member(handles[0], stats, x, t, None)
        else:
            out = self._solve_members(members, handles, stats, x, t, ends)
        self.__dict__.update(
            _copied_after_call=False,
            iteration=self.iteration + 1 if self.training else self.iteration,
            last_t=t if ends is None else ends,
            last_method=self._picked(handles[0]) if len(handles) == 1 else [self._picked(h) for h in handles],
            stats=stats,
        )
        return out

    def _empty_call(self, x: Any, t: torch.Tensor, repeats: list[Any] | None) -> Any:
        """A call on an empty batch: no solve, no draw; the states are the (empty) input at every time.

        The statistics count nothing, and ``regularization()`` is 0 (a solve that evaluated nothing
        has nothing to penalize); the schedule and the sampler are not asked, so the block's random
        streams are where they were.
        """
        handles = self._prepare(self._base_members, x)
        self.__dict__.update(
            _copied_after_call=False,
            stats=self._new_stats() if self.record_stats else None,
            iteration=self.iteration + 1 if self.training else self.iteration,
            last_t=t,
            last_method=self._picked(handles[0]),
        )
        states = _at_every_time(x, len(t))
        return states if repeats is None else [_at_every_time(y0, len(t)) for y0 in repeats]

    def _solve_members(self, members: list[Member], handles: list[Any], stats: StepStats | None, x: Any,
                       t: torch.Tensor, ends: torch.Tensor | None) -> Any:
        """The states at every time of ``t``: one member's solve(s), or the weighted mean over several."""
        solve = self._solve_member
        outputs = []
        for handle in handles:
            if ends is None:
                outputs.append(solve(handle, stats, x, t, None))
            else:
                outputs.append(solve_segments(
                    lambda y0, grid, time_map, handle=handle: solve(handle, stats, y0, grid, time_map), x, t, ends))
        if len(outputs) == 1:
            return outputs[0]
        return _weighted_mean(outputs, [m.weight for m in members])

    # -- what a block provides (ODEBlock and SDEBlock define all three; the core never runs alone) ----
    def _new_stats(self) -> StepStats:
        """An empty ``StepStats`` for one call, with the block's statistics plan and tolerances."""
        raise NotImplementedError(f"{type(self).__name__} must define _new_stats: a block core subclass provides it")

    def _prepare(self, members: list[Member], x: Any) -> list[Any]:
        """One handle per member, after checks of the members against the input (default: the members)."""
        return members

    def _solve_member(self, handle: Any, stats: StepStats | None, y0: Any, grid: torch.Tensor,
                      time_map: TimeMap | None) -> Any:
        """One solve with ``handle`` from ``y0`` over ``grid`` (in s along ``time_map``), recorded into ``stats``."""
        raise NotImplementedError(f"{type(self).__name__} must define _solve_member: a block core subclass provides it")

    def _picked(self, handle: Any) -> tuple[str, dict]:
        """``(method, family parameters)`` of a member's handle, as ``last_method`` shows it."""
        raise NotImplementedError(f"{type(self).__name__} must define _picked: a block core subclass provides it")


def _weighted_mean(outputs: list[Any], weights: list[float]) -> Any:
    """sum_m w_m z_m over the members' outputs (tensors, or tuples of tensors part by part)."""
    if torch.is_tensor(outputs[0]):
        return sum(w * z for w, z in zip(weights, outputs))
    return tuple(sum(w * z[i] for w, z in zip(weights, outputs)) for i in range(len(outputs[0])))


def _is_empty(x: Any) -> bool:
    """Whether the state holds no value at all (a batch of size 0): a tensor, or every part of a tuple."""
    if torch.is_tensor(x):
        return x.numel() == 0
    return all(part.numel() == 0 for part in x)


def _at_every_time(x: Any, n: int) -> Any:
    """``x`` repeated along a new first dimension of length ``n`` (tuples part by part)."""
    if torch.is_tensor(x):
        return x.unsqueeze(0).expand(n, *x.shape).clone()
    return tuple(part.unsqueeze(0).expand(n, *part.shape).clone() for part in x)


def _batch_for(policy: CallPolicy, x: Any) -> int:
    """The batch size a per-sample draw needs (the leading dimension of a tensor state)."""
    if not policy.per_sample:
        return 1
    if not torch.is_tensor(x) or x.dim() < 1:
        raise ValueError("end_time_options['per_sample'] draws one end time per sample along the first dimension: "
                         "the state must be a tensor with a batch dimension (tuple states are not supported)")
    return x.shape[0]


__all__ = ["BlockCore", "SchedulesView", "compile_boundary"]
