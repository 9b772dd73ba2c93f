"""Integral regularizers under the continuous adjoint: their integrands solved as extra state components.

A regularizer that is the integral over the solve of a pointwise quantity may say so with
``integrand(y0)``: called once per solve, it returns ``rate(t, y, f)``, the quantity at one
evaluation, one value per sample (shape ``(batch,)``). Under ``gradient="adjoint"`` the block then
solves ``d/dt (z, r_1, .., r_m) = (f(t, z), rate_1(t, z, f), .., rate_m(t, z, f))`` with
``odeint_adjoint`` from ``r_i = 0``, and the regularizer's value is the batch mean of ``r_i`` at the
end (RNODE's way of training with the adjoint). The step-size control reads ``z`` alone, so the
steps, and ``z`` itself, are those of the plain solve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from .stats import batch_size

#: ``rate(t, y, f) -> (batch,)`` tensor: one integrand evaluation.
Rate = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def has_integrand(regularizer: Any) -> bool:
    """Whether ``regularizer`` (a plugin object) can be integrated as an extra state component."""
    return callable(getattr(regularizer, "integrand", None))


class IntegralField(torch.nn.Module):
    """The field of the augmented state ``(z, r_1, .., r_m)``; a Module so the adjoint finds the parameters."""

    def __init__(self, field: Callable[..., Any], rates: Sequence[Rate], input_grad: bool,
                 labels: Sequence[str]) -> None:
        super().__init__()
        self.field = field
        self.rates = list(rates)
        # Rates that differentiate f with respect to z (a Jacobian probe) need z in the graph even in
        # the forward pass, which odeint_adjoint runs without one.
        self.input_grad = input_grad
        self.labels = list(labels)

    def forward(self, t: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        z = state[0]
        if not self.input_grad:
            f = self.field(t, z)
            return (f, *self._rates(t, z, f))
        with torch.enable_grad():
            if not z.requires_grad:  # the forward pass: there is no graph to keep, one is started here
                z = z.detach().requires_grad_(True)
            f = self.field(t, z)
            return (f, *self._rates(t, z, f))

    def _rates(self, t: torch.Tensor, z: torch.Tensor, f: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for label, rate in zip(self.labels, self.rates):
            value = rate(t, z, f)
            if not torch.is_tensor(value) or value.shape != (batch_size(z),):
                shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
                raise ValueError(f"{label}: integrand rate(t, y, f) must return one value per sample, shape "
                                 f"({batch_size(z)},), got {shape}")
            out.append(value.to(z.dtype))
        return out


def state_norm(base_norm: Callable[[Any], torch.Tensor]) -> Callable[[tuple[torch.Tensor, ...]], torch.Tensor]:
    """A norm of the augmented state that reads ``z`` alone: the step sequence stays the plain solve's."""
    def norm(parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return base_norm(parts[0])
    return norm


def initial_state(y0: torch.Tensor, count: int) -> tuple[torch.Tensor, ...]:
    """``(y0, 0, .., 0)``: one zero per sample for each of ``count`` integrals."""
    zeros = torch.zeros(batch_size(y0), dtype=y0.dtype, device=y0.device)
    return (y0, *([zeros] * count))


__all__ = ["IntegralField", "has_integrand", "initial_state", "state_norm"]
