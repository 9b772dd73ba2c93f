"""Registered tableaux running inside torchdiffeq: convergence, equivalence, gradients, options."""

import math
import random

import pytest
import torch
import torchdiffeq

import nde_plugins as nde
from nde_plugins.tableaux.builtin import EMBEDDED_PAIRS, FAMILIES, NAMED_MEMBERS

from .test_tableau import _random_params

F64 = torch.float64


def exp_sin_field(t, y):
    """y' = cos(t) y, y(0) = 1: exact solution exp(sin t); time-dependent, so c matters."""
    return torch.cos(t) * y


# Convergence problem: y' = A y with complex eigenvalues, exact solution by matrix_exp, error taken
# as the max over 9 output times so a sign change of the error at one time cannot fake a slope.
# (On y' = cos(t) y, Tsitouras' method, tuned for tiny 5th-order error terms, still shows its
# 6th-order terms at 256 steps; on this problem every method is in its asymptotic regime.)
_A = torch.tensor([[0.0, 4.0], [-4.0, -0.5]], dtype=F64)
_Y0 = torch.tensor([1.0, 0.0], dtype=F64)
_T = torch.linspace(0, 2, 9, dtype=F64)
_EXACT = torch.stack([torch.matrix_exp(_A * ti) @ _Y0 for ti in _T])


def _linear_field(t, y):
    return _A @ y


def _max_error(method, n_steps, options=None):
    y = nde.odeint(_linear_field, _Y0, _T, method=method, options={"step_size": 2.0 / n_steps, **(options or {})})
    return (y - _EXACT).abs().max().item()


def _fitted_order(method, options=None):
    steps = (32, 64, 128, 256)
    xs = [math.log(2.0 / n) for n in steps]
    ys = [math.log(_max_error(method, n, options)) for n in steps]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


@pytest.mark.parametrize("tableau", [*NAMED_MEMBERS, *EMBEDDED_PAIRS], ids=lambda t: t.name)
def test_fixed_step_convergence_order(tableau):
    assert abs(_fitted_order(tableau.name) - tableau.order) < 0.3


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_family_members_converge_at_the_family_order(family):
    rng = random.Random(family.name)
    order = family.member().order
    for params in [family.defaults, _random_params(family, rng), _random_params(family, rng)]:
        assert abs(_fitted_order(family.name, params) - order) < 0.3, params


@pytest.mark.parametrize("tableau", EMBEDDED_PAIRS, ids=lambda t: t.name)
def test_adaptive_pairs_reach_the_requested_tolerance(tableau):
    y0 = torch.ones(3, dtype=F64)
    t = torch.linspace(0.0, 2.0, 5, dtype=F64)
    errors = []
    for tol in (1e-6, 1e-8):
        y = nde.odeint(exp_sin_field, y0, t, method=tableau.name, rtol=tol, atol=tol)
        errors.append((y - torch.exp(torch.sin(t))[:, None]).abs().max().item())
        # global error (outputs interpolated between steps) within a small multiple of the local tolerance
        assert errors[-1] < 50 * tol, (tol, errors[-1])
    assert errors[1] < errors[0] / 10


class CountingField(torch.nn.Module):
    def __init__(self, dim=4, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(dim, dim, generator=g, dtype=F64) / dim**0.5)
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return torch.tanh(y @ self.w) + 0.1 * torch.sin(t)


def test_rk4_uv_at_three_eighths_reproduces_torchdiffeq_rk4():
    field, y0 = CountingField(), torch.randn(5, 4, dtype=F64)
    t = torch.linspace(0, 1, 4, dtype=F64)
    ours = torchdiffeq.odeint(field, y0, t, method="rk4_uv", options={"u": 1 / 3, "v": 2 / 3, "step_size": 0.1})
    nfe_ours, field.nfe = field.nfe, 0
    ref = torchdiffeq.odeint(field, y0, t, method="rk4", options={"step_size": 0.1})
    assert torch.allclose(ours, ref, rtol=0, atol=1e-12)
    assert nfe_ours == field.nfe


@pytest.mark.parametrize("adjoint", [False, True])
def test_dormand_prince_reproduces_dopri5_with_the_same_nfe(adjoint):
    field, y0 = CountingField(), torch.randn(5, 4, dtype=F64)
    t = torch.linspace(0, 2, 6, dtype=F64)
    solve = torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint
    ours = solve(field, y0, t, method="dormand_prince", rtol=1e-6, atol=1e-8)
    nfe_ours, field.nfe = field.nfe, 0
    ref = solve(field, y0, t, method="dopri5", rtol=1e-6, atol=1e-8)
    assert torch.allclose(ours, ref, rtol=0, atol=1e-12)
    assert nfe_ours == field.nfe


def _loss_and_grad(method, options, adjoint, **kw):
    field = CountingField()
    y0 = torch.randn(3, 4, dtype=F64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 1.0], dtype=F64)
    y = nde.odeint(field, y0, t, method=method, options=options, adjoint=adjoint, **kw)
    loss = y[-1].square().sum()
    (grad,) = torch.autograd.grad(loss, field.w)
    return field, y0, t, loss, grad


@pytest.mark.parametrize(
    "method, options, tol",
    # On a fixed grid the adjoint's backward solve has its own discretization error, O(h^order).
    [("rk4_uv", {"u": 0.3, "v": 0.7, "step_size": 0.02}, 1e-5), ("dormand_prince", {}, 1e-6),
     ("rk3:u=0.4,v=0.9", {"step_size": 0.02}, 1e-4)],
)
def test_gradients_direct_adjoint_and_finite_differences_agree(method, options, tol):
    kw = {"rtol": 1e-10, "atol": 1e-10}
    field, y0, t, _, grad = _loss_and_grad(method, options, adjoint=False, **kw)
    _, _, _, _, grad_adj = _loss_and_grad(method, options, adjoint=True, **kw)
    assert torch.allclose(grad, grad_adj, rtol=tol, atol=tol)
    # central finite difference along one random direction
    direction = torch.randn_like(field.w)
    eps = 1e-6
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            f = CountingField()
            f.w.add_(sign * eps * direction)
            y = nde.odeint(f, y0, t, method=method, options=options, **kw)
            values.append(y[-1].square().sum().item())
    fd = (values[0] - values[1]) / (2 * eps)
    assert fd == pytest.approx((grad * direction).sum().item(), rel=1e-5)


@pytest.mark.parametrize("method, options", [("rk4_u3", {"step_size": 0.1}), ("cash_karp", {})])
def test_reversed_time_matches_forward_solution(method, options):
    y0 = torch.ones(2, dtype=F64)
    t_fwd = torch.tensor([0.0, 1.5], dtype=F64)
    y1 = nde.odeint(exp_sin_field, y0, t_fwd, method=method, options=options, rtol=1e-9, atol=1e-9)[-1]
    back = nde.odeint(exp_sin_field, y1, t_fwd.flip(0), method=method, options=options, rtol=1e-9, atol=1e-9)[-1]
    assert torch.allclose(back, y0, atol=1e-5)


@pytest.mark.parametrize("method, options", [("rk2:u=0.75", {"step_size": 0.01}), ("tsitouras5", {})])
def test_tuple_states(method, options):
    def field(t, state):
        x, v = state
        return v, -x

    x0, v0 = torch.ones(3, dtype=F64), torch.zeros(3, dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    x, v = nde.odeint(field, (x0, v0), t, method=method, options=options, rtol=1e-8, atol=1e-8)
    assert torch.allclose(x[-1], torch.full((3,), math.cos(1.0), dtype=F64), atol=1e-4)
    assert torch.allclose(v[-1], torch.full((3,), -math.sin(1.0), dtype=F64), atol=1e-4)


def test_step_callbacks_are_called():
    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.accepted, self.rejected, self.steps = 0, 0, 0

        def forward(self, t, y):
            return -5 * y

        def callback_step(self, t0, y0, dt):
            self.steps += 1

        def callback_accept_step(self, t0, y0, dt):
            self.accepted += 1

        def callback_reject_step(self, t0, y0, dt):
            self.rejected += 1

    f = Field()
    torchdiffeq.odeint(f, torch.ones(2), torch.tensor([0.0, 3.0]), method="bogacki_shampine", rtol=1e-6, atol=1e-6)
    assert f.accepted > 0 and f.steps == f.accepted + f.rejected
    g = Field()
    torchdiffeq.odeint(g, torch.ones(2), torch.tensor([0.0, 1.0]), method="rk4_classic", options={"step_size": 0.25})
    assert g.steps == 4 and g.accepted == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method, options", [("rk4_uv", {"step_size": 0.1}), ("tsitouras5", {})])
def test_dtype_follows_y0(dtype, method, options):
    y = nde.odeint(exp_sin_field, torch.ones(2, dtype=dtype), torch.tensor([0.0, 1.0], dtype=dtype),
                   method=method, options=options, rtol=1e-5, atol=1e-5)
    assert y.dtype == dtype


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("method, options", [("rk4_uv", {"step_size": 0.1}), ("tsitouras5", {})])
def test_runs_on_cuda(method, options):
    y = nde.odeint(exp_sin_field, torch.ones(2, device="cuda"), torch.tensor([0.0, 1.0], device="cuda"),
                   method=method, options=options)
    assert y.device.type == "cuda"


def test_adaptive_pair_runs_on_a_fixed_grid_when_given_step_size():
    field = CountingField()
    nde.odeint(field, torch.randn(2, 4, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
               method="tsitouras5", options={"step_size": 0.25})
    assert field.nfe == 4 * 7  # 4 steps x 7 stages, no error control


def test_fixed_grid_default_grid_is_t():
    field = CountingField()
    nde.odeint(field, torch.randn(2, 4, dtype=F64), torch.linspace(0, 1, 6, dtype=F64), method="rk38")
    assert field.nfe == 5 * 4


def test_method_forms_are_equivalent():
    fam = nde.get_registry().get("tableau", "rk4_uv")
    member = fam(u=0.3, v=0.7)
    y0, t = torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    results = [
        nde.odeint(exp_sin_field, y0, t, method="rk4_uv", options={"u": 0.3, "v": 0.7, "step_size": 0.1}),
        nde.odeint(exp_sin_field, y0, t, method="rk4_uv:u=0.3,v=0.7", options={"step_size": 0.1}),
        nde.odeint(exp_sin_field, y0, t, method=fam, options={"u": 0.3, "v": 0.7, "step_size": 0.1}),
        nde.odeint(exp_sin_field, y0, t, method=member, options={"step_size": 0.1}),
        nde.odeint(exp_sin_field, y0, t, method=member.renamed("my_unregistered"), options={"step_size": 0.1}),
    ]
    for r in results[1:]:
        assert torch.equal(r, results[0])


def test_unregistered_tableau_object_runs():
    heun = nde.Tableau("my_heun", c=[0, 1], a=[[], [1]], b=[0.5, 0.5], b_hat=[1, 0], order=2)
    y = nde.odeint(exp_sin_field, torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64), method=heun,
                   rtol=1e-8, atol=1e-8)
    assert abs(y[-1].item() - math.exp(math.sin(1.0))) < 1e-5


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"method": "rk4_u4"}, ValueError, "unknown tableau 'rk4_u4'; did you mean 'rk4_u"),
        ({"method": "rk4_uv", "options": {"uu": 0.3, "step_size": 0.1}}, ValueError,
         "unknown option\\(s\\) \\['uu'\\]"),
        ({"method": "rk4_uv", "options": {"u": 0.5, "step_size": 0.1}}, nde.TableauError, "u not in"),
        ({"method": "rk4:u=0.3"}, ValueError, "takes no parameters"),
        ({"method": "rk2:u=0.3", "options": {"u": 0.4}}, ValueError, "given both in the method spec"),
        ({"method": "rk2:u"}, ValueError, "is not param=value"),
        ({"method": "rk2:u=x"}, ValueError, "is not a number"),
        ({"method": 3}, TypeError, "method must be a name"),
        ({"method": "rk38", "options": {"first_step": 0.1}}, ValueError,
         "adaptive option 'first_step' would be ignored"),
        ({"method": "dormand_prince", "options": {"perturb": True}}, ValueError, "fixed-grid option 'perturb'"),
        ({"method": "rk38", "adjoint_rtol": 1e-3}, ValueError, "only apply with gradient='adjoint'"),
    ],
)
def test_bad_method_input_is_refused_clearly(kwargs, error, match):
    with pytest.raises(error, match=match):
        nde.odeint(exp_sin_field, torch.ones(1), torch.tensor([0.0, 1.0]), **kwargs)


def test_plain_torchdiffeq_lists_registered_names_in_its_error():
    with pytest.raises(ValueError, match="rk4_uv"):
        torchdiffeq.odeint(exp_sin_field, torch.ones(1), torch.tensor([0.0, 1.0]), method="no_such_method")
