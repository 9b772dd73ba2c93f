"""Solver schedules (meta-solver regimes): draws, clamps, evaluation, ensembles, composition, refusals."""

import math

import pytest
import torch

import nde_plugins as nde
from nde_plugins.schedules import BaseSolver, Smoothing
from nde_plugins.tableaux.builtin import FAMILIES_BY_NAME


class Field(torch.nn.Module):
    def __init__(self, dim=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(torch.randn(dim, dim, generator=g, dtype=torch.float64) / dim)

    def forward(self, t, z):
        return torch.tanh(z @ self.w)


def x_batch(n=4, dim=3):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def rk2_block(**kwargs):
    kwargs = {"method": "rk2", "options": {"u": 0.5, "step_size": 0.125}, **kwargs}
    return nde.ODEBlock(kwargs.pop("field", Field()), **kwargs)


def smoothing_draws(family="rk2", n=20000, **options):
    sampler = Smoothing(**options)
    fam = FAMILIES_BY_NAME[family]
    sampler.bind(BaseSolver(family, fam, fam.resolve({}), lambda m: None))
    g = torch.Generator().manual_seed(0)
    return [sampler.draw(g).params for _ in range(n)]


# ---------------------------------------------------------------------------------------- smoothing


def test_normal_smoothing_stays_within_two_sigma_and_resets_about_4_55_percent():
    draws = [p["u"] for p in smoothing_draws(n=20000)]
    assert all(0.475 < u < 0.525 for u in draws)
    reset = sum(u == 0.5 for u in draws) / len(draws)
    assert abs(reset - 0.0455) < 0.006  # 2 * (1 - Phi(2)); binomial s.e. 0.0015


def test_cauchy_smoothing_resets_about_29_5_percent():
    draws = [p["u"] for p in smoothing_draws(n=20000, distribution="cauchy")]
    reset = sum(u == 0.5 for u in draws) / len(draws)
    assert abs(reset - (1 - 2 / math.pi * math.atan(2))) < 0.012


def test_only_the_first_parameter_is_truncated():
    draws = smoothing_draws("rk4_uv", n=5000, sigma=0.05)
    v = [p["v"] for p in draws]
    assert max(abs(x - 2 / 3) for x in v) > 0.1  # beyond 2 sigma: v is not truncated
    assert all(abs(p["u"] - 1 / 3) < 0.1 for p in draws)


@pytest.mark.parametrize("family", ["rk2", "rk3", "rk4_u1", "rk4_u2", "rk4_u3", "rk4_uv"])
def test_clamped_draws_always_build_a_member(family):
    # A huge sigma throws draws everywhere, onto singular points too; every member must still build.
    fam = FAMILIES_BY_NAME[family]
    for params in smoothing_draws(family, n=400, sigma=3.0, truncate=None, distribution="cauchy"):
        fam.member(params)
        assert all(0 < value <= 1 for value in params.values())


def test_the_clamp_follows_the_authors_margins():
    clamp = FAMILIES_BY_NAME["rk4_uv"].clamp
    eps = 9.765625e-4
    assert clamp({"u": 0.5, "v": 0.9}, eps)["u"] == 0.5 + eps
    assert clamp({"u": 0.49999, "v": 0.9}, eps)["u"] == 0.5 - eps
    assert clamp({"u": -1.0, "v": 2.0}, eps) == {"u": eps, "v": 1 - eps}
    assert FAMILIES_BY_NAME["rk2"].clamp({"u": 3.0}, eps) == {"u": 1.0}
    apart = FAMILIES_BY_NAME["rk3"].clamp({"u": 0.4, "v": 0.4}, eps)
    assert apart["v"] - apart["u"] == pytest.approx(eps)


def test_smoothing_draws_per_training_call_and_evaluation_uses_the_base_member():
    block = rk2_block(schedule="smoothing", schedule_options={"sigma": 0.0125}, seed=0)
    x = x_batch()
    seen = set()
    for _ in range(10):
        block(x)
        seen.add(block.last_method[1]["u"])
    assert len(seen) > 5 and block.iteration == 10
    block.eval()
    block(x)
    assert block.last_method == ("rk2", {"u": 0.5})


def test_a_gate_p_of_zero_keeps_the_base_member():
    block = rk2_block(schedule="smoothing", schedule_options={"p": 0.0}, seed=0)
    for _ in range(5):
        block(x_batch())
        assert block.last_method == ("rk2", {"u": 0.5})


def test_per_epoch_keeps_the_draw_for_the_epoch():
    block = rk2_block(schedule="smoothing", schedule_options={"sigma": 0.01, "per_epoch": True}, seed=0)
    x = x_batch()
    block(x)
    first = block.last_method
    block(x)
    assert block.last_method == first
    block.epoch = 2
    block(x)
    assert block.last_method != first


def test_schedules_are_reproducible_with_a_seed():
    x = x_batch()
    a = rk2_block(schedule="smoothing", seed=5)
    b = rk2_block(schedule="smoothing", seed=5)
    for _ in range(3):
        assert torch.equal(a(x), b(x)) and a.last_method == b.last_method


def test_smoothing_solves_with_the_drawn_member():
    block = rk2_block(schedule="smoothing", schedule_options={"sigma": 0.1}, seed=0)
    x = x_batch()
    z = block(x)
    u = block.last_method[1]["u"]
    fixed = rk2_block(field=block.field, options={"u": u, "step_size": 0.125})
    assert torch.equal(z, fixed(x))


# ---------------------------------------------------------------------------------------- switching


def test_switching_follows_its_probabilities():
    block = rk2_block(schedule="switching", seed=0,
                      schedule_options={"members": [{"u": 0.5}, {"u": 1.0}, "rk4_classic"], "probs": [0.5, 0.3, 0.2]})
    x = x_batch(1)
    counts = {}
    for _ in range(600):
        block(x)
        key = block.last_method[0] + str(block.last_method[1].get("u", ""))
        counts[key] = counts.get(key, 0) + 1
    assert abs(counts["rk20.5"] / 600 - 0.5) < 0.07
    assert abs(counts["rk21.0"] / 600 - 0.3) < 0.07
    assert abs(counts["rk4_classic"] / 600 - 0.2) < 0.07
    block.eval()
    block(x)
    assert block.last_method == ("rk2", {"u": 0.5})


def test_switching_statistics_describe_the_member_used():
    block = rk2_block(schedule="switching", schedule_options={"members": ["rk4_classic"]}, seed=0)
    block(x_batch())
    assert block.last_method == ("rk4_classic", {}) and block.stats.nfe_forward == 4 * 8


# ----------------------------------------------------------------------------------------- ensembles


def test_output_ensemble_is_the_weighted_mean_of_separate_solves():
    members = [{"u": 0.3, "v": 0.7}, {"u": 1 / 3, "v": 2 / 3}]
    block = nde.ODEBlock(Field(), method="rk4_uv", options={"step_size": 0.1}, schedule="output_ensemble",
                         schedule_options={"members": members, "weights": [0.25, 0.75]})
    x = x_batch()
    z = block(x)
    parts = [nde.ODEBlock(block.field, method="rk4_uv", options={"step_size": 0.1, **m})(x) for m in members]
    assert torch.allclose(z, 0.25 * parts[0] + 0.75 * parts[1], atol=1e-14)
    assert block.stats.nfe_forward == 2 * 4 * 10  # both members' solves are recorded
    block.eval()
    assert torch.allclose(block(x), z)  # an ensemble is used in evaluation too


def test_ensemble_for_free_averages_softmax_over_members():
    block = rk2_block(schedule="smoothing", seed=0)
    head = torch.nn.Linear(3, 5).double()
    members = nde.solver_ensemble(block, size=3, sigma=0.2, seed=0)
    assert len(members) == 3 and members[0].member.params == {"u": 0.5}
    assert len({m.member.params["u"] for m in members}) == 3
    block.eval()
    x = x_batch()
    probs = nde.ensemble_predict(lambda inp: head(block(inp)), x, members)
    expected = sum(torch.softmax(head(rk2_block(field=block.field, options={"u": m.member.params["u"],
                                                                             "step_size": 0.125})(x)), -1)
                   for m in members) / 3
    assert torch.allclose(probs, expected, atol=1e-12)
    assert block.last_method == ("rk2", {"u": members[-1].member.params["u"]})
    block(x)
    assert block.last_method == ("rk2", {"u": 0.5})  # the member applies only inside the prediction


# --------------------------------------------------------------------------------------- composition


def test_gradients_flow_and_schedules_compose_with_end_times_and_regularizers():
    block = nde.ODEBlock(Field(), method="rk4_uv", options={"step_size": 0.1}, schedule="smoothing",
                         schedule_options={"sigma": 0.05}, end_time="steer",
                         end_time_options={"b": 0.5, "per_sample": True}, regularizers={"kinetic_energy": 0.1}, seed=0)
    z = block(x_batch())
    (z.square().sum() + block.regularization()).backward()
    assert float(block.field.w.grad.abs().sum()) > 0
    assert block.last_t.shape == (4, 2) and block.last_method[1] != {"u": 1 / 3, "v": 2 / 3}


def test_a_member_without_the_estimate_a_regularizer_needs_is_refused():
    with pytest.raises(ValueError, match=r"member 1 \(rk4_classic\).*error estimate"):
        nde.ODEBlock(Field(), method="tsitouras5", regularizers={"error_estimate": 1.0}, schedule="switching",
                     schedule_options={"members": ["dopri5", "rk4_classic"]})


def test_sde_block_switches_among_torchsde_methods():
    block = nde.SDEBlock(lambda t, y: -y, "multiplicative", {"sigma": 0.1}, dt=0.1, seed=0, schedule="switching",
                         schedule_options={"members": ["euler", "milstein"]})
    x = torch.ones(2, 2)
    methods = set()
    for _ in range(8):
        block(x)
        methods.add(block.last_method[0])
    assert methods == {"euler", "milstein"}


# ------------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(method="dopri5", options={}, schedule="smoothing"), ValueError, "not a parameterized family"),
        (dict(schedule="smoothing", schedule_options={"sigma": 0.0}), ValueError, "sigma must be a finite number > 0"),
        (dict(schedule="smoothing", schedule_options={"sigma": -1}), ValueError, "sigma must be a finite number > 0"),
        (dict(schedule="smoothing", schedule_options={"distribution": "laplace"}), ValueError, "'normal' or 'cauchy'"),
        (dict(schedule="smoothing", schedule_options={"p": 1.5}), ValueError, "0 <= p <= 1"),
        (dict(schedule="smoothing", schedule_options={"per_epoch": "yes"}), TypeError, "True or False"),
        (dict(schedule="smoothing", schedule_options={"sgima": 0.1}), ValueError, "did you mean 'sigma'"),
        (dict(schedule="switching", schedule_options={"members": []}), ValueError, "non-empty list"),
        (dict(schedule="switching", schedule_options={"members": [{"u": 0.5}], "probs": [0.5]}), ValueError,
         "probs must sum to 1"),
        (dict(schedule="switching", schedule_options={"members": [{"u": 0.5}, {"u": 1}], "probs": [1.0]}),
         ValueError, "one per member"),
        (dict(schedule="switching", schedule_options={"members": [{"w": 0.5}]}), ValueError, "no parameter 'w'"),
        (dict(schedule="switching", schedule_options={"members": [{"u": 0.0}]}), ValueError, "u != 0"),
        (dict(schedule="switching", schedule_options={"members": ["rk5_nope"]}), ValueError, "unknown tableau"),
        (dict(method="dopri5", options={}, schedule="switching", schedule_options={"members": [{"u": 0.5}]}),
         ValueError, "is not a family"),
        (dict(schedule="output_ensemble", schedule_options={"members": [5]}), TypeError, "member 0 must be"),
        (dict(schedule_options={"sigma": 0.1}), ValueError, "schedule is not"),
        (dict(schedule="smooth"), nde.UnknownPluginNameError, "did you mean 'smoothing'"),
        (dict(schedule=5), TypeError, "a registered name, a spec"),
    ],
)
def test_bad_schedules_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        rk2_block(**kwargs)


def test_smoothing_on_an_sde_block_is_refused():
    with pytest.raises(ValueError, match="not a parameterized family"):
        nde.SDEBlock(lambda t, y: -y, "additive", schedule="smoothing")
    with pytest.raises(ValueError, match="takes no parameters"):
        nde.SDEBlock(lambda t, y: -y, "additive", schedule="switching", schedule_options={"members": ["euler:u=1"]})
