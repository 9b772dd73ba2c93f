"""Step-size and tolerance adaption (Ott et al., seed 002) as solver schedules.

A model trained with a fixed-grid solver at a coarse step can become a discrete map tied to that
step instead of an ODE (see ``proper_ode``). These schedules keep the training step (or tolerance)
as coarse as possible while the model stays ODE-like: every ``k`` training iterations they compare,
on the current batch, the accuracy with the training solver and with a test solver of smaller
error, and shrink the step when the two disagree by more than ``threshold``.

They need labels, so the training loop tells them about each batch after ``loss.backward()``::

    block = nde.ODEBlock(field, method="euler", schedule="step_adaption")
    ...
    loss.backward()
    block.update(model, x, y)   # every k-th call compares the solvers
    optimizer.step()

Under ``torch.distributed`` every decision is taken from numbers reduced over all ranks, so every
rank holds the same step (or tolerance) and runs the same comparison solves: the initial step from
batch norms averaged over ranks, the step from accuracies averaged over ranks, the tolerance
adaption's test tolerance and patience from NFE summed over ranks. With equal local batches that
is what one process decides on the global batch. ``update`` is then a collective: call it on every
rank after every backward, as the training loop above does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._checks import as_float, positive_float, positive_int
from ..contract import BaseSolver, CallState, Member
from ..distributed import all_ranks_mean, all_ranks_sum
from ..hookspecs import hookimpl
from ..solvers import resolve_solver

#: The code's test-step rule: the test solver's error should be about this many times smaller.
ERROR_RATIO = 50.0
#: Orders of the default test solvers.
_TEST_SOLVERS = {1: ("midpoint", 2), 2: ("rk4", 4), 3: ("rk4", 4)}


def hairer_initial_step(field: Callable, x: torch.Tensor, order: int, t0: float = 0.0) -> float:
    """Hairer, Norsett and Wanner's initial-step heuristic with batch-averaged norms (the authors' code).

    d0 = mean ||y0||, d1 = mean ||f(y0)||, h0 = 0.01 d0 / d1 (1e-6 when either is below 1e-5);
    d2 = mean ||f(y0 + h0 f0) - f0|| / h0; h1 = (0.01 / max(d1, d2)) ** (1 / (order + 1))
    (max(1e-6, 1e-3 h0) when both are below 1e-15); h = min(100 h0, h1). Norms run over the last
    dimension and are averaged over the others; no tolerance scaling. Under ``torch.distributed``
    the averages run over all ranks (a collective), so every rank starts from the same step.
    """
    with torch.no_grad():
        t = torch.tensor(t0, dtype=x.dtype, device=x.device)
        f0 = field(t, x)
        d0, d1 = all_ranks_mean([float(x.norm(dim=-1).mean()), float(f0.norm(dim=-1).mean())])
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        f1 = field(t + h0, x + h0 * f0)
        d2 = all_ranks_mean([float((f1 - f0).norm(dim=-1).mean())])[0] / h0
    if max(d1, d2) < 1e-15:
        h1 = max(1e-6, 1e-3 * h0)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100 * h0, h1)


def step_for_test_solver(h: float, train_order: int, test_order: int, span: float = 1.0) -> float:
    """The test solver's step: h while (span / h) ** q already exceeds 50, else the step whose error
    h_test ** r is 50 times below the training error h ** q (the authors' rule; euler -> midpoint:
    sqrt(h / 50))."""
    if (span / h) ** train_order > ERROR_RATIO:
        return h
    return span * ((h / span) ** train_order / ERROR_RATIO) ** (1.0 / test_order)


def next_step(h: float, gap: float, gap_at: Callable[[float], float], *, span: float, threshold: float,
              decrease: float, increase: float, max_steps: int, variant: str) -> float:
    """The adaption's decision for one check (pure: the tests drive it with mocked accuracies).

    ``gap`` is |acc_train - acc_test| at step h; ``gap_at(h_new)`` measures it at a candidate larger
    step (the refined variant only). Paper variant: gap > threshold -> decrease * h, else
    min(increase * h, span). Code variant (default): the decrease stops at ``max_steps`` (halving would
    double the steps: instead the step count moves half-way to ``max_steps``, and stays once there);
    an increase is kept only if the gap at the larger step stays within the threshold.
    """
    if gap > threshold:
        if variant == "paper":
            return decrease * h
        if 2 * span / h > max_steps:
            if round(span / h) >= max_steps:
                return h
            return 2 * h / (max_steps * h / span + 1)
        return decrease * h
    candidate = min(increase * h, span)
    if variant == "paper":
        return candidate
    return candidate if gap_at(candidate) <= threshold else h


def batch_accuracy(model_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> float:
    """The fraction of ``x`` that ``model_fn`` classifies as ``y`` (argmax of its last dimension)."""
    with torch.no_grad():
        return float((model_fn(x).argmax(-1) == y).double().mean())


def _check_labels(y: Any) -> None:
    if not torch.is_tensor(y) or y.is_floating_point() or y.is_complex():
        raise ValueError("adaption compares classification accuracies: update(model_fn, x, y) needs integer class "
                         f"labels y, got {y.dtype if torch.is_tensor(y) else type(y).__name__}")


class StepAdaption:
    """Keep a fixed-grid method's step h as large as the model stays ODE-like (seed 002's Algorithm 1).

    Options: ``k`` (iterations between checks, 50), ``threshold`` (0.1 absolute accuracy),
    ``decrease`` (0.5), ``increase`` (1.1), ``max_steps`` (500, the code's guard), ``variant``
    (``"code"``, the default: the authors' refined rule; ``"paper"``: plain halve / 1.1x),
    ``test_method`` (default: midpoint for order 1, rk4 for orders 2-3) and ``initial_step``
    (``"hairer"``: the heuristic on the first training batch, the default; or a number).
    ``history`` holds h after every check, ``checks`` the numbers each check decided from.

    The decisions are the authors' code's (``util/step_adaption_algo.py``, ``train.py``), with two
    deviations that change no decision on the tasks here: h is capped at the span t1 - t0, the
    initial step included (the code caps only an increase, at 1.0, which is the span of its [0, 1]
    solves); and Hairer's initial step is computed on the first batch the block sees in training,
    where the code computes it on a batch it draws before the training loop.
    """

    def __init__(self, k: int = 50, threshold: float = 0.1, decrease: float = 0.5, increase: float = 1.1,
                 max_steps: int = 500, variant: str = "code", test_method: str | None = None,
                 initial_step: float | str = "hairer") -> None:
        self.k = positive_int("schedule 'step_adaption': k", k, "training iterations between checks")
        self.threshold = positive_float("schedule 'step_adaption': threshold", threshold)
        self.decrease = positive_float("schedule 'step_adaption': decrease", decrease)
        self.increase = positive_float("schedule 'step_adaption': increase", increase)
        if not self.decrease < 1 < self.increase:
            raise ValueError(f"schedule 'step_adaption': need decrease < 1 < increase, got {decrease} and {increase}")
        self.max_steps = positive_int("schedule 'step_adaption': max_steps", max_steps)
        if variant not in ("code", "paper"):
            raise ValueError(f"schedule 'step_adaption': variant must be 'code' or 'paper', got {variant!r}")
        self.variant, self.test_method = variant, test_method
        if initial_step != "hairer":
            initial_step = positive_float("schedule 'step_adaption': initial_step", initial_step,
                                          "give a step > 0 or 'hairer'")
        self.initial_step = initial_step
        self.h: float | None = None
        self.history: list[float] = []  # h after every check, for plots of the step count over training
        # What every check decided from (equal on every rank under torch.distributed).
        self.checks: list[dict[str, float]] = []
        self._updates = 0

    def bind(self, base: BaseSolver) -> None:
        """Take the block's base solver and pick the test solver; ``ValueError`` unless the base runs on a
        fixed grid with a known order (and, without ``test_method``, one with a default test solver)."""
        if not base.fixed_grid:
            raise ValueError(f"schedule 'step_adaption' adapts a fixed step, but method {base.method!r} runs "
                             "adaptively here; use a fixed-grid method (euler, midpoint, rk4 or a tableau with "
                             "step_size), or schedule='tolerance_adaption'")
        if base.order is None:
            raise ValueError(f"schedule 'step_adaption': the order of method {base.method!r} is unknown")
        if self.test_method is None:
            if base.order not in _TEST_SOLVERS:
                raise ValueError(f"schedule 'step_adaption': no default test solver of smaller error for a method "
                                 f"of order {base.order} ({base.method!r}); give test_method")
            self.test_method, self.test_order = _TEST_SOLVERS[base.order]
        else:
            member = Member(self.test_method, {}, options={"step_size": base.span})
            base.validate(member)
            self.test_order = resolve_solver(self.test_method, {"step_size": base.span}).order or base.order
        self.base = base
        if isinstance(self.initial_step, float):
            self.h = min(self.initial_step, base.span)

    def member(self, h: float) -> Member:
        """The base method and parameters stepping with ``step_size=h``."""
        return Member(self.base.method, dict(self.base.params), options={"step_size": h})

    def members(self, state: CallState) -> list[Member]:
        """The base method at the current step ``h``, in training and evaluation alike.

        Without a numeric ``initial_step``, the first call sizes h from its initial state and vector
        field (Hairer's heuristic, capped at the time span), which must then be a tensor and a field.
        """
        if self.h is None:
            if state.x is None or not torch.is_tensor(state.x) or state.field is None:
                raise ValueError("schedule 'step_adaption' sizes its first step from the first batch: call the "
                                 "block in training mode first, or give initial_step")
            self.h = min(hairer_initial_step(state.field, state.x, self.base.order), self.base.span)
        return [self.member(self.h)]

    def state_dict(self) -> dict[str, Any]:
        """What training has adapted (saved with the block's ``state_dict``): h, its history, the checks."""
        return {"h": self.h, "history": list(self.history), "checks": [dict(c) for c in self.checks],
                "updates": self._updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict()``: the next update and call continue where the saved run stopped."""
        self.h, self._updates = state["h"], int(state["updates"])
        self.history, self.checks = list(state["history"]), [dict(c) for c in state["checks"]]

    def update(self, model_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> None:
        """Tell the schedule about a training batch (after ``backward``); every ``k``-th call checks the step."""
        _check_labels(y)
        self._updates += 1
        if self._updates % self.k or self.h is None:
            return
        view = self.base.view

        def accuracy(member: Member) -> float:
            with view.solving_with(member):
                return batch_accuracy(model_fn, x, y)

        h = self.h
        test = Member(self.test_method, {}, options={
            "step_size": step_for_test_solver(h, self.base.order, self.test_order, self.base.span)})
        acc_train, acc_test = all_ranks_mean([accuracy(self.member(h)), accuracy(test)])

        def gap_at(candidate: float) -> float:
            return abs(acc_test - all_ranks_mean([accuracy(self.member(candidate))])[0])

        self.checks.append({"h": h, "h_test": test.options["step_size"], "acc_train": acc_train,
                            "acc_test": acc_test})
        self.h = next_step(h, abs(acc_train - acc_test), gap_at, span=self.base.span, threshold=self.threshold,
                           decrease=self.decrease, increase=self.increase, max_steps=self.max_steps,
                           variant=self.variant)
        self.history.append(self.h)


class ToleranceAdaption:
    """The same idea for adaptive solvers (the authors' later code): adapt rtol = atol = tol.

    Start at ``initial_tol`` (1e-6); the test tolerance is tol * ``test_factor`` (1/10), tightened by
    10 until the test solve costs more evaluations than the training solve; gap > threshold:
    tol *= ``decrease``; else try tol * ``increase`` and keep it only if the gap stays within the
    threshold, and not while the training NFE has been constant over the last ``patience`` checks.
    ``history`` holds tol after every check, ``checks`` the numbers each check decided from.
    """

    def __init__(self, initial_tol: float = 1e-6, k: int = 50, threshold: float = 0.1, decrease: float = 0.5,
                 increase: float = 1.1, test_factor: float = 0.1, patience: int = 5) -> None:
        self.tol = positive_float("schedule 'tolerance_adaption': initial_tol", initial_tol)
        self.k = positive_int("schedule 'tolerance_adaption': k", k, "training iterations between checks")
        self.threshold = positive_float("schedule 'tolerance_adaption': threshold", threshold)
        self.decrease = positive_float("schedule 'tolerance_adaption': decrease", decrease)
        self.increase = positive_float("schedule 'tolerance_adaption': increase", increase)
        self.test_factor = as_float("schedule 'tolerance_adaption': test_factor", test_factor)
        if not 0 < self.test_factor < 1 or not self.decrease < 1 < self.increase:
            raise ValueError("schedule 'tolerance_adaption': need 0 < test_factor < 1 and decrease < 1 < increase")
        self.patience = positive_int("schedule 'tolerance_adaption': patience", patience)
        self.history: list[float] = []
        # What every check decided from (equal on every rank under torch.distributed).
        self.checks: list[dict[str, float]] = []
        self._nfe: list[float] = []
        self._updates = 0

    def bind(self, base: BaseSolver) -> None:
        """Take the block's base solver; ``ValueError`` if it runs on a fixed grid (no tolerance to adapt)."""
        if base.fixed_grid:
            raise ValueError(f"schedule 'tolerance_adaption' adapts the tolerance of an adaptive solver, but method "
                             f"{base.method!r} runs on a fixed grid here; use schedule='step_adaption'")
        self.base = base

    def member(self, tol: float) -> Member:
        """The base method and parameters solving with ``rtol = atol = tol``."""
        return Member(self.base.method, dict(self.base.params), options={"rtol": tol, "atol": tol})

    def members(self, state: CallState) -> list[Member]:
        """The base method at the current tolerance ``tol``, in training and evaluation alike."""
        return [self.member(self.tol)]

    def state_dict(self) -> dict[str, Any]:
        """What training has adapted (saved with the block's ``state_dict``): tol, its history, the checks."""
        return {"tol": self.tol, "history": list(self.history), "checks": [dict(c) for c in self.checks],
                "nfe": list(self._nfe), "updates": self._updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict()``."""
        self.tol, self._updates, self._nfe = float(state["tol"]), int(state["updates"]), list(state["nfe"])
        self.history, self.checks = list(state["history"]), [dict(c) for c in state["checks"]]

    def update(self, model_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> None:
        """Tell the schedule about a training batch (after ``backward``); every ``k``-th call checks the tolerance."""
        _check_labels(y)
        self._updates += 1
        if self._updates % self.k:
            return
        view = self.base.view

        def evaluate(tol: float) -> tuple[float, int]:
            with view.solving_with(self.member(tol)):
                acc = batch_accuracy(model_fn, x, y)
            return acc, (view.stats.nfe_forward if view.stats is not None else 0)

        acc_train, nfe_train = evaluate(self.tol)
        test_tol, (acc_test, nfe_test) = self.tol * self.test_factor, evaluate(self.tol * self.test_factor)
        # NFE summed over ranks: every rank must run the same number of test solves (under DDP each
        # is a collective) and make the same patience decision, whatever its local batch cost.
        nfe_train, nfe_test = all_ranks_sum([nfe_train, nfe_test])
        while nfe_test <= nfe_train and test_tol > 1e-14:
            test_tol /= 10
            acc_test, nfe_test = evaluate(test_tol)
            nfe_test = all_ranks_sum([nfe_test])[0]
        acc_train, acc_test = all_ranks_mean([acc_train, acc_test])
        self.checks.append({"tol": self.tol, "test_tol": test_tol, "acc_train": acc_train, "acc_test": acc_test,
                            "nfe_train": nfe_train, "nfe_test": nfe_test})
        self._nfe = (self._nfe + [nfe_train])[-self.patience:]
        if abs(acc_train - acc_test) > self.threshold:
            self.tol *= self.decrease
        elif not (len(self._nfe) == self.patience and len(set(self._nfe)) == 1):
            candidate = self.tol * self.increase
            if abs(acc_test - all_ranks_mean([evaluate(candidate)[0]])[0]) <= self.threshold:
                self.tol = candidate
        self.history.append(self.tol)


@hookimpl
def register_solver_schedules(register):
    register("step_adaption", StepAdaption)
    register("tolerance_adaption", ToleranceAdaption)


__all__ = ["StepAdaption", "ToleranceAdaption", "all_ranks_mean", "hairer_initial_step", "next_step",
           "step_for_test_solver"]
