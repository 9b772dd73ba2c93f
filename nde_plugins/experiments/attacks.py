"""L-infinity adversarial attacks in pixel space, shared by the digits experiments.

Every attack takes ``model_fn(x) -> scores`` (logits, or log-probabilities with ``loss=F.nll_loss``),
a batch ``x`` in pixel units and its labels ``y``, and returns a detached batch of the same shape
that lies in the eps-ball around ``x`` and, unless ``box=None``, in the pixel box [0, 1]. They follow
the meta-solver paper's code (seed 001; see SEEDS-SPEC 1.4):

- ``fgsm``: x' = clip(x + eps sign(grad_x loss)).
- ``fgsm_random``: the training attack "FGSM with random start" of Wong et al., "Fast is better
  than free" (2020): delta ~ U(-eps, eps), one signed-gradient step of size alpha on delta, delta
  projected back to [-eps, eps] and x + delta to the box.
- ``pgd``: a random start in the ball, then ``steps`` signed-gradient steps of size ``alpha``, each
  followed by the projection to the ball and the box.

The caller sets the model's mode: evaluation attacks run against the model in eval mode (the
solver the model is evaluated with), a training attack against the solver of the training step.
The functions never change the model's parameters' gradients: they differentiate with respect to
the input only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

ModelFn = Callable[[torch.Tensor], torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Box = tuple[float, float] | None

#: Pixels in [0, 1]: the images are attacked in the units they are stored in.
PIXEL_BOX: Box = (0.0, 1.0)

#: alpha / eps of FGSM with random start. Wong et al. (2020) recommend alpha = 1.25 eps; the
#: meta-solver code's CIFAR-10 defaults are the same ratio (eps = 8/255, alpha = 10/255).
FGSM_RANDOM_ALPHA_RATIO = 1.25


def input_gradient(model_fn: ModelFn, x: torch.Tensor, y: torch.Tensor, loss: LossFn = F.cross_entropy
                   ) -> torch.Tensor:
    """d loss(model_fn(x), y) / dx, detached; the parameters' ``.grad`` are left untouched."""
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(model_fn(x), y), x)
    return grad


def fgsm(model_fn: ModelFn, x: torch.Tensor, y: torch.Tensor, eps: float, *, loss: LossFn = F.cross_entropy,
         box: Box = PIXEL_BOX) -> torch.Tensor:
    """One signed-gradient step of size ``eps`` from ``x``, clipped to ``box`` (None: not clipped)."""
    _check_radius("eps", eps)
    adv = x.detach() + eps * input_gradient(model_fn, x, y, loss).sign()
    return _clip(adv, box)


def fgsm_random(model_fn: ModelFn, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float | None = None, *,
                generator: torch.Generator | None = None, loss: LossFn = F.cross_entropy,
                box: Box = PIXEL_BOX) -> torch.Tensor:
    """FGSM from a uniform random start (Wong et al. 2020): the adversarial-training attack.

    ``alpha`` defaults to ``FGSM_RANDOM_ALPHA_RATIO * eps`` = 1.25 eps. The step is larger than eps
    on purpose: from a random start, a step of eps alone would often stay inside the ball's interior.
    """
    _check_radius("eps", eps)
    alpha = FGSM_RANDOM_ALPHA_RATIO * eps if alpha is None else alpha
    _check_radius("alpha", alpha)
    x = x.detach()
    start = _clip(x + _uniform(x, eps, generator), box)
    grad = input_gradient(model_fn, start, y, loss)
    return _project(start + alpha * grad.sign(), x, eps, box)


def pgd(model_fn: ModelFn, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int, *,
        generator: torch.Generator | None = None, start: torch.Tensor | None = None,
        loss: LossFn = F.cross_entropy, box: Box = PIXEL_BOX) -> torch.Tensor:
    """Projected gradient descent (Madry et al.): ``steps`` signed steps of ``alpha`` in the eps-ball.

    The start is ``x + U(-eps, eps)`` drawn from ``generator`` and clipped to the box, or ``start``
    used as given (it must lie in the eps-ball; then 0 steps return it unchanged).
    """
    _check_radius("eps", eps)
    _check_radius("alpha", alpha)
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps is the number of PGD iterations, an integer >= 0; got {steps!r}")
    x = x.detach()
    if start is None:
        adv = _clip(x + _uniform(x, eps, generator), box)
    else:
        if start.shape != x.shape:
            raise ValueError(f"start must have the shape of x {tuple(x.shape)}, got {tuple(start.shape)}")
        if float((start - x).abs().max()) > eps * (1 + 1e-6):
            raise ValueError(f"start lies outside the eps-ball around x (eps = {eps:g}); give a start within it")
        adv = start.detach()
    for _ in range(steps):
        grad = input_gradient(model_fn, adv, y, loss)
        adv = _project(adv + alpha * grad.sign(), x, eps, box)
    return adv


def accuracy(model_fn: ModelFn, x: torch.Tensor, y: torch.Tensor) -> float:
    """Percentage of ``x`` that ``model_fn`` classifies as ``y`` (argmax of the scores), without gradients."""
    with torch.no_grad():
        return (model_fn(x).argmax(-1) == y).float().mean().item() * 100


def _uniform(x: torch.Tensor, eps: float, generator: torch.Generator | None) -> torch.Tensor:
    """U(-eps, eps) noise shaped like ``x``, written as eps (2 U(0, 1) - 1) to keep earlier runs' draws."""
    return eps * (2 * torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) - 1)


def _project(adv: torch.Tensor, x: torch.Tensor, eps: float, box: Box) -> torch.Tensor:
    """Back into the eps-ball around ``x``, then into ``box``; detached."""
    return _clip(x + (adv.detach() - x).clamp(-eps, eps), box)


def _clip(adv: torch.Tensor, box: Box) -> torch.Tensor:
    # Clipping to the box after the ball keeps both: the box contains x, so it only moves points
    # towards x, never out of the ball.
    adv = adv.detach()
    return adv if box is None else adv.clamp(box[0], box[1])


def _check_radius(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0 or value == float("inf"):
        raise ValueError(f"{name} is an attack size in pixel units, a finite number >= 0; got {value!r}")


__all__ = ["FGSM_RANDOM_ALPHA_RATIO", "PIXEL_BOX", "accuracy", "fgsm", "fgsm_random", "input_gradient", "pgd"]
