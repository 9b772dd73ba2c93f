"""Method cases, a textbook Runge-Kutta step and two recording fields for tests/test_conformance.py.

Everything here is plain torch: the fields are what a user would hand to ``torchdiffeq.odeint``,
instrumented to record what the solver does to them (the exact times it evaluates at, the step
callbacks it makes), so the tests can compare a registered tableau with torchdiffeq's built-ins.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

import nde_plugins as nde
from nde_plugins.testing._problems import exp_sin, exp_sin_exact

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
# Problems (the shared ones live in the plugin kit, nde_plugins.testing._problems)


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
