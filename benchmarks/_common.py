"""Shared by the benchmark scripts: interleaved timing (machines are noisy: compare within one run)
and the counting MLP vector field."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence

import torch


def interleaved_medians(runs: Sequence[Callable[[], object]], repeats: int, warmup: int = 3) -> list[float]:
    """Median wall time of each callable, run in rotating order (ABC, BCA, CAB, ...) ``repeats`` times."""
    for _ in range(warmup):
        for run in runs:
            run()
    times: list[list[float]] = [[] for _ in runs]
    n = len(runs)
    for i in range(repeats):
        for j in range(n):
            k = (i + j) % n  # rotate which side goes first so none always runs on a warmer cache
            start = time.perf_counter()
            runs[k]()
            times[k].append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


class CountingMLP(torch.nn.Module):
    """An MLP vector field ``f(t, y)`` (tanh, ``hidden`` layers of ``width``) counting its evaluations."""

    def __init__(self, dim: int, width: int, hidden: int = 1) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = [torch.nn.Linear(dim, width), torch.nn.Tanh()]
        for _ in range(hidden - 1):
            layers += [torch.nn.Linear(width, width), torch.nn.Tanh()]
        self.net = torch.nn.Sequential(*layers, torch.nn.Linear(width, dim))
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return self.net(y)


def counted(field: CountingMLP, step: Callable[[], object], nfe: dict[str, int], key: str) -> Callable[[], None]:
    """A timed run: reset the field's counter, run ``step``, store its evaluations as ``nfe[key]``."""

    def run() -> None:
        field.nfe = 0
        step()
        nfe[key] = field.nfe

    return run


def shuffled_medians(
    runs: dict[str, Callable[[], object]], repeats: int, warmup: int = 3, seed: int = 0,
    before_round: Callable[[], object] | None = None,
) -> dict[str, float]:
    """Median process CPU time of each named callable, the callables run in a fresh random order every round.

    A fixed order (even a rotating one) lets a variant inherit the cache or allocator state its
    predecessor left; shuffling each round spreads that over all variants. Give the baseline twice
    under two names (an A/A pair) to show the noise floor next to the ratios. ``before_round`` runs
    untimed at the start of every round (e.g. to fix the round's random draw for all variants).
    """
    rng = random.Random(seed)
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        if before_round is not None:
            before_round()
        rng.shuffle(names)
        for name in names:
            start = time.process_time()
            runs[name]()
            times[name].append(time.process_time() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def size_arguments(parser, repeats: int = 40, batch: int = 256, dim: int = 16, width: int = 64) -> None:
    """The options every benchmark shares: repeats and the problem size (batch, state dim, field width)."""
    parser.add_argument("--repeats", type=int, default=repeats)
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--dim", type=int, default=dim)
    parser.add_argument("--width", type=int, default=width)
