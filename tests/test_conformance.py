"""Conformance: a registered tableau behaves like a torchdiffeq built-in under torchdiffeq's own API.

Every registered method (built-in tableaux and families, plus whatever entry-point plugins are
installed, e.g. the example plugin's ``ssprk3`` and ``generic2``) is run through plain
``torchdiffeq.odeint`` / ``odeint_adjoint`` / ``odeint_event`` and checked against the contracts
torchdiffeq's own solvers keep: perturbed stage times, step callbacks and the warning for callbacks
a solver never calls, events, adjoint gradients, ``grid_constructor``, decreasing time, tuple
states, dtypes, ``step_t`` / ``jump_t`` / ``min_step`` / ``max_step``, and convergence order.
Where a registered tableau is the same method as a torchdiffeq built-in (rk38 and rk4, rk2 u=1/2
and midpoint, dormand_prince and dopri5, ...) the two are compared directly.

Fixed-grid checks run every member (pairs included, with ``step_size``); adaptive checks run the
members that have an embedded pair. Families run at their defaults and at one other member.
"""

import ast
import importlib
import math
import re
import warnings

import pytest
import torch
import torchdiffeq

import nde_plugins as nde

from ._conformance_fields import (
    F64,
    AcceptAndReject,
    AcceptOnly,
    Decay,
    ExpSin,
    GridLog,
    RejectOnly,
    SmallMLP,
    StepLog,
    StepOnly,
    SwitchedRate,
    TimeRecorder,
    TupleField,
    exp_sin,
    exp_sin_exact,
    forced_rotation,
    registered_cases,
    textbook_rk_solve,
    tuple_field_flat,
)

# The tox matrix runs torchdiffeq 0.2.4 and 0.2.5. Both have step callbacks, `valid_callbacks`,
# events and the adaptive options `step_t` / `jump_t` / `min_step` / `max_step` under the same
# names (0.2.3 and earlier had none of the callbacks; nde_plugins requires >= 0.2.4). The only
# difference these tests meet is that 0.2.5 added the fixed-grid `heun2` solver, so comparisons
# with heun2 are collected only where it exists.
TD_VERSION = tuple(int(part) for part in torchdiffeq.__version__.split(".")[:3])
TD_BUILTINS = nde.torchdiffeq_method_names()

DEFAULT_CASES, SHIFTED_CASES = registered_cases()
FIXED_CASES = DEFAULT_CASES + SHIFTED_CASES  # every member, run on a fixed grid
FIXED_ONLY_CASES = [c for c in FIXED_CASES if not c.is_pair]
PAIR_CASES = [c for c in FIXED_CASES if c.is_pair]  # run adaptively (and on a fixed grid above)


def _ids(case):
    return case.id


def adaptive_tol(case) -> float:
    """rtol = atol for adaptive solves: tight enough to test accuracy, loose enough that a low-order
    pair stays fast (a 2nd-order pair at 1e-9 takes ~10^4 steps per unit time)."""
    return {2: 1e-5, 3: 1e-7}.get(case.tableau.order, 1e-9)


fixed_cases = pytest.mark.parametrize("case", FIXED_CASES, ids=_ids)
pair_cases = pytest.mark.parametrize("case", PAIR_CASES, ids=_ids)

UNSUPPORTED_CALLBACKS = re.compile(r"^Solver '(?P<method>[^']*)' does not support callbacks (?P<names>\{.*\})$")

H = 1 / 8  # fixed step: grid points k/8 are exact binary fractions
GRID = torch.arange(9, dtype=F64) * H
T_OUT = torch.tensor([0.0, 0.5, 1.0], dtype=F64)  # output times, on the grid
Y0 = torch.tensor([1.0, -0.5], dtype=F64)


def _unsupported_callback_warnings(caught):
    return [str(w.message) for w in caught if UNSUPPORTED_CALLBACKS.match(str(w.message))]


def _solve_catching_warnings(func, method, options, tol=1e-7):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torchdiffeq.odeint(func, Y0, T_OUT, method=method, rtol=tol, atol=tol, options=options)
    return _unsupported_callback_warnings(caught)


# ------------------------------------------------------------------------------------------------
# The registry and torchdiffeq's method table


def test_every_registered_method_is_a_torchdiffeq_method():
    """Built-ins and entry-point plugins are all collected here and all reachable through SOLVERS."""
    assert TD_VERSION >= (0, 2, 4), "step callbacks and valid_callbacks need torchdiffeq >= 0.2.4"
    names = {c.method for c in DEFAULT_CASES}
    assert {"rk4_u1", "rk38", "dormand_prince", "tsitouras5"} <= names
    assert {"ssprk3", "generic2"} <= names, "the example plugin (tests/fixtures/example_plugin) is not installed"
    solvers = importlib.import_module("torchdiffeq._impl.odeint").SOLVERS  # the table odeint looks methods up in
    for name in names:
        assert name in solvers and name not in TD_BUILTINS


@fixed_cases
def test_options_dict_is_not_modified(case):
    """torchdiffeq copies `options`; family parameters must not be popped from the caller's dict."""
    options = case.options(step_size=H)
    before = dict(options)
    torchdiffeq.odeint(exp_sin, Y0, T_OUT, method=case.method, options=options)
    assert options == before


# ------------------------------------------------------------------------------------------------
# Fixed grid: the step is the tableau's, and equals torchdiffeq's built-in where the method is one


@fixed_cases
def test_fixed_grid_step_is_the_textbook_runge_kutta_step(case):
    """On a fixed grid, each step is y1 = y0 + h sum b_i k_i with k_i = f(t0 + c_i h, y0 + h sum a_ij k_j)."""
    y = torchdiffeq.odeint(forced_rotation, Y0, GRID, method=case.method, options=case.options(step_size=H))
    expected = textbook_rk_solve(case.tableau, forced_rotation, Y0, GRID)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-14)


FIXED_EQUIVALENTS = [
    ("rk38", {}, "rk4"),  # torchdiffeq's rk4 is Kutta's 3/8 rule
    ("rk4_uv", {"u": 1 / 3, "v": 2 / 3}, "rk4"),
    ("rk2", {"u": 0.5}, "midpoint"),
    ("rk3", {"u": 1 / 3, "v": 2 / 3}, "heun3"),
]
if "heun2" in TD_BUILTINS:  # torchdiffeq >= 0.2.5
    FIXED_EQUIVALENTS.append(("rk2", {"u": 1.0}, "heun2"))


@pytest.mark.parametrize("interp", ["linear", "cubic"])
@pytest.mark.parametrize(
    "method,params,builtin",
    FIXED_EQUIVALENTS,
    ids=[m + ("[" + ",".join(f"{k}={v:.4g}" for k, v in p.items()) + "]" if p else "") + f"-vs-{b}"
         for m, p, b in FIXED_EQUIVALENTS],
)
def test_fixed_grid_equals_torchdiffeq_builtin(method, params, builtin, interp):
    """Same method, same grid: same values (off-grid outputs interpolated), same evaluation times and count."""
    t = torch.tensor([0.0, 0.3, 0.55, 1.0], dtype=F64)  # off the grid: exercises the interpolation
    ours, theirs = TimeRecorder(forced_rotation), TimeRecorder(forced_rotation)
    y_ours = torchdiffeq.odeint(ours, Y0, t, method=method, options={**params, "step_size": H, "interp": interp})
    y_theirs = torchdiffeq.odeint(theirs, Y0, t, method=builtin, options={"step_size": H, "interp": interp})
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-13, atol=1e-14)
    assert len(ours.times) == len(theirs.times), "number of field evaluations differs"
    # torchdiffeq's heun2 evaluates its c=1 stage at t0 + dt, the tableau solver at t1: equal up to rounding
    torch.testing.assert_close(torch.tensor(ours.times), torch.tensor(theirs.times), rtol=0, atol=1e-15)


# ------------------------------------------------------------------------------------------------
# perturb=True: torchdiffeq's Perturb.NEXT / Perturb.PREV semantics at every c=0 / c=1 stage

TORCHDIFFEQ_FIXED_NODES = {
    "euler": (0.0,),
    "midpoint": (0.0, 0.5),
    "heun3": (0.0, 1 / 3, 2 / 3),
    "rk4": (0.0, 1 / 3, 2 / 3, 1.0),
}
if "heun2" in TD_BUILTINS:
    TORCHDIFFEQ_FIXED_NODES["heun2"] = (0.0, 1.0)

# (label, method, options, nodes c, weights b): every registered member, and torchdiffeq's own
# fixed-grid solvers as the reference the registered ones must match.
PERTURB_CASES = [(c.id, c.method, c.options(), c.tableau.c, c.tableau.b) for c in FIXED_CASES] + [
    (f"torchdiffeq-{name}", name, {}, nodes, None) for name, nodes in TORCHDIFFEQ_FIXED_NODES.items()
]
PERTURB_IDS = [p[0] for p in PERTURB_CASES]


def _stage_times(method, options, nodes, weights, perturb):
    """The times the field saw, one row per step, and the nodes of the stages evaluated.

    Stages are evaluated in order; trailing stages with zero weight (an FSAL stage) may be skipped
    on a fixed grid, where they contribute nothing, so either count is accepted.
    """
    rec = TimeRecorder()
    torchdiffeq.odeint(rec, Y0, T_OUT, method=method, options={**options, "step_size": H, "perturb": perturb})
    n_steps = len(GRID) - 1
    used = len(nodes)
    while weights is not None and used > 1 and weights[used - 1] == 0.0:
        used -= 1
    per_step, rest = divmod(len(rec.times), n_steps)
    assert rest == 0 and per_step in (len(nodes), used), (
        f"{method}: expected {len(nodes)} evaluations per step over {n_steps} steps, got {len(rec.times)}"
    )
    return [rec.times[k * per_step:(k + 1) * per_step] for k in range(n_steps)], nodes[:per_step]


@pytest.mark.parametrize("label,method,options,nodes,weights", PERTURB_CASES, ids=PERTURB_IDS)
def test_perturb_moves_every_node_0_and_node_1_stage_off_the_grid(label, method, options, nodes, weights):
    """With perturb=True, a stage with c_i = 0 sees nextafter(t0, +inf), one with c_i = 1 sees
    nextafter(t1, -inf) (torchdiffeq's Perturb.NEXT / PREV), so the field is never called at a grid point."""
    rows, nodes = _stage_times(method, options, nodes, weights, perturb=True)
    grid = set(GRID.tolist())
    problems = []
    for k, row in enumerate(rows):
        t0, t1 = GRID[k], GRID[k + 1]
        after_t0 = torch.nextafter(t0, t0 + 1).item()
        before_t1 = torch.nextafter(t1, t1 - 1).item()
        for i, (ci, seen) in enumerate(zip(nodes, row)):
            if seen in grid:
                problems.append(f"step {k} stage {i} (c={ci:g}) evaluated exactly at grid point t={seen!r}")
            elif ci == 0.0 and seen != after_t0:
                problems.append(f"step {k} stage {i} (c=0) saw t={seen!r}, expected nextafter(t0)={after_t0!r}")
            elif ci == 1.0 and seen != before_t1:
                problems.append(f"step {k} stage {i} (c=1) saw t={seen!r}, expected nextafter(t1, -inf)={before_t1!r}")
    more = f" (+{len(problems) - 4} more)" if len(problems) > 4 else ""
    assert not problems, f"{label}: " + "; ".join(problems[:4]) + more


@pytest.mark.parametrize("label,method,options,nodes,weights", PERTURB_CASES, ids=PERTURB_IDS)
def test_without_perturb_stages_see_the_node_times(label, method, options, nodes, weights):
    """With perturb=False, stage i sees t0 + c_i h (exactly t0 at c_i = 0; t1 at c_i = 1, up to rounding)."""
    rows, nodes = _stage_times(method, options, nodes, weights, perturb=False)
    for k, row in enumerate(rows):
        t0 = GRID[k].item()
        for ci, seen in zip(nodes, row):
            if ci == 0.0:
                assert seen == t0
            else:
                assert seen == pytest.approx(t0 + ci * H, abs=1e-15)


# ------------------------------------------------------------------------------------------------
# Step callbacks


@fixed_cases
def test_fixed_grid_calls_callback_step_once_per_step(case):
    """callback_step(t0, y0, dt) once per grid step with the step's start state; accept/reject never."""
    field = GridLog(forced_rotation)
    y = torchdiffeq.odeint(field, Y0, GRID, method=case.method, options=case.options(step_size=H))
    assert field.log == [("step", GRID[k].item(), H) for k in range(len(GRID) - 1)]
    for k, state in enumerate(field.callback_states):
        assert torch.equal(state, y[k])
    reference = GridLog(forced_rotation)
    torchdiffeq.odeint(reference, Y0, GRID, method="rk4", options={"step_size": H})
    assert field.log == reference.log  # what torchdiffeq's own fixed-grid solver does


@pytest.mark.parametrize("field_class", [AcceptOnly, RejectOnly, AcceptAndReject], ids=lambda c: c.__name__)
@pytest.mark.parametrize("case", FIXED_ONLY_CASES, ids=_ids)
def test_fixed_grid_tableau_warns_about_unused_callbacks_like_rk4(case, field_class):
    """A fixed-grid solver never calls callback_accept_step / callback_reject_step; torchdiffeq warns
    "Solver 'rk4' does not support callbacks {...}" for its rk4, and must warn the same for a tableau."""
    theirs = _solve_catching_warnings(field_class(), "rk4", {"step_size": H})
    ours = _solve_catching_warnings(field_class(), case.method, case.options(step_size=H))
    assert len(theirs) == 1  # the reference behaviour
    assert len(ours) == 1, f"{case.method}: expected torchdiffeq's warning {theirs[0]!r} (own name), got {ours}"
    mine, ref = UNSUPPORTED_CALLBACKS.match(ours[0]), UNSUPPORTED_CALLBACKS.match(theirs[0])
    assert mine["method"] == case.method
    assert ast.literal_eval(mine["names"]) == ast.literal_eval(ref["names"])


@pytest.mark.parametrize("field_class", [AcceptOnly, RejectOnly, AcceptAndReject], ids=lambda c: c.__name__)
@pytest.mark.parametrize("case", PAIR_CASES, ids=_ids)
def test_pair_on_fixed_grid_warns_about_unused_callbacks(case, field_class):
    """An embedded pair given step_size steps on a fixed grid and never calls accept/reject either:
    the user gets the same kind of warning, naming the method and the unused callbacks."""
    ours = _solve_catching_warnings(field_class(), case.method, case.options(step_size=H))
    expected = {n for n in ("callback_accept_step", "callback_reject_step") if hasattr(field_class, n)}
    assert len(ours) == 1, f"{case.method} on a fixed grid: no warning about unused callbacks {sorted(expected)}"
    match = UNSUPPORTED_CALLBACKS.match(ours[0])
    assert match["method"] == case.method and ast.literal_eval(match["names"]) == expected


@fixed_cases
def test_callback_step_alone_gives_no_warning_on_a_fixed_grid(case):
    """callback_step is supported by every torchdiffeq solver: no warning (as for rk4)."""
    assert _solve_catching_warnings(StepOnly(), "rk4", {"step_size": H}) == []
    assert _solve_catching_warnings(StepOnly(), case.method, case.options(step_size=H)) == []


@pair_cases
def test_adaptive_pair_accepts_all_callbacks_without_warning(case):
    """Run adaptively, a pair supports all three callbacks (as dopri5 does): no warning."""
    assert _solve_catching_warnings(AcceptAndReject(), "dopri5", {}) == []
    assert _solve_catching_warnings(AcceptAndReject(), case.method, case.options(), tol=adaptive_tol(case)) == []


def _check_adaptive_log(log, t_start, t_end):
    """callback_step, then exactly one of accept/reject for the same t0; accepted steps tile [t_start, t_end].

    callback_step gets the proposed dt, before torchdiffeq shortens the step to land on a step_t /
    jump_t point; accept/reject get the dt actually taken.
    """
    assert len(log) % 2 == 0 and log, log[:4]
    accepted = []
    for (kind, t0, dt), (verdict, t0b, dtb) in zip(log[::2], log[1::2]):
        assert kind == "step" and verdict in ("accept", "reject"), (kind, verdict)
        assert t0 == t0b and 0 < dtb <= dt
        if verdict == "accept":
            accepted.append((t0b, dtb))
    assert accepted and accepted[0][0] == t_start
    for (t0, dt), (t0_next, _) in zip(accepted, accepted[1:]):
        assert t0_next == pytest.approx(t0 + dt, rel=1e-15, abs=1e-15)
    assert accepted[-1][0] < t_end <= accepted[-1][0] + accepted[-1][1] * (1 + 1e-15)
    return accepted


@pair_cases
def test_adaptive_pair_calls_step_accept_reject_callbacks(case):
    """Adaptively: callback_step once per attempted step, followed by accept or reject for that step."""
    field = StepLog()
    t = torch.tensor([0.0, 1.0, 3.0], dtype=F64)
    tol = adaptive_tol(case)
    torchdiffeq.odeint(field, torch.ones(2, dtype=F64), t, method=case.method, rtol=tol, atol=tol,
                       options=case.options(first_step=0.5))  # a too-large first step forces a rejection
    _check_adaptive_log(field.log, 0.0, 3.0)
    assert field.of("reject"), "expected at least one rejected step"


# ------------------------------------------------------------------------------------------------
# Adaptive stepping equals torchdiffeq's built-in where the method is one

ADAPTIVE_EQUIVALENTS = [("dormand_prince", "dopri5"), ("bogacki_shampine", "bosh3")]
ADAPTIVE_SETUPS = {
    "plain": (ExpSin, {}),
    "max_step": (ExpSin, {"max_step": 0.1}),
    "min_step": (ExpSin, {"min_step": 0.4}),
    "step_t": (ExpSin, {"step_t": torch.tensor([0.3, 0.7], dtype=F64)}),
    "jump_t": (SwitchedRate, {"jump_t": torch.tensor([0.5], dtype=F64)}),
}


@pytest.mark.parametrize("setup", ADAPTIVE_SETUPS)
@pytest.mark.parametrize("method,builtin", ADAPTIVE_EQUIVALENTS, ids=[f"{m}-vs-{b}" for m, b in ADAPTIVE_EQUIVALENTS])
def test_adaptive_steps_equal_torchdiffeq_builtin(method, builtin, setup):
    """Same pair as a torchdiffeq built-in: the same attempted/accepted steps, evaluations and values."""
    base, options = ADAPTIVE_SETUPS[setup]
    t = torch.linspace(0.0, 1.0, 5, dtype=F64)
    y0 = torch.tensor([1.0, 2.0], dtype=F64)
    runs = []
    for name in (method, builtin):
        field = StepLog(base())
        y = torchdiffeq.odeint(field, y0, t, method=name, rtol=1e-7, atol=1e-8, options=dict(options))
        runs.append((field, y))
    (ours, y_ours), (theirs, y_theirs) = runs
    assert [k for k, *_ in ours.log] == [k for k, *_ in theirs.log]
    torch.testing.assert_close(torch.tensor([x[1:] for x in ours.log]), torch.tensor([x[1:] for x in theirs.log]),
                               rtol=1e-12, atol=1e-15)
    assert len(ours.times) == len(theirs.times), "number of field evaluations differs"
    if builtin == "dopri5":  # dormand_prince carries dopri5's dense output: the same values between steps
        torch.testing.assert_close(y_ours, y_theirs, rtol=1e-12, atol=1e-12)
    else:
        # bosh3 interpolates with the midpoint y0 + h/2 k2 (first order); bogacki_shampine solves for
        # third-order midpoint weights, so between steps it must be at least as accurate as bosh3.
        exact = base.exact(t, y0)
        assert (y_ours - exact).abs().max() <= (y_theirs - exact).abs().max()


# ------------------------------------------------------------------------------------------------
# step_t, jump_t, min_step, max_step (torchdiffeq 0.2.4 and 0.2.5 use the same option names)


@pair_cases
def test_step_t_makes_steps_end_exactly_on_the_given_times(case):
    """Every step_t point inside the interval is the start of an accepted step; f is not re-evaluated there."""
    field = StepLog()
    points = torch.tensor([0.3, 0.7], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    tol = adaptive_tol(case)
    y = torchdiffeq.odeint(field, torch.ones(1, dtype=F64), t, method=case.method, rtol=tol, atol=tol,
                           options=case.options(step_t=points))
    accepted = _check_adaptive_log(field.log, 0.0, 1.0)
    starts = {t0 for t0, _ in accepted}
    for p in points.tolist():
        assert p in starts, f"no accepted step starts at step_t point {p}"
        assert torch.nextafter(torch.tensor(p, dtype=F64), torch.tensor(2.0, dtype=F64)).item() not in field.times
    torch.testing.assert_close(y, exp_sin_exact(t, torch.ones(1, dtype=F64)), rtol=0, atol=100 * tol)


@pair_cases
def test_jump_t_steps_onto_the_discontinuity_and_reevaluates_after_it(case):
    """A step ends exactly at the jump_t point, f is re-evaluated just after it (Perturb.NEXT), the
    solution is accurate across the jump, and it takes no more rejected steps than without jump_t."""
    t = torch.tensor([0.0, 1.0], dtype=F64)
    y0 = torch.ones(1, dtype=F64)
    jump = torch.tensor([SwitchedRate.JUMP], dtype=F64)
    field = SwitchedRate()
    tol = adaptive_tol(case)
    y = torchdiffeq.odeint(field, y0, t, method=case.method, rtol=tol, atol=tol, options=case.options(jump_t=jump))
    _check_adaptive_log(field.log, 0.0, 1.0)
    assert SwitchedRate.JUMP in {t0 for t0, _ in field.of("accept")}
    assert torch.nextafter(jump, jump + 1).item() in field.times
    assert y[-1].item() == pytest.approx(1.0, abs=100 * tol)  # exact: e^{1/2} e^{-1/2}
    blind = SwitchedRate()
    torchdiffeq.odeint(blind, y0, t, method=case.method, rtol=tol, atol=tol, options=case.options())
    assert len(field.of("reject")) <= len(blind.of("reject"))


@pair_cases
def test_max_step_bounds_every_attempted_step(case):
    """No attempted or accepted step is longer than max_step, even at a loose tolerance."""
    field = StepLog()
    torchdiffeq.odeint(field, torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64), method=case.method,
                       rtol=1e-3, atol=1e-3, options=case.options(max_step=0.05))
    accepted = _check_adaptive_log(field.log, 0.0, 1.0)
    assert all(dt <= 0.05 for _, _, dt in field.log)
    assert len(accepted) >= 20


@pair_cases
def test_min_step_bounds_every_attempted_step(case):
    """Steps never go below min_step; at min_step a step is accepted whatever its error (torchdiffeq's rule)."""
    field = StepLog()
    torchdiffeq.odeint(field, torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64), method=case.method,
                       rtol=1e-12, atol=1e-12, options=case.options(min_step=0.25))
    _check_adaptive_log(field.log, 0.0, 1.0)
    assert all(dt >= 0.25 for _, _, dt in field.log)
    assert field.of("reject") == []


# ------------------------------------------------------------------------------------------------
# Events

EVENT_LEVEL = 1.5
EVENT_TIME = math.asin(math.log(EVENT_LEVEL))  # exp(sin t) = 1.5


def _level_event(t, y):
    return y - EVENT_LEVEL


@pair_cases
def test_adaptive_event_time_matches_the_analytic_one(case):
    """odeint(..., event_fn=) returns (event_t, solution) shaped like dopri5's, at the analytic time."""
    y0, t = torch.ones(1, dtype=F64), torch.tensor([0.0, 2.0], dtype=F64)
    tol = adaptive_tol(case)
    event_t, sol = torchdiffeq.odeint(exp_sin, y0, t, method=case.method, rtol=tol, atol=tol,
                                      options=case.options(), event_fn=_level_event)
    ref_t, ref_sol = torchdiffeq.odeint(exp_sin, y0, t, method="dopri5", rtol=1e-9, atol=1e-9, event_fn=_level_event)
    assert (event_t.shape, event_t.dtype) == (ref_t.shape, ref_t.dtype)
    assert (sol.shape, sol.dtype) == (ref_sol.shape, ref_sol.dtype)
    assert event_t.item() == pytest.approx(EVENT_TIME, abs=100 * tol)
    assert sol[-1].item() == pytest.approx(EVENT_LEVEL, abs=100 * tol)


@fixed_cases
def test_fixed_grid_event_time_matches_the_analytic_one(case):
    """Fixed-grid event handling (torchdiffeq requires step_size) finds the event within the grid's accuracy."""
    y0, t = torch.ones(1, dtype=F64), torch.tensor([0.0, 2.0], dtype=F64)
    event_t, sol = torchdiffeq.odeint(exp_sin, y0, t, method=case.method, options=case.options(step_size=1 / 64),
                                      event_fn=_level_event)
    assert event_t.shape == () and sol.shape == (2, 1)
    assert event_t.item() == pytest.approx(EVENT_TIME, abs=1e-3)  # linear interpolation inside the last step


@pytest.mark.parametrize("case", PAIR_CASES + FIXED_ONLY_CASES, ids=_ids)
def test_odeint_event_gradient_of_the_event_time(case):
    """odeint_event: y' = -k y reaches 1/2 at t* = ln2 / k, and dt*/dk = -ln2 / k^2 flows back to k."""
    field = Decay()
    tol = adaptive_tol(case)
    options = case.options() if case.is_pair else case.options(step_size=1 / 64)
    event_t, _ = torchdiffeq.odeint_event(field, torch.ones(1, dtype=F64), torch.tensor(0.0, dtype=F64),
                                          event_fn=lambda t, y: y - 0.5, method=case.method, rtol=tol, atol=tol,
                                          options=options)
    (grad,) = torch.autograd.grad(event_t, field.k)
    k = field.k.item()
    # fixed grid: linear interpolation inside the last step, error ~ h^2 / 8 * |y''| / |y'|
    accuracy = 100 * tol if case.is_pair else 1e-3
    assert event_t.item() == pytest.approx(math.log(2) / k, abs=accuracy)
    assert grad.item() == pytest.approx(-math.log(2) / k**2, abs=10 * accuracy)


# ------------------------------------------------------------------------------------------------
# odeint_adjoint gradients against backpropagation through the solver


def _loss_and_grads(solve, method, options, rtol, atol):
    field = SmallMLP()
    y0 = torch.tensor([0.5, -0.3], dtype=F64, requires_grad=True)
    t = torch.linspace(0.0, 1.0, 5, dtype=F64)
    y = solve(field, y0, t, method=method, rtol=rtol, atol=atol, options=options)
    weights = torch.linspace(0.5, 1.5, y.numel(), dtype=F64).view_as(y)
    loss = (weights * y**2).sum()
    grads = torch.autograd.grad(loss, (y0, *field.parameters()))
    return y.detach(), grads


def _compare_adjoint(method, options, rtol, atol, grad_tol):
    y_bp, g_bp = _loss_and_grads(torchdiffeq.odeint, method, options, rtol, atol)
    y_adj, g_adj = _loss_and_grads(torchdiffeq.odeint_adjoint, method, options, rtol, atol)
    torch.testing.assert_close(y_adj, y_bp, rtol=1e-13, atol=1e-14)  # the same forward solve
    for name, a, b in zip(["y0", "w1", "b1", "wt", "w2"], g_adj, g_bp):
        torch.testing.assert_close(a, b, rtol=grad_tol, atol=grad_tol, msg=lambda m, n=name: f"d loss / d {n}: {m}")


@fixed_cases
def test_adjoint_gradients_match_backprop_on_a_fixed_grid(case):
    """Discretise-then-differentiate and the adjoint agree to the method's accuracy on the same grid."""
    h = 1 / 32  # observed differences are 5-1000x below 3 h^order
    _compare_adjoint(case.method, case.options(step_size=h), 1e-7, 1e-9, grad_tol=max(3 * h**case.tableau.order, 1e-9))


@pair_cases
def test_adjoint_gradients_match_backprop_adaptively(case):
    tol = adaptive_tol(case)  # observed differences are 3-60x the tolerance
    _compare_adjoint(case.method, case.options(), tol, tol, grad_tol=300 * tol)


# ------------------------------------------------------------------------------------------------
# grid_constructor


@fixed_cases
def test_grid_constructor_sets_the_steps(case):
    """The solver steps exactly on the constructed (non-uniform) grid and interpolates nothing else in."""
    calls = []

    def quadratic_grid(func, y0, t):
        calls.append(t.clone())
        s = torch.linspace(0.0, 1.0, 11, dtype=t.dtype)
        return t[0] + (t[-1] - t[0]) * s**2

    t = torch.tensor([0.0, 1.0], dtype=F64)
    field = GridLog(forced_rotation)
    y = torchdiffeq.odeint(field, Y0, t, method=case.method, options=case.options(grid_constructor=quadratic_grid))
    grid = torch.linspace(0.0, 1.0, 11, dtype=F64) ** 2
    assert len(calls) == 1 and torch.equal(calls[0], t)
    assert [t0 for _, t0, _ in field.log] == grid[:-1].tolist()
    assert [dt for _, _, dt in field.log] == (grid[1:] - grid[:-1]).tolist()
    torch.testing.assert_close(y[-1], textbook_rk_solve(case.tableau, forced_rotation, Y0, grid)[-1],
                               rtol=1e-12, atol=1e-14)


@fixed_cases
def test_uniform_grid_constructor_equals_step_size(case):
    uniform = lambda func, y0, t: GRID  # noqa: E731
    a = torchdiffeq.odeint(exp_sin, Y0, T_OUT, method=case.method, options=case.options(grid_constructor=uniform))
    b = torchdiffeq.odeint(exp_sin, Y0, T_OUT, method=case.method, options=case.options(step_size=H))
    assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------------
# Decreasing time


def _reversed_field(f):
    """s -> -f(-s, y): the ODE in s = -t, which torchdiffeq solves when t decreases."""
    return lambda s, y: -f(-s, y)


def _setups():
    fixed = [pytest.param(c, True, id=f"{c.id}-fixed") for c in FIXED_CASES]
    adaptive = [pytest.param(c, False, id=f"{c.id}-adaptive") for c in PAIR_CASES]
    return fixed + adaptive


def _solve_kwargs(case, fixed):
    """Fixed grid: step 1/32. Adaptive: the pair's default step control at adaptive_tol."""
    if fixed:
        return {"options": case.options(step_size=1 / 32)}
    tol = adaptive_tol(case)
    return {"rtol": tol, "atol": tol, "options": case.options()}


def _global_error_bound(case, fixed):
    """A bound on the global error of _solve_kwargs' solve of the test problems on [0, 1]."""
    return max(10 * (1 / 32) ** case.tableau.order, 1e-10) if fixed else 100 * adaptive_tol(case)


@pytest.mark.parametrize("case,fixed", _setups())
def test_decreasing_time_is_the_time_reversed_problem(case, fixed):
    """odeint on decreasing t equals odeint of s -> -f(-s, y) on increasing s = -t, bit for bit;
    callbacks see the user's (decreasing) times."""
    t_desc = torch.tensor([1.0, 0.6, 0.0], dtype=F64)
    field = GridLog(forced_rotation) if fixed else StepLog(forced_rotation)
    y_desc = torchdiffeq.odeint(field, Y0, t_desc, method=case.method, **_solve_kwargs(case, fixed))
    y_flip = torchdiffeq.odeint(_reversed_field(forced_rotation), Y0, -t_desc, method=case.method,
                                **_solve_kwargs(case, fixed))
    assert torch.equal(y_desc, y_flip)
    starts = [t0 for kind, t0, _ in field.log if kind == ("step" if fixed else "accept")]
    assert starts[0] == 1.0 and all(a > b for a, b in zip(starts, starts[1:])) and starts[-1] > 0.0


@pytest.mark.parametrize("case,fixed", _setups())
def test_solving_backwards_retraces_the_forward_solution(case, fixed):
    """Solve forward on t, then backward from y(t_end) on flipped t: flipping gives the forward solution back."""
    t = torch.linspace(0.0, 1.0, 5, dtype=F64)
    fwd = torchdiffeq.odeint(forced_rotation, Y0, t, method=case.method, **_solve_kwargs(case, fixed))
    bwd = torchdiffeq.odeint(forced_rotation, fwd[-1], t.flip(0), method=case.method, **_solve_kwargs(case, fixed))
    torch.testing.assert_close(bwd.flip(0), fwd, rtol=0, atol=2 * _global_error_bound(case, fixed))


# ------------------------------------------------------------------------------------------------
# Tuple states


@pytest.mark.parametrize("case,fixed", _setups())
def test_tuple_state_equals_the_concatenated_state(case, fixed):
    """(y_a, y_b) comes back as a tuple of (len(t), *shape) tensors equal to the flat solve; callbacks get tuples."""
    y0 = (torch.tensor([1.0, 0.0], dtype=F64), torch.tensor([0.5, -1.0, 2.0], dtype=F64))
    t = torch.linspace(0.0, 1.0, 4, dtype=F64)
    field = TupleField()
    ya, yb = torchdiffeq.odeint(field, y0, t, method=case.method, **_solve_kwargs(case, fixed))
    assert ya.shape == (4, 2) and yb.shape == (4, 3)
    flat_kwargs = _solve_kwargs(case, fixed)
    if not fixed:  # a tuple's default norm is the max of its parts' RMS norms; give the flat solve the same

        def rms(x):
            return x.pow(2).mean().sqrt()

        flat_kwargs["options"]["norm"] = lambda x: torch.max(rms(x[:2]), rms(x[2:]))
    flat = torchdiffeq.odeint(tuple_field_flat, torch.cat(y0), t, method=case.method, **flat_kwargs)
    torch.testing.assert_close(torch.cat([ya, yb], dim=1), flat, rtol=1e-13, atol=1e-14)
    assert field.callback_states and all(
        isinstance(s, tuple) and [p.shape for p in s] == [(2,), (3,)] for s in field.callback_states
    )


# ------------------------------------------------------------------------------------------------
# dtypes


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case,fixed", _setups())
def test_result_dtype_follows_y0_and_accuracy_fits_the_dtype(case, fixed, dtype):
    """The solution has y0's dtype; float64 reaches the method's accuracy, float32 the same up to its rounding."""
    t = torch.linspace(0.0, 1.0, 5, dtype=dtype)
    y0 = torch.tensor([1.0, -2.0], dtype=dtype)
    kwargs = _solve_kwargs(case, fixed)
    if not fixed and dtype == torch.float32:  # ask float32 for no more than it can give
        kwargs["rtol"] = kwargs["atol"] = max(kwargs["rtol"], 1e-5)
    y = torchdiffeq.odeint(exp_sin, y0, t, method=case.method, **kwargs)
    assert y.dtype == dtype
    error = (y.double() - exp_sin_exact(t.double(), y0.double())).abs().max().item()
    if fixed:
        rounding = 1e-5 if dtype == torch.float32 else 1e-13
        assert error <= _global_error_bound(case, fixed) + rounding
    else:
        assert error <= 100 * kwargs["rtol"]


# ------------------------------------------------------------------------------------------------
# Convergence order on a fixed grid

# y' = R y + (sin 2t, 0) with R a damped rotation. Its exact solution comes from the autonomous
# linear system in (y, sin 2t, cos 2t), via the matrix exponential.
_M = torch.zeros(4, 4, dtype=F64)
_M[:2, :2] = torch.tensor([[-0.3, 3.0], [-3.0, -0.3]], dtype=F64)
_M[0, 2] = 1.0
_M[2, 3], _M[3, 2] = 2.0, -2.0
_T_CONV = torch.linspace(0.0, 1.0, 5, dtype=F64)
_EXACT = torch.stack([(torch.linalg.matrix_exp(_M * ti) @ torch.tensor([1.0, -0.5, 0.0, 1.0], dtype=F64))[:2]
                      for ti in _T_CONV])
_STEPS = (16, 32, 64, 128)  # multiples of 4, so the output times are grid points (no interpolation error)


@fixed_cases
def test_fixed_grid_convergence_order_matches_the_declared_order(case):
    """The slope of log(error) against log(h) is the tableau's order (the order of b for a pair)."""
    log_h, log_err = [], []
    for n in _STEPS:
        y = torchdiffeq.odeint(forced_rotation, Y0, _T_CONV, method=case.method, options=case.options(step_size=1 / n))
        log_h.append(math.log(1 / n))
        log_err.append(math.log((y - _EXACT).abs().max().item()))
    mean_h, mean_e = sum(log_h) / len(log_h), sum(log_err) / len(log_err)
    slope = sum((a - mean_h) * (b - mean_e) for a, b in zip(log_h, log_err)) / sum((a - mean_h) ** 2 for a in log_h)
    assert slope == pytest.approx(case.tableau.order, abs=0.3), f"observed order {slope:.2f}"
