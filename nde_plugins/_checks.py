"""Argument checks shared by every entry point (``odeint``, ``ODEBlock``, ``SDEBlock``, regularizers).

Each check raises ``ValueError`` (or ``TypeError`` for a wrong type) with a message that names the
argument, the rule it broke and, where there is one, the fix. They run once per construction or per
call, never per step.

Why we are stricter than torchdiffeq and torchsde: a NaN step size makes torchsde loop forever, a
negative tolerance makes torchdiffeq return garbage, a non-monotone grid trips a bare
``AssertionError``. Refusing these up front is cheap, and the user learns what to change.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from .tableaux._tableau import NotANumberError, RequiresGradError, real_number


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool) or (torch.is_tensor(value) and value.dtype == torch.bool)


def as_float(name: str, value: Any) -> float:
    """``value`` as a Python float; bools, strings, tensors with several entries or with a graph are refused."""
    try:
        return real_number(value)
    except RequiresGradError:
        raise TypeError(f"{name} is a tensor that requires grad, but it is used as a plain number and no "
                        "gradient would reach it; pass a float (value.item()) or a detached tensor") from None
    except NotANumberError as exc:
        raise TypeError(f"{name} must be a number, got {exc}") from None


def positive_float(name: str, value: Any, fix: str = "") -> float:
    """A finite number > 0."""
    out = as_float(name, value)
    if not math.isfinite(out) or out <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}" + (f"; {fix}" if fix else ""))
    return out


def nonnegative_float(name: str, value: Any) -> float:
    """A finite number >= 0."""
    out = as_float(name, value)
    if not math.isfinite(out) or out < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return out


def positive_int(name: str, value: Any, what: str = "") -> int:
    """An integer >= 1 (``2.0`` is accepted, ``2.5`` and ``True`` are not)."""
    whole = isinstance(value, numbers.Real) and math.isfinite(float(value)) and float(value) == int(value)
    if _is_bool(value) or not whole:
        raise TypeError(f"{name} must be a whole number" + (f" ({what})" if what else "") + f", got {value!r}")
    out = int(value)
    if out < 1:
        raise ValueError(f"{name} must be >= 1" + (f" ({what})" if what else "") + f", got {value!r}")
    return out


def check_tolerances(rtol: Any, atol: Any) -> None:
    """rtol and atol: finite and >= 0 (scalars or tensors, checked elementwise), not both zero."""
    zero = []
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if _is_bool(tol) or isinstance(tol, str):
            raise TypeError(f"{name} must be a number or a tensor of numbers, got {tol!r}")
        values = torch.as_tensor(tol, dtype=torch.float64) if not torch.is_tensor(tol) else tol.detach().double()
        if not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
            raise ValueError(
                f"{name} must be finite and >= 0, got {tol!r}; a negative or NaN tolerance makes the error "
                "control meaningless"
            )
        zero.append(bool((values == 0).all()))
    if all(zero):
        raise ValueError("rtol and atol are both 0, so no step could ever be accepted; give a positive tolerance")


def check_times(t: Any, *, increasing_only: bool = False, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``t`` as a 1-D floating tensor of >= 2 finite, strictly monotone times (increasing if asked)."""
    if not torch.is_tensor(t):
        try:
            t = torch.as_tensor(t, dtype=dtype or torch.get_default_dtype())
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"t must be a sequence of numbers or a 1-D tensor, got {t!r}") from None
    if t.dim() != 1 or len(t) < 2:
        raise ValueError(f"t must be 1-D with at least two times (t0, t1), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"t must hold floating-point times, got dtype {t.dtype}; use e.g. t.double()")
    if not bool(torch.isfinite(t.detach()).all()):
        raise ValueError(f"t must hold finite times, got {t.tolist()}")
    diff = t.detach()[1:] - t.detach()[:-1]
    increasing, decreasing = bool((diff > 0).all()), bool((diff < 0).all())
    if increasing_only and not increasing:
        raise ValueError(f"t must be strictly increasing, got {t.tolist()}")
    if not (increasing or decreasing):
        raise ValueError(f"t must be strictly increasing or strictly decreasing, got {t.tolist()}")
    return t


def check_step(name: str, step: Any, t: torch.Tensor) -> float:
    """A fixed step: finite, > 0 and no longer than the whole interval |t[-1] - t[0]|."""
    out = positive_float(name, step)
    span = abs(float(t[-1]) - float(t[0]))
    if out > span * (1 + 1e-12):
        raise ValueError(
            f"{name} = {out:g} is longer than the whole integration interval |t1 - t0| = {span:g}; "
            f"give {name} <= {span:g}"
        )
    return out


def check_state(y0: Any, where: str) -> None:
    """The initial state: floating-point tensor(s) (an integer state would be stepped in integers)."""
    parts = (y0,) if torch.is_tensor(y0) else y0
    if not isinstance(parts, tuple) or not all(torch.is_tensor(p) for p in parts):
        raise TypeError(f"{where}: the initial state must be a tensor or a tuple of tensors, got {type(y0).__name__}")
    for part in parts:
        if not (part.is_floating_point() or part.is_complex()):
            raise TypeError(
                f"{where}: the initial state has dtype {part.dtype}; ODE states must be floating point "
                "(an integer state is stepped in integer arithmetic): pass y0.float() or y0.double()"
            )


HALF_DTYPES = (torch.float16, torch.bfloat16)


def check_adaptive_dtype(y0: Any, method: str) -> None:
    """Adaptive step control cannot work in half precision: the state stops moving."""
    parts = (y0,) if torch.is_tensor(y0) else tuple(y0)
    for part in parts:
        if part.dtype in HALF_DTYPES:
            raise TypeError(
                f"method {method!r} controls its step adaptively, which stalls in {part.dtype} (the update is "
                "lost to rounding and the state never moves); solve in float32 (y0.float()) and cast the "
                "result back, or use a fixed grid (options={'step_size': ...})"
            )


def check_field_output(k: Any, y: Any, where: str) -> None:
    """The vector field's value must have the state's shape (broadcasting would hide a bug)."""
    ks = (k,) if torch.is_tensor(k) else k
    ys = (y,) if torch.is_tensor(y) else y
    if not isinstance(ks, tuple) or len(ks) != len(ys):
        raise ValueError(f"{where}: the vector field returned {type(k).__name__} for a state of {len(ys)} part(s)")
    for i, (ki, yi) in enumerate(zip(ks, ys)):
        if not torch.is_tensor(ki) or ki.shape != yi.shape:
            shape = tuple(ki.shape) if torch.is_tensor(ki) else type(ki).__name__
            part = f" (part {i})" if len(ys) > 1 else ""
            raise ValueError(
                f"{where}: the vector field returned shape {shape}{part} for a state of shape {tuple(yi.shape)}; "
                "dy/dt must have exactly the state's shape (a broadcastable shape would be integrated wrongly)"
            )


def generator_from(seed: Any, generator: Any) -> torch.Generator | None:
    """The generator a block draws from: ``generator``, a new one seeded with ``seed``, or None (global)."""
    if seed is not None and generator is not None:
        raise ValueError("give seed= or generator=, not both: the generator would ignore the seed")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    if seed is None:
        return None
    if _is_bool(seed) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return torch.Generator().manual_seed(int(seed))

