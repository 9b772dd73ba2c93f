"""Regularizers against their definitions, ODEBlock behaviour and its refusals, the training job."""

import json

import pytest
import torch

import nde_plugins as nde
from nde_plugins.cli import main, parse_regularizer
from nde_plugins.regularizers import STABILITY_REGION_SIZE

from .test_stats import Field

F64 = torch.float64


def solve(method="dopri5", options=None, keep=True, y0=None):
    field = Field()
    y0 = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(0)) if y0 is None else y0
    _, stats = nde.odeint(field, y0, torch.tensor([0.0, 1.0], dtype=F64), method=method, options=options,
                          rtol=1e-6, atol=1e-6, return_stats=True, keep_stages=keep)
    return field, stats


def test_error_estimate_definitions():
    _, stats = solve()
    e = torch.stack([s.error_ratio for s in stats.accepted])
    h = torch.tensor([abs(s.h) for s in stats.accepted], dtype=F64)
    assert nde.ErrorEstimate()(stats).item() == pytest.approx((e * h).sum().item())
    assert nde.ErrorEstimate(power=2)(stats).item() == pytest.approx((e**2 * h).sum().item())
    assert nde.ErrorEstimate(reduce="mean")(stats).item() == pytest.approx((e * h).mean().item())


def test_stiffness_definitions():
    _, stats = solve()
    s = torch.stack([st.stiffness for st in stats.accepted])
    assert nde.Stiffness()(stats).item() == pytest.approx(s.sum().item())
    assert nde.Stiffness(reduce="max", normalize=True)(stats).item() == pytest.approx(
        s.max().item() / STABILITY_REGION_SIZE)


def test_kinetic_energy_is_the_quadrature_of_the_squared_field():
    """For a constant field f = c the integral of ||f||^2 over [0, 1] is exactly ||c||^2 per sample."""
    c = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    y0 = torch.zeros(4, 3, dtype=F64, requires_grad=True)
    _, stats = nde.odeint(lambda t, y: c.expand_as(y) + 0 * y, y0, torch.tensor([0.0, 1.0], dtype=F64),
                          method="rk4_classic", options={"step_size": 0.25}, return_stats=True, keep_stages=True)
    assert nde.KineticEnergy()(stats).item() == pytest.approx(c.square().sum().item())


def test_jacobian_frobenius_estimates_the_squared_frobenius_norm():
    """Linear field y A^T: ||df/dy||_F^2 = ||A||_F^2 per sample; the Hutchinson mean converges to it."""
    a = torch.tensor([[0.0, 1.0, 0.0], [-2.0, 0.0, 0.5], [0.0, 0.0, -1.0]], dtype=F64)
    y0 = torch.randn(256, 3, dtype=F64, requires_grad=True)
    _, stats = nde.odeint(lambda t, y: y @ a.T, y0, torch.tensor([0.0, 1.0], dtype=F64), method="rk4_classic",
                          options={"step_size": 0.5}, return_stats=True, keep_stages=True)
    torch.manual_seed(0)
    estimate = nde.JacobianFrobenius()(stats).item()
    assert estimate == pytest.approx(a.square().sum().item(), rel=0.1)
    assert nde.JacobianFrobenius(probe="rademacher")(stats).item() == pytest.approx(a.square().sum().item(), rel=0.1)


@pytest.mark.parametrize(
    "factory, kwargs, match",
    [(nde.ErrorEstimate, {"power": 3}, "power must be 1"), (nde.ErrorEstimate, {"reduce": "max"}, "reduce must be"),
     (nde.Stiffness, {"reduce": "min"}, "reduce must be"), (nde.JacobianFrobenius, {"probe": "x"}, "probe must be")],
)
def test_regularizer_options_are_validated(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(**kwargs)


def test_exponential_annealing():
    schedule = nde.ExponentialAnnealing(100, 10, 75)
    assert schedule(1) == pytest.approx(100) and schedule(75) == pytest.approx(10) and schedule(200) == 10
    assert schedule(38) == pytest.approx(100 * 0.1 ** (37 / 74))
    with pytest.raises(ValueError, match="start must be a finite number > 0"):
        nde.ExponentialAnnealing(0, 1, 5)


# ---------------------------------------------------------------------------------------------- ODEBlock


def make_block(**kw):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))

    class F(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t, y):
            return self.net(y)

    return nde.ODEBlock(F(), **{"rtol": 1e-5, "atol": 1e-5, **kw})


def test_block_public_contract():
    block = make_block(method="dopri5", regularizers={"error_estimate": 0.1})
    x = torch.randn(8, 3)
    z = block(x)
    assert z.shape == x.shape
    loss = z.square().mean() + block.regularization()
    loss.backward()
    assert all(p.grad is not None for p in block.parameters())
    assert block.stats.nfe_forward == 2 + 6 * (block.stats.steps_accepted + block.stats.steps_rejected)
    assert block.regularization().item() == pytest.approx(0.1 * nde.ErrorEstimate()(block.stats).item())


def test_block_train_and_eval_mode():
    block = make_block(regularizers={"error_estimate": 1.0, "stiffness": 0.1})
    x = torch.randn(8, 3)
    block.train()
    z_train = block(x)
    block.eval()
    with torch.no_grad():
        z_eval = block(x)
        reg = block.regularization()
    assert torch.allclose(z_train, z_eval) and not reg.requires_grad and reg.item() > 0


def test_block_return_all_and_schedule():
    block = make_block(t=[0.0, 0.5, 1.0], return_all=True,
                       regularizers={"error_estimate": nde.ExponentialAnnealing(10.0, 1.0, 3)})
    z = block(torch.randn(2, 3))
    assert z.shape == (3, 2, 3)
    block.epoch = 1
    first = block.regularization().item()
    block.epoch = 3
    assert block.regularization().item() == pytest.approx(first / 10)


def test_block_with_quadrature_regularizers_on_data_without_grad():
    block = make_block(regularizers={"kinetic_energy": 1.0, "jacobian_frobenius": 1.0})
    z = block(torch.randn(4, 3))  # an input without requires_grad still gets its Jacobian probed
    reg = block.regularization()
    (z.sum() + reg).backward()
    assert reg.item() > 0


def test_block_without_statistics():
    block = make_block(record_stats=False)
    block(torch.randn(2, 3))
    assert block.stats is None
    with pytest.raises(RuntimeError, match="call the block first"):
        block.regularization()
    with pytest.raises(ValueError, match="record_stats must stay True"):
        make_block(record_stats=False, regularizers={"error_estimate": 1})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(adjoint=True, regularizers={"error_estimate": 1}), "gradient='adjoint' solves forward without a graph"),
        (dict(method="rk4", options={"step_size": 0.1}, regularizers={"error_estimate": 1}),
         "method 'rk4' has none here; use one that has: .*dopri5.*tsitouras5"),
        (dict(method="rk4_uv", options={"step_size": 0.1}, regularizers={"error_estimate": 1}), "'rk4_uv' has none"),
        (dict(method="euler", options={"step_size": 0.1}, regularizers={"error_estimate": 1}), "'euler' has none"),
        (dict(method="bosh3", regularizers={"stiffness": 1}), "needs two stages with equal c .* 'bosh3' has none"),
        (dict(method="rk38", options={"step_size": 0.1}, regularizers={"stiffness": 1}), "equal c"),
        (dict(regularizers={"eror_estimate": 1}), "did you mean 'error_estimate'"),
        (dict(regularizers={"error_estimate": -1}), "weight must be a finite number >= 0"),
        (dict(regularizers={"error_estimate": {"power": 2}}), "needs a 'weight'"),
        (dict(t=[1.0]), "at least two times"),
    ],
)
def test_block_refuses_what_it_cannot_do(kwargs, match):
    with pytest.raises((ValueError, nde.UnknownPluginNameError), match=match):
        make_block(**kwargs)


def test_fixed_grid_pair_supports_the_error_regularizer():
    block = make_block(method="tsitouras5", options={"step_size": 0.25}, regularizers={"error_estimate": 1.0})
    block(torch.randn(2, 3))
    assert block.stats.steps_accepted == 4 and block.regularization().item() > 0


# ---------------------------------------------------------------------------------------------- training job


def test_parse_regularizer_spec():
    assert parse_regularizer("error_estimate:weight=0.5,power=2", 10) == ("error_estimate", {"weight": 0.5, "power": 2})
    name, spec = parse_regularizer("error_estimate:start=100,end=10", 75)
    assert spec["weight"](75) == pytest.approx(10)
    assert parse_regularizer("stiffness:reduce=max,normalize=true", 5)[1]["normalize"] is True
    with pytest.raises(ValueError, match="give weight=W, or start=A,end=B"):
        parse_regularizer("error_estimate:start=1", 5)


def test_train_digits_end_to_end(capsys):
    assert main(["train", "--task", "digits", "--epochs", "1", "--regularizer", "error_estimate:weight=0.1",
                 "--rtol", "1e-5", "--atol", "1e-5", "--batch-size", "256", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 50 < result["test_accuracy"] <= 100 and result["nfe_predict"] > 0 and result["train_time_s"] > 0
    assert len(result["history"]) == 1


def test_train_compare_prints_a_table(capsys):
    assert main(["train", "--epochs", "1", "--rtol", "1e-4", "--atol", "1e-4", "--batch-size", "512", "--compare",
                 "vanilla,error_estimate", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "test acc %" in out and "NFE" in out
    assert any(line.startswith("vanilla") and "+-" in line for line in out.splitlines())
    assert any(line.startswith("error_estimate") for line in out.splitlines())


def test_train_refuses_unknown_regularizer(capsys):
    assert main(["train", "--epochs", "1", "--regularizer", "stifness"]) == 2
    assert "did you mean 'stiffness'" in capsys.readouterr().err
