"""A diffusion plugin: additive noise whose scale fades over the integration time.

G(h, t) = sigma * exp(-rate * t): noisy early in the solve, nearly deterministic at its end, so
the injected noise perturbs the trajectory without blurring the final state as much as constant
additive noise does.
"""

import math

import torch

from nde_plugins import Diffusion, hookimpl


class FadingNoise(Diffusion):
    """G(h, t) = sigma * exp(-rate * t), the same for every channel (diagonal Ito noise)."""

    def __init__(self, sigma: float = 0.1, rate: float = 1.0) -> None:
        super().__init__()
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"fading: sigma must be a finite number >= 0, got {sigma!r}")
        if not (math.isfinite(rate) and rate >= 0):
            raise ValueError(f"fading: rate must be a finite number >= 0, got {rate!r}")
        self.sigma, self.rate = float(sigma), float(rate)
        self.is_zero = self.sigma == 0.0  # lets a block refuse test-time noise that would add nothing

    def forward(self, t, h, f=None):
        # t is a scalar tensor, or (batch, 1) when a block draws one end time per sample.
        scale = self.sigma * torch.exp(-self.rate * torch.as_tensor(t, dtype=h.dtype, device=h.device))
        return scale.expand_as(h)


def fading(drift, sigma: float = 0.1, rate: float = 1.0) -> FadingNoise:
    """G(h, t) = sigma * exp(-rate * t): additive noise that fades over the solve."""
    # SDEBlock calls the factory with its drift and its diffusion_options; this noise ignores the drift.
    return FadingNoise(sigma, rate)


@hookimpl
def register_diffusions(register):
    register("fading", fading)
