"""Built-in step-statistic regularizers, registered through ``register_step_regularizers``.

A regularizer is a callable ``StepStats -> scalar tensor`` with a ``requires`` set naming what it
reads, so a block can refuse a solver or a mode that cannot provide it before any training runs:

- ``"error_estimate"``: E_j for every step (an adaptive solver, or a fixed-grid embedded pair);
- ``"stiffness"``: S_j for every step (a tableau with two stages of equal c);
- ``"stages"``: the recorded stage evaluations (quadrature regularizers);
- ``"graph"``: values that carry gradients, i.e. no ``adjoint=True`` (its forward pass has no graph).

Definitions follow Pal et al., "Opening the Blackbox: Accelerating Neural Differential Equations by
Regularizing Internal Solver Heuristics" (ERNODE/SRNODE), and Finlay et al. (RNODE) for the
kinetic-energy and Jacobian-Frobenius baselines.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ._checks import check_factory_options, nonnegative_float, positive_float, positive_int
from .hookspecs import hookimpl
from .stats import Stage, StepStats, batch_size, flat, quadrature_nodes, step_quadrature

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


@hookimpl
def register_step_regularizers(register):
    register("error_estimate", ErrorEstimate)
    register("stiffness", Stiffness)
    register("kinetic_energy", KineticEnergy)
    register("jacobian_frobenius", JacobianFrobenius)


# ------------------------------------------------------------------------------------------------
# Weights and configuration


class ExponentialAnnealing:
    """lambda(e) = start * (end / start) ** ((e - 1) / (epochs - 1)) for epochs e = 1..epochs, then end.

    The schedule of the ERNODE paper (MNIST: 100 -> 10 over 75 epochs).
    """

    def __init__(self, start: float, end: float, epochs: int) -> None:
        self.start = positive_float("ExponentialAnnealing: start", start)
        self.end = positive_float("ExponentialAnnealing: end", end)
        self.epochs = positive_int("ExponentialAnnealing: epochs", epochs, "the number of epochs to anneal over")

    def __call__(self, epoch: int) -> float:
        if self.epochs == 1 or epoch >= self.epochs:
            return self.end
        e = max(int(epoch), 1)
        return self.start * (self.end / self.start) ** ((e - 1) / (self.epochs - 1))

    def __repr__(self) -> str:
        return f"ExponentialAnnealing({self.start:g} -> {self.end:g} over {self.epochs} epochs)"


class WeightedRegularizer:
    """A regularizer with its weight (a constant or a schedule of the epoch).

    A constant weight must be a finite number >= 0; a schedule's value is checked by the same rule
    every time it is read, so a schedule that drifts negative or to NaN fails at that epoch instead
    of silently rewarding the quantity it should penalize.
    """

    def __init__(self, name: str, regularizer, weight) -> None:
        if not callable(weight):
            weight = nonnegative_float(f"regularizer {name!r}: weight", weight)
        self.name, self.regularizer, self.weight = name, regularizer, weight

    def weight_at(self, epoch: int) -> float:
        """The weight at ``epoch`` (1-based); ``ValueError`` if a schedule gives a negative or non-finite one."""
        if not callable(self.weight):
            return self.weight
        return nonnegative_float(f"regularizer {self.name!r}: the weight schedule {self.weight!r} at epoch {epoch}",
                                 self.weight(epoch))

    @property
    def requires(self) -> frozenset:
        """What the regularizer reads from a solve (its ``requires``; empty when it declares none)."""
        return frozenset(getattr(self.regularizer, "requires", ()))


def build_regularizers(spec) -> list[WeightedRegularizer]:
    """Regularizers from ``{name: weight}``, ``{name: (weight, options)}`` or ``{name: {"weight": w, ...}}``.

    Names are looked up among the registered step regularizers (did-you-mean on a typo); options are
    checked against the factory's signature and passed to it.
    """
    from .plugins import get_registry

    if spec is None:
        return []
    if not isinstance(spec, dict):
        raise TypeError(f"regularizers must be a dict name -> weight, got {type(spec).__name__}")
    out = []
    for name, value in spec.items():
        factory = get_registry().get("step_regularizer", name)
        if isinstance(value, dict):
            options = dict(value)
            if "weight" not in options:
                raise ValueError(f"regularizer {name!r}: the options dict needs a 'weight'")
            weight = options.pop("weight")
        elif isinstance(value, tuple):
            if len(value) != 2 or not isinstance(value[1], dict):
                raise TypeError(f"regularizer {name!r}: a tuple value must be (weight, options dict), got {value!r}")
            weight, options = value[0], dict(value[1])
        else:
            weight, options = value, {}
        check_factory_options("regularizer", name, factory, options)
        out.append(WeightedRegularizer(name, factory(**options), weight))
    return out


def check_supported(regularizers: list[WeightedRegularizer], plan, adjoint: bool,
                    solvers_with_estimates: Callable[[], Sequence[str]]) -> None:
    """Refuse, before any solve, a regularizer the solver or mode cannot serve.

    ``solvers_with_estimates()`` lists the methods to suggest; it is called only to word a refusal
    (scanning the registry costs more than the check, which runs for every new schedule member).
    """
    for reg in regularizers:
        needs = reg.requires
        if "graph" in needs and adjoint:
            raise ValueError(
                f"regularizer {reg.name!r} differentiates the solver's internal estimates, but adjoint=True solves "
                "forward without a graph and backpropagates a continuous adjoint that cannot see them; "
                "use adjoint=False (backpropagation through the solver, the discrete adjoint)"
            )
        if "error_estimate" in needs and not plan.has_error_estimate:
            raise ValueError(
                f"regularizer {reg.name!r} needs the solver's error estimate, and method {plan.method!r} has none "
                f"here; use one that has: {', '.join(solvers_with_estimates())}"
            )
        if "stiffness" in needs and not plan.has_stiffness_estimate and plan.kind == "sde":
            raise ValueError(
                f"regularizer {reg.name!r} needs the stiffness estimate, recorded for SDE solves with "
                f"{', '.join(solvers_with_estimates())} only; method {plan.method!r} has none"
            )
        if "stiffness" in needs and not plan.has_stiffness_estimate:
            raise ValueError(
                f"regularizer {reg.name!r} needs two stages with equal c for Shampine's stiffness estimate; "
                f"method {plan.method!r} has none (c = {list(plan.c)}). dopri5, tsitouras5, dormand_prince and "
                "the non-FSAL pairs run adaptively (which add a stage at c = 1) have one"
            )
        if "stages" in needs and plan.mode == "other" and plan.kind == "sde":
            raise ValueError(
                f"regularizer {reg.name!r} reads per-step records, which SDE solves keep with "
                f"{', '.join(solvers_with_estimates())} only; method {plan.method!r} records none"
            )
        if "stages" in needs and plan.mode == "other":
            raise ValueError(f"regularizer {reg.name!r} needs Runge-Kutta stages; method {plan.method!r} has none")


def weighted_regularization(regularizers: list[WeightedRegularizer], stats, epoch: int) -> torch.Tensor:
    """sum_r weight_r(epoch) * r(stats): what ``ODEBlock``/``SDEBlock.regularization()`` return."""
    if stats is None:
        raise RuntimeError("regularization() reads the statistics of the last forward call; call the block first")
    total = torch.zeros(())
    for reg in regularizers:
        weight = reg.weight_at(epoch)
        if weight:
            total = total + weight * reg.regularizer(stats)
    return total
