"""``odeint`` over torchdiffeq, accepting registered names, method specs, tableaux and families."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torchdiffeq

from . import _torchdiffeq
from ._block import BlockCore, SchedulesView, compile_boundary
from ._checks import check_adaptive_dtype, check_state
from ._integrals import IntegralField, initial_state, state_norm
from ._regularization import check_supported, recorded
from .contract import BaseSolver, Member
from .gradients import resolve_gradient, run_checkpointed, segment_lengths
from .plugins import UnknownPluginNameError
from .policies import TimeMap
from .solvers import (
    MethodLike,
    Solver,
    check_solve_inputs,
    merge_params,
    resolve_method,
    resolve_solver,
    torchdiffeq_method_names,
    with_options,
)
from .specs import parse_method_spec
from .stats import AdaptiveObservedField, ObservedField, SolverPlan, StepRecorder, StepStats

_growing_segments = segment_lengths("odeint", None, "checkpoint")


def odeint(
    func: Callable[..., Any],
    y0: torch.Tensor | tuple[torch.Tensor, ...],
    t: torch.Tensor,
    *,
    method: MethodLike = "dopri5",
    rtol: float | torch.Tensor = 1e-7,
    atol: float | torch.Tensor = 1e-9,
    options: Mapping[str, Any] | None = None,
    adjoint: bool = False,
    return_stats: bool = False,
    keep_stages: bool = False,
    gradient: str | None = None,
    checkpoint_steps: int | None = None,
    **kwargs: Any,
) -> Any:
    """Solve dy/dt = func(t, y) with torchdiffeq, with any registered or given method.

    Same semantics, arguments and return value as ``torchdiffeq.odeint`` (or
    ``torchdiffeq.odeint_adjoint`` with ``gradient="adjoint"``, or its synonym ``adjoint=True``; then
    ``adjoint_*`` keyword arguments are passed on). ``gradient="checkpoint"`` gives backprop's values
    and gradients with the steps' graph recomputed segment by segment in the backward pass
    (``checkpoint_steps`` steps per segment; default: growing, see ``gradients``). ``method`` is
    resolved by ``resolve_solver``; ``options`` holds torchdiffeq's solver options and a family's
    parameters.

    With ``return_stats=True`` the result is ``(solution, StepStats)``: evaluations, attempted
    steps, and per step the error ratio E_j (with its graph, under ``adjoint=False``). With
    ``keep_stages=True`` the stage values of every step are kept too (needed for the stiffness
    estimate, quadrature regularizers and the error estimate of fixed-grid pairs).
    """
    solver = resolve_solver(method, options)
    name, opts = solver.name, dict(solver.options)
    mode = resolve_gradient("odeint", gradient, adjoint)
    segments = segment_lengths("odeint", checkpoint_steps, mode)
    check_gradient_mode(mode, name, opts, "odeint")
    t = check_solve_inputs(solver, t, rtol, atol)
    check_state(y0, f"method {name!r}")
    if solver.adaptive:
        check_adaptive_dtype(y0, name)
    if return_stats:
        return _observed_solve(func, y0, t, name, opts, solver.plan, rtol, atol, mode, keep_stages, kwargs,
                               segments=segments)
    if keep_stages:
        raise ValueError("keep_stages=True only applies with return_stats=True")
    return _solve(func, y0, t, name, opts, rtol, atol, mode, kwargs, segments)


def check_gradient_mode(gradient: str, method: str, options: Mapping[str, Any], owner: str) -> None:
    """Refuse ``gradient="checkpoint"`` with a method whose steps cannot be replayed in segments."""
    if gradient == "checkpoint" and not _torchdiffeq.segmentable(method, options):
        raise ValueError(f"{owner}: method {method!r} cannot replay its steps in segments, which "
                         "gradient='checkpoint' needs (only explicit Runge-Kutta methods, adaptive or on a fixed "
                         "grid, can); use gradient='backprop' or 'adjoint' with it, or another method")


def _observed_solve(func, y0, t, name, opts, plan, rtol, atol, gradient, keep_stages, kwargs, stats=None,
                    observer=None, direction=None, segments=None, **recording):
    """Solve while a ``StepRecorder`` watches; returns ``(solution, stats)``.

    ``observer``: a wrapper of ``func`` to reuse (a block keeps one per field), else one is made.
    ``recording``: the recorder's ``stiffness``, ``store_stages`` and ``error_graph`` switches.
    """
    opts = dict(opts)
    is_tuple = not isinstance(y0, torch.Tensor)
    recorder = StepRecorder(
        plan,
        keep_stages=keep_stages,
        base_norm=opts.get("norm") or _torchdiffeq.default_norm(is_tuple),
        direction=direction if direction is not None else -1.0 if len(t) > 1 and bool(t[1] < t[0]) else 1.0,
        rtol=_scalar(rtol),
        atol=_scalar(atol),
        stats=stats,
        replays=gradient == "checkpoint",
        end=float(t[-1]),
        vector_field=func,
        **recording,
    )
    opts["norm"] = recorder.norm
    if observer is None or gradient != "backprop":
        # The adjoint's backward solve and checkpoint's recomputed segments evaluate the field through
        # this wrapper after the forward call has returned (nfe_backward, nfe_replay): it needs a
        # wrapper of its own.
        observer = (AdaptiveObservedField if plan.mode == "adaptive" else ObservedField)(func)
        solution = _solve(observer.observe(recorder), y0, t, name, opts, rtol, atol, gradient, kwargs, segments)
    else:
        try:
            solution = _solve(observer.observe(recorder), y0, t, name, opts, rtol, atol, gradient, kwargs)
        finally:
            # A reused wrapper must not keep this solve's statistics (and their graph) alive.
            observer.observe(None)
    stats = recorder.finish_forward()
    if plan.mode != "adaptive":
        # An adaptive solve cannot end non-finite: torchdiffeq asserts a finite state before every
        # step, and a step to a non-finite state has a NaN error ratio and is rejected.
        recorder.check_finite(solution[-1] if isinstance(solution, torch.Tensor) else tuple(s[-1] for s in solution),
                              float(t[-1]))
    return solution, stats


def _scalar(tol: Any) -> Any:
    return float(tol) if not torch.is_tensor(tol) or tol.numel() == 1 else tol


def _solve(func, y0, t, name, opts, rtol, atol, gradient, kwargs, segments=None):
    adjoint = gradient == "adjoint"
    adjoint_kwargs = sorted(k for k in kwargs if k.startswith("adjoint_")) if kwargs else ()
    if adjoint_kwargs and not adjoint:
        raise ValueError(f"{adjoint_kwargs} only apply with gradient='adjoint' (adjoint=True)")
    if gradient == "checkpoint" and torch.is_grad_enabled():
        if kwargs:
            raise ValueError(f"{sorted(kwargs)} cannot be combined with gradient='checkpoint' (it replays "
                             "torchdiffeq's steps without events); use gradient='backprop'")
        try:
            return _torchdiffeq.solve_in_segments(func, y0, t, rtol=rtol, atol=atol, method=name, options=opts,
                                                  segment_steps=segments or _growing_segments,
                                                  run_segment=run_checkpointed)
        except AssertionError as exc:
            error = _torchdiffeq.diverged_error(exc, name, direction=-1.0 if bool(t[1] < t[0]) else 1.0)
            if error is None:
                raise
            raise error from exc
    if adjoint:
        if kwargs.get("adjoint_method") is not None:
            given = kwargs.get("adjoint_options")
            adjoint_solver = resolve_solver(kwargs["adjoint_method"], given)
            adj_name, adj_opts = adjoint_solver.name, dict(adjoint_solver.options)
            kwargs["adjoint_method"] = adj_name
            if adj_opts or given is not None:
                kwargs["adjoint_options"] = adj_opts
        solve = torchdiffeq.odeint_adjoint
    else:
        solve = torchdiffeq.odeint
    try:
        return solve(func, y0, t, rtol=rtol, atol=atol, method=name, options=opts, **kwargs)
    except AssertionError as exc:
        error = _torchdiffeq.diverged_error(exc, name, direction=-1.0 if bool(t[1] < t[0]) else 1.0)
        if error is None:
            raise
        raise error from exc




class ODEBlock(BlockCore):
    """A continuous-depth layer: solves dz/dt = field(t, z) from z(t0) = x and records step statistics.

    Args:
        field: the vector field ``field(t, z)``, usually an ``nn.Module``.
        t: the integration times: ``(t0, t1)`` or a 1-D tensor of output times.
        method: a registered name, a method spec ``"name:param=value,..."``, a ``Tableau`` or a
            ``TableauFamily`` (as for ``odeint``).
        rtol: relative tolerance of adaptive methods.
        atol: absolute tolerance of adaptive methods.
        options: torchdiffeq's solver options and a family's parameters (as for ``odeint``).
        adjoint: the older spelling of ``gradient="adjoint"``.
        regularizers: ``{name: weight}`` over registered step regularizers; a weight may be a
            schedule ``weight(epoch)`` such as ``ExponentialAnnealing(100, 10, 75)``, and
            ``{name: {"weight": w, **options}}`` passes options to the regularizer.
        return_all: return the states at all times of ``t`` instead of the final one.
        record_stats: set False to solve without observation (``stats`` is then None).
        end_time: a registered end-time sampler (``"steer"``, ``"steer_normal"``,
            ``"steer_intervals"`` or a plugin's): in training every forward call integrates to
            freshly drawn times (STEER); evaluation always uses ``t``.
        end_time_options: the sampler's options (``{"b": 0.5}``); ``"per_sample": True`` draws
            one end time per sample, solved in one batched, time-rescaled solve (see ``policies``).
        seed: seeds a generator of the block's own for the draws (end times, schedules).
        generator: a ``torch.Generator`` for the draws (default: torch's global generator).
        schedule: a registered solver schedule (``"switching"``, ``"smoothing"``,
            ``"output_ensemble"`` or a plugin's) choosing the solver of every call (see
            ``schedules``).
        schedule_options: the schedule's options.
        gradient: how gradients are computed (see ``gradients``): ``"backprop"`` (default),
            ``"adjoint"`` (``odeint_adjoint``; integral regularizers are integrated with the solve,
            the others are refused) or ``"checkpoint"`` (backprop's values and gradients, the
            steps' graph recomputed one segment at a time in the backward pass).
        checkpoint_steps: steps per recomputed segment with ``gradient="checkpoint"``; default:
            segments growing by one step, so memory grows like the square root of the steps.

    ``forward(x)`` returns ``z(t1)`` (with an end-time sampler in training: the state at the drawn
    end; with an output ensemble: the weighted mean over its members); ``.last_t`` holds the times
    the last call used, shaped like ``t`` or ``(batch, len(t))`` per sample; ``.last_method`` the
    solver(s), as ``(method, family parameters)``; ``.iteration`` counts training calls;
    ``.stats`` describes the solve(s) of the last call; ``.regularization()`` is the weighted sum
    of the regularizers over that call (0 when there are none or none applies in eval mode with
    ``no_grad``). Set ``.epoch`` (1-based) to drive scheduled weights and per-epoch schedules.
    """

    def __init__(
        self,
        field: Callable[..., Any],
        t: Any = (0.0, 1.0),
        method: MethodLike = "dopri5",
        rtol: float = 1e-7,
        atol: float = 1e-9,
        options: Mapping[str, Any] | None = None,
        adjoint: bool = False,
        regularizers: Mapping[str, Any] | None = None,
        return_all: bool = False,
        record_stats: bool = True,
        end_time: str | None = None,
        end_time_options: Mapping[str, Any] | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        schedule: str | None = None,
        schedule_options: Mapping[str, Any] | None = None,
        gradient: str | None = None,
        checkpoint_steps: int | None = None,
    ) -> None:
        super().__init__()
        self.gradient = resolve_gradient("ODEBlock", gradient, adjoint)
        self._segments = segment_lengths("ODEBlock", checkpoint_steps, self.gradient)
        self.field = field
        self.solver = resolve_solver(method, options)
        self.method_name, self.options = self.solver.name, dict(self.solver.options)
        # An unregistered Tableau/TableauFamily stays usable by name while this block holds it.
        self._method = method
        t = torch.as_tensor(t, dtype=torch.get_default_dtype())
        self.register_buffer("t", check_solve_inputs(self.solver, t, rtol, atol), persistent=False)
        self.rtol, self.atol = rtol, atol
        # Every solve of a call runs the way t runs (drawn ends lie beyond their starts); kept with the
        # tensor it was read from, so an assigned or moved t is read again.
        self._direction = (self.t, -1.0 if bool(self.t[-1] < self.t[0]) else 1.0)
        self.return_all = return_all
        self._setup_regularizers(regularizers, record_stats)
        # Under the adjoint, integral regularizers are integrated with the solve and read no statistics.
        self._integrated = [i for i, reg in enumerate(self.regularizers) if reg.integrated] \
            if self.gradient == "adjoint" else []
        if self._integrated:
            self._needs = recorded([reg for reg in self.regularizers if not reg.integrated])
            self._vjp_inputs = "input_grad" in self._needs
        needs = self._needs
        # What the recorder forms and keeps: only what some regularizer reads.
        self._recording = {"stiffness": "stiffness" in needs, "store_stages": "stages" in needs,
                           "error_graph": "error_estimate" in needs}
        # One observing wrapper per wrapper class, reused by every call (building an nn.Module per
        # call costs more than observing a small solve). Not submodules: they only point at field.
        self._observers: dict[type, ObservedField] = {}
        # The base solver, resolved once; schedule members are resolved when they are first used.
        self._solvers: OrderedDict[tuple, _Solver] = OrderedDict()
        base = self._base_solver()
        self._base = self._solver(base.member)
        self.plan = self._base.plan
        self._setup_policy("ODEBlock", self.t, base, end_time, end_time_options, seed, generator, schedule,
                           schedule_options)
        self._base_member = self._base_members[0]
        if self.policy.per_sample and "grid_constructor" in self.options:
            raise ValueError("end_time_options['per_sample'] rescales every sample's interval to [0, 1], where a "
                             "grid_constructor in real time has no meaning; give step_size instead")

    def _base_solver(self) -> BaseSolver:
        solver = self.solver
        self._step_options = solver.step_options
        return BaseSolver(solver.name, solver.family, dict(solver.params), self._validate, view=SchedulesView(self),
                          options=dict(self._step_options), fixed_grid=solver.fixed_grid, order=solver.order,
                          span=abs(float(self.t[-1]) - float(self.t[0])))

    def solver_for(self, member: Member) -> Solver:
        """The resolved solver the block uses for ``member`` (its name, options, order, grid, statistics plan)."""
        return self._solver(member).resolved

    def _validate(self, member: Member) -> None:
        """Raise ``ValueError`` if the block cannot solve with ``member`` (resolving it is the check)."""
        self._solver(member)

    def _solver(self, member: Member) -> _Solver:
        """How the block solves with ``member``: method, options, statistics plan (a few kept, least recent dropped)."""
        # Insertion order is part of the key: cheaper than sorting on every call, and members built
        # by the same schedule always list their parameters in the same order.
        key = (member.method, tuple(member.params.items()), tuple(member.options.items()))
        solver = self._solvers.get(key)
        if solver is not None:
            self._solvers.move_to_end(key)
            return solver
        options = dict(member.options)
        rtol, atol = options.pop("rtol", self.rtol), options.pop("atol", self.atol)
        step_options = {**self._step_options, **options}
        if member.method == self.method_name and not options:  # the base family: only its parameters change
            resolved = with_options(self.solver, {**step_options, **member.params})
        else:
            resolved = resolve_solver(member.method, {**step_options, **member.params})
            check_solve_inputs(resolved, self.t, rtol, atol)
        name, opts, plan = resolved.name, dict(resolved.options), resolved.plan
        check_supported(self.regularizers, plan, self.gradient, _torchdiffeq.methods_with_error_estimate)
        check_gradient_mode(self.gradient, name, opts, "ODEBlock")
        # Stage values are kept only when something reads them (they pin tensors in memory).
        keep = bool(self._needs & {"stages", "stiffness"}) or ("error_estimate" in self._needs and plan.mode == "fixed")
        solver = _Solver(name, opts, plan, keep, dict(member.params), rtol, atol, resolved)
        self._solvers[key] = solver
        while len(self._solvers) > _SOLVER_CACHE_SIZE:
            self._solvers.popitem(last=False)
        return solver

    @compile_boundary
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Solve from ``z(t0) = x`` and record the call in ``stats``, ``last_t`` and ``last_method``.

        Args:
            x: the initial state, a floating-point tensor (or a tuple of tensors).

        Returns:
            ``z(t1)``: the state at the end of ``t`` (in training with an end-time sampler: at the
            drawn end; with an output ensemble: the weighted mean over its members). With
            ``return_all``, the states at every time of ``t``, stacked along a new first dimension.
        """
        check_state(x, "ODEBlock input")
        first = x if torch.is_tensor(x) else x[0]  # tuple states: time follows the first part
        t = self.t.to(device=first.device, dtype=first.dtype if first.is_floating_point() else self.t.dtype)
        if self._vjp_inputs and torch.is_tensor(x) and not x.requires_grad and torch.is_grad_enabled():
            # The Jacobian probe differentiates each stage w.r.t. its input, the first one being x.
            x = x.detach().requires_grad_(True)
        z = self._call(x, t, self.field)
        return z if self.return_all else z[-1]

    def _new_stats(self) -> StepStats:
        return StepStats(self.plan, rtol=_scalar(self.rtol), atol=_scalar(self.atol))

    def _prepare(self, members: list[Member], x: Any) -> list[_Solver]:
        solvers = [self._base if member is self._base_member else self._solver(member) for member in members]
        for solver in solvers:
            if solver.plan.mode == "adaptive":
                check_adaptive_dtype(x, solver.name)
        return solvers

    def _picked(self, solver: _Solver) -> tuple[str, dict]:
        return solver.name, solver.params

    def _solve_member(self, solver: _Solver, stats: StepStats | None, y0: Any, grid: torch.Tensor,
                      time_map: TimeMap | None) -> Any:
        """One solve of a forward call with ``solver`` (a member's), recorded into ``stats``."""
        # torchdiffeq copies the options it is given, so the solver's own dict is passed as it is.
        field = base_field = self.field
        opts = solver.options
        if time_map is not None:
            field = TimeMappedField(base_field, time_map)
            if "step_size" in opts:
                opts = {**opts, "step_size": time_map.step(opts["step_size"])}
        if stats is None:
            return _solve(field, y0, grid, solver.name, opts, solver.rtol, solver.atol, self.gradient, {},
                          self._segments)
        if self._integrated:
            return self._solve_with_integrals(field, solver, opts, stats, y0, grid, time_map)
        observer = None
        if time_map is None:
            wrapper = AdaptiveObservedField if solver.plan.mode == "adaptive" else ObservedField
            observer = self._observers.get(wrapper)
            if observer is None or observer._field is not base_field:  # new, or block.field was replaced
                observer = self._observers[wrapper] = wrapper(base_field)
        ys, _ = _observed_solve(field, y0, grid, solver.name, opts, solver.plan, solver.rtol, solver.atol,
                                self.gradient, solver.keep_stages, {}, stats=stats, observer=observer,
                                direction=self._direction_of(grid) if time_map is None else None,
                                segments=self._segments, **self._recording)
        return ys

    def _solve_with_integrals(self, field: Any, solver: _Solver, opts: dict, stats: StepStats, y0: Any,
                              grid: torch.Tensor, time_map: TimeMap | None) -> torch.Tensor:
        """An adjoint solve with the integral regularizers' integrands as extra state components."""
        if not torch.is_tensor(y0):
            raise ValueError("ODEBlock: integral regularizers under gradient='adjoint' need a tensor state, got a "
                             "tuple; use gradient='checkpoint' or 'backprop' for tuple states")
        regs = [self.regularizers[i] for i in self._integrated]
        # A regularizer that requires "field" evaluates the field again in its integrand: it is given the
        # field as the solver evaluates it (time-mapped under per-sample end times).
        augmented = IntegralField(field, [reg.regularizer.integrand(y0, field) if "field" in reg.requires
                                          else reg.regularizer.integrand(y0) for reg in regs],
                                  input_grad=any("input_grad" in reg.requires for reg in regs),
                                  labels=[reg.label for reg in regs])
        opts = {**opts, "norm": state_norm(opts.get("norm") or _torchdiffeq.default_norm(False))}
        ys, _ = _observed_solve(augmented, initial_state(y0, len(regs)), grid, solver.name, opts, solver.plan,
                                solver.rtol, solver.atol, "adjoint", False, {}, stats=stats,
                                direction=self._direction_of(grid) if time_map is None else None)
        for index, integral in zip(self._integrated, ys[1:]):
            value = integral[-1].mean()
            stats.integrals[index] = value if index not in stats.integrals else stats.integrals[index] + value
        return ys[0]

    @property
    def adjoint(self) -> bool:
        """Whether the block solves with ``odeint_adjoint`` (``gradient == "adjoint"``)."""
        return self.gradient == "adjoint"

    def _direction_of(self, t: torch.Tensor) -> float:
        """-1.0 for decreasing times, 1.0 otherwise, kept for the last grid read."""
        grid, direction = self.__dict__["_direction"]
        if grid is not t:
            direction = -1.0 if bool(t[-1] < t[0]) else 1.0
            self.__dict__["_direction"] = (t, direction)
        return direction

    def extra_repr(self) -> str:
        """The method, tolerances, gradient mode and weighted regularizers, as ``repr(block)`` shows them."""
        regs = ", ".join(f"{r.name}={r.weight!r}" for r in self.regularizers)
        return f"method={self.method_name!r}, rtol={self.rtol:g}, atol={self.atol:g}, gradient={self.gradient!r}" + (
            f", regularizers=({regs})" if regs else ""
        )


#: Resolved solvers a block keeps (its base, switching members, recent smoothing draws).
_SOLVER_CACHE_SIZE = 16


@dataclass(frozen=True)
class _Solver:
    """A resolved solver of a block: torchdiffeq method name, options, statistics plan, stage keeping."""

    name: str
    options: dict
    plan: SolverPlan
    keep_stages: bool
    params: dict
    rtol: Any
    atol: Any
    resolved: Solver


class TimeMappedField(torch.nn.Module):
    """dz/ds = span * field(start + s * span, z): one sample's interval rescaled to s in [0, 1]."""

    def __init__(self, field: Callable[..., Any], time_map: TimeMap) -> None:
        super().__init__()
        self.field = field  # a submodule, so odeint_adjoint finds its parameters
        self.time_map = time_map

    def forward(self, s: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.time_map.span * self.field(self.time_map.time(s), z)


__all__ = ["MethodLike", "ODEBlock", "UnknownPluginNameError", "merge_params", "odeint", "parse_method_spec",
           "resolve_method", "resolve_solver", "torchdiffeq_method_names"]
