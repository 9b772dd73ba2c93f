"""Is a trained model an ODE, or a discrete map tied to its solver? (Ott et al., seed 002)

A model trained with a fixed-grid solver at step h is ODE-like when solving it with any solver of
equal or smaller error (a finer step, a higher order) keeps its accuracy; when the accuracy drops,
the vector field has adapted to the discretization. ``proper_ode_check`` evaluates a trained model
with the training solver and with such test solvers and gives the verdict.

Conventions. Test steps are given as factors of the training grid's number of steps: factor f
runs round(f * K) steps where the training solver ran K, so f > 1 is finer (smaller error) and
f < 1 coarser. A test solver "has equal or smaller error" when its order is at least the training
solver's and it takes at least as many steps. For an adaptively trained model the test solvers are
the same method at tolerances tol * f for f <= 1.

Limits. Every argument is checked before the first solve (see ``proper_ode_check``'s Raises): a
check runs at most ``MAX_TEST_SOLVES`` test solves and, on a fixed grid, at most
``MAX_CHECK_STEPS`` steps per batch, and it needs at least one test solve of equal or smaller error,
since a verdict from no comparison would say nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ._checks import positive_float
from .contract import Member

#: Test-step factors of the paper (number of steps relative to training).
STEP_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)
#: Tolerance factors for adaptively trained models.
TOLERANCE_FACTORS = (1.0, 0.1, 0.01)
#: Test solvers for a model trained with Euler (the paper's set); other methods are tested with
#: themselves and rk4.
EULER_TEST_METHODS = ("euler", "midpoint", "rk4")
#: The most test solves (rows of the table) one check runs. The paper's check is 3 solvers x 5 step
#: factors, or 3 tolerances; 1000 leaves room for fine sweeps. Each solve evaluates ``model_fn`` on
#: all of ``data``, so a longer list is most likely a mistake (say, step counts passed as factors)
#: and would run for hours.
MAX_TEST_SOLVES = 1000
#: The most fixed-grid steps one check takes per batch: the training solve's K steps plus
#: round(f * K) for every test method and factor. A small model takes about 0.1 ms per step on a CPU,
#: and a solve keeps about 2 kB per step (its grid and step records), so the cap means a few minutes
#: and at most about 2 GB per batch. The paper's check (K <= 100, 3 x 5 solves of at most 2K
#: steps) takes under 2,000 steps. Without a cap, a huge factor (or a block of huge K) builds grids
#: and records that run out of memory instead of failing with a message.
MAX_CHECK_STEPS = 1_000_000


@dataclass(frozen=True)
class CheckRow:
    """One test solve: the solver, its step (or tolerance), the metric and whether its error is <= training's."""

    solver: str
    factor: float
    steps: int | None
    tolerance: float | None
    value: float
    smaller_error: bool


@dataclass
class CheckReport:
    """The table of a proper-ODE check and its verdict."""

    training_solver: str
    metric: str
    training_value: float
    threshold: float
    rows: list[CheckRow] = field(default_factory=list)

    @property
    def worst_gap(self) -> float:
        """The largest |metric - training metric| over the test solvers of equal or smaller error."""
        gaps = [abs(r.value - self.training_value) for r in self.rows if r.smaller_error]
        return max(gaps) if gaps else 0.0

    @property
    def verdict(self) -> str:
        """``"ODE-like"`` when ``worst_gap`` is within ``threshold``, else ``"solver-dependent"``."""
        return "ODE-like" if self.worst_gap <= self.threshold else "solver-dependent"

    def table(self) -> str:
        """The report as text: one line per test solve, then the verdict."""
        lines = [f"trained with {self.training_solver}: {self.metric} {self.training_value:.4f}",
                 f"{'test solver':14s} {'factor':>7s} {'steps':>6s} {'tol':>9s} {self.metric:>10s} {'gap':>8s}  "
                 "error <= training"]
        for r in self.rows:
            steps = "" if r.steps is None else str(r.steps)
            tol = "" if r.tolerance is None else f"{r.tolerance:.1e}"
            gap = r.value - self.training_value
            lines.append(f"{r.solver:14s} {r.factor:7.3g} {steps:>6s} {tol:>9s} {r.value:10.4f} {gap:+8.4f}  "
                         f"{'yes' if r.smaller_error else 'no'}")
        lines.append(f"verdict: {self.verdict} (largest gap over solvers of equal or smaller error "
                     f"{self.worst_gap:.4f}, threshold {self.threshold:g}; factor f = round(f * K) steps, f > 1 finer)")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """The report as plain values: the fields, ``verdict``, ``worst_gap`` and one dict per row."""
        return {"training_solver": self.training_solver, "metric": self.metric,
                "training_value": self.training_value, "threshold": self.threshold, "verdict": self.verdict,
                "worst_gap": self.worst_gap, "rows": [asdict(r) for r in self.rows]}

    def to_json(self) -> str:
        """``as_dict()`` as indented JSON."""
        return json.dumps(self.as_dict(), indent=2)


def _batches(data: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, tuple) and len(data) == 2 and torch.is_tensor(data[0]):
        return [data]
    try:
        batches = list(data)
    except TypeError:
        raise TypeError("data must be (x, y) tensors or an iterable of (x, y) batches") from None
    if not batches or not all(isinstance(b, (tuple, list)) and len(b) == 2 for b in batches):
        raise ValueError("data must be (x, y) tensors or a non-empty iterable of (x, y) batches")
    return [tuple(b) for b in batches]


def _check_block(block: Any) -> None:
    """The block must be an ``ODEBlock`` (the check varies a deterministic solver)."""
    from .ode import ODEBlock
    from .sde import SDEBlock

    if isinstance(block, ODEBlock):
        return
    if isinstance(block, SDEBlock):
        raise TypeError("block is an SDEBlock, but proper_ode_check checks an ODEBlock only: it varies an ODE "
                        "solver's step, and an SDE's output also depends on its noise draws, so a gap would not "
                        "measure the solver; pass the ODEBlock that model_fn calls")
    if isinstance(block, str):
        raise TypeError(f"block must be the ODEBlock that model_fn calls (e.g. model.block), got the string "
                        f"{block!r}; pass the block itself, and name solvers to test in test_methods=[...]")
    raise TypeError(f"block must be the ODEBlock that model_fn calls (e.g. model.block), got "
                    f"{type(block).__name__}")


def _factor_list(name: str, values: Any, example: str) -> tuple[float, ...]:
    """A non-empty sequence of at most ``MAX_TEST_SOLVES`` finite numbers > 0."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable) or (
            torch.is_tensor(values) and values.dim() == 0):
        raise TypeError(f"{name} must be a sequence of numbers such as {example}, got {type(values).__name__} "
                        f"{values!r}; a single factor is written ({values!r},)")
    values = tuple(values)
    if not values:
        raise ValueError(f"{name} is empty, so the check would run no test solve and its verdict would rest on "
                         f"nothing; give at least one factor, e.g. {example}")
    if len(values) > MAX_TEST_SOLVES:
        raise ValueError(f"{name} has {len(values)} factors, more than the {MAX_TEST_SOLVES} test solves a check "
                         f"may run; give fewer, e.g. {example}")
    return tuple(positive_float(f"{name}[{i}]", f) for i, f in enumerate(values))


def _test_method_list(test_methods: Any) -> tuple[str, ...] | None:
    """None, or a non-empty sequence of known fixed-grid method specs (unknown names listed with suggestions)."""
    from . import resolve_method
    from .plugins import UnknownPluginNameError

    if test_methods is None:
        return None
    if isinstance(test_methods, (str, bytes)) or not isinstance(test_methods, Iterable):
        raise TypeError(f"test_methods must be a sequence of method names, got {type(test_methods).__name__} "
                        f"{test_methods!r}; a single method is written [{test_methods!r}]")
    specs = tuple(test_methods)
    if not specs:
        raise ValueError("test_methods is empty, so the check would run no test solve and its verdict would rest "
                         "on nothing; give at least one method, or None for the defaults (e.g. ['euler', 'rk4'])")
    if len(specs) > MAX_TEST_SOLVES:
        raise ValueError(f"test_methods has {len(specs)} methods, more than the {MAX_TEST_SOLVES} test solves a "
                         "check may run; give fewer")
    unknown: list[tuple[str, UnknownPluginNameError]] = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, str):
            raise TypeError(f"test_methods[{i}] must be a method name or spec such as 'rk4' or 'rk2:u=0.5', got "
                            f"{type(spec).__name__}; a Tableau is tested by its registered name")
        try:
            resolve_method(spec)
        except UnknownPluginNameError as exc:
            unknown.append((spec, exc))
            continue
        except ValueError as exc:
            raise ValueError(f"test_methods[{i}] = {spec!r}: {exc}") from None
        try:  # a test solve gives the method a step_size, which only a fixed-grid solver reads
            resolve_method(spec, {"step_size": 1.0})
        except ValueError:
            raise ValueError(
                f"test_methods[{i}] = {spec!r} chooses its own steps, but test solvers run on fixed grids of "
                "round(f * K) steps; give fixed-grid methods such as 'euler', 'midpoint', 'rk4' or a tableau (an "
                "adaptively trained model is tested at tolerance_factors)"
            ) from None
    if unknown:
        raise UnknownPluginNameError(
            f"test_methods has unknown method(s) {[spec for spec, _ in unknown]}; each must be a torchdiffeq "
            "fixed-grid method or a registered tableau or family: " + "; ".join(str(exc) for _, exc in unknown)
        ) from unknown[0][1]
    return specs


def _check_labels(batches: list[tuple[Any, Any]], metric: str) -> None:
    """One label per sample: y a tensor whose first dimension is x's (and 1-D class indices for the accuracy)."""
    for i, (x, y) in enumerate(batches):
        where = "data" if len(batches) == 1 else f"data batch {i}"
        if not torch.is_tensor(y):
            raise TypeError(f"{where}: the labels y must be a tensor, got {type(y).__name__}; "
                            "pass (x, torch.as_tensor(y))")
        if y.dim() == 0:
            raise ValueError(f"{where}: the labels y are a 0-d tensor, but there is one label per sample along "
                             "the first dimension; give a batch of samples, e.g. (x[None], y[None])")
        n = len(x) if torch.is_tensor(x) and x.dim() > 0 else None
        if n is not None and len(y) != n:
            raise ValueError(f"{where} has {n} inputs (x) but {len(y)} labels (y); x and y must have the same "
                             "first dimension, one label per sample: slice or split them together")
        if metric == "accuracy" and not y.is_floating_point() and y.dim() != 1:  # float y: refused below
            raise ValueError(f"{where}: the labels y have shape {tuple(y.shape)}, but the accuracy counts one "
                             f"class index per sample, so y must be 1-D with {len(y)} entries; pass y.view(-1) "
                             "for a trailing dimension of 1, or y.argmax(-1) for one-hot labels")
    if sum(len(y) for _, y in batches) == 0:
        raise ValueError("data holds no samples (every batch's y is empty); give at least one labelled sample")


def _metric(name: str, loss_fn: Callable | None) -> Callable[[torch.Tensor, torch.Tensor], float]:
    if name == "accuracy":
        return lambda out, y: float((out.argmax(-1) == y).double().sum())
    return lambda out, y: float(loss_fn(out, y)) * len(y)


def proper_ode_check(
    model_fn: Callable[[torch.Tensor], torch.Tensor],
    block: Any,
    data: Any,
    *,
    test_methods: Sequence[str] | None = None,
    factors: Sequence[float] = STEP_FACTORS,
    tolerance_factors: Sequence[float] = TOLERANCE_FACTORS,
    threshold: float | None = None,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> CheckReport:
    """Evaluate ``model_fn`` (which calls ``block``) on ``data`` with the training solver and with test solvers.

    Args:
        model_fn: the trained model, ``x -> logits`` (or predictions for regression).
        block: the ``ODEBlock`` inside it whose solver is varied.
        data: ``(x, y)`` or an iterable of ``(x, y)`` batches.
        test_methods: fixed-grid test solvers (default: euler, midpoint and rk4 for an Euler-trained
            model; otherwise the training method and rk4).
        factors: test steps as factors of the training number of steps (f > 1: finer).
        tolerance_factors: for an adaptively trained model, test tolerances tol * f.
        threshold: the largest allowed gap; default 0.1 absolute accuracy. Required with ``loss_fn``.
        loss_fn: for regression, ``loss_fn(predictions, y) -> mean loss``; the gap is then in loss units.

    The block is evaluated in eval mode under ``no_grad``, and its solver restored afterwards.

    Raises:
        TypeError: ``model_fn`` or ``loss_fn`` is not callable; ``block`` is not an ``ODEBlock`` (a
            string, or an ``SDEBlock``: the check varies a deterministic solver; pass the ODEBlock
            that ``model_fn`` calls); ``data`` is not ``(x, y)`` batches or a ``y`` is not a tensor;
            ``test_methods``, ``factors`` or ``tolerance_factors`` is a single value instead of a
            sequence, or holds something else than method names / numbers.
        UnknownPluginNameError: (a ``ValueError``) a name of ``test_methods`` is neither a
            torchdiffeq method nor a registered tableau; the message lists them all, with
            did-you-mean suggestions.
        ValueError: checked before any solve:

            - ``test_methods``, ``factors`` or ``tolerance_factors`` is empty (a verdict from no test
              solve), holds more than ``MAX_TEST_SOLVES`` entries, a factor that is not a finite
              number > 0, or an adaptive test method (test solvers run on fixed grids);
            - a batch's ``x`` and ``y`` differ in their first dimension (one label per sample);
              for the accuracy, labels that are not 1-D (one class index per sample: pass
              ``y.view(-1)`` or ``y.argmax(-1)``); ``data`` holds no samples;
            - no test solve has equal or smaller error than the training solver (no factor >= 1
              with a method of at least its order; for an adaptive model, no tolerance factor <= 1);
            - on a fixed grid, the check would take more than ``MAX_CHECK_STEPS`` steps per batch
              (K training steps plus round(f * K) per test method and factor): give fewer or smaller
              factors, or fewer test methods;
            - float labels without ``loss_fn``, or ``loss_fn`` without ``threshold``; ``threshold``
              not a finite number > 0.
    """
    if not callable(model_fn):
        raise TypeError(f"model_fn must be the trained model, a callable x -> logits, got {type(model_fn).__name__}")
    _check_block(block)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable loss_fn(predictions, y) -> mean loss (or None for the "
                        f"accuracy), got {type(loss_fn).__name__}")
    test_methods = _test_method_list(test_methods)
    factors = _factor_list("factors", factors, "(0.5, 1.0, 2.0)")
    tolerance_factors = _factor_list("tolerance_factors", tolerance_factors, "(1.0, 0.1, 0.01)")
    batches = _batches(data)
    metric = "accuracy" if loss_fn is None else "loss"
    _check_labels(batches, metric)
    if loss_fn is None:
        if any(y.is_floating_point() for _, y in batches):
            raise ValueError("the check compares accuracies, which needs integer class labels; for regression give "
                             "loss_fn and an explicit threshold")
        threshold = 0.1 if threshold is None else positive_float("threshold", threshold)
    else:
        if threshold is None:
            raise ValueError("with loss_fn the gap is in the loss's units: give threshold explicitly")
        threshold = positive_float("threshold", threshold)
    score = _metric(metric, loss_fn)
    trained = block.members_for(training=False)[0]
    solver = block.solver_for(trained)
    base = block.base_solver
    total = sum(len(y) for _, y in batches)

    def evaluate(member: Member) -> float:
        with block.solving_with(member), torch.no_grad():
            return sum(score(model_fn(x), y) for x, y in batches) / total

    if solver.plan.mode == "adaptive":
        _check_tolerance_factors(tolerance_factors)
        plan = []
    else:
        plan = _fixed_grid_plan(trained, solver, base, block, test_methods, factors)

    was_training = block.training
    block.eval()
    try:
        training_value = evaluate(trained)
        report = CheckReport(trained.spec(), metric, training_value, threshold)
        if solver.plan.mode == "adaptive":
            # The trained member's tolerances: its own options, else the block's (as the block solves).
            rtol, atol = trained.options.get("rtol", block.rtol), trained.options.get("atol", block.atol)
            for f in tolerance_factors:
                tol = float(rtol) * f
                member = Member(trained.method, dict(trained.params), options={**trained.options, "rtol": tol,
                                                                                "atol": float(atol) * f})
                report.rows.append(CheckRow(trained.method, f, None, tol, evaluate(member), f <= 1))
        else:
            for spec, name, params, f, k, step, smaller_error in plan:
                member = Member(name, params, options={"step_size": step})
                report.rows.append(CheckRow(spec, f, k, None, evaluate(member), smaller_error))
    finally:
        block.train(was_training)
    return report


def _check_tolerance_factors(tolerance_factors: tuple[float, ...]) -> None:
    if min(tolerance_factors) > 1:
        raise ValueError(f"tolerance_factors {list(tolerance_factors)} are all > 1: every test solve is looser than "
                         "training, so no solve of equal or smaller error would back the verdict; include 1.0 or a "
                         "factor < 1, e.g. (1.0, 0.1, 0.01)")


def _fixed_grid_plan(trained: Member, solver: Any, base: Any, block: Any, test_methods: Sequence[str] | None,
                     factors: tuple[float, ...]) -> list[tuple[str, str, dict, float, int, float, bool]]:
    """The fixed-grid test solves ``(spec, method, params, f, steps, step size, error <= training)``, checked.

    Refuses, before any solve, more than ``MAX_TEST_SOLVES`` solves, more than ``MAX_CHECK_STEPS``
    steps in all, and a plan where no solve has equal or smaller error than training.
    """
    from .solvers import resolve_solver
    from .specs import parse_method_spec

    span = base.span
    step = solver.options.get("step_size")
    steps = max(1, round(span / step)) if step else len(block.t) - 1
    order = solver.order or 1
    if test_methods is None:
        test_methods = EULER_TEST_METHODS if solver.name == "euler" else (trained.spec().split(" [")[0], "rk4")
    solves = len(test_methods) * len(factors)
    if solves > MAX_TEST_SOLVES:
        raise ValueError(f"{len(test_methods)} test_methods x {len(factors)} factors make {solves} test solves, more "
                         f"than the {MAX_TEST_SOLVES} a check may run; give fewer factors or test_methods")
    # Each factor is counted before rounding: a huge f * K is refused without forming the integer or the grid.
    per_k = 1 + len(test_methods) * sum(factors)
    total = steps + len(test_methods) * sum(max(1.0, f * steps) for f in factors)
    if total > MAX_CHECK_STEPS:
        k_max = int(MAX_CHECK_STEPS // per_k)
        fewer_k = (f", or check a model of at most K = {k_max} steps with these (step size >= {span / k_max:.3g})"
                   if k_max >= 1 else " (with these, even K = 1 is too many)")
        raise ValueError(
            f"factors {_short(factors)} with {len(test_methods)} test method(s) and the block's K = {steps} steps "
            f"make {total:.3g} steps per batch (K + round(f * K) per test method and factor), more than the "
            f"{MAX_CHECK_STEPS:,} a check may take (MAX_CHECK_STEPS); give fewer or smaller factors or fewer "
            f"test_methods{fewer_k}"
        )
    plan = []
    for spec in test_methods:
        name, params = parse_method_spec(spec)
        test_order = resolve_solver(name, {**params, "step_size": span}).order or order
        for f in factors:
            k = max(1, round(f * steps))
            plan.append((spec, name, params, f, k, span / k, test_order >= order and k >= steps))
    if not any(row[-1] for row in plan):
        raise ValueError(
            f"no test solve has equal or smaller error than the training solver ({trained.spec()}, order {order}, "
            f"K = {steps} steps), so the verdict would rest on no comparison: test_methods {list(test_methods)} "
            f"with factors {_short(factors)} give either fewer steps (f < 1) or a lower order; include a factor "
            "f >= 1 and a method of order >= the training one (e.g. the training method itself)"
        )
    return plan


def _short(values: Sequence[float]) -> str:
    """A factor list for a message: the first few, then how many more."""
    shown = ", ".join(f"{v:g}" for v in values[:5])
    return f"[{shown}{f', ... {len(values) - 5} more' if len(values) > 5 else ''}]"
