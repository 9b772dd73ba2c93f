"""Built-in end-time samplers (STEER, Ghosh et al., seed 003), registered through ``register_end_time_samplers``.

A sampler perturbs the integration times of a block's forward call in training. It receives the
block's 1-D grid ``t`` (increasing or decreasing, length n >= 2) and returns the *ends* of its
intervals: ``ends[0] = t[0]`` and ``ends[k]`` is where interval k stops, interval k starting from
the unaltered ``t[k-1]`` with the state reached at the end of interval k-1. With only the last
time drawn this is the grid ``[t0, ..., t_{n-1}, T]``; with every time drawn (a time series) it is
the paper's per-interval rule. Every interval keeps its direction and a positive length, which is
what the option checks guarantee.

Contract of a sampler object (what ``factory(**options)`` returns):

- ``check(t)``: called once when a block is built; raises ``ValueError`` naming the option and the
  rule when the options do not fit the grid (e.g. ``b >= |t1 - t0|``).
- ``__call__(t, generator, batch=None)``: the ends, shaped like ``t``, or ``(batch, n)`` with one
  independent draw per sample when ``batch`` is given. Draws come from ``generator`` (None: torch's
  global generator) and carry no gradient.
"""

from __future__ import annotations

import torch

from ._checks import nonnegative_float, positive_float
from .hookspecs import hookimpl

#: The authors' code keeps a drawn end at least this far beyond the interval's start (their
#: ``min_length``); it is also the default ``eps`` of the per-interval rule.
MIN_LENGTH = 1e-3


def _uniform(t: torch.Tensor, generator: torch.Generator | None, batch: int | None) -> torch.Tensor:
    """Uniform(0, 1) draws shaped like ``t`` or ``(batch, len(t))``, in float64 for exact bounds."""
    shape = (len(t),) if batch is None else (batch, len(t))
    return torch.rand(shape, generator=generator, dtype=torch.float64)


def _direction(t: torch.Tensor) -> float:
    return 1.0 if float(t[-1]) > float(t[0]) else -1.0


def _intervals(t: torch.Tensor) -> torch.Tensor:
    return (t[1:] - t[:-1]).abs().double()


class Steer:
    """T ~ Uniform(t1 - b, t1 + b): the paper's end-time draw (its eq. 4).

    ``b`` defaults to the widest value the authors' code allows, ``|t1 - t_{n-1}| - min_length``.
    On a grid of more than two times only the last time is drawn, unless ``every_interval=True``:
    then every interval end is drawn with the same ``b`` (which must fit the shortest interval).
    """

    def __init__(self, b: float | None = None, min_length: float = MIN_LENGTH, every_interval: bool = False) -> None:
        self.b = None if b is None else positive_float("end time 'steer': b", b)
        self.min_length = nonnegative_float("end time 'steer': min_length", min_length)
        if not isinstance(every_interval, bool):
            raise TypeError(f"end time 'steer': every_interval must be True or False, got {every_interval!r}")
        self.every_interval = every_interval

    def _half_width(self, t: torch.Tensor) -> float:
        shortest = float(_intervals(t).min() if self.every_interval else _intervals(t)[-1])
        b = self.b if self.b is not None else shortest - self.min_length
        if not 0 < b < shortest:
            which = "the shortest interval" if self.every_interval else "the last interval |t1 - t0|"
            given = f"b = {b:g}" if self.b is not None else f"the default b = {which} - min_length = {b:g}"
            raise ValueError(
                f"end time 'steer': {given}, but it must satisfy 0 < b < {which} = {shortest:g} so that every "
                f"drawn end stays beyond its interval's start; give a smaller b"
            )
        return b

    def check(self, t: torch.Tensor) -> None:
        self._half_width(t)

    def __call__(self, t: torch.Tensor, generator: torch.Generator | None, batch: int | None = None) -> torch.Tensor:
        b = self._half_width(t)
        ends = t.double().expand(*(() if batch is None else (batch,)), len(t)).clone()
        draw = t.double() + b * (2 * _uniform(t, generator, batch) - 1)
        if self.every_interval:
            ends[..., 1:] = draw[..., 1:]
        else:
            ends[..., -1] = draw[..., -1]
        return ends.to(t.dtype)


class SteerNormal:
    """T ~ Normal(t1, std), truncated to stay at least ``min_length`` beyond ``t_{n-1}`` (the authors' variant).

    The authors' code does not truncate, so a large ``std`` can put T before the start. Here the
    normal is truncated exactly: T = t1 + std * Phi^-1(U) with U uniform on (Phi(a), 1), where a is
    the standardized bound, so draws keep the normal's shape on the allowed side and never loop.
    """

    def __init__(self, std: float, min_length: float = MIN_LENGTH) -> None:
        self.std = positive_float("end time 'steer_normal': std", std)
        self.min_length = nonnegative_float("end time 'steer_normal': min_length", min_length)

    def _bound(self, t: torch.Tensor) -> float:
        last = float(_intervals(t)[-1])
        if not self.min_length < last:
            raise ValueError(
                f"end time 'steer_normal': min_length = {self.min_length:g} must be smaller than the last interval "
                f"|t1 - t0| = {last:g}"
            )
        return -(last - self.min_length) / self.std  # standardized distance of the allowed bound below t1

    def check(self, t: torch.Tensor) -> None:
        self._bound(t)

    def __call__(self, t: torch.Tensor, generator: torch.Generator | None, batch: int | None = None) -> torch.Tensor:
        low = torch.special.ndtr(torch.tensor(self._bound(t), dtype=torch.float64))
        u = low + (1 - low) * _uniform(t, generator, batch)[..., -1]
        # Keep U strictly inside (Phi(a), 1): ndtri(1) is inf.
        u = u.clamp(max=1 - torch.finfo(torch.float64).eps)
        ends = t.double().expand(*(() if batch is None else (batch,)), len(t)).clone()
        ends[..., -1] = float(t[-1]) + _direction(t) * self.std * torch.special.ndtri(u)
        return ends.to(t.dtype)


class SteerIntervals:
    """Every interval end t_k ~ Uniform(t_k - b_k, t_k + b_k), b_k = |t_k - t_{k-1}| - eps (the time-series rule).

    Each interval starts from the unaltered previous time with the state reached so far, so the
    drawn ends need not be ordered among themselves; each stays at least ``eps`` beyond its own
    interval's start. A block's prediction at grid index k is the state at the drawn end, and a
    training loss compares it with the data at the original time t_k.
    """

    def __init__(self, eps: float = MIN_LENGTH) -> None:
        self.eps = positive_float("end time 'steer_intervals': eps", eps)

    def _half_widths(self, t: torch.Tensor) -> torch.Tensor:
        widths = _intervals(t) - self.eps
        if bool((widths <= 0).any()):
            shortest = float(_intervals(t).min())
            raise ValueError(
                f"end time 'steer_intervals': eps = {self.eps:g} must be smaller than every interval of t (the "
                f"shortest is {shortest:g}); give a smaller eps"
            )
        return widths

    def check(self, t: torch.Tensor) -> None:
        self._half_widths(t)

    def __call__(self, t: torch.Tensor, generator: torch.Generator | None, batch: int | None = None) -> torch.Tensor:
        b = self._half_widths(t)
        ends = t.double().expand(*(() if batch is None else (batch,)), len(t)).clone()
        ends[..., 1:] = t[1:].double() + b * (2 * _uniform(t, generator, batch)[..., 1:] - 1)
        return ends.to(t.dtype)


@hookimpl
def register_end_time_samplers(register):
    register("steer", Steer)
    register("steer_normal", SteerNormal)
    register("steer_intervals", SteerIntervals)


__all__ = ["MIN_LENGTH", "Steer", "SteerIntervals", "SteerNormal"]
