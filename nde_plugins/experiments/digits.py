"""Neural ODE classifier on scikit-learn's embedded 8x8 digits (1797 images, 10 classes).

The model follows the ERNODE paper's MNIST setup scaled to the task: the image (64 values in
[0, 1]) is the initial state, the field is ``tanh(W2 tanh(W1 [z; t] + b1) + b2)`` with 100 hidden
units, the state at t = 1 goes through a linear head. The train/test split is fixed (seed 0,
20% test) whatever the training seed, so runs with different seeds see the same data.

With an end-time sampler (``TrainConfig.end_time = "steer"``, seed 003) each training solve ends at
a random T around t1 = 1; evaluation integrates to t1. ``accuracy_over_end_times`` measures the
accuracy with the solve stopped at other times, which shows whether the state has settled.

Under an initialized ``torch.distributed`` process group (``torchrun``, ``nde-plugins train --nproc
N``) ``fit_digits`` trains data-parallel on W ranks: ``TrainConfig.batch_size`` stays the *global*
batch, so each rank takes ``batch_size / W`` samples per step (the batch size must divide by W)
and the run makes as many optimizer steps per epoch as one process does. See ``fit_digits``.
"""

from __future__ import annotations

import inspect
import math
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..distributed import all_ranks_mean, all_reduce_counts, is_distributed, rank_and_world, step_counts
from ..ode import ODEBlock, odeint
from .history import IterationLog
from .progress import progress_bar

SPLIT_SEED = 0
TEST_FRACTION = 0.2
#: The integration interval of the ODE block.
T0, T1 = 0.0, 1.0
#: End-time draws come from a stream of their own: the batch order already uses the training seed.
END_TIME_STREAM = 0x5EED_0003
#: Per-rank numbers of a run that add up over ranks (``TrainResult.ranks_total``); each rank's
#: ``train_time_s`` and ``parameter_checksum`` are reported beside them but not summed.
STEP_COUNTS = ("nfe_forward", "nfe_backward", "nfe_diffusion", "steps_accepted", "steps_rejected", "regularization")
ADDITIVE_COUNTS = ("samples", "batches", *STEP_COUNTS)


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
    ``gradient``: how gradients are computed (``"backprop"``, ``"adjoint"``: backward evaluations
    counted, ``"checkpoint"``: recomputed evaluations counted); ``adjoint=True`` is its older spelling."""

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
    gradient: str | None = None


@dataclass
class TrainResult:
    """What ``fit_digits`` reports.

    ``ranks`` holds one entry per process (one in a single process), in rank order: its training
    samples and batches, its training solves' NFE (forward, adjoint backward, diffusion), accepted
    and rejected steps and regularization values, all summed over its batches, its training time,
    and a CRC-32 checksum of its trained parameters (equal on every rank when the replicas agree).
    ``ranks_total`` sums the additive numbers (``ADDITIVE_COUNTS``) over the ranks.
    """

    config: dict
    train_accuracy: float
    test_accuracy: float
    nfe_predict: int
    train_time_s: float
    predict_time_s: float
    history: list[dict] = field(default_factory=list)
    iterations: IterationLog = field(default_factory=IterationLog)
    ranks: list[dict] = field(default_factory=list)
    ranks_total: dict = field(default_factory=dict)

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
                    adjoint=config.adjoint, gradient=config.gradient, **policy)


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


def local_batch_size(batch_size: int, world_size: int) -> int:
    """Samples each of ``world_size`` ranks takes per step from a global batch of ``batch_size``."""
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} does not divide over {world_size} ranks: the batch size is the "
                         f"global batch, split evenly; give a multiple of {world_size}")
    return batch_size // world_size


def _epoch_orders(n: int, config: TrainConfig) -> Iterator[torch.Tensor]:
    """This rank's sample order for each epoch, in turn.

    One process: a permutation per epoch from a generator seeded with the training seed (as before
    data-parallel training existed). Under a process group: a ``DistributedSampler`` shuffled with
    the training seed, which pads the set to a multiple of W (repeating a few samples) and deals
    every W-th sample of the epoch's permutation to each rank, so all ranks take as many batches.
    """
    if not is_distributed():
        generator = torch.Generator().manual_seed(config.seed)
        for _ in range(config.epochs):
            yield torch.randperm(n, generator=generator)
        return
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), shuffle=True, seed=config.seed)
    for epoch in range(config.epochs):
        # Epoch e's permutation is seeded with seed + e: the first one is the one a single process draws.
        sampler.set_epoch(epoch)
        yield torch.tensor(list(sampler), dtype=torch.long)


def _data_parallel(model: DigitsClassifier) -> torch.nn.Module:
    """``model`` inside DistributedDataParallel under a process group; the model itself otherwise.

    Every parameter gets its gradient in each backward pass (regularizers, samplers and schedules
    alike), so ``find_unused_parameters`` stays off; the block's buffers (its time grid) never
    change, so the buffer broadcast before every forward is skipped (``forward_sync_buffers=False``,
    ``broadcast_buffers=False`` before torch added it).
    """
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel

    newer = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    return DistributedDataParallel(model, **{"forward_sync_buffers" if newer else "broadcast_buffers": False})


def parameter_checksum(model: torch.nn.Module) -> int:
    """CRC-32 of the bytes of every parameter, in order: equal exactly when the parameters are bitwise equal
    (up to a 2**-32 chance of a collision)."""
    crc = 0
    for parameter in model.parameters():
        crc = zlib.crc32(parameter.detach().cpu().contiguous().numpy().tobytes(), crc)
    return crc


def _rank_counts(stats: Any, regularization: torch.Tensor, samples: int) -> dict[str, float]:
    """One batch's additive numbers on this rank (``ADDITIVE_COUNTS``)."""
    counts = step_counts(stats, regularization)
    return {"samples": float(samples), "batches": 1.0, **{key: counts[key] for key in STEP_COUNTS}}


def fit_digits(config: TrainConfig, progress: bool | None = None) -> tuple[DigitsClassifier, TrainResult]:
    """Train with Adam; return the trained model (in eval mode) and its report: accuracy, test-set
    prediction NFE and wall times.

    ``progress``: show a tqdm bar (None: only on a terminal). Training time covers the optimization
    loop only; prediction time is one forward solve over the whole test set (integrated to t1,
    whatever the end-time sampler). ``history`` holds per epoch the mean forward NFE of the
    training solves, which with a sampler varies with the drawn end times; ``iterations`` holds
    per batch the loss, batch accuracy and forward / backward NFE (``IterationLog``); ``ranks``
    and ``ranks_total`` the training numbers per process and over all of them.

    Under an initialized process group of W ranks every rank calls this with the same config:
    the model trains inside ``DistributedDataParallel`` (gradients averaged over the ranks), each
    rank takes ``batch_size / W`` samples per step from a ``DistributedSampler`` (``batch_size``
    must divide by W), the progress bar shows on rank 0 only, and the block's draws follow the
    seeding rule of ``nde_plugins.distributed`` (each rank its own stream unless synchronized).
    ``history`` then averages over the ranks; ``iterations`` and ``train_time_s`` are this rank's
    own. Evaluation (accuracies, prediction NFE and time) runs on every rank over the whole sets,
    with parameters that DDP keeps identical, so every rank reports the numbers one process would
    report for that model; the sets are small, so the repeated work costs little.
    """
    x_train, y_train, x_test, y_test = load_digits_split()
    rank, world = rank_and_world()
    local_batch = local_batch_size(config.batch_size, world)
    # The sampler deals ceil(n / W) samples to every rank (one process: all n), so all ranks take as many batches.
    n_batches = math.ceil(math.ceil(len(x_train) / world) / local_batch)
    torch.manual_seed(config.seed)  # the same initial parameters on every rank
    block = build_block(config)
    model = DigitsClassifier(block)
    trained = _data_parallel(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    bar = progress_bar(config.epochs * n_batches, progress if rank == 0 else False, "batch")
    history = []
    log = IterationLog(adjoint=block.adjoint, gradient=block.gradient)
    counts = dict.fromkeys(ADDITIVE_COUNTS, 0.0)
    start = time.perf_counter()
    for epoch, order in enumerate(_epoch_orders(len(x_train), config), start=1):
        block.epoch = epoch
        model.train()
        nfe, reg_total = 0, 0.0
        for i in range(n_batches):
            idx = order[i * local_batch:(i + 1) * local_batch]
            logits = trained(x_train[idx])
            loss = torch.nn.functional.cross_entropy(logits, y_train[idx])
            reg = block.regularization()
            optimizer.zero_grad(set_to_none=True)
            (loss + reg).backward()
            # Read before the schedule's update: its comparison solves replace the block's statistics.
            stats = block.stats
            # Step / tolerance adaption compare solvers on this batch (over all ranks); others ignore it.
            block.update(model, x_train[idx], y_train[idx])
            optimizer.step()
            nfe += stats.nfe_forward
            reg_total += reg.item()
            for key, value in _rank_counts(stats, reg, len(idx)).items():
                counts[key] += value
            log.record(loss.item(), stats.nfe_forward, stats.nfe_backward, nfe_replay=stats.nfe_replay,
                       accuracy=(logits.detach().argmax(1) == y_train[idx]).float().mean().item() * 100)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{log.loss[-1]:.3f}", nfe=stats.nfe_forward)
        # Every rank runs as many batches, so the mean of the ranks' means is the mean per batch and rank.
        mean_nfe, mean_reg = all_ranks_mean([nfe / n_batches, reg_total / n_batches])
        history.append({"epoch": epoch, "mean_nfe": mean_nfe, "mean_regularization": mean_reg})
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
    train_acc = _accuracy(model, x_train, y_train)
    gathered = all_reduce_counts({**counts, "train_time_s": train_time,
                                  "parameter_checksum": float(parameter_checksum(model))})
    ranks = [{**entry, "parameter_checksum": int(entry["parameter_checksum"])} for entry in gathered.per_rank]
    result = TrainResult(
        config=asdict(config) | {"regularizers": {k: repr(v) for k, v in config.regularizers.items()}},
        train_accuracy=train_acc,
        test_accuracy=test_acc,
        nfe_predict=nfe_predict,
        train_time_s=train_time,
        predict_time_s=predict_time,
        history=history,
        iterations=log,
        ranks=ranks,
        ranks_total={key: gathered.total[key] for key in ADDITIVE_COUNTS},
    )
    return model, result


def train_digits(config: TrainConfig, progress: bool | None = None) -> TrainResult:
    """Train with Adam, report accuracy, test-set prediction NFE and wall times (see ``fit_digits``)."""
    return fit_digits(config, progress)[1]

