"""nde_plugins.testing: the plugin-contract checks pass on the built-ins and the installed packages,
and fail, naming the plugin and the rule, on plugins that load and run but break the contract."""

import contextlib
import types

import pytest
import torch

import nde_plugins as nde
from nde_plugins import testing
from nde_plugins.tableaux import Tableau

#: Options for the plugins whose factories need some.
OPTIONS = {
    "steer_normal": {"std": 0.1},
    "steer_below": {"b": 0.5},
    "learned": {"network": lambda t, h: 0.1 * torch.tanh(h)},
    "switching": {"members": ["rk2", "midpoint"]},
    "output_ensemble": {"members": ["rk2", "midpoint"]},
    "cyclic": {"members": ["rk2", "midpoint"]},
}


def builtin(kind):
    registry = nde.get_registry()
    return [name for name in registry.names(kind)
            if registry.find(kind, name).source.origin == "built-in"]


@pytest.mark.parametrize(("kind", "name"), [(kind, name) for kind in testing.CHECKS if kind != "tableau"
                                            for name in builtin(kind)])
def test_every_built_in_plugin_but_the_tableaux_passes(kind, name, capsys):
    lines = testing.check_plugin(kind, name, OPTIONS.get(name))
    assert lines == [f"ok   {nde.get_registry().describe(kind, name)}"]
    assert capsys.readouterr().out.strip() == lines[0]


@pytest.mark.parametrize("name", builtin("tableau"))
def test_every_built_in_tableau_and_family_passes(name):
    (line,) = testing.check_plugin("tableau", name, quiet=True)
    assert line.startswith(f"ok   tableau {name!r}")


def test_the_sample_pack_and_the_example_package_pass():
    lines = testing.check_distribution("nde-plugins-sample-pack", {"steer_below": {"b": 0.5},
                                                                   "cyclic": {"members": ["rk2", "midpoint"]}},
                                       quiet=True)
    assert len(lines) >= 5 and all(line.startswith("ok   ") for line in lines)
    lines = testing.check_distribution("nde_plugins_example", quiet=True)  # either spelling of the name
    assert any("ssprk3" in line for line in lines)


def test_a_duplicated_tableau_passes_with_a_warning_naming_the_twin():
    (line,) = testing.check_plugin("tableau", "rk4_classic", quiet=True)
    assert line.startswith("ok   ") and "same coefficients as" in line


# ------------------------------------------------------------------------------------------------
# Plugins that break the contract, one fault each


@contextlib.contextmanager
def registered(**hooks):
    name = nde.register_plugin(types.SimpleNamespace(**{k: nde.hookimpl(f) for k, f in hooks.items()}),
                               name="faulty_plugins")
    try:
        yield
    finally:
        nde.unregister_plugin(name)


def failure_of(kind, name, options=None):
    with pytest.raises(testing.PluginCheckError) as caught:
        testing.check_plugin(kind, name, options, quiet=True)
    message = str(caught.value)
    assert f"{kind} {name!r}" in message  # names the plugin
    return message


class ConstantPenalty:
    requires = frozenset({"error_estimate", "graph"})

    def __call__(self, stats):
        return torch.tensor(1.0)


class SneakyPenalty:
    requires = frozenset({"error_estimate", "graph"})

    def __call__(self, stats):
        return stats.stiffness_estimates().sum()


class GlobalDraws:
    def __call__(self, t, generator, batch=None):
        ends = t.clone() if batch is None else t.expand(batch, len(t)).clone()
        ends[..., -1] = ends[..., -1] + torch.rand(ends[..., -1].shape)  # ignores the generator
        return ends


class FlatDiffusion(nde.Diffusion):
    def forward(self, t, h, f):
        return torch.ones(h.shape[0], 1)


class RandomInEvaluation:
    def bind(self, base):
        self.base = base

    def members(self, state):
        u = float(torch.rand(()) * 0.5 + 0.25)  # even in evaluation, from the global generator
        return [nde.Member("rk2", {"u": u})]


def test_a_pair_whose_error_estimate_does_not_control_the_error_fails():
    # The midpoint rule with an embedded first-order solution almost equal to it: valid coefficients, but an
    # error estimate a million times too small, so the controller takes steps far too long.
    weak = Tableau("weak_pair", c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0), order=2, b_hat=(1e-6, 1 - 1e-6))

    def register_tableaux(register):
        register(weak)

    with registered(register_tableaux=register_tableaux):
        message = failure_of("tableau", "weak_pair")
    assert "adaptive_accuracy: an adaptive solve at rtol = atol = " in message and "is off by" in message


def _collapsing_pair(u):
    """Ralston-like rk2 pairs with Euler embedded at the default u = 1/2; away from it the embedded solution
    moves to within 1e-6 of b, so the error estimate collapses: valid tableaux, a useless controller."""
    b = (1 - 1 / (2 * u), 1 / (2 * u))
    share = 1.0 if u == 0.5 else 1e-6
    b_hat = tuple(bi + (ei - bi) * share for bi, ei in zip(b, (1.0, 0.0)))
    return Tableau(f"collapsing_u{u:g}".replace(".", "p"), c=(0.0, u), a=((), (u,)), b=b, order=2, b_hat=b_hat)


def test_a_family_that_breaks_only_away_from_its_defaults_fails_naming_the_members():
    family = nde.TableauFamily("collapsing", ("u",), {"u": 0.5}, _collapsing_pair, [("0.25 <= u <= 1", lambda u:
                                                                                     0.25 <= u <= 1)])

    def register_tableaux(register):
        register(family)

    with registered(register_tableaux=register_tableaux):
        message = failure_of("tableau", "collapsing")
    assert "member {'u': 0.6}: adaptive_accuracy" in message and "member {'u': 0.4}: adaptive_accuracy" in message
    assert "member {'u': 0.5}" not in message  # the default member keeps every rule


@pytest.mark.parametrize(("factory", "rule"), [(ConstantPenalty, "carries no gradient"),
                                               (SneakyPenalty, "add 'stiffness' to its requires")])
def test_a_regularizer_breaking_the_contract_fails(factory, rule):
    def register_step_regularizers(register):
        register("faulty_penalty", factory)

    with registered(register_step_regularizers=register_step_regularizers):
        message = failure_of("step_regularizer", "faulty_penalty")
    assert rule in message


def test_an_end_time_sampler_drawing_from_the_global_generator_fails():
    def register_end_time_samplers(register):
        register("global_draws", GlobalDraws)

    with registered(register_end_time_samplers=register_end_time_samplers):
        message = failure_of("end_time_sampler", "global_draws")
    assert "moved torch's global generator" in message and "same seed gave different ends" in message


def test_a_diffusion_of_the_wrong_shape_fails():
    def register_diffusions(register):
        register("flat", lambda drift: FlatDiffusion())

    with registered(register_diffusions=register_diffusions):
        message = failure_of("diffusion", "flat")
    assert "shape (1, 1) for a state of shape (1, 3)" in message


def test_a_schedule_that_draws_in_evaluation_fails():
    def register_solver_schedules(register):
        register("random_always", RandomInEvaluation)

    with registered(register_solver_schedules=register_solver_schedules):
        message = failure_of("solver_schedule", "random_always")
    assert "must be deterministic in evaluation" in message


def test_unknown_names_and_distributions_are_refused_or_reported():
    with pytest.raises(ValueError, match="no step_regularizer named 'nope' is registered"):
        testing.check_plugin("step_regularizer", "nope")
    with pytest.raises(ValueError, match="kind must be one of"):
        testing.check_plugin("regularizer", "error_estimate")
    with pytest.raises(testing.PluginCheckError, match="no plugin is registered from this distribution"):
        testing.check_distribution("not-installed-anywhere")


def test_a_distribution_whose_plugin_was_skipped_on_loading_fails(monkeypatch):
    from nde_plugins._plugin_rules import LoadError, PluginSource

    registry = nde.get_registry()
    skipped = LoadError(PluginSource("broken", "entry point", "nde-plugins-example", "0.0.1"),
                        "importing it raised ImportError: no module named 'acme'")
    monkeypatch.setattr(type(registry), "load_errors", property(lambda self: [skipped]))
    with pytest.raises(testing.PluginCheckError, match="skipped on loading: importing it raised ImportError"):
        testing.check_distribution("nde-plugins-example", quiet=True)  # its two tableaux pass; the skipped one fails


def test_the_pytest_plugin_checks_a_distribution_only_when_asked(tmp_path):
    import subprocess
    import sys

    def pytest_run(*args):
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)

    asked = pytest_run("--nde-plugins-check", "nde-plugins-sample-pack", "--nde-plugins-options",
                       '{"steer_below": {"b": 0.5}, "cyclic": {"members": ["rk2", "midpoint"]}}')
    assert asked.returncode == 0 and "1 passed" in asked.stdout, asked.stdout[-2000:]
    failing = pytest_run("--nde-plugins-check", "nde-plugins-example", "--nde-plugins-options",
                         '{"ssprk3": {"u": 0.5}}')
    assert failing.returncode == 1 and "'ssprk3'" in failing.stdout, failing.stdout[-2000:]
    assert pytest_run().returncode == 5  # nothing collected: the plugin adds nothing unless asked


def test_a_plugin_checked_without_the_options_its_factory_needs_fails_naming_them():
    message = failure_of("end_time_sampler", "steer_below")
    assert "needs the option(s) b" in message


def test_options_given_to_a_plain_tableau_fail_instead_of_being_ignored():
    message = failure_of("tableau", "ssprk3", {"u": 0.5})
    assert "a tableau takes none" in message


def test_options_for_a_plugin_the_distribution_does_not_register_are_refused():
    with pytest.raises(ValueError, match=r"options given for \['nope'\], which nde-plugins-sample-pack does not"):
        testing.check_distribution("nde-plugins-sample-pack", {"nope": {}})


def test_the_pytest_plugin_refuses_options_that_are_not_a_json_object(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nde-plugins-check",
                             "nde-plugins-sample-pack", "--nde-plugins-options", "[1, 2"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "--nde-plugins-options: not JSON" in result.stdout + result.stderr
