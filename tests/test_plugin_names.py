"""The name rule every registered name follows, and ``Registry.describe`` for error messages."""

import dataclasses
import types

import pytest

from nde_plugins import PluginError, PluginWarning, Tableau, TableauFamily, hookimpl

from .test_plugins import HEUN, FakeEntryPoint, make_registry, plugin_with

FACTORY_HOOKS = {
    "diffusion": "register_diffusions",
    "end_time_sampler": "register_end_time_samplers",
    "step_regularizer": "register_step_regularizers",
    "solver_schedule": "register_solver_schedules",
}


def factory_plugin(hook, name, plugin_name="named"):
    module = types.ModuleType(plugin_name)

    @hookimpl(specname=hook)
    def contribute(register):
        register(name, lambda *args, **options: None)

    module.contribute = contribute
    return module


def renamed(tableau, name):
    """``tableau`` with a name its constructor would refuse (a patched instance gets past ``__post_init__``)."""
    copy = dataclasses.replace(tableau)
    object.__setattr__(copy, "name", name)
    return copy


# -- the rule ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(FACTORY_HOOKS))
@pytest.mark.parametrize("name, fix", [("AcmeUpper", "'acmeupper'"), ("acme_Noise2", "'acme_noise2'"),
                                       ("my-noise", "'my_noise'"), ("Acme.Noise", "'acme_noise'")])
def test_a_name_with_upper_case_or_punctuation_is_refused_with_the_fix(registry, kind, name, fix):
    with pytest.raises(PluginError, match=f"{FACTORY_HOOKS[kind]}: register\\(name, factory\\) got the name "
                                          f"'{name}'; a name must be a Python identifier in lower case .*"
                                          f"rename it, e.g. to {fix}"):
        registry.register_plugin(factory_plugin(FACTORY_HOOKS[kind], name))
    assert name not in registry.names(kind) and "named" not in registry.plugin_names()


@pytest.mark.parametrize("name", ["2fast", "", "café"])
def test_a_name_without_an_obvious_fix_states_the_rule_only(registry, name):
    with pytest.raises(PluginError, match="not starting with a digit\\) so that it can be written in method specs "
                                          "and on the command line$"):
        registry.register_plugin(factory_plugin("register_diffusions", name))


@pytest.mark.parametrize("name", ["lower", "with_digits2", "_private", "a"])
def test_lower_case_identifiers_are_accepted(registry, name):
    registry.register_plugin(factory_plugin("register_step_regularizers", name))
    assert name in registry.names("step_regularizer")


@pytest.mark.parametrize("make", [
    lambda: renamed(Tableau("heun_ok", **HEUN), "HeunUpper"),
    lambda: renamed(TableauFamily("family_ok", params=("u",), defaults={"u": 1.0},
                                  build=lambda u: Tableau("member", **HEUN)), "FamilyUpper"),
])
def test_the_rule_holds_for_tableaux_too(registry, make):
    obj = make()
    with pytest.raises(PluginError, match=f"register_tableaux: register\\(\\) of a {type(obj).__name__} got the name "
                                          f"'{obj.name}'; a name must be a Python identifier in lower case.*"
                                          f"rename it, e.g. to '{obj.name.lower()}'"):
        registry.register_plugin(plugin_with(obj, name="upper_tableau"))
    assert obj.name not in registry.names("tableau")


def test_an_entry_point_registering_a_bad_name_is_skipped_with_the_rule_in_the_warning():
    good = FakeEntryPoint("good", lambda: plugin_with(Tableau("next_one", **HEUN), name="good"), dist="gooddist")
    registry = make_registry(FakeEntryPoint("acme", lambda: factory_plugin("register_step_regularizers", "AcmeUpper"),
                                            dist="acme-dist"), good)
    with pytest.warns(PluginWarning, match="nde_plugins skipped entry point plugin 'acme-dist:acme' \\(acme-dist "
                                           "1.0\\): failed inside its hook: ValueError: .*'AcmeUpper'.*lower case.*"
                                           "'acmeupper'"):
        registry.load()
    assert "AcmeUpper" not in registry.names("step_regularizer") and "next_one" in registry.names("tableau")
    (err,) = registry.load_errors
    assert err.source.plugin == "acme-dist:acme" and "'acmeupper'" in err.message


def test_every_installed_name_follows_the_rule():
    registry = make_registry(load_entry_points=True)
    for reg in registry.registrations():
        assert reg.name == reg.name.lower() and reg.name.isidentifier(), reg


# -- describe ----------------------------------------------------------------------------------------


def test_describe_names_the_source_of_each_origin(registry):
    acme = FakeEntryPoint("acme", lambda: factory_plugin("register_step_regularizers", "foo"), dist="acme-dist")
    registry = make_registry(acme)
    registry.register_plugin(factory_plugin("register_step_regularizers", "bar", plugin_name="x"))
    assert registry.describe("step_regularizer", "foo") == \
        "step_regularizer 'foo' (from entry point plugin 'acme-dist:acme' (acme-dist 1.0))"
    assert registry.describe("step_regularizer", "error_estimate") == "step_regularizer 'error_estimate' (built-in)"
    assert registry.describe("step_regularizer", "bar") == \
        "step_regularizer 'bar' (registered at run time by plugin 'x')"
    assert registry.describe("tableau", "rk4_uv") == "tableau 'rk4_uv' (built-in)"


@pytest.mark.parametrize("kind, name, expected", [
    ("step_regularizer", "foo", "step_regularizer 'foo'"),
    ("tableau", "error_estimate", "tableau 'error_estimate'"),  # registered, but as another kind
    ("no_such_kind", "foo", "no_such_kind 'foo'"),
    ("step_regularizer", ["unhashable"], "step_regularizer ['unhashable']"),
    (None, 3, "None 3"),
])
def test_describe_never_raises(registry, kind, name, expected):
    registry.load()
    assert registry.describe(kind, name) == expected


def test_describe_does_not_load_plugins():
    def unexpected():
        raise AssertionError("describe must not load entry points")

    registry = make_registry(FakeEntryPoint("late", unexpected))
    assert registry.describe("step_regularizer", "error_estimate") == "step_regularizer 'error_estimate'"


def test_describe_forgets_an_unregistered_runtime_plugin(registry):
    name = registry.register_plugin(factory_plugin("register_diffusions", "brief", plugin_name="short_lived"))
    assert registry.describe("diffusion", "brief").endswith("(registered at run time by plugin 'short_lived')")
    registry.unregister_plugin(name)
    assert registry.describe("diffusion", "brief") == "diffusion 'brief'"
