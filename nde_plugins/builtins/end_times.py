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

Under ``torch.distributed`` the generator is the rank's own stream, so each rank's local batch
gets its own end times; ``end_time_options={"synchronized": True}`` hands every rank the stream
they share instead (one end time per global batch, as in one process). The rule and why per-rank
is the default are in ``distributed``. A sampler needs nothing of its own for either.
"""

from __future__ import annotations

import math

import torch

from .._checks import nonnegative_float, positive_float
from ..hookspecs import hookimpl

#: The authors' code keeps a drawn end at least this far beyond the interval's start (their
#: ``min_length``); it is also the default ``eps`` of the per-interval rule.
MIN_LENGTH = 1e-3


def _uniform(shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    """Uniform(0, 1) draws in float64, so the bounds hold exactly before the cast to t's dtype."""
    return torch.rand(shape, generator=generator, dtype=torch.float64)


def _intervals(times: list[float]) -> list[float]:
    return [abs(b - a) for a, b in zip(times, times[1:])]


def _with_last(t: torch.Tensor, times: list[float], last: torch.Tensor, batch: int | None) -> torch.Tensor:
    """``t`` with its last entry replaced by ``last`` (a 0-d draw, or one per sample)."""
    if batch is None:  # one small tensor from Python floats: the cheapest way for a shared draw
        return torch.tensor([*times[:-1], float(last)], dtype=t.dtype, device=t.device)
    ends = t.expand(batch, len(times)).clone()
    ends[:, -1] = last.to(t.dtype)
    return ends


def _every_end(t: torch.Tensor, times: list[float], half_widths: torch.Tensor | float,
               generator: torch.Generator | None, batch: int | None) -> torch.Tensor:
    """Every entry but the first drawn from Uniform(t_k - b_k, t_k + b_k)."""
    u = _uniform((len(times) - 1,) if batch is None else (batch, len(times) - 1), generator)
    ends = t.double().expand(*(() if batch is None else (batch,)), len(times)).clone()
    ends[..., 1:] += half_widths * (2 * u - 1)
    return ends.to(t.dtype)


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

    def _half_width(self, times: list[float]) -> float:
        lengths = _intervals(times)
        shortest = min(lengths) if self.every_interval else lengths[-1]
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
        """Raise ``ValueError`` unless 0 < b < the last interval of ``t`` (the shortest, with ``every_interval``)."""
        self._half_width(t.tolist())

    def __call__(self, t: torch.Tensor, generator: torch.Generator | None, batch: int | None = None) -> torch.Tensor:
        times = t.tolist()
        b = self._half_width(times)
        if self.every_interval:
            return _every_end(t, times, b, generator, batch)
        u = _uniform(() if batch is None else (batch,), generator)
        return _with_last(t, times, times[-1] + b * (2 * u - 1), batch)


class SteerNormal:
    """T ~ Normal(t1, std), truncated to stay at least ``min_length`` beyond ``t_{n-1}`` (the authors' variant).

    The authors' code does not truncate, so a large ``std`` can put T before the start. Here the
    normal is truncated exactly: T = t1 + std * Phi^-1(U) with U uniform on (Phi(a), 1), where a is
    the standardized bound, so draws keep the normal's shape on the allowed side and never loop.
    """

    def __init__(self, std: float, min_length: float = MIN_LENGTH) -> None:
        self.std = positive_float("end time 'steer_normal': std", std)
        self.min_length = nonnegative_float("end time 'steer_normal': min_length", min_length)

    def _low(self, times: list[float]) -> float:
        """Phi(a): the normal's mass below the allowed bound, a = -(last interval - min_length) / std."""
        last = _intervals(times)[-1]
        if not self.min_length < last:
            raise ValueError(
                f"end time 'steer_normal': min_length = {self.min_length:g} must be smaller than the last interval "
                f"|t1 - t0| = {last:g}"
            )
        return 0.5 * math.erfc((last - self.min_length) / self.std / math.sqrt(2))

    def check(self, t: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``min_length`` is smaller than the last interval of ``t``."""
        self._low(t.tolist())

    def __call__(self, t: torch.Tensor, generator: torch.Generator | None, batch: int | None = None) -> torch.Tensor:
        times = t.tolist()
        low = self._low(times)
        u = low + (1 - low) * _uniform(() if batch is None else (batch,), generator)
        # Keep U strictly inside (Phi(a), 1): ndtri(1) is inf.
        u = u.clamp(max=1 - torch.finfo(torch.float64).eps)
        direction = 1.0 if times[-1] > times[0] else -1.0
        return _with_last(t, times, times[-1] + direction * self.std * torch.special.ndtri(u), batch)


class SteerIntervals:
    """Every interval end t_k ~ Uniform(t_k - b_k, t_k + b_k), b_k = |t_k - t_{k-1}| - eps (the time-series rule).

    Each interval starts from the unaltered previous time with the state reached so far, so the
    drawn ends need not be ordered among themselves; each stays at least ``eps`` beyond its own
    interval's start. A block's prediction at grid index k is the state at the drawn end, and a
    training loss compares it with the data at the original time t_k.
    """

    def __init__(self, eps: float = MIN_LENGTH) -> None:
        self.eps = positive_float("end time 'steer_intervals': eps", eps)

    def _half_widths(self, times: list[float]) -> list[float]:
        lengths = _intervals(times)
        if min(lengths) <= self.eps:
            raise ValueError(
                f"end time 'steer_intervals': eps = {self.eps:g} must be smaller than every interval of t (the "
                f"shortest is {min(lengths):g}); give a smaller eps"
            )
        return [length - self.eps for length in lengths]

    def check(self, t: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``eps`` is smaller than every interval of ``t``."""
        self._half_widths(t.tolist())

    def __call__(self, t: torch.Tensor, generator: torch.Generator | None, batch: int | None = None) -> torch.Tensor:
        times = t.tolist()
        b = torch.tensor(self._half_widths(times), dtype=torch.float64)
        return _every_end(t, times, b, generator, batch)


@hookimpl
def register_end_time_samplers(register):
    register("steer", Steer)
    register("steer_normal", SteerNormal)
    register("steer_intervals", SteerIntervals)


__all__ = ["MIN_LENGTH", "Steer", "SteerIntervals", "SteerNormal"]
