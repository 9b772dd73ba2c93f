"""A block's ``regularizers`` argument as weighted, checked terms: what is recorded, what is refused, the sum.

``regularizers`` maps a regularizer to its weight. The key is a registered name, a spec with
options (``"error_estimate:power=2"``) or a regularizer object; the value is a weight (a number
>= 0 or a schedule ``weight(epoch)``), ``(weight, options)`` or ``{"weight": w, **options}``.

Each term knows its plugin's label (for messages) and what it declared in ``requires``
(``contract.REQUIRES``); the block records what the terms declare, refuses a solver or a mode that
cannot provide it before any solve, and checks every value a regularizer returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ._checks import nonnegative_float, positive_float, positive_int
from ._integrals import has_integrand
from ._plugin_values import object_label, plugin_label, split_plugin_arg
from .contract import REQUIRES, build_plugin, check_regularizer_value, check_requires

#: What a regularizer that declares no ``requires`` gets recorded: everything the solver can provide.
ALL_STATISTICS = frozenset(REQUIRES) - {"input_grad"}


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
    of silently rewarding the quantity it should penalize. ``label`` names the plugin in messages;
    ``declared`` is its ``requires`` (None: it declares none, see ``contract.check_requires``).
    """

    def __init__(self, name: str, regularizer: Any, weight: Any, label: str | None = None,
                 declared: frozenset[str] | None = frozenset()) -> None:
        if not callable(regularizer):
            raise TypeError(f"{label or name}: a regularizer is a callable stats -> scalar tensor, got "
                            f"{type(regularizer).__name__}")
        if not callable(weight):
            weight = nonnegative_float(f"regularizer {name!r}: weight", weight)
        self.name, self.regularizer, self.weight = name, regularizer, weight
        self.label = label or f"regularizer {name!r}"
        self.declared = declared

    def weight_at(self, epoch: int) -> float:
        """The weight at ``epoch`` (1-based); ``ValueError`` if a schedule gives a negative or non-finite one."""
        if not callable(self.weight):
            return self.weight
        return nonnegative_float(f"regularizer {self.name!r}: the weight schedule {self.weight!r} at epoch {epoch}",
                                 self.weight(epoch))

    @property
    def requires(self) -> frozenset:
        """What the block must refuse without: the declared words (empty when it declares none)."""
        return self.declared or frozenset()

    @property
    def records(self) -> frozenset:
        """What the block records for it: the declared words, or every statistic when it declares none."""
        return ALL_STATISTICS if self.declared is None else self.declared

    @property
    def integrated(self) -> bool:
        """Whether the regularizer has an ``integrand`` (it can be integrated under the adjoint)."""
        return has_integrand(self.regularizer)

    def __call__(self, stats: Any) -> torch.Tensor:
        """The regularizer's value on ``stats``, checked; reads of undeclared statistics are refused by name."""
        declared = self.declared
        if declared is None:
            return check_regularizer_value(self.label, self.regularizer(stats))
        previous = stats.__dict__.get("_reader")
        stats.__dict__["_reader"] = (self.label, declared)
        try:
            value = self.regularizer(stats)
        finally:
            stats.__dict__["_reader"] = previous
        return check_regularizer_value(self.label, value)


def build_regularizers(spec: Mapping[Any, Any] | None) -> list[WeightedRegularizer]:
    """Weighted terms from ``{name | spec | object: weight | (weight, options) | {"weight": w, **options}}``.

    Names are looked up among the registered step regularizers (did-you-mean on a typo); options are
    checked against the factory's signature and passed to it.
    """
    if spec is None:
        return []
    if not isinstance(spec, Mapping):
        raise TypeError(f"regularizers must be a dict name -> weight, got {type(spec).__name__}")
    out = []
    for key, value in spec.items():
        weight, options = _weight_and_options(key, value)
        if isinstance(key, str):
            name, factory, merged = split_plugin_arg("step_regularizer", key, options, "regularizers",
                                                     "error_estimate:power=2")
            label = plugin_label("step_regularizer", name)
            regularizer = build_plugin(label, factory, merged)
        else:
            if options:
                raise ValueError(f"regularizers: options {sorted(options)} apply to a regularizer given by name; "
                                 f"the object {type(key).__name__} takes them in its constructor")
            name, label, regularizer = type(key).__name__, object_label("step_regularizer", key), key
        out.append(WeightedRegularizer(name, regularizer, weight, label, check_requires(label, regularizer)))
    return out


def _weight_and_options(key: Any, value: Any) -> tuple[Any, dict]:
    who = f"regularizer {key!r}" if isinstance(key, str) else f"regularizer {type(key).__name__}"
    if isinstance(value, dict):
        options = dict(value)
        if "weight" not in options:
            raise ValueError(f"{who}: the options dict needs a 'weight'")
        return options.pop("weight"), options
    if isinstance(value, tuple):
        if len(value) != 2 or not isinstance(value[1], dict):
            raise TypeError(f"{who}: a tuple value must be (weight, options dict), got {value!r}")
        return value[0], dict(value[1])
    return value, {}


def recorded(regularizers: Sequence[WeightedRegularizer]) -> frozenset[str]:
    """Everything the block must record and enable for its regularizers (``REQUIRES`` words)."""
    needs: set[str] = set()
    for reg in regularizers:
        needs |= reg.records
        needs |= reg.requires
    return frozenset(needs)


def check_supported(regularizers: list[WeightedRegularizer], plan, gradient: str,
                    solvers_with_estimates: Callable[[], Sequence[str]], integrals: bool = True) -> None:
    """Refuse, before any solve, a regularizer the solver or the gradient mode cannot serve.

    ``solvers_with_estimates()`` lists the methods to suggest; it is called only to word a refusal
    (scanning the registry costs more than the check, which runs for every new schedule member).
    ``integrals``: whether the block integrates a regularizer's ``integrand`` under the adjoint.
    """
    for reg in regularizers:
        needs = reg.requires
        if gradient == "adjoint" and integrals and reg.integrated:
            continue  # integrated alongside the adjoint solve: it reads no statistics
        if "graph" in needs and gradient == "adjoint":
            raise ValueError(
                f"{reg.label} differentiates values inside the solver (stages, error or stiffness estimates), "
                "but gradient='adjoint' solves forward without a graph and backpropagates a continuous adjoint "
                "that cannot see them; use gradient='checkpoint' (the same gradients as 'backprop', with memory "
                "growing like the square root of the steps) or gradient='backprop'"
                + ("" if integrals else "; integral regularizers are integrated under the adjoint by ODEBlock only")
            )
        if "error_estimate" in needs and not plan.has_error_estimate:
            raise ValueError(
                f"{reg.label} needs the solver's error estimate, and method {plan.method!r} has none "
                f"here; use one that has: {', '.join(solvers_with_estimates())}"
            )
        if "stiffness" in needs and not plan.has_stiffness_estimate and plan.kind == "sde":
            raise ValueError(
                f"{reg.label} needs the stiffness estimate, recorded for SDE solves with "
                f"{', '.join(solvers_with_estimates())} only; method {plan.method!r} has none"
            )
        if "stiffness" in needs and not plan.has_stiffness_estimate:
            raise ValueError(
                f"{reg.label} needs two stages with equal c for Shampine's stiffness estimate; "
                f"method {plan.method!r} has none (c = {list(plan.c)}). dopri5, tsitouras5, dormand_prince and "
                "the non-FSAL pairs run adaptively (which add a stage at c = 1) have one"
            )
        if "field" in needs and plan.kind == "sde":
            raise ValueError(f"{reg.label} evaluates the vector field again along the solution's own flow, which an "
                             "SDE's paths do not follow; use it with ODEBlock")
        if "stages" in needs and plan.mode == "other" and plan.kind == "sde":
            raise ValueError(
                f"{reg.label} reads per-step records, which SDE solves keep with "
                f"{', '.join(solvers_with_estimates())} only; method {plan.method!r} records none"
            )
        if "stages" in needs and plan.mode == "other":
            raise ValueError(f"{reg.label} needs Runge-Kutta stages; method {plan.method!r} has none")


def weighted_regularization(regularizers: list[WeightedRegularizer], stats, epoch: int) -> torch.Tensor:
    """sum_r weight_r(epoch) * r(stats): what a block's ``regularization()`` returns."""
    if stats is None:
        raise RuntimeError("regularization() reads the statistics of the last forward call; call the block first")
    total = torch.zeros(())
    if stats.nfe_forward == 0:  # nothing was evaluated (an empty batch): there is nothing to penalize
        return total
    for index, reg in enumerate(regularizers):
        weight = reg.weight_at(epoch)
        if weight:
            # Under the adjoint an integral regularizer's value was integrated with the solve.
            integral = stats.integrals.get(index)
            value = reg(stats) if integral is None else check_regularizer_value(reg.label, integral)
            total = total + weight * value
    return total


__all__ = ["ExponentialAnnealing", "WeightedRegularizer", "build_regularizers", "check_supported", "recorded",
           "weighted_regularization"]
