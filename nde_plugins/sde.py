"""``SDEBlock``: a Neural SDE layer, drift + diffusion plugin, solved by ``torchsde.sdeint``.

Only torchsde's public API is used (``sdeint``, ``sdeint_adjoint``, ``BrownianInterval``). The SDE
object handed to torchsde is ours, so the solve is observed through it: every drift and diffusion
evaluation passes through ``_BlockSDE``.

Step statistics (Euler-Maruyama, the scheme of the Neural SDE paper): torchsde's Euler makes one
``f_and_g_prod(t, y, dW)`` call per step, at the step's start, so the calls *are* the steps.

- fixed ``dt``: steps are consecutive calls. E_j is the drift's trapezoid defect
  rms((h_j / 2) (f_{j+1} - f_j) / (atol + rtol max(|y_j|, |y_{j+1}|))): the local error of the
  Euler drift update against the trapezoid rule, free because f_{j+1} is the next step's
  evaluation. The last step has none (no evaluation follows it).
- ``adaptive=True``: torchsde compares one full step with two half steps, three calls per attempt,
  and computes the error without a graph. E_j is rebuilt from the recorded calls with torchsde's
  formula, rms((y_full - y_half) / max(rtol max(|y_full|, |y_half|) + atol, 1e-7)), now with its
  graph; a step was accepted when the next attempt starts at its end.
- S_j (both modes) is a Lipschitz ratio of successive drift evaluations,
  ||f_{j+1} - f_j|| / ||y_{j+1} - y_j||, an estimate of the drift Jacobian's scale along the path
  (the SDE analogue of Shampine's estimate: a difference quotient of f between two nearby states).

Other torchsde methods are solved and counted (drift and diffusion NFE), without per-step values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torchsde
from torch.nn.modules import module as _module_impl  # the global hook tables (see _has_hooks)

from ._block import BlockCore, SchedulesView, compile_boundary
from ._checks import (
    check_step,
    check_times,
    check_tolerances,
    positive_float,
    positive_int,
)
from ._plugin_values import plugin_from
from ._regularization import check_supported
from .contract import BaseSolver, ContractError, Member, check_diffusion_output
from .gradients import resolve_gradient
from .policies import TimeMap
from .stats import SolverPlan, Stage, StepRecord, StepStats, rms

# torchsde methods for Ito SDEs with diagonal noise (what SDEBlock builds), and whether
# sdeint_adjoint accepts them. The others in torchsde solve Stratonovich SDEs.
ITO_DIAGONAL_METHODS = {"euler": True, "milstein": True, "srk": False}
STRATONOVICH_METHODS = ("midpoint", "heun", "log_ode", "euler_heun", "reversible_heun", "adjoint_reversible_heun")
STEP_STATISTICS_METHODS = ("euler",)


def _check_method(method: str, adjoint: bool) -> None:
    if method in STRATONOVICH_METHODS:
        raise ValueError(
            f"torchsde method {method!r} solves Stratonovich SDEs; SDEBlock builds Ito SDEs with diagonal noise: "
            f"use one of {sorted(ITO_DIAGONAL_METHODS)}"
        )
    if method not in ITO_DIAGONAL_METHODS:
        raise ValueError(f"unknown torchsde method {method!r}; for Ito diagonal noise use one of "
                         f"{sorted(ITO_DIAGONAL_METHODS)}")
    if adjoint and not ITO_DIAGONAL_METHODS[method]:
        usable = sorted(m for m, ok in ITO_DIAGONAL_METHODS.items() if ok)
        raise ValueError(f"torchsde method {method!r} cannot be used with gradient='adjoint' (adjoint=True); use one "
                         f"of {usable}, or gradient='backprop'")


class _SDERecorder:
    """Collects the drift/diffusion evaluations of one solve and turns them into ``StepStats``."""

    def __init__(self, plan: SolverPlan, t1: float, rtol: float, atol: float, adaptive: bool, keep: bool,
                 stats: StepStats | None = None) -> None:
        # ``stats`` given: this solve is one part of a forward call and adds to its record.
        self.stats = stats if stats is not None else StepStats(plan, rtol=rtol, atol=atol)
        self.t1, self.adaptive, self.keep = t1, adaptive, keep
        self.calls: list[tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.backward = False

    def count(self, drift: int, diffusion: int) -> None:
        if self.backward:
            self.stats.nfe_backward += drift
        else:
            self.stats.nfe_forward += drift
            self.stats.nfe_diffusion += diffusion

    def record(self, t: torch.Tensor, y: torch.Tensor, f: torch.Tensor, g_prod: torch.Tensor) -> None:
        if not self.backward and self.keep:
            self.calls.append((float(t), y, f, g_prod))

    def finish(self) -> StepStats:
        self.backward = True
        if self.keep and self.stats.plan.method in STEP_STATISTICS_METHODS:
            calls = self.calls[1:]  # the first call is torchsde's contract probe at (t0, y0)
            fill = self._estimates(calls)

            def build() -> None:
                # Records and estimates are built when the statistics are first read: a training
                # loop that never reads them pays only for keeping the calls.
                steps = self._adaptive_steps(calls) if self.adaptive else self._fixed_steps(calls)
                self.stats._steps.extend(steps)
                fill(steps)

            self.stats._pending.append(build)
        self.calls = []
        return self.stats

    def _fixed_steps(self, calls) -> list[StepRecord]:
        steps = []
        for i, (t0, y0, f0, _) in enumerate(calls):
            t_next = calls[i + 1][0] if i + 1 < len(calls) else self.t1
            steps.append(StepRecord(t0, t_next - t0, True, stages=[Stage(torch.tensor(t0), y0, f0)]))
        return steps

    def _adaptive_steps(self, calls) -> list[StepRecord]:
        steps = []
        attempts = self._attempts(calls)
        for n, ((t0, y0, f_full, _), _, (tm, _, _, _)) in enumerate(attempts):
            t1 = 2 * tm - t0
            # Accepted when the next attempt starts at this one's end; the last attempt always was.
            accepted = n + 1 == len(attempts) or abs(attempts[n + 1][0][0] - t1) < abs(attempts[n + 1][0][0] - t0)
            steps.append(StepRecord(t0, t1 - t0, accepted, stages=[Stage(torch.tensor(t0), y0, f_full)]))
        return steps

    @staticmethod
    def _attempts(calls):
        return [calls[i:i + 3] for i in range(0, len(calls) - len(calls) % 3, 3)]

    def _estimates(self, calls) -> Callable[[list[StepRecord]], None]:
        """A closure that fills in E_j and S_j (tensor work, done only when someone reads them)."""
        rtol, atol, adaptive = self.stats.rtol, self.stats.atol, self.adaptive

        def scale(a, b):
            return atol + rtol * torch.maximum(a.abs(), b.abs())

        def fill(steps: list[StepRecord]) -> None:
            if adaptive:
                for step, ((t0, y0, f_full, g_full), _, (tm, ym, f_half, g_half)) in zip(steps, self._attempts(calls)):
                    t1 = t0 + step.h
                    y_full = y0 + f_full * (t1 - t0) + g_full
                    y_half = ym + f_half * (t1 - tm) + g_half
                    tol = (rtol * torch.maximum(y_full.abs(), y_half.abs()) + atol).clamp_min(1e-7)
                    step.error_ratio = rms((y_full - y_half) / tol).clamp_min(1e-7)
            else:
                for step, (_, y0, f0, _), (_, y1, f1, _) in zip(steps, calls, calls[1:]):
                    step.error_ratio = rms(0.5 * step.h * (f1 - f0) / scale(y0, y1))
            accepted = [s for s in steps if s.accepted]
            for step, following in zip(accepted, accepted[1:]):
                y0, f0 = step.stages[0].y, step.stages[0].k
                y1, f1 = following.stages[0].y, following.stages[0].k
                den = rms(y1 - y0)
                step.stiffness = torch.where(den > 0, rms(f1 - f0) / den.clamp_min(torch.finfo(den.dtype).tiny),
                                             torch.zeros_like(den))

        return fill


def _has_hooks(module: torch.nn.Module) -> bool:
    """Whether calling ``module`` would run a hook (its own or a global one) besides ``forward``."""
    own = (module._forward_hooks, module._forward_pre_hooks, module._backward_hooks,
           getattr(module, "_backward_pre_hooks", None))
    shared = (_module_impl._global_forward_hooks, _module_impl._global_forward_pre_hooks,
              _module_impl._global_backward_hooks, getattr(_module_impl, "_global_backward_pre_hooks", None))
    return any(bool(hooks) for hooks in (*own, *shared)) or not hasattr(module, "forward")


def _sde_class(method: str, adjoint: bool) -> type:
    return _GeneralSDE if adjoint or method != "euler" else _EulerSDE


class _BlockSDE(torch.nn.Module):
    """The SDE object torchsde integrates: Ito, diagonal noise, drift and diffusion from the block."""

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, drift: Callable, diffusion: torch.nn.Module, label: str = "") -> None:
        super().__init__()
        self.label = label or f"diffusion {type(diffusion).__name__}"  # names the plugin in contract errors
        self.drift = drift
        self.diffusion = diffusion
        # Plain references too: called every stage, and nn.Module's __getattr__ for submodules is slow.
        object.__setattr__(self, "_drift", drift)
        object.__setattr__(self, "_diffusion", diffusion)
        self.noise_on = True
        self.recorder: _SDERecorder | None = None
        self.time_map: TimeMap | None = None  # set for a per-sample time-rescaled solve
        self._sqrt_span: torch.Tensor | None = None
        self._g_checked = False  # the diffusion's output shape, checked at the first call of a solve
        object.__setattr__(self, "_call_diffusion", diffusion)  # set per solve by use_time_map; not a submodule

    def __getstate__(self) -> dict[str, Any]:
        # The recorder of the last solve holds its statistics and graph: a copy or a pickle drops it.
        return {**self.__dict__, "recorder": None}

    def use_time_map(self, time_map: TimeMap | None) -> None:
        """Solve in s with real time start + s * span: the drift scaled by span, the noise by sqrt(span).

        (dW_t = sqrt(span) dW_s for t = start + s * span.)
        """
        # Plain attributes written straight into __dict__: nn.Module.__setattr__ costs microseconds,
        # and these change on every solve.
        diffusion = self._diffusion
        self.__dict__.update(time_map=time_map, _sqrt_span=None if time_map is None else time_map.span.sqrt(),
                             _g_checked=False,
                             # Once per solve: the diffusion's forward directly when no hook is set on
                             # it (nn.Module's call machinery costs microseconds on every step).
                             _call_diffusion=diffusion if _has_hooks(diffusion) else diffusion.forward)

    def _count(self, drift: int, diffusion: int) -> None:
        if self.recorder is not None:
            self.recorder.count(drift, diffusion)

    def _g_from(self, t, y, f):
        diffusion = self._diffusion
        if not self.noise_on or diffusion.is_zero:
            return torch.zeros_like(y)
        g = self._call_diffusion(t, y, f if diffusion.uses_drift else None)
        self._count(0, 1)
        if not self._g_checked:  # once per solve: the state's shape does not change within one
            check_diffusion_output(self.label, g, y)
            self.__dict__["_g_checked"] = True
        return g

    def _f_and_g(self, t, y):
        time_map = self.time_map
        if time_map is not None:
            t = time_map.time(t)
        f = self._drift(t, y)
        self._count(1, 0)
        g = self._g_from(t, y, f)
        if time_map is not None:
            return time_map.span * f, self._sqrt_span * g
        return f, g


class _EulerSDE(_BlockSDE):
    """Only ``f_and_g_prod``: what Euler-Maruyama calls, one drift evaluation per step shared with a
    drift-based diffusion, and one contract probe in torchsde's ``check_contract`` instead of several."""

    def f_and_g_prod(self, t, y, v):
        f, g = self._f_and_g(t, y)
        g_prod = g * v
        if self.recorder is not None:
            self.recorder.record(t, y, f, g_prod)
        return f, g_prod


class _GeneralSDE(_BlockSDE):
    """``f``, ``g`` and ``f_and_g``: what Milstein, SRK and the adjoint SDE need."""

    def f(self, t, y):
        self._count(1, 0)
        if self.time_map is None:
            return self._drift(t, y)
        return self.time_map.span * self._drift(self.time_map.time(t), y)

    def g(self, t, y):
        if self._diffusion.uses_drift and self.noise_on and not self._diffusion.is_zero:
            return self._f_and_g(t, y)[1]
        if self.time_map is None:
            return self._g_from(t, y, None)
        return self._sqrt_span * self._g_from(self.time_map.time(t), y, None)

    def f_and_g(self, t, y):
        return self._f_and_g(t, y)


class SDEBlock(BlockCore):
    """A continuous-depth layer dh = f(h, t) dt + G(h, t) dB, solved with torchsde.

    Args:
        drift: the drift ``f(t, h)`` (usually an ``nn.Module``), states shaped (batch, channels).
        diffusion: a registered diffusion name (``none``, ``additive``, ``multiplicative``,
            ``dropout``, ``learned`` or a plugin's) or a ``Diffusion`` module.
        diffusion_options: options of the diffusion factory (``{"p": 0.9}``, ``{"sigma": 0.1}``).
        t: ``(t0, t1)`` or a 1-D tensor of output times.
        method: a torchsde method for Ito diagonal noise: ``euler`` (Euler-Maruyama), ``milstein``,
            ``srk``.
        dt: the step (the initial one with ``adaptive=True``).
        adaptive: let torchsde adapt the step.
        rtol: torchsde's relative tolerance for adaptive stepping.
        atol: torchsde's absolute tolerance for adaptive stepping.
        dt_min: the smallest step adaptive stepping may take.
        adjoint: the older spelling of ``gradient="adjoint"``.
        test_time_noise: in eval mode, average ``samples`` noisy solves (seed 000's TTN) instead of
            solving with the noise off. The samples are solved as one batch of up to
            ``samples_per_solve`` copies of the input at a time, which bounds the memory.
        samples: how many noisy solves test-time noise averages.
        samples_per_solve: how many of those one batched solve holds.
        seed: seeds a generator of the block's own, which makes the Brownian paths reproducible:
            each call draws the path's entropy from it (giving ``generator`` too is an error).
        generator: a ``torch.Generator`` for the paths and draws (default: torch's global one).
        end_time: an end-time sampler, as for ``ODEBlock`` (training only; a per-sample draw
            rescales time per sample: drift by T_i - t0, noise by its square root).
        end_time_options: the sampler's options.
        schedule: a solver schedule, as for ``ODEBlock``; its members are torchsde methods
            (``"switching"`` or ``"output_ensemble"`` over ``["euler", "milstein"]``).
        schedule_options: the schedule's options.
        regularizers: as for ``ODEBlock``; step statistics need ``method="euler"``.
        return_all: return the states at all times of ``t``.
        record_stats: set False to solve without observation (``stats`` is then None).
        gradient: ``"backprop"`` (default) or ``"adjoint"`` (``torchsde.sdeint_adjoint``; regularizers
            that read the solve are refused). ``"checkpoint"`` is ``ODEBlock``'s only: torchsde's
            solvers offer no step to replay.

    ``forward(x)`` returns h(t1) (training: one noisy solve; eval: the noise-off solve or the TTN
    mean; ``return_samples=True`` gives the TTN samples stacked first). ``.stats`` and
    ``.regularization()`` behave as on ``ODEBlock`` (``stats.nfe_forward`` counts drift
    evaluations, ``stats.nfe_diffusion`` diffusion evaluations). Per-step records hold tensors, so
    they are kept only when something can read them: in training or with gradients enabled. In
    eval under ``torch.no_grad()``, and for a test-time-noise forward split over several solves,
    ``stats`` holds the evaluation counts only.
    """

    def __init__(
        self,
        drift: Callable[..., Any],
        diffusion: str | torch.nn.Module = "none",
        diffusion_options: Mapping[str, Any] | None = None,
        t: Any = (0.0, 1.0),
        method: str = "euler",
        dt: float = 0.1,
        adaptive: bool = False,
        rtol: float = 1e-5,
        atol: float = 1e-4,
        dt_min: float = 1e-5,
        adjoint: bool = False,
        test_time_noise: bool = False,
        samples: int = 1,
        samples_per_solve: int = 32,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        end_time: str | None = None,
        end_time_options: Mapping[str, Any] | None = None,
        schedule: str | None = None,
        schedule_options: Mapping[str, Any] | None = None,
        regularizers: Mapping[str, Any] | None = None,
        return_all: bool = False,
        record_stats: bool = True,
        gradient: str | None = None,
    ) -> None:
        super().__init__()
        self.gradient = resolve_gradient("SDEBlock", gradient, adjoint, allowed=("backprop", "adjoint"))
        adjoint = self.gradient == "adjoint"
        _check_method(method, adjoint)
        self._diffusion_label, diffusion = plugin_from(
            "diffusion", diffusion, diffusion_options, "SDEBlock", "diffusion", "dropout:p=0.9",
            lambda value: isinstance(value, torch.nn.Module) and hasattr(value, "uses_drift"), drift)
        if not isinstance(diffusion, torch.nn.Module) or not hasattr(diffusion, "uses_drift"):
            raise ContractError(f"{self._diffusion_label}: the factory returned {type(diffusion).__name__}; a "
                                "diffusion factory returns a nde_plugins.Diffusion module")
        samples = positive_int("samples", samples, "the number of noisy solves averaged at test time")
        self.samples_per_solve = positive_int("samples_per_solve", samples_per_solve,
                                              "how many test-time-noise samples one batched solve holds")
        if test_time_noise and diffusion.is_zero:
            raise ValueError("test_time_noise averages noisy solves, but the diffusion is zero; drop one of them")
        t = check_times(torch.as_tensor(t, dtype=torch.get_default_dtype()), increasing_only=True)
        # torchsde loops forever on a NaN step and silently takes one step for a dt beyond the interval.
        dt = check_step("dt", dt, t)
        check_tolerances(rtol, atol)
        dt_min = positive_float("dt_min", dt_min, "the smallest step adaptive stepping may take")
        self.register_buffer("t", t, persistent=False)
        # The grid's ends as floats, with the tensor they were read from: reading a tensor element
        # costs a few microseconds a call; a new ``t`` (assigned, or moved to another device or
        # dtype) is read again.
        self._span = (t, (float(t[0]), float(t[-1])))
        self._plans: dict[str, SolverPlan] = {}
        self.sde = _sde_class(method, adjoint)(drift, diffusion, self._diffusion_label)
        self._noise_on = True  # the noise switch of the call being solved (off in eval without test-time noise)
        self.method, self.dt, self.adaptive = method, dt, bool(adaptive)
        self.rtol, self.atol, self.dt_min, self.adjoint = rtol, atol, dt_min, adjoint
        self.test_time_noise, self.samples, self.return_all = test_time_noise, samples, return_all
        self._setup_regularizers(regularizers, record_stats)
        self.plan = self._plan(method)
        check_supported(self.regularizers, self.plan, self.gradient, lambda: STEP_STATISTICS_METHODS, integrals=False)
        # One generator for the Brownian paths, the end-time draws and the schedule's draws. A
        # schedule's members are torchsde methods (SDEs have no parameterized families here).
        base = BaseSolver(method, None, {}, self._check_member, view=SchedulesView(self))
        self._setup_policy("SDEBlock", t, base, end_time, end_time_options, seed, generator, schedule,
                           schedule_options)

    def _plan(self, method: str) -> SolverPlan:
        plan = self._plans.get(method)
        if plan is not None:
            return plan
        if method not in STEP_STATISTICS_METHODS or self.adjoint:
            # Solved and counted, no step records: "other" makes regularizers that read steps refuse.
            plan = SolverPlan(method, "other", kind="sde", error_estimate=False, stiffness_estimate=False)
        else:
            plan = SolverPlan(method, "adaptive" if self.adaptive else "fixed", c=(0.0,), b=(1.0,), kind="sde",
                              error_estimate=True, stiffness_estimate=True)
        self._plans[method] = plan  # a few torchsde methods at most
        return plan

    def _check_member(self, member: Member) -> None:
        if member.params:
            raise ValueError(f"torchsde's method {member.method!r} takes no parameters; got {dict(member.params)}")
        _check_method(member.method, self.adjoint)
        check_supported(self.regularizers, self._plan(member.method), self.gradient, lambda: STEP_STATISTICS_METHODS,
                        integrals=False)

    def _sde_for(self, method: str) -> _BlockSDE:
        """The SDE object for ``method``: the block's own, or one of the other kind sharing its drift and diffusion."""
        cls = _sde_class(method, self.adjoint)
        if isinstance(self.sde, cls):
            return self.sde
        other = self.__dict__.get("_other_sde")
        if other is None:  # not a submodule: its drift and diffusion are already the block's
            other = cls(self.sde.drift, self.sde.diffusion, self.sde.label)
            object.__setattr__(self, "_other_sde", other)
        return other

    @property
    def drift(self):
        """The drift ``f(t, h)`` the block was built with."""
        return self.sde.drift

    @property
    def diffusion(self):
        """The ``Diffusion`` module G: the one given, or the one built from the registered name."""
        return self.sde.diffusion

    def _entropy(self) -> int:
        return int(torch.randint(0, 2**62, (1,), generator=self.policy.generator).item())

    def _grid_ends(self, t: torch.Tensor) -> tuple[float, float]:
        """``(float(t[0]), float(t[-1]))``, kept for the last grid read (the block's own, as a rule)."""
        grid, ends = self.__dict__["_span"]
        if grid is not t:
            ends = (float(t[0]), float(t[-1]))
            self.__dict__["_span"] = (t, ends)
        return ends

    def _solve(self, x: torch.Tensor, noise_on: bool, t: torch.Tensor, time_map: TimeMap | None,
               stats: StepStats | None, method: str | None = None) -> torch.Tensor:
        """One torchsde solve over grid ``t`` (in s when ``time_map`` is given), recorded into ``stats``."""
        method = method or self.method
        sde = self._sde_for(method)
        dt, dt_min = self.dt, self.dt_min
        if time_map is not None:
            dt, dt_min = time_map.step(dt), time_map.step(dt_min)
        t0, t1 = self._grid_ends(t)
        bm = torchsde.BrownianInterval(
            t0=t0, t1=t1, size=x.shape, dtype=x.dtype, device=x.device, entropy=self._entropy(),
            levy_area_approximation="space-time" if method == "srk" else "none",
        )
        recorder = None
        if self.record_stats:
            # Step records pin every step's state; in eval under no_grad nothing can differentiate
            # them and regularizers are off, so only the counts are kept.
            keep = self.training or torch.is_grad_enabled()
            recorder = _SDERecorder(self._plan(method), t1, self.rtol, self.atol, self.adaptive, keep=keep,
                                    stats=stats)
        sde.__dict__.update(recorder=recorder, noise_on=noise_on)  # plain attributes (see use_time_map)
        sde.use_time_map(time_map)
        kwargs = dict(bm=bm, method=method, dt=dt, adaptive=self.adaptive, rtol=self.rtol,
                      atol=self.atol, dt_min=dt_min)
        try:
            if self.adjoint:
                ys = torchsde.sdeint_adjoint(sde, x, t, adjoint_method=method, **kwargs)
            else:
                ys = torchsde.sdeint(sde, x, t, **kwargs)
        except AssertionError as exc:
            # torchsde's adaptive stepping stops on a NaN error estimate with a bare assertion.
            if "nan" not in str(exc).lower():
                raise
            ys = None
        finally:
            sde.__dict__["noise_on"] = True
            if time_map is not None:
                sde.use_time_map(None)
        if ys is None or not bool(torch.isfinite(ys[-1]).all()):
            raise FloatingPointError(
                f"the SDE state became non-finite {self._where_diverged(t, ys, recorder)} (method {method!r}): "
                "the drift or the noise diverged; try a smaller dt, a smaller diffusion or a better-scaled drift"
            )
        if recorder is not None:
            recorder.finish()
        return ys

    @staticmethod
    def _where_diverged(t: torch.Tensor, ys: torch.Tensor | None, recorder: _SDERecorder | None) -> str:
        """The first step (from the recorded calls) or output interval where the state is non-finite."""
        if recorder is not None and recorder.calls:
            for time, y, _, _ in recorder.calls:
                if not bool(torch.isfinite(y).all()):
                    return f"at t = {time:.6g}"
            # The overflow happened inside the last step (adaptive stepping stops on its error estimate).
            return f"in the step from t = {recorder.calls[-1][0]:.6g}"
        if ys is None:
            return f"between t = {float(t[0]):.6g} and t = {float(t[-1]):.6g}"
        bad = int(torch.isfinite(ys.flatten(1)).all(1).logical_not().nonzero()[0])
        return f"between t = {float(t[bad - 1]):.6g} and t = {float(t[bad]):.6g}"

    @compile_boundary
    def forward(self, x: torch.Tensor, return_samples: bool = False) -> torch.Tensor:
        """Solve from ``h(t0) = x`` and record the call in ``stats``, ``last_t`` and ``last_method``.

        In training: one noisy solve (to drawn ends with an end-time sampler). In eval: the solve
        with the noise off, or with ``test_time_noise`` the mean of ``samples`` noisy solves.

        Args:
            x: the initial state, a floating-point tensor shaped (batch, channels).
            return_samples: return the solves themselves, stacked along a new first dimension
                (``samples`` of them under test-time noise, otherwise one), instead of their mean.

        Returns:
            ``h(t1)``, shaped like ``x``; with ``return_all``, the states at every time of ``t``
            stacked first, (len(t), batch, channels).
        """
        if x.dim() != 2:
            raise ValueError(f"SDEBlock needs inputs shaped (batch, channels) as torchsde does; got {tuple(x.shape)} "
                             "(flatten other dimensions first, e.g. x.flatten(1))")
        if not x.is_floating_point():
            raise TypeError(f"SDEBlock input has dtype {x.dtype}; states must be floating point (pass x.float())")
        t = self.t.to(device=x.device, dtype=x.dtype)
        if self._vjp_inputs and not x.requires_grad and torch.is_grad_enabled():
            # The Jacobian probe differentiates each step's drift w.r.t. its input, the first one being x.
            x = x.detach().requires_grad_(True)
        if self.training or not self.test_time_noise:
            # Training: one noisy solve (to drawn ends with an end-time sampler); eval: noise off.
            self.__dict__["_noise_on"] = self.training
            ys = self._call(x, t, self.drift)
            out = ys if self.return_all else ys[-1]
            return out.unsqueeze(0) if return_samples else out
        # Test-time noise: the samples as batched solves of up to samples_per_solve copies each,
        # all recorded into one StepStats.
        self.__dict__["_noise_on"] = True
        sizes = [min(self.samples_per_solve, self.samples - start) for start in range(0, self.samples,
                                                                                       self.samples_per_solve)]
        chunks = []
        for n, ys in zip(sizes, self._call(x, t, self.drift, repeats=[x.repeat(n, 1) for n in sizes])):
            ys = ys if self.return_all else ys[-1:]
            chunks.append(ys.reshape(ys.shape[0], n, *x.shape).movedim(1, 0))
        per_sample = torch.cat(chunks)
        if not self.return_all:
            per_sample = per_sample[:, 0]
        return per_sample if return_samples else per_sample.mean(0)

    def _new_stats(self) -> StepStats:
        return StepStats(self.plan, rtol=self.rtol, atol=self.atol)

    def _picked(self, member: Member) -> tuple[str, dict]:
        return member.method, {}

    def _solve_member(self, member: Member, stats: StepStats | None, y0: torch.Tensor, grid: torch.Tensor,
                      time_map: TimeMap | None) -> torch.Tensor:
        return self._solve(y0, self.__dict__["_noise_on"], grid, time_map, stats, member.method)
