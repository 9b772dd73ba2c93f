"""The checks of a registered tableau or family: every member tried must keep torchdiffeq's solver API
(``_solver_api.MEMBER_CHECKS``); a member that repeats another method's coefficients gets a warning."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from .. import _torchdiffeq
from ..plugins import get_registry
from ..tableaux import Tableau, TableauFamily
from ._fields import PluginCheckWarning
from ._solver_api import MEMBER_CHECKS

#: Members of a family the check solves with (every member check runs on each).
MEMBERS_TRIED = 3


def check_tableau(name: str, obj: Any, options: Mapping[str, Any]) -> list[str]:
    """Every member tried must solve through torchdiffeq's API as its tableau promises."""
    failures = []
    members = _members(obj, options)
    for params, tableau in members:
        where = f"member {params}: " if params else ""
        failures += [where + failure for failure in _check_member(name, params, tableau)]
    _warn_duplicates(name, members)
    return failures


def _members(obj: Any, options: Mapping[str, Any]) -> list[tuple[dict[str, float], Tableau]]:
    """A tableau itself; a family's given or default member and two members around it inside its domain
    (each parameter moved once before any is moved twice)."""
    if isinstance(obj, Tableau):
        if options:
            raise ValueError(f"options {dict(options)} given, but a tableau takes none (only a family has "
                             "parameters); leave them out")
        return [({}, obj)]
    if not isinstance(obj, TableauFamily):
        raise TypeError(f"registered as a tableau but is a {type(obj).__name__}")
    base = obj.resolve(dict(options))
    tried = [base]
    for shift in (0.1, -0.1, 0.25):
        for param in obj.params:
            candidate = {**base, param: base[param] + shift}
            try:
                tried.append(obj.resolve(candidate))
            except ValueError:  # outside the domain: not a member
                continue
    return [(params, obj.member(params)) for params in tried[:MEMBERS_TRIED]]


def _check_member(name: str, params: dict[str, float], tableau: Tableau) -> list[str]:
    return [failure for check in MEMBER_CHECKS.values() for failure in check(name, params, tableau)]


def _coefficients(tableau: Tableau) -> tuple:
    return (tuple(round(c, 12) for c in tableau.c), tuple(tuple(round(a, 12) for a in row) for row in tableau.a),
            tuple(round(b, 12) for b in tableau.b))


def _warn_duplicates(name: str, members: list[tuple[dict[str, float], Tableau]]) -> None:
    """Warn when a member has the coefficients of another registered method or a torchdiffeq built-in."""
    others: dict[tuple, str] = {}
    for registration in get_registry().registrations("tableau"):
        if registration.name == name:
            continue
        obj = registration.obj
        member = obj.member() if isinstance(obj, TableauFamily) else obj
        others.setdefault(_coefficients(member), registration.name)
    for method, tableau in _torchdiffeq._fixed_grid_equivalents().items():
        others.setdefault(_coefficients(tableau), f"torchdiffeq's {method}")
    for params, tableau in members:
        same = others.get(_coefficients(tableau))
        if same is not None:
            where = f" (member {params})" if params else ""
            warnings.warn(f"{name}{where} has the same coefficients as {same}", PluginCheckWarning, stacklevel=2)
