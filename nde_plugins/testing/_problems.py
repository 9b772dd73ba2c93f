"""Instrumented problems for the solver-API checks: plain torch fields, as a user hands them to odeint.

Each records what torchdiffeq does to it (evaluation times, step callbacks and their states), so a
check can hold a registered tableau to the rules torchdiffeq's own solvers keep. Everything is float64.
"""

from __future__ import annotations

import math

import torch
from torch import nn

F64 = torch.float64


def exp_sin(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """y' = cos(t) y: time dependent (so the nodes c matter); y(t) = y0 exp(sin t)."""
    return torch.cos(t) * y


def exp_sin_exact(t: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.sin(t))[:, None] * y0


_ROTATION = torch.tensor([[-0.3, 3.0], [-3.0, -0.3]], dtype=F64)


def forced_rotation(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A damped rotation forced by (sin 2t, 0): smooth, every method is asymptotic at 16..128 steps on [0, 1]."""
    return _ROTATION.to(y.dtype) @ y + torch.stack([torch.sin(2 * t), torch.zeros_like(t)]).to(y.dtype)


def forced_rotation_exact(t: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
    """forced_rotation's solution: the linear system in (y, sin 2t, cos 2t) through its matrix exponential."""
    m = torch.zeros(4, 4, dtype=F64)
    m[:2, :2] = _ROTATION
    m[0, 2] = 1.0
    m[2, 3], m[3, 2] = 2.0, -2.0
    z0 = torch.cat([y0.to(F64), torch.tensor([0.0, 1.0], dtype=F64)])
    return torch.stack([(torch.linalg.matrix_exp(m * ti) @ z0)[:2] for ti in t.to(F64)])


class GridLog(nn.Module):
    """A field with ``callback_step`` only (the one callback a fixed-grid solver makes), logging
    ``(kind, t0, dt)`` in call order, the callbacks' states and every evaluation time."""

    def __init__(self, base=exp_sin) -> None:
        super().__init__()
        self.base = base
        self.log: list[tuple[str, float, float]] = []
        self.times: list[float] = []
        self.callback_states: list = []

    def forward(self, t, y):
        self.times.append(t.item())
        return self.base(t, y)

    def _record(self, kind, t0, y0, dt):
        self.log.append((kind, float(t0), float(dt)))
        self.callback_states.append(y0)

    def callback_step(self, t0, y0, dt):
        self._record("step", t0, y0, dt)


class StepLog(GridLog):
    """GridLog with the adaptive solvers' accept and reject callbacks too."""

    def callback_accept_step(self, t0, y0, dt):
        self._record("accept", t0, y0, dt)

    def callback_reject_step(self, t0, y0, dt):
        self._record("reject", t0, y0, dt)

    def of(self, kind: str) -> list[tuple[float, float]]:
        return [(t0, dt) for k, t0, dt in self.log if k == kind]


def callbacks_only(*names: str) -> nn.Module:
    """exp_sin with the given step callbacks defined (doing nothing): for the unused-callback warning."""
    namespace = {"forward": lambda self, t, y: exp_sin(t, y)}
    namespace.update({name: (lambda self, t0, y0, dt: None) for name in names})
    return type("CallbacksOnly", (nn.Module,), namespace)()


class SmallMLP(nn.Module):
    """A time-dependent two-layer tanh field, float64, with a fixed seed."""

    def __init__(self, dim: int = 2, hidden: int = 8, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = nn.Parameter(torch.randn(hidden, dim, generator=g, dtype=F64) / math.sqrt(dim))
        self.b1 = nn.Parameter(0.1 * torch.randn(hidden, generator=g, dtype=F64))
        self.wt = nn.Parameter(torch.randn(hidden, generator=g, dtype=F64))
        self.w2 = nn.Parameter(torch.randn(dim, hidden, generator=g, dtype=F64) / math.sqrt(hidden))

    def forward(self, t, y):
        return torch.tanh(y @ self.w1.T + self.b1 + t * self.wt) @ self.w2.T


class Decay(nn.Module):
    """y' = -k y with a learnable rate: y = exp(-k t), so y = 1/2 at t = ln 2 / k."""

    def __init__(self, k: float = 1.3) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(k, dtype=F64))

    def forward(self, t, y):
        return -self.k * y


class SwitchedRate(StepLog):
    """y' = y for t < 1/2 and y' = -y after: the derivative jumps at t = 1/2; y(1) = y0 exactly."""

    JUMP = 0.5

    def __init__(self) -> None:
        super().__init__(base=lambda t, y: y if t < self.JUMP else -y)

    @classmethod
    def exact(cls, t: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
        return torch.exp(torch.where(t < cls.JUMP, t, 2 * cls.JUMP - t))[:, None] * y0


class TupleField(nn.Module):
    """A coupled linear system on a tuple state (a of shape (2,), b of shape (3,))."""

    def __init__(self) -> None:
        super().__init__()
        self.callback_states: list = []

    def forward(self, t, y):
        a, b = y
        da = torch.stack([a[1], -a[0]]) + 0.1 * torch.cos(t) * b[:2]
        db = -0.5 * b + a.sum() * torch.tensor([1.0, 0.0, -1.0], dtype=b.dtype)
        return da, db

    def callback_step(self, t0, y0, dt):
        self.callback_states.append(y0)


def tuple_field_flat(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """TupleField on the concatenated state, for comparison."""
    da, db = TupleField()(t, (y[:2], y[2:]))
    return torch.cat([da, db])
