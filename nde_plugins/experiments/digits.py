"""Neural ODE classifier on scikit-learn's embedded 8x8 digits (1797 images, 10 classes).

The model follows the ERNODE paper's MNIST setup scaled to the task: the image (64 values in
[0, 1]) is the initial state, the field is ``tanh(W2 tanh(W1 [z; t] + b1) + b2)`` with 100 hidden
units, the state at t = 1 goes through a linear head. The train/test split is fixed (seed 0,
20% test) whatever the training seed, so runs with different seeds see the same data.

With an end-time sampler (``TrainConfig.end_time = "steer"``, seed 003) each training solve ends at
a random T around t1 = 1; evaluation integrates to t1. ``accuracy_over_end_times`` measures the
accuracy with the solve stopped at other times, which shows whether the state has settled.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..ode import ODEBlock, odeint
from .history import IterationLog
from .progress import progress_bar

SPLIT_SEED = 0
TEST_FRACTION = 0.2
#: The integration interval of the ODE block.
T0, T1 = 0.0, 1.0
#: End-time draws come from a stream of their own: the batch order already uses the training seed.
END_TIME_STREAM = 0x5EED_0003


def load_digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_test, y_test); pixels scaled to [0, 1], the split fixed."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the digits task needs scikit-learn: pip install 'nde_plugins[tasks]'") from exc
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_test = int(round(TEST_FRACTION * len(x)))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


class TimeConcatField(torch.nn.Module):
    """f(t, z) = tanh(W2 tanh(W1 [z; t] + b1) + b2)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.inner = torch.nn.Linear(dim + 1, hidden)
        self.outer = torch.nn.Linear(hidden, dim)

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        tt = t.to(z.dtype).expand(z.shape[0], 1)
        return torch.tanh(self.outer(torch.tanh(self.inner(torch.cat([z, tt], dim=1)))))


class DigitsClassifier(torch.nn.Module):
    def __init__(self, block: ODEBlock, n_classes: int = 10) -> None:
        super().__init__()
        self.block = block
        self.head = torch.nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x))


@dataclass
class TrainConfig:
    """One training run. ``end_time``: a registered end-time sampler (e.g. ``"steer"``) or None;
    ``end_time_options`` go to its factory (``{"b": 0.5}``). ``step_size`` runs the method on a
    fixed grid; ``schedule`` / ``schedule_options`` name a solver schedule (``"smoothing"``,
    ``"step_adaption"``, ...), whose ``update`` the training loop calls after every backward.
    ``adjoint``: backpropagate with ``odeint_adjoint`` (its backward evaluations are then counted)."""

    method: str = "dopri5"
    rtol: float = 1.4e-8
    atol: float = 1.4e-8
    regularizers: dict[str, Any] = field(default_factory=dict)
    end_time: str | None = None
    end_time_options: dict[str, Any] = field(default_factory=dict)
    step_size: float | None = None
    schedule: str | None = None
    schedule_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 15
    seed: int = 0
    batch_size: int = 128
    lr: float = 3e-3
    hidden: int = 100
    adjoint: bool = False


@dataclass
class TrainResult:
    config: dict
    train_accuracy: float
    test_accuracy: float
    nfe_predict: int
    train_time_s: float
    predict_time_s: float
    history: list[dict] = field(default_factory=list)
    iterations: IterationLog = field(default_factory=IterationLog)

    def as_dict(self) -> dict:
        return asdict(self)


def _accuracy(model: DigitsClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item() * 100


def build_block(config: TrainConfig) -> ODEBlock:
    """The ODE block over [T0, T1] with the configured method, regularizers and end-time sampler.

    The sampler is seeded from the training seed, so a run with STEER is reproducible.
    """
    policy: dict[str, Any] = {}
    if config.end_time is not None:
        policy = {"end_time": config.end_time, "end_time_options": dict(config.end_time_options)}
    if config.schedule is not None:
        policy |= {"schedule": config.schedule, "schedule_options": dict(config.schedule_options)}
    if policy:
        policy["seed"] = config.seed ^ END_TIME_STREAM
    options = {"step_size": config.step_size} if config.step_size is not None else None
    return ODEBlock(TimeConcatField(64, config.hidden), t=(T0, T1), method=config.method, rtol=config.rtol,
                    atol=config.atol, options=options, regularizers=config.regularizers or None,
                    adjoint=config.adjoint, **policy)


def accuracy_over_end_times(model: DigitsClassifier, x: torch.Tensor, y: torch.Tensor,
                            times: Sequence[float]) -> list[float]:
    """Test accuracy (%) with the block's solve stopped at each end time T in ``times``, in order.

    The solve runs from the block's t0 to T with the block's own method and tolerances (no
    sampler: every T is used as given), then the head classifies the state. A model whose state
    has settled by t1 - b (what STEER trains for) scores about the same for every T in
    [t1 - b, t1 + b]. Each T must be finite and differ from t0.
    """
    block = model.block
    t0 = float(block.t[0])
    ends = [float(end) for end in times]
    if not ends:
        raise ValueError("times is empty; give at least one end time, e.g. [0.5, 1.0, 1.5]")
    for end in ends:
        if not math.isfinite(end) or end == t0:
            raise ValueError(f"times must hold finite end times other than t0 = {t0:g}, got {end!r}")
    accuracies = []
    with torch.no_grad():
        for end in ends:
            t = torch.tensor([t0, end], dtype=x.dtype)
            z = odeint(block.field, x, t, method=block.method_name, rtol=block.rtol, atol=block.atol,
                       options=block.options)[-1]
            accuracies.append((model.head(z).argmax(1) == y).float().mean().item() * 100)
    return accuracies


def fit_digits(config: TrainConfig, progress: bool | None = None) -> tuple[DigitsClassifier, TrainResult]:
    """Train with Adam; return the trained model (in eval mode) and its report: accuracy, test-set
    prediction NFE and wall times.

    ``progress``: show a tqdm bar (None: only on a terminal). Training time covers the optimization
    loop only; prediction time is one forward solve over the whole test set (integrated to t1,
    whatever the end-time sampler). ``history`` holds per epoch the mean forward NFE of the
    training solves, which with a sampler varies with the drawn end times; ``iterations`` holds
    per batch the loss, batch accuracy and forward / backward NFE (``IterationLog``).
    """
    x_train, y_train, x_test, y_test = load_digits_split()
    torch.manual_seed(config.seed)
    block = build_block(config)
    model = DigitsClassifier(block)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    n_batches = (len(x_train) + config.batch_size - 1) // config.batch_size
    bar = progress_bar(config.epochs * n_batches, progress, "batch")
    history = []
    log = IterationLog(adjoint=config.adjoint)
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        block.epoch = epoch
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        nfe, reg_total = 0, 0.0
        for i in range(n_batches):
            idx = order[i * config.batch_size:(i + 1) * config.batch_size]
            logits = model(x_train[idx])
            loss = torch.nn.functional.cross_entropy(logits, y_train[idx])
            reg = block.regularization()
            optimizer.zero_grad(set_to_none=True)
            (loss + reg).backward()
            # Read before the schedule's update: its comparison solves replace the block's statistics.
            stats = block.stats
            update = getattr(block.policy.schedule, "update", None)
            if update is not None:  # step / tolerance adaption compare solvers on this batch
                update(model, x_train[idx], y_train[idx])
            optimizer.step()
            nfe += stats.nfe_forward
            reg_total += reg.item()
            log.record(loss.item(), stats.nfe_forward, stats.nfe_backward,
                       accuracy=(logits.detach().argmax(1) == y_train[idx]).float().mean().item() * 100)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{log.loss[-1]:.3f}", nfe=stats.nfe_forward)
        history.append({"epoch": epoch, "mean_nfe": nfe / n_batches, "mean_regularization": reg_total / n_batches})
    train_time = time.perf_counter() - start
    if bar is not None:
        bar.close()
    model.eval()
    with torch.no_grad():
        start = time.perf_counter()
        logits = model(x_test)
        predict_time = time.perf_counter() - start
    nfe_predict = block.stats.nfe_forward
    test_acc = (logits.argmax(1) == y_test).float().mean().item() * 100
    result = TrainResult(
        config=asdict(config) | {"regularizers": {k: repr(v) for k, v in config.regularizers.items()}},
        train_accuracy=_accuracy(model, x_train, y_train),
        test_accuracy=test_acc,
        nfe_predict=nfe_predict,
        train_time_s=train_time,
        predict_time_s=predict_time,
        history=history,
        iterations=log,
    )
    return model, result


def train_digits(config: TrainConfig, progress: bool | None = None) -> TrainResult:
    """Train with Adam, report accuracy, test-set prediction NFE and wall times (see ``fit_digits``)."""
    return fit_digits(config, progress)[1]

