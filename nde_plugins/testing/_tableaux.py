"""The checks of a registered tableau or family: it must run as a method of plain torchdiffeq."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
import torchdiffeq

from .. import _torchdiffeq
from ..plugins import get_registry
from ..tableaux import Tableau, TableauFamily
from ._fields import MLPField, PluginCheckWarning, smooth_exact, smooth_field, states

#: Steps of the order check over [0, 2]: the error must fall like h**order between them (small enough
#: for the leading error term to dominate on this problem, large enough to stay above rounding).
_ORDER_STEPS = (0.0625, 0.03125)
#: How far below its declared order a tableau's observed order may read (rounding, a lucky constant).
_ORDER_SLACK = 0.6


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
    """A tableau itself; a family's given or default member, and members around it inside its domain."""
    if isinstance(obj, Tableau):
        return [({}, obj)]
    if not isinstance(obj, TableauFamily):
        raise TypeError(f"registered as a tableau but is a {type(obj).__name__}")
    base = obj.resolve(dict(options))
    tried = [base]
    for param in obj.params:
        for shift in (0.1, -0.1, 0.25):
            candidate = {**base, param: base[param] + shift}
            try:
                tried.append(obj.resolve(candidate))
            except ValueError:  # outside the domain: not a member
                continue
    return [(params, obj.member(params)) for params in tried[:5]]


def _solve(name: str, y0: torch.Tensor, t: torch.Tensor, params: Mapping[str, float], field=smooth_field,
           **kwargs: Any) -> torch.Tensor:
    options = {**params, **kwargs.pop("options", {})}
    return torchdiffeq.odeint(field, y0, t, method=name, options=options, **kwargs)


def _check_member(name: str, params: dict[str, float], tableau: Tableau) -> list[str]:
    failures = []
    y0 = torch.tensor([1.0, -0.5], dtype=torch.float64)
    span = torch.tensor([0.0, 2.0], dtype=torch.float64)
    exact = smooth_exact(y0, 2.0)

    errors = []
    for h in _ORDER_STEPS:
        y = _solve(name, y0, span, params, options={"step_size": h})[-1]
        errors.append(float((y - exact).abs().max()))
    if not all(math.isfinite(e) for e in errors):
        return [f"a fixed-grid solve of dy/dt = cos(t) y is not finite (errors {errors})"]
    if errors[1] > 1e-11:  # below that, rounding decides and there is no order left to see
        observed = math.log2(errors[0] / errors[1])
        if observed < tableau.order - _ORDER_SLACK:
            failures.append(f"declares order {tableau.order} but converges at order {observed:.2f} on a fixed grid "
                            f"(errors {errors[0]:.3g} at h = {_ORDER_STEPS[0]}, {errors[1]:.3g} at h = "
                            f"{_ORDER_STEPS[1]}); check its coefficients or its declared order")

    if tableau.b_hat is not None:
        # A pair that controls its error ends within a small multiple of the tolerance (a low-order pair
        # would take tens of thousands of steps at a tight one).
        y = _solve(name, y0, span, params, rtol=1e-6, atol=1e-6)[-1]
        error = float((y - exact).abs().max())
        if not error < 1e-3:
            failures.append(f"an adaptive solve at rtol = atol = 1e-6 is off by {error:.3g}: its embedded pair does "
                            "not control the error (is b_hat a solution of a different order than declared?)")

    y32 = _solve(name, y0.float(), span.float(), params, options={"step_size": 0.25})
    if y32.dtype != torch.float32 or not bool(torch.isfinite(y32).all()):
        failures.append(f"a float32 solve gives {y32.dtype}, finite: {bool(torch.isfinite(y32).all())}")

    forward_error = errors[1]
    back = _solve(name, exact, torch.tensor([2.0, 0.0], dtype=torch.float64), params,
                  options={"step_size": _ORDER_STEPS[1]})[-1]
    back_error = float((back - y0).abs().max())
    if not back_error <= 10 * forward_error + 1e-10:
        failures.append(f"solving backwards in time (t from 2 to 0) is off by {back_error:.3g}, forwards by "
                        f"{forward_error:.3g}")

    plain = _solve(name, y0, span, params, options={"step_size": 0.25})
    perturbed = _solve(name, y0, span, params, options={"step_size": 0.25, "perturb": True})
    if not torch.allclose(plain, perturbed, rtol=1e-9, atol=1e-12):
        failures.append("options={'perturb': True} changes a smooth solve; stage times must be nudged only "
                        "at the step's ends")

    calls = []

    class Watched(torch.nn.Module):
        def forward(self, t, y):
            return smooth_field(t, y)

        def callback_step(self, t0, y, dt):
            calls.append(float(t0))

    _solve(name, y0, span, params, field=Watched(), options={"step_size": 0.25})
    if len(calls) != 8:
        failures.append(f"callback_step was called {len(calls)} times for 8 fixed-grid steps (h = 0.25 on [0, 2])")

    failures += _check_adjoint(name, params, tableau)
    return failures


def _check_adjoint(name: str, params: dict[str, float], tableau: Tableau) -> list[str]:
    """odeint_adjoint's gradients must be backprop's, to the discretization error of the step."""
    field = MLPField().double()
    x = states()
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    h = 0.05
    grads = []
    for solve in (torchdiffeq.odeint, torchdiffeq.odeint_adjoint):
        field.zero_grad()
        y = solve(field, x, t, method=name, options={**params, "step_size": h})[-1]
        y.square().sum().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in field.parameters()]))
    scale = float(grads[0].abs().max())
    difference = float((grads[0] - grads[1]).abs().max())
    allowed = max(1e-6, 20 * h ** tableau.order) * scale
    if not difference <= allowed:
        return [f"odeint_adjoint's gradients differ from odeint's by {difference:.3g} (relative "
                f"{difference / scale:.3g}; allowed {allowed / scale:.3g} at h = {h})"]
    return []


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
