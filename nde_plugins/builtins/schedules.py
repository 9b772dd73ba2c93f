"""Built-in solver schedules (the meta-solver's training regimes, Gusak et al., seed 001).

A solver schedule decides, on every forward call of a block, which solver(s) the call uses. It is
made by a registered factory, ``factory(**options)``, and then bound once to the block's base
solver (``bind``), which lets it refuse what it cannot serve (smoothing needs a family) and
resolve its members. On each call the block asks ``members(state)`` and gets a list of
``Member`` (a method and its family parameters, with a weight): one member for switching and
smoothing, several for an output ensemble, whose weighted mean of final states is the output.

Order on one forward call: schedule (members) -> end-time sampler (times, one draw shared by every
member) -> the solves -> statistics (every member's solves in one ``StepStats``) ->
``regularization()``.

Under ``torch.distributed`` switching and smoothing draw on each rank from its own stream, so
ranks solve with different members in the same step (like per-sample noise, the gradient average
then spans several solvers). ``synchronized=True`` makes every rank draw the same member from the
stream the ranks share (the rule is in ``distributed``); a plugin schedule opts in the same way,
with a true ``synchronized`` attribute.

A gradient-learned solver parameter is deliberately not a schedule: a member is a fixed tableau of
Python floats, and the meta-solver paper found learning u by gradient descent unstable (the
feasible set is constrained and clamping did not help), so it trains with fixed or sampled u.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .._checks import as_float, nonnegative_float, positive_float
from ..contract import BaseSolver, CallState, Member
from ..hookspecs import hookimpl
from ..specs import parse_method_spec
from ..tableaux import TableauError

#: The clamp margin of the authors' code for float32 parameters (float16's machine epsilon).
CLAMP_EPS = 9.765625e-4


def _members_from(name: str, specs: Any, base: BaseSolver) -> list[Member]:
    """Members written as family-parameter dicts of the base family or as method specs (``"rk4_classic"``)."""
    if isinstance(specs, (str, Mapping)) or not isinstance(specs, Sequence) or not specs:
        raise ValueError(f"schedule {name!r}: members must be a non-empty list of parameter dicts or method names, "
                         f"got {specs!r}")
    members = []
    for i, spec in enumerate(specs):
        if isinstance(spec, Mapping):
            if base.family is None:
                raise ValueError(f"schedule {name!r}: member {i} gives family parameters {dict(spec)}, but the "
                                 f"block's method {base.method!r} is not a family; name the method instead")
            try:
                params = base.family.resolve(spec)
            except TableauError as exc:
                raise ValueError(f"schedule {name!r}: member {i}: {exc}") from None
            member = Member(base.method, params)
        elif isinstance(spec, str):
            method, params = parse_method_spec(spec)
            member = Member(method, params)
        else:
            raise TypeError(f"schedule {name!r}: member {i} must be a dict of family parameters or a method name, "
                            f"got {spec!r}")
        try:
            base.validate(member)
        except (ValueError, TypeError, LookupError) as exc:
            raise ValueError(f"schedule {name!r}: member {i} ({member.spec()}): {exc}") from None
        members.append(member)
    return members


def _probabilities(name: str, probs: Any, n: int) -> list[float]:
    if probs is None:
        return [1.0 / n] * n
    if isinstance(probs, (str, Mapping)) or not isinstance(probs, Sequence) or len(probs) != n:
        raise ValueError(f"schedule {name!r}: probs must be a list of {n} numbers (one per member), got {probs!r}")
    values = [nonnegative_float(f"schedule {name!r}: probs[{i}]", p) for i, p in enumerate(probs)]
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"schedule {name!r}: probs must sum to 1, got {sum(values):.6g}; normalize them")
    return values


class _PerEpochDraw:
    """The member drawn for the current epoch (``per_epoch=True``), saved with the block's ``state_dict``."""

    _drawn: tuple[int, Member] | None

    def state_dict(self) -> dict[str, Any]:
        """The epoch and member of the last draw, as plain values."""
        if self._drawn is None:
            return {"drawn": None}
        epoch, member = self._drawn
        return {"drawn": (epoch, member.method, dict(member.params))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict()``."""
        drawn = state["drawn"]
        self._drawn = None if drawn is None else (drawn[0], Member(drawn[1], dict(drawn[2])))


class Switching(_PerEpochDraw):
    """Pick one member per training call (uniformly or with ``probs``); evaluation uses the base solver.

    One draw per block forward call, as the authors' code does; ``per_epoch=True`` keeps the draw
    for a whole epoch, as the paper's text says. ``synchronized=True``: every rank of a
    ``torch.distributed`` run picks the same member (the block needs ``seed=``).
    """

    def __init__(self, members: Sequence[Any], probs: Sequence[float] | None = None, per_epoch: bool = False,
                 synchronized: bool = False) -> None:
        self._specs, self._probs_given = members, probs
        self.per_epoch = _flag("switching", "per_epoch", per_epoch)
        self.synchronized = _flag("switching", "synchronized", synchronized)
        self._drawn: tuple[int, Member] | None = None

    def bind(self, base: BaseSolver) -> None:
        """Resolve the members against the block's base solver; ``ValueError`` names a member it cannot solve with."""
        self.base = base
        self.choices = _members_from("switching", self._specs, base)
        self.probs = _probabilities("switching", self._probs_given, len(self.choices))
        self.cumulative = list(itertools.accumulate(self.probs))

    def members(self, state: CallState) -> list[Member]:
        """The one member of this call: drawn from ``state.generator`` in training, the base one in evaluation."""
        if not state.training:
            return [self.base.member]
        if self.per_epoch and self._drawn is not None and self._drawn[0] == state.epoch:
            return [self._drawn[1]]
        # One uniform draw against the cumulative probabilities (cheaper per call than multinomial).
        index = min(bisect.bisect_right(self.cumulative, float(torch.rand((), generator=state.generator,
                                                                            dtype=torch.float64))),
                    len(self.choices) - 1)
        self._drawn = (state.epoch, self.choices[index])
        return [self.choices[index]]


class Smoothing(_PerEpochDraw):
    """Sample the family parameters around the base values every training call; evaluation uses them unchanged.

    u ~ Normal(u0, sigma) or Cauchy(u0, sigma). As in the authors' code, a draw of the first
    parameter outside (u0 - truncate sigma, u0 + truncate sigma) is replaced by u0 (about 4.55% of
    Normal and 29.5% of Cauchy draws at truncate = 2); further parameters (v) are drawn without
    that rule. The draw is then brought into the family's usable region by its clamp (margin
    ``eps``); a draw that still breaks a domain rule is replaced by the base values, so no member
    at a singular point is ever built. With probability 1 - ``p`` a call keeps the base values.
    ``synchronized=True``: every rank of a ``torch.distributed`` run draws the same parameters (the
    block needs ``seed=``).
    """

    def __init__(self, sigma: float = 0.0125, distribution: str = "normal", p: float = 1.0,
                 truncate: float | None = 2.0, eps: float = CLAMP_EPS, per_epoch: bool = False,
                 synchronized: bool = False) -> None:
        self.sigma = positive_float("schedule 'smoothing': sigma", sigma)
        if distribution not in ("normal", "cauchy"):
            raise ValueError(f"schedule 'smoothing': distribution must be 'normal' or 'cauchy', got {distribution!r}")
        self.distribution = distribution
        self.p = as_float("schedule 'smoothing': p", p)
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"schedule 'smoothing': p is a probability, 0 <= p <= 1; got {p!r}")
        self.truncate = None if truncate is None else positive_float("schedule 'smoothing': truncate", truncate)
        self.eps = positive_float("schedule 'smoothing': eps", eps)
        self.per_epoch = _flag("smoothing", "per_epoch", per_epoch)
        self.synchronized = _flag("smoothing", "synchronized", synchronized)
        self._drawn: tuple[int, Member] | None = None

    def bind(self, base: BaseSolver) -> None:
        """Take the block's base solver; ``ValueError`` unless its method is a parameterized family."""
        if base.family is None or not base.family.params:
            raise ValueError(f"schedule 'smoothing' samples a family's parameters, but the block's method "
                             f"{base.method!r} is not a parameterized family; use e.g. method='rk2' or 'rk4_uv'")
        self.base = base

    def draw(self, generator: torch.Generator | None) -> Member:
        """One sampled member (the base one when the gate or the domain says so)."""
        base = self.base
        if self.p < 1.0 and float(torch.rand((), generator=generator, dtype=torch.float64)) >= self.p:
            return base.member
        noise = self._noise(len(base.family.params), generator)
        values = {}
        for i, name in enumerate(base.family.params):
            center = base.params[name]
            value = center + self.sigma * noise[i]
            if i == 0 and self.truncate is not None and not abs(value - center) < self.truncate * self.sigma:
                value = center  # the authors' rule: replaced, not redrawn
            values[name] = value
        family = base.family
        if family.clamp is not None:
            values = dict(family.clamp(values, self.eps))
        try:
            family.resolve(values)
        except TableauError:
            return base.member
        return Member(base.method, values)

    def _noise(self, n: int, generator: torch.Generator | None) -> list[float]:
        if self.distribution == "normal":
            return torch.randn(n, generator=generator, dtype=torch.float64).tolist()
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return torch.tan(math.pi * (u - 0.5)).tolist()

    def members(self, state: CallState) -> list[Member]:
        """The one member of this call: a fresh ``draw`` in training, the base parameters in evaluation."""
        if not state.training:
            return [self.base.member]
        if self.per_epoch and self._drawn is not None and self._drawn[0] == state.epoch:
            return [self._drawn[1]]
        member = self.draw(state.generator)
        self._drawn = (state.epoch, member)
        return [member]


class OutputEnsemble:
    """The block's output is the weighted mean of the final states of all members, in training and evaluation.

    Costs one solve per member; the statistics record all of them.
    """

    def __init__(self, members: Sequence[Any], weights: Sequence[float] | None = None) -> None:
        self._specs, self._weights = members, weights

    def bind(self, base: BaseSolver) -> None:
        """Resolve the members and their weights (uniform by default, summing to 1) against the base solver."""
        members = _members_from("output_ensemble", self._specs, base)
        weights = _probabilities("output_ensemble", self._weights, len(members))
        self.ensemble = [Member(m.method, m.params, w) for m, w in zip(members, weights)]

    def members(self, state: CallState) -> list[Member]:
        """Every member with its weight, in training and evaluation alike."""
        return self.ensemble


def _flag(schedule: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"schedule {schedule!r}: {name} must be True or False, got {value!r}")
    return value


@hookimpl
def register_solver_schedules(register):
    register("switching", Switching)
    register("smoothing", Smoothing)
    register("output_ensemble", OutputEnsemble)


# ------------------------------------------------------------------------------------------------
# "Ensemble for free": members drawn once, the whole model averaged over them


@dataclass(frozen=True)
class EnsembleMember:
    """A member bound to a block: ``with member.applied():`` the block solves with it."""

    block: Any
    member: Member

    def applied(self):
        """A context manager within which every call of the block solves with this member (no end time drawn)."""
        return self.block.solving_with(self.member)


def solver_ensemble(block: Any, size: int, sigma: float = 0.2, seed: int | None = None,
                    distribution: str = "normal") -> list[EnsembleMember]:
    """The base solver plus ``size - 1`` members drawn once by the smoothing sampler (the meta-solver's
    "ensemble of models for free"; the authors' notebook: Normal, sigma 0.2)."""
    from .._checks import generator_from, positive_int

    size = positive_int("size", size, "the number of ensemble members, the base solver included")
    sampler = Smoothing(sigma=sigma, distribution=distribution)
    sampler.bind(block.base_solver)
    generator = generator_from(seed, None)
    members = [block.base_solver.member] + [sampler.draw(generator) for _ in range(size - 1)]
    return [EnsembleMember(block, m) for m in members]


def ensemble_predict(model_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                     members: Sequence[EnsembleMember]) -> torch.Tensor:
    """The mean softmax probabilities of ``model_fn(x)`` over the members (differentiable, for attacks too)."""
    if not members:
        raise ValueError("ensemble_predict needs at least one member (see solver_ensemble)")
    total = None
    for member in members:
        with member.applied():
            probs = torch.softmax(model_fn(x), dim=-1)
        total = probs if total is None else total + probs
    return total / len(members)
