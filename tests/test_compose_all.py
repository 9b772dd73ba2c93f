"""Every built-in plugin kind on one block at once, tiny sizes: each kind must visibly act.

An ODE block takes a tableau family member, a solver schedule, an end-time sampler and step
regularizers together; an SDE block takes a diffusion, an end-time sampler, a schedule (over
torchsde methods) and regularizers. What each kind did is read back from the block: ``last_t``
(the sampler), ``last_method`` (the schedule), ``stats`` (the solves), ``regularization()`` and the
output itself (the noise). ``examples/compose_all.py`` trains the digits model built this way.
"""

import copy
import types

import pytest
import torch

import nde_plugins as nde


class Field(torch.nn.Module):
    """f(t, z) = W2 tanh(W1 [z; t]): time-dependent, so a drawn end time changes what is integrated."""

    def __init__(self, dim: int = 3, hidden: int = 8) -> None:
        super().__init__()
        self.inner = torch.nn.Linear(dim + 1, hidden)
        self.outer = torch.nn.Linear(hidden, dim)

    def forward(self, t, z):
        tt = torch.as_tensor(t, dtype=z.dtype).expand(z.shape[0], 1)
        return self.outer(torch.tanh(self.inner(torch.cat([z, tt], dim=1))))


def _pair(u: float) -> nde.Tableau:
    member = nde.get_tableau("rk2", u=u)
    return nde.Tableau("test_rk2_euler", c=member.c, a=member.a, b=member.b, b_hat=[1.0, 0.0], order=2,
                       embedded_order=1)


@pytest.fixture
def pair_family():
    """A registered tableau family with an error estimate: rk2(u) with an embedded Euler step (2(1) for every u).

    The built-in families have no embedded pair, so the error-estimate regularizer cannot ride on them.
    """
    rk2 = nde.get_registry().get("tableau", "rk2")
    family = nde.TableauFamily("test_rk2_euler", ("u",), {"u": 0.5}, _pair, rk2.domain, clamp=rk2.clamp)
    plugin = types.SimpleNamespace(register_tableaux=nde.hookimpl(lambda register: register(family)))
    name = nde.register_plugin(plugin, "test_compose_all_tableaux")
    try:
        yield family
    finally:
        nde.unregister_plugin(name)


def _training_calls(block, x, n):
    """n training calls; per call (end times, method, stats, regularization of that call)."""
    block.train()
    calls = []
    for _ in range(n):
        block(x)
        calls.append((block.last_t.clone(), block.last_method, block.stats, block.regularization()))
    return calls


def _assert_each_regularizer_acted(block):
    for reg in block.regularizers:
        value = reg.regularizer(block.stats)
        assert value.dim() == 0 and float(value.detach()) > 0, reg.name
        assert value.requires_grad, f"{reg.name} carries no gradient"


def _assert_reaches_parameters(total, module):
    grads = torch.autograd.grad(total, [p for p in module.parameters()], allow_unused=True)
    assert all(g is not None and float(g.abs().sum()) > 0 for g in grads)


def test_ode_block_with_a_builtin_family_schedule_sampler_and_regularizers():
    field = Field()
    block = nde.ODEBlock(field, t=(0.0, 1.0), method="rk4_u2", options={"step_size": 0.125},
                         schedule="smoothing", schedule_options={"sigma": 0.05},
                         end_time="steer", end_time_options={"b": 0.5}, seed=3,
                         regularizers={"stiffness": 1.0, "kinetic_energy": 1.0, "jacobian_frobenius": 1.0})
    x = torch.randn(5, 3)
    calls = _training_calls(block, x, 4)

    ends = [float(t[-1]) for t, *_ in calls]
    assert all(0.5 < end < 1.5 and end != 1.0 for end in ends) and len(set(ends)) == len(ends)
    us = [params["u"] for (_, (method, params), _, _) in calls if method == "rk4_u2"]
    assert len(us) == len(calls) and len(set(us)) > 1 and any(u != pytest.approx(1 / 3) for u in us)
    for t, _, stats, total in calls:
        # The fixed grid ran over the drawn interval: four stages per step, the steps covering [0, T].
        assert stats.nfe_forward == 4 * len(stats.steps) > 0
        assert sum(stats.step_sizes()) == pytest.approx(float(t[-1]), rel=1e-5)
        assert stats.stiffness_estimates().numel() == len(stats.steps)
        assert float(total.detach()) > 0 and total.requires_grad
    _assert_each_regularizer_acted(block)
    _assert_reaches_parameters(calls[-1][3], field)

    block.eval()
    with torch.no_grad():
        block(x)
    assert block.last_t.tolist() == [0.0, 1.0]
    assert block.last_method == ("rk4_u2", {"u": pytest.approx(1 / 3)})


def test_ode_block_with_a_registered_pair_family_under_smoothing_steer_and_error_estimate(pair_family):
    field = Field()
    block = nde.ODEBlock(field, t=(0.0, 1.0), method="test_rk2_euler", options={"u": 0.5}, rtol=1e-3, atol=1e-3,
                         schedule="smoothing", schedule_options={"sigma": 0.05},
                         end_time="steer", end_time_options={"b": 0.5, "per_sample": True}, seed=1,
                         regularizers={"error_estimate": 1.0})
    x = torch.randn(6, 3)
    calls = _training_calls(block, x, 3)

    for t, (method, params), stats, total in calls:
        assert method == "test_rk2_euler" and params["u"] != 0.5
        assert t.shape == (6, 2) and len(set(t[:, 1].tolist())) == 6 and bool((t[:, 1] != 1.0).all())
        # Adaptive steps with the pair's own error ratios; per sample the solve runs in s over [0, 1].
        ratios = stats.error_ratios()
        assert stats.steps_accepted >= 1 and ratios.numel() == len(stats.steps) and bool((ratios > 0).all())
        # (adaptive steps may end past the interval: torchdiffeq then interpolates at its end)
        h = stats.step_sizes()
        assert sum(h[:-1]) < 1.0 <= sum(h) + 1e-6
        assert float(total.detach()) > 0 and total.requires_grad
    assert calls[0][0].tolist() != calls[1][0].tolist()
    _assert_each_regularizer_acted(block)
    _assert_reaches_parameters(calls[-1][3], field)

    block.eval()
    with torch.no_grad():
        block(x)
    assert block.last_t.tolist() == [0.0, 1.0] and block.last_method == ("test_rk2_euler", {"u": 0.5})


def test_sde_block_with_dropout_noise_steer_and_regularizers():
    drift = Field()
    block = nde.SDEBlock(drift, "dropout", {"p": 0.8}, t=(0.0, 1.0), dt=0.1, seed=0,
                         end_time="steer", end_time_options={"b": 0.5},
                         regularizers={"error_estimate": 1.0, "stiffness": 1.0, "kinetic_energy": 1.0})
    x = torch.randn(5, 3)
    calls = _training_calls(block, x, 3)

    ends = [float(t[-1]) for t, *_ in calls]
    assert all(0.5 < end < 1.5 and end != 1.0 for end in ends) and len(set(ends)) == len(ends)
    for t, method, stats, total in calls:
        assert method == ("euler", {})
        # One Euler-Maruyama step per drift evaluation after torchsde's probe; dropout noise evaluated every step.
        assert stats.nfe_forward == len(stats.steps) + 1 and stats.nfe_diffusion == stats.nfe_forward
        assert sum(stats.step_sizes()) == pytest.approx(float(t[-1]), rel=1e-5)
        assert float(total.detach()) > 0 and total.requires_grad
    _assert_each_regularizer_acted(block)
    _assert_reaches_parameters(calls[-1][3], drift)


def test_sde_noise_follows_the_seed_and_is_off_in_evaluation():
    x = torch.randn(4, 3)
    drift = Field()

    def output(seed, diffusion="dropout", train=True):
        block = nde.SDEBlock(copy.deepcopy(drift), diffusion, {"p": 0.8} if diffusion == "dropout" else None,
                             dt=0.1, seed=seed, end_time="steer", end_time_options={"b": 0.5})
        block.train(train)
        with torch.no_grad():
            return block(x), block.last_t

    (a, t_a), (b, _), (c, t_c) = output(0), output(0), output(1)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert not torch.equal(t_a, t_c)  # the end time follows the seed too
    # Same seed, same drawn end time: the dropout noise alone moves the output.
    quiet, t_quiet = output(0, diffusion="none")
    assert torch.equal(t_quiet, t_a) and not torch.allclose(quiet, a)
    # Evaluation solves to t1 with the noise off: the seed no longer matters.
    assert torch.equal(output(0, train=False)[0], output(1, train=False)[0])


def test_sde_block_switching_between_torchsde_methods_with_steer_and_dropout():
    block = nde.SDEBlock(Field(), "dropout", {"p": 0.8}, dt=0.1, seed=2, end_time="steer",
                         schedule="switching", schedule_options={"members": ["euler", "milstein"]})
    x = torch.randn(4, 3)
    calls = _training_calls(block, x, 8)
    methods = {method for _, (method, _), _, _ in calls}
    assert methods == {"euler", "milstein"}
    assert all(stats.nfe_forward > 0 and stats.nfe_diffusion > 0 for *_, stats, _ in calls)
    assert len({float(t[-1]) for t, *_ in calls}) == len(calls)
    block.eval()
    with torch.no_grad():
        block(x)
    assert block.last_method == ("euler", {})


def test_ode_block_feeding_an_sde_block_trains_with_every_kind(pair_family):
    """The showcase's model at tiny size: one field, an ODE half with the pair family, smoothing, STEER and the
    error regularizer, an SDE half with dropout, STEER and the error regularizer."""
    field = Field()
    plugins = {"end_time": "steer", "end_time_options": {"b": 0.25}, "regularizers": {"error_estimate": 0.1}}
    ode = nde.ODEBlock(field, t=(0.0, 0.5), method="test_rk2_euler", rtol=1e-3, atol=1e-3, schedule="smoothing",
                       seed=0, **plugins)
    sde = nde.SDEBlock(field, "dropout", {"p": 0.9}, t=(0.5, 1.0), dt=0.1, rtol=1e-3, atol=1e-3, seed=1, **plugins)
    head = torch.nn.Linear(3, 2)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    loss = torch.nn.functional.cross_entropy(head(sde(ode(x))), y)
    reg_ode, reg_sde = ode.regularization(), sde.regularization()
    assert float(reg_ode.detach()) > 0 and float(reg_sde.detach()) > 0
    assert 0.25 < float(ode.last_t[-1]) < 0.75 and 0.75 < float(sde.last_t[-1]) < 1.25
    assert ode.last_method[1]["u"] != 0.5
    (loss + reg_ode + reg_sde).backward()
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in field.parameters())


def test_limits_of_composition_are_refused_with_the_reason():
    """What the showcase has to work around: an SDE block takes no tableau family, so it cannot smooth one,
    and a built-in family has no error estimate for the error regularizer."""
    with pytest.raises(ValueError, match="not a parameterized family"):
        nde.SDEBlock(Field(), "dropout", {"p": 0.9}, schedule="smoothing")
    with pytest.raises(ValueError, match="error estimate"):
        nde.ODEBlock(Field(), method="rk2", options={"step_size": 0.25}, schedule="smoothing",
                     regularizers={"error_estimate": 1.0})


@pytest.mark.parametrize("method", ["milstein", "srk"])
def test_sde_stage_regularizers_are_refused_for_methods_without_step_records(method):
    with pytest.raises(ValueError, match="euler"):
        nde.SDEBlock(Field(), "additive", {"sigma": 0.1}, method=method, regularizers={"kinetic_energy": 1.0})


def test_sde_jacobian_regularizer_works_on_an_input_without_grad():
    block = nde.SDEBlock(Field(), "additive", {"sigma": 0.1}, dt=0.25, seed=0,
                         regularizers={"jacobian_frobenius": 1.0})
    block(torch.randn(4, 3))
    assert float(block.regularization()) > 0


def test_compose_all_example_runs_quick_and_writes_its_figure(tmp_path):
    pytest.importorskip("sklearn", reason="the example trains on the digits task (the tasks extra)")
    pytest.importorskip("matplotlib")
    from tests.test_examples import assert_png, run_example

    figure = tmp_path / "compose_all.png"
    done = run_example("compose_all.py", "--quick", "--plot", str(figure))
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(("Neural ODE (dopri5) ", "rk2_euler ODE"))]
    assert len(rows) == 3 and all(row.count("+-") == 5 for row in rows)
    assert_png(figure)
