"""An end-time sampler plugin: STEER's random horizon, drawn on one side of t1 only.

T ~ Uniform(t1 - b, t1): training never integrates past the horizon the model is evaluated at,
only short of it, which asks the state to settle early without ever extrapolating in time.
"""

import torch

from nde_plugins import hookimpl


class SteerBelow:
    """T ~ Uniform(t1 - b, t1) for the last time of the grid; earlier times stay as they are."""

    def __init__(self, b: float) -> None:
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not b > 0:
            raise ValueError(f"end time 'steer_below': b must be a number > 0, got {b!r}")
        self.b = float(b)

    def check(self, t: torch.Tensor) -> None:
        """Called once when a block is built: b must be shorter than the last interval."""
        last = abs(float(t[-1] - t[-2]))
        if not self.b < last:
            raise ValueError(f"end time 'steer_below': b = {self.b:g} must be smaller than the last interval of t "
                             f"({last:g}) so that T stays beyond its start; give a smaller b")

    def __call__(self, t: torch.Tensor, generator: torch.Generator | None, batch: int | None = None) -> torch.Tensor:
        shape = () if batch is None else (batch,)
        u = torch.rand(shape, generator=generator, dtype=torch.float64)
        direction = 1.0 if float(t[-1]) > float(t[0]) else -1.0
        last = float(t[-1]) - direction * self.b * u  # between t1 - b and t1, in the grid's direction
        ends = t.double().expand(*shape, len(t)).clone()
        ends[..., -1] = last
        return ends.to(t.dtype)


@hookimpl
def register_end_time_samplers(register):
    register("steer_below", SteerBelow)
