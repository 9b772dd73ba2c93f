"""Step statistics of a torchdiffeq solve, observed through its public hooks.

Nothing here steps the ODE. A solve is observed through three things torchdiffeq offers every
solver: the vector field (wrapped, to count evaluations and keep the stage values), the step
callbacks (which delimit attempted steps and say accepted or rejected) and the ``norm`` option
(which adaptive solvers call exactly once per attempted step on the scaled error, so its value *is*
the error ratio E_j, with its graph).

Traps handled here (see the comments where each is dealt with):
- ``callback_step`` sees dt before it is clipped to ``step_t``/``jump_t``: the step size is taken
  from the accept/reject callback instead.
- ``_select_initial_step`` evaluates the field once more and calls the norm three times before the
  first step: evaluations before the first step after the first one are probes, norm calls outside
  a step window are ignored.
- The first dt comes out of ``_select_initial_step`` with a graph: step sizes are stored as floats.
- The last accepted step may overshoot the final time; its full step is recorded (it was taken).
- ``odeint_adjoint`` runs the forward solve without a graph and calls the norm again in the backward
  pass: evaluations after the forward solve count as ``nfe_backward`` and are not steps.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ._checks import check_field_output
from .contract import refuse_undeclared_read

State = torch.Tensor | tuple[torch.Tensor, ...]


def flat(x: State) -> torch.Tensor:
    """A tensor or a tuple of tensors as one flat tensor."""
    if isinstance(x, torch.Tensor):
        return x.reshape(-1)
    return torch.cat([part.reshape(-1) for part in x])


def _float(x: Any) -> float:
    # Step sizes and times are plain numbers here; the first dt carries a graph we must not keep
    # (detaching only then: it is a tensor op, and this runs a few times per step).
    if torch.is_tensor(x) and x.requires_grad:
        x = x.detach()
    return float(x)


def rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean().sqrt()


@dataclass(frozen=True)
class SolverPlan:
    """What the statistics need to know about the solver's tableau.

    ``mode`` is ``"adaptive"`` (torchdiffeq's RK error control), ``"fixed"`` (a fixed grid) or
    ``"other"`` (no Runge-Kutta structure known: only evaluations are counted). ``c``, ``b`` and
    ``b_hat`` are the tableau as the solver runs it (FSAL stage included for adaptive solvers).
    """

    method: str
    mode: str
    c: tuple[float, ...] = ()
    b: tuple[float, ...] = ()
    b_hat: tuple[float, ...] | None = None
    kind: str = "ode"
    # For SDE solves the estimates do not come from a tableau; these say what is recorded.
    error_estimate: bool | None = None
    stiffness_estimate: bool | None = None
    # Adaptive solvers: the weights of y(t0 + h/2) in torchdiffeq's dense output (its ``mid``).
    mid: tuple[float, ...] | None = None

    def partial_weights(self, theta: float) -> tuple[float, ...]:
        """Weights w_i with y(t0 + theta h) ~ y0 + h sum_i w_i k_i: ``b`` at theta = 1.

        From torchdiffeq's dense output (a quartic through y0, y1, y(t0 + h/2), f0 and f1 = the last
        stage), so a quadrature with them over the part of an overshooting last step inside the
        interval has the dense output's order; without ``mid``, ``theta * b``.
        """
        if theta >= 1.0 or self.mid is None:
            return tuple(theta * bi for bi in self.b)
        t2, t3, t4 = theta ** 2, theta ** 3, theta ** 4
        on_b, on_mid = -5 * t2 + 14 * t3 - 8 * t4, 16 * t2 - 32 * t3 + 16 * t4
        weights = [bi * on_b + mi * on_mid for bi, mi in zip(self.b, self.mid)]
        weights[0] += theta - 4 * t2 + 5 * t3 - 2 * t4
        weights[-1] += t2 - 3 * t3 + 2 * t4
        return tuple(weights)

    @property
    def stages(self) -> int:
        """Stages per step as the solver runs them (``len(c)``; 0 when no tableau is known)."""
        return len(self.c)

    @property
    def has_error_estimate(self) -> bool:
        """Whether steps carry an error ratio E_j: an embedded pair on an adaptive or fixed grid,
        or, for SDE solves, what ``error_estimate`` says."""
        if self.error_estimate is not None:
            return self.error_estimate
        return self.b_hat is not None and self.mode in ("adaptive", "fixed")

    @property
    def has_stiffness_estimate(self) -> bool:
        """Whether steps can carry a stiffness estimate S_j: the tableau has two stages with equal c,
        or, for SDE solves, what ``stiffness_estimate`` says."""
        if self.stiffness_estimate is not None:
            return self.stiffness_estimate
        return self.equal_c_pair is not None

    @property
    def equal_c_pair(self) -> tuple[int, int] | None:
        """The last two stages with equal c (Shampine's stiffness estimate uses them), if any."""
        for j in range(self.stages - 1, 0, -1):
            for i in range(j - 1, -1, -1):
                if self.c[i] == self.c[j]:
                    return i, j
        return None


@dataclass
class Stage:
    """One evaluation of the vector field: k = f(t, y)."""

    t: torch.Tensor
    y: State
    k: State


@dataclass
class StepRecord:
    """One attempted step.

    ``h`` is the step actually taken, in the caller's time direction (negative for decreasing t).
    ``error_ratio`` is E_j (a tensor with the solve's graph) where the solver has an error
    estimate; ``stiffness`` is S_j = ||f(Y_x) - f(Y_y)|| / ||Y_x - Y_y|| over the equal-c stage
    pair, where there is one and stages were kept; ``inside`` the share of the step before the
    solve's end time.
    """

    t0: float
    h: float
    accepted: bool
    error_ratio: torch.Tensor | None = None
    stiffness: torch.Tensor | None = None
    stages: list[Stage] | None = None
    # The share of the step inside the solve's interval: below 1 for the last step of an adaptive
    # solve, which usually overshoots the end (the end value is interpolated inside it).
    inside: float = 1.0
    # The vector field the solver evaluated (in the solver's time), kept with the stages for
    # regularizers that evaluate it again (``requires`` "field"); dropped when pickled.
    vector_field: Callable | None = field(default=None, repr=False, compare=False)


@dataclass
class StepStats:
    """Everything recorded about one solve (``ODEBlock.stats``, ``odeint(..., return_stats=True)``)."""

    plan: SolverPlan
    _steps: list[StepRecord] = field(default_factory=list, repr=False)
    nfe_forward: int = 0
    nfe_backward: int = 0
    nfe_diffusion: int = 0  # SDE solves: diffusion evaluations (nfe_forward counts the drift)
    nfe_replay: int = 0  # gradient="checkpoint": evaluations of segments recomputed in the backward pass
    rtol: float = 0.0
    atol: float = 0.0
    # Estimates that cost tensor work (the SDE ones) are filled in on first access, so a solve
    # whose statistics nobody reads pays only for the bookkeeping. One entry per solve: a forward
    # call split into several solves (end-time samplers) records them all into one StepStats.
    _pending: list[Callable[[], None]] = field(default_factory=list, repr=False)
    # (label, declared requires) of the regularizer reading these statistics right now, set by the
    # block around the call: reads of statistics it did not declare are refused by name.
    _reader: tuple[str, frozenset[str]] | None = field(default=None, repr=False, compare=False)
    # gradient="adjoint": integral regularizers integrated alongside the solve, by the index of the
    # regularizer in its block (the batch mean of each integral, summed over the call's solves).
    integrals: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        # Deferred estimates are closures, which pickle cannot store: they are filled in first. (The
        # records of a training call keep their graph; torch.save stores the values.)
        self.steps  # noqa: B018 - runs the pending estimates
        # The vector field is the model's, not part of the record: a pickled record keeps the values.
        steps = [replace(step, vector_field=None) if step.vector_field is not None else step for step in self._steps]
        return {**self.__dict__, "_steps": steps, "_pending": [], "_reader": None}

    @property
    def steps(self) -> list[StepRecord]:
        """Every attempted step of the forward solve, accepted and rejected, in order.

        Steps of an adjoint backward pass are not recorded. Estimates deferred to first access
        (those of SDE solves) are filled in here.
        """
        while self._pending:
            self._pending.pop(0)()
        return self._steps

    @property
    def method(self) -> str:
        """The registered name of the solver (``plan.method``)."""
        return self.plan.method

    @property
    def accepted(self) -> list[StepRecord]:
        """The accepted steps, in order (on a fixed grid, every step)."""
        return [s for s in self.steps if s.accepted]

    @property
    def steps_accepted(self) -> int:
        """How many steps were accepted."""
        return sum(1 for s in self.steps if s.accepted)

    @property
    def steps_rejected(self) -> int:
        """How many steps the error control rejected (always 0 on a fixed grid)."""
        return sum(1 for s in self.steps if not s.accepted)

    @property
    def nfe(self) -> int:
        """Vector-field (drift) evaluations of the forward and backward pass together
        (``nfe_forward + nfe_backward + nfe_replay``; SDE diffusion evaluations are ``nfe_diffusion``)."""
        return self.nfe_forward + self.nfe_backward + self.nfe_replay

    def error_ratios(self) -> torch.Tensor:
        """E_j of the accepted steps that have one, as one tensor (empty if none)."""
        if self._reader is not None:
            refuse_undeclared_read(self._reader, "error_estimate")
        values = [s.error_ratio for s in self.accepted if s.error_ratio is not None]
        return torch.stack(values) if values else torch.zeros(0)

    def error_terms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(E_j, |h_j|) over accepted steps that have an error ratio; |h_j| without a graph."""
        if self._reader is not None:
            refuse_undeclared_read(self._reader, "error_estimate")
        steps = [s for s in self.accepted if s.error_ratio is not None]
        if not steps:
            return torch.zeros(0), torch.zeros(0)
        errors = torch.stack([s.error_ratio for s in steps])
        h = torch.tensor([abs(s.h) for s in steps], dtype=errors.dtype, device=errors.device)
        return errors, h

    def stiffness_estimates(self) -> torch.Tensor:
        """S_j of the accepted steps that have one, as one tensor (empty if none)."""
        if self._reader is not None:
            refuse_undeclared_read(self._reader, "stiffness")
        values = [s.stiffness for s in self.accepted if s.stiffness is not None]
        return torch.stack(values) if values else torch.zeros(0)

    def step_sizes(self, accepted_only: bool = True) -> list[float]:
        """The step sizes h_j as floats, signed in the caller's time direction.

        Args:
            accepted_only: Leave out the rejected steps.
        """
        return [s.h for s in (self.accepted if accepted_only else self.steps)]

    def summary(self) -> dict[str, Any]:
        """Plain numbers for logs and JSON."""
        out: dict[str, Any] = {
            "method": self.method,
            "nfe_forward": self.nfe_forward,
            "nfe_backward": self.nfe_backward,
            **({"nfe_replay": self.nfe_replay} if self.nfe_replay else {}),
            **({"nfe_diffusion": self.nfe_diffusion} if self.plan.kind == "sde" else {}),
            "steps_accepted": self.steps_accepted,
            "steps_rejected": self.steps_rejected,
        }
        sizes = [abs(h) for h in self.step_sizes()]
        if sizes:
            out["h_min"], out["h_max"] = min(sizes), max(sizes)
        errors = [s.error_ratio for s in self.accepted if s.error_ratio is not None]
        if errors:
            out["error_ratio_max"] = max(_float(e) for e in errors)
        stiff = [s.stiffness for s in self.accepted if s.stiffness is not None]
        if stiff:
            out["stiffness_max"] = max(_float(s) for s in stiff)
        return out


class StepRecorder:
    """Turns the stream of evaluations, callbacks and norm calls of one solve into ``StepStats``."""

    def __init__(
        self, plan: SolverPlan, *, keep_stages: bool, base_norm: Callable, direction: float,
        rtol: float, atol: float, stats: StepStats | None = None, stiffness: bool | None = None,
        store_stages: bool | None = None, error_graph: bool = True, replays: bool = False,
        end: float | None = None, vector_field: Callable | None = None,
    ) -> None:
        """``keep_stages``: watch the stage values of every step (the stiffness estimate and the
        error estimate of fixed-grid pairs are formed from them). ``store_stages``: also keep them
        in the step records (quadrature regularizers read them; default: ``keep_stages``).
        ``stiffness``: form S_j (default: ``keep_stages``). ``error_graph=False`` keeps E_j without
        its graph: nothing will differentiate it, and its graph would pin a batch-sized tensor per
        step until the statistics are dropped. ``replays``: evaluations after the forward solve are
        segments recomputed for ``gradient="checkpoint"`` (``nfe_replay``), not an adjoint solve.
        ``end``: the solve's last time, for the share of an overshooting last step inside it.
        ``vector_field``: the vector field as the solver evaluates it (unobserved), kept in the records
        with their stages.
        """
        # ``stats`` given: this solve is one part of a forward call and adds to its record.
        self.stats = stats if stats is not None else StepStats(plan, rtol=rtol, atol=atol)
        self.plan = plan
        self.keep_stages = keep_stages
        self.store_stages = keep_stages if store_stages is None else store_stages and keep_stages
        # S_j costs tensor work per step: formed only when asked for (default: whenever stages are kept).
        self.want_stiffness = keep_stages if stiffness is None else stiffness
        self.error_graph = error_graph
        self.replays = replays
        # torchdiffeq steps in increasing time (it negates a decreasing grid): the end in its frame.
        self._end = None if end is None else direction * end
        self.base_norm = base_norm
        self.direction = direction
        self.vector_field = vector_field
        self.adaptive = plan.mode == "adaptive"
        self.fixed = plan.mode == "fixed"
        # Fixed grids: whether each step's starting state is finite, taken without a sync; read only
        # when the final state is non-finite, to name the time it diverged (see ``check_finite``).
        self._finite_starts: list[torch.Tensor] = []
        # (record, f(Y_x) - f(Y_y), Y_x - Y_y) per step, turned into S_j in one stacked computation.
        self._stiffness_queue: list[tuple[StepRecord, Stage, Stage]] = []
        self.backward = False
        self._window: list[Stage] | None = None  # evaluations of the step being attempted
        self._window_norm: torch.Tensor | None = None
        self._f0: Stage | None = None  # first stage of the next adaptive step (FSAL)
        self._started = False
        self._output_checked = False
        # True while an evaluation needs nothing but counting (read on every evaluation).
        self.count_only = False
        self._fixed_step: tuple[float, float] | None = None  # (t0, dt) of the open fixed-grid step

    # -- the field -----------------------------------------------------------------------------
    def on_eval(self, t: torch.Tensor, y: State, k: State) -> None:
        """One evaluation of the field. (``ObservedField.forward`` counts the common case itself,
        a forward evaluation after the first with no stages kept, without calling this.)"""
        if self.backward:
            if self.replays:
                self.stats.nfe_replay += 1
            else:
                self.stats.nfe_backward += 1
            return
        self.stats.nfe_forward += 1
        if not self._output_checked:  # the solve's first evaluation
            check_field_output(k, y, f"method {self.plan.method!r}")
            self._output_checked = True
            self.count_only = not self.keep_stages
        if not self.keep_stages:
            return
        stage = Stage(t, y, k)
        if self._window is not None:
            self._window.append(stage)
        elif not self._started:
            # The first evaluation is f(t0, y0); a second one before any step is the probe of
            # _select_initial_step and belongs to no step.
            if self._f0 is None:
                self._f0 = stage
        else:
            # After an accepted step that crossed a jump_t, torchdiffeq re-evaluates f at the new
            # start on the far side of the discontinuity: that is the next step's first stage.
            self._f0 = stage

    def norm(self, x: Any) -> torch.Tensor:
        value = self.base_norm(x)
        # Only the norm call inside a forward step window is the step's error ratio.
        if self.adaptive and self._window is not None and not self.backward:
            self._window_norm = value if self.error_graph else value.detach()
        return value

    # -- the callbacks -------------------------------------------------------------------------
    def on_step(self, t0: torch.Tensor, y0: State, dt: torch.Tensor) -> None:
        if self.backward:
            return
        self._started = True
        if self.fixed:
            self._close_fixed_step()
            self._fixed_step = (_float(t0), _float(dt))
            # No finiteness check per step (a sync): a non-finite state stays non-finite, so the
            # final state tells, and these flags say where (``check_finite``). Adaptive solvers
            # need neither: torchdiffeq asserts a finite state before every step.
            # Without a graph: isfinite's abs would save y0 for a backward nobody runs, and under
            # gradient="checkpoint" a recomputed segment must save exactly what the forward saved.
            with torch.no_grad():
                self._finite_starts.append(torch.isfinite(y0).all() if torch.is_tensor(y0)
                                           else torch.stack([torch.isfinite(p).all() for p in y0]).all())
        # An adaptive step needs its window even without stages, to catch the norm call.
        self._window = [] if self.keep_stages or self.adaptive else None
        self._window_norm = None

    def on_accept(self, t0: torch.Tensor, y0: State, dt: torch.Tensor) -> None:
        self._close_adaptive_step(t0, dt, accepted=True)

    def on_reject(self, t0: torch.Tensor, y0: State, dt: torch.Tensor) -> None:
        self._close_adaptive_step(t0, dt, accepted=False)

    def finish_forward(self) -> StepStats:
        """Close the last step; later evaluations (an adjoint backward solve) count as backward."""
        if self.fixed:
            self._close_fixed_step()
        self._window = None
        self.backward = True
        self.count_only = False
        return self.stats

    def check_finite(self, final: State, end: float) -> None:
        """Raise ``FloatingPointError`` if the final state is non-finite, naming where it diverged.

        On a fixed grid the time named is the start of the first step whose starting state was
        non-finite (read from the per-step flags, only now that something went wrong); otherwise
        the final time.
        """
        if bool(torch.isfinite(flat(final)).all()):
            return
        for finite, step in zip(self._finite_starts, self.stats._steps[-len(self._finite_starts):]):
            if not bool(finite):
                raise FloatingPointError(
                    f"non-finite state at t = {step.t0:.6g} in a solve with {self.plan.method!r}: "
                    "the vector field or the step size diverged (try a smaller step or a smaller time span)"
                )
        raise FloatingPointError(f"non-finite state at the final time t = {end:.6g} in a solve with "
                                 f"{self.plan.method!r}")

    # -- building records ------------------------------------------------------------------------
    def _close_adaptive_step(self, t0: torch.Tensor, dt: torch.Tensor, accepted: bool) -> None:
        if self.backward or self._window is None:
            return
        # dt here is after clipping to step_t / jump_t, unlike callback_step's.
        start, size = _float(t0), _float(dt)
        record = StepRecord(start, self.direction * size, accepted, error_ratio=self._window_norm)
        if accepted and self._end is not None and start + size > self._end:
            record.inside = min(1.0, max(0.0, (self._end - start) / size))
        if self.keep_stages and self._f0 is not None:
            stages = [self._f0, *self._window[: self.plan.stages - 1]]
            if len(stages) == self.plan.stages:
                if self.store_stages:
                    record.stages, record.vector_field = stages, self.vector_field
                self._stiffness(record, stages)
                if accepted:
                    self._f0 = stages[-1]  # FSAL: the last stage is f(t1, y1)
        self.stats._steps.append(record)
        self._window, self._window_norm = None, None

    def _close_fixed_step(self) -> None:
        if self._fixed_step is None:
            return
        t0, dt = self._fixed_step
        record = StepRecord(t0, self.direction * dt, True)
        if self.keep_stages and self._window is not None and len(self._window) >= self.plan.stages:
            stages = self._window[: self.plan.stages]
            if self.store_stages:
                record.stages, record.vector_field = stages, self.vector_field
            self._stiffness(record, stages)
            if self.plan.b_hat is not None:
                # Formed when first read, like S_j: no tensor work inside the solve besides the
                # solver's own (gradient="checkpoint" recomputes a segment's work op for op).
                graph = self.error_graph and torch.is_grad_enabled()
                self.stats._pending.append(lambda: self._fill_fixed_error_ratio(record, stages, dt, graph))
        self.stats._steps.append(record)
        self._fixed_step, self._window = None, None

    def _stiffness(self, record: StepRecord, stages: Sequence[Stage]) -> None:
        """Queue S_j of ``record``: the estimates of a solve are formed together, when first read."""
        pair = self.plan.equal_c_pair
        if pair is None or not self.want_stiffness:
            return
        if not self._stiffness_queue:
            self.stats._pending.append(lambda queue=self._stiffness_queue: _fill_stiffness(queue))
        self._stiffness_queue.append((record, stages[pair[1]], stages[pair[0]]))

    def _fill_fixed_error_ratio(self, record: StepRecord, stages: Sequence[Stage], dt: float, graph: bool) -> None:
        with torch.set_grad_enabled(graph):
            record.error_ratio = self._fixed_error_ratio(stages, dt)

    def _fixed_error_ratio(self, stages: Sequence[Stage], dt: float) -> torch.Tensor:
        """The embedded pair's error ratio, formed from the stages as torchdiffeq's adaptive loop does."""
        ks = [flat(s.k) for s in stages]
        y0 = flat(stages[0].y)
        y1 = y0 + dt * sum(b * k for b, k in zip(self.plan.b, ks) if b != 0.0)
        err = dt * sum((b - bh) * k for b, bh, k in zip(self.plan.b, self.plan.b_hat, ks) if b != bh)
        scale = self.stats.atol + self.stats.rtol * torch.maximum(y0.abs(), y1.abs())
        return rms(err / scale)


def _fill_stiffness(queue: list[tuple[StepRecord, Stage, Stage]]) -> None:
    """S_j = ||f(Y_x) - f(Y_y)|| / ||Y_x - Y_y|| (RMS norms) for every queued step, in a few stacked ops
    rather than several per step (on small states the op count is the cost, forward and backward)."""
    num = torch.stack([flat(x.k) - flat(y.k) for _, x, y in queue]).square().mean(1).sqrt()
    den = torch.stack([flat(x.y) - flat(y.y) for _, x, y in queue]).square().mean(1).sqrt()
    # Equal stage inputs (e.g. a zero field) carry no information about the Jacobian.
    values = torch.where(den > 0, num / den.clamp_min(torch.finfo(den.dtype).tiny), torch.zeros_like(num))
    for (record, _, _), value in zip(queue, values.unbind()):
        record.stiffness = value
    queue.clear()


def quadrature_nodes(stats: StepStats) -> tuple[list[Stage], list[float]]:
    """The stages the solver's own quadrature reads and their weights |h_j| b_i, over accepted steps
    (stages with b_i = 0 left out), over the solve's interval: an adaptive solve's last step, which
    overshoots the end, is weighted by its dense output up to the end. Raises ``ValueError`` if
    stage values were not recorded."""
    stages, weights, _ = _quadrature(stats, with_fields=False)
    return stages, weights


def quadrature_fields(stats: StepStats) -> tuple[list[Stage], list[float], list[Callable]]:
    """``quadrature_nodes`` and, per stage, the vector field the solver evaluated there (for
    regularizers that evaluate it again, which declare ``"field"`` in ``requires``)."""
    return _quadrature(stats, with_fields=True)


def _quadrature(stats: StepStats, with_fields: bool) -> tuple[list[Stage], list[float], list[Callable]]:
    if stats._reader is not None:
        refuse_undeclared_read(stats._reader, "stages")
        if with_fields:
            refuse_undeclared_read(stats._reader, "field")
    stages: list[Stage] = []
    weights: list[float] = []
    fields: list[Callable] = []
    for step in stats.accepted:
        if step.stages is None:
            raise ValueError(f"method {stats.method!r}: stage values were not recorded for this solve")
        if with_fields and step.vector_field is None:
            raise ValueError(f"method {stats.method!r}: the vector field was not kept with these statistics "
                             "(restored from a pickle, or recorded by an SDE solve)")
        # An overshooting last step counts only up to the end time, by its dense output's weights.
        b = stats.plan.b if step.inside == 1.0 else stats.plan.partial_weights(step.inside)
        for bi, stage in zip(b, step.stages):
            if bi != 0.0:
                stages.append(stage)
                weights.append(abs(step.h) * bi)
                if with_fields:
                    fields.append(step.vector_field)
    return stages, weights, fields


def step_quadrature(stats: StepStats, integrand: Callable[[Stage], torch.Tensor]) -> torch.Tensor:
    """sum_j |h_j| sum_i b_i integrand(stage_i) over accepted steps: the solver's own quadrature."""
    stages, weights = quadrature_nodes(stats)
    total = None
    for stage, weight in zip(stages, weights):
        term = weight * integrand(stage)
        total = term if total is None else total + term
    return torch.zeros(()) if total is None else total


def batch_size(x: State) -> int:
    """Leading dimension of the state (1 for a 0- or 1-dimensional state)."""
    first = x if isinstance(x, torch.Tensor) else x[0]
    return first.shape[0] if first.dim() > 1 else 1


_CALLBACKS = ("callback_step", "callback_accept_step", "callback_reject_step")
_ADJOINT_CALLBACKS = tuple(f"{name}_adjoint" for name in _CALLBACKS)


def _callback(field: Any, name: str) -> Callable | None:
    """``getattr(field, name, None)`` without the cost of a miss: nn.Module.__getattr__ builds an
    AttributeError (message included) for every absent name, and most fields have no callbacks."""
    if name in getattr(field, "__dict__", ()) or hasattr(type(field), name):
        return getattr(field, name)
    return None if isinstance(field, torch.nn.Module) else getattr(field, name, None)


class ObservedField(torch.nn.Module):
    """Wraps a vector field so a ``StepRecorder`` sees every evaluation and step callback.

    This class has only ``callback_step`` (all a fixed-grid solver calls, so torchdiffeq does not
    warn about unsupported callbacks); ``AdaptiveObservedField`` adds accept/reject.

    The user's own step callbacks (and adjoint callbacks) are still called. Being a Module that
    holds the field as a submodule keeps ``odeint_adjoint``'s parameter discovery working.
    """

    def __init__(self, field: Callable) -> None:
        super().__init__()
        self.field = field
        # Read on every evaluation: plain attributes, not nn.Module's slower __getattr__ path; the
        # recorder is set per solve by ``observe``.
        object.__setattr__(self, "_field", field)
        object.__setattr__(self, "recorder", None)
        for name in _ADJOINT_CALLBACKS:
            if hasattr(field, name):
                object.__setattr__(self, name, getattr(field, name))
        object.__setattr__(self, "_user_callbacks", {})

    def observe(self, recorder: StepRecorder | None) -> ObservedField:
        """Report to ``recorder`` from now on (a block reuses one wrapper across calls; None detaches)."""
        if recorder is not None:
            # The user's own step callbacks, looked up once per solve rather than on every step
            # (and not once for all: a callback set on the field later must still be called).
            self._user_callbacks.update((name, _callback(self._field, name)) for name in _CALLBACKS)
        if recorder is not None and type(self) is ObservedField:
            unused = {name for name in _CALLBACKS[1:] if self._user_callbacks[name] is not None}
            if unused:
                # The user's accept/reject callbacks cannot be forwarded from a fixed grid: say so, on
                # every solve as torchdiffeq does for its own fixed-grid solvers.
                warnings.warn(f"Solver '{recorder.plan.method}' does not support callbacks {unused}", stacklevel=5)
        object.__setattr__(self, "recorder", recorder)
        return self

    def forward(self, t: torch.Tensor, y: State) -> State:
        k = self._field(t, y)
        recorder = self.recorder
        if recorder.count_only:  # the common case, inline: this runs once per stage
            recorder.stats.nfe_forward += 1
        else:
            recorder.on_eval(t, y, k)
        return k

    # Called once per stage: skip nn.Module's hook machinery (no hooks are ever put on this wrapper).
    __call__ = forward

    def callback_step(self, t0, y0, dt) -> None:
        self.recorder.on_step(t0, y0, dt)
        callback = self._user_callbacks["callback_step"]
        if callback is not None and not self.recorder.backward:  # a replayed segment: called already
            callback(t0, y0, dt)


class AdaptiveObservedField(ObservedField):
    """``ObservedField`` for adaptive solvers: also sees accepted and rejected steps."""

    def callback_accept_step(self, t0, y0, dt) -> None:
        self.recorder.on_accept(t0, y0, dt)
        callback = self._user_callbacks["callback_accept_step"]
        if callback is not None and not self.recorder.backward:  # a replayed segment: called already
            callback(t0, y0, dt)

    def callback_reject_step(self, t0, y0, dt) -> None:
        self.recorder.on_reject(t0, y0, dt)
        callback = self._user_callbacks["callback_reject_step"]
        if callback is not None and not self.recorder.backward:  # a replayed segment: called already
            callback(t0, y0, dt)
