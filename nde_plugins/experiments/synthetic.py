"""The synthetic tasks of Ott et al. (seed 002): concentric spheres and a particle among three minima.

Both data sets are generated here, seeded, with nothing to download:

- ``spheres``: three concentric shells in ``dim`` dimensions, radii in [0.1, 0.15] (a quarter of the
  points, class 0), [0.25, 0.3] (half, class 1) and [0.4, 0.45] (a quarter, class 0). The radius is
  ``(r_max - r_min) U^(1/dim) + r_min``, the direction a normalized Gaussian (as the authors' code).
- ``three_minima``: a unit-mass particle with friction in the potential
  ``V(x) = 0.2 (x - 2)(x - 0.5)(x + 1)(x + 0.6)(x - 1.6) x``, ``dx/dt = v``,
  ``dv/dt = -V'(x) - 0.2 v``, started at ``x ~ U[-1, 2]``, ``v ~ U[-2, 2]``; the class is the local
  minimum (x = -0.850, 0.269, 1.839) where it comes to rest. The input is the initial state (x, v).

The models follow the paper's appendix: no upstream block (the ODE acts on the input itself, one
channel), an autonomous vector field (a small Conv1d net for the spheres, an MLP for the particle),
the state at t = 1 flattened into a linear classifier; Kaiming-normal weights, zero biases,
cross-entropy, Adam, batch 128, backpropagation through the solver (no adjoint).

Scale. The paper trains 10000 (spheres, Adam 1e-4) and 30000 (three minima, Adam 5e-4) iterations.
The defaults here are CPU-minutes runs: 1500 iterations for the spheres and 3000 for the particle,
with learning rates raised to 1e-3 and 2e-3 to make up for it. At this scale the paper's effect
still shows (a model trained with few Euler steps is accurate with its own solver and falls to
chance with finer or higher-order ones; a fine training grid gives an ODE-like model), but the
critical number of steps and the accuracies are not the paper's numbers.

``train_synthetic`` trains one model with a fixed number of Euler steps K, or with the step-size
adaption of ``nde_plugins.adaption`` (``schedule="step_adaption"``), and runs the proper-ODE check
of ``nde_plugins.proper_ode`` on the test set.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any

import torch

from ..ode import ODEBlock
from ..proper_ode import proper_ode_check
from .history import IterationLog
from .progress import progress_bar
from .tasks import check_training_steps

TASKS = ("spheres", "three_minima")
N_TRAIN, N_TEST = 2000, 1000
#: Train and test sets are drawn from these seeds whatever the training seed, so runs with
#: different seeds see the same data (and differ in initial weights and batch order).
DATA_SEED, TEST_SEED = 0, 1
#: (r_min, r_max, class) of the three shells, inside out; they hold a quarter, a half and a quarter of the points.
SPHERE_SHELLS = ((0.10, 0.15, 0), (0.25, 0.30, 1), (0.40, 0.45, 0))
#: Friction of the particle, and the local minima of V (the roots of V' with V'' > 0), class by class.
GAMMA = 0.2
MINIMA = (-0.85015, 0.26895, 1.83945)
#: The labelling solve (the authors' code): classic RK4, step 0.02, up to t = 100.
SETTLE_STEP, SETTLE_TIME = 0.02, 100.0
#: A particle counts as settled when |v| < SETTLED_SPEED and it lies within MINIMUM_RADIUS of a minimum.
SETTLED_SPEED, MINIMUM_RADIUS = 1e-3, 0.02
#: The solver schedule of the paper's step adaption (``nde_plugins.adaption``): besides a fixed grid,
#: the one these tasks train under, and the one ``nde-plugins check --adapt`` trains any task under.
ADAPTIVE_SCHEDULE = "step_adaption"
#: The paper's schedule of checks for the step adaption (every 50 iterations).
ADAPTION_EVERY = 50
#: Per-task defaults: iterations and Adam's learning rate (scaled down from the paper, see above).
DEFAULT_ITERATIONS = {"spheres": 1500, "three_minima": 3000}
DEFAULT_LR = {"spheres": 1e-3, "three_minima": 2e-3}
N_CLASSES = {"spheres": 2, "three_minima": 3}


# ------------------------------------------------------------------------------------------- data


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"unknown synthetic task {task!r}; choose among {', '.join(TASKS)}")
    return task


def _check_count(name: str, value: int, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    return value


def spheres(n: int = N_TRAIN, dim: int = 2, seed: int = DATA_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points on three concentric shells in ``dim`` dimensions: inputs ``(n, 1, dim)``, labels ``(n,)``.

    Shells [0.1, 0.15] and [0.4, 0.45] are class 0 (a quarter of the points each), [0.25, 0.3] is
    class 1 (``n // 2`` points). The same ``seed`` gives the same points; the points come shell by
    shell (training draws random batches, so no shuffling is needed).
    """
    _check_count("n", n, 4)
    _check_count("dim", dim)
    g = torch.Generator().manual_seed(seed)
    counts = [n // 4, n // 2]
    counts.append(n - sum(counts))
    xs, ys = [], []
    for (r_min, r_max, label), count in zip(SPHERE_SHELLS, counts):
        direction = torch.randn(count, dim, generator=g)
        direction = direction / direction.norm(dim=1, keepdim=True)
        # U^(1/dim) makes the points uniform in the shell's volume rather than bunched at r_min.
        radius = (r_max - r_min) * torch.rand(count, 1, generator=g) ** (1.0 / dim) + r_min
        xs.append(radius * direction)
        ys.append(torch.full((count,), label, dtype=torch.long))
    return torch.cat(xs).unsqueeze(1), torch.cat(ys)


def potential_slope(x: torch.Tensor) -> torch.Tensor:
    """V'(x) = 1.2 x^5 - 2.5 x^4 - 0.768 x^3 + 2.364 x^2 + 0.176 x - 0.192 (Horner's scheme)."""
    return ((((1.2 * x - 2.5) * x - 0.768) * x + 2.364) * x + 0.176) * x - 0.192


def settle(x: torch.Tensor, v: torch.Tensor, *, step: float = SETTLE_STEP, t_end: float = SETTLE_TIME,
           gamma: float = GAMMA) -> tuple[torch.Tensor, torch.Tensor]:
    """The true particle dynamics from ``(x, v)`` to ``t_end``: classic RK4 at a fixed ``step``, all points at once.

    Returns the final positions and velocities. This is the data generator's own solve, written out
    (not a model solve): a few thousand 1-D states take about a second.
    """
    def acceleration(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return -potential_slope(x) - gamma * v

    half = step / 2
    with torch.no_grad():
        for _ in range(round(t_end / step)):
            a1 = acceleration(x, v)
            x2, v2 = x + half * v, v + half * a1
            a2 = acceleration(x2, v2)
            x3, v3 = x + half * v2, v + half * a2
            a3 = acceleration(x3, v3)
            x4, v4 = x + step * v3, v + step * a3
            a4 = acceleration(x4, v4)
            x = x + step / 6 * (v + 2 * v2 + 2 * v3 + v4)
            v = v + step / 6 * (a1 + 2 * a2 + 2 * a3 + a4)
    return x, v


def nearest_minimum(x: torch.Tensor) -> torch.Tensor:
    """The class of each position: the index of the closest local minimum of V."""
    return (x.unsqueeze(-1) - torch.tensor(MINIMA, dtype=x.dtype)).abs().argmin(-1)


def three_minima(n: int = N_TRAIN, seed: int = DATA_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` initial states ``(x0, v0)`` of the particle, shaped ``(n, 1, 2)``, and the minimum each ends in.

    Labels come from ``settle`` (RK4, step 0.02, to t = 100) in double precision. Raises
    ``RuntimeError`` if a particle has not come to rest (|v| >= 1e-3, or farther than 0.02 from every
    minimum): its label would be a guess.
    """
    _check_count("n", n)
    g = torch.Generator().manual_seed(seed)
    x0 = 3 * torch.rand(n, generator=g, dtype=torch.float64) - 1
    v0 = 4 * torch.rand(n, generator=g, dtype=torch.float64) - 2
    x, v = settle(x0, v0)
    label = nearest_minimum(x)
    distance = (x - torch.tensor(MINIMA, dtype=x.dtype)[label]).abs()
    restless = (v.abs() >= SETTLED_SPEED) | (distance >= MINIMUM_RADIUS)
    if bool(restless.any()):
        raise RuntimeError(f"three_minima(seed={seed}): {int(restless.sum())} particle(s) did not settle by "
                           f"t = {SETTLE_TIME:g} (largest |v| {float(v.abs().max()):.2e}); try another seed")
    return torch.stack([x0, v0], 1).unsqueeze(1).float(), label


@dataclass(frozen=True)
class SyntheticData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@lru_cache(maxsize=4)
def _load(task: str, n_train: int, n_test: int) -> SyntheticData:
    make = spheres if task == "spheres" else three_minima
    return SyntheticData(*make(n_train, seed=DATA_SEED), *make(n_test, seed=TEST_SEED))


def load_task(task: str, n_train: int = N_TRAIN, n_test: int = N_TEST) -> SyntheticData:
    """Train and test sets of ``task`` (spheres in 2-D), drawn from the fixed seeds ``DATA_SEED`` and ``TEST_SEED``.

    Cached: a grid of runs in one process generates each set once.
    """
    return _load(_check_task(task), _check_count("n_train", n_train), _check_count("n_test", n_test))


# ----------------------------------------------------------------------------------------- models


class SpheresField(torch.nn.Module):
    """f(z) = Conv1d(32, 1, 1)(ReLU(Conv1d(32, 32, 3, pad 1)(ReLU(Conv1d(1, 32, 1)(z))))), autonomous."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv1d(1, hidden, 1), torch.nn.ReLU(),
            torch.nn.Conv1d(hidden, hidden, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv1d(hidden, 1, 1),
        )

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        # The same function as self.net(z), through matrix products on the (batch, dim, channels)
        # layout: on CPU a Conv1d call over a signal of length 2 costs about ten times a matrix product
        # of the same size, and the training runs are made of thousands of these calls.
        first, middle, last = self.net[0], self.net[2], self.net[4]
        h = torch.relu(torch.nn.functional.linear(z.transpose(1, 2), first.weight[:, :, 0], first.bias))
        length = h.shape[1]
        padded = torch.nn.functional.pad(h, (0, 0, 1, 1))
        windows = torch.cat([padded[:, k:k + length] for k in range(3)], dim=-1)  # (batch, dim, 3 * channels)
        kernel = middle.weight.permute(0, 2, 1).reshape(middle.out_channels, -1)  # matches the windows' order
        h = torch.relu(torch.nn.functional.linear(windows, kernel, middle.bias))
        return torch.nn.functional.linear(h, last.weight[:, :, 0], last.bias).transpose(1, 2)


class EnergyField(torch.nn.Module):
    """f(z) = Linear(48, 2)(ReLU(Linear(48, 48)(ReLU(Linear(2, 48)(z))))), autonomous."""

    def __init__(self, hidden: int = 48) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(2, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
            torch.nn.Linear(hidden, 2),
        )

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class CountingField(torch.nn.Module):
    """The field, counting every evaluation (training solves, the adaption's checks, anything else)."""

    def __init__(self, field: torch.nn.Module) -> None:
        super().__init__()
        self.field = field
        self.evaluations = 0

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self.evaluations += 1
        return self.field(t, z)


class SyntheticClassifier(torch.nn.Module):
    """The ODE block on the input itself (no upstream block), then Flatten and a linear classifier."""

    def __init__(self, block: ODEBlock, features: int, n_classes: int) -> None:
        super().__init__()
        self.block = block
        self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(features, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x))


def _kaiming(module: torch.nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, (torch.nn.Linear, torch.nn.Conv1d)):
            torch.nn.init.kaiming_normal_(layer.weight, mode="fan_in")
            torch.nn.init.zeros_(layer.bias)


# --------------------------------------------------------------------------------------- training


def accepts_schedule(schedule: str | None) -> bool:
    """Whether the synthetic tasks train under the solver schedule ``schedule``.

    They train on a fixed grid (``None``) or under ``ADAPTIVE_SCHEDULE``: the paper's experiment
    compares the two, and the proper-ODE check reads the adapted step's history.
    """
    return schedule is None or schedule == ADAPTIVE_SCHEDULE


@dataclass
class SyntheticConfig:
    """One training run.

    ``steps``: the number of fixed steps K on [0, 1] (step 1/K). With ``schedule="step_adaption"``
    the step is adapted during training instead, starting from Hairer's heuristic on the first
    batch (the paper), or from 1/``steps`` when ``steps`` is given; ``adaption_every`` is the number
    of iterations between its checks. ``iterations`` and ``lr`` default per task (see the module
    docstring: the paper trains longer, at smaller rates).
    """

    task: str = "spheres"
    method: str = "euler"
    steps: int | None = None
    schedule: str | None = None
    iterations: int | None = None
    batch_size: int = 128
    lr: float | None = None
    seed: int = 0
    adaption_every: int = ADAPTION_EVERY

    def resolved(self) -> SyntheticConfig:
        """This configuration, checked, with the per-task defaults filled in."""
        _check_task(self.task)
        if not accepts_schedule(self.schedule):
            raise ValueError(f"schedule must be None (fixed steps) or {ADAPTIVE_SCHEDULE!r}, got {self.schedule!r}")
        if self.schedule is None and self.steps is None:
            raise ValueError(f"give steps=K for a fixed grid of K steps, or schedule={ADAPTIVE_SCHEDULE!r}")
        if self.steps is not None:
            check_training_steps("steps", _check_count("steps", self.steps))
        iterations = DEFAULT_ITERATIONS[self.task] if self.iterations is None else self.iterations
        lr = DEFAULT_LR[self.task] if self.lr is None else float(self.lr)
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        _check_count("batch_size", self.batch_size)
        _check_count("adaption_every", self.adaption_every)
        return replace(self, iterations=_check_count("iterations", iterations), lr=lr)


@dataclass
class SyntheticResult:
    """What one run measured.

    ``test_accuracy`` is with the training solver (for an adapted run: at its final step);
    ``nfe_per_iteration`` / ``mean_nfe`` count the forward evaluations of the training solve
    (``block.stats.nfe_forward``, the authors' accounting); ``mean_nfe_with_checks`` adds the
    adaption's own evaluations (all field evaluations during training, per iteration).
    ``steps_per_iteration`` is the number of steps of each training solve and ``step_history`` the
    number of steps after every adaption check (empty for a fixed grid). ``check`` is the proper-ODE
    check on the test set (``CheckReport.as_dict()``). ``iterations`` holds per iteration the loss,
    batch accuracy (%) and forward / backward NFE of the training solve (``IterationLog``).
    """

    config: dict
    test_accuracy: float
    train_accuracy: float
    mean_nfe: float
    mean_nfe_with_checks: float
    final_steps: int
    check: dict
    train_time_s: float
    nfe_per_iteration: list[int] = field(default_factory=list)
    steps_per_iteration: list[int] = field(default_factory=list)
    step_history: list[int] = field(default_factory=list)
    iterations: IterationLog = field(default_factory=IterationLog)

    @property
    def verdict(self) -> str:
        return self.check["verdict"]

    @property
    def worst_gap(self) -> float:
        return self.check["worst_gap"]

    def as_dict(self) -> dict:
        return asdict(self)


def steps_of(h: float, span: float = 1.0) -> int:
    """The number of steps a fixed grid of step ``h`` takes over ``span`` (torchdiffeq's grid: the last step is
    shortened, so ceil; a tiny tolerance keeps 1/K from rounding up to K + 1)."""
    return max(1, math.ceil(span / h - 1e-9))


def build_model(config: SyntheticConfig) -> SyntheticClassifier:
    """The paper's model for ``config.task``, initialized from ``config.seed``; the block integrates over [0, 1]."""
    torch.manual_seed(config.seed)
    field = SpheresField() if config.task == "spheres" else EnergyField()
    if config.schedule is None:
        options: dict[str, Any] = {"step_size": 1.0 / config.steps}
        schedule: dict[str, Any] = {}
    else:
        # The block's own step is only where the schedule starts when steps is given.
        start = 1.0 if config.steps is None else 1.0 / config.steps
        options = {"step_size": start}
        schedule_options: dict[str, Any] = {"k": config.adaption_every}
        if config.steps is not None:
            schedule_options["initial_step"] = start
        schedule = {"schedule": config.schedule, "schedule_options": schedule_options}
    block = ODEBlock(CountingField(field), t=(0.0, 1.0), method=config.method, options=options, **schedule)
    model = SyntheticClassifier(block, features=2, n_classes=N_CLASSES[config.task])
    _kaiming(model)
    return model


def _accuracy(model: SyntheticClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).double().mean())


def fit_synthetic(config: SyntheticConfig, progress: bool | None = None
                  ) -> tuple[SyntheticClassifier, SyntheticResult]:
    """Train as ``config`` says; return the model (in eval mode) and its ``SyntheticResult``.

    Each iteration draws a batch (epochs of random permutations of the training set, the last
    partial batch dropped so every batch has ``batch_size`` points), backpropagates through the
    solver and, under step adaption, calls ``block.update(model, x, y)`` after
    ``backward`` and before the optimizer step (as the authors' code). ``progress``: a tqdm bar
    (None: only on a terminal). The training time covers the loop only, the adaption's checks
    included; the proper-ODE check of the test set runs after it.
    """
    config = config.resolved()
    data = load_task(config.task)
    model = build_model(config)
    block = model.block
    counter: CountingField = block.field
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    per_epoch = max(1, len(data.x_train) // config.batch_size)
    bar = progress_bar(config.iterations, progress)
    nfe, steps, order = [], [], torch.zeros(0, dtype=torch.long)
    log = IterationLog()
    model.train()
    start = time.perf_counter()
    for it in range(config.iterations):
        if it % per_epoch == 0:
            order = torch.randperm(len(data.x_train), generator=generator)
        idx = order[(it % per_epoch) * config.batch_size:(it % per_epoch + 1) * config.batch_size]
        x, y = data.x_train[idx], data.y_train[idx]
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"training diverged at iteration {it} (loss {value}); lower lr")
        nfe.append(block.stats.nfe_forward)
        steps.append(block.stats.steps_accepted)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # Read before the schedule's update: its comparison solves replace the block's statistics.
        log.record(value, nfe[-1], block.stats.nfe_backward,
                   accuracy=(logits.detach().argmax(-1) == y).float().mean().item() * 100)
        block.update(model, x, y)
        optimizer.step()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{log.loss[-1]:.3f}", steps=steps[-1])
    train_time = time.perf_counter() - start
    evaluations = counter.evaluations
    if bar is not None:
        bar.close()
    model.eval()
    report = proper_ode_check(model, block, (data.x_test, data.y_test))
    schedule = block.schedule
    history = [] if schedule is None else [steps_of(h) for h in schedule.history]
    final = config.steps if schedule is None else steps_of(schedule.h)
    result = SyntheticResult(
        config=asdict(config),
        test_accuracy=report.training_value,
        train_accuracy=_accuracy(model, data.x_train, data.y_train),
        mean_nfe=sum(nfe) / len(nfe),
        mean_nfe_with_checks=evaluations / config.iterations,
        final_steps=final,
        check=report.as_dict(),
        train_time_s=train_time,
        nfe_per_iteration=nfe,
        steps_per_iteration=steps,
        step_history=history,
        iterations=log,
    )
    return model, result


def train_synthetic(config: SyntheticConfig, progress: bool | None = None) -> SyntheticResult:
    """Train one model and check it (see ``fit_synthetic``); the result only, for grids of runs."""
    return fit_synthetic(config, progress)[1]



__all__ = ["ADAPTIVE_SCHEDULE", "DATA_SEED", "MINIMA", "TASKS", "TEST_SEED", "EnergyField", "SpheresField",
           "SyntheticClassifier", "SyntheticConfig", "SyntheticData", "SyntheticResult", "accepts_schedule",
           "build_model", "fit_synthetic", "load_task", "nearest_minimum", "potential_slope", "settle", "spheres",
           "steps_of", "three_minima", "train_synthetic"]
