"""One tableau member against torchdiffeq's whole solver API: the rules torchdiffeq's own solvers keep.

Each check takes ``(method, params, tableau)`` (the registered name, the family parameters passed
through ``options``, and the member's tableau) and returns its failures as sentences. Fixed-grid
checks apply to every member (a pair steps on a fixed grid when given ``step_size``); adaptive
checks to members with an embedded pair. ``MEMBER_CHECKS`` lists them by name; the project's own
conformance tests run each of them on every registered member.

The checks raise ``_Broken`` internally at the first broken rule, so each reports one sentence
naming what was expected and what was seen.
"""

from __future__ import annotations

import ast
import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torchdiffeq

from ..tableaux import Tableau
from ._problems import (
    F64,
    Decay,
    GridLog,
    SmallMLP,
    StepLog,
    SwitchedRate,
    TupleField,
    callbacks_only,
    exp_sin,
    exp_sin_exact,
    forced_rotation,
    forced_rotation_exact,
    tuple_field_flat,
)

H = 1 / 8  # fixed step: grid points k/8 are exact binary fractions
GRID = torch.arange(9, dtype=F64) * H
T_OUT = torch.tensor([0.0, 0.5, 1.0], dtype=F64)  # output times, on the grid
Y0 = torch.tensor([1.0, -0.5], dtype=F64)
UNSUPPORTED_CALLBACKS = re.compile(r"^Solver '(?P<method>[^']*)' does not support callbacks (?P<names>\{.*\})$")
ACCEPT_REJECT = ("callback_accept_step", "callback_reject_step")
#: Steps of the order fit (multiples of 4, so the output times are grid points: no interpolation error).
ORDER_STEPS = (16, 32, 64, 128)
#: Below this error rounding decides, and the order fit leaves the point out.
ROUNDING_FLOOR = 1e-11


class _Broken(Exception):
    """A rule a check found broken; its message is the failure."""


def expect(condition: Any, message: str) -> None:
    if not condition:
        raise _Broken(message)


def adaptive_tol(tableau: Tableau) -> float:
    """rtol = atol for adaptive solves: tight enough to test accuracy, loose enough that a low-order pair
    stays fast (a 2nd-order pair at 1e-9 takes ~10^4 steps per unit time)."""
    return {1: 1e-3, 2: 1e-4, 3: 1e-7}.get(tableau.order, 1e-9)


def _opts(params: Mapping[str, float], **extra: Any) -> dict:
    return {**params, **extra}


def _solve(method: str, params: Mapping[str, float], tableau: Tableau, fixed: bool) -> dict:
    """Keyword arguments of a fixed-grid (step 1/32) or adaptive (adaptive_tol) solve."""
    if fixed:
        return {"options": _opts(params, step_size=1 / 32)}
    tol = adaptive_tol(tableau)
    return {"rtol": tol, "atol": tol, "options": _opts(params)}


def _outputs(fixed: bool, dtype: torch.dtype = F64) -> torch.Tensor:
    """Output times on [0, 1] for accuracy checks: grid points on a fixed grid; only the ends adaptively, so that
    the pair's error control is judged and not its interpolant (torchdiffeq's own bosh3 interpolates with a
    first-order formula, whose error between steps exceeds the tolerance many times)."""
    return torch.linspace(0.0, 1.0, 5, dtype=dtype) if fixed else torch.tensor([0.0, 1.0], dtype=dtype)


def _error_bound(tableau: Tableau, fixed: bool) -> float:
    """A bound on the global error of _solve's solve of the test problems on [0, 1]."""
    return max(10 * (1 / 32) ** tableau.order, 1e-10) if fixed else 100 * adaptive_tol(tableau)


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float = 0.0) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def _unsupported_callback_warnings(field, method: str, options: dict, tol: float = 1e-7) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torchdiffeq.odeint(field, Y0, T_OUT, method=method, rtol=tol, atol=tol, options=options)
    return [str(w.message) for w in caught if UNSUPPORTED_CALLBACKS.match(str(w.message))]


# ------------------------------------------------------------------------------------------------
# Fixed grid (every member)


def options_untouched(method, params, tableau):
    """torchdiffeq copies ``options``; family parameters must not be popped from the caller's dict."""
    options = _opts(params, step_size=H)
    before = dict(options)
    torchdiffeq.odeint(exp_sin, Y0, T_OUT, method=method, options=options)
    expect(options == before, f"odeint changed the caller's options dict from {before} to {options}")


def fixed_grid_order(method, params, tableau):
    """The slope of log(error) against log(h) is the declared order (the order of b for a pair)."""
    t = torch.linspace(0.0, 1.0, 5, dtype=F64)
    exact = forced_rotation_exact(t, Y0)
    points = []
    for n in ORDER_STEPS:
        y = torchdiffeq.odeint(forced_rotation, Y0, t, method=method, options=_opts(params, step_size=1 / n))
        error = float((y - exact).abs().max())
        expect(math.isfinite(error), f"a fixed-grid solve with {n} steps is not finite")
        if error > ROUNDING_FLOOR:
            points.append((math.log(1 / n), math.log(error)))
    if len(points) < 2:  # at rounding level from 32 steps on: order too high to observe, accurate anyway
        return
    mean_h = sum(h for h, _ in points) / len(points)
    mean_e = sum(e for _, e in points) / len(points)
    slope = sum((h - mean_h) * (e - mean_e) for h, e in points) / sum((h - mean_h) ** 2 for h, _ in points)
    expect(abs(slope - tableau.order) <= 0.3 or (slope > tableau.order and len(points) < len(ORDER_STEPS)),
           f"declares order {tableau.order} but converges at order {slope:.2f} on a fixed grid "
           f"({len(ORDER_STEPS)} step sizes 1/{ORDER_STEPS[0]}..1/{ORDER_STEPS[-1]}); check its coefficients or "
           "its declared order")


def callback_step_per_step(method, params, tableau):
    """callback_step(t0, y0, dt) once per grid step with the step's start state, as torchdiffeq's rk4 does."""
    field = GridLog(forced_rotation)
    y = torchdiffeq.odeint(field, Y0, GRID, method=method, options=_opts(params, step_size=H))
    reference = GridLog(forced_rotation)
    torchdiffeq.odeint(reference, Y0, GRID, method="rk4", options={"step_size": H})
    expect(field.log == reference.log, f"callback_step calls {field.log[:3]}... differ from torchdiffeq's rk4 "
                                       f"{reference.log[:3]}... (once per step, with t0 and dt)")
    expect(all(torch.equal(state, y[k]) for k, state in enumerate(field.callback_states)),
           "callback_step got a state other than the step's start state")


def unused_callbacks_warn(method, params, tableau):
    """On a fixed grid accept/reject callbacks are never called; torchdiffeq warns naming the method."""
    for names in (ACCEPT_REJECT[:1], ACCEPT_REJECT[1:], ACCEPT_REJECT):
        ours = _unsupported_callback_warnings(callbacks_only(*names), method, _opts(params, step_size=H))
        expect(len(ours) == 1, f"a field with {list(names)} on a fixed grid got {ours or 'no warning'}; torchdiffeq "
                               f"warns \"Solver '{method}' does not support callbacks ...\" as for its rk4")
        match = UNSUPPORTED_CALLBACKS.match(ours[0])
        expect(match["method"] == method and ast.literal_eval(match["names"]) == set(names),
               f"the unused-callback warning {ours[0]!r} should name {method!r} and {set(names)}")
    ours = _unsupported_callback_warnings(callbacks_only("callback_step"), method, _opts(params, step_size=H))
    expect(ours == [], f"callback_step alone (supported by every solver) gave the warning {ours}")


def perturb_stage_times(method, params, tableau):
    """perturb=True moves a c = 0 stage to nextafter(t0, +inf) and a c = 1 stage to nextafter(t1, -inf)
    (torchdiffeq's Perturb.NEXT / PREV); without it stage i sees t0 + c_i h."""
    for perturb in (False, True):
        times = GridLog()
        torchdiffeq.odeint(times, Y0, T_OUT, method=method, options=_opts(params, step_size=H, perturb=perturb))
        n_steps = len(GRID) - 1
        per_step, rest = divmod(len(times.times), n_steps)
        used = len(tableau.c)
        while used > 1 and tableau.b[used - 1] == 0.0:  # a trailing zero-weight (FSAL) stage may be skipped
            used -= 1
        expect(rest == 0 and per_step in (len(tableau.c), used),
               f"expected {len(tableau.c)} evaluations per step over {n_steps} steps, got {len(times.times)}")
        for k in range(n_steps):
            t0, t1 = GRID[k], GRID[k + 1]
            row = times.times[k * per_step:(k + 1) * per_step]
            for i, (ci, seen) in enumerate(zip(tableau.c, row)):
                where = f"with perturb={perturb}, step {k} stage {i} (c = {ci:g}) saw t = {seen!r}"
                if perturb and ci == 0.0:
                    expect(seen == torch.nextafter(t0, t0 + 1).item(), f"{where}, expected nextafter(t0, +inf)")
                elif perturb and ci == 1.0:
                    expect(seen == torch.nextafter(t1, t1 - 1).item(), f"{where}, expected nextafter(t1, -inf)")
                elif perturb:
                    expect(seen not in GRID.tolist(), f"{where}, a grid point")
                else:
                    expect(math.isclose(seen, t0.item() + ci * H, abs_tol=1e-15), f"{where}, expected t0 + c h")


def grid_constructor(method, params, tableau):
    """A constructed grid sets the steps exactly; a uniform one equals step_size bit for bit."""
    calls = []

    def quadratic(func, y0, t):
        calls.append(t.clone())
        return t[0] + (t[-1] - t[0]) * torch.linspace(0.0, 1.0, 11, dtype=t.dtype) ** 2

    t = torch.tensor([0.0, 1.0], dtype=F64)
    field = GridLog(forced_rotation)
    torchdiffeq.odeint(field, Y0, t, method=method, options=_opts(params, grid_constructor=quadratic))
    grid = torch.linspace(0.0, 1.0, 11, dtype=F64) ** 2
    expect(len(calls) == 1 and torch.equal(calls[0], t), "grid_constructor was not called once with t")
    expect([t0 for _, t0, _ in field.log] == grid[:-1].tolist()
           and [dt for _, _, dt in field.log] == (grid[1:] - grid[:-1]).tolist(),
           "the steps are not the constructed grid's")
    a = torchdiffeq.odeint(exp_sin, Y0, T_OUT, method=method, options=_opts(params, grid_constructor=lambda *_: GRID))
    b = torchdiffeq.odeint(exp_sin, Y0, T_OUT, method=method, options=_opts(params, step_size=H))
    expect(torch.equal(a, b), "a uniform grid_constructor differs from the same step_size")


def _event_accuracy(tableau: Tableau, h: float = 1 / 64) -> float:
    """How far a fixed-grid event time may be off: the event is found by linear interpolation inside the last
    step (error ~ h^2 / 8 |y''| / |y'|) of a solution whose own error is ~ h^order."""
    return max(1e-3, 0.5 * h ** tableau.order)


def fixed_grid_events(method, params, tableau):
    """odeint(event_fn=) finds exp(sin t) = 1.5 within the grid's accuracy (linear interpolation in the last step)."""
    event_t, sol = torchdiffeq.odeint(exp_sin, torch.ones(1, dtype=F64), torch.tensor([0.0, 2.0], dtype=F64),
                                      method=method, options=_opts(params, step_size=1 / 64),
                                      event_fn=lambda t, y: y - 1.5)
    expect(event_t.shape == () and sol.shape == (2, 1), f"event solve shapes {event_t.shape}, {sol.shape}")
    expected = math.asin(math.log(1.5))
    allowed = _event_accuracy(tableau)
    expect(abs(event_t.item() - expected) <= allowed,
           f"event at t = {event_t.item():.6g}, expected {expected:.6g} (allowed error {allowed:.3g})")


def event_time_gradient(method, params, tableau):
    """odeint_event: y' = -k y reaches 1/2 at t* = ln2 / k, and dt*/dk = -ln2 / k^2 flows back to k
    (adaptively for a pair, on a fixed grid of 1/64 otherwise)."""
    field = Decay()
    tol = adaptive_tol(tableau)
    pair = tableau.b_hat is not None
    options = _opts(params) if pair else _opts(params, step_size=1 / 64)
    event_t, _ = torchdiffeq.odeint_event(field, torch.ones(1, dtype=F64), torch.tensor(0.0, dtype=F64),
                                          event_fn=lambda t, y: y - 0.5, method=method, rtol=tol, atol=tol,
                                          options=options)
    (grad,) = torch.autograd.grad(event_t, field.k)
    k = field.k.item()
    accuracy = 100 * tol if pair else _event_accuracy(tableau)
    expect(abs(event_t.item() - math.log(2) / k) <= accuracy,
           f"odeint_event time {event_t.item():.8g}, expected {math.log(2) / k:.8g}")
    expect(abs(grad.item() + math.log(2) / k ** 2) <= 10 * accuracy,
           f"d(event time)/dk = {grad.item():.6g}, expected {-math.log(2) / k ** 2:.6g}")


def _compare_adjoint(method, options, rtol, atol, grad_tol, t):
    results = []
    for solve in (torchdiffeq.odeint, torchdiffeq.odeint_adjoint):
        field = SmallMLP()
        y0 = torch.tensor([0.5, -0.3], dtype=F64, requires_grad=True)
        y = solve(field, y0, t, method=method, rtol=rtol, atol=atol,
                  options=dict(options))
        loss = (torch.linspace(0.5, 1.5, y.numel(), dtype=F64).view_as(y) * y ** 2).sum()
        results.append((y.detach(), torch.autograd.grad(loss, (y0, *field.parameters()))))
    (y_bp, g_bp), (y_adj, g_adj) = results
    expect(_close(y_adj, y_bp, atol=1e-14, rtol=1e-13), "odeint_adjoint's forward solve differs from odeint's")
    for name, a, b in zip(["y0", "w1", "b1", "wt", "w2"], g_adj, g_bp):
        difference = float((a - b).abs().max())
        expect(_close(a, b, atol=grad_tol, rtol=grad_tol),
               f"odeint_adjoint's gradient for {name} differs from odeint's by {difference:.3g} "
               f"(allowed {grad_tol:.3g})")


def adjoint_fixed_grid(method, params, tableau):
    """Discretise-then-differentiate and the adjoint agree to the method's accuracy on the same grid."""
    h = 1 / 32
    _compare_adjoint(method, _opts(params, step_size=h), 1e-7, 1e-9, max(3 * h ** tableau.order, 1e-9), _outputs(True))


def _reversed_time(method, params, tableau, fixed):
    """Decreasing t equals the problem in s = -t bit for bit, callbacks see the user's decreasing times, and
    solving back from y(1) retraces the forward solution."""
    kwargs = _solve(method, params, tableau, fixed)
    t_desc = torch.tensor([1.0, 0.6, 0.0], dtype=F64)
    field = GridLog(forced_rotation) if fixed else StepLog(forced_rotation)
    y_desc = torchdiffeq.odeint(field, Y0, t_desc, method=method, **kwargs)
    y_flip = torchdiffeq.odeint(lambda s, y: -forced_rotation(-s, y), Y0, -t_desc, method=method,
                                **_solve(method, params, tableau, fixed))
    expect(torch.equal(y_desc, y_flip), "a decreasing-time solve differs from the time-reversed problem's")
    starts = [t0 for kind, t0, _ in field.log if kind == ("step" if fixed else "accept")]
    expect(starts and starts[0] == 1.0 and all(a > b for a, b in zip(starts, starts[1:])) and starts[-1] > 0.0,
           f"step callbacks saw the starts {starts[:4]}..., not decreasing from 1")
    t = _outputs(fixed)
    forward = torchdiffeq.odeint(forced_rotation, Y0, t, method=method, **_solve(method, params, tableau, fixed))
    back = torchdiffeq.odeint(forced_rotation, forward[-1], t.flip(0), method=method,
                              **_solve(method, params, tableau, fixed))
    error = float((back.flip(0) - forward).abs().max())
    expect(error <= 2 * _error_bound(tableau, fixed),
           f"solving back from y(1) misses the forward solution by {error:.3g}")


def reversed_time_fixed(method, params, tableau):
    _reversed_time(method, params, tableau, fixed=True)


def _tuple_state(method, params, tableau, fixed):
    """A tuple state comes back as a tuple equal to the concatenated solve; callbacks get tuples."""
    y0 = (torch.tensor([1.0, 0.0], dtype=F64), torch.tensor([0.5, -1.0, 2.0], dtype=F64))
    t = torch.linspace(0.0, 1.0, 4, dtype=F64)
    field = TupleField()
    ya, yb = torchdiffeq.odeint(field, y0, t, method=method, **_solve(method, params, tableau, fixed))
    expect(ya.shape == (4, 2) and yb.shape == (4, 3), f"tuple solve shapes {ya.shape}, {yb.shape}")
    flat_kwargs = _solve(method, params, tableau, fixed)
    if not fixed:  # a tuple's default norm is the max of its parts' RMS norms; give the flat solve the same
        flat_kwargs["options"]["norm"] = lambda x: torch.max(x[:2].pow(2).mean().sqrt(), x[2:].pow(2).mean().sqrt())
    flat = torchdiffeq.odeint(tuple_field_flat, torch.cat(y0), t, method=method, **flat_kwargs)
    expect(_close(torch.cat([ya, yb], dim=1), flat, atol=1e-14, rtol=1e-13),
           "a tuple state's solution differs from the concatenated state's")
    expect(field.callback_states and all(isinstance(s, tuple) and [p.shape for p in s] == [(2,), (3,)]
                                         for s in field.callback_states),
           "callback_step did not get the state as a tuple")


def tuple_state_fixed(method, params, tableau):
    _tuple_state(method, params, tableau, fixed=True)


def _dtypes(method, params, tableau, fixed):
    """The solution has y0's dtype; float64 reaches the method's accuracy, float32 the same up to its rounding."""
    for dtype in (torch.float32, torch.float64):
        t = _outputs(fixed, dtype)
        y0 = torch.tensor([1.0, -2.0], dtype=dtype)
        kwargs = _solve(method, params, tableau, fixed)
        if not fixed and dtype == torch.float32:  # ask float32 for no more than it can give
            kwargs["rtol"] = kwargs["atol"] = max(kwargs["rtol"], 1e-5)
        y = torchdiffeq.odeint(exp_sin, y0, t, method=method, **kwargs)
        expect(y.dtype == dtype, f"a {dtype} solve returned {y.dtype}")
        error = float((y.double() - exp_sin_exact(t.double(), y0.double())).abs().max())
        if fixed:
            allowed = _error_bound(tableau, fixed) + (1e-5 if dtype == torch.float32 else 1e-13)
        else:
            allowed = 100 * kwargs["rtol"]
        expect(error <= allowed, f"a {dtype} solve is off by {error:.3g} (allowed {allowed:.3g})")


def dtypes_fixed(method, params, tableau):
    _dtypes(method, params, tableau, fixed=True)


# ------------------------------------------------------------------------------------------------
# Adaptive (members with an embedded pair)


def _accepted_steps(log, t_start: float, t_end: float) -> list[tuple[float, float]]:
    """callback_step, then exactly one of accept/reject for the same t0; accepted steps tile [t_start, t_end].

    callback_step gets the proposed dt, before torchdiffeq shortens the step to land on a step_t /
    jump_t point; accept/reject get the dt actually taken.
    """
    expect(log and len(log) % 2 == 0, f"the step callbacks were not called in step/verdict pairs: {log[:4]}")
    accepted = []
    for (kind, t0, dt), (verdict, t0b, dtb) in zip(log[::2], log[1::2]):
        expect(kind == "step" and verdict in ("accept", "reject") and t0 == t0b and 0 < dtb <= dt,
               f"callback_step({t0}, dt={dt}) was followed by {verdict}({t0b}, dt={dtb})")
        if verdict == "accept":
            accepted.append((t0b, dtb))
    expect(accepted and accepted[0][0] == t_start, f"no accepted step starts at {t_start}")
    for (t0, dt), (t0_next, _) in zip(accepted, accepted[1:]):
        expect(math.isclose(t0_next, t0 + dt, rel_tol=1e-15, abs_tol=1e-15),
               f"an accepted step ends at {t0 + dt!r} but the next starts at {t0_next!r}")
    expect(accepted[-1][0] < t_end <= accepted[-1][0] + accepted[-1][1] * (1 + 1e-15),
           f"the accepted steps do not end at {t_end}")
    return accepted


def adaptive_accuracy(method, params, tableau):
    """An adaptive solve ends within a small multiple of the tolerance: the embedded pair controls the error."""
    tol = adaptive_tol(tableau)
    t = _outputs(False)
    y = torchdiffeq.odeint(forced_rotation, Y0, t, method=method, rtol=tol, atol=tol, options=_opts(params))
    error = float((y - forced_rotation_exact(t, Y0)).abs().max())
    expect(error <= 100 * tol, f"an adaptive solve at rtol = atol = {tol:g} is off by {error:.3g}: the embedded pair "
                               "does not control the error (is b_hat a solution of a different order than declared?)")


def adaptive_callbacks(method, params, tableau):
    """Adaptively: callback_step once per attempted step, then accept or reject; a too-large first step is
    rejected; no unused-callback warning."""
    field = StepLog()
    tol = adaptive_tol(tableau)
    torchdiffeq.odeint(field, torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0, 3.0], dtype=F64), method=method,
                       rtol=tol, atol=tol, options=_opts(params, first_step=0.5))
    _accepted_steps(field.log, 0.0, 3.0)
    expect(field.of("reject"), "a first step of 0.5 at a tight tolerance was never rejected")
    warned = _unsupported_callback_warnings(callbacks_only(*ACCEPT_REJECT), method, _opts(params), tol)
    expect(warned == [], f"an adaptive solve warned {warned}")


def step_t(method, params, tableau):
    """Every step_t point is the start of an accepted step, and f is not re-evaluated just after it."""
    field = StepLog()
    points = torch.tensor([0.3, 0.7], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    tol = adaptive_tol(tableau)
    y = torchdiffeq.odeint(field, torch.ones(1, dtype=F64), t, method=method, rtol=tol, atol=tol,
                           options=_opts(params, step_t=points))
    starts = {t0 for t0, _ in _accepted_steps(field.log, 0.0, 1.0)}
    for p in points.tolist():
        expect(p in starts, f"no accepted step starts at the step_t point {p}")
        after = torch.nextafter(torch.tensor(p, dtype=F64), torch.tensor(2.0, dtype=F64)).item()
        expect(after not in field.times, f"f was re-evaluated just after the step_t point {p} (that is jump_t's rule)")
    expect(_close(y, exp_sin_exact(t, torch.ones(1, dtype=F64)), atol=100 * tol), "inaccurate with step_t")


def jump_t(method, params, tableau):
    """A step ends exactly at the jump_t point, f is re-evaluated just after it, the solution is accurate
    across the jump, with no more rejected steps than without jump_t."""
    t = torch.tensor([0.0, 1.0], dtype=F64)
    y0 = torch.ones(1, dtype=F64)
    jump = torch.tensor([SwitchedRate.JUMP], dtype=F64)
    tol = adaptive_tol(tableau)
    field = SwitchedRate()
    y = torchdiffeq.odeint(field, y0, t, method=method, rtol=tol, atol=tol, options=_opts(params, jump_t=jump))
    _accepted_steps(field.log, 0.0, 1.0)
    expect(SwitchedRate.JUMP in {t0 for t0, _ in field.of("accept")}, "no accepted step starts at the jump_t point")
    expect(torch.nextafter(jump, jump + 1).item() in field.times, "f was not re-evaluated just after the jump")
    expect(abs(y[-1].item() - 1.0) <= 100 * tol, f"y(1) = {y[-1].item():.10g} across the jump, exactly 1")
    blind = SwitchedRate()
    torchdiffeq.odeint(blind, y0, t, method=method, rtol=tol, atol=tol, options=_opts(params))
    expect(len(field.of("reject")) <= len(blind.of("reject")), "jump_t made more steps fail than without it")


def step_bounds(method, params, tableau):
    """No attempted step is longer than max_step; none shorter than min_step, where a step is accepted
    whatever its error (torchdiffeq's rule)."""
    one, span = torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    field = StepLog()
    torchdiffeq.odeint(field, one, span, method=method, rtol=1e-3, atol=1e-3, options=_opts(params, max_step=0.05))
    accepted = _accepted_steps(field.log, 0.0, 1.0)
    expect(all(dt <= 0.05 for _, _, dt in field.log) and len(accepted) >= 20, "a step exceeded max_step = 0.05")
    field = StepLog()
    torchdiffeq.odeint(field, one, span, method=method, rtol=1e-12, atol=1e-12, options=_opts(params, min_step=0.25))
    _accepted_steps(field.log, 0.0, 1.0)
    expect(all(dt >= 0.25 for _, _, dt in field.log), "a step fell below min_step = 0.25")
    expect(field.of("reject") == [], "a step at min_step was rejected")


def adaptive_events(method, params, tableau):
    """odeint(event_fn=) returns (event_t, solution) shaped like dopri5's, at the analytic time."""
    y0, t = torch.ones(1, dtype=F64), torch.tensor([0.0, 2.0], dtype=F64)
    tol = adaptive_tol(tableau)
    event_t, sol = torchdiffeq.odeint(exp_sin, y0, t, method=method, rtol=tol, atol=tol, options=_opts(params),
                                      event_fn=lambda t, y: y - 1.5)
    ref_t, ref_sol = torchdiffeq.odeint(exp_sin, y0, t, method="dopri5", rtol=1e-9, atol=1e-9,
                                        event_fn=lambda t, y: y - 1.5)
    expect((event_t.shape, event_t.dtype, sol.shape, sol.dtype) == (ref_t.shape, ref_t.dtype, ref_sol.shape,
                                                                    ref_sol.dtype),
           f"event solve returned shapes {event_t.shape}, {sol.shape}; dopri5 {ref_t.shape}, {ref_sol.shape}")
    expected = math.asin(math.log(1.5))
    expect(abs(event_t.item() - expected) <= 100 * tol and abs(sol[-1].item() - 1.5) <= 100 * tol,
           f"event at t = {event_t.item():.8g} with y = {sol[-1].item():.8g}, expected {expected:.8g} and 1.5")


def adjoint_adaptive(method, params, tableau):
    tol = adaptive_tol(tableau)
    _compare_adjoint(method, _opts(params), tol, tol, 300 * tol, _outputs(False))


def reversed_time_adaptive(method, params, tableau):
    _reversed_time(method, params, tableau, fixed=False)


def tuple_state_adaptive(method, params, tableau):
    _tuple_state(method, params, tableau, fixed=False)


def dtypes_adaptive(method, params, tableau):
    _dtypes(method, params, tableau, fixed=False)


# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemberCheck:
    """A named rule; ``adaptive`` ones apply only to members with an embedded pair."""

    name: str
    run: Callable[[str, Mapping[str, float], Tableau], None]
    adaptive: bool = False

    def applies(self, tableau: Tableau) -> bool:
        """Whether the rule concerns this member (adaptive rules need an embedded pair)."""
        return not self.adaptive or tableau.b_hat is not None

    def __call__(self, method: str, params: Mapping[str, float], tableau: Tableau) -> list[str]:
        """The failures of this rule for the member (empty when it holds or does not apply)."""
        if not self.applies(tableau):
            return []
        try:
            self.run(method, dict(params), tableau)
        except _Broken as broken:
            return [f"{self.name}: {broken}"]
        except Exception as exc:  # torchdiffeq reports some failures (a step that underflows) by raising
            return [f"{self.name}: the solve raised {type(exc).__name__}: {exc}"]
        return []


#: Every member check by name, fixed-grid ones first.
MEMBER_CHECKS: Mapping[str, MemberCheck] = {check.name: check for check in [
    MemberCheck("options_untouched", options_untouched),
    MemberCheck("fixed_grid_order", fixed_grid_order),
    MemberCheck("callback_step", callback_step_per_step),
    MemberCheck("unused_callbacks_warn", unused_callbacks_warn),
    MemberCheck("perturb", perturb_stage_times),
    MemberCheck("grid_constructor", grid_constructor),
    MemberCheck("events_fixed_grid", fixed_grid_events),
    MemberCheck("event_time_gradient", event_time_gradient),
    MemberCheck("adjoint_fixed_grid", adjoint_fixed_grid),
    MemberCheck("reversed_time_fixed_grid", reversed_time_fixed),
    MemberCheck("tuple_state_fixed_grid", tuple_state_fixed),
    MemberCheck("dtypes_fixed_grid", dtypes_fixed),
    MemberCheck("adaptive_accuracy", adaptive_accuracy, adaptive=True),
    MemberCheck("adaptive_callbacks", adaptive_callbacks, adaptive=True),
    MemberCheck("step_t", step_t, adaptive=True),
    MemberCheck("jump_t", jump_t, adaptive=True),
    MemberCheck("step_bounds", step_bounds, adaptive=True),
    MemberCheck("events_adaptive", adaptive_events, adaptive=True),
    MemberCheck("adjoint_adaptive", adjoint_adaptive, adaptive=True),
    MemberCheck("reversed_time_adaptive", reversed_time_adaptive, adaptive=True),
    MemberCheck("tuple_state_adaptive", tuple_state_adaptive, adaptive=True),
    MemberCheck("dtypes_adaptive", dtypes_adaptive, adaptive=True),
]}
