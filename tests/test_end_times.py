"""End-time samplers (STEER): distributions, the per-call policy of both blocks, composition, refusals."""

import pytest
import torch

import nde_plugins as nde
from nde_plugins.end_times import Steer, SteerIntervals, SteerNormal

T01 = torch.tensor([0.0, 1.0], dtype=torch.float64)


class Field(torch.nn.Module):
    def __init__(self, dim=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(dim, dim, generator=g, dtype=torch.float64) / dim)
        self.c = torch.nn.Parameter(torch.randn(dim, generator=g, dtype=torch.float64) / dim)

    def forward(self, t, z):
        return torch.tanh(z @ self.w) + self.c * torch.cos(t)


def x_batch(n=4, dim=3):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


# ------------------------------------------------------------------------------------------- samplers


def test_steer_draws_uniformly_around_t1():
    g = torch.Generator().manual_seed(0)
    ends = Steer(b=0.5)(T01, g, batch=20000)
    assert ends.shape == (20000, 2) and bool((ends[:, 0] == 0).all())
    T = ends[:, 1]
    assert 0.5 < float(T.min()) and float(T.max()) < 1.5
    assert abs(float(T.mean()) - 1.0) < 0.01  # the mean's standard error is 0.002
    assert abs(float(T.std()) - 1 / 12**0.5) < 0.01  # a uniform of width 1


def test_steer_default_b_is_the_authors_widest_value():
    T = Steer()(T01, torch.Generator().manual_seed(0), batch=5000)[:, 1]
    assert float(T.min()) > 1e-3 and float(T.max()) < 2 - 1e-3 and float(T.min()) < 0.05


def test_steer_on_a_longer_grid_draws_the_last_time_only_unless_asked():
    t = torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=torch.float64)
    ends = Steer(b=0.4)(t, torch.Generator().manual_seed(0), batch=1000)
    assert bool((ends[:, :3] == t[:3]).all()) and bool(((ends[:, 3] - 2).abs() < 0.4).all())
    every = Steer(b=0.4, every_interval=True)(t, torch.Generator().manual_seed(0), batch=1000)
    assert bool((every[:, 1:] != t[1:]).all()) and bool(((every - t).abs() < 0.4).all())


def test_steer_on_a_decreasing_grid_draws_the_output_time():
    t = torch.tensor([1.0, 0.0], dtype=torch.float64)
    ends = Steer(b=0.5)(t, torch.Generator().manual_seed(0), batch=2000)
    assert bool((ends[:, 0] == 1).all()) and -0.5 < float(ends[:, 1].min()) and float(ends[:, 1].max()) < 0.5


def test_steer_normal_is_a_truncated_normal():
    g = torch.Generator().manual_seed(0)
    narrow = SteerNormal(std=0.1)(T01, g, batch=20000)[:, 1]
    assert abs(float(narrow.mean()) - 1.0) < 0.005 and abs(float(narrow.std()) - 0.1) < 0.005
    wide = SteerNormal(std=2.0)(T01, g, batch=20000)[:, 1]
    assert float(wide.min()) >= 1e-3  # truncated at t0 + min_length, never before the start
    assert float(wide.mean()) > 1.0  # the cut-off lower tail shifts the mean up


def test_steer_intervals_follows_the_per_interval_rule():
    t = torch.tensor([0.0, 0.1, 0.5, 0.6], dtype=torch.float64)
    ends = SteerIntervals(eps=0.01)(t, torch.Generator().manual_seed(0), batch=5000)
    assert bool((ends[:, 0] == 0).all())
    widths = (t[1:] - t[:-1]) - 0.01
    offsets = (ends[:, 1:] - t[1:]).abs()
    assert bool((offsets < widths).all())
    assert bool((ends[:, 1:] - t[:-1] >= 0.01 - 1e-12).all())  # every interval keeps at least eps
    assert (offsets / widths).max() > 0.99  # the whole allowed range is used


@pytest.mark.parametrize(
    "make, t, error, match",
    [
        (lambda: Steer(b=1.0), T01, ValueError, r"0 < b < the last interval \|t1 - t0\| = 1"),
        (lambda: Steer(b=2.0), T01, ValueError, "give a smaller b"),
        (lambda: Steer(b=0.0), T01, ValueError, "b must be a finite number > 0"),
        (lambda: Steer(b=float("nan")), T01, ValueError, "b must be a finite number > 0"),
        (lambda: Steer(b=0.3, every_interval=True), torch.tensor([0.0, 0.2, 1.0]), ValueError, "shortest interval"),
        (lambda: Steer(every_interval=1), T01, TypeError, "every_interval must be True or False"),
        (lambda: Steer(min_length=2.0), T01, ValueError, "default b"),
        (lambda: SteerNormal(std=0.0), T01, ValueError, "std must be a finite number > 0"),
        (lambda: SteerNormal(std=0.1, min_length=1.0), T01, ValueError, "min_length = 1 must be smaller"),
        (lambda: SteerIntervals(eps=0.5), torch.tensor([0.0, 0.4, 1.0]), ValueError, "smaller eps"),
        (lambda: SteerIntervals(eps=-1), T01, ValueError, "eps must be a finite number > 0"),
    ],
)
def test_sampler_options_are_checked_against_the_grid(make, t, error, match):
    with pytest.raises(error, match=match):
        make().check(t)


# ------------------------------------------------------------------------------------------- blocks


def ode(**kwargs):
    kwargs = {"rtol": 1e-10, "atol": 1e-10, **kwargs}
    return nde.ODEBlock(kwargs.pop("field", Field()), **kwargs)


def test_training_draws_a_new_end_time_per_call_and_eval_uses_t():
    block = ode(end_time="steer", end_time_options={"b": 0.5}, seed=0)
    x = x_batch()
    block(x)
    first = block.last_t.clone()
    block(x)
    assert first[0] == 0 and 0.5 < first[1] < 1.5 and not torch.equal(first, block.last_t)
    block.eval()
    z = block(x)
    assert torch.equal(block.last_t, block.t)
    assert torch.allclose(z, ode(field=block.field)(x), atol=0, rtol=0)


def test_a_shared_draw_is_the_same_solve_as_a_fixed_end_time():
    block = ode(end_time="steer", end_time_options={"b": 0.5}, seed=3)
    x = x_batch()
    z = block(x)
    fixed = ode(field=block.field, t=block.last_t)
    # (the fixed block keeps its t in the default float32, hence rounding-level differences)
    assert torch.allclose(z, fixed(x), atol=1e-6) and block.stats.nfe_forward == fixed.stats.nfe_forward


def test_draws_are_reproducible_with_a_seed_or_a_generator():
    x = x_batch()
    a, b = ode(end_time="steer", seed=7), ode(end_time="steer", seed=7)
    assert torch.equal(a(x), b(x)) and torch.equal(a.last_t, b.last_t)
    c = ode(end_time="steer", generator=torch.Generator().manual_seed(8))
    c(x)
    assert not torch.equal(a.last_t, c.last_t)


def test_per_sample_end_times_equal_separate_solves():
    block = ode(end_time="steer", end_time_options={"b": 0.5, "per_sample": True}, seed=0)
    x = x_batch()
    z = block(x)
    assert block.last_t.shape == (4, 2) and len(set(block.last_t[:, 1].tolist())) == 4
    for i in range(4):
        alone = ode(field=block.field, t=(0.0, float(block.last_t[i, 1])))(x[i:i + 1])
        assert torch.allclose(z[i], alone[0], atol=1e-8)


def test_per_sample_on_a_fixed_grid_takes_the_nominal_number_of_steps_per_sample():
    block = ode(method="rk4", options={"step_size": 0.25}, end_time="steer",
                end_time_options={"b": 0.5, "per_sample": True}, seed=0)
    x = x_batch()
    z = block(x)
    assert block.stats.steps_accepted == 4
    for i in range(4):
        T = float(block.last_t[i, 1])
        alone = nde.odeint(block.field, x[i], torch.tensor([0.0, T], dtype=torch.float64), method="rk4",
                           options={"step_size": T / 4})[-1]
        assert torch.allclose(z[i], alone, atol=1e-12)


def test_per_sample_field_sees_one_real_time_per_sample():
    seen = []

    def field(t, z):
        seen.append(t.detach().clone())
        return -z

    block = nde.ODEBlock(field, method="euler", options={"step_size": 0.5}, end_time="steer",
                         end_time_options={"b": 0.5, "per_sample": True}, seed=0)
    block(torch.ones(3, 2))
    assert seen[0].shape == (3, 1) and torch.equal(seen[0], torch.zeros(3, 1))
    assert torch.allclose(seen[1][:, 0], block.last_t[:, 1] / 2)  # the second Euler step starts half-way


def test_steer_intervals_restarts_every_interval_from_the_unaltered_start():
    t = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    block = nde.ODEBlock(lambda t, z: torch.ones_like(z), t=t, method="rk4", options={"step_size": 0.5},
                         end_time="steer_intervals", seed=0, return_all=True)
    z = block(torch.zeros(2, dtype=torch.float64))
    # dz/dt = 1: each interval adds its own length ends[k] - t[k-1], starting from the state so far.
    expected = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.float64), block.last_t[1:] - t[:-1]]), 0)
    assert torch.allclose(z[:, 0], expected, atol=1e-12)


def test_steer_intervals_per_sample_matches_the_shared_rule_sample_by_sample():
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    block = ode(t=t, end_time="steer_intervals", end_time_options={"eps": 0.01, "per_sample": True}, seed=0,
                return_all=True)
    x = x_batch(3)
    z = block(x)
    for i in range(3):
        state = x[i:i + 1]
        for k in (1, 2):
            state = ode(field=block.field, t=(float(t[k - 1]), float(block.last_t[i, k])))(state)
            assert torch.allclose(z[k, i], state[0], atol=1e-8)


@pytest.mark.parametrize("adjoint", [False, True])
@pytest.mark.parametrize("per_sample", [False, True])
def test_gradients_flow_through_a_drawn_end_time(adjoint, per_sample):
    block = ode(end_time="steer", end_time_options={"b": 0.5, "per_sample": per_sample}, seed=0, adjoint=adjoint,
                rtol=1e-9, atol=1e-9)
    x = x_batch()
    block(x).square().sum().backward()
    grads = [p.grad.clone() for p in block.field.parameters()]
    assert all(bool(g.abs().sum() > 0) for g in grads)
    # the same gradients as separate fixed-end solves of each sample
    field = block.field
    field.zero_grad()
    for i in range(4):
        T = float(block.last_t[i if per_sample else 0, -1] if per_sample else block.last_t[-1])
        ode(field=field, t=(0.0, T), adjoint=adjoint, rtol=1e-9, atol=1e-9)(x[i:i + 1]).square().sum().backward()
    for g, p in zip(grads, field.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6)


def test_statistics_and_regularizers_describe_the_solve_to_the_drawn_end():
    block = ode(end_time="steer", end_time_options={"b": 0.5}, seed=0, rtol=1e-6, atol=1e-6,
                regularizers={"error_estimate": 1.0, "stiffness": 0.1})
    block(x_batch())
    h = [s.h for s in block.stats.accepted]
    T = float(block.last_t[-1])
    assert sum(h[:-1]) < T <= sum(h) + 1e-12  # the accepted steps cover [0, T] (the last may overshoot)
    assert float(block.regularization().detach()) > 0


def test_a_family_member_on_a_fixed_grid_with_an_adjoint_and_a_sampled_end_time():
    block = ode(method="rk4_uv:u=0.3,v=0.7", options={"step_size": 0.125}, end_time="steer_normal",
                end_time_options={"std": 0.2, "per_sample": True}, seed=0, adjoint=True)
    block(x_batch()).sum().backward()
    assert block.field.w.grad is not None and block.stats.steps_accepted == 8


def test_every_step_of_a_multi_interval_call_is_in_one_statistics_record():
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    block = ode(t=t, method="rk4", options={"step_size": 0.1}, end_time="steer_intervals", seed=0,
                regularizers={"kinetic_energy": 1.0})
    block(x_batch())
    assert block.stats.steps_accepted >= 10 and float(block.regularization().detach()) > 0


# ----------------------------------------------------------------------------------------------- SDE


class Drift(torch.nn.Module):
    def forward(self, t, y):
        return -y + torch.sin(t)


def test_sde_block_draws_end_times_in_training_only():
    block = nde.SDEBlock(Drift(), "additive", {"sigma": 0.1}, dt=0.05, seed=0, end_time="steer",
                         end_time_options={"b": 0.5})
    x = torch.ones(3, 2)
    block(x)
    assert 0.5 < float(block.last_t[-1]) < 1.5 and block.last_t[-1] != 1.0
    block.eval()
    block(x)
    assert torch.equal(block.last_t, block.t)


def test_sde_per_sample_without_noise_equals_separate_solves():
    block = nde.SDEBlock(Drift(), "none", dt=0.1, seed=0, end_time="steer",
                         end_time_options={"b": 0.5, "per_sample": True})
    x = torch.ones(3, 2, dtype=torch.float64)
    z = block(x)
    for i in range(3):
        T = float(block.last_t[i, 1])
        alone = nde.SDEBlock(Drift(), "none", t=(0.0, T), dt=T / 10, seed=0)(x[i:i + 1])
        assert torch.allclose(z[i], alone[0], atol=1e-6)


def test_sde_per_sample_noise_scales_with_the_interval():
    # dh = sigma dW over [0, T_i]: the spread of h(T_i) - h(0) is sigma * sqrt(T_i).
    block = nde.SDEBlock(lambda t, y: torch.zeros_like(y), "additive", {"sigma": 1.0}, dt=0.05, seed=0,
                         end_time="steer", end_time_options={"b": 0.9, "per_sample": True})
    x = torch.zeros(20000, 1, dtype=torch.float64)
    z = block(x)[:, 0]
    T = block.last_t[:, 1]
    assert abs(float((z / T.sqrt()).std()) - 1.0) < 0.03


# --------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(end_time="steer", end_time_options={"b": 1.0}), ValueError, r"0 < b <"),
        (dict(end_time="steer", end_time_options={"bb": 0.1}), ValueError, r"no option 'bb'; did you mean 'b'\?"),
        (dict(end_time="steer", end_time_options={"per_sample": 1}), TypeError, "per_sample"),
        (dict(end_time="ster"), nde.UnknownPluginNameError, "did you mean 'steer'"),
        (dict(end_time_options={"b": 0.1}), ValueError, "end_time is not"),
        (dict(end_time="steer", end_time_options=[("b", 0.1)]), TypeError, "end_time_options must be a dict"),
        (dict(end_time="steer", seed=1, generator=torch.Generator()), ValueError, "not both"),
        (dict(end_time="steer", end_time_options={"per_sample": True}, method="rk4",
              options={"grid_constructor": lambda f, y0, t: t}), ValueError, "grid_constructor"),
    ],
)
def test_block_refuses_bad_end_time_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        ode(**kwargs)


def test_per_sample_and_interval_draws_need_a_tensor_state():
    field = lambda t, z: tuple(-p for p in z)  # noqa: E731
    state = (torch.ones(2, 3), torch.ones(2, 1))
    nde.ODEBlock(field, end_time="steer", seed=0)(state)  # a shared last-time draw works with tuples
    with pytest.raises(ValueError, match="tuple states are not supported"):
        nde.ODEBlock(field, end_time="steer", end_time_options={"per_sample": True}, seed=0)(state)
    with pytest.raises(ValueError, match="needs a tensor state"):
        nde.ODEBlock(field, t=(0.0, 0.5, 1.0), end_time="steer_intervals", seed=0)(state)


class _Broken:
    def __init__(self, result):
        self.result = result

    def __call__(self, t, generator, batch=None):
        return self.result


@pytest.mark.parametrize(
    "result, match",
    [
        (torch.tensor([0.0, 1.0, 2.0]), "the contract asks for"),
        (torch.tensor([0.0, -0.5]), "beyond its interval's start"),
        (torch.tensor([0.1, 1.0]), "first time must stay t0"),
        (torch.tensor([0.0, float("nan")]), "finite"),
    ],
)
def test_a_third_party_sampler_breaking_the_contract_is_named(result, match):
    class Plugin:
        @staticmethod
        @nde.hookimpl
        def register_end_time_samplers(register):
            register("broken_end", lambda: _Broken(result))

    name = nde.register_plugin(Plugin(), name="broken-end-time")
    try:
        block = nde.ODEBlock(lambda t, z: -z, end_time="broken_end")
        with pytest.raises(ValueError, match=match):
            block(torch.ones(2))
    finally:
        nde.unregister_plugin(name)


def test_a_third_party_sampler_is_used_by_name():
    class Fixed:
        def __call__(self, t, generator, batch=None):
            ends = t.clone()
            ends[-1] = 0.75
            return ends if batch is None else ends.expand(batch, -1)

    class Plugin:
        @staticmethod
        @nde.hookimpl
        def register_end_time_samplers(register):
            register("three_quarters", Fixed)

    name = nde.register_plugin(Plugin(), name="three-quarters")
    try:
        assert "three_quarters" in nde.get_registry().names("end_time_sampler")
        block = nde.ODEBlock(lambda t, z: -z, end_time="three_quarters")
        z = block(torch.ones(2, dtype=torch.float64))
        assert torch.allclose(z, torch.full((2,), 0.75, dtype=torch.float64).neg().exp(), atol=1e-6)
    finally:
        nde.unregister_plugin(name)


@pytest.mark.parametrize("adjoint", [False, True])
def test_sde_gradients_and_regularizers_with_per_sample_end_times(adjoint):
    drift = Drift()
    drift.lin = torch.nn.Linear(2, 2)
    drift.forward = lambda t, y: drift.lin(y) - y  # noqa: E731 - a drift with parameters
    regularizers = None if adjoint else {"error_estimate": 1.0}
    block = nde.SDEBlock(drift, "multiplicative", {"sigma": 0.1}, dt=0.1, seed=0, adjoint=adjoint,
                         end_time="steer", end_time_options={"b": 0.5, "per_sample": True}, regularizers=regularizers)
    loss = block(torch.ones(3, 2)).square().sum()
    if regularizers:
        loss = loss + block.regularization()
        assert block.stats.steps_accepted == 10  # the nominal 10 Euler steps over every sample's interval
    loss.backward()
    assert drift.lin.weight.grad is not None and float(drift.lin.weight.grad.abs().sum()) > 0


def test_sde_end_times_in_training_and_test_time_noise_in_evaluation():
    block = nde.SDEBlock(Drift(), "additive", {"sigma": 0.2}, dt=0.1, seed=0, end_time="steer_normal",
                         end_time_options={"std": 0.1}, test_time_noise=True, samples=5)
    x = torch.ones(3, 2)
    block(x)
    assert block.last_t[-1] != 1.0
    block.eval()
    samples = block(x, return_samples=True)
    assert samples.shape == (5, 3, 2) and torch.equal(block.last_t, block.t)
