"""Built-in noise diffusions (diagonal, Ito), registered through ``register_diffusions``.

Liu et al., "Neural SDE: Stabilizing Neural ODE Networks with Stochastic Noise" (seed 000) turn a
Neural ODE dh = f(h, t) dt into dh = f(h, t) dt + G(h, t) dB. A diffusion plugin provides G:
``register(name, factory)`` where ``factory(drift, **options)`` returns a ``Diffusion`` module.

A ``Diffusion`` computes ``forward(t, h, f)`` -> G of h's shape (diagonal noise), where ``f`` is
the drift value f(t, h) when the diffusion declares ``uses_drift = True`` (the SDE then evaluates
the drift once per stage and shares it) and None otherwise.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import torch

from .._checks import as_float
from ..contract import Diffusion
from ..hookspecs import hookimpl


class NoDiffusion(Diffusion):
    """G = 0: the SDE is the ODE (solved by the SDE solver, so steps and noise handling match)."""

    is_zero = True

    def forward(self, t, h, f=None):
        """Zeros shaped like ``h``."""
        return torch.zeros_like(h)


def _sigma(name: str, sigma, learnable: bool) -> torch.Tensor:
    if isinstance(sigma, (bool, str)) or (torch.is_tensor(sigma) and sigma.dtype == torch.bool):
        raise TypeError(f"{name}: sigma must be a number or one number per channel, got {sigma!r}")
    try:
        value = torch.as_tensor(sigma, dtype=torch.get_default_dtype())
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name}: sigma must be a number or one number per channel, got {sigma!r}") from None
    if value.dim() > 1:
        raise ValueError(f"{name}: sigma must be a scalar or one value per channel, got shape {tuple(value.shape)}")
    if not torch.isfinite(value).all() or (value < 0).any():
        raise ValueError(f"{name}: sigma must be finite and >= 0, got {sigma!r}")
    return torch.nn.Parameter(value.clone()) if learnable else value.clone()


class _SigmaDiffusion(Diffusion):
    """A diffusion scaled by sigma (scalar or per channel, >= 0); a learnable sigma enters as |sigma|."""

    def __init__(self, sigma: float | Sequence[float] | torch.Tensor = 0.1, learnable: bool = False) -> None:
        super().__init__()
        sigma = _sigma(self.name, sigma, learnable)
        if learnable:
            self.sigma = sigma
        else:
            self.register_buffer("sigma", sigma)

    def _scale(self, dtype: torch.dtype) -> torch.Tensor:
        sigma = self.sigma
        if sigma.requires_grad:
            sigma = sigma.abs()  # a fixed sigma is validated >= 0
        return sigma if sigma.dtype == dtype else sigma.to(dtype)  # runs every step: skip a no-op .to


class AdditiveDiffusion(_SigmaDiffusion):
    """G = sigma (scalar or one value per channel); learnable sigma enters as |sigma|."""

    name = "additive"

    def forward(self, t, h, f=None):
        """sigma broadcast to ``h``'s shape, in ``h``'s dtype; ``t`` and ``h``'s values are unused."""
        return self._scale(h.dtype).expand_as(h)


class MultiplicativeDiffusion(_SigmaDiffusion):
    """G = sigma * h (elementwise; sigma scalar or per channel)."""

    name = "multiplicative"

    def forward(self, t, h, f=None):
        """sigma * h, elementwise (sigma broadcast over the channel dimension)."""
        return self._scale(h.dtype) * h


class DropoutDiffusion(Diffusion):
    """G = sqrt((1 - p) / p) * f(h, t): the diffusion limit of dropout with keep probability p."""

    uses_drift = True

    def __init__(self, p: float = 0.9) -> None:
        super().__init__()
        p = as_float("dropout: keep probability p", p)
        if not 0.0 < p <= 1.0:
            raise ValueError(f"dropout: keep probability p must satisfy 0 < p <= 1, got {p}")
        self.p = p
        self.scale = math.sqrt((1.0 - p) / p)
        self.is_zero = p == 1.0

    def forward(self, t, h, f=None):
        """sqrt((1 - p) / p) * f, where ``f`` is the drift value f(t, h) the SDE passes in."""
        return self.scale * f

    def extra_repr(self) -> str:
        """The keep probability, as ``repr`` shows it."""
        return f"p={self.p}"


class LearnedDiffusion(Diffusion):
    """G = network(t, h): any module mapping (t, h) to a tensor of h's shape."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        if not callable(network):
            raise TypeError(f"learned: network must be a callable module (t, h) -> G, got {type(network).__name__}")
        self.network = network

    def forward(self, t, h, f=None):
        """``network(t, h)``, which must have ``h``'s shape."""
        return self.network(t, h)


def _factory(cls):
    def factory(drift, **options):
        return cls(**options)

    factory.__doc__ = cls.__doc__
    # Show the class's options as the factory's, so unknown ones are refused with the valid ones listed.
    drift_param = inspect.Parameter("drift", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    factory.__signature__ = inspect.signature(cls).replace(
        parameters=[drift_param, *inspect.signature(cls).parameters.values()]
    )
    return factory


@hookimpl
def register_diffusions(register):
    register("none", _factory(NoDiffusion))
    register("additive", _factory(AdditiveDiffusion))
    register("multiplicative", _factory(MultiplicativeDiffusion))
    register("dropout", _factory(DropoutDiffusion))
    register("learned", _factory(LearnedDiffusion))
