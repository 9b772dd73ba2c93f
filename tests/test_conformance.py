"""Conformance: a registered tableau behaves like a torchdiffeq built-in under torchdiffeq's own API.

The general rules (perturbed stage times, step callbacks and the warning for callbacks a solver
never calls, events, adjoint gradients, ``grid_constructor``, decreasing time, tuple states,
dtypes, ``step_t`` / ``jump_t`` / ``min_step`` / ``max_step``, convergence order) live in the
plugin kit, ``nde_plugins.testing``, as ``MEMBER_CHECKS``: here each of them runs on every
registered method (built-in tableaux and families, plus whatever entry-point plugins are installed,
e.g. the example plugin's ``ssprk3`` and ``generic2``), and, as a calibration of the rules, on
torchdiffeq's own solvers. What only this project can check stays here: each step is the textbook
Runge-Kutta step of the tableau, and where a registered tableau is the same method as a torchdiffeq
built-in (rk38 and rk4, rk2 u=1/2 and midpoint, dormand_prince and dopri5, ...) the two are
compared directly.

Fixed-grid checks run every member (pairs included, with ``step_size``); adaptive checks run the
members that have an embedded pair. Families run at their defaults and at one other member.
"""

import importlib

import pytest
import torch
import torchdiffeq

import nde_plugins as nde
from nde_plugins import _torchdiffeq
from nde_plugins.testing import MEMBER_CHECKS
from nde_plugins.testing._problems import F64, StepLog, SwitchedRate, forced_rotation
from nde_plugins.testing._solver_api import GRID, Y0, H

from ._conformance_fields import ExpSin, TimeRecorder, registered_cases, textbook_rk_solve

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


fixed_cases = pytest.mark.parametrize("case", FIXED_CASES, ids=_ids)


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
# The plugin kit's rules, on every registered member and on torchdiffeq's own solvers


def _member_check_params():
    params = []
    for check in MEMBER_CHECKS.values():
        for case in FIXED_CASES:
            if check.applies(case.tableau):
                params.append(pytest.param(check, case, id=f"{check.name}-{case.id}"))
    return params


@pytest.mark.parametrize("check,case", _member_check_params())
def test_registered_member_keeps_the_rule(check, case):
    """The kit's rule ``check`` (see nde_plugins/testing/_solver_api.py) holds for the member."""
    assert check(case.method, dict(case.params), case.tableau) == []


# torchdiffeq's own methods, each with the tableau of the method it is (dopri5's and bosh3's pairs are
# the registered dormand_prince and bogacki_shampine, whose steps equal them; see above).
TORCHDIFFEQ_METHODS = [(name, tableau) for name, tableau in _torchdiffeq._fixed_grid_equivalents().items()
                       if name in TD_BUILTINS]
TORCHDIFFEQ_ADAPTIVE = [("dopri5", nde.get_registry().find("tableau", "dormand_prince").obj),
                        ("bosh3", nde.get_registry().find("tableau", "bogacki_shampine").obj)]
TORCHDIFFEQ_METHODS += TORCHDIFFEQ_ADAPTIVE
#: Rules whose accuracy bound bosh3's first-order interpolant misses by 1.2 to 3x (events, adjoint, retrace,
#: float32): torchdiffeq reads outputs and events between step ends, where a registered pair interpolates at
#: third order.
BOSH3_INTERPOLATION = {"events_adaptive", "adjoint_adaptive", "reversed_time_adaptive", "dtypes_adaptive"}


def _calibration_params():
    params = []
    for method, tableau in TORCHDIFFEQ_METHODS:
        for check in MEMBER_CHECKS.values():
            if not check.applies(tableau) or check.name == "options_untouched":
                continue
            if (method, tableau) in TORCHDIFFEQ_ADAPTIVE and not check.adaptive:
                continue  # torchdiffeq's pairs have no fixed-grid mode (they ignore step_size), unlike a registered one
            if method == "bosh3" and check.name in BOSH3_INTERPOLATION:
                continue
            params.append(pytest.param(method, tableau, check, id=f"{method}-{check.name}"))
    return params


@pytest.mark.parametrize(("method", "tableau", "check"), _calibration_params())
def test_torchdiffeq_own_solvers_keep_the_kits_rules(method, tableau, check):
    """Calibration: the kit holds plugins to no rule torchdiffeq's own solvers break."""
    assert check(method, {}, tableau) == []
