"""Everything that touches torchdiffeq's private names lives in this module (and only here).

Names used, all present in torchdiffeq 0.2.4 and 0.2.5 (the tox matrix covers both):

- ``torchdiffeq._impl.odeint.SOLVERS`` and ``torchdiffeq._impl.adjoint.SOLVERS``: the method table
  (one dict object, imported into both modules). We replace it, in both places, by a dict
  subclass holding the same built-in entries that also answers for registered tableaux.
- ``rk_common._ButcherTableau``, ``rk_common._runge_kutta_step``,
  ``rk_common.RKAdaptiveStepsizeODESolver``: an adaptive solver is a subclass that only sets the
  class attributes ``order``, ``tableau`` and ``mid``, as torchdiffeq's own dopri5 does, so step
  control, error ratio, interpolation, callbacks and events are torchdiffeq's.
- ``misc._rms_norm`` / ``misc._mixed_norm``: the default norms, wrapped to record the error ratio.
- ``solvers.FixedGridODESolver`` and ``misc.Perturb``: a fixed-grid solver implements only
  ``_step_func`` (one step of the tableau); the grid loop and interpolation are torchdiffeq's.
- For ``gradient="checkpoint"`` (``solve_in_segments``): ``misc._check_inputs`` and
  ``misc._flat_to_shape`` (odeint's own set-up), a solver's ``_before_integrate``,
  ``_adaptive_step``, ``rk_state``, ``next_step_index`` / ``next_jump_index``, ``grid_constructor``,
  ``_step_func``, ``_linear_interp`` / ``_cubic_hermite_interp``, ``rk_common._RungeKuttaState``
  and ``interp._interp_evaluate``.

No step-size decision is made here. ``solve_in_segments`` re-drives ``integrate`` (torchdiffeq's
few lines that call the solver's step and interpolate the outputs) so that the steps can be cut
into segments; every step is the solver's own ``_adaptive_step`` or ``_step_func``.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from typing import Any, NamedTuple

import torch
from torchdiffeq._impl.interp import _interp_evaluate
from torchdiffeq._impl.misc import Perturb, _check_inputs, _flat_to_shape, _mixed_norm, _null_callback, _rms_norm
from torchdiffeq._impl.rk_common import RKAdaptiveStepsizeODESolver, _ButcherTableau, _RungeKuttaState
from torchdiffeq._impl.solvers import FixedGridODESolver

from ._checks import check_adaptive_dtype, check_field_output, check_state
from .plugins import get_registry, reserve_names
from .stats import SolverPlan
from .tableaux import Tableau, TableauError, TableauFamily, order_residuals
from .tableaux._order import _stage_weights

# torchdiffeq._impl re-exports functions named like these modules, so import the modules by path.
_odeint_module = importlib.import_module("torchdiffeq._impl.odeint")
_adjoint_module = importlib.import_module("torchdiffeq._impl.adjoint")

# Options torchdiffeq's solver classes accept; anything else passed to a tableau solver is refused
# (torchdiffeq itself only warns, which hides typos such as {"uu": 0.3}).
ADAPTIVE_OPTIONS = frozenset(
    {"norm", "min_step", "max_step", "first_step", "step_t", "jump_t", "safety", "ifactor", "dfactor",
     "max_num_steps", "dtype"}
)
FIXED_GRID_OPTIONS = frozenset({"norm", "step_size", "grid_constructor", "interp", "perturb"})
CALLBACKS = frozenset({"callback_step", "callback_accept_step", "callback_reject_step"})
_ALL_OPTIONS = ADAPTIVE_OPTIONS | FIXED_GRID_OPTIONS
_ADAPTIVE_ONLY = ADAPTIVE_OPTIONS - {"norm"}


# ----------------------------------------------------------------------------------------------
# Tableau -> torchdiffeq's _ButcherTableau


def _butcher(tableau: Tableau) -> tuple[_ButcherTableau, torch.Tensor]:
    """torchdiffeq's representation (float64) for adaptive stepping, and the midpoint weights.

    A non-FSAL method gets an extra stage at c = 1 with row b, i.e. the
    derivative at y1. The adaptive loop takes the last stage as the next step's first one, so the
    extra evaluation replaces, not adds to, the next step's first one. (torchdiffeq's own
    adaptive_heun skips this: it hands on its last stage, f at the Euler predictor rather than at
    y1, which halves its evaluations and makes every later step start from the wrong derivative.
    Our heun_euler evaluates f(t1, y1): about twice adaptive_heun's NFE for the same steps.)
    """
    c, rows, b = list(tableau.c), [list(r) for r in tableau.a], list(tableau.b)
    b_hat = list(tableau.b_hat) if tableau.b_hat is not None else list(b)
    b_mid = list(tableau.b_mid) if tableau.b_mid is not None else None
    if not tableau.is_fsal:
        c.append(1.0)
        rows.append(list(b))
        b, b_hat = b + [0.0], b_hat + [0.0]
        b_mid = None if b_mid is None else b_mid + [0.0]
    f64 = torch.float64
    bt = _ButcherTableau(
        alpha=torch.tensor(c[1:], dtype=f64),
        beta=[torch.tensor(r, dtype=f64) for r in rows[1:]],
        c_sol=torch.tensor(b, dtype=f64),
        c_error=torch.tensor([x - y for x, y in zip(b, b_hat)], dtype=f64),
    )
    if b_mid is None:
        b_mid = _solve_midpoint_weights([r + [0.0] * (len(c) - len(r)) for r in rows], tableau.order)
    return bt, torch.tensor(b_mid, dtype=f64)


def _solve_midpoint_weights(a: list[list[float]], max_order: int) -> list[float]:
    """Half-step weights of the highest order the stages allow, for a method without dense output.

    torchdiffeq's interpolant is a quartic through y0, y1, f0, f1 and a midpoint value built from
    the stages; its accuracy is capped by that midpoint's. The continuous-extension conditions
    sum_i w_i Phi_i(tree) = (1/2)^|tree| / gamma(tree) are linear in w, so we take the least-norm
    solution for the largest order that is consistent. With the FSAL stage present this always
    reaches order 3 (the cubic Hermite midpoint is one solution) and reaches 4 where the stages
    allow it (fehlberg45 on y' = cos(t) y at rtol = atol = 1e-8: interpolated error 2.4e-6 with the
    Hermite midpoint, 1.2e-7 with the solved one; cash_karp 2.3e-5 -> 3.3e-7).
    """
    for order in range(max_order, 0, -1):
        residuals = order_residuals(a, [0.0] * len(a), order, theta=0.5)
        conditions = [_stage_weights(r.tree, a, {}) for r in residuals]
        matrix = torch.tensor(conditions, dtype=torch.float64)
        target = torch.tensor([r.target for r in residuals], dtype=torch.float64)
        weights = torch.linalg.pinv(matrix) @ target
        if (matrix @ weights - target).abs().max() < 1e-12:
            return weights.tolist()
    raise TableauError("no consistent midpoint weights exist")  # unreachable: order 1 always is


@lru_cache(maxsize=256)
def adaptive_solver_class(tableau: Tableau) -> type:
    """A torchdiffeq adaptive RK solver class for ``tableau`` (which must have ``b_hat``)."""
    if tableau.b_hat is None:
        raise TableauError(f"tableau {tableau.name!r} has no b_hat, so it cannot run adaptively")
    bt, mid = _butcher(tableau)
    return type(
        f"{tableau.name}_AdaptiveSolver",
        (_TableauAdaptiveSolver,),
        {"order": tableau.order, "tableau": bt, "mid": mid, "nde_tableau": tableau, "__module__": __name__},
    )


class _TableauAdaptiveSolver(RKAdaptiveStepsizeODESolver):
    """torchdiffeq's adaptive RK solver; only checks the field's first value (``rk_state.f1`` is f(t0, y0))."""

    nde_tableau: Tableau

    def _before_integrate(self, t):
        super()._before_integrate(t)
        check_field_output(self.rk_state.f1, self.y0, f"method {self.nde_tableau.name!r}")


@lru_cache(maxsize=256)
def fixed_grid_steps(tableau: Tableau) -> tuple[tuple, tuple, frozenset]:
    """What a fixed-grid step of ``tableau`` combines: (c_i, nonzero a_ij terms) per stage >= 2, the
    nonzero b terms, and the stages some later combination reads.

    One solver class serves every tableau and takes these per instance: creating a class per
    member (an ABC subclass) cost about 45 us, paid on every call of a training loop that samples a
    new family member each batch.
    """
    stages = tuple((ci, _nonzero_terms(row)) for ci, row in zip(tableau.c[1:], tableau.a[1:]))
    weights = _nonzero_terms(tableau.b)
    read = frozenset(j for _, terms in (*stages, (None, weights)) for j, _ in terms)
    return stages, weights, read


def _nonzero_terms(coeffs: tuple[float, ...]) -> tuple[tuple[int, float], ...]:
    return tuple((j, coeff) for j, coeff in enumerate(coeffs) if coeff != 0.0)


def _accumulate(base: torch.Tensor | None, terms: tuple[tuple[int, float], ...], hk: list) -> torch.Tensor:
    """base + sum_j coeff_j * hk[j] over the nonzero terms, in as few and as cheap tensor ops as possible.

    On small states the cost of a step is the number of tensor ops, and their kind: multiplying by
    a Python float wraps it in a new tensor (about 3x a plain add), ``torch.add(..., alpha=)`` is
    one op, and coefficients of +-1 need none.
    """
    acc = base
    for j, coeff in terms:
        if acc is None:
            acc = hk[j] if coeff == 1.0 else hk[j] * coeff
        elif coeff == 1.0:
            acc = acc + hk[j]
        elif coeff == -1.0:
            acc = acc - hk[j]
        else:
            acc = torch.add(acc, hk[j], alpha=coeff)
    return acc


class _TableauFixedGridSolver(FixedGridODESolver):
    """Fixed-grid stepping with a tableau; the grid loop and interpolation are torchdiffeq's.

    Why not ``_runge_kutta_step`` here: it packs the stages into one tensor through a custom
    autograd Function and always forms the error estimate, which a fixed grid discards. Measured
    with benchmarks/tableau_overhead.py (MLP field, batch 256, forward+backward) that cost 1.40x
    torchdiffeq's rk4 for the same 3/8 rule. Combining the nonzero stage terms directly, as
    torchdiffeq's own fixed-grid ``rk4_alt_step_func`` does for one tableau, brings it to parity.
    The stages are combined as dt * k_j, formed once per stage, so every stage input and the
    increment are sums with float coefficients (see ``_accumulate``). A stage no combination
    reads (the FSAL stage of a pair run on a grid) still costs its evaluation: the step
    statistics read it for the pair's error estimate.
    The adaptive solvers keep ``_runge_kutta_step``, exactly as torchdiffeq's do.
    """

    nde_tableau: Tableau
    stages: tuple[tuple[float, tuple[tuple[int, float], ...]], ...]  # (c_i, nonzero a_ij) per stage >= 2
    weights: tuple[tuple[int, float], ...]  # nonzero b_j
    read: frozenset[int]  # stages whose dt * k some combination reads

    _output_checked = False

    def use(self, tableau: Tableau) -> _TableauFixedGridSolver:
        self.nde_tableau, self.order = tableau, tableau.order
        self.stages, self.weights, self.read = fixed_grid_steps(tableau)
        return self

    def _step_func(self, func, t0, dt, t1, y0):
        # With perturb=True, torchdiffeq evaluates a step's endpoints just inside the step (the field
        # may be discontinuous at grid points): every stage at c = 0 gets NEXT, every one at c = 1
        # gets PREV, not only the first and last stage.
        after_t0 = Perturb.NEXT if self.perturb else Perturb.NONE
        before_t1 = Perturb.PREV if self.perturb else Perturb.NONE
        f0 = func(t0, y0, perturb=after_t0)
        if not self._output_checked:
            check_field_output(f0, y0, f"method {self.nde_tableau.name!r}")
            self._output_checked = True
        read = self.read
        hk = [dt * f0 if 0 in read else None]
        for i, (ci, terms) in enumerate(self.stages, start=1):
            if ci == 1.0:
                ti, perturb = t1, before_t1
            elif ci == 0.0:
                ti, perturb = t0, after_t0
            else:
                ti, perturb = torch.add(t0, dt, alpha=ci), Perturb.NONE
            k = func(ti, _accumulate(y0, terms, hk), perturb=perturb)
            hk.append(dt * k if i in read else None)
        increment = _accumulate(None, self.weights, hk)
        return (increment if increment is not None else torch.zeros_like(y0)), f0


# ----------------------------------------------------------------------------------------------
# Solver entries in torchdiffeq's method table


class TableauSolver:
    """What torchdiffeq finds in ``SOLVERS`` for a registered tableau or family.

    torchdiffeq calls ``SOLVERS[method](func=..., y0=..., rtol=..., atol=..., **options)``. This
    takes the family parameters out of ``options``, builds (or fetches from cache) the member, and
    instantiates the adaptive solver when the method has an embedded pair and no ``step_size`` /
    ``grid_constructor`` was given, the fixed-grid solver otherwise.
    """

    def __init__(self, method: str, entry: Tableau | TableauFamily) -> None:
        self.method = method
        self.entry = entry
        self.family = entry if isinstance(entry, TableauFamily) else None
        # The options the solver reads: torchdiffeq's, and the family's parameters.
        self.accepted = ADAPTIVE_OPTIONS | FIXED_GRID_OPTIONS | frozenset(self.family.params if self.family else ())
        default = entry.member() if isinstance(entry, TableauFamily) else entry
        # Every member of a family shares b_hat's presence (it is structural), so the default decides.
        self._has_pair = default.b_hat is not None

    def valid_callbacks(self) -> set[str]:
        """What torchdiffeq checks before building the solver (it has no options yet).

        A method without a pair always runs on a fixed grid, where only ``callback_step`` is called,
        so torchdiffeq itself warns about the others. A pair runs adaptively unless a step is given;
        for that case ``__call__`` gives the same warning.
        """
        return set(CALLBACKS) if self._has_pair else {"callback_step"}

    def tableau_for(self, options: dict[str, Any]) -> Tableau:
        """The member selected by ``options`` (family parameters are removed from it)."""
        if isinstance(self.entry, Tableau):
            return self.entry
        params = {name: options.pop(name) for name in self.entry.params if name in options}
        return self.entry.member(params)

    def __call__(self, func, y0, rtol, atol, **options):
        tableau = self.tableau_for(options)
        unknown = sorted(options.keys() - _ALL_OPTIONS)
        if unknown:
            params = list(self.entry.params) if isinstance(self.entry, TableauFamily) else []
            raise ValueError(
                f"method {self.method!r} got unknown option(s) {unknown}; it takes the parameters {params} "
                f"and torchdiffeq's solver options {sorted(ADAPTIVE_OPTIONS | FIXED_GRID_OPTIONS)}"
            )
        check_state(y0, f"method {self.method!r}")
        fixed = tableau.b_hat is None or "step_size" in options or "grid_constructor" in options
        if fixed:
            ignored = sorted(options.keys() & _ADAPTIVE_ONLY)
            if ignored:
                raise ValueError(
                    f"method {self.method!r} runs on a fixed grid here ({_why_fixed(tableau, options)}), "
                    f"so the adaptive option {ignored[0]!r} would be ignored; drop it or use an adaptive setup"
                )
            if tableau.b_hat is not None:
                _warn_unused_callbacks(self.method, func)
            return _TableauFixedGridSolver(func=func, y0=y0, rtol=rtol, atol=atol, **options).use(tableau)
        check_adaptive_dtype(y0, self.method)
        for name in FIXED_GRID_OPTIONS - {"norm", "step_size", "grid_constructor"}:
            if name in options:
                raise ValueError(
                    f"method {self.method!r} runs adaptively, so the fixed-grid option {name!r} would be "
                    "ignored; give step_size (or grid_constructor) to run on a fixed grid, or drop it"
                )
        return adaptive_solver_class(tableau)(func=func, y0=y0, rtol=rtol, atol=atol, **options)

    def __repr__(self) -> str:
        return f"TableauSolver({self.method!r})"


def _warn_unused_callbacks(method: str, func: Any) -> None:
    """torchdiffeq's own warning for callbacks a fixed-grid solver never calls, word for word."""
    unused = {
        name for name in CALLBACKS - {"callback_step"} if getattr(func, name, _null_callback) is not _null_callback
    }
    if unused:
        warnings.warn(f"Solver '{method}' does not support callbacks {unused}", stacklevel=4)


def _why_fixed(tableau: Tableau, options: dict[str, Any]) -> str:
    if tableau.b_hat is None:
        return f"tableau {tableau.name!r} has no embedded pair"
    return "step_size given" if "step_size" in options else "grid_constructor given"


@lru_cache(maxsize=256)
def _solver_entry(method: str, entry: Tableau | TableauFamily) -> TableauSolver:
    return TableauSolver(method, entry)


class SolverTable(dict):
    """torchdiffeq's ``SOLVERS`` dict, also answering for registered tableaux and families.

    Built-in torchdiffeq entries are stored as usual; registered names are looked up in the plugin
    registry on each access (so unregistering a plugin removes its methods) and never stored.
    The first lookup of an unknown name is what loads the plugins: importing nde_plugins stays
    cheap and a plugin module may itself import nde_plugins.
    """

    def __init__(self, builtin: dict) -> None:
        super().__init__(builtin)
        self.builtin_names = frozenset(builtin)
        # Held weakly: an unregistered tableau is usable by name while its caller holds the object
        # (an ODEBlock keeps it), and a loop that builds tableaux on the fly leaves nothing behind.
        self.adhoc: weakref.WeakValueDictionary[str, Tableau | TableauFamily] = weakref.WeakValueDictionary()

    def _entry(self, key: Any) -> Tableau | TableauFamily | None:
        if not isinstance(key, str):
            return None
        entry = self.adhoc.get(key) if self.adhoc else None
        if entry is None:
            reg = get_registry().find("tableau", key)
            entry = None if reg is None else reg.obj
        return entry

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or self._entry(key) is not None

    def __getitem__(self, key: str):
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        entry = self._entry(key)
        if entry is None:
            raise KeyError(key)
        return _solver_entry(key, entry)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def keys(self):  # used by torchdiffeq's "Invalid method" message
        return [*dict.keys(self), *get_registry().names("tableau")]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def add_adhoc(self, entry: Tableau | TableauFamily) -> str:
        """Make an unregistered tableau or family usable by name while ``entry`` is alive; returns the name."""
        key = f"{entry.name}@{id(entry):x}" if isinstance(entry, TableauFamily) else f"{entry.name}@{hash(entry):x}"
        self.adhoc.setdefault(key, entry)
        return key


class Description(NamedTuple):
    """What torchdiffeq's method table says about one method with its options (``describe``).

    ``fixed_grid``: steps on a fixed grid; ``adaptive``: runs under torchdiffeq's adaptive
    Runge-Kutta step control (neither: a multistep or scipy solver); ``order``: the order of the
    solution it propagates (None when unknown); ``accepted``: the option names its solver reads
    (a family's parameters included); ``family``: the registered ``TableauFamily`` (or None) and
    ``params`` its parameters with defaults filled in; ``plan``: what the step statistics need.
    (A named tuple: built for every new member a schedule draws, so it is kept cheap to make.)
    """

    fixed_grid: bool
    adaptive: bool
    order: int | None
    accepted: frozenset[str]
    family: TableauFamily | None
    params: Mapping[str, float]
    plan: SolverPlan




def describe(method: str, options: Mapping[str, Any]) -> Description:
    """The one place that asks the method table what ``method`` (a name in it) does with ``options``.

    Options the solver would not read are refused here (torchdiffeq only warns, which hides typos);
    a family's parameters are resolved (defaults filled in, the domain checked) once.
    """
    entry = install()[method]
    if isinstance(entry, TableauSolver):
        family, accepted = entry.family, entry.accepted
        _refuse_unread(method, options, accepted)
        if family is None:
            tableau, params = entry.entry, {}
        else:
            tableau, params = family.member_with_params({k: v for k, v in options.items() if k in family.params})
        if tableau.b_hat is None or "step_size" in options or "grid_constructor" in options:
            plan = SolverPlan(method, "fixed", tableau.c, tableau.b, tableau.b_hat)
            return Description(True, False, tableau.order, accepted, family, params, plan)
        solver_class = adaptive_solver_class(tableau)
        plan = _adaptive_plan(method, solver_class.tableau, solver_class.mid)
        return Description(False, True, tableau.order, accepted, family, params, plan)
    accepted = _constructor_options(entry)
    _refuse_unread(method, options, accepted)
    order = _BUILTIN_ORDERS.get(method)
    if isinstance(entry, type) and issubclass(entry, RKAdaptiveStepsizeODESolver):
        return Description(False, True, order, accepted, None, {}, _adaptive_plan(method, entry.tableau, entry.mid))
    fixed = isinstance(entry, type) and issubclass(entry, FixedGridODESolver)
    equivalent = _fixed_grid_equivalents().get(method)
    plan = (SolverPlan(method, "other") if equivalent is None
            else SolverPlan(method, "fixed", equivalent.c, equivalent.b, None))
    return Description(fixed, False, order, accepted, None, {}, plan)


def _refuse_unread(method: str, options: Mapping[str, Any], accepted: frozenset[str]) -> None:
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"method {method!r} got unknown option(s) {unknown}; it takes {sorted(accepted)} "
            "(nde_plugins refuses options a solver would ignore, where torchdiffeq only warns)"
        )


def _adaptive_plan(method: str, bt: _ButcherTableau, mid: torch.Tensor) -> SolverPlan:
    """The statistics plan of an adaptive solver: its tableau as it runs (the FSAL stage included) and
    the midpoint weights of its dense output."""
    c = (0.0, *bt.alpha.tolist())
    b = tuple(bt.c_sol.tolist())
    b_hat = tuple(x - e for x, e in zip(b, bt.c_error.tolist()))
    return SolverPlan(method, "adaptive", c, b, b_hat, mid=tuple(float(m) for m in mid.tolist()))


@lru_cache(maxsize=64)
def _constructor_options(solver_class: type) -> frozenset[str]:
    """Named constructor parameters along the class's MRO: what torchdiffeq's solver really reads.

    torchdiffeq's solvers pass unknown keywords up to a base class that only warns about them; the
    named parameters are exactly the ones that have an effect.
    """
    names = {"norm"}  # odeint always sets it; fixed-grid solvers accept and ignore it
    for klass in solver_class.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for param in inspect.signature(init).parameters.values():
            if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                names.add(param.name)
    return frozenset(names - {"self", "func", "y0", "rtol", "atol"})


_BUILTIN_ORDERS = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4, "dopri5": 5, "dopri8": 8,
                   "bosh3": 3, "fehlberg2": 2, "adaptive_heun": 2}


# torchdiffeq's fixed-grid solvers as tableaux, so their steps can be observed like ours. Written out
# here (not taken from the built-in plugins, which the glue does not import).
@lru_cache(maxsize=1)
def _fixed_grid_equivalents() -> dict[str, Tableau]:
    third = 1 / 3
    return {
        "euler": Tableau("euler", c=[0], a=[[]], b=[1], order=1),
        "midpoint": Tableau("midpoint", c=[0, 0.5], a=[[], [0.5]], b=[0, 1], order=2),
        "heun2": Tableau("heun2", c=[0, 1], a=[[], [1]], b=[0.5, 0.5], order=2),
        "heun3": Tableau("heun3", c=[0, third, 2 * third], a=[[], [third], [0, 2 * third]], b=[0.25, 0, 0.75],
                         order=3),
        # torchdiffeq's rk4 is Kutta's 3/8 rule
        "rk4": Tableau("rk4", c=[0, third, 2 * third, 1], a=[[], [third], [-third, 1], [1, -1, 1]],
                       b=[0.125, 0.375, 0.375, 0.125], order=4),
    }


def methods_with_error_estimate() -> list[str]:
    """Method names that provide an error estimate (for error messages)."""
    table = install()
    builtin = [
        name for name in sorted(table.builtin_names)
        if isinstance(table[name], type) and issubclass(table[name], RKAdaptiveStepsizeODESolver)
    ]
    ours = []
    for reg in get_registry().registrations("tableau"):
        member = reg.obj.member() if isinstance(reg.obj, TableauFamily) else reg.obj
        if member.b_hat is not None:
            ours.append(reg.name)
    return builtin + ours


def diverged_error(exc: AssertionError, method: str, direction: float) -> FloatingPointError | None:
    """torchdiffeq's bare assertion for a diverged adaptive solve, as a ``FloatingPointError`` naming the time.

    A non-finite state makes the error ratio NaN, every step is rejected and torchdiffeq stops with
    ``AssertionError: underflow in dt nan`` (or reports the non-finite state). The time is read from
    the failing step's frame (``_adaptive_step``'s ``t0``; negated when torchdiffeq reversed time).
    Returns None for any other assertion, which the caller re-raises unchanged.
    """
    message = str(exc)
    if not (message.startswith("underflow in dt") or message.startswith("non-finite values in state")):
        return None
    time = None
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "_adaptive_step" and torch.is_tensor(frame.f_locals.get("t0")):
            time = direction * float(frame.f_locals["t0"])
        tb = tb.tb_next
    where = f"t = {time:.6g}" if time is not None else "an unknown time"
    return FloatingPointError(
        f"the solve with {method!r} broke down near {where}: the step size underflowed or the state became "
        f"non-finite (torchdiffeq: {message[:60]}), so the solution blows up there or the vector field diverged; "
        "check the field's scale, the time span, or use smaller tolerances"
    )


def default_norm(is_tuple: bool) -> Callable:
    """The norm torchdiffeq uses when none is given: RMS, or the max of RMS over a tuple's parts."""
    return _mixed_norm if is_tuple else _rms_norm


# ----------------------------------------------------------------------------------------------
# Solving in segments of steps (gradient="checkpoint")

#: ``run_segment(segment, *tensors)`` calls ``segment(*tensors)`` and returns its result; a caller that
#: checkpoints wraps the call (``torch.utils.checkpoint``), so that a segment's graph is recomputed
#: in the backward pass instead of kept.
RunSegment = Callable[..., Any]


def segmentable(method: str, options: Mapping[str, Any]) -> bool:
    """Whether ``solve_in_segments`` can drive ``method`` with ``options``: torchdiffeq's explicit RK
    solvers (adaptive or on a fixed grid) and every registered tableau; not Adams or scipy."""
    entry = install()[method]
    if isinstance(entry, TableauSolver):
        return True
    return isinstance(entry, type) and issubclass(entry, (RKAdaptiveStepsizeODESolver, FixedGridODESolver)) \
        and not _is_adams(entry)


def _is_adams(solver_class: type) -> bool:
    # torchdiffeq's Adams solvers subclass the fixed-grid solver but keep a history of past
    # evaluations between steps, which a segment replayed alone would not have.
    return solver_class.__name__.startswith("AdamsBashforth")


def solve_in_segments(func: Callable, y0: Any, t: torch.Tensor, *, rtol: Any, atol: Any, method: str,
                      options: Mapping[str, Any], segment_steps: Callable[[int], int],
                      run_segment: RunSegment) -> Any:
    """``torchdiffeq.odeint(func, y0, t, ...)``, with its steps run in segments through ``run_segment``.

    Set-up, solver object, step sequence, interpolation and result are odeint's (the same values
    bit for bit, and the same graph when ``run_segment`` just calls). ``segment_steps(k)`` is the
    number of steps (attempts, accepted or rejected) of the k-th segment (k = 0, 1, ...). The
    initial step selection of an adaptive solver runs before the first segment, outside them.
    Each segment restores the solver's mutable indices first, so that running it again (a
    checkpoint's recomputation) takes exactly the same steps.
    """
    shapes, func, y0, t, rtol, atol, method, options, _, _ = _check_inputs(
        func, y0, t, rtol, atol, method, dict(options), None, install())
    solver = install()[method](func=func, y0=y0, rtol=rtol, atol=atol, **options)
    if isinstance(solver, RKAdaptiveStepsizeODESolver):
        solution = _adaptive_in_segments(solver, t, segment_steps, run_segment)
    elif isinstance(solver, FixedGridODESolver) and not _is_adams(type(solver)):
        solution = _fixed_grid_in_segments(solver, t, segment_steps, run_segment)
    else:
        raise ValueError(f"method {method!r} cannot be solved in segments (gradient='checkpoint'): only explicit "
                         "Runge-Kutta solvers, adaptive or on a fixed grid, replay their steps; use "
                         "gradient='backprop' or 'adjoint' with it")
    if shapes is not None:
        solution = _flat_to_shape(solution, (len(t),), shapes)
    return solution


def _adaptive_in_segments(solver: RKAdaptiveStepsizeODESolver, t: torch.Tensor, segment_steps: Callable[[int], int],
                          run_segment: RunSegment) -> torch.Tensor:
    # AdaptiveStepsizeODESolver.integrate and RKAdaptiveStepsizeODESolver._advance, cut after every
    # segment's steps; each output is interpolated in the segment of the step that reached it.
    t = t.to(solver.dtype)
    solver._before_integrate(t)
    outputs = [solver.y0]
    state = solver.rk_state
    index, since_output, k = 1, 0, 0
    while index < len(t):
        start = (index, since_output, solver.next_step_index, solver.next_jump_index, state.t0, state.interp_coeff)
        steps = segment_steps(k)

        def segment(y, f, t1, dt, start=start, steps=steps):
            index, since_output, solver.next_step_index, solver.next_jump_index, t0, coeff = start
            rk = _RungeKuttaState(y, f, t0, t1, dt, coeff)
            found, taken = [], 0
            while index < len(t):
                if t[index] > rk.t1:
                    if taken == steps:
                        break
                    assert since_output < solver.max_num_steps, \
                        f"max_num_steps exceeded ({since_output}>={solver.max_num_steps})"
                    rk = solver._adaptive_step(rk)
                    taken, since_output = taken + 1, since_output + 1
                else:
                    found.append(_interp_evaluate(rk.interp_coeff, rk.t0, rk.t1, t[index]))
                    index, since_output = index + 1, 0
            return rk, found, (index, since_output, solver.next_step_index, solver.next_jump_index)

        state, found, (index, since_output, solver.next_step_index, solver.next_jump_index) = run_segment(
            segment, state.y1, state.f1, state.t1, state.dt)
        outputs += found
        k += 1
    return torch.stack(outputs)


def _fixed_grid_in_segments(solver: FixedGridODESolver, t: torch.Tensor, segment_steps: Callable[[int], int],
                            run_segment: RunSegment) -> torch.Tensor:
    # FixedGridODESolver.integrate, cut after every segment's steps.
    grid = solver.grid_constructor(solver.func, solver.y0, t)
    assert grid[0] == t[0] and grid[-1] == t[-1]
    outputs, y, index, step, k = [solver.y0], solver.y0, 1, 0, 0
    while step < len(grid) - 1:
        stop = min(step + segment_steps(k), len(grid) - 1)

        def segment(y0, step=step, stop=stop, index=index):
            found = []
            for t0, t1 in zip(grid[step:stop], grid[step + 1:stop + 1]):
                dt = t1 - t0
                solver.func.callback_step(t0, y0, dt)
                dy, f0 = solver._step_func(solver.func, t0, dt, t1, y0)
                y1 = y0 + dy
                while index < len(t) and t1 >= t[index]:
                    if solver.interp == "linear":
                        found.append(solver._linear_interp(t0, t1, y0, y1, t[index]))
                    elif solver.interp == "cubic":
                        f1 = solver.func(t1, y1)
                        found.append(solver._cubic_hermite_interp(t0, y0, f0, t1, y1, f1, t[index]))
                    else:
                        raise ValueError(f"Unknown interpolation method {solver.interp}")
                    index += 1
                y0 = y1
            return y0, found, index

        y, found, index = run_segment(segment, y)
        outputs += found
        step, k = stop, k + 1
    return torch.stack(outputs)


def install() -> SolverTable:
    """Put a ``SolverTable`` in place of torchdiffeq's ``SOLVERS`` (idempotent)."""
    current = _odeint_module.SOLVERS
    if not isinstance(current, SolverTable):
        current = SolverTable(current)
        _odeint_module.SOLVERS = current
        _adjoint_module.SOLVERS = current
    return current


def torchdiffeq_method_names() -> frozenset[str]:
    """torchdiffeq's own method names: reserved, no plugin may register them."""
    return install().builtin_names


# torchdiffeq's own method names are taken: no tableau plugin may register one.
reserve_names("tableau", torchdiffeq_method_names)
