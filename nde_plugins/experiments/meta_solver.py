"""The meta-solver experiments (Gusak et al., seed 001, sections 2.1 and 5) on scikit-learn's 8x8 digits.

A CPU stand-in for the paper's CIFAR-10 runs. The solver is the paper's: the 2-stage order-2
Runge-Kutta family ``rk2`` at u0 = 0.5 (midpoint) with 8 fixed steps on [0, 1] (step 0.125),
differentiated by plain autodiff. The training regimes are the library's solver schedules:
standard (no schedule), ``smoothing`` (u ~ Normal(u0, 0.0125) per batch) and ``switching``
(u drawn from {0.5, 0.5125, 0.4875} per batch), optionally on top of FGSM-random adversarial
training. Evaluation always uses the base solver u0.

Model. The image (64 values in [0, 1]) is the initial state of the ODE block, the field is
``tanh(W2 tanh(W1 [z; t] + b1) + b2)`` (the digits task's ``TimeConcatField``), a linear head reads
z(1). Why not the small conv net of SEEDS-SPEC T6 (conv stem, 16-channel conv field): it costs
about 25 s per run at 4 steps without adversarial training, i.e. about 100 s at 8 steps with it,
while the comparison needs at least 10 paired seeds of six variants; the 64-dimensional field
trains in a few seconds, so the seed count, not the model, bounds the resolution.

Randomness: the initial weights (``torch.manual_seed(seed)``) and the batch order depend on the
seed only, so the variants of one seed are paired. The schedule draws, the training attack's
random starts and the evaluation PGD's random starts come from streams of their own; the
evaluation starts are the same for every variant and every u of one seed.

Draws and the training attack. Smoothing and switching draw one solver per batch; the adversarial
example of that batch is computed with the same solver as the training step (the authors' code
does so for smoothing; their switching code draws again for the attack's forward pass, a
difference we drop so that the two schedules differ only in what they draw).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..builtins.schedules import ensemble_predict, solver_ensemble
from ..contract import Member
from ..ode import ODEBlock
from .attacks import accuracy, fgsm, fgsm_random, pgd
from .digits import DigitsClassifier, TimeConcatField, load_digits_split

#: The paper's CIFAR-10 solver: RK2 with u0 = 1/2, 8 steps on [0, 1].
T0, T1 = 0.0, 1.0
#: The evaluation sweep of the base solver's parameter (SEEDS-SPEC M1 sweeps u over (0, 1]).
U_GRID = tuple(round(0.1 * k, 1) for k in range(1, 11))
#: The paper's schedules (section 5.2 and the code's README): smoothing Normal(u0, 0.0125), and
#: switching over u0 and u0 +- 0.0125.
SMOOTHING_OPTIONS = {"sigma": 0.0125, "distribution": "normal"}
SWITCHING_OPTIONS = {"members": [{"u": 0.5}, {"u": 0.5125}, {"u": 0.4875}]}

#: Streams mixed into the seed, so that one kind of draw does not shift another.
SCHEDULE_STREAM = 0x5EED_0001
TRAIN_ATTACK_STREAM = 0xA77A_C0
EVAL_ATTACK_STREAM = 0xE7A1


@dataclass
class MetaConfig:
    """One training run and how it is evaluated.

    ``schedule``: None (standard training), ``"smoothing"`` or ``"switching"`` (any registered
    schedule that returns one solver per call), with ``schedule_options``. ``adversarial``: train
    on FGSM-random examples of radius ``train_eps`` (step ``train_alpha``, default 1.25 eps as in
    Wong et al.). Evaluation: clean accuracy, FGSM and PGD robust accuracy at each of ``eval_eps``
    (PGD: ``pgd_steps`` steps of ``pgd_alpha_ratio * eps`` from a random start; P1's CIFAR-10
    setting is 7 steps of eps/4). Optimizer: Adam at peak rate ``lr`` with one linear up-down
    cycle over the whole run (the paper: "one cycle per all iterations").
    """

    schedule: str | None = None
    schedule_options: dict[str, Any] = field(default_factory=dict)
    adversarial: bool = False
    train_eps: float = 0.1
    train_alpha: float | None = None
    u: float = 0.5
    steps: int = 8
    epochs: int = 30
    lr: float = 1e-2
    batch_size: int = 64
    hidden: int = 100
    seed: int = 0
    eval_eps: tuple[float, ...] = (0.05, 0.1)
    pgd_steps: int = 7
    pgd_alpha_ratio: float = 0.25

    @property
    def step_size(self) -> float:
        return (T1 - T0) / self.steps


@dataclass
class MetaResult:
    """What one run reports: ``metrics`` (percent) named by ``metric_names``, wall times and the u drawn in training.

    ``train_u`` summarizes the base-family parameter u of every training solve (mean, std, number
    of distinct values): a check that the schedule did what it says.
    """

    config: dict
    metrics: dict[str, float]
    train_time_s: float
    eval_time_s: float
    train_u: dict[str, float]

    def as_dict(self) -> dict:
        return asdict(self)


#: The digits task's classifier (ODE block on the 64 pixels, then a linear head; logits).
MetaClassifier = DigitsClassifier


def metric_names(eval_eps: Iterable[float]) -> list[str]:
    """``["clean", "FGSM 0.05", "PGD 0.05", ...]``: the keys of ``MetaResult.metrics``, in table order."""
    names = ["clean"]
    for eps in eval_eps:
        names += [f"FGSM {eps:g}", f"PGD {eps:g}"]
    return names


def build_model(config: MetaConfig) -> MetaClassifier:
    """The classifier with RK2 at ``config.u``, ``config.steps`` fixed steps and the configured schedule.

    Seeds the global generator with ``config.seed`` first: the initial weights depend on the seed only.
    """
    torch.manual_seed(config.seed)
    schedule = {}
    if config.schedule is not None:
        schedule = {"schedule": config.schedule, "schedule_options": dict(config.schedule_options),
                    "seed": config.seed ^ SCHEDULE_STREAM}
    block = ODEBlock(TimeConcatField(64, config.hidden), t=(T0, T1), method="rk2",
                     options={"u": config.u, "step_size": config.step_size}, record_stats=False, **schedule)
    return MetaClassifier(block)


def fit_meta(config: MetaConfig, data: tuple[torch.Tensor, ...] | None = None
             ) -> tuple[MetaClassifier, MetaResult]:
    """Train one model and evaluate it; returns the model (in eval mode) and its ``MetaResult``.

    ``data``: ``(x_train, y_train, x_test, y_test)``, default ``load_digits_split()``.
    """
    x_train, y_train, x_test, y_test = data if data is not None else load_digits_split()
    _check_config(config)
    model = build_model(config)
    block = model.block
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    n_batches = math.ceil(len(x_train) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * n_batches, pct_start=0.5,
        anneal_strategy="linear", cycle_momentum=False,
    )
    order_generator = torch.Generator().manual_seed(config.seed)
    attack_generator = torch.Generator().manual_seed(config.seed ^ TRAIN_ATTACK_STREAM)
    drawn: list[float] = []
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        block.epoch = epoch
        model.train()
        order = torch.randperm(len(x_train), generator=order_generator)
        for i in range(n_batches):
            idx = order[i * config.batch_size:(i + 1) * config.batch_size]
            x, y = x_train[idx], y_train[idx]
            with _one_draw(block):
                if config.adversarial:
                    x = fgsm_random(model, x, y, config.train_eps, config.train_alpha, generator=attack_generator)
                loss = F.cross_entropy(model(x), y)
            drawn.append(_u_of(block.last_method))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    train_time = time.perf_counter() - start
    model.eval()
    start = time.perf_counter()
    metrics = evaluate_robustness(model, x_test, y_test, config)
    eval_time = time.perf_counter() - start
    train_u = {"mean": statistics.fmean(drawn), "std": statistics.pstdev(drawn), "distinct": len(set(drawn))}
    return model, MetaResult(asdict(config), metrics, train_time, eval_time, train_u)


def train_meta(config: MetaConfig, data: tuple[torch.Tensor, ...] | None = None) -> MetaResult:
    """Train one model and report clean, FGSM and PGD accuracy (see ``fit_meta``)."""
    return fit_meta(config, data)[1]


def evaluate_robustness(model_fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                        config: MetaConfig, loss: Callable[..., torch.Tensor] = F.cross_entropy) -> dict[str, float]:
    """Clean accuracy and FGSM / PGD robust accuracy (percent) at every ``config.eval_eps``.

    The caller puts the model in eval mode. PGD's random starts are drawn from a generator seeded
    by ``config.seed`` alone, so every variant and solver of one seed meets the same starts.
    """
    generator = torch.Generator().manual_seed(config.seed ^ EVAL_ATTACK_STREAM)
    metrics = {"clean": accuracy(model_fn, x, y)}
    for eps in config.eval_eps:
        metrics[f"FGSM {eps:g}"] = accuracy(model_fn, fgsm(model_fn, x, y, eps, loss=loss), y)
        adv = pgd(model_fn, x, y, eps, config.pgd_alpha_ratio * eps, config.pgd_steps, generator=generator,
                  loss=loss)
        metrics[f"PGD {eps:g}"] = accuracy(model_fn, adv, y)
    return metrics


def robustness_over_u(model: MetaClassifier, x: torch.Tensor, y: torch.Tensor, config: MetaConfig,
                      us: Sequence[float] = U_GRID) -> list[dict[str, float]]:
    """One row per u: the trained model's metrics with its block solving RK2 at u instead of u0.

    Every solve of the evaluation, the attacks' included, uses u (the attacker sees the solver the
    model is evaluated with). Each row also holds ``"logit shift %"``: how far the clean logits
    move from those of the base solver, 100 mean|logits(u) - logits(u0)| / mean|logits(u0)|. A
    small shift means the trained dynamics hardly depend on the solver, so that training over
    several solvers (smoothing, switching) has little to act on. The block's own solver is
    restored afterwards, also on error.
    """
    block = model.block
    base = block.base_solver
    if "u" not in base.params:
        raise ValueError(f"robustness_over_u replaces the family parameter u, but the block's method "
                         f"{base.method!r} has the parameters {sorted(base.params)}")
    was_training = model.training
    model.eval()
    rows = []
    try:
        with torch.no_grad():
            reference = model(x)
        for u in us:
            with block.solving_with(Member(base.method, {**base.params, "u": float(u)})):
                with torch.no_grad():
                    shift = (model(x) - reference).abs().mean() / reference.abs().mean()
                rows.append({"u": float(u), **evaluate_robustness(model, x, y, config),
                             "logit shift %": 100 * float(shift)})
    finally:
        model.train(was_training)
    return rows


def ensemble_robustness(model: MetaClassifier, x: torch.Tensor, y: torch.Tensor, config: MetaConfig,
                        size: int = 4, sigma: float = 0.2) -> dict[str, float]:
    """The metrics of the "ensemble of models for free": mean softmax over the base solver and ``size - 1``
    solvers drawn once around it (Normal, ``sigma``; the authors' notebook uses 0.2).

    The attacks differentiate the NLL of the log of the mean probabilities, as the notebook does.
    """
    members = solver_ensemble(model.block, size, sigma=sigma, seed=config.seed ^ SCHEDULE_STREAM)
    was_training = model.training
    model.eval()
    try:
        def log_mean_probs(inputs: torch.Tensor) -> torch.Tensor:
            return ensemble_predict(model, inputs, members).clamp_min(1e-12).log()

        return evaluate_robustness(log_mean_probs, x, y, config, loss=F.nll_loss)
    finally:
        model.train(was_training)


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample std with ddof 1 over sqrt(n); 0 for one value)."""
    if not values:
        raise ValueError("mean_se needs at least one value")
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return mean, se


def paired_differences(treated: Sequence[Mapping[str, float]], control: Sequence[Mapping[str, float]],
                       names: Iterable[str]) -> dict[str, tuple[float, float]]:
    """Per metric, mean +- s.e. of ``treated[i][name] - control[i][name]`` over seeds i (paired by seed).

    Pairing removes what the seed does to both runs (initial weights, batch order, attack starts),
    which is most of the seed-to-seed spread.
    """
    if len(treated) != len(control):
        raise ValueError(f"paired differences need the same seeds on both sides, got {len(treated)} and "
                         f"{len(control)} runs")
    return {name: mean_se([t[name] - c[name] for t, c in zip(treated, control)]) for name in names}


@contextlib.contextmanager
def _one_draw(block: ODEBlock):
    """Within the block, one schedule draw for the whole batch (training attack and training step)."""
    members = block.members_for(training=True)
    if block.schedule is None or len(members) != 1:  # no schedule, or an output ensemble: the block decides
        yield
        return
    with block.solving_with(members[0]):
        yield


def _u_of(last_method: Any) -> float:
    method = last_method if isinstance(last_method, tuple) else last_method[0]
    return float(method[1].get("u", float("nan")))


def _check_config(config: MetaConfig) -> None:
    if config.steps < 1 or config.epochs < 1 or config.batch_size < 1:
        raise ValueError(f"steps, epochs and batch_size must be >= 1, got {config.steps}, {config.epochs}, "
                         f"{config.batch_size}")
    if config.adversarial and not config.train_eps > 0:
        raise ValueError(f"adversarial training needs train_eps > 0, got {config.train_eps!r}")
    if not config.eval_eps:
        raise ValueError("eval_eps is empty; give at least one attack radius, e.g. (0.05, 0.1)")


__all__ = [
    "MetaClassifier", "MetaConfig", "MetaResult", "SMOOTHING_OPTIONS",
    "SWITCHING_OPTIONS", "U_GRID", "build_model", "ensemble_robustness", "evaluate_robustness", "fit_meta",
    "mean_se", "metric_names", "paired_differences", "robustness_over_u", "train_meta",
]
