"""The STEER experiments (seed 003): the stiff toy's ground truth, its two training variants, and the
end-time evaluation of the digits classifier. Small sizes throughout: these test the plumbing, the
examples measure the effect."""

import math

import pytest
import torch

import nde_plugins as nde
from nde_plugins.experiments.digits import DigitsClassifier, TrainConfig, accuracy_over_end_times, build_block
from nde_plugins.experiments.stiff import (
    StiffConfig,
    StiffField,
    TimeOffsetField,
    check_config,
    default_b,
    exact_solution,
    interval,
    make_data,
    train_stiff,
    true_rhs,
)

TINY = {"hidden": 16, "eval_every": 1, "n_test": 30, "test_end": 5.0}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: a second intra-op thread only adds waiting, which on a busy machine costs seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("r", [10.0, 1000.0])
def test_exact_solution_satisfies_the_ode(r):
    t = torch.cat([torch.tensor([0.0, 1e-4, 1e-3]), torch.linspace(0.01, 25, 50)]).double().requires_grad_(True)
    y = exact_solution(t, r)
    (dy,) = torch.autograd.grad(y.sum(), t)
    residual = (dy - true_rhs(t, y, r)).abs() / r  # the right-hand side is O(r)
    assert residual.max().item() < 1e-12
    assert exact_solution(torch.zeros((), dtype=torch.float64), r).item() == pytest.approx(0.0, abs=1e-15)
    assert exact_solution(torch.tensor(60.0, dtype=torch.float64), r).item() == pytest.approx(3.0)


def test_exact_solution_matches_a_tight_solve():
    r = 1000.0  # explicit steps must stay below ~3.3 / r: a short interval keeps the solve quick
    t = torch.linspace(0, 0.5, 21, dtype=torch.float64)
    solved = nde.odeint(lambda s, y: true_rhs(s, y, r), torch.zeros(1, dtype=torch.float64), t,
                        method="dopri5", rtol=1e-10, atol=1e-12)
    assert (solved[:, 0] - exact_solution(t, r)).abs().max().item() < 1e-8


def test_exact_solution_refuses_r_1():
    with pytest.raises(ValueError, match="stiffness_ratio"):
        exact_solution(torch.ones(1), 1.0)


def test_data_follow_the_authors_grid():
    t_train, y_train, t_test, y_test = make_data(StiffConfig())
    assert t_train.shape == (120,) and y_train.shape == (120, 1)
    assert t_test.shape == (120,) and y_test.shape == (120, 1)
    assert float(t_train[-1]) == 15.0 and float(t_test[-1]) == 25.0
    assert interval(StiffConfig()) == pytest.approx(15 / 119)
    assert default_b(StiffConfig()) == pytest.approx(15 / 119 - 0.001)
    assert float(y_train[0]) == pytest.approx(0.0, abs=1e-12) and float(y_test[-1]) == pytest.approx(3.0, abs=1e-6)


def test_field_takes_one_time_or_one_per_sample():
    field = StiffField(hidden=8)
    y = torch.rand(5, 1)
    assert field(torch.tensor(0.3), y).shape == (5, 1)
    assert field(torch.full((5, 1), 0.3), y).shape == (5, 1)
    assert torch.allclose(field(torch.tensor(0.3), y), field(torch.full((5, 1), 0.3), y))


class RecordingField(torch.nn.Module):
    """dy/dt = 0, remembering the times it was asked about."""

    def __init__(self):
        super().__init__()
        self.times = []

    def forward(self, t, y):
        self.times.append(torch.as_tensor(t).detach().clone())
        return torch.zeros_like(y)


@pytest.mark.parametrize("per_sample", [False, True])
def test_pairs_from_start_shift_each_sample_to_its_own_start(per_sample):
    recorder = RecordingField()
    shifted = TimeOffsetField(recorder)
    dt = 0.125
    options = {"per_sample": True} if per_sample else {}
    block = nde.ODEBlock(shifted, t=(0.0, dt), method="dopri5", end_time="steer", end_time_options=options, seed=0)
    # float64: in float32, 14 + 1e-6 would already be rounded.
    starts = torch.tensor([[0.0], [3.0], [7.5], [14.0]], dtype=torch.float64)
    shifted.offset = starts
    block.train()
    block(torch.zeros(4, 1, dtype=torch.float64))
    # Every sample's clock starts at its own start time ...
    assert torch.equal(recorder.times[0], starts)
    # ... and runs on in step with the others: by the same solver time when the end is shared, by the
    # same fraction of its own drawn interval when each sample has its own end.
    ends = block.last_t[:, -1:] if per_sample else block.last_t[-1]
    for t in recorder.times:
        assert t.shape == (4, 1)
        progress = (t - starts) / ends
        assert bool((progress >= 0).all())
        assert torch.allclose(progress, progress[0].expand(4, 1), rtol=1e-9, atol=1e-12)
    # Without an offset the field sees the solver's time, one scalar for the batch.
    recorder.times.clear()
    shifted.offset = None
    block.eval()
    block(torch.zeros(4, 1, dtype=torch.float64))
    # (Adaptive steps may probe past dt: torchdiffeq steps over the end and interpolates back.)
    assert recorder.times and all(t.dim() == 0 and float(t) >= 0 for t in recorder.times)


def test_offset_of_the_wrong_shape_is_refused():
    shifted = TimeOffsetField(RecordingField())
    shifted.offset = torch.zeros(3, 1)
    with pytest.raises(ValueError, match=r"offset has shape \(3, 1\) for a batch of 4"):
        shifted(torch.tensor(0.0), torch.zeros(4, 1))


@pytest.mark.parametrize("variant", ["pairs_from_zero", "pairs_from_start"])
@pytest.mark.parametrize("end_time", [None, "steer"])
def test_tiny_run_returns_finite_numbers(variant, end_time):
    result = train_stiff(StiffConfig(iterations=3, variant=variant, end_time=end_time, **TINY), progress=False)
    assert len(result.history) == 3 and [h["iteration"] for h in result.history] == [1, 2, 3]
    for value in (result.best_test_mae, result.best_test_mse, result.final_test_mae, result.nfe_train):
        assert math.isfinite(value) and value >= 0
    assert result.best_test_mae == min(h["test_mae"] for h in result.history)
    assert result.nfe_test > 0 and result.train_time_s > 0 and result.config["end_time"] == end_time
    log = result.iterations
    assert len(log) == 3 and log.accuracy == [] and log.loss == [h["train_loss"] for h in result.history]
    assert sum(log.nfe_forward) / 3 == result.nfe_train and log.nfe_backward == [0, 0, 0]


def test_the_adjoint_counts_backward_evaluations():
    result = train_stiff(StiffConfig(iterations=2, adjoint=True, **TINY), progress=False)
    assert result.iterations.adjoint and len(result.iterations) == 2 and min(result.iterations.nfe_backward) > 0


def test_runs_with_steer_are_reproducible():
    config = StiffConfig(iterations=2, end_time="steer", seed=4, **TINY)
    first, second = train_stiff(config, progress=False), train_stiff(config, progress=False)
    assert first.history == second.history and first.nfe_train == second.nfe_train


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"variant": "abs"}, "variant must be one of pairs_from_zero, pairs_from_start"),
        ({"stiffness_ratio": 1.0}, "stiffness_ratio must be > 1"),
        ({"stiffness_ratio": math.nan}, "stiffness_ratio must be a finite number > 0"),
        ({"iterations": 0}, "iterations must be >= 1"),
        ({"batch_size": 119}, "batch_size must be <= n_train - 2 = 118"),
        ({"n_train": 2}, "n_train must be >= 3"),
    ],
)
def test_bad_config_names_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        check_config(StiffConfig(**changes))


def test_steer_b_too_wide_for_the_pair_interval_is_refused():
    with pytest.raises(ValueError, match="0 < b <"):
        train_stiff(StiffConfig(iterations=1, end_time="steer", end_time_options={"b": 0.2}, **TINY), progress=False)


def _small_classifier(**changes) -> DigitsClassifier:
    return DigitsClassifier(build_block(TrainConfig(hidden=8, rtol=1e-3, atol=1e-3, **changes)))


def test_accuracy_over_end_times_gives_one_accuracy_per_time():
    model = _small_classifier().eval()
    x, y = torch.rand(40, 64), torch.randint(0, 10, (40,))
    times = [0.5, 0.75, 1.0, 1.25, 1.5]
    accuracies = accuracy_over_end_times(model, x, y, times)
    assert len(accuracies) == len(times) and all(0 <= a <= 100 for a in accuracies)
    with torch.no_grad():
        at_t1 = (model(x).argmax(1) == y).float().mean().item() * 100
    assert accuracies[2] == pytest.approx(at_t1)


@pytest.mark.parametrize("times, message", [([], "times is empty"), ([0.0], "other than t0"),
                                            ([math.inf], "finite end times")])
def test_accuracy_over_end_times_refuses_bad_times(times, message):
    with pytest.raises(ValueError, match=message):
        accuracy_over_end_times(_small_classifier(), torch.rand(4, 64), torch.zeros(4, dtype=torch.long), times)


def test_digits_block_draws_reproducibly_from_the_training_seed():
    def drawn(seed):
        model = _small_classifier(end_time="steer", end_time_options={"b": 0.5}, seed=seed).train()
        model(torch.rand(3, 64))
        return float(model.block.last_t[-1])

    assert drawn(1) == drawn(1) != drawn(2)
    assert 0.5 <= drawn(1) <= 1.5
