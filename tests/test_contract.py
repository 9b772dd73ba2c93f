"""The plugin contract is enforced where the library receives a plugin's value: errors name the plugin and the rule."""

import contextlib
import warnings

import pytest
import torch

import nde_plugins as nde
from nde_plugins.end_times import Steer
from nde_plugins.regularizers import JacobianFrobenius
from nde_plugins.schedules import Smoothing


class Field(torch.nn.Module):
    def __init__(self, dim: int = 2) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(dim, dim)

    def forward(self, t, z):
        return torch.tanh(self.lin(z))


@contextlib.contextmanager
def registered(hook: str, *entries):
    """Register a run-time plugin contributing ``entries`` through ``hook``; unregister it afterwards."""

    class Plugin:
        pass

    def impl(register):
        for entry in entries:
            register(*entry)

    impl.__name__ = hook
    setattr(Plugin, hook, staticmethod(nde.hookimpl(impl)))
    name = nde.register_plugin(Plugin(), name=f"test_{hook}_{id(entries):x}")
    try:
        yield
    finally:
        nde.unregister_plugin(name)


def ode_block(**kwargs):
    kwargs.setdefault("method", "dopri5")
    return nde.ODEBlock(Field(), rtol=1e-4, atol=1e-4, **kwargs)


X = torch.randn(4, 2)


# -- regularizers --------------------------------------------------------------------------------


class Returns:
    requires = frozenset({"graph"})

    def __init__(self, value) -> None:
        self.value = value

    def __call__(self, stats):
        return self.value


@pytest.mark.parametrize("value, match", [
    (torch.ones(3), r"shape \(3,\).*one number"),
    (None, "returned None; a regularizer returns a scalar tensor"),
    (torch.tensor(float("nan")), "must be finite"),
    (0.5, "returned float"),
    (torch.tensor(3), "floating-point"),
])
def test_a_regularizer_value_that_breaks_the_contract_names_the_plugin(value, match):
    with registered("register_step_regularizers", ("bad_value", lambda: Returns(value))):
        block = ode_block(regularizers={"bad_value": 1.0})
        block(X)
        with pytest.raises(nde.ContractError, match=rf"regularizer 'bad_value'.*{match}"):
            block.regularization()


def test_a_one_element_regularizer_value_is_taken_as_a_scalar():
    block = ode_block(regularizers={Returns(torch.ones(1, requires_grad=True)): 2.0})
    block(X)
    assert block.regularization().shape == ()


class ReadsErrorsUndeclared:
    requires = frozenset({"graph"})

    def __call__(self, stats):
        errors, h = stats.error_terms()
        return (errors * h).sum()


def test_reading_a_statistic_that_was_not_declared_is_refused_by_name():
    with registered("register_step_regularizers", ("sneaky", ReadsErrorsUndeclared)):
        block = ode_block(regularizers={"sneaky": 1.0})
        block(X)
        with pytest.raises(nde.ContractError, match=r"regularizer 'sneaky' reads 'error_estimate'.*add "
                                                    r"'error_estimate' to its requires"):
            block.regularization()


class Legacy:
    """A regularizer written before ``requires`` existed."""

    def __call__(self, stats):
        errors, h = stats.error_terms()
        return (errors * h).sum()


def test_a_regularizer_without_requires_is_warned_and_gets_everything_recorded():
    with registered("register_step_regularizers", ("legacy", Legacy)):
        with pytest.warns(DeprecationWarning, match="regularizer 'legacy' declares no 'requires'"):
            block = ode_block(regularizers={"legacy": 1.0})
        block(X)
        value = block.regularization()
        assert float(value) > 0
        value.backward()  # E_j was recorded with its graph
        assert block.field.lin.weight.grad is not None
        assert float(block.field.lin.weight.grad.abs().sum()) > 0


def test_unknown_requires_words_are_refused():
    class Typo(Returns):
        requires = frozenset({"error_estimates"})

    with pytest.raises(nde.ContractError, match=r"unknown word\(s\) \['error_estimates'\].*did you mean "
                                                "'error_estimate'"):
        ode_block(regularizers={Typo(torch.zeros(())): 1.0})


# -- factories: options checked against the signature, also through **options wrappers -----------


class Impl:
    requires = frozenset({"graph"})

    def __init__(self, scale: float, shift: float = 0.0) -> None:
        self.scale, self.shift = scale, shift

    def __call__(self, stats):
        return torch.zeros(())


def make_impl(**options):
    return Impl(**options)


def test_a_misspelt_option_through_a_wrapper_names_the_plugin_and_the_valid_options():
    with registered("register_step_regularizers", ("wrapped", make_impl)):
        with pytest.raises(nde.ContractError, match=r"regularizer 'wrapped' has no option 'scal'; did you mean "
                                                    r"'scale'\? \(its options: scale, shift\)"):
            ode_block(regularizers={"wrapped": {"weight": 1.0, "scal": 2.0}})
        with pytest.raises(nde.ContractError, match=r"regularizer 'wrapped' needs the option\(s\) scale"):
            ode_block(regularizers={"wrapped": 1.0})
        ode_block(regularizers={"wrapped:scale=2": 1.0})  # a spec's options reach the factory


def test_a_misspelt_option_of_a_plain_factory_is_refused_before_it_is_called():
    with pytest.raises(ValueError, match=r"end time 'steer' has no option 'bb'; did you mean 'b'"):
        ode_block(end_time="steer", end_time_options={"bb": 0.1})


# -- schedules -------------------------------------------------------------------------------------


class Gives:
    def __init__(self, value) -> None:
        self.value = value

    def bind(self, base):
        self.base = base

    def members(self, state):
        return self.value(self.base) if callable(self.value) else self.value


@pytest.mark.parametrize("members, match", [
    (["rk4"], r"returned 'rk4' as member 0; members are nde_plugins.Member values"),
    (lambda base: base.member, "returned a bare Member; members\\(\\) returns a list of them"),
    ([], "returned no member"),
    (lambda base: [nde.Member(base.method, base.params, weight=float("nan"))], "weight nan"),
    (lambda base: [nde.Member(base.method, base.params, 0.9), nde.Member(base.method, base.params, 0.9)],
     "weights sum to 1.8; they must sum to 1"),
    (lambda base: [nde.Member(base.method, base.params, -0.5), nde.Member(base.method, base.params, 1.5)],
     "weight -0.5"),
    ("rk4", "returned str"),
])
def test_schedule_members_that_break_the_contract_name_the_schedule(members, match):
    with registered("register_solver_schedules", ("bad_members", lambda: Gives(members))):
        block = ode_block(schedule="bad_members")
        with pytest.raises(nde.ContractError, match=rf"schedule 'bad_members'.*{match}"):
            block(X)


def test_a_schedule_object_is_named_by_its_class():
    block = ode_block(schedule=Gives(["rk4"]))
    with pytest.raises(nde.ContractError, match="schedule Gives returned 'rk4'"):
        block(X)


# -- end times and diffusions ---------------------------------------------------------------------


def test_end_times_off_the_grid_shape_name_the_sampler():
    with registered("register_end_time_samplers", ("short", lambda: lambda t, g, batch=None: t[:1])):
        block = ode_block(end_time="short")
        with pytest.raises(nde.ContractError, match=r"end time 'short' returned \(1,\); the contract asks for"):
            block(X)
        block.eval()
        block(X)  # evaluation never draws


class WrongShape(nde.Diffusion):
    def forward(self, t, h, f=None):
        return h[:, :1]


def test_a_diffusion_of_the_wrong_shape_names_the_registered_plugin():
    with registered("register_diffusions", ("narrow", lambda drift: WrongShape())):
        block = nde.SDEBlock(Field(), "narrow", dt=0.25)
        with pytest.raises(nde.ContractError, match=r"diffusion 'narrow' returned shape \(4, 1\) for a state of "
                                                    r"shape \(4, 2\)"):
            block(X)


def test_a_diffusion_factory_that_returns_no_module_is_refused():
    with registered("register_diffusions", ("nothing", lambda drift: None)):
        with pytest.raises(nde.ContractError, match="diffusion 'nothing': the factory returned NoneType"):
            nde.SDEBlock(Field(), "nothing")


# -- plugins as names, specs or objects, the same way for every kind ------------------------------


def test_every_plugin_argument_takes_a_name_a_spec_or_an_object():
    torch.manual_seed(0)
    by_spec = ode_block(method="rk2", options={"step_size": 0.25}, end_time="steer:b=0.5", seed=0,
                        schedule="smoothing:sigma=0.02", regularizers={"jacobian_frobenius:probe=rademacher": 0.1})
    by_object = ode_block(method="rk2", options={"step_size": 0.25}, end_time=Steer(b=0.5), seed=0,
                          schedule=Smoothing(sigma=0.02), regularizers={JacobianFrobenius(probe="rademacher"): 0.1})
    by_object.load_state_dict(by_spec.state_dict())
    z1, z2 = by_spec(X), by_object(X)
    assert torch.equal(z1, z2)
    assert torch.equal(by_spec.last_t, by_object.last_t)
    torch.manual_seed(1)
    r1 = by_spec.regularization()
    torch.manual_seed(1)
    assert torch.equal(r1, by_object.regularization())
    assert by_spec.end_time_sampler.b == by_object.end_time_sampler.b == 0.5
    sde = nde.SDEBlock(Field(), "dropout:p=0.8", dt=0.25)
    assert sde.diffusion.p == 0.8


def test_an_option_given_in_the_spec_and_the_options_dict_must_agree():
    with pytest.raises(ValueError, match=r"option 'b' is given both in the spec 'steer:b=0.5' \(0.5\) and in "
                                         r"end_time_options \(0.25\)"):
        ode_block(end_time="steer:b=0.5", end_time_options={"b": 0.25})
    ode_block(end_time="steer:b=0.5", end_time_options={"b": 0.5, "per_sample": True})
    block = ode_block(end_time="steer:b=0.5,per_sample=true")
    assert block.policy.per_sample


def test_an_object_plugin_with_separate_options_is_refused():
    with pytest.raises(ValueError, match="end_time_options apply when end_time is given by name or spec"):
        ode_block(end_time=Steer(), end_time_options={"b": 0.5})
    with pytest.raises(TypeError, match="end_time must be a registered name, a spec like 'steer:b=0.5' or a "
                                        "plugin object, got int"):
        ode_block(end_time=3)


# -- one core: both blocks follow the same per-call rules ------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: ode_block(method="rk4", options={"step_size": 0.25}, end_time="steer", seed=0),
    lambda: nde.SDEBlock(Field(), "additive", dt=0.25, end_time="steer", seed=0),
])
def test_no_end_time_is_drawn_while_a_member_is_fixed_on_either_block(make):
    block = make()
    block.train()
    with block.solving_with(block.base_solver.member):
        block(X)
    assert torch.equal(block.last_t, block.t)
    block(X)
    assert not torch.equal(block.last_t, block.t)


class Learns(Gives):
    def __init__(self) -> None:
        super().__init__(lambda base: [base.member])
        self.batches = []

    def update(self, model_fn, x, y):
        self.batches.append(len(x))
        with self.base.view.solving_with(self.base.member):
            model_fn(x)
        assert self.base.view.stats is not None


def test_block_update_reaches_a_schedule_that_learns_and_is_a_no_op_otherwise():
    schedule = Learns()
    block = ode_block(schedule=schedule)
    assert block.update(block, X, torch.zeros(4)) is True
    assert schedule.batches == [4]
    assert ode_block().update(lambda x: x, X, torch.zeros(4)) is False


def test_a_schedule_sees_a_view_and_the_old_block_attribute_warns():
    block = ode_block(schedule=Learns())
    base = block.base_solver
    assert not isinstance(base.view, torch.nn.Module)
    with pytest.warns(DeprecationWarning, match="BaseSolver.block is deprecated"):
        assert base.block is block


def test_solving_with_takes_a_member_or_a_method_spec():
    block = ode_block(method="rk2", options={"step_size": 0.5})
    with block.solving_with("rk2:u=0.25"):
        block(X)
    assert block.last_method == ("rk2", {"u": 0.25})
    with pytest.raises(TypeError, match="solving_with takes a nde_plugins.Member or a method spec"):
        block.solving_with(3)


def test_the_contract_module_imports_no_built_in_plugin():
    import ast
    import pathlib

    source = pathlib.Path(nde.contract.__file__).read_text()
    imported = [node for node in ast.walk(ast.parse(source)) if isinstance(node, (ast.Import, ast.ImportFrom))]
    local = [node.module for node in imported if isinstance(node, ast.ImportFrom) and node.level]
    assert local == [], f"contract.py imports {local} from the library"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert set(nde.REQUIRES) == {"error_estimate", "stiffness", "stages", "graph", "input_grad", "field"}


# -- the command line: a plugin that breaks the contract gives one line naming it, exit 2 -----------


def run_cli(argv, capsys):
    from nde_plugins.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, err


def test_the_cli_names_a_misspelt_option_of_a_wrapped_factory_in_one_line(capsys):
    with registered("register_step_regularizers", ("wrapped", make_impl)):
        code, err = run_cli(["train", "--task", "spheres", "--step-size", "0.5", "--iterations", "2",
                             "--regularizer", "wrapped:weight=1,scal=2"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "regularizer 'wrapped' has no option 'scal'" in err and "its options: scale, shift" in err


def test_the_cli_names_a_regularizer_that_returns_a_vector_in_one_line(capsys):
    with registered("register_step_regularizers", ("vector", lambda: Returns(torch.ones(3, requires_grad=True)))):
        code, err = run_cli(["train", "--task", "stiff", "--iterations", "2", "--regularizer", "vector:weight=1"],
                            capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "regularizer 'vector' returned a tensor of shape (3,)" in err


def test_the_cli_names_a_schedule_that_returns_strings_in_one_line(capsys):
    with registered("register_solver_schedules", ("strings", lambda: Gives(["rk4"]))):
        code, err = run_cli(["train", "--epochs", "1", "--method", "rk2:u=0.5", "--step-size", "0.25",
                             "--schedule", "strings"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "schedule 'strings' returned 'rk4' as member 0" in err
