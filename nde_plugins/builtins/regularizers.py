"""Built-in step-statistic regularizers, registered through ``register_step_regularizers``.

A regularizer is a callable ``StepStats -> scalar tensor`` with a ``requires`` set naming what it
reads, so a block can refuse a solver or a mode that cannot provide it before any training runs:

- ``"error_estimate"``: E_j for every step (an adaptive solver, or a fixed-grid embedded pair);
- ``"stiffness"``: S_j for every step (a tableau with two stages of equal c);
- ``"stages"``: the recorded stage evaluations (quadrature regularizers);
- ``"graph"``: values that carry gradients, i.e. not ``gradient="adjoint"`` (its forward pass has no
  graph), unless the regularizer also has an ``integrand`` (see ``_integrals``), which the block
  then integrates alongside the adjoint solve.

Definitions follow Pal et al., "Opening the Blackbox: Accelerating Neural Differential Equations by
Regularizing Internal Solver Heuristics" (ERNODE/SRNODE), and Finlay et al. (RNODE) for the
kinetic-energy and Jacobian-Frobenius baselines.
"""

from __future__ import annotations

import torch

from .._taylor import MAX_ORDER, TaylorRate, stage_derivatives
from ..hookspecs import hookimpl
from ..stats import Stage, StepStats, batch_size, flat, quadrature_fields, quadrature_nodes, step_quadrature

#: Size of dopri5's stability region along the negative real axis. The authors' code divides the
#: stiffness estimate by it, so that S_j * |h| ~ 1 means "at the edge of stability".
STABILITY_REGION_SIZE = 3.5068


class ErrorEstimate:
    """R_E = sum_j E_j^power |h_j| over accepted steps (``reduce="mean"``: the mean, as the authors' code).

    |h_j| is a constant (the step actually taken, detached): the gradient pushes the local error
    estimates down, which lets the step-size controller take larger steps.
    """

    requires = frozenset({"error_estimate", "graph"})

    def __init__(self, power: float = 1.0, reduce: str = "sum") -> None:
        if power not in (1, 2, 1.0, 2.0):
            raise ValueError(f"error_estimate: power must be 1 (E_j) or 2 (E_j^2), got {power!r}")
        if reduce not in ("sum", "mean"):
            raise ValueError(f"error_estimate: reduce must be 'sum' or 'mean', got {reduce!r}")
        self.power, self.reduce = float(power), reduce

    def __call__(self, stats: StepStats) -> torch.Tensor:
        errors, h = stats.error_terms()
        if errors.numel() == 0:
            return torch.zeros(())
        terms = (errors if self.power == 1.0 else errors.square()) * h
        return terms.sum() if self.reduce == "sum" else terms.mean()


class Stiffness:
    """R_S from Shampine's per-step estimate S_j: ``reduce="sum"`` (the paper) or ``"max"`` (the code).

    With ``normalize=True`` each S_j is divided by the stability-region size 3.5068 as in the
    authors' code.
    """

    requires = frozenset({"stiffness", "graph"})

    def __init__(self, reduce: str = "sum", normalize: bool = False) -> None:
        if reduce not in ("sum", "max", "mean"):
            raise ValueError(f"stiffness: reduce must be 'sum', 'max' or 'mean', got {reduce!r}")
        self.reduce, self.normalize = reduce, bool(normalize)

    def __call__(self, stats: StepStats) -> torch.Tensor:
        s = stats.stiffness_estimates()
        if s.numel() == 0:
            return torch.zeros(())
        if self.normalize:
            s = s / STABILITY_REGION_SIZE
        return {"sum": s.sum, "max": s.max, "mean": s.mean}[self.reduce]()


class KineticEnergy:
    """RNODE's integral of ||f||^2 (per sample, averaged over the batch), by the solver's quadrature.

    Uses the stage evaluations already made: sum_j |h_j| sum_i b_i ||k_i||^2. No extra evaluation
    and no augmented state.
    """

    requires = frozenset({"stages", "graph"})

    def __call__(self, stats: StepStats) -> torch.Tensor:
        stages, weights = quadrature_nodes(stats)
        if not stages:
            return torch.zeros(())
        # One stacked tensor for all stages: a handful of tensor ops instead of several per stage
        # (on small states the op count is the cost, forward and backward).
        k = torch.stack([flat(stage.k) for stage in stages])
        w = torch.tensor(weights, dtype=k.dtype, device=k.device)
        return (k.square().sum(1) * w).sum() / batch_size(stages[0].k)

    def integrand(self, y0: torch.Tensor):
        """||f||^2 per sample, integrated as an extra state component under ``gradient="adjoint"``."""
        return _kinetic_rate


def _kinetic_rate(t: torch.Tensor, y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return f.reshape(batch_size(y), -1).square().sum(1)


class JacobianFrobenius:
    """RNODE's integral of ||df/dy||_F^2 with a Hutchinson probe: one vector-Jacobian product per stage.

    ``probe="gaussian"`` (default) or ``"rademacher"``; a fresh probe is drawn for every stage.
    """

    # "input_grad": the block makes its input require grad, so even the first stage has a Jacobian.
    requires = frozenset({"stages", "graph", "input_grad"})

    def __init__(self, probe: str = "gaussian") -> None:
        if probe not in ("gaussian", "rademacher"):
            raise ValueError(f"jacobian_frobenius: probe must be 'gaussian' or 'rademacher', got {probe!r}")
        self.probe = probe

    def _vjp_norm(self, stage: Stage) -> torch.Tensor:
        ys = (stage.y,) if isinstance(stage.y, torch.Tensor) else tuple(stage.y)
        ks = (stage.k,) if isinstance(stage.k, torch.Tensor) else tuple(stage.k)
        if not any(k.requires_grad for k in ks):
            # Solved without a graph (under no_grad, e.g. evaluation): there is no Jacobian to probe,
            # and the penalty, like every regularizer's, is only meaningful for training.
            return torch.zeros((), dtype=ks[0].dtype, device=ks[0].device)
        if not all(y.requires_grad for y in ys):
            raise ValueError(
                "jacobian_frobenius: a stage input does not require grad (the initial state is a leaf without "
                "requires_grad and the field has no parameters?); make y0 require grad"
            )
        probes = [torch.randn_like(k) for k in ks]
        if self.probe == "rademacher":
            probes = [torch.sign(p) for p in probes]
        with torch.enable_grad():  # regularization() may be called under no_grad after a training solve
            vjps = torch.autograd.grad(ks, ys, probes, create_graph=True, allow_unused=True)
        total = sum(v.square().sum() for v in vjps if v is not None)
        return total / batch_size(stage.y)

    def __call__(self, stats: StepStats) -> torch.Tensor:
        return step_quadrature(stats, self._vjp_norm)

    def integrand(self, y0: torch.Tensor):
        """||e^T df/dy||^2 per sample with one probe e for the whole solve (RNODE's estimator under
        the adjoint: the backward pass evaluates the field again and must see the same probe)."""
        probe = torch.randn_like(y0)
        if self.probe == "rademacher":
            probe = torch.sign(probe)
        return _JacobianRate(probe)


class _JacobianRate:
    def __init__(self, probe: torch.Tensor) -> None:
        self.probe = probe

    def __call__(self, t: torch.Tensor, y: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        (vjp,) = torch.autograd.grad(f, y, self.probe, create_graph=True)
        return vjp.reshape(batch_size(y), -1).square().sum(1)


class TaylorDerivative:
    """TayNODE's penalty (Kelly et al. 2020): the integral of ||d^K z/dt^K||^2 along the solve, per
    sample and averaged over the batch, K = ``order`` in 2..4.

    The derivatives are total derivatives along the field's own flow (``_taylor.total_derivative``:
    nested forward-mode products), taken at the stages the solver evaluated and summed with its own
    quadrature weights, like ``kinetic_energy``: sum_j |h_j| sum_i b_i ||d^K z/dt^K (t_i, Y_i)||^2.
    Each stage costs about 2^(K-1) more evaluations of the field. Under ``gradient="adjoint"`` the
    integrand is solved as an extra state component instead. (TayNODE's own code integrates it as a
    state component in every mode, so there it also enters the step-size control; here the steps
    are those of the plain solve.)
    """

    requires = frozenset({"stages", "field", "graph"})

    def __init__(self, order: int = 2) -> None:
        # A whole float (the command line reads order=3 as 3.0) is that integer; 2.5, True or "3" are not.
        whole = isinstance(order, (int, float)) and not isinstance(order, bool) and float(order).is_integer()
        if not whole or not 2 <= order <= MAX_ORDER:
            raise ValueError(f"taylor: order must be an integer K in 2..{MAX_ORDER} (the K-th derivative; "
                             f"K = 1 is kinetic_energy), got {order!r}")
        self.order = int(order)

    def __call__(self, stats: StepStats) -> torch.Tensor:
        stages, weights, fields = quadrature_fields(stats)
        if not stages:
            return torch.zeros(())
        if not all(isinstance(stage.y, torch.Tensor) for stage in stages):
            raise ValueError("taylor: the state is a tuple; the Taylor penalty needs a tensor state")
        # The stages of one solve share a field and a shape; a call may hold several solves (an output
        # ensemble's members), each evaluated in one batched product.
        total = None
        for group in _by_field(stages, weights, fields):
            field, members = group
            t = torch.stack([stage.t for stage, _ in members])
            y = torch.stack([stage.y for stage, _ in members])
            k = torch.stack([stage.k for stage, _ in members])
            w = torch.tensor([weight for _, weight in members], dtype=y.dtype, device=y.device)
            derivatives = stage_derivatives(field, t, y, k, self.order)
            term = (derivatives.reshape(len(members), -1).square().sum(1) * w).sum()
            total = term if total is None else total + term
        return total / batch_size(stages[0].y)

    def integrand(self, y0: torch.Tensor, field) -> TaylorRate:
        """||d^K z/dt^K||^2 per sample, integrated as an extra state component under ``gradient="adjoint"``."""
        return TaylorRate(field, self.order)


def _by_field(stages: list[Stage], weights: list[float], fields: list) -> list[tuple]:
    """(field, [(stage, weight), ...]) per distinct field object, in order of first appearance."""
    groups: dict[int, tuple] = {}
    for stage, weight, field in zip(stages, weights, fields):
        groups.setdefault(id(field), (field, []))[1].append((stage, weight))
    return list(groups.values())


@hookimpl
def register_step_regularizers(register):
    register("error_estimate", ErrorEstimate)
    register("stiffness", Stiffness)
    register("kinetic_energy", KineticEnergy)
    register("jacobian_frobenius", JacobianFrobenius)
    register("taylor", TaylorDerivative)


# ------------------------------------------------------------------------------------------------
# Weights and configuration


# The machinery that turns a block's ``regularizers`` argument into weighted, checked terms lives in
# ``_regularization``; re-exported here, where it used to be.
from .._regularization import ExponentialAnnealing as ExponentialAnnealing  # noqa: E402
from .._regularization import WeightedRegularizer as WeightedRegularizer  # noqa: E402
from .._regularization import build_regularizers as build_regularizers  # noqa: E402
from .._regularization import check_supported as check_supported  # noqa: E402
from .._regularization import weighted_regularization as weighted_regularization  # noqa: E402
