"""The meta-solver digits experiment: attacks, one tiny training run per variant, the sweep over u."""

import math

import pytest
import torch
import torch.nn.functional as F

from nde_plugins.experiments.attacks import accuracy, fgsm, fgsm_random, pgd
from nde_plugins.experiments.meta_solver import (
    SMOOTHING_OPTIONS,
    SWITCHING_OPTIONS,
    MetaConfig,
    build_model,
    ensemble_robustness,
    mean_se,
    metric_names,
    paired_differences,
    robustness_over_u,
    train_meta,
)

EPS = 0.1


@pytest.fixture
def tiny():
    """A linear classifier on 8 pixels in [0, 1] and a batch with labels."""
    model = torch.nn.Linear(8, 3)
    x = torch.rand(16, 8)
    y = torch.randint(0, 3, (16,))
    return model, x, y


@pytest.fixture(scope="module")
def data():
    """A slice of the digits split: enough to train one epoch in well under a second."""
    from nde_plugins.experiments.digits import load_digits_split

    x_train, y_train, x_test, y_test = load_digits_split()
    return x_train[:96], y_train[:96], x_test[:24], y_test[:24]


@pytest.mark.parametrize("attack", ["fgsm", "fgsm_random", "pgd"])
def test_attacks_stay_in_the_ball_and_the_pixel_box(tiny, attack):
    model, x, y = tiny
    x[0] = 0.0  # pixels on the box's edges, where a step would leave [0, 1] without the clip
    x[1] = 1.0
    g = torch.Generator().manual_seed(0)
    adv = {
        "fgsm": lambda: fgsm(model, x, y, EPS),
        "fgsm_random": lambda: fgsm_random(model, x, y, EPS, generator=g),
        "pgd": lambda: pgd(model, x, y, EPS, EPS / 4, 5, generator=g),
    }[attack]()
    assert adv.shape == x.shape and not adv.requires_grad
    assert float((adv - x).abs().max()) <= EPS + 1e-6
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0


def test_fgsm_increases_the_loss(tiny):
    model, x, y = tiny
    x = 0.25 + 0.5 * x  # inside the box, so the clip does not shorten the step
    adv = fgsm(model, x, y, EPS)
    with torch.no_grad():
        assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y)
    assert model.weight.grad is None  # the attack differentiates the input only


def test_pgd_with_no_steps_returns_the_start(tiny):
    model, x, y = tiny
    start = (x + 0.5 * EPS * torch.sign(torch.randn_like(x))).clamp(0, 1)
    assert torch.equal(pgd(model, x, y, EPS, EPS / 4, 0, start=start), start)
    with pytest.raises(ValueError, match="outside the eps-ball"):
        pgd(model, x, y, EPS, EPS / 4, 0, start=x + 2 * EPS)


def test_unclipped_attacks_keep_the_neural_sde_example_formulas(tiny):
    """``box=None`` and an NLL loss reproduce the formulas examples/neural_sde_digits.py always used."""
    model, x, y = tiny

    def log_probs(inputs):
        return F.log_softmax(model(inputs), dim=-1)

    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.nll_loss(log_probs(xr), y), xr)
    assert torch.equal(fgsm(log_probs, x, y, EPS, loss=F.nll_loss, box=None), (x + EPS * grad.sign()).detach())

    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    expected = x + EPS * (2 * torch.rand(x.shape, generator=g1) - 1)
    for _ in range(3):
        expected.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.nll_loss(log_probs(expected), y), expected)
        expected = (x + (expected.detach() + EPS / 4 * grad.sign() - x).clamp(-EPS, EPS)).detach()
    got = pgd(log_probs, x, y, EPS, EPS / 4, 3, generator=g2, loss=F.nll_loss, box=None)
    assert torch.equal(got, expected)


def test_accuracy_is_a_percentage(tiny):
    model, x, y = tiny
    assert 0.0 <= accuracy(model, x, y) <= 100.0


@pytest.mark.parametrize("adversarial", [False, True], ids=["plain", "AT"])
@pytest.mark.parametrize("schedule", [None, "smoothing", "switching"])
def test_one_epoch_of_every_variant_reports_finite_numbers(data, schedule, adversarial):
    options = {"smoothing": SMOOTHING_OPTIONS, "switching": SWITCHING_OPTIONS}.get(schedule, {})
    config = MetaConfig(schedule=schedule, schedule_options=options, adversarial=adversarial, epochs=1,
                        batch_size=32, pgd_steps=2)
    result = train_meta(config, data)
    assert list(result.metrics) == metric_names(config.eval_eps)
    assert all(math.isfinite(v) and 0.0 <= v <= 100.0 for v in result.metrics.values())
    assert result.train_time_s > 0 and result.eval_time_s > 0
    # 3 batches: the standard run solves at u0 only, a schedule draws u per batch around u0.
    if schedule is None:
        assert result.train_u == {"mean": 0.5, "std": 0.0, "distinct": 1}
    else:
        assert abs(result.train_u["mean"] - 0.5) < 0.05


def test_robustness_over_u_gives_one_row_per_u_and_restores_the_solver(data):
    config = MetaConfig(epochs=1, pgd_steps=1, eval_eps=(0.1,))
    model = build_model(config)
    model.train()
    x, y = data[2], data[3]
    model.eval()
    with torch.no_grad():
        before = model(x)
    model.train()
    us = (0.25, 0.5, 1.0)
    rows = robustness_over_u(model, x, y, config, us=us)
    assert [row["u"] for row in rows] == list(us)
    assert all(set(row) == {"u", "clean", "FGSM 0.1", "PGD 0.1", "logit shift %"} for row in rows)
    assert rows[1]["logit shift %"] == 0.0 and rows[0]["logit shift %"] > 0.0
    assert model.training  # the mode is restored too
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), before)
    assert model.block.last_method == ("rk2", {"u": 0.5})


def test_ensemble_robustness_reports_every_metric(data):
    config = MetaConfig(epochs=1, pgd_steps=1)
    metrics = ensemble_robustness(build_model(config), data[2], data[3], config, size=2)
    assert list(metrics) == metric_names(config.eval_eps)


def test_paired_differences_and_standard_error():
    assert mean_se([1.0, 3.0]) == (2.0, 1.0)
    diff = paired_differences([{"a": 2.0}, {"a": 5.0}], [{"a": 1.0}, {"a": 2.0}], ["a"])
    assert diff == {"a": (2.0, 1.0)}
    with pytest.raises(ValueError, match="same seeds"):
        paired_differences([{"a": 1.0}], [], ["a"])
