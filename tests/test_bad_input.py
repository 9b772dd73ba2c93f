"""Bad input to the solves and blocks: a clear error naming the argument, never a hang or a silent result."""

import math
import warnings

import pytest
import torch
import torchdiffeq

import nde_plugins as nde

T = torch.tensor([0.0, 1.0], dtype=torch.float64)


def decay(t, y):
    return -y


def blows_up(t, y):
    return y**2  # y(0) = 1 gives y = 1 / (1 - t): infinite at t = 1


class Linear(torch.nn.Module):
    def __init__(self, dim=3):
        super().__init__()
        self.lin = torch.nn.Linear(dim, dim)

    def forward(self, t, y):
        return self.lin(y)


# ------------------------------------------------------------------------------------------ odeint


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(rtol=-1e-6), ValueError, "rtol must be finite and >= 0"),
        (dict(atol=float("nan")), ValueError, "atol must be finite and >= 0"),
        (dict(atol=torch.tensor([1e-6, -1.0, 1e-6])), ValueError, "atol must be finite and >= 0"),
        (dict(rtol=0.0, atol=0.0), ValueError, "both 0"),
        (dict(rtol=True), TypeError, "rtol must be a number"),
        (dict(method="dopri5", options={"stepsize": 0.1}), ValueError, r"unknown option\(s\) \['stepsize'\]"),
        (dict(method="dopri5", options={"step_size": 0.1}), ValueError, r"unknown option\(s\) \['step_size'\]"),
        (dict(method="rk4", options={"first_step": 0.1}), ValueError, "unknown option"),
        (dict(method="rk4", options={"step_size": float("nan")}), ValueError, r"options\['step_size'\] must be"),
        (dict(method="rk4", options={"step_size": -0.1}), ValueError, r"options\['step_size'\] must be"),
        (dict(method="rk4_uv", options={"step_size": 0.0}), ValueError, r"options\['step_size'\] must be"),
        (dict(method="rk2", options={"step_size": 2.0}), ValueError, "longer than the whole integration interval"),
        (dict(t=torch.tensor([0.0, float("inf")], dtype=torch.float64)), ValueError, "finite times"),
        (dict(t=torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64)), ValueError, "strictly increasing or"),
        (dict(t=torch.tensor([0, 1])), TypeError, "floating-point times"),
    ],
)
def test_odeint_refuses_bad_arguments(kwargs, error, match):
    kwargs = {"t": T, **kwargs}
    with pytest.raises(error, match=match):
        nde.odeint(decay, torch.ones(3, dtype=torch.float64), kwargs.pop("t"), **kwargs)


def test_get_tableau_refuses_a_parameter_given_twice_like_odeint():
    with pytest.raises(ValueError, match="given both in the method spec"):
        nde.get_tableau("rk4_uv:u=0.3", u=0.4)
    with pytest.raises(ValueError, match="given both in the method spec"):
        nde.odeint(decay, torch.ones(2), T.float(), method="rk4_uv:u=0.3", options={"u": 0.4, "step_size": 0.5})
    assert nde.get_tableau("rk4_uv:u=0.3", u=0.3) == nde.get_tableau("rk4_uv", u=0.3)  # agreeing is fine


@pytest.mark.parametrize("method", ["rk4", "rk2", "dopri5", "tsitouras5"])
def test_integer_state_is_refused(method):
    options = {"step_size": 0.1} if method in ("rk4", "rk2") else {}
    with pytest.raises(TypeError, match="must be floating point"):
        nde.odeint(decay, torch.ones(3, dtype=torch.int64), T, method=method, options=options)
    with pytest.raises(TypeError, match="floating point"):
        nde.ODEBlock(Linear(), method=method, options=options)(torch.ones(2, 3, dtype=torch.int64))


def test_integer_state_is_refused_by_registered_solvers_under_plain_torchdiffeq():
    with pytest.raises(TypeError, match="must be floating point"):
        torchdiffeq.odeint(decay, torch.ones(3, dtype=torch.int64), T, method="rk38", options={"step_size": 0.1})


def wrong_shape(t, y):
    return -y.sum(-1, keepdim=True)  # (1,) for a (3,) state: broadcasts silently in torchdiffeq


@pytest.mark.parametrize(
    "method, options", [("rk38", {"step_size": 0.1}), ("dormand_prince", {}), ("rk2", {"step_size": 0.5})]
)
def test_field_with_a_broadcastable_wrong_shape_is_refused_by_registered_solvers(method, options):
    with pytest.raises(ValueError, match=r"returned shape \(1,\) for a state of shape \(3,\)"):
        torchdiffeq.odeint(wrong_shape, torch.ones(3), T.float(), method=method, options=options)


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_field_with_a_wrong_shape_is_refused_by_observed_solves(method):
    options = {"step_size": 0.1} if method == "rk4" else {}
    with pytest.raises(ValueError, match="returned shape"):
        nde.odeint(wrong_shape, torch.ones(3), T.float(), method=method, options=options, return_stats=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("method", ["dopri5", "tsitouras5"])
def test_half_precision_adaptive_solves_are_refused(dtype, method):
    with pytest.raises(TypeError, match="stalls in"):
        nde.odeint(decay, torch.ones(3, dtype=dtype), T.float(), method=method)
    with pytest.raises(TypeError, match="stalls in"):
        nde.ODEBlock(decay, method=method)(torch.ones(3, dtype=dtype))


def test_half_precision_is_refused_by_registered_pairs_under_plain_torchdiffeq():
    with pytest.raises(TypeError, match="stalls in"):
        torchdiffeq.odeint(decay, torch.ones(3, dtype=torch.bfloat16), T.float(), method="cash_karp")
    # on a fixed grid half precision is fine
    y = torchdiffeq.odeint(decay, torch.ones(3, dtype=torch.bfloat16), T.float(), method="cash_karp",
                           options={"step_size": 0.25})
    assert y.dtype == torch.bfloat16 and abs(float(y[-1, 0]) - math.exp(-1)) < 0.01


@pytest.mark.parametrize("method", ["dopri5", "dormand_prince", "bogacki_shampine"])
@pytest.mark.parametrize("return_stats", [False, True])
def test_a_diverging_adaptive_solve_raises_floating_point_error_naming_the_time(method, return_stats):
    y0 = torch.ones(1, dtype=torch.float64)
    with pytest.raises(FloatingPointError, match=r"near t = 1\b"):
        nde.odeint(blows_up, y0, torch.tensor([0.0, 2.0], dtype=torch.float64), method=method,
                   return_stats=return_stats)


def test_a_diverging_solve_backwards_in_time_names_the_negative_time():
    with pytest.raises(FloatingPointError, match=r"near t = -1\b"):
        nde.odeint(lambda t, y: -(y**2), torch.ones(1, dtype=torch.float64),
                   torch.tensor([0.0, -2.0], dtype=torch.float64))


def test_a_diverging_fixed_grid_solve_names_the_time():
    with pytest.raises(FloatingPointError, match=r"t = 1\b"):
        # y(0.5) = 1 + e^100 / 2 is finite, y(1) overflows
        nde.odeint(lambda t, y: torch.exp(100 * y), torch.ones(1, dtype=torch.float64),
                   torch.tensor([0.0, 2.0], dtype=torch.float64), method="euler", options={"step_size": 0.5},
                   return_stats=True)


def test_fixed_grid_block_warns_that_accept_and_reject_callbacks_are_not_called():
    class WithCallbacks(Linear):
        def callback_accept_step(self, t0, y0, dt):
            pass

    with pytest.warns(UserWarning, match="does not support callbacks"):
        nde.ODEBlock(WithCallbacks(), method="rk4", options={"step_size": 0.5})(torch.ones(2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nde.ODEBlock(WithCallbacks(), method="dopri5")(torch.ones(2, 3))  # adaptive: it is called


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(t=(0.0, float("nan"))), "finite times"),
        (dict(t=(1.0, 1.0)), "strictly increasing or"),
        (dict(rtol=-1.0), "rtol must be finite"),
        (dict(method="rk4", options={"step_size": float("nan")}), "step_size"),
        (dict(method="dopri5", options={"step": 0.1}), "unknown option"),
    ],
)
def test_ode_block_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nde.ODEBlock(Linear(), **kwargs)


# ------------------------------------------------------------------------------------- regularizers


@pytest.mark.parametrize(
    "weight, error, match",
    [
        (float("nan"), ValueError, "weight must be a finite number >= 0"),
        (float("inf"), ValueError, "weight must be a finite number >= 0"),
        (True, TypeError, "weight must be a number"),
        ("0.1", TypeError, "weight must be a number"),
    ],
)
def test_regularizer_weights_must_be_finite_and_nonnegative(weight, error, match):
    with pytest.raises(error, match=match):
        nde.ODEBlock(Linear(), regularizers={"error_estimate": weight})


@pytest.mark.parametrize("value", [-1.0, float("nan")])
def test_a_weight_schedule_returning_a_bad_value_fails_when_read(value):
    block = nde.ODEBlock(Linear(), regularizers={"error_estimate": lambda epoch: value})
    block(torch.ones(2, 3))
    with pytest.raises(ValueError, match="the weight schedule .* at epoch 1"):
        block.regularization()


@pytest.mark.parametrize(
    "args, error, match",
    [
        ((float("nan"), 1.0, 5), ValueError, "start must be a finite number > 0"),
        ((1.0, float("inf"), 5), ValueError, "end must be a finite number > 0"),
        ((1.0, 0.1, 2.5), TypeError, "epochs must be a whole number"),
        ((1.0, 0.1, True), TypeError, "epochs must be a whole number"),
        ((1.0, 0.1, 0), ValueError, "epochs must be >= 1"),
    ],
)
def test_exponential_annealing_validates_its_arguments(args, error, match):
    with pytest.raises(error, match=match):
        nde.ExponentialAnnealing(*args)


def test_an_unknown_regularizer_option_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"no option 'powr'; did you mean 'power'\? \(its options: power, reduce\)"):
        nde.ODEBlock(Linear(), regularizers={"error_estimate": {"weight": 1.0, "powr": 2}})


def test_jacobian_frobenius_is_zero_in_eval_under_no_grad():
    block = nde.ODEBlock(Linear(), method="rk4", options={"step_size": 0.5},
                         regularizers={"jacobian_frobenius": 1.0}).eval()
    with torch.no_grad():
        block(torch.ones(2, 3))
        assert float(block.regularization()) == 0.0


def test_jacobian_frobenius_of_a_training_solve_can_be_read_under_no_grad():
    block = nde.ODEBlock(Linear(), method="rk4", options={"step_size": 0.5}, regularizers={"jacobian_frobenius": 1.0})
    block(torch.ones(2, 3))
    with torch.no_grad():
        assert float(block.regularization()) > 0.0


# ------------------------------------------------------------------------------------------ SDEBlock


class Drift(torch.nn.Module):
    def forward(self, t, y):
        return -y


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(dt=float("nan")), ValueError, "dt must be a finite number > 0"),
        (dict(dt=float("inf")), ValueError, "dt must be a finite number > 0"),
        (dict(dt=2.0), ValueError, "longer than the whole integration interval"),
        (dict(samples=2.5), TypeError, "samples must be a whole number"),
        (dict(samples=True), TypeError, "samples must be a whole number"),
        (dict(samples_per_solve=0), ValueError, "samples_per_solve must be >= 1"),
        (dict(seed=1, generator=torch.Generator()), ValueError, "not both"),
        (dict(seed=-1), ValueError, "seed must be a non-negative int"),
        (dict(rtol=-1e-3), ValueError, "rtol must be finite"),
        (dict(atol=float("nan")), ValueError, "atol must be finite"),
        (dict(dt_min=0.0), ValueError, "dt_min must be a finite number > 0"),
        (dict(t=(0.0, float("nan"))), ValueError, "finite times"),
    ],
)
def test_sde_block_validates_numbers(kwargs, error, match):
    with pytest.raises(error, match=match):
        nde.SDEBlock(Drift(), "additive", **kwargs)


def test_sde_block_names_the_time_where_the_state_diverged():
    block = nde.SDEBlock(lambda t, y: y**2, "additive", {"sigma": 0.01}, t=(0.0, 2.0), dt=0.01, seed=0)
    with pytest.raises(FloatingPointError, match=r"non-finite at t = 1\.\d"):
        block(torch.ones(4, 2))


def test_sde_block_adaptive_divergence_is_a_floating_point_error():
    block = nde.SDEBlock(lambda t, y: y**2, "additive", {"sigma": 0.01}, t=(0.0, 2.0), dt=0.01, adaptive=True,
                         seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchsde's own notes about adaptive Euler and dt_min
        with pytest.raises(FloatingPointError, match=r"non-finite (at t|in the step from t) = (0\.9|1\.0)"):
            block(torch.ones(4, 2))


def test_test_time_noise_is_chunked_and_keeps_no_step_records_under_no_grad():
    block = nde.SDEBlock(Drift(), "additive", {"sigma": 0.3}, dt=0.25, test_time_noise=True, samples=10,
                         samples_per_solve=3, seed=0).eval()
    x = torch.ones(4, 2)
    with torch.no_grad():
        samples = block(x, return_samples=True)
    assert samples.shape == (10, 4, 2)
    assert len({tuple(s.flatten().tolist()) for s in samples}) == 10  # every sample has its own noise
    # 4 solves (3 + 3 + 3 + 1 samples), each 4 Euler steps plus torchsde's probe
    assert block.stats.nfe_forward == 4 * 5 and block.stats.steps == []
    single = nde.SDEBlock(Drift(), "additive", {"sigma": 0.3}, dt=0.25, seed=0).train()
    single(x)
    assert len(single.stats.steps) == 4  # training keeps per-step records


@pytest.mark.parametrize(
    "diffusion, options, error, match",
    [
        ("additive", {"sigmaa": 0.1}, ValueError, r"no option 'sigmaa'; did you mean 'sigma'\? \(its options: sigma"),
        ("dropout", {"sigma": 0.1}, ValueError, r"diffusion 'dropout' has no option 'sigma' \(its options: p\)"),
        ("additive", {"sigma": True}, TypeError, "sigma must be a number"),
        ("multiplicative", {"sigma": "0.1"}, TypeError, "sigma must be a number"),
        ("dropout", {"p": True}, TypeError, "p must be a number"),
        ("additive", [("sigma", 0.1)], TypeError, "diffusion_options must be a dict"),
    ],
)
def test_diffusion_options_are_validated(diffusion, options, error, match):
    with pytest.raises(error, match=match):
        nde.SDEBlock(Drift(), diffusion, options)


def test_a_spec_parameter_the_method_does_not_have_is_named():
    with pytest.raises(ValueError, match=r"gives \['w'\], but family 'rk2' has the parameters \['u'\]"):
        nde.odeint(decay, torch.ones(2), T.float(), method="rk2:w=1", options={"step_size": 0.5})
    with pytest.raises(ValueError, match="'rk38' is not a family"):
        nde.resolve_method("rk38:u=1")


@pytest.mark.parametrize("spec", ["rk2:", "rk2:u=0.5,,", "rk2: , u=1"])
def test_a_spec_with_empty_parameters_is_refused(spec):
    with pytest.raises(ValueError, match="method spec"):
        nde.parse_method_spec(spec)


def test_get_tableau_of_a_torchdiffeq_solver_says_what_it_is():
    with pytest.raises(nde.UnknownPluginNameError, match="one of torchdiffeq's own solvers"):
        nde.get_tableau("dopri5")


def test_a_number_given_as_a_tensor_that_requires_grad_is_refused():
    weight = torch.tensor(0.1, requires_grad=True)
    with pytest.raises(TypeError, match="requires grad"):
        nde.ODEBlock(Linear(), regularizers={"error_estimate": weight})
