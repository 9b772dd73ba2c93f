"""gradient="backprop" | "adjoint" | "checkpoint": checkpoint equals backprop; integrals under the adjoint."""

import copy
import io
import pickle

import pytest
import torch
import torchdiffeq

import nde_plugins as nde
from nde_plugins import _torchdiffeq

ADAPTIVE = ["dopri5", "bosh3", "fehlberg2", "adaptive_heun", "dopri8", "heun_euler", "bogacki_shampine",
            "fehlberg45", "cash_karp", "dormand_prince", "tsitouras5"]
FIXED = [("rk4", {"step_size": 0.25}), ("euler", {"step_size": 0.125}), ("midpoint", {"step_size": 0.25}),
         ("rk4_uv", {"step_size": 0.25, "u": 0.3, "v": 0.7}), ("dormand_prince", {"step_size": 0.25}),
         ("rk3", {"step_size": 0.25, "u": 0.4, "interp": "cubic"})]


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


class Field(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))

    def forward(self, t, z):
        return self.net(z) * (1 + 0.5 * torch.sin(3 * t))


def supported(method: str, options: dict, *, graph_probe: bool = False) -> dict:
    """Every step regularizer ``method`` can serve (the Jacobian probe only when asked: it is slow to replay)."""
    plan = nde.resolve_solver(method, options).plan
    regs = {"kinetic_energy": 0.3}
    if plan.has_error_estimate:
        regs["error_estimate"] = 0.5
    if plan.has_stiffness_estimate:
        regs["stiffness"] = 0.01
    if graph_probe:
        regs["jacobian_frobenius"] = 0.2
    return regs


def train_step(gradient: str, x_seed: int = 1, **block):
    """One forward and backward: (output, regularization, gradients, stats after backward)."""
    torch.manual_seed(0)
    model = nde.ODEBlock(Field(), gradient=gradient, **block)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(x_seed))
    torch.manual_seed(5)  # the same probes and draws in every mode
    out = model(x)
    reg = model.regularization()
    grads = torch.autograd.grad((out.square().sum() + reg), list(model.parameters()))
    return out, reg, grads, model.stats


def assert_same(expected, got, grad_rtol=1e-9):
    (out_a, reg_a, grads_a, _), (out_b, reg_b, grads_b, _) = expected, got
    torch.testing.assert_close(out_b, out_a, rtol=0, atol=1e-12)
    torch.testing.assert_close(reg_b, reg_a, rtol=0, atol=1e-12)
    for a, b in zip(grads_a, grads_b):
        torch.testing.assert_close(b, a, rtol=grad_rtol, atol=1e-12 * float(a.abs().max()))


# ------------------------------------------------------------------------------------------------
# checkpoint == backprop


@pytest.mark.parametrize("method", ADAPTIVE)
def test_checkpoint_equals_backprop_for_every_adaptive_method_with_every_regularizer_it_serves(method):
    block = dict(method=method, rtol=1e-5, atol=1e-6, regularizers=supported(method, {}))
    expected, got = train_step("backprop", **block), train_step("checkpoint", **block)
    assert_same(expected, got)
    assert got[3].nfe_forward == expected[3].nfe_forward and len(got[3].steps) == len(expected[3].steps) >= 3
    # Everything but the start (f0 and the initial-step probe, outside the segments) is evaluated again.
    assert got[3].nfe_replay == got[3].nfe_forward - 2 and got[3].nfe_backward == 0
    assert expected[3].nfe_replay == 0


@pytest.mark.parametrize(("method", "options"), FIXED, ids=[m for m, _ in FIXED])
def test_checkpoint_equals_backprop_on_fixed_grids(method, options):
    block = dict(method=method, options=options, regularizers=supported(method, options), t=(0.0, 0.3, 1.0),
                 return_all=True)
    expected, got = train_step("backprop", **block), train_step("checkpoint", **block)
    assert_same(expected, got)
    # Every evaluation is inside a segment; the recomputation stops once it has what the backward
    # pass needs, so a trailing stage nothing differentiates (a pair's FSAL stage) may be skipped.
    assert 0 < got[3].nfe_replay <= got[3].nfe_forward


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_checkpoint_equals_backprop_with_the_jacobian_probe(method):
    options = {"step_size": 0.25} if method == "rk4" else {}
    block = dict(method=method, options=options, rtol=1e-4, atol=1e-5,
                 regularizers=supported(method, options, graph_probe=True))
    assert_same(train_step("backprop", **block), train_step("checkpoint", **block))


COMPOSED = {
    "smoothing + steer": dict(method="rk4_uv", options={"step_size": 0.125}, schedule="smoothing", end_time="steer",
                              seed=3),
    "switching + per-sample steer": dict(method="dopri5", rtol=1e-5, atol=1e-6, schedule="switching",
                                         schedule_options={"members": ["dopri5", "tsitouras5"]}, end_time="steer",
                                         end_time_options={"per_sample": True}, seed=4),
    "output ensemble": dict(method="dormand_prince", rtol=1e-5, atol=1e-6, schedule="output_ensemble",
                            schedule_options={"members": ["dormand_prince", "tsitouras5"]}),
    "decreasing time": dict(method="bosh3", t=(1.0, 0.0), rtol=1e-6, atol=1e-7),
}


@pytest.mark.parametrize("name", COMPOSED)
def test_checkpoint_equals_backprop_with_schedules_and_end_time_samplers(name):
    block = dict(COMPOSED[name])
    block["regularizers"] = supported(block["method"], block.get("options", {}))
    assert_same(train_step("backprop", **block), train_step("checkpoint", **block))


@pytest.mark.parametrize("steps", [1, 3, 1000])
def test_the_segment_length_changes_the_memory_not_the_result(steps):
    block = dict(method="tsitouras5", rtol=1e-6, atol=1e-7, regularizers={"error_estimate": 1.0, "stiffness": 0.1})
    expected = train_step("backprop", **block)
    got = train_step("checkpoint", checkpoint_steps=steps, **block)
    assert_same(expected, got)


def test_odeint_with_checkpoint_matches_torchdiffeq_for_tuple_states_and_several_output_times():
    net = Field()
    y0 = (torch.randn(2, 3, requires_grad=True), torch.randn(2, requires_grad=True))

    def field(t, y):
        return net(t, y[0]), -y[1] * y[0].sum(1)

    t = torch.tensor([0.0, 0.2, 0.2001, 0.7, 1.5])
    ref = torchdiffeq.odeint(field, y0, t, method="dopri5", rtol=1e-6, atol=1e-7)
    got = nde.odeint(field, y0, t, method="dopri5", rtol=1e-6, atol=1e-7, gradient="checkpoint", checkpoint_steps=2)
    for a, b in zip(ref, got):
        assert torch.equal(a, b)
    inputs = [*y0, *net.parameters()]
    for a, b in zip(torch.autograd.grad(sum(r.sum() for r in ref), inputs),
                    torch.autograd.grad(sum(g.sum() for g in got), inputs)):
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-14)


def test_odeint_return_stats_counts_the_replay_separately():
    net = Field()
    y0 = torch.randn(3, 3, requires_grad=True)
    ys, stats = nde.odeint(net, y0, torch.tensor([0.0, 1.0]), method="rk4", options={"step_size": 0.1},
                           gradient="checkpoint", return_stats=True)
    assert stats.nfe_replay == 0 and stats.nfe_forward == 40
    ys[-1].sum().backward()
    assert stats.nfe_replay == 40 and stats.nfe_backward == 0 and stats.nfe == 80
    assert stats.summary()["nfe_replay"] == 40


def test_in_evaluation_and_without_grad_checkpoint_is_a_plain_solve():
    block = nde.ODEBlock(Field(), gradient="checkpoint", regularizers={"error_estimate": 1.0})
    with torch.no_grad():
        block(torch.randn(2, 3))
    assert block.stats.nfe_replay == 0 and block.stats.nfe_forward > 0


def test_a_user_callback_is_called_once_per_step_also_when_segments_are_replayed():
    calls = []

    class Watched(Field):
        def callback_step(self, t0, y0, dt):
            calls.append(float(t0))

    block = nde.ODEBlock(Watched(), method="rk4", options={"step_size": 0.25}, gradient="checkpoint",
                         regularizers={"kinetic_energy": 1.0})
    out = block(torch.randn(2, 3))
    (out.sum() + block.regularization()).backward()
    assert calls == [0.0, 0.25, 0.5, 0.75]


# ------------------------------------------------------------------------------------------------
# integral regularizers under the adjoint


@pytest.mark.parametrize("tol", [1e-7, 1e-10])
def test_kinetic_energy_under_the_adjoint_is_backprops_quadrature_and_its_gradient(tol):
    # first_step: without it the first step size, and every step time after it, carries a graph under
    # backprop, which the quadrature's weights (constants) do not follow: the gradients then differ by
    # about 1e-5 (relative) whatever the tolerance. With it, they agree to the tolerance.
    block = dict(method="dopri5", rtol=tol, atol=tol, options={"first_step": 0.01},
                 regularizers={"kinetic_energy": 1.0})
    backprop, adjoint = train_step("backprop", **block), train_step("adjoint", **block)
    torch.testing.assert_close(adjoint[0], backprop[0], rtol=0, atol=1e-12)  # the same steps: z alone drives them
    torch.testing.assert_close(adjoint[1], backprop[1], rtol=100 * tol, atol=0)
    for a, b in zip(backprop[2], adjoint[2]):
        torch.testing.assert_close(b, a, rtol=0, atol=100 * tol * float(a.abs().max()))
    assert adjoint[3].nfe_backward > 0 and adjoint[3].integrals


def test_jacobian_frobenius_under_the_adjoint_matches_backprop_through_the_same_integral():
    torch.manual_seed(0)
    field = Field()
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    block = nde.ODEBlock(field, method="dopri5", rtol=1e-9, atol=1e-9, gradient="adjoint",
                         regularizers={"jacobian_frobenius": 1.0})
    torch.manual_seed(7)
    out = block(x)
    reg = block.regularization()
    got = torch.autograd.grad(out.square().sum() + reg, list(field.parameters()))

    torch.manual_seed(7)
    probe = torch.randn_like(x)  # drawn as the regularizer draws it: once per solve

    def augmented(t, state):
        z, _ = state
        with torch.enable_grad():
            z = z if z.requires_grad else z.detach().requires_grad_(True)
            f = field(t, z)
            (vjp,) = torch.autograd.grad(f, z, probe, create_graph=True)
        return f, vjp.square().sum(1)

    zs, rs = torchdiffeq.odeint(augmented, (x, torch.zeros(4)), torch.tensor([0.0, 1.0]), method="dopri5",
                                rtol=1e-9, atol=1e-9)
    reference = torch.autograd.grad(zs[-1].square().sum() + rs[-1].mean(), list(field.parameters()))
    torch.testing.assert_close(reg, rs[-1].mean(), rtol=1e-6, atol=0)
    for a, b in zip(reference, got):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-7)


def test_the_kinetic_energy_quadrature_integrates_to_the_end_time_not_past_it():
    # An adaptive solve's last step overshoots t1; its share up to t1 comes from the dense output.
    net = Field()
    x = torch.randn(5, 3)

    def augmented(t, state):
        f = net(t, state[0])
        return f, f.square().sum(1)

    exact = torchdiffeq.odeint(augmented, (x, torch.zeros(5)), torch.tensor([0.0, 1.0]), method="rk4",
                               options={"step_size": 1e-3})[1][-1].mean()
    for method in ("dopri5", "tsitouras5", "bosh3"):
        _, stats = nde.odeint(net, x, torch.tensor([0.0, 1.0]), method=method, rtol=1e-8, atol=1e-8,
                              return_stats=True, keep_stages=True)
        assert stats.accepted[-1].inside < 1.0
        torch.testing.assert_close(nde.KineticEnergy()(stats), exact, rtol=1e-5, atol=0)


# ------------------------------------------------------------------------------------------------
# refusals


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(gradient="adjoint", regularizers={"error_estimate": 1.0}),
     "gradient='adjoint' solves forward without a graph.*use gradient='checkpoint'"),
    (dict(gradient="adjoint", regularizers={"stiffness": 1.0}), "use gradient='checkpoint'"),
    (dict(adjoint=True, gradient="checkpoint"), "adjoint=True and gradient='checkpoint' disagree"),
    (dict(gradient="discrete"), "gradient must be one of 'backprop', 'adjoint', 'checkpoint', got 'discrete'"),
    (dict(checkpoint_steps=4), "checkpoint_steps applies to gradient='checkpoint' only"),
    (dict(gradient="checkpoint", checkpoint_steps=0), "checkpoint_steps must be an int >= 1"),
    (dict(gradient="checkpoint", method="implicit_adams", options={"step_size": 0.1}),
     "method 'implicit_adams' cannot replay its steps in segments"),
    (dict(adjoint="yes"), "adjoint must be True or False"),
])
def test_a_gradient_mode_that_cannot_serve_the_block_is_refused_naming_what_can(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nde.ODEBlock(Field(), **kwargs)


def test_the_sde_block_takes_backprop_and_adjoint_only():
    with pytest.raises(ValueError, match="gradient must be one of 'backprop', 'adjoint'.*checkpoint is not available"):
        nde.SDEBlock(Field(), "additive", gradient="checkpoint")
    assert nde.SDEBlock(Field(), "additive", gradient="adjoint").adjoint


def test_integrals_under_the_adjoint_need_a_tensor_state():
    block = nde.ODEBlock(lambda t, y: (-y[0], -y[1]), gradient="adjoint", regularizers={"kinetic_energy": 1.0})
    with pytest.raises(ValueError, match="need a tensor state, got a tuple"):
        block((torch.ones(2, 3), torch.ones(2, 3)))


def test_odeint_refuses_events_with_checkpoint():
    with pytest.raises(ValueError, match="cannot be combined with gradient='checkpoint'"):
        nde.odeint(lambda t, y: -y, torch.ones(2, requires_grad=True), torch.tensor([0.0, 1.0]),
                   gradient="checkpoint", event_fn=lambda t, y: y[0] - 0.5)


# ------------------------------------------------------------------------------------------------
# the life of a checkpointed block


def test_a_checkpointed_block_pickles_copies_and_resumes_at_every_point():
    block = nde.ODEBlock(Field(), method="tsitouras5", rtol=1e-5, atol=1e-6, gradient="checkpoint",
                         checkpoint_steps=2, regularizers={"error_estimate": 1.0})
    x = torch.randn(3, 3)
    for stage in ("built", "forward", "backward"):
        if stage == "forward":
            out = block(x)
        if stage == "backward":
            (out.sum() + block.regularization()).backward()
        for copied in (pickle.loads(pickle.dumps(block)), copy.deepcopy(block)):
            assert copied.gradient == "checkpoint"
            torch.testing.assert_close(copied.eval()(x), block.eval()(x))
            block.train()
    buffer = io.BytesIO()
    torch.save(block.state_dict(), buffer)
    buffer.seek(0)
    again = nde.ODEBlock(Field(), method="tsitouras5", rtol=1e-5, atol=1e-6, gradient="checkpoint",
                         checkpoint_steps=2, regularizers={"error_estimate": 1.0})
    again.load_state_dict(torch.load(buffer))
    torch.testing.assert_close(again.eval()(x), block.eval()(x))


def test_a_compiled_model_with_a_checkpointed_block_matches_eager():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3),
                                nde.ODEBlock(Field(), method="rk4", options={"step_size": 0.25}, gradient="checkpoint",
                                             regularizers={"kinetic_energy": 0.1}))
    x = torch.randn(4, 3)
    eager_out = model(x)
    eager = torch.autograd.grad(eager_out.sum() + model[1].regularization(), list(model.parameters()))
    compiled = torch.compile(model, backend="aot_eager")
    out = compiled(x)
    grads = torch.autograd.grad(out.sum() + model[1].regularization(), list(model.parameters()))
    torch.testing.assert_close(out, eager_out)
    for a, b in zip(eager, grads):
        torch.testing.assert_close(b, a)


def test_segmentable_names_the_explicit_runge_kutta_solvers():
    assert _torchdiffeq.segmentable("dopri5", {}) and _torchdiffeq.segmentable("rk4_uv", {"step_size": 0.1})
    assert not _torchdiffeq.segmentable("explicit_adams", {}) and not _torchdiffeq.segmentable("scipy_solver", {})


@pytest.mark.parametrize("steps", [float("nan"), -1, 2.5, True, "3"])
def test_checkpoint_steps_must_be_a_positive_int(steps):
    with pytest.raises(ValueError, match=r"checkpoint_steps must be an int >= 1 .*got"):
        nde.ODEBlock(Field(), gradient="checkpoint", checkpoint_steps=steps)
    with pytest.raises(ValueError, match="checkpoint_steps must be an int >= 1"):
        nde.odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]), gradient="checkpoint",
                   checkpoint_steps=steps)


@pytest.mark.parametrize("gradient", [float("nan"), 0, "Checkpoint", None.__class__])
def test_gradient_must_be_one_of_the_three_names(gradient):
    with pytest.raises(ValueError, match="gradient must be one of"):
        nde.ODEBlock(Field(), gradient=gradient)
