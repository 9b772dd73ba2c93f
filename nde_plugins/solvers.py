"""One resolution of an ODE method into one immutable value, which every caller asks.

``resolve_solver(method, options)`` takes what a user writes (a torchdiffeq name, a registered
tableau or family name, a spec ``"rk4_uv:u=0.3"``, a ``Tableau`` or a ``TableauFamily``) plus
torchdiffeq's options and a family's parameters, and returns a ``Solver``: the name torchdiffeq is
given, the options, the family and its resolved parameters, the order, whether it runs on a fixed
grid or under adaptive step control, the options it accepts and the statistics it can record.
``odeint``, the blocks, schedules, the proper-ODE check and the CLI all ask the ``Solver``; the
method table is consulted in one place (``_torchdiffeq.describe``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from . import _torchdiffeq
from ._checks import check_step, check_times, check_tolerances
from .plugins import get_registry
from .specs import parse_method_spec
from .stats import SolverPlan
from .tableaux import Tableau, TableauFamily

MethodLike = str | Tableau | TableauFamily


class ReadOnlyOptions(Mapping[str, Any]):
    """A solver's options, read-only (a resolved solver is a value) and, unlike a mappingproxy, picklable."""

    __slots__ = ("_options",)

    def __init__(self, options: Mapping[str, Any]) -> None:
        self._options = dict(options)

    def __getitem__(self, key: str) -> Any:
        return self._options[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._options)

    def __len__(self) -> int:
        return len(self._options)

    def __repr__(self) -> str:
        return f"ReadOnlyOptions({self._options!r})"

    def __reduce__(self) -> tuple:
        return ReadOnlyOptions, (self._options,)


@dataclass(frozen=True)
class Solver:
    """A resolved ODE method with its options (see ``resolve_solver``).

    ``name``: the method name torchdiffeq is given; ``options``: its options, a family's parameters
    included (read-only); the rest is what the method table says about them (``description``),
    read through the properties: ``family`` (a ``TableauFamily`` or None), ``params`` (the family's
    parameters with defaults filled in), ``order`` (of the solution it propagates; None when
    unknown), ``fixed_grid`` / ``adaptive`` (how it steps; neither: a multistep or scipy solver),
    ``accepted`` (the option names it reads) and ``plan`` (what its step statistics record).
    """

    name: str
    options: Mapping[str, Any]
    description: _torchdiffeq.Description

    @property
    def family(self) -> TableauFamily | None:
        """The registered ``TableauFamily`` of the method, or None."""
        return self.description.family

    @property
    def params(self) -> Mapping[str, float]:
        """The family's parameters with defaults filled in (empty for a method that is not a family)."""
        return self.description.params

    @property
    def order(self) -> int | None:
        """The order of the solution it propagates (None for multistep and scipy solvers)."""
        return self.description.order

    @property
    def fixed_grid(self) -> bool:
        """Whether it steps on a fixed grid."""
        return self.description.fixed_grid

    @property
    def adaptive(self) -> bool:
        """Whether it runs under torchdiffeq's adaptive Runge-Kutta step control."""
        return self.description.adaptive

    @property
    def accepted(self) -> frozenset[str]:
        """The option names its solver reads (a family's parameters included)."""
        return self.description.accepted

    @property
    def plan(self) -> SolverPlan:
        """What its step statistics record (``StepStats.plan``)."""
        return self.description.plan

    @property
    def step_options(self) -> dict[str, Any]:
        """The options without the family's parameters (what stays when a member changes them)."""
        family = self.family.params if self.family is not None else ()
        return {k: v for k, v in self.options.items() if k not in family}

    @property
    def has_error_estimate(self) -> bool:
        """Whether its steps carry an error ratio E_j."""
        return self.plan.has_error_estimate


def resolve_solver(method: MethodLike, options: Mapping[str, Any] | None = None) -> Solver:
    """The ``Solver`` for ``method`` with ``options``; bad input raises naming the part that is wrong.

    Unknown names raise ``UnknownPluginNameError`` with suggestions; parameters a method does not
    have, a parameter given both in the spec and in ``options`` with different values, and options
    the solver would not read raise ``ValueError``; a family member outside its domain raises
    ``TableauError``.
    """
    name, merged = _name_and_options(method, options)
    return _solver(name, merged)


def with_options(solver: Solver, options: Mapping[str, Any]) -> Solver:
    """``solver``'s method with other options (a family member's parameters), without resolving the name again."""
    return _solver(solver.name, dict(options))


def _solver(name: str, options: dict[str, Any]) -> Solver:
    return Solver(name, ReadOnlyOptions(options), _torchdiffeq.describe(name, options))


def resolve_method(method: MethodLike, options: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The torchdiffeq method name and options that select ``method`` (``resolve_solver``'s first two fields)."""
    solver = resolve_solver(method, options)
    return solver.name, dict(solver.options)


def _name_and_options(method: MethodLike, options: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    table = _torchdiffeq.install()
    options = dict(options or {})
    if isinstance(method, (Tableau, TableauFamily)):
        reg = get_registry().find("tableau", method.name)
        if reg is not None and (reg.obj is method or reg.obj == method):
            return method.name, options
        return table.add_adhoc(method), options
    if not isinstance(method, str):
        raise TypeError(
            f"method must be a name, a 'name:param=value' spec, a Tableau or a TableauFamily; "
            f"got {type(method).__name__}"
        )
    name, params = parse_method_spec(method)
    options = merge_params(method, params, options, "options")
    if name in table.builtin_names:
        if params:
            raise ValueError(f"torchdiffeq's method {name!r} takes no parameters; got {sorted(params)}")
    else:
        entry = get_registry().get("tableau", name, extra_names=table.builtin_names)  # raises with suggestions
        takes = entry.params if isinstance(entry, TableauFamily) else ()
        unknown = sorted(set(params) - set(takes))
        if unknown:  # the spec names parameters, not solver options: say which the method has
            what = f"family {name!r} has the parameters {list(takes)}" if takes else f"{name!r} is not a family"
            raise ValueError(f"method spec {method!r} gives {unknown}, but {what}")
    return name, options


def merge_params(spec: str, from_spec: Mapping[str, Any], given: Mapping[str, Any], given_as: str) -> dict[str, Any]:
    """``given`` plus the parameters written in a method spec; a parameter given both ways must agree.

    One rule for ``odeint(method="rk4_uv:u=0.3", options=...)`` and ``get_tableau("rk4_uv:u=0.3", u=...)``:
    neither silently wins.
    """
    merged = dict(given)
    for key, value in from_spec.items():
        if key in merged and merged[key] != value:
            raise ValueError(f"parameter {key!r} is given both in the method spec {spec!r} ({value}) and in "
                             f"{given_as} ({merged[key]}); give it once")
        merged[key] = value
    return merged


def check_solve_inputs(solver: Solver, t: Any, rtol: Any, atol: Any) -> torch.Tensor:
    """Validate what a solve is given besides the state; returns ``t`` as a checked tensor."""
    check_tolerances(rtol, atol)
    t = check_times(t)
    if solver.options.get("step_size") is not None:
        check_step("options['step_size']", solver.options["step_size"], t)
    return t


def torchdiffeq_method_names() -> frozenset[str]:
    """torchdiffeq's own method names (reserved: no plugin may take them)."""
    return _torchdiffeq.torchdiffeq_method_names()


__all__ = ["MethodLike", "Solver", "check_solve_inputs", "merge_params", "resolve_method", "resolve_solver",
           "torchdiffeq_method_names", "with_options"]
