"""The small problems the plugin checks solve: a smooth scalar ODE with a known solution, a tiny MLP field."""

from __future__ import annotations

import math

import torch


class PluginCheckWarning(UserWarning):
    """Something a check noticed that is allowed but probably unintended (a duplicated tableau)."""


def smooth_field(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """dy/dt = cos(t) y: y(t) = y0 exp(sin t), smooth, so a method shows its order on it."""
    return torch.cos(t) * y


def smooth_exact(y0: torch.Tensor, t: float) -> torch.Tensor:
    return y0 * math.exp(math.sin(t))


class MLPField(torch.nn.Module):
    """f(t, z) = W2 tanh(W1 z) (1 + t/2): a field with parameters, for gradient checks."""

    def __init__(self, dim: int = 3, hidden: int = 8, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.inner = torch.nn.Linear(dim, hidden)
        self.outer = torch.nn.Linear(hidden, dim)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.outer(torch.tanh(self.inner(z))) * (1 + 0.5 * t)


def states(batch: int = 4, dim: int = 3, dtype: torch.dtype = torch.float64, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def gradient_reaches(parameters: list[torch.Tensor]) -> bool:
    """Whether a backward pass left a finite, nonzero gradient on some parameter (and NaN on none)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if any(not bool(torch.isfinite(g).all()) for g in grads):
        return False
    return any(bool(g.abs().sum() > 0) for g in grads)
