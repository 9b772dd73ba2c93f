"""What a training loop records per iteration, as plain Python numbers (cheap to keep, JSON as it is)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class IterationLog:
    """One entry per training iteration, in order.

    ``loss``: the task loss of the batch (without regularization). ``accuracy``: the batch
    accuracy in percent, computed from the training forward pass; empty for a task without classes
    (the stiff toy is a regression). ``nfe_forward``: field evaluations of the training solve(s)
    of the iteration. ``nfe_backward``: field evaluations of its backward pass, which only the
    adjoint method makes (``adjoint`` is then True); backpropagation through the solver's own
    operations evaluates no field, so its count is 0 and says nothing about its cost.
    ``nfe_replay``: with ``gradient == "checkpoint"``, the evaluations of the segments recomputed
    in the backward pass.
    """

    adjoint: bool = False
    gradient: str = "backprop"
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    nfe_forward: list[int] = field(default_factory=list)
    nfe_backward: list[int] = field(default_factory=list)
    nfe_replay: list[int] = field(default_factory=list)

    def record(self, loss: float, nfe_forward: int, nfe_backward: int, accuracy: float | None = None,
               nfe_replay: int = 0) -> None:
        """Append one iteration; give ``accuracy`` on every iteration of a classification task, never otherwise."""
        self.loss.append(float(loss))
        self.nfe_forward.append(int(nfe_forward))
        self.nfe_backward.append(int(nfe_backward))
        self.nfe_replay.append(int(nfe_replay))
        if accuracy is not None:
            self.accuracy.append(float(accuracy))

    def __len__(self) -> int:
        return len(self.loss)
