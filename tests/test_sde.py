"""Noise diffusions and SDEBlock: formulas, reproducibility, test-time noise, gradients, statistics, errors."""

import math

import pytest
import torch
import torchdiffeq

import nde_plugins as nde
from nde_plugins.diffusions import (
    AdditiveDiffusion,
    DropoutDiffusion,
    LearnedDiffusion,
    MultiplicativeDiffusion,
    NoDiffusion,
)


class Drift(torch.nn.Module):
    def __init__(self, dim=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(dim, dim, generator=g) / dim**0.5)

    def forward(self, t, h):
        return torch.tanh(h @ self.w) - 0.5 * h


def x_batch(n=16, dim=3, seed=1):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


# -------------------------------------------------------------------------------------------- diffusions


def test_diffusion_formulas():
    h, f, t = x_batch(), x_batch(seed=2), torch.tensor(0.3)
    assert torch.equal(NoDiffusion()(t, h), torch.zeros_like(h))
    assert torch.allclose(AdditiveDiffusion(0.2)(t, h), torch.full_like(h, 0.2))
    per_channel = AdditiveDiffusion([0.1, 0.2, 0.3])(t, h)
    assert torch.allclose(per_channel, torch.tensor([0.1, 0.2, 0.3]).expand_as(h))
    assert torch.allclose(MultiplicativeDiffusion(0.5)(t, h), 0.5 * h)
    assert torch.allclose(DropoutDiffusion(p=0.8)(t, h, f), math.sqrt(0.2 / 0.8) * f)
    net = torch.nn.Linear(3, 3)
    assert torch.allclose(LearnedDiffusion(lambda t, h: net(h))(t, h), net(h))
    assert DropoutDiffusion(p=1.0).is_zero and DropoutDiffusion(p=0.5).uses_drift


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: AdditiveDiffusion(-0.1), "sigma must be finite and >= 0"),
        (lambda: MultiplicativeDiffusion([[0.1]]), "scalar or one value per channel"),
        (lambda: DropoutDiffusion(p=0.0), "0 < p <= 1"),
        (lambda: DropoutDiffusion(p=1.5), "0 < p <= 1"),
    ],
)
def test_diffusion_parameters_are_validated(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_diffusions_are_registered_plugins():
    names = nde.get_registry().names("diffusion")
    assert {"none", "additive", "multiplicative", "dropout", "learned"} <= set(names)
    with pytest.raises(nde.UnknownPluginNameError, match="did you mean 'dropout'"):
        nde.SDEBlock(Drift(), diffusion="dropuot")


# -------------------------------------------------------------------------------------------- SDEBlock


def test_zero_noise_equals_the_euler_ode_solve_exactly():
    drift, x = Drift(), x_batch()
    ode = torchdiffeq.odeint(drift, x, torch.tensor([0.0, 1.0]), method="euler", options={"step_size": 0.125})[-1]
    assert torch.equal(nde.SDEBlock(drift, "none", dt=0.125)(x), ode)
    noisy = nde.SDEBlock(drift, "additive", {"sigma": 0.5}, dt=0.125).eval()  # eval without TTN: noise off
    assert torch.equal(noisy(x), ode)


def test_same_seed_gives_the_same_path():
    drift, x = Drift(), x_batch()

    def block(**kw):
        return nde.SDEBlock(drift, "multiplicative", {"sigma": 0.3}, **kw)

    a, b = block(seed=7), block(seed=7)
    assert torch.equal(a(x), b(x)) and torch.equal(a(x), b(x))  # the sequence of paths repeats too
    assert not torch.equal(block(seed=7)(x), block(seed=8)(x))
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(block(generator=g1)(x), block(generator=g2)(x))


def test_test_time_noise_averaging_reduces_the_spread():
    drift, x = Drift(), x_batch(n=4)
    single = nde.SDEBlock(drift, "additive", {"sigma": 0.5}, test_time_noise=True, samples=1, seed=0).eval()
    averaged = nde.SDEBlock(drift, "additive", {"sigma": 0.5}, test_time_noise=True, samples=10, seed=0).eval()
    with torch.no_grad():
        spread_single = torch.stack([single(x) for _ in range(30)]).std(0).mean()
        spread_avg = torch.stack([averaged(x) for _ in range(30)]).std(0).mean()
        samples = averaged(x, return_samples=True)
    assert spread_avg < 0.5 * spread_single  # ~ 1/sqrt(10)
    assert samples.shape == (10, 4, 3)


@pytest.mark.parametrize("adjoint, method", [(False, "euler"), (True, "euler"), (True, "milstein"), (False, "srk")])
def test_gradients_reach_drift_and_diffusion(adjoint, method):
    drift = Drift()
    block = nde.SDEBlock(drift, "additive", {"sigma": 0.2, "learnable": True}, adjoint=adjoint, method=method,
                         seed=0, dt=0.1)
    block(x_batch()).square().mean().backward()
    assert drift.w.grad is not None and drift.w.grad.abs().sum() > 0
    assert block.diffusion.sigma.grad is not None and block.diffusion.sigma.grad.abs() > 0


def test_dropout_diffusion_reuses_the_drift_evaluation():
    block = nde.SDEBlock(Drift(), "dropout", {"p": 0.9}, dt=0.1, seed=0)
    block(x_batch())
    stats = block.stats
    # 10 Euler steps + torchsde's one contract probe; the diffusion adds no drift evaluation
    assert stats.steps_accepted == 10 and stats.nfe_forward == 11 and stats.nfe_diffusion == 11


def test_fixed_step_statistics():
    block = nde.SDEBlock(Drift(), "additive", {"sigma": 0.1}, dt=0.25, seed=0, regularizers={"error_estimate": 1.0})
    block(x_batch())
    stats = block.stats
    assert [round(h, 6) for h in stats.step_sizes()] == [0.25] * 4
    assert len(stats.error_ratios()) == 3  # no drift evaluation follows the last step
    assert stats.error_ratios().requires_grad and block.regularization().item() > 0


def test_adaptive_statistics_rebuild_torchsdes_error():
    block = nde.SDEBlock(Drift(), "additive", {"sigma": 0.05}, dt=0.5, adaptive=True, rtol=1e-3, atol=1e-3, seed=0)
    block(x_batch())
    stats = block.stats
    attempts = stats.steps_accepted + stats.steps_rejected
    assert stats.nfe_forward == 1 + 3 * attempts and stats.steps_rejected > 0
    for step in stats.steps[:-1]:
        assert step.accepted == (step.error_ratio.item() <= 1.0)  # the decision torchsde made
    assert sum(stats.step_sizes()) == pytest.approx(1.0)
    assert stats.error_ratios().requires_grad


def test_error_regularizer_gradient_reaches_the_drift():
    drift = Drift()
    block = nde.SDEBlock(drift, "additive", {"sigma": 0.1}, dt=0.1, seed=0, regularizers={"error_estimate": 1.0})
    block(x_batch())
    (grad,) = torch.autograd.grad(block.regularization(), drift.w)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="srk", adjoint=True),
         "'srk' cannot be used with gradient='adjoint' \\(adjoint=True\\); use one of \\['euler', 'milstein'\\]"),
        (dict(method="midpoint"), "solves Stratonovich SDEs"),
        (dict(method="rk4"), "unknown torchsde method 'rk4'"),
        (dict(test_time_noise=True, samples=0), "samples must be >= 1"),
        (dict(diffusion="none", test_time_noise=True), "the diffusion is zero"),
        (dict(method="milstein", regularizers={"error_estimate": 1.0}), "use one that has: euler"),
        (dict(adjoint=True, regularizers={"error_estimate": 1.0}), "gradient='adjoint' solves forward without a graph"),
        (dict(dt=0.0), "dt must be a finite number > 0"),
        (dict(t=[1.0, 0.0]), "increasing"),
    ],
)
def test_sde_block_refuses_what_it_cannot_do(kwargs, match):
    kwargs = {"diffusion": "additive", **kwargs}
    with pytest.raises(ValueError, match=match):
        nde.SDEBlock(Drift(), **kwargs)


def test_input_must_be_batch_by_channels():
    with pytest.raises(ValueError, match="shaped \\(batch, channels\\)"):
        nde.SDEBlock(Drift(), "additive")(torch.randn(2, 3, 4))


def test_diffusion_with_the_wrong_shape_is_reported():
    block = nde.SDEBlock(Drift(), "learned", {"network": lambda t, h: h[:, :2]}, seed=0)
    with pytest.raises(ValueError, match="returned shape \\(16, 2\\) for a state of shape \\(16, 3\\)"):
        block(x_batch())


def test_hooks_on_the_diffusion_still_run():
    """The block calls the diffusion's forward directly when nothing hooks it (it runs every step);
    a hook, once set, must still see every call."""
    drift = torch.nn.Linear(3, 3)
    block = nde.SDEBlock(lambda t, h: drift(h), "additive", {"sigma": 0.1, "learnable": True}, dt=0.25, seed=0)
    block(torch.randn(2, 3))
    seen = []
    handle = block.diffusion.register_forward_hook(lambda module, args, out: seen.append(out.shape))
    block(torch.randn(2, 3))
    assert len(seen) == block.stats.nfe_diffusion > 0
    handle.remove()
    block(torch.randn(2, 3))
    assert len(seen) == block.stats.nfe_diffusion  # removed: the direct call again


def test_a_reassigned_time_grid_is_solved_to_its_own_end():
    block = nde.SDEBlock(lambda t, h: -h, "additive", {"sigma": 0.1}, t=(0.0, 1.0), dt=0.25, seed=0)
    x = torch.randn(2, 3)
    block(x)
    block.t = torch.tensor([0.0, 2.0])
    block(x)
    steps = block.stats.steps
    assert steps[-1].t0 + steps[-1].h == pytest.approx(2.0)
