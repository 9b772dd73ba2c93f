"""How a solve's gradients are computed: ``gradient="backprop" | "adjoint" | "checkpoint"``.

- ``"backprop"`` (default): ``torchdiffeq.odeint`` under autograd. Exact gradients of the
  computed solution (the discrete sensitivities, step-size control included); every regularizer
  works. Memory grows with the number of steps: autograd keeps every stage's activations.
- ``"adjoint"``: ``torchdiffeq.odeint_adjoint``. The forward solve keeps no graph; the backward
  pass solves the continuous adjoint ODE. Memory stays flat in the number of steps; gradients
  agree with backprop's to the adjoint solve's tolerance. Regularizers that differentiate the
  solver's own values (error estimates, stiffness estimates, stages) cannot be served; integral
  regularizers (those with an ``integrand``: ``kinetic_energy``, ``jacobian_frobenius``) are
  integrated as extra components of the state instead, as RNODE trains.
- ``"checkpoint"``: the steps run in segments under ``torch.utils.checkpoint``. The forward pass
  keeps each segment's starting state (and the solver's step size) but none of its activations;
  the backward pass recomputes one segment at a time, through the same torchdiffeq step function
  with the same step sequence, and backpropagates through it. Values, regularization and gradients
  are backprop's (every regularizer); peak memory grows like the square root of the number of
  steps; the price is one more evaluation of every step (``stats.nfe_replay``).

``adjoint=True`` is a synonym of ``gradient="adjoint"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from ._checks import _is_bool

GRADIENTS = ("backprop", "adjoint", "checkpoint")


def resolve_gradient(owner: str, gradient: Any, adjoint: Any, allowed: tuple[str, ...] = GRADIENTS) -> str:
    """The gradient mode from ``gradient`` and the older ``adjoint`` flag, validated.

    Raises ValueError naming the argument when ``gradient`` is not one of ``allowed``, when
    ``adjoint`` is not a bool, or when both are given and disagree.
    """
    if not _is_bool(adjoint):
        raise ValueError(f"{owner}: adjoint must be True or False, got {adjoint!r}; or give gradient='adjoint'")
    if gradient is None:
        return "adjoint" if adjoint else "backprop"
    if gradient not in allowed:
        why = "" if allowed == GRADIENTS else f" ({', '.join(g for g in GRADIENTS if g not in allowed)} is not " \
                                              "available here)"
        raise ValueError(f"{owner}: gradient must be one of {', '.join(map(repr, allowed))}, got {gradient!r}{why}")
    if adjoint and gradient != "adjoint":
        raise ValueError(f"{owner}: adjoint=True and gradient={gradient!r} disagree; give gradient alone "
                         "(adjoint=True is the older spelling of gradient='adjoint')")
    return gradient


def segment_lengths(owner: str, checkpoint_steps: Any, gradient: str) -> Callable[[int], int]:
    """The number of steps in each segment of a checkpointed solve: ``segment(k)`` for k = 0, 1, ...

    ``checkpoint_steps=None`` (default) makes the k-th segment k + 1 steps long: n steps then form
    about sqrt(2n) segments of at most about sqrt(2n) steps, so both what the forward pass keeps
    (one starting state per segment) and what one recomputed segment holds grow like sqrt(n),
    without knowing n before an adaptive solve ends. An int gives every segment that many steps.
    """
    if checkpoint_steps is None:
        return _growing
    if gradient != "checkpoint":
        raise ValueError(f"{owner}: checkpoint_steps applies to gradient='checkpoint' only, and gradient is "
                         f"{gradient!r}; drop it or set gradient='checkpoint'")
    if _is_bool(checkpoint_steps) or not isinstance(checkpoint_steps, int) or checkpoint_steps < 1:
        raise ValueError(f"{owner}: checkpoint_steps must be an int >= 1 (steps per recomputed segment) or None "
                         f"(segments growing by one step), got {checkpoint_steps!r}")
    return _Constant(checkpoint_steps)


def _growing(k: int) -> int:
    return k + 1


class _Constant:
    """Segments of a fixed number of steps (a class, so that a block holding it pickles)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __call__(self, k: int) -> int:
        return self.steps


def run_checkpointed(segment: Callable[..., Any], *tensors: torch.Tensor) -> Any:
    """``segment(*tensors)`` under ``torch.utils.checkpoint`` (non-reentrant): its graph is recomputed.

    The non-reentrant form lets gradients reach tensors the segment reads without taking them as
    arguments (the field's parameters, the time grid) and lets a value formed inside (an error
    ratio a regularizer reads) be differentiated, each recomputing the segment when its backward
    needs it. The random state is restored for the recomputation, so a field that draws (dropout)
    draws the same numbers again. torch's check that a recomputation saves tensors of the same
    shapes is off: a segment is rerun from the same inputs, closure and random state, so it takes
    the same steps by construction (the tests compare every solver against backprop), and the
    check costs about a tenth of a training step on small fields.
    """
    return checkpoint(segment, *tensors, use_reentrant=False, determinism_check="none")


__all__ = ["GRADIENTS", "resolve_gradient", "run_checkpointed", "segment_lengths"]
