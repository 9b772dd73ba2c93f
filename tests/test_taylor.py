"""The ``taylor`` regularizer (TayNODE): total derivatives along the flow against closed forms, the
integral in every gradient mode against its closed form, and its place in a model's life."""

import copy
import math
import pickle

import pytest
import torch

import nde_plugins as nde
from nde_plugins._taylor import total_derivative
from nde_plugins.builtins.regularizers import TaylorDerivative

F64 = torch.float64
A = torch.tensor([[-0.5, 1.0], [-1.0, -0.3]], dtype=F64)


class Linear(torch.nn.Module):
    """dz/dt = A z: d^K z/dt^K = A^K z."""

    def __init__(self, matrix=A):
        super().__init__()
        self.A = torch.nn.Parameter(matrix.clone())

    def forward(self, t, z):
        return z @ self.A.T


class Scalar(torch.nn.Module):
    """dz/dt = a z on one dimension: integral_0^1 (d^K z/dt^K)^2 dt = a^(2K) z0^2 (e^(2a) - 1) / (2a)."""

    def __init__(self, a=-0.7):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a, dtype=F64))

    def forward(self, t, z):
        return self.a * z


def closed_form(a: float, z0: torch.Tensor, order: int) -> float:
    return a ** (2 * order) * float(z0.square().mean()) * (math.exp(2 * a) - 1) / (2 * a)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_linear_field_derivative_is_a_power_of_the_matrix(order):
    z = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    t = torch.tensor(0.4, dtype=F64)
    expected = z @ torch.linalg.matrix_power(A, order).T
    torch.testing.assert_close(total_derivative(Linear(), t, z, order), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_polynomial_field_derivative_is_known_exactly(order):
    # z' = z^2: z^(K) = K! z^(K+1)
    z = torch.linspace(-1.5, 1.5, 7, dtype=F64)[:, None]
    t = torch.tensor(0.0, dtype=F64)
    got = total_derivative(lambda t, z: z ** 2, t, z, order)
    torch.testing.assert_close(got, math.factorial(order) * z ** (order + 1), rtol=1e-12, atol=1e-10)


def test_time_dependent_field_derivatives_include_the_time_partials():
    # z' = t z: z'' = z (1 + t^2), z''' = z (t^3 + 3 t), z'''' = z (t^4 + 6 t^2 + 3)
    z = torch.tensor([[0.7], [-1.2]], dtype=F64)
    t = torch.tensor(0.6, dtype=F64)
    field = lambda t, z: t * z  # noqa: E731
    expected = {2: 1 + t ** 2, 3: t ** 3 + 3 * t, 4: t ** 4 + 6 * t ** 2 + 3}
    for order, factor in expected.items():
        torch.testing.assert_close(total_derivative(field, t, z, order), factor * z, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order", [2, 3])
def test_gradients_through_the_derivative_are_those_of_the_closed_form(order):
    field = Linear()
    z = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    got = torch.autograd.grad(total_derivative(field, torch.tensor(0.0, dtype=F64), z, order).square().sum(),
                              (field.A, z))
    exact = torch.autograd.grad((z @ torch.linalg.matrix_power(field.A, order).T).square().sum(), (field.A, z))
    for a, b in zip(got, exact):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def closed_form_slope(a: float, z0: torch.Tensor, order: int, eps: float = 1e-6) -> float:
    """d/da of the closed form, by a central difference."""
    return (closed_form(a + eps, z0, order) - closed_form(a - eps, z0, order)) / (2 * eps)


Z0 = torch.tensor([[1.0], [-0.5], [2.0]], dtype=F64)


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint", "adjoint"])
@pytest.mark.parametrize("order", [2, 3, 4])
def test_the_integral_matches_its_closed_form_in_every_gradient_mode(order, gradient):
    """Adaptively (dopri5 at 1e-12) the value is the closed form to 1e-10 in every mode. The adjoint's
    gradient is the closed form's too; backpropagation through an adaptive solve also differentiates
    the step-size controller (torchdiffeq keeps dt in the graph), which moves the gradient by ~1e-4 for
    kinetic_energy alike, so backprop's gradient is checked on a fixed grid below."""
    block = nde.ODEBlock(Scalar(), method="dopri5", rtol=1e-12, atol=1e-12, gradient=gradient,
                         regularizers={"taylor": (1.0, {"order": order})})
    block(Z0)
    value = block.regularization()
    assert value.item() == pytest.approx(closed_form(-0.7, Z0, order), rel=1e-10)
    if gradient == "adjoint" and order < 4:  # order 4's adjoint backward costs seconds and adds nothing
        value.backward()
        assert block.field.a.grad.item() == pytest.approx(closed_form_slope(-0.7, Z0, order), rel=1e-6)


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint"])
@pytest.mark.parametrize("order", [2, 3])
def test_on_a_fixed_grid_value_and_gradient_converge_to_the_closed_form(order, gradient):
    block = nde.ODEBlock(Scalar(), method="rk4_classic", options={"step_size": 1 / 64}, gradient=gradient,
                         regularizers={"taylor": (1.0, {"order": order})})
    block(Z0)
    value = block.regularization()
    value.backward()
    assert value.item() == pytest.approx(closed_form(-0.7, Z0, order), rel=1e-8)
    assert block.field.a.grad.item() == pytest.approx(closed_form_slope(-0.7, Z0, order), rel=1e-7)


def test_backprop_and_checkpoint_give_the_same_gradients():
    grads = []
    for gradient in ("backprop", "checkpoint"):
        torch.manual_seed(0)
        field = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
        block = nde.ODEBlock(lambda t, z, f=field: f(z), method="dopri5", rtol=1e-6, atol=1e-6, gradient=gradient,
                             regularizers={"taylor": 0.1})
        x = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
        (block(x).square().sum() + block.regularization()).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in field.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_a_fixed_grid_solve_uses_the_tableau_quadrature():
    # rk4 on z' = A z: the value is sum_j h sum_i b_i ||A^2 Y_i||^2 over the recorded stages, exactly.
    block = nde.ODEBlock(Linear(), method="rk4_classic", options={"step_size": 0.25}, regularizers={"taylor": 1.0})
    x = torch.tensor([[1.0, 0.5]], dtype=F64)
    block(x)
    a2 = torch.linalg.matrix_power(A, 2)
    expected = sum(0.25 * b * float((stage.y.detach() @ a2.T).square().sum())
                   for step in block.stats.accepted for b, stage in zip(block.plan.b, step.stages))
    assert block.regularization().item() == pytest.approx(expected, rel=1e-13)


def test_composes_with_a_drawn_end_time_per_sample_and_a_schedule():
    torch.manual_seed(0)
    block = nde.ODEBlock(Linear(), method="rk4_u2", options={"step_size": 0.25}, regularizers={"taylor": 1.0},
                         end_time="steer", end_time_options={"b": 0.2, "per_sample": True},
                         schedule="smoothing", seed=3)
    block.train()
    out = block(torch.randn(4, 2, dtype=F64))
    (out.sum() + block.regularization()).backward()
    assert torch.isfinite(block.field.A.grad).all() and block.field.A.grad.abs().sum() > 0


def test_a_whole_float_order_is_that_integer():  # the command line reads order=3 as 3.0
    assert TaylorDerivative(3.0).order == 3 and isinstance(TaylorDerivative(3.0).order, int)


@pytest.mark.parametrize("order", [1, 5, 2.5, float("nan"), -2, True, "2", None])
def test_an_order_outside_2_to_4_is_refused_naming_the_rule(order):
    with pytest.raises(ValueError, match=r"taylor: order must be an integer K in 2\.\.4"):
        TaylorDerivative(order)


def test_an_sde_block_refuses_it():
    drift = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="regularizer 'taylor' evaluates the vector field again"):
        nde.SDEBlock(drift, diffusion="additive", method="euler", dt=0.1, regularizers={"taylor": 1.0})


def test_a_regularizer_reading_the_field_without_declaring_it_is_refused():
    class Undeclared:
        requires = frozenset({"stages", "graph"})

        def __call__(self, stats):
            from nde_plugins.stats import quadrature_fields

            return sum(w * s.k.sum() for s, w, _ in zip(*quadrature_fields(stats)))

    block = nde.ODEBlock(Linear(), method="rk4_classic", options={"step_size": 0.5},
                         regularizers={Undeclared(): 1.0})
    block(torch.ones(1, 2, dtype=F64))
    with pytest.raises(nde.ContractError, match="reads 'field' but its requires is"):
        block.regularization()


def test_the_block_survives_pickle_deepcopy_and_state_dict_after_a_call():
    block = nde.ODEBlock(Linear(), method="dopri5", regularizers={"taylor": (1.0, {"order": 3})})
    x = torch.randn(2, 2, dtype=F64)
    before = block(x)
    value = block.regularization().item()
    stats = pickle.loads(pickle.dumps(block.stats))
    assert stats.steps and all(step.vector_field is None for step in stats.steps)  # the model is not stored
    assert all(step.vector_field is not None for step in block.stats.accepted)  # the original keeps its field
    with pytest.raises(ValueError, match="the vector field was not kept with these statistics"):
        TaylorDerivative()(stats)
    restored = pickle.loads(pickle.dumps(block))
    copied = copy.deepcopy(block)
    for other in (restored, copied):
        torch.testing.assert_close(other(x), before)
        assert other.regularization().item() == pytest.approx(value, rel=1e-12)
    fresh = nde.ODEBlock(Linear(torch.zeros(2, 2, dtype=F64)), method="dopri5", regularizers={"taylor": 1.0})
    fresh.load_state_dict(block.state_dict())
    torch.testing.assert_close(fresh(x), before)


def test_a_field_vmap_cannot_batch_is_evaluated_stage_by_stage_with_the_same_value():
    class Branchy(Linear):
        def forward(self, t, z):
            scale = 2.0 if float(t) > 10 else 1.0  # data-dependent Python control flow: vmap refuses it
            return scale * (z @ self.A.T)

    x = torch.tensor([[1.0, 0.5], [0.3, -0.2]], dtype=F64)
    values = []
    for field in (Linear(), Branchy()):
        block = nde.ODEBlock(field, method="dopri5", regularizers={"taylor": (1.0, {"order": 3})})
        block(x)
        values.append(block.regularization().item())
    assert values[1] == pytest.approx(values[0], rel=1e-12)
