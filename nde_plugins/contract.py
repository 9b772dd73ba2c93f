"""The contract between the blocks and the plugins: what a plugin receives, what it returns, what is checked.

The hooks (``hookspecs``) say how a plugin is *registered*; this module says what it is *given*
and must *give back* once a block uses it, and checks every returned value where the library
receives it. A violation raises ``ContractError`` (a ``ValueError``) naming the plugin (its
registered name, and the distribution shipping a third-party one), the rule and the fix.

What each kind receives and returns:

- **tableau** (``register(Tableau | TableauFamily)``): a value, validated when it is built.
- **diffusion** (``register(name, factory)``): ``factory(drift, **options)`` returns a
  ``Diffusion`` module; ``forward(t, h, f)`` returns G shaped like ``h`` (checked on the first
  evaluation of every solve: ``check_diffusion_output``).
- **end-time sampler**: ``factory(**options)`` returns ``s(t, generator, batch=None) -> ends``
  shaped like ``t`` (or ``(batch, len(t))``), finite, ``ends[0] == t[0]``, every interval keeping
  its direction and a positive length (``check_ends``, every training call).
- **step regularizer**: ``factory(**options)`` returns ``r(stats) -> scalar tensor`` with a
  ``requires`` set of words from ``REQUIRES`` (``check_requires`` when the block is built,
  ``check_regularizer_value`` on every ``regularization()``). A regularizer that reads a
  statistic it did not declare is refused by name at the read (``StepStats`` guards its reads).
- **solver schedule**: ``factory(**options)`` returns ``s`` with ``s.bind(base: BaseSolver)``
  (once) and ``s.members(state: CallState) -> list[Member]`` (every call; ``check_members``);
  optionally ``s.update(model_fn, x, y)`` after a training step's backward, which a training loop
  reaches through ``block.update(model_fn, x, y)``.

Every factory's options are checked against its signature before it is called, also through
``**options`` wrappers (``build_plugin``). This module imports nothing from the built-in plugins.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import math
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

#: The words a regularizer's ``requires`` may hold, with what each asks the block for.
REQUIRES: Mapping[str, str] = {
    "error_estimate": "E_j of every step, with its graph: a solver with an error estimate (an embedded pair)",
    "stiffness": "S_j of every step (Shampine's estimate): a tableau with two stages of equal c",
    "stages": "the stage evaluations (t, y, k) of every step, kept in the step records",
    "graph": "values that carry the solve's graph: refused with gradient='adjoint' unless the regularizer has an "
             "integrand",
    "input_grad": "the block makes its input require grad, so the first stage has a Jacobian too",
    "field": "the vector field the solver evaluated, kept with the stages (``stats.quadrature_fields``) for a "
             "regularizer that evaluates it again; under the adjoint ``integrand(y0, field)`` gets it",
}

#: The statistics a regularizer reads through ``StepStats`` (the other words are about the mode).
STATISTICS: frozenset[str] = frozenset({"error_estimate", "stiffness", "stages"})

#: How far the weights of a call's members may sum away from 1 (rounding of a few floats).
WEIGHT_TOLERANCE = 1e-6


class ContractError(ValueError):
    """A plugin returned, declared or was given something the plugin contract does not allow."""


# ------------------------------------------------------------------------------------------------
# The types a plugin receives and returns


@dataclass(frozen=True)
class Member:
    """One solver a call may use: a method name, its family parameters and a weight (ensembles).

    ``options`` replace the block's solver options for this member (``{"step_size": 0.05}``), and
    may hold ``rtol`` / ``atol`` to replace the block's tolerances (step and tolerance adaption).
    """

    method: str
    params: Mapping[str, float] = field(default_factory=dict)
    weight: float = 1.0
    options: Mapping[str, Any] = field(default_factory=dict)

    def spec(self) -> str:
        """``"rk2:u=0.5"``: the method spec, as the CLI writes it (options follow in brackets)."""
        text = self.method
        if self.params:
            text += ":" + ",".join(f"{k}={v:.6g}" for k, v in self.params.items())
        if self.options:
            text += " [" + ", ".join(f"{k}={v:.6g}" for k, v in self.options.items()) + "]"
        return text


@dataclass(frozen=True)
class CallState:
    """What a schedule sees of the call: training or evaluation, where to draw from, the counters,
    and the call's initial state and vector field (for schedules that size a step from them)."""

    training: bool
    generator: torch.Generator | None
    epoch: int
    iteration: int
    x: Any = None
    field: Any = None


class BlockView(Protocol):
    """The narrow view of a block that a schedule gets (``BaseSolver.view``): solve with a member, read stats."""

    def solving_with(self, member: Member) -> contextlib.AbstractContextManager[None]:
        """Within the context, every call of the block solves with ``member`` at the block's own times."""

    @property
    def stats(self) -> Any:
        """The step statistics of the block's last call (None before the first)."""


@dataclass(frozen=True)
class BaseSolver:
    """What a schedule is bound to: the block's base method, its family (if any) and a member check.

    ``validate(member)`` raises ``ValueError`` if the block cannot solve with ``member``;
    ``options`` are the base's solver options without family parameters, ``fixed_grid`` whether the
    base steps on a fixed grid, ``order`` the base method's order (None when unknown), ``span`` =
    |t_end - t0|, and ``view`` the block as a schedule may use it (``solving_with(member)``,
    ``stats``), for schedules that evaluate the block between training steps.
    """

    method: str
    family: Any  # a TableauFamily, or None
    params: Mapping[str, float]
    validate: Callable[[Member], None]
    view: BlockView | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    fixed_grid: bool = False
    order: int | None = None
    span: float = 1.0

    @property
    def member(self) -> Member:
        """The base method with its base parameters, weight 1 and no option overrides."""
        return Member(self.method, dict(self.params))

    @property
    def block(self) -> Any:
        """Deprecated: the block itself; a schedule needs only ``view``."""
        warnings.warn("BaseSolver.block is deprecated: a schedule sees the block through BaseSolver.view "
                      "(view.solving_with(member), view.stats); use base.view", DeprecationWarning, stacklevel=2)
        return getattr(self.view, "_block", self.view)


class Diffusion(torch.nn.Module):
    """Base class: ``forward(t, h, f)`` returns the diagonal of G(h, t), shaped like ``h``.

    ``uses_drift = True`` asks for the drift value ``f`` at (t, h) (evaluated once and shared);
    ``is_zero = True`` says G = 0 (the block then skips the diffusion).
    """

    uses_drift = False
    is_zero = False


# ------------------------------------------------------------------------------------------------
# Building a plugin from its factory and options


def build_plugin(who: str, factory: Callable[..., Any], options: Mapping[str, Any], *leading: Any,
                 also: str = "") -> Any:
    """``factory(*leading, **options)``, with options checked against the factory's signature first.

    A factory taking ``**options`` cannot be checked in advance; a ``TypeError`` about a keyword
    it raises is then translated: the error names the plugin (``who``), the option and, where the
    function that refused it can be found, the options it takes. ``also`` names what the caller
    accepts besides the factory's options (shown in the message).
    """
    valid = _named_options(factory, len(leading))
    if valid is not None:
        _refuse_unknown(who, options, valid, also)
    try:
        return factory(*leading, **options)
    except TypeError as exc:
        message = _option_error(who, exc, options, also)
        if message is None:
            raise
        raise ContractError(message) from exc


def _named_options(function: Callable[..., Any], skip: int) -> list[str] | None:
    """The keyword options ``function`` takes after ``skip`` positional ones; None if it takes ``**options``."""
    try:
        params = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable: the factory itself decides
        return None
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return [p.name for p in named[skip:]]


def _refuse_unknown(who: str, options: Mapping[str, Any], valid: list[str], also: str = "") -> None:
    for key in options:
        if key not in valid:
            raise ContractError(f"{who} has no option {key!r}{_did_you_mean(key, valid)} ({_takes(valid, also)})")


def _takes(valid: list[str] | None, also: str = "") -> str:
    besides = f", besides {also}" if also else ""
    if valid is None:
        return "its options could not be read from its signature" + besides
    return (f"its options: {', '.join(valid)}" if valid else "it takes no options") + besides


def _did_you_mean(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


_UNEXPECTED = re.compile(r"(?P<callee>[\w.<>]+)\(\) got an unexpected keyword argument '(?P<key>\w+)'")
_MISSING = re.compile(r"(?P<callee>[\w.<>]+)\(\) missing \d+ required (?:keyword-only |positional )?arguments?: "
                      r"(?P<names>.+)")


def _option_error(who: str, exc: TypeError, options: Mapping[str, Any], also: str = "") -> str | None:
    """A message naming the plugin for a keyword ``TypeError`` raised by (or right under) its factory."""
    text = str(exc)
    unexpected, missing = _UNEXPECTED.search(text), _MISSING.search(text)
    if unexpected is None and missing is None:
        return None
    match = unexpected or missing
    valid = _options_of_callee(exc, match.group("callee"))
    if unexpected is not None:
        key = unexpected.group("key")
        if key not in options:  # raised deeper inside, not about the options given: not ours to word
            return None
        return f"{who} has no option {key!r}{_did_you_mean(key, valid or [])} ({_takes(valid, also)})"
    names = ", ".join(re.findall(r"'(\w+)'", missing.group("names")))
    return f"{who} needs the option(s) {names}; give them ({_takes(valid, also)})"


def _options_of_callee(exc: TypeError, callee: str) -> list[str] | None:
    """The keyword options of the function a ``**options`` wrapper passed them on to, when it can be found.

    The innermost frame of the traceback is the wrapper that made the call; ``callee`` is the name
    Python's message gives (``Impl.__init__`` or ``make``), looked up in that frame's names.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return None
    frame = tb.tb_frame
    parts = callee.split(".")
    target = frame.f_locals.get(parts[0], frame.f_globals.get(parts[0]))
    for part in parts[1:]:
        target = getattr(target, part, None)
    if target is None:
        return None
    skip = 1 if parts[-1] == "__init__" else 0  # self
    valid = _named_options(target, skip)
    return valid


# ------------------------------------------------------------------------------------------------
# Checks of what plugins declare and return


def check_requires(who: str, plugin: Any) -> frozenset[str] | None:
    """A regularizer's ``requires`` as a frozenset of ``REQUIRES`` words; None when it declares none.

    Undeclared (an old plugin): a ``DeprecationWarning`` says what to add, and the block records
    every statistic its solver can provide, so the plugin keeps working. Unknown words raise.
    """
    requires = getattr(plugin, "requires", None)
    if requires is None:
        warnings.warn(f"{who} declares no 'requires'; declare the statistics it reads, e.g. "
                      "requires = frozenset({'error_estimate', 'graph'}) (words: "
                      f"{', '.join(REQUIRES)}); until then the block records every statistic its solver can provide",
                      DeprecationWarning, stacklevel=3)
        return None
    if isinstance(requires, str) or not all(isinstance(word, str) for word in _iterable(requires)):
        raise ContractError(f"{who}: requires must be a set of words ({', '.join(REQUIRES)}), got {requires!r}")
    words = frozenset(requires)
    unknown = sorted(words - set(REQUIRES))
    if unknown:
        raise ContractError(f"{who}: requires holds unknown word(s) {unknown}"
                            f"{_did_you_mean(unknown[0], list(REQUIRES))}; the words are {', '.join(REQUIRES)}")
    return words


def _iterable(value: Any) -> tuple:
    try:
        return tuple(value)
    except TypeError:
        return (None,)


def check_regularizer_value(who: str, value: Any) -> torch.Tensor:
    """A regularizer's output as a 0-dim tensor; ``ContractError`` unless it is one finite number in a tensor."""
    if not torch.is_tensor(value):
        got = "None" if value is None else type(value).__name__
        raise ContractError(f"{who} returned {got}; a regularizer returns a scalar tensor that carries gradients "
                            "to the vector field (torch.zeros(()) when nothing applies)")
    if value.numel() != 1:
        raise ContractError(f"{who} returned a tensor of shape {tuple(value.shape)}; a regularizer returns one "
                            "number (a scalar tensor): reduce it, e.g. with .sum() or .mean()")
    if not value.is_floating_point():
        raise ContractError(f"{who} returned a {value.dtype} tensor; a regularizer returns a floating-point scalar")
    if not bool(torch.isfinite(value)):
        raise ContractError(f"{who} returned {float(value.detach())}; a regularizer's value must be finite (a NaN "
                            "or inf would poison the loss): check the statistics it reads for empty or zero values")
    return value if value.dim() == 0 else value.reshape(())


def check_members(who: str, members: Any) -> list[Member]:
    """A schedule's members: a non-empty list of ``Member`` with finite weights >= 0 summing to 1."""
    if isinstance(members, Member):
        raise ContractError(f"{who} returned a bare Member; members() returns a list of them: return [member]")
    if not isinstance(members, (list, tuple)):
        raise ContractError(f"{who} returned {type(members).__name__}; members() returns a list of "
                            "nde_plugins.Member")
    if not members:
        raise ContractError(f"{who} returned no member; a call needs at least one solver: return "
                            "[base.member] to solve with the block's own method")
    total = 0.0
    for i, member in enumerate(members):
        if not isinstance(member, Member):
            raise ContractError(f"{who} returned {member!r} as member {i}; members are nde_plugins.Member values, "
                                f"e.g. Member({member!r}) for a method name" if isinstance(member, str) else
                                f"{who} returned a {type(member).__name__} as member {i}; members are "
                                "nde_plugins.Member values")
        weight = member.weight
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                or weight < 0:
            raise ContractError(f"{who}: member {i} ({member.method}) has weight {weight!r}; weights are finite "
                                "numbers >= 0")
        total += weight
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise ContractError(f"{who}: the members' weights sum to {total:.6g}; they must sum to 1 (the output is "
                            "their weighted mean): normalize them")
    return members if isinstance(members, list) else list(members)


def check_ends(who: str, t: torch.Tensor, ends: Any, batch: int | None) -> torch.Tensor:
    """An end-time draw, detached and on ``t``'s dtype and device; ``ContractError`` naming the rule it breaks."""
    expected = (len(t),) if batch is None else (batch, len(t))
    if not torch.is_tensor(ends) or tuple(ends.shape) != expected:
        shape = tuple(ends.shape) if torch.is_tensor(ends) else type(ends).__name__
        raise ContractError(f"{who} returned {shape}; the contract asks for a tensor of shape {expected} "
                            "(one end per time of t" + (", per sample)" if batch is not None else ")"))
    ends = ends.detach().to(dtype=t.dtype, device=t.device)
    if not _ends_follow_the_rules(t, ends):
        raise ContractError(
            f"{who} drew {ends.tolist()} for t = {t.tolist()}: every drawn end must be finite and lie beyond its "
            "interval's start, and the first time must stay t0"
        )
    return ends


def _ends_follow_the_rules(t: torch.Tensor, ends: torch.Tensor) -> bool:
    """Finite ends, the first one t0, every interval keeping its direction and a positive length."""
    if ends.dim() == 1:  # a shared draw: a few Python floats, checked without tensor work
        times, values = t.tolist(), ends.tolist()
        direction = 1.0 if times[-1] > times[0] else -1.0
        return values[0] == times[0] and all(
            math.isfinite(end) and (end - start) * direction > 0 for start, end in zip(times, values[1:])
        )
    direction = 1.0 if float(t[-1]) > float(t[0]) else -1.0
    lengths = (ends[:, 1:] - t[:-1]) * direction
    return bool(torch.isfinite(ends).all()) and not bool((lengths <= 0).any()) and not bool((ends[:, 0] != t[0]).any())


def check_diffusion_output(who: str, g: Any, y: torch.Tensor) -> None:
    """A diffusion's G: a tensor shaped like the state (diagonal noise: one value per state entry)."""
    if not torch.is_tensor(g):
        raise ContractError(f"{who} returned {type(g).__name__}; a diffusion returns G as a tensor shaped like "
                            f"the state {tuple(y.shape)}")
    if g.shape != y.shape:
        raise ContractError(f"{who} returned shape {tuple(g.shape)} for a state of shape {tuple(y.shape)}; "
                            "diagonal noise needs one value per state entry")


@contextlib.contextmanager
def reading_as(stats: Any, who: str, declared: frozenset[str] | None) -> Iterator[None]:
    """Within the context, ``stats`` refuses reads of statistics ``declared`` does not hold, naming ``who``."""
    if declared is None or stats is None:
        yield
        return
    previous = stats.__dict__.get("_reader")
    stats.__dict__["_reader"] = (who, declared)
    try:
        yield
    finally:
        stats.__dict__["_reader"] = previous


def refuse_undeclared_read(reader: tuple[str, frozenset[str]] | None, word: str) -> None:
    """Raise if the regularizer now reading (``reader``) did not declare ``word`` (called by ``StepStats``)."""
    if reader is not None and word not in reader[1]:
        who, declared = reader
        raise ContractError(f"{who} reads {word!r} but its requires is {sorted(declared)}: the block did not "
                            f"record it for this regularizer; add {word!r} to its requires")


__all__ = [
    "REQUIRES", "STATISTICS", "BaseSolver", "BlockView", "CallState", "ContractError", "Diffusion", "Member",
    "build_plugin", "check_diffusion_output", "check_ends", "check_members", "check_regularizer_value",
    "check_requires", "reading_as", "refuse_undeclared_read",
]
