"""The proper-ODE check and step / tolerance adaption (seed 002)."""

import re

import pytest
import torch

import nde_plugins as nde
from nde_plugins.adaption import hairer_initial_step, next_step, step_for_test_solver
from nde_plugins.proper_ode import proper_ode_check

# -------------------------------------------------------------------------- the adaption's decision


def decide(h, gap, new_gap=0.0, variant="code", span=1.0):
    return next_step(h, gap, lambda candidate: new_gap, span=span, threshold=0.1, decrease=0.5, increase=1.1,
                     max_steps=500, variant=variant)


def test_a_large_gap_halves_the_step():
    assert decide(0.1, gap=0.2) == pytest.approx(0.05)
    assert decide(0.1, gap=0.2, variant="paper") == pytest.approx(0.05)


def test_a_small_gap_grows_the_step_when_the_larger_step_keeps_the_gap_small():
    assert decide(0.1, gap=0.05, new_gap=0.05) == pytest.approx(0.11)
    assert decide(0.95, gap=0.05, new_gap=0.05) == 1.0  # capped at the interval
    assert decide(0.95, gap=0.05, new_gap=0.05, span=2.0) == pytest.approx(1.045)


def test_a_larger_step_that_opens_the_gap_is_not_taken():
    assert decide(0.1, gap=0.05, new_gap=0.2) == 0.1
    assert decide(0.1, gap=0.05, new_gap=0.2, variant="paper") == pytest.approx(0.11)  # no re-check


def test_the_max_steps_guard():
    h = 1 / 300  # halving would give 600 > 500 steps: move the step count half-way to 500 instead
    assert decide(h, gap=0.2) == pytest.approx(2 * h / (500 * h + 1))
    assert 1 / decide(h, gap=0.2) == pytest.approx(400)
    assert decide(1 / 500, gap=0.2) == 1 / 500  # at the limit the step stays


def test_hairers_initial_step_on_decay():
    # y' = -y, y0 = 1, p = 1: d0 = d1 = 1, h0 = 0.01, d2 = 1, h1 = 0.1, h = min(1, 0.1)
    assert hairer_initial_step(lambda t, y: -y, torch.ones(4, 1, dtype=torch.float64), order=1) == pytest.approx(0.1)


def test_the_test_solvers_step_rule():
    assert step_for_test_solver(0.01, 1, 2) == 0.01  # 100 steps already beat the error ratio of 50
    assert step_for_test_solver(0.1, 1, 2) == pytest.approx((0.1 / 50) ** 0.5)
    assert step_for_test_solver(0.5, 2, 4) == pytest.approx((0.25 / 50) ** 0.25)


# ------------------------------------------------------------------------------ a small classifier


def rings(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = torch.cat([torch.rand(n // 2, generator=g) * 0.3, 0.6 + torch.rand(n // 2, generator=g) * 0.3])
    angle = torch.rand(n, generator=g) * 6.2832
    return torch.stack([r * angle.cos(), r * angle.sin()], 1), (r > 0.5).long()


class Field(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))

    def forward(self, t, z):
        return self.net(z)


def train(block, iterations=250, adapt=False):
    torch.manual_seed(0)
    head = torch.nn.Linear(2, 2)
    x, y = rings()

    def model(inp):
        return head(block(inp))

    opt = torch.optim.Adam([*block.parameters(), *head.parameters()], 1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(iterations):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        if adapt:
            block.policy.schedule.update(model, x[idx], y[idx])
        opt.step()
    return model, (x, y)


def test_one_euler_step_is_solver_dependent_and_a_fine_grid_is_ode_like():
    torch.manual_seed(0)
    coarse = nde.ODEBlock(Field(), method="euler", options={"step_size": 1.0})
    model, data = train(coarse)
    report = proper_ode_check(model, coarse, data)
    assert report.verdict == "solver-dependent" and report.worst_gap > 0.2
    torch.manual_seed(0)
    fine = nde.ODEBlock(Field(), method="euler", options={"step_size": 1 / 16})
    model, data = train(fine, iterations=150)
    report = proper_ode_check(model, fine, data, factors=(0.5, 1.0, 2.0))
    assert report.verdict == "ODE-like" and report.training_value > 0.9
    assert [r.solver for r in report.rows[::3]] == ["euler", "midpoint", "rk4"]
    assert [r.steps for r in report.rows[:3]] == [8, 16, 32]  # factor f: round(f * K) steps
    assert "verdict: ODE-like" in report.table() and '"verdict": "ODE-like"' in report.to_json()
    assert fine.training  # the block's mode is restored


def test_an_adaptively_trained_model_is_checked_at_tighter_tolerances():
    block = nde.ODEBlock(Field(), method="dopri5", rtol=1e-3, atol=1e-3)
    model, data = train(block, iterations=30)
    report = proper_ode_check(model, block, data)
    assert [r.tolerance for r in report.rows] == pytest.approx([1e-3, 1e-4, 1e-5])
    assert report.verdict == "ODE-like"


def test_step_adaption_trains_and_moves_the_step():
    block = nde.ODEBlock(Field(), method="euler", options={"step_size": 0.5}, schedule="step_adaption",
                         schedule_options={"k": 10})
    model, data = train(block, iterations=120, adapt=True)
    schedule = block.policy.schedule
    assert len(schedule.history) == 12 and len(set(schedule.history)) > 1
    assert block.last_method == ("euler", {})
    assert proper_ode_check(model, block, data).verdict == "ODE-like"


def test_tolerance_adaption_moves_the_tolerance():
    block = nde.ODEBlock(Field(), method="dopri5", schedule="tolerance_adaption",
                         schedule_options={"k": 5, "initial_tol": 1e-3})
    train(block, iterations=20, adapt=True)
    history = block.policy.schedule.history
    assert len(history) == 4 and history[-1] != 1e-3


# -------------------------------------------------------------------------------------- refusals


def test_the_check_refuses_regression_without_a_threshold():
    block = nde.ODEBlock(Field(), method="euler", options={"step_size": 0.5})
    x = torch.randn(8, 2)
    with pytest.raises(ValueError, match="integer class labels"):
        proper_ode_check(lambda inp: block(inp), block, (x, torch.randn(8, 2)))
    with pytest.raises(ValueError, match="give threshold explicitly"):
        proper_ode_check(lambda inp: block(inp), block, (x, torch.randn(8, 2)), loss_fn=torch.nn.functional.mse_loss)
    report = proper_ode_check(lambda inp: block(inp), block, (x, x.clone()), loss_fn=torch.nn.functional.mse_loss,
                              threshold=0.05)
    assert report.metric == "loss"
    with pytest.raises(TypeError, match="data must be"):
        proper_ode_check(lambda inp: block(inp), block, 5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="dopri5", schedule="step_adaption"), "runs adaptively"),
        (dict(method="euler", options={"step_size": 0.5}, schedule="tolerance_adaption"), "fixed grid"),
        (dict(method="euler", options={"step_size": 0.5}, schedule="step_adaption",
              schedule_options={"variant": "fancy"}), "'code' or 'paper'"),
        (dict(method="euler", options={"step_size": 0.5}, schedule="step_adaption",
              schedule_options={"increase": 0.9}), "decrease < 1 < increase"),
        (dict(method="rk4", options={"step_size": 0.5}, schedule="step_adaption"), "no default test solver"),
        (dict(method="euler", options={"step_size": 0.5}, schedule="step_adaption",
              schedule_options={"k": 0}), "k must be >= 1"),
    ],
)
def test_adaption_refusals(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nde.ODEBlock(Field(), **kwargs)


def test_adaption_needs_class_labels():
    block = nde.ODEBlock(Field(), method="euler", options={"step_size": 0.5}, schedule="step_adaption")
    block(torch.randn(4, 2))
    with pytest.raises(ValueError, match="integer class labels"):
        block.policy.schedule.update(lambda inp: block(inp), torch.randn(4, 2), torch.randn(4))


# ---------------------------------------------------------------- the check refuses bad arguments up front


class Counting:
    """A model_fn that counts its calls: a refusal must come before any solve."""

    def __init__(self, block):
        self.block, self.calls = block, 0

    def __call__(self, inp):
        self.calls += 1
        return self.block(inp)


def small(method="euler", **kwargs):
    kwargs.setdefault("options", {"step_size": 0.5} if method != "dopri5" else None)
    block = nde.ODEBlock(Field(), method=method, **kwargs)
    return block, Counting(block), (torch.randn(8, 2), torch.randint(0, 2, (8,)))


def refused(exc_type, *patterns, block_and_model=None, data=None, **kwargs):
    """Run the check expecting ``exc_type``; every regex of ``patterns`` must be in the message; nothing ran."""
    block, model, default_data = block_and_model or small()
    with pytest.raises(exc_type) as info:
        proper_ode_check(model, kwargs.pop("block", block), default_data if data is None else data, **kwargs)
    for pattern in patterns:
        assert re.search(pattern, str(info.value)), (pattern, info.value)
    assert model.calls == 0 and block.stats is None  # refused before the first solve
    return info.value


@pytest.mark.parametrize(
    "bad, patterns",
    [
        ("euler", ["block must be the ODEBlock", "string 'euler'", "pass the block itself", "test_methods"]),
        (torch.nn.Linear(2, 2), ["block must be the ODEBlock", "Linear"]),
        (None, ["block must be the ODEBlock", "NoneType"]),
    ],
)
def test_the_check_refuses_a_block_that_is_not_an_ode_block(bad, patterns):
    refused(TypeError, *patterns, block=bad)


def test_the_check_refuses_an_sde_block_and_says_what_to_pass():
    sde = nde.SDEBlock(Field(), diffusion="additive")
    refused(TypeError, "block is an SDEBlock", "ODEBlock only", "noise", "pass the ODEBlock", block=sde)


def test_the_check_refuses_uncallable_model_and_loss_functions():
    block, _, data = small()
    with pytest.raises(TypeError, match="model_fn must be .* callable"):
        proper_ode_check("model", block, data)
    refused(TypeError, "loss_fn must be a callable", "float", loss_fn=0.5, threshold=0.1)


def test_unknown_test_methods_are_all_named_with_suggestions():
    error = refused(nde.UnknownPluginNameError, r"test_methods has unknown method\(s\) \['rk5', 'eulr'\]",
                    "did you mean 'rk4'", "did you mean 'euler'", test_methods=["rk4", "rk5", "eulr"])
    assert isinstance(error, ValueError)  # the CLI prints ValueErrors as one line
    assert "'rk4'," not in error.args[0].split("]")[0]  # a known name is not listed as unknown


@pytest.mark.parametrize(
    "test_methods, exc_type, patterns",
    [
        ("rk4", TypeError, [r"test_methods must be a sequence", r"\['rk4'\]"]),
        ([], ValueError, ["test_methods is empty", "no test solve", "at least one method"]),
        (["dopri5"], ValueError, [r"test_methods\[0\] = 'dopri5' chooses its own steps", "fixed-grid methods"]),
        (["euler", "rk2:w=1"], ValueError, [r"test_methods\[1\] = 'rk2:w=1'", r"parameters \['u'\]"]),
        (["euler", 4], TypeError, [r"test_methods\[1\] must be a method name", "int"]),
    ],
)
def test_malformed_test_methods_are_refused(test_methods, exc_type, patterns):
    refused(exc_type, *patterns, test_methods=test_methods)


def test_labels_must_match_the_inputs_one_per_sample():
    x, y = torch.randn(8, 2), torch.randint(0, 2, (8,))
    refused(ValueError, "data has 8 inputs", "but 5 labels", "same first dimension", data=(x, y[:5]))
    refused(ValueError, "data batch 1 has 4 inputs", "but 3 labels", data=[(x[:4], y[:4]), (x[4:], y[5:])])
    refused(ValueError, r"labels y have shape \(8, 1\)", "1-D", r"y\.view\(-1\)", data=(x, y[:, None]))
    refused(ValueError, r"labels y have shape \(8, 2\)", r"y\.argmax\(-1\)",
            data=(x, torch.nn.functional.one_hot(y, 2)))
    refused(TypeError, "labels y must be a tensor", "list", data=[(x, y.tolist())])
    refused(ValueError, "0-d tensor", "one label per sample", data=[(x[0], y[0])])
    refused(ValueError, "data holds no samples", data=(x[:0], y[:0]))
    # regression: y may have more dimensions, but one row per sample
    refused(ValueError, "data has 8 inputs", "but 7 labels", data=(x, x[:7].clone()),
            loss_fn=torch.nn.functional.mse_loss, threshold=0.1)


@pytest.mark.parametrize(
    "kwargs, exc_type, patterns",
    [
        (dict(factors=()), ValueError, ["factors is empty", "no test solve", r"e\.g\. \(0\.5, 1\.0, 2\.0\)"]),
        (dict(tolerance_factors=[]), ValueError, ["tolerance_factors is empty", "at least one factor"]),
        (dict(factors=2.0), TypeError, ["factors must be a sequence of numbers", r"\(2\.0,\)"]),
        (dict(factors=(1.0, -1.0)), ValueError, [r"factors\[1\] must be a finite number > 0", "-1"]),
        (dict(factors=(1.0, float("nan"))), ValueError, [r"factors\[1\] must be a finite number > 0"]),
        (dict(factors=(1.0, "2")), TypeError, [r"factors\[1\] must be a number"]),
        (dict(factors=[1.0] * 1001), ValueError, ["factors has 1001 factors", "1000 test solves", "give fewer"]),
        (dict(factors=[1.0] * 400), ValueError, ["3 test_methods x 400 factors make 1200 test solves", "fewer"]),
    ],
)
def test_factor_lists_are_checked(kwargs, exc_type, patterns):
    refused(exc_type, *patterns, **kwargs)


def test_a_check_without_a_solve_of_equal_or_smaller_error_is_refused():
    refused(ValueError, "no test solve has equal or smaller error", "factor f >= 1", factors=(0.25, 0.5))
    rk4 = small("rk4")
    refused(ValueError, "no test solve has equal or smaller error", "order 4", "test_methods",
            block_and_model=rk4, test_methods=["euler", "midpoint"])
    adaptive = small("dopri5", rtol=1e-3, atol=1e-3)
    refused(ValueError, "tolerance_factors", "all > 1", "include 1.0", block_and_model=adaptive,
            tolerance_factors=(10.0, 100.0))


def test_the_number_of_steps_a_check_takes_is_bounded():
    from nde_plugins.proper_ode import MAX_CHECK_STEPS

    error = refused(ValueError, r"factors \[1e\+09\]", "MAX_CHECK_STEPS", "give fewer or smaller factors",
                    "even K = 1 is too many", factors=(1e9,))
    assert f"{MAX_CHECK_STEPS:,}" in str(error)
    refused(ValueError, "MAX_CHECK_STEPS", factors=(1.0, 1e308))  # f * K overflows to inf: still one message
    # a block that alone steps more than the cap (what `nde-plugins check --steps <huge>` builds)
    huge = small(options={"step_size": 1e-7})
    refused(ValueError, "K = 10000000 steps", "MAX_CHECK_STEPS", r"at most K = \d+ steps", block_and_model=huge)


def test_accepted_variants_still_run():
    block, model, data = small()
    report = proper_ode_check(model, block, [data, data], test_methods=("euler", "rk2:u=0.5"), factors=[1, 2.0])
    assert [(r.solver, r.steps) for r in report.rows] == [("euler", 2), ("euler", 4), ("rk2:u=0.5", 2),
                                                          ("rk2:u=0.5", 4)]
    assert report.verdict in ("ODE-like", "solver-dependent") and model.calls == 2 * 5
