"""Latent-ODE interpolation of irregularly sampled series: seed 004's second task at CPU scale.

The seed trains a Latent ODE (Rubanova et al. 2019) on PhysioNet 2012 ICU series. That data needs
an account and a download; this task keeps its structure on data generated here, seeded, in a few
seconds:

- **Data** (``make_series``). ``n_series`` series of 3 channels on a grid of 40 times
  ``t_k = k / 8`` in (0, 5]; half damped oscillators, half spirals, each with parameters of its own:
  an oscillator ``x = A e^{-zeta w t} cos(w_d t + phi)`` is observed as ``(x, x'/w, x x'/w / 2)``; a
  spiral of radius ``r = r0 e^{lambda t}`` and angle ``theta = w t + phi`` (either direction) as
  ``(r cos theta, r sin theta, r^2 / 2 - 1/2)``. Each grid time is observed with probability 0.35
  (at least 3 times per series) and each channel of an observed time with probability 0.8 (at least
  one); the observations carry Gaussian noise of standard deviation 0.03. Train and test series are
  split 80/20 by series, the same split for every training seed.
- **Model** (``LatentODE``). A GRU reads the observed times from the last to the first (input: the
  values times the mask, and the mask) and a linear map turns its state into the initial latent
  state z(0) (8 dimensions); an ``ODEBlock`` with ``return_all=True`` solves the latent ODE (a tanh
  MLP, 2 hidden layers of ``hidden`` units) from t = 0 through the union of the batch's observation
  times, and a linear decoder maps each latent state to the 3 channels.
- **Loss.** The mean squared error over the observed entries only (the mask), on the same points
  the encoder read: interpolation, as in the seed's Table 2 (whose metric is a loss, x 10^-3).

With an end-time sampler, the last solve time of a training batch is drawn (every earlier output
time stays where it is); the seed's STEER baseline instead perturbs every interval's end.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from .._checks import positive_float, positive_int
from ..ode import ODEBlock
from .history import IterationLog
from .progress import progress_bar

#: The data set's own seed: every training seed sees the same series and split.
DATA_SEED = 2012
#: Observation grid: 40 times k / 8 in (0, 5]; the latent state starts at t = 0.
GRID_STEP, GRID_POINTS = 0.125, 40
CHANNELS = 3
OBSERVE_TIME, OBSERVE_CHANNEL, NOISE = 0.35, 0.8, 0.03
TEST_FRACTION = 0.2
#: End-time draws come from a stream of their own: the batch order already uses the training seed.
END_TIME_STREAM = 0x5EED_0004


@dataclass(frozen=True)
class SeriesData:
    """``values`` and ``mask`` of shape (series, GRID_POINTS, CHANNELS) (mask 1 where observed; values 0
    elsewhere), the grid ``times`` (GRID_POINTS,), and each series' ``kind`` (0 oscillator, 1 spiral)."""

    values: torch.Tensor
    mask: torch.Tensor
    times: torch.Tensor
    kind: torch.Tensor

    def __len__(self) -> int:
        return len(self.values)

    def subset(self, index: torch.Tensor) -> SeriesData:
        return SeriesData(self.values[index], self.mask[index], self.times, self.kind[index])


def make_series(n_series: int, seed: int = DATA_SEED) -> SeriesData:
    """The seeded synthetic data set (see the module docstring for the generator)."""
    positive_int("n_series", n_series)
    g = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n_series, 1, generator=g, dtype=torch.float64)

    t = torch.arange(1, GRID_POINTS + 1, dtype=torch.float64)[None, :] * GRID_STEP
    kind = (torch.arange(n_series) % 2)[torch.randperm(n_series, generator=g)]
    # Damped oscillators.
    amplitude, w, zeta, phase = uniform(0.5, 1.5), uniform(1.0, 2.5), uniform(0.05, 0.3), uniform(0, 2 * math.pi)
    w_d = w * torch.sqrt(1 - zeta ** 2)
    decay = torch.exp(-zeta * w * t)
    x = amplitude * decay * torch.cos(w_d * t + phase)
    dx = amplitude * decay * (-zeta * w * torch.cos(w_d * t + phase) - w_d * torch.sin(w_d * t + phase))
    oscillator = torch.stack([x, dx / w, 0.5 * x * dx / w], dim=-1)
    # Spirals.
    r0, rate, turn, angle0 = uniform(0.5, 1.2), uniform(-0.25, 0.1), uniform(0.8, 2.0), uniform(0, 2 * math.pi)
    turn = turn * torch.where(torch.rand(n_series, 1, generator=g) < 0.5, -1.0, 1.0).double()
    r, theta = r0 * torch.exp(rate * t), turn * t + angle0
    spiral = torch.stack([r * torch.cos(theta), r * torch.sin(theta), 0.5 * r ** 2 - 0.5], dim=-1)
    clean = torch.where(kind[:, None, None].bool(), spiral, oscillator)
    # Irregular sampling: times, then channels; at least 3 times and one channel per observed time.
    observed_time = torch.rand(n_series, GRID_POINTS, generator=g) < OBSERVE_TIME
    first = torch.rand(n_series, GRID_POINTS, generator=g).argsort(dim=1)[:, :3]
    observed_time.scatter_(1, first, True)
    channels = torch.rand(n_series, GRID_POINTS, CHANNELS, generator=g) < OBSERVE_CHANNEL
    keep = torch.randint(0, CHANNELS, (n_series, GRID_POINTS), generator=g)
    channels.scatter_(2, keep[..., None], True)
    mask = (observed_time[..., None] & channels).float()
    noisy = clean.float() + NOISE * torch.randn(clean.shape, generator=g)
    return SeriesData(noisy * mask, mask, t[0].float(), kind)


def train_test_split(data: SeriesData) -> tuple[SeriesData, SeriesData]:
    """80/20 by series, fixed by ``DATA_SEED``."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(DATA_SEED + 1))
    n_test = int(round(TEST_FRACTION * len(data)))
    return data.subset(order[n_test:]), data.subset(order[:n_test])


class LatentField(torch.nn.Module):
    """dz/dt = W3 tanh(W2 tanh(W1 z + b1) + b2) + b3: the latent dynamics (autonomous)."""

    def __init__(self, latent: int, hidden: int) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(latent, hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(hidden, hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(hidden, latent))

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class LatentODE(torch.nn.Module):
    """GRU encoder (backwards over the observed times) -> z(0) -> ODEBlock over the batch's times -> decoder."""

    def __init__(self, block: ODEBlock, latent: int, encoder_hidden: int = 32) -> None:
        super().__init__()
        self.gru = torch.nn.GRUCell(2 * CHANNELS, encoder_hidden)
        self.to_latent = torch.nn.Linear(encoder_hidden, latent)
        self.block = block
        self.decoder = torch.nn.Linear(latent, CHANNELS)

    def encode(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """z(0) per series from its observations, read from the last time to the first."""
        h = values.new_zeros(values.shape[0], self.gru.hidden_size)
        inputs = torch.cat([values, mask], dim=-1)
        for k in range(values.shape[1] - 1, -1, -1):
            seen = mask[:, k].amax(dim=1, keepdim=True) > 0
            h = torch.where(seen, self.gru(inputs[:, k], h), h)  # unobserved times leave the state as it is
        return self.to_latent(h)

    def forward(self, values: torch.Tensor, mask: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        """Reconstructions of shape (batch, GRID_POINTS, CHANNELS), zero at times no series of the batch observed."""
        used = mask.amax(dim=(0, 2)) > 0  # the union of the batch's observation times
        self.block.t = torch.cat([times.new_zeros(1), times[used]])
        z = self.block(self.encode(values, mask))  # (1 + times used, batch, latent)
        decoded = self.decoder(z[1:]).transpose(0, 1)
        out = values.new_zeros(values.shape)
        out[:, used] = decoded
        return out


def masked_mse(prediction: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean squared error over the observed entries only."""
    return ((prediction - values) * mask).square().sum() / mask.sum().clamp_min(1)


@dataclass
class SeriesConfig:
    """One training run; the fields shared with ``digits.TrainConfig`` mean the same. ``n_series``:
    the data set's size (train and test together); ``latent``: the latent state's dimension.
    ``schedule`` must be one that needs no labels (the task is a regression): step and tolerance
    adaption compare accuracies and are refused."""

    method: str = "dopri5"
    rtol: float = 1e-5
    atol: float = 1e-5
    regularizers: dict[str, Any] = field(default_factory=dict)
    end_time: str | None = None
    end_time_options: dict[str, Any] = field(default_factory=dict)
    step_size: float | None = None
    schedule: str | None = None
    schedule_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 20
    seed: int = 0
    batch_size: int = 64
    lr: float = 1e-2
    hidden: int = 32
    latent: int = 8
    n_series: int = 2000
    adjoint: bool = False
    gradient: str | None = None


@dataclass
class SeriesResult:
    """What ``train_timeseries`` reports. Losses are masked MSE; ``nfe_predict`` and ``predict_time_s``
    are those of one batched solve over the whole test set; ``history`` holds per epoch the mean
    training loss and forward NFE; ``iterations`` the loss and NFE of every batch."""

    config: dict
    train_loss: float
    test_loss: float
    nfe_predict: int
    train_time_s: float
    predict_time_s: float
    history: list[dict] = field(default_factory=list)
    iterations: IterationLog = field(default_factory=IterationLog)

    @property
    def train_loss_e3(self) -> float:
        return 1e3 * self.train_loss

    @property
    def test_loss_e3(self) -> float:
        return 1e3 * self.test_loss

    def as_dict(self) -> dict:
        return asdict(self)


def build_block(config: SeriesConfig) -> ODEBlock:
    """The latent ODE's block over the grid (each batch replaces ``t`` by the times it observes)."""
    options = {"step_size": config.step_size} if config.step_size is not None else None
    extra: dict[str, Any] = {}
    if config.end_time is not None:
        extra = {"end_time": config.end_time, "end_time_options": dict(config.end_time_options),
                 "seed": config.seed ^ END_TIME_STREAM}
    if config.schedule is not None:
        extra.update(schedule=config.schedule, schedule_options=dict(config.schedule_options))
    times = torch.cat([torch.zeros(1), torch.arange(1, GRID_POINTS + 1) * GRID_STEP])
    block = ODEBlock(LatentField(config.latent, config.hidden), t=times, method=config.method, rtol=config.rtol,
                     atol=config.atol, options=options, regularizers=config.regularizers or None,
                     return_all=True, adjoint=config.adjoint, gradient=config.gradient, **extra)
    if callable(getattr(block.policy.schedule, "update", None)):
        raise ValueError(f"schedule {config.schedule!r} adapts from classification accuracy (block.update needs "
                         "labels); the timeseries task is a regression: use a schedule without update, or none")
    return block


def check_config(config: SeriesConfig) -> None:
    """Refuse a configuration the run cannot use, naming the field, the rule and the fix."""
    for name in ("epochs", "batch_size", "hidden", "latent", "n_series"):
        positive_int(name, getattr(config, name))
    positive_float("lr", config.lr)
    if config.n_series < 10:
        raise ValueError(f"n_series must be >= 10 (a test set of 20% needs series), got {config.n_series}")


def evaluate(model: LatentODE, data: SeriesData, batch_size: int) -> float:
    """The masked MSE over a whole set, in batches (no graph)."""
    total, count = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, len(data), batch_size):
            part = data.subset(torch.arange(start, min(start + batch_size, len(data))))
            prediction = model(part.values, part.mask, data.times)
            total += float(((prediction - part.values) * part.mask).square().sum())
            count += float(part.mask.sum())
    return total / count


def train_timeseries(config: SeriesConfig, progress: bool | None = None) -> SeriesResult:
    """Train with Adam; report train and test loss, prediction NFE and wall times (see ``SeriesResult``)."""
    check_config(config)
    train, test = train_test_split(make_series(config.n_series))
    torch.manual_seed(config.seed)
    block = build_block(config)
    model = LatentODE(block, config.latent)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    n_batches = math.ceil(len(train) / config.batch_size)
    bar = progress_bar(config.epochs * n_batches, progress, "batch")
    history: list[dict] = []
    log = IterationLog(adjoint=block.adjoint, gradient=block.gradient)
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        block.epoch = epoch
        model.train()
        order = torch.randperm(len(train), generator=generator)
        losses, nfes = [], []
        for i in range(n_batches):
            batch = train.subset(order[i * config.batch_size:(i + 1) * config.batch_size])
            loss = masked_mse(model(batch.values, batch.mask, train.times), batch.values, batch.mask)
            reg = block.regularization()
            optimizer.zero_grad(set_to_none=True)
            (loss + reg).backward()
            optimizer.step()
            stats = block.stats
            log.record(loss.item(), stats.nfe_forward, stats.nfe_backward, nfe_replay=stats.nfe_replay)
            losses.append(loss.item())
            nfes.append(stats.nfe_forward)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.4f}", nfe=stats.nfe_forward)
        history.append({"epoch": epoch, "mean_loss": sum(losses) / len(losses), "mean_nfe": sum(nfes) / len(nfes)})
    train_time = time.perf_counter() - start
    if bar is not None:
        bar.close()
    model.eval()
    with torch.no_grad():
        start = time.perf_counter()
        model(test.values, test.mask, test.times)
        predict_time = time.perf_counter() - start
    nfe_predict = block.stats.nfe_forward
    return SeriesResult(
        config=asdict(config) | {"regularizers": {k: repr(v) for k, v in config.regularizers.items()}},
        train_loss=evaluate(model, train, len(test)),
        test_loss=evaluate(model, test, len(test)),
        nfe_predict=nfe_predict,
        train_time_s=train_time,
        predict_time_s=predict_time,
        history=history,
        iterations=log,
    )


__all__ = ["LatentODE", "SeriesConfig", "SeriesData", "SeriesResult", "make_series", "masked_mse",
           "train_test_split", "train_timeseries"]
