"""Total time derivatives of a solution along its own flow, by nested forward-mode products (TayNODE).

For dz/dt = f(t, z) the derivatives of the solution are functions of (t, z) alone:
z' = f, and d/dt g(t, z(t)) = dg/dt + dg/dz f, which is the Jacobian-vector product of g with the
tangent (1, f(t, z)). Nesting ``torch.func.jvp`` K - 1 times gives d^K z/dt^K; each level carries
its own tangent f(t, z), so the product rule through the tangent is exact. The work grows like
2^(K-1) evaluations of f (Taylor-mode arithmetic would grow linearly; torch has none), which is why
the order is capped at ``MAX_ORDER``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import jvp, vmap

from .stats import batch_size

#: The highest derivative order offered: the cost doubles with every order.
MAX_ORDER = 4

Field = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def total_derivative(field: Field, t: torch.Tensor, z: torch.Tensor, order: int,
                     f: torch.Tensor | None = None) -> torch.Tensor:
    """d^order z / dt^order at (t, z) for dz/dt = field(t, z); ``f`` = field(t, z) if already evaluated.

    The result carries the graph of ``z`` and of the field's parameters (reverse mode runs through
    the forward-mode products), so a loss on it trains the field.
    """
    if order == 1:
        return field(t, z) if f is None else f
    inner = _derivative_function(field, order - 1)
    tangent = field(t, z) if f is None else f
    return jvp(inner, (t, z), (torch.ones_like(t), tangent))[1]


def _derivative_function(field: Field, order: int) -> Field:
    """(t, z) -> d^order z/dt^order, as a function that torch.func can differentiate again."""
    if order == 1:
        return field

    inner = _derivative_function(field, order - 1)

    def derivative(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return jvp(inner, (t, z), (torch.ones_like(t), field(t, z)))[1]

    return derivative


def stage_derivatives(field: Field, t: torch.Tensor, y: torch.Tensor, k: torch.Tensor, order: int) -> torch.Tensor:
    """``total_derivative`` at S stages at once: t (S,), y and k (S, *state) -> (S, *state).

    Vectorized over the stages with ``torch.func.vmap`` (one batched product instead of S small ones:
    2 to 20 times faster on digits-sized fields); a field that vmap cannot run (data-dependent
    Python control flow, ``.item()``) is evaluated stage by stage instead, with the same result.
    """
    try:
        return vmap(lambda ti, yi, ki: total_derivative(field, ti, yi, order, ki))(t, y, k)
    except RuntimeError:  # vmap's refusal of an operation it cannot batch
        return torch.stack([total_derivative(field, t[i], y[i], order, k[i]) for i in range(len(t))])


def squared_norm(x: torch.Tensor) -> torch.Tensor:
    """||x||^2 per sample: shape (batch,)."""
    return x.reshape(batch_size(x), -1).square().sum(1)


class TaylorRate:
    """``rate(t, y, f)`` = ||d^K y/dt^K||^2 per sample, for integrating TayNODE's penalty under the adjoint."""

    def __init__(self, field: Field, order: int) -> None:
        self.field, self.order = field, order

    def __call__(self, t: torch.Tensor, y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return squared_norm(total_derivative(self.field, t, y, self.order, f))


__all__ = ["MAX_ORDER", "TaylorRate", "squared_norm", "stage_derivatives", "total_derivative"]
