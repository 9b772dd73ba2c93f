"""Vector fields and method cases for tests/test_conformance.py.

Everything here is plain torch: the fields are what a user would hand to ``torchdiffeq.odeint``,
instrumented to record what the solver does to them (the exact times it evaluates at, the step
callbacks it makes), so the tests can compare a registered tableau with torchdiffeq's built-ins.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

import nde_plugins as nde

F64 = torch.float64


# ------------------------------------------------------------------------------------------------
# Method cases, built from the plugin registry at collection time.


@dataclasses.dataclass(frozen=True)
class Case:
    """A registered method name plus the family parameters passed to it through ``options``."""

    method: str
    params: tuple[tuple[str, float], ...]
    tableau: nde.Tableau

    @property
    def id(self) -> str:
        if not self.params:
            return self.method
        return self.method + "[" + ",".join(f"{k}={v:.4g}" for k, v in self.params) + "]"

    @property
    def is_pair(self) -> bool:
        return self.tableau.b_hat is not None

    def options(self, **extra) -> dict:
        return {**dict(self.params), **extra}


def _shifted_member(family: nde.TableauFamily) -> tuple[tuple[str, float], ...] | None:
    """A non-default member of ``family`` (defaults nudged into the domain), or None if none is found."""
    for shift in (0.07, -0.07, 0.13, -0.13):
        params = {p: family.defaults[p] + shift for p in family.params}
        try:
            family.member(params)
        except nde.TableauError:
            continue
        return tuple(params.items())
    return None


def registered_cases() -> tuple[list[Case], list[Case]]:
    """(default members of every registered method, one non-default member of every family)."""
    defaults, shifted = [], []
    for reg in nde.get_registry().registrations("tableau"):
        obj = reg.obj
        if isinstance(obj, nde.TableauFamily):
            defaults.append(Case(reg.name, (), obj.member()))
            params = _shifted_member(obj)
            if params is not None:
                shifted.append(Case(reg.name, params, obj.member(dict(params))))
        else:
            defaults.append(Case(reg.name, (), obj))
    return defaults, shifted


# ------------------------------------------------------------------------------------------------
# Problems


def exp_sin(t, y):
    """y' = cos(t) y: time dependent (so the nodes c matter), exact solution y0 * exp(sin t)."""
    return torch.cos(t) * y


def exp_sin_exact(t: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
    return torch.exp(torch.sin(t))[:, None] * y0


# Damped rotation with a time-dependent forcing; smooth, every method is in its asymptotic regime
# at 20..160 steps on [0, 1].
_ROT = torch.tensor([[-0.3, 3.0], [-3.0, -0.3]], dtype=F64)


def forced_rotation(t, y):
    return _ROT.to(y.dtype) @ y + torch.stack([torch.sin(2 * t), torch.zeros_like(t)]).to(y.dtype)


class ExpSin(nn.Module):
    """exp_sin as a module (torchdiffeq copies callbacks from the object it is given)."""

    exact = staticmethod(exp_sin_exact)

    def forward(self, t, y):
        return exp_sin(t, y)


class TimeRecorder(nn.Module):
    """Records the exact time (as a Python float) of every evaluation the user's field sees."""

    def __init__(self, base=exp_sin):
        super().__init__()
        self.base = base
        self.times: list[float] = []

    def forward(self, t, y):
        self.times.append(t.item())
        return self.base(t, y)


class StepLog(nn.Module):
    """A field with all three step callbacks, logging ``(kind, t0, dt)`` in call order."""

    def __init__(self, base=exp_sin):
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

    def callback_accept_step(self, t0, y0, dt):
        self._record("accept", t0, y0, dt)

    def callback_reject_step(self, t0, y0, dt):
        self._record("reject", t0, y0, dt)

    def of(self, kind: str) -> list[tuple[float, float]]:
        return [(t0, dt) for k, t0, dt in self.log if k == kind]


class GridLog(nn.Module):
    """Like StepLog but with ``callback_step`` only: the one callback a fixed-grid solver makes."""

    def __init__(self, base=exp_sin):
        super().__init__()
        self.base = base
        self.log: list[tuple[str, float, float]] = []
        self.callback_states: list = []

    def forward(self, t, y):
        return self.base(t, y)

    def callback_step(self, t0, y0, dt):
        self.log.append(("step", float(t0), float(dt)))
        self.callback_states.append(y0)


class AcceptOnly(nn.Module):
    """Has ``callback_accept_step`` only: a fixed-grid solver never calls it."""

    def forward(self, t, y):
        return exp_sin(t, y)

    def callback_accept_step(self, t0, y0, dt):
        pass


class RejectOnly(nn.Module):
    def forward(self, t, y):
        return exp_sin(t, y)

    def callback_reject_step(self, t0, y0, dt):
        pass


class AcceptAndReject(nn.Module):
    def forward(self, t, y):
        return exp_sin(t, y)

    def callback_accept_step(self, t0, y0, dt):
        pass

    def callback_reject_step(self, t0, y0, dt):
        pass


class StepOnly(nn.Module):
    """Has ``callback_step`` only, which every solver supports: no warning expected."""

    def forward(self, t, y):
        return exp_sin(t, y)

    def callback_step(self, t0, y0, dt):
        pass


class SmallMLP(nn.Module):
    """A time-dependent two-layer tanh field, float64, with a fixed seed."""

    def __init__(self, dim=2, hidden=8, seed=0):
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

    def __init__(self, k=1.3):
        super().__init__()
        self.k = nn.Parameter(torch.tensor(k, dtype=F64))

    def forward(self, t, y):
        return -self.k * y


class SwitchedRate(nn.Module):
    """y' = y for t < 1/2 and y' = -y after: the derivative jumps at t = 1/2; y(1) = y0 exactly."""

    JUMP = 0.5

    @classmethod
    def exact(cls, t: torch.Tensor, y0: torch.Tensor) -> torch.Tensor:
        return torch.exp(torch.where(t < cls.JUMP, t, 2 * cls.JUMP - t))[:, None] * y0

    def __init__(self):
        super().__init__()
        self.log: list[tuple[str, float, float]] = []
        self.times: list[float] = []

    def forward(self, t, y):
        self.times.append(t.item())
        return y if t < self.JUMP else -y

    def callback_step(self, t0, y0, dt):
        self.log.append(("step", float(t0), float(dt)))

    def callback_accept_step(self, t0, y0, dt):
        self.log.append(("accept", float(t0), float(dt)))

    def callback_reject_step(self, t0, y0, dt):
        self.log.append(("reject", float(t0), float(dt)))

    def of(self, kind: str) -> list[tuple[float, float]]:
        return [(t0, dt) for k, t0, dt in self.log if k == kind]


class TupleField(nn.Module):
    """A coupled linear system on a tuple state (a of shape (2,), b of shape (3,))."""

    def __init__(self):
        super().__init__()
        self.callback_states: list = []

    def forward(self, t, y):
        a, b = y
        da = torch.stack([a[1], -a[0]]) + 0.1 * torch.cos(t) * b[:2]
        db = -0.5 * b + a.sum() * torch.tensor([1.0, 0.0, -1.0], dtype=b.dtype)
        return da, db

    def callback_step(self, t0, y0, dt):
        self.callback_states.append(y0)


def tuple_field_flat(t, y):
    """TupleField on the concatenated state, for comparison."""
    da, db = TupleField()(t, (y[:2], y[2:]))
    return torch.cat([da, db])


# ------------------------------------------------------------------------------------------------
# A textbook explicit Runge-Kutta step, independent of nde_plugins and torchdiffeq.


def textbook_rk_solve(tableau: nde.Tableau, f, y0: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """y at every grid point, stepping with k_i = f(t0 + c_i h, y0 + h sum_j a_ij k_j), y1 = y0 + h sum b_i k_i."""
    ys = [y0]
    y = y0
    for t0, t1 in zip(grid[:-1], grid[1:]):
        h = t1 - t0
        k = []
        for ci, row in zip(tableau.c, tableau.a):
            yi = y + h * sum((aij * kj for aij, kj in zip(row, k)), torch.zeros_like(y))
            k.append(f(t0 + ci * h, yi))
        y = y + h * sum((bi * ki for bi, ki in zip(tableau.b, k)), torch.zeros_like(y))
        ys.append(y)
    return torch.stack(ys)
