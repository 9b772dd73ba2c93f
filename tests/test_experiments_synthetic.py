"""The synthetic tasks of seed 002: generators, models and a tiny training run with the proper-ODE check."""

import math

import pytest
import torch

from nde_plugins.experiments.synthetic import (
    MINIMA,
    SPHERE_SHELLS,
    SpheresField,
    SyntheticConfig,
    nearest_minimum,
    potential_slope,
    settle,
    spheres,
    three_minima,
    train_synthetic,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The models are far too small for intra-op threads: on a busy machine they only wait on each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------- spheres


def test_spheres_are_half_class_one_and_lie_in_their_shells():
    x, y = spheres(400, dim=2, seed=0)
    assert x.shape == (400, 1, 2) and y.shape == (400,) and y.dtype == torch.long
    assert int(y.sum()) == 200
    radius = x[:, 0].norm(dim=1)
    inner, middle, outer = ((lo, hi) for lo, hi, _ in SPHERE_SHELLS)
    assert ((radius >= middle[0]) & (radius <= middle[1]))[y == 1].all()
    in_class_zero = ((radius >= inner[0]) & (radius <= inner[1])) | ((radius >= outer[0]) & (radius <= outer[1]))
    assert in_class_zero[y == 0].all()
    assert spheres(40, dim=10, seed=0)[0].shape == (40, 1, 10)


def test_spheres_are_seeded():
    a, b, c = spheres(100, seed=0), spheres(100, seed=0), spheres(100, seed=1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


# ---------------------------------------------------------------------------------- three minima


@pytest.fixture(scope="module")
def particles():
    return three_minima(200, seed=3)


def test_the_slope_is_the_derivative_of_the_potential_and_vanishes_at_the_minima():
    x = torch.linspace(-1.5, 2.5, 41, dtype=torch.float64, requires_grad=True)
    potential = 0.2 * (x - 2) * (x - 0.5) * (x + 1) * (x + 0.6) * (x - 1.6) * x
    (grad,) = torch.autograd.grad(potential.sum(), x)
    assert torch.allclose(potential_slope(x.detach()), grad)
    assert potential_slope(torch.tensor(MINIMA, dtype=torch.float64)).abs().max() < 1e-4


def test_three_minima_has_all_classes_and_the_input_is_the_initial_state(particles):
    x, y = particles
    assert x.shape == (200, 1, 2) and y.dtype == torch.long
    assert set(y.tolist()) == {0, 1, 2}
    assert (x[:, 0, 0] >= -1).all() and (x[:, 0, 0] <= 2).all()
    assert (x[:, 0, 1] >= -2).all() and (x[:, 0, 1] <= 2).all()


def test_three_minima_is_seeded(particles):
    again, other = three_minima(200, seed=3), three_minima(200, seed=4)
    assert torch.equal(again[0], particles[0]) and torch.equal(again[1], particles[1])
    assert not torch.equal(other[0], particles[0])


def test_each_label_is_the_minimum_nearest_to_where_the_particle_rests(particles):
    x, y = particles
    final_x, final_v = settle(x[:, 0, 0].double(), x[:, 0, 1].double())
    assert final_v.abs().max() < 1e-3
    assert torch.equal(nearest_minimum(final_x), y)


# ----------------------------------------------------------------------------------------- models


def test_the_spheres_field_computes_the_papers_conv_net():
    torch.manual_seed(0)
    field = SpheresField()
    for dim in (2, 5):
        z = torch.randn(7, 1, dim)
        assert torch.allclose(field(torch.tensor(0.0), z), field.net(z), atol=1e-6)


def test_a_fixed_grid_run_reports_finite_numbers_and_a_check():
    result = train_synthetic(SyntheticConfig(task="spheres", steps=2, iterations=12, seed=0), progress=False)
    assert 0 <= result.test_accuracy <= 1 and math.isfinite(result.train_time_s)
    assert result.nfe_per_iteration == [2] * 12 and result.mean_nfe == 2 and result.final_steps == 2
    assert result.step_history == [] and result.verdict in ("ODE-like", "solver-dependent")
    assert {row["solver"] for row in result.check["rows"]} == {"euler", "midpoint", "rk4"}
    assert result.config["lr"] == 1e-3 and result.config["iterations"] == 12
    log = result.iterations  # per iteration, plain numbers
    assert len(log) == 12 and log.nfe_forward == [2] * 12 and log.nfe_backward == [0] * 12 and not log.adjoint
    assert all(type(x) is float and 0 <= x <= 100 for x in log.accuracy) and len(log.accuracy) == 12
    assert all(type(x) is float and math.isfinite(x) for x in log.loss)


def test_a_step_adaption_run_moves_its_step_and_counts_the_checks():
    config = SyntheticConfig(task="spheres", schedule="step_adaption", iterations=20, adaption_every=10)
    result = train_synthetic(config, progress=False)
    assert len(result.step_history) == 2 and result.final_steps == result.step_history[-1]
    assert len(result.nfe_per_iteration) == 20 and math.isfinite(result.mean_nfe)
    # The log holds the training solve's evaluations, read before the adaption's own solves.
    assert result.iterations.nfe_forward == result.nfe_per_iteration
    assert result.mean_nfe_with_checks > result.mean_nfe  # the checks evaluate the field too
    assert math.isfinite(result.worst_gap) and result.check["training_solver"].startswith("euler")


@pytest.mark.parametrize(
    "config, match",
    [
        (SyntheticConfig(task="spheres"), "give steps=K"),
        (SyntheticConfig(task="circles", steps=2), "unknown synthetic task"),
        (SyntheticConfig(steps=2, schedule="switching"), "'step_adaption'"),
        (SyntheticConfig(steps=0), "steps must be an integer >= 1"),
        (SyntheticConfig(steps=2, lr=-1.0), "lr must be"),
    ],
)
def test_bad_configurations_are_refused(config, match):
    with pytest.raises(ValueError, match=match):
        config.resolved()
