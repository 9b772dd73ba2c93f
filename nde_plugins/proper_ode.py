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
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ._checks import positive_float
from .schedules import Member

#: Test-step factors of the paper (number of steps relative to training).
STEP_FACTORS = (0.5, 0.75, 1.0, 1.5, 2.0)
#: Tolerance factors for adaptively trained models.
TOLERANCE_FACTORS = (1.0, 0.1, 0.01)
#: Test solvers for a model trained with Euler (the paper's set); other methods are tested with
#: themselves and rk4.
EULER_TEST_METHODS = ("euler", "midpoint", "rk4")


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
    """
    batches = _batches(data)
    metric = "accuracy" if loss_fn is None else "loss"
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
    members = block.policy.members(False, block.epoch, block.iteration)
    trained = members[0] if members else block.policy.base.member
    solver = block._solver(trained)
    base = block.policy.base
    total = sum(len(y) for _, y in batches)

    def evaluate(member: Member) -> float:
        with block.policy.fixed(member), torch.no_grad():
            return sum(score(model_fn(x), y) for x, y in batches) / total

    was_training = block.training
    block.eval()
    try:
        training_value = evaluate(trained)
        report = CheckReport(trained.spec(), metric, training_value, threshold)
        if solver.plan.mode == "adaptive":
            for f in tolerance_factors:
                f = positive_float("tolerance_factors", f)
                tol = float(solver.rtol) * f
                member = Member(trained.method, dict(trained.params), options={**trained.options, "rtol": tol,
                                                                                "atol": float(solver.atol) * f})
                report.rows.append(CheckRow(trained.method, f, None, tol, evaluate(member), f <= 1))
        else:
            _fixed_grid_rows(report, trained, solver, base, block, test_methods, factors, evaluate)
    finally:
        block.train(was_training)
    return report


def _fixed_grid_rows(report: CheckReport, trained: Member, solver: Any, base: Any, block: Any,
                     test_methods: Sequence[str] | None, factors: Iterable[float], evaluate: Callable) -> None:
    from ._torchdiffeq import method_order

    span = base.span
    step = solver.options.get("step_size")
    steps = max(1, round(span / step)) if step else len(block.t) - 1
    order = solver.plan and method_order(solver.name, solver.options) or 1
    if test_methods is None:
        test_methods = EULER_TEST_METHODS if solver.name == "euler" else (trained.spec().split(" [")[0], "rk4")
    for spec in test_methods:
        from .ode import parse_method_spec

        name, params = parse_method_spec(spec)
        test_order = method_order(name, {**params, "step_size": span}) or order
        for f in factors:
            f = positive_float("factors", f)
            k = max(1, round(f * steps))
            member = Member(name, params, options={"step_size": span / k})
            report.rows.append(CheckRow(spec, f, k, None, evaluate(member), test_order >= order and k >= steps))
