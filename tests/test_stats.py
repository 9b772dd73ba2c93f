"""Step statistics: counting rules, recorded error ratios, stiffness, gradients, directions, tuples."""

import math

import pytest
import torch
import torchdiffeq
from torchdiffeq._impl.dopri5 import Dopri5Solver

import nde_plugins as nde
from nde_plugins.stats import flat, rms

F64 = torch.float64


class Field(torch.nn.Module):
    def __init__(self, dim=3, seed=0, scale=1.0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(scale * torch.randn(dim, dim, generator=g, dtype=F64))
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return torch.tanh(y @ self.w) - 0.3 * y + 0.1 * torch.cos(t)


class Counter(Field):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.accepted = self.rejected = 0

    def callback_accept_step(self, t0, y0, dt):
        self.accepted += 1

    def callback_reject_step(self, t0, y0, dt):
        self.rejected += 1


@pytest.mark.parametrize("first_step", [None, 0.9])  # 0.9 forces rejected steps
def test_dopri5_counts_match_torchdiffeq(first_step):
    y0 = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 3.0], dtype=F64)
    opts = {} if first_step is None else {"first_step": first_step}
    ref = Counter(scale=3.0)
    torchdiffeq.odeint(ref, y0, t, method="dopri5", rtol=1e-8, atol=1e-8, options=opts)
    _, stats = nde.odeint(Counter(scale=3.0), y0, t, method="dopri5", rtol=1e-8, atol=1e-8, options=opts,
                          return_stats=True)
    assert stats.nfe_forward == ref.nfe
    assert (stats.steps_accepted, stats.steps_rejected) == (ref.accepted, ref.rejected)
    # torchdiffeq's rule: f0, one probe for the initial step (none with first_step), 6 per attempted step
    probes = 1 if first_step is None else 0
    assert stats.nfe_forward == 1 + probes + 6 * (stats.steps_accepted + stats.steps_rejected)
    if first_step is not None:
        assert stats.steps_rejected > 0


def test_recorded_error_ratio_is_torchdiffeqs_error_ratio():
    """E_j recomputed from the recorded stages with dopri5's error weights equals the recorded one."""
    y0 = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    rtol, atol = 1e-6, 1e-7
    _, stats = nde.odeint(Field(scale=2.0), y0, torch.tensor([0.0, 2.0], dtype=F64), method="dopri5", rtol=rtol,
                          atol=atol, options={"first_step": 0.8}, return_stats=True, keep_stages=True)
    c_error = Dopri5Solver.tableau.c_error.tolist()
    c_sol = Dopri5Solver.tableau.c_sol.tolist()
    assert stats.steps_rejected > 0
    for step in stats.steps:
        ks = [flat(s.k) for s in step.stages]
        y_start = flat(step.stages[0].y)
        y_end = y_start + step.h * sum(b * k for b, k in zip(c_sol, ks))
        err = step.h * sum(e * k for e, k in zip(c_error, ks))
        expected = rms(err / (atol + rtol * torch.maximum(y_start.abs(), y_end.abs())))
        assert step.error_ratio.item() == pytest.approx(expected.item(), rel=1e-9)
        assert (step.error_ratio.item() <= 1) == step.accepted


def test_error_ratio_carries_gradients_to_every_parameter():
    field = Field()
    _, stats = nde.odeint(field, torch.randn(2, 3, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
                          method="tsitouras5", rtol=1e-6, atol=1e-6, return_stats=True)
    reg = nde.ErrorEstimate()(stats)
    (grad,) = torch.autograd.grad(reg, field.w)
    assert grad.abs().min() > 0


def test_gradient_of_error_regularizer_matches_finite_differences():
    """On a fixed grid the steps do not move with the parameters, so R_E is smooth in them."""
    y0 = torch.randn(2, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([0.0, 1.0], dtype=F64)
    kw = dict(method="dormand_prince", options={"step_size": 0.25}, rtol=1e-6, atol=1e-6, return_stats=True,
              keep_stages=True)

    def r_e(field):
        _, stats = nde.odeint(field, y0, t, **kw)
        return nde.ErrorEstimate()(stats)

    field = Field()
    (grad,) = torch.autograd.grad(r_e(field), field.w)
    direction = torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(4))
    eps = 1e-6
    values = []
    for sign in (1, -1):
        f = Field()
        with torch.no_grad():
            f.w.add_(sign * eps * direction)
            values.append(r_e(f).item())
    assert (values[0] - values[1]) / (2 * eps) == pytest.approx((grad * direction).sum().item(), rel=1e-6)


def test_fixed_grid_pair_error_ratio_matches_the_adaptive_formula():
    """A fixed-grid embedded pair reports E_j computed exactly as torchdiffeq's adaptive loop does."""
    y0 = torch.randn(2, 3, dtype=F64, generator=torch.Generator().manual_seed(5))
    t = torch.tensor([0.0, 0.5], dtype=F64)
    _, adaptive = nde.odeint(Field(), y0, t, method="dormand_prince", rtol=1e-5, atol=1e-5,
                             options={"first_step": 0.5, "max_step": 0.5}, return_stats=True)
    first = adaptive.steps[0]
    assert first.h == pytest.approx(0.5)
    _, fixed = nde.odeint(Field(), y0, t, method="dormand_prince", rtol=1e-5, atol=1e-5,
                          options={"step_size": 0.5}, return_stats=True, keep_stages=True)
    assert fixed.steps[0].error_ratio.item() == pytest.approx(first.error_ratio.item(), rel=1e-10)


def test_stiffness_estimate_approaches_the_dominant_eigenvalue():
    a = torch.tensor([[-1.0, 0.5], [0.0, -30.0]], dtype=F64)
    y0, t = torch.tensor([1.0, 1.0], dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    _, stats = nde.odeint(lambda t, y: y @ a.T, y0, t, method="dopri5", rtol=1e-8, atol=1e-8, return_stats=True,
                          keep_stages=True)
    s = stats.stiffness_estimates()
    assert s.max().item() <= 30.0 * 1.001
    assert s[len(s) // 2:].median().item() == pytest.approx(30.0, rel=0.05)


@pytest.mark.parametrize("method, options", [("dopri5", {}), ("rk4_uv", {"step_size": 0.1})])
def test_reversed_time_records_negative_steps(method, options):
    y0 = torch.randn(2, 3, dtype=F64)
    fwd_y, fwd = nde.odeint(Field(), y0, torch.tensor([0.0, 1.0], dtype=F64), method=method, options=options,
                            rtol=1e-7, atol=1e-7, return_stats=True)
    _, back = nde.odeint(Field(), fwd_y[-1], torch.tensor([1.0, 0.0], dtype=F64), method=method,
                         options=options, rtol=1e-7, atol=1e-7, return_stats=True)
    assert all(h > 0 for h in fwd.step_sizes()) and all(h < 0 for h in back.step_sizes())
    assert back.steps[0].t0 == pytest.approx(1.0)
    assert sum(back.step_sizes()) <= -1.0 + 1e-9


def test_tuple_states():
    def field(t, state):
        x, v = state
        return v, -4 * x

    (x, v), stats = nde.odeint(field, (torch.ones(3, dtype=F64), torch.zeros(3, dtype=F64)),
                               torch.tensor([0.0, 1.0], dtype=F64), method="tsitouras5", rtol=1e-8, atol=1e-8,
                               return_stats=True, keep_stages=True)
    assert x[-1][0].item() == pytest.approx(math.cos(2.0), abs=1e-6)
    assert stats.steps_accepted > 0 and stats.error_ratios().shape == (stats.steps_accepted,)
    # the undamped oscillator x'' = -4x: eigenvalues +-2i, Jacobian norm 4; ||J d|| / ||d|| lies between
    s = stats.stiffness_estimates()
    assert 1.9 <= s.max().item() <= 4.0 + 1e-6


def test_adjoint_counts_backward_evaluations_separately():
    field = Field()
    y, stats = nde.odeint(field, torch.randn(2, 3, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
                          method="dopri5", rtol=1e-6, atol=1e-6, adjoint=True, return_stats=True)
    steps = stats.steps_accepted + stats.steps_rejected
    assert stats.nfe_backward == 0 and stats.nfe_forward == 2 + 6 * steps
    y[-1].sum().backward()
    assert stats.nfe_backward > 0
    assert stats.steps_accepted + stats.steps_rejected == steps  # backward norm calls are not steps
    assert not stats.steps[0].error_ratio.requires_grad


def test_non_finite_state_reports_the_time():
    def exploding(t, y):
        return torch.where(t > 0.5, torch.full_like(y, float("nan")), -y)

    # the field turns NaN in the step from 0.6, so the state is first non-finite at 0.7
    with pytest.raises(FloatingPointError, match=r"non-finite state at t = 0\.7"):
        nde.odeint(exploding, torch.ones(2), torch.tensor([0.0, 1.0]), method="euler",
                   options={"step_size": 0.1}, return_stats=True)
    with pytest.raises(FloatingPointError, match="non-finite state at the final time t = 1"):
        nde.odeint(lambda t, y: torch.where(t > 0.95, torch.full_like(y, float("inf")), -y), torch.ones(2),
                   torch.tensor([0.0, 1.0]), method="rk4", options={"step_size": 0.1}, return_stats=True)


def test_summary_is_plain_numbers():
    _, stats = nde.odeint(Field(), torch.randn(2, 3, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
                          return_stats=True, keep_stages=True)
    summary = stats.summary()
    assert summary["nfe_forward"] == stats.nfe_forward and isinstance(summary["error_ratio_max"], float)
    assert isinstance(summary["stiffness_max"], float)


def test_keep_stages_needs_return_stats():
    with pytest.raises(ValueError, match="keep_stages=True only applies with return_stats=True"):
        nde.odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0]), keep_stages=True)


def test_a_block_forms_stiffness_estimates_only_when_a_regularizer_reads_them():
    field = lambda t, z: -z  # noqa: E731
    quadrature = nde.ODEBlock(field, method="dopri5", rtol=1e-5, atol=1e-5, regularizers={"kinetic_energy": 1.0})
    quadrature(torch.ones(2, 3, requires_grad=True))
    assert quadrature.stats.stiffness_estimates().numel() == 0  # stages kept for the quadrature, no S_j
    stiff = nde.ODEBlock(field, method="dopri5", rtol=1e-5, atol=1e-5, regularizers={"stiffness": 1.0})
    stiff(torch.ones(2, 3, requires_grad=True))
    assert stiff.stats.stiffness_estimates().numel() == stiff.stats.steps_accepted > 0
    assert all(step.stages is None for step in stiff.stats.steps)  # S_j needs no stored stages


def test_a_block_keeps_error_ratios_with_a_graph_only_for_a_regularizer_that_differentiates_them():
    x = torch.randn(4, 3, dtype=F64)
    plain = nde.ODEBlock(Field(), method="dopri5", rtol=1e-6, atol=1e-6)
    plain(x)
    assert plain.stats.steps and not any(s.error_ratio.requires_grad for s in plain.stats.steps)
    regularized = nde.ODEBlock(Field(), method="dopri5", rtol=1e-6, atol=1e-6, regularizers={"error_estimate": 1.0})
    regularized(x)
    assert all(s.error_ratio.requires_grad for s in regularized.stats.accepted)
    assert regularized.regularization().requires_grad


def test_a_block_lets_go_of_the_previous_call_before_the_next_solve():
    import gc
    import weakref

    block = nde.ODEBlock(Field(), method="dopri5", rtol=1e-6, atol=1e-6, regularizers={"stiffness": 1.0})
    x = torch.randn(4, 3, dtype=F64)
    block(x).sum().backward()
    previous = weakref.ref(block.stats)
    seen = []

    def callback_step(t0, y0, dt):  # runs inside the next solve
        gc.collect()
        seen.append(previous() is None)

    block.field.callback_step = callback_step
    block(x)
    assert seen and all(seen)


def test_fixed_grid_divergence_names_the_step_and_tuple_states_too():
    def exploding(t, y):
        return tuple(torch.where(t > 0.25, torch.full_like(p, float("inf")), -p) for p in y)

    # the step from 0.2 evaluates at t = 0.2667 > 0.25, so the state is first non-finite at 0.3
    with pytest.raises(FloatingPointError, match=r"non-finite state at t = 0\.3 "):
        nde.odeint(exploding, (torch.ones(2), torch.ones(3)), torch.tensor([0.0, 1.0]), method="rk4_uv",
                   options={"step_size": 0.1}, return_stats=True)


def test_a_block_observes_its_current_field_after_the_field_is_replaced():
    block = nde.ODEBlock(Field(seed=0), method="dopri5", rtol=1e-6, atol=1e-6)
    x = torch.randn(4, 3, dtype=F64)
    block(x)
    replacement = Counter(seed=1)
    block.field = replacement
    out = block(x)
    assert replacement.nfe == block.stats.nfe_forward > 0
    expected = torchdiffeq.odeint(Field(seed=1), x, torch.tensor([0.0, 1.0], dtype=F64), rtol=1e-6, atol=1e-6)[-1]
    torch.testing.assert_close(out, expected)


def test_a_block_follows_a_reassigned_time_grid():
    block = nde.ODEBlock(Field(), t=(0.0, 1.0), method="rk4", options={"step_size": 0.25})
    x = torch.randn(2, 3, dtype=F64)
    block(x)
    assert all(step.h > 0 for step in block.stats.steps)
    block.t = torch.tensor([1.0, 0.0])
    block(x)
    assert block.stats.steps and all(step.h < 0 for step in block.stats.steps)


def test_fixed_grid_error_ratios_keep_a_graph_only_for_a_regularizer_that_differentiates_them():
    x = torch.randn(2, 3, dtype=F64)
    stiff = nde.ODEBlock(Field(), method="dormand_prince", options={"step_size": 0.25}, regularizers={"stiffness": 1.0})
    stiff(x)
    assert stiff.stats.steps and not any(s.error_ratio.requires_grad for s in stiff.stats.steps)
    errors = nde.ODEBlock(Field(), method="dormand_prince", options={"step_size": 0.25},
                          regularizers={"error_estimate": 1.0})
    errors(x)
    assert all(s.error_ratio.requires_grad for s in errors.stats.steps)
