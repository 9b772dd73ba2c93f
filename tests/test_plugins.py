"""Plugin manager behaviour: built-ins, entry points, conflicts, broken plugins, runtime plugins."""

import types
import warnings

import pytest
import torch
import torchdiffeq

import nde_plugins as nde
from nde_plugins import PluginConflictError, PluginError, PluginWarning, Registry, Tableau, hookimpl

HEUN = dict(c=[0, 1], a=[[], [1]], b=[0.5, 0.5], order=2)


def plugin_with(*tableaux, name="tmp_plugin"):
    module = types.ModuleType(name)

    @hookimpl
    def register_tableaux(register):
        for t in tableaux:
            register(t)

    module.register_tableaux = register_tableaux
    return module


class FakeDist:
    def __init__(self, name, version="1.0"):
        self.name, self.version = name, version


class FakeEntryPoint:
    def __init__(self, name, load, dist="thirdparty"):
        self.name, self.value, self._load, self.dist = name, f"{dist}.module", load, FakeDist(dist)

    def load(self):
        return self._load()


def make_registry(*entry_points, load_entry_points=True):
    return Registry(
        load_entry_points=load_entry_points,
        entry_points=lambda group: list(entry_points),
        reserved={"tableau": nde.torchdiffeq_method_names},
    )


def test_builtins_are_registered_with_their_source(registry):
    reg = registry.find("tableau", "rk4_uv")
    assert reg.source.origin == "built-in" and reg.source.distribution == "nde_plugins"
    assert {"dormand_prince", "rk2", "rk3", "rk4_u1", "rk4_u2", "rk4_u3", "rk38"} <= set(registry.names("tableau"))


def test_every_kind_has_a_hook():
    import nde_plugins.hookspecs as specs

    for kind, hook in nde.KINDS.items():
        assert callable(getattr(specs, hook)) and getattr(specs, hook).__doc__, kind


def test_entry_point_plugin_is_loaded_lazily_and_once():
    calls = []

    def load():
        calls.append(1)
        return plugin_with(Tableau("ep_heun", **HEUN))

    registry = make_registry(FakeEntryPoint("ep", load))
    assert calls == []  # nothing loads at construction
    assert registry.find("tableau", "ep_heun").source.distribution == "thirdparty"
    registry.names("tableau")
    registry.load()
    assert calls == [1]


def test_entry_points_can_be_disabled_by_environment(monkeypatch):
    monkeypatch.setenv(nde.DISABLE_ENTRY_POINTS_ENV, "1")
    registry = Registry(entry_points=lambda group: pytest.fail("entry points must not be scanned"))
    assert "rk4_uv" in registry.names("tableau")


def test_plugin_failing_on_import_is_skipped_with_a_warning():
    def broken():
        raise ImportError("no module named 'missing_dependency'")

    good = FakeEntryPoint("good", lambda: plugin_with(Tableau("ok_heun", **HEUN), name="good"), dist="gooddist")
    registry = make_registry(FakeEntryPoint("bad", broken, dist="baddist"), good)
    with pytest.warns(PluginWarning, match="baddist.*missing_dependency"):
        names = registry.names("tableau")
    assert "ok_heun" in names and "rk4_uv" in names
    (err,) = registry.load_errors
    assert err.source.distribution == "baddist" and "ImportError" in err.message


def test_plugin_raising_inside_its_hook_is_skipped_atomically():
    module = types.ModuleType("raiser")

    @hookimpl
    def register_tableaux(register):
        register(Tableau("first_ok", **HEUN))
        raise RuntimeError("boom")

    module.register_tableaux = register_tableaux
    registry = make_registry(FakeEntryPoint("raiser", lambda: module))
    with pytest.warns(PluginWarning, match="failed inside its hook: RuntimeError: boom"):
        names = registry.names("tableau")
    assert "first_ok" not in names  # nothing of a failing plugin stays registered


def test_misspelled_hook_name_fails_with_suggestion():
    module = types.ModuleType("typo")

    @hookimpl
    def register_tablaux(register):
        pass

    module.register_tablaux = register_tablaux
    registry = make_registry(FakeEntryPoint("typo", lambda: module))
    with pytest.warns(PluginWarning, match="unknown hook 'register_tablaux'; did you mean 'register_tableaux'"):
        registry.load()
    with pytest.raises(PluginError, match="did you mean 'register_tableaux'"):
        make_registry(load_entry_points=False).register_plugin(module)


def test_check_pending_passes_for_valid_plugins(registry):
    registry.register_plugin(plugin_with(Tableau("pending_ok", **HEUN)))
    registry.check_pending()


def test_duplicate_name_names_both_sources():
    first = FakeEntryPoint("a", lambda: plugin_with(Tableau("same", **HEUN), name="a"), dist="dist_a")
    second = FakeEntryPoint("b", lambda: plugin_with(Tableau("same", **HEUN), name="b"), dist="dist_b")
    registry = make_registry(first, second)
    with pytest.warns(PluginWarning, match="registered by both entry point plugin 'dist_a:a' \\(dist_a 1.0\\) "
                                           "and entry point plugin 'dist_b:b' \\(dist_b 1.0\\)"):
        registry.load()
    with pytest.raises(PluginConflictError, match="built-in plugin 'nde_plugins.builtins.tableaux'.*runtime"):
        registry.register_plugin(plugin_with(Tableau("rk4_uv", **HEUN), name="clash"))


def test_reserved_torchdiffeq_name_is_refused(registry):
    with pytest.raises(PluginConflictError, match="'dopri5', a name reserved by torchdiffeq"):
        registry.register_plugin(plugin_with(Tableau("dopri5", **HEUN)))


def test_invalid_registration_is_refused(registry):
    module = types.ModuleType("wrong_type")

    @hookimpl
    def register_tableaux(register):
        register("not a tableau")

    module.register_tableaux = register_tableaux
    with pytest.raises(PluginError, match="takes a Tableau or TableauFamily, got str"):
        registry.register_plugin(module)
    assert "wrong_type" not in registry.plugin_names()


def test_invalid_tableau_inside_a_plugin_is_reported():
    module = types.ModuleType("bad_tableau")

    @hookimpl
    def register_tableaux(register):
        register(Tableau("bad", c=[0, 1], a=[[], [1]], b=[0.5, 0.5], order=3))

    module.register_tableaux = register_tableaux
    registry = make_registry(FakeEntryPoint("bad_tableau", lambda: module))
    with pytest.warns(PluginWarning, match="declared order 3"):
        registry.load()


def test_other_kinds_take_name_and_factory(registry):
    module = types.ModuleType("diff")

    @hookimpl
    def register_diffusions(register):
        register("constant", lambda drift, sigma=1.0: (lambda t, h: sigma * torch.ones_like(h)))

    module.register_diffusions = register_diffusions
    registry.register_plugin(module)
    factory = registry.get("diffusion", "constant")
    assert torch.equal(factory(None, sigma=2.0)(0.0, torch.zeros(2)), torch.full((2,), 2.0))
    with pytest.raises(nde.UnknownPluginNameError, match="did you mean 'constant'"):
        registry.get("diffusion", "constnt")
    with pytest.raises(ValueError, match="unknown plugin kind 'difusion'; did you mean 'diffusion'"):
        registry.names("difusion")


def test_runtime_register_and_unregister_in_the_global_registry():
    plugin = plugin_with(Tableau("runtime_heun", **HEUN), name="runtime_test_plugin")
    y0, t = torch.ones(1), torch.tensor([0.0, 1.0])
    nde.register_plugin(plugin)
    try:
        y = torchdiffeq.odeint(lambda t, y: -y, y0, t, method="runtime_heun", options={"step_size": 0.01})
        assert abs(y[-1].item() - torch.exp(torch.tensor(-1.0)).item()) < 1e-4
    finally:
        nde.unregister_plugin(plugin)
    with pytest.raises(ValueError, match="Invalid method"):
        torchdiffeq.odeint(lambda t, y: -y, y0, t, method="runtime_heun")
    with pytest.raises(PluginError, match="no plugin"):
        nde.unregister_plugin("runtime_test_plugin")


def test_plugin_name_already_registered(registry):
    registry.register_plugin(plugin_with(Tableau("one", **HEUN)), name="p")
    with pytest.raises(PluginConflictError, match="a plugin named 'p' is already registered"):
        registry.register_plugin(plugin_with(Tableau("two", **HEUN)), name="p")


def test_registering_the_same_name_twice_in_one_plugin(registry):
    with pytest.raises(PluginConflictError, match="registers tableau 'twice' twice"):
        registry.register_plugin(plugin_with(Tableau("twice", **HEUN), Tableau("twice", **HEUN)))


def test_same_entry_point_name_in_two_distributions_is_fine():
    first = FakeEntryPoint("tableaux", lambda: plugin_with(Tableau("one_a", **HEUN), name="x"), dist="dist_a")
    second = FakeEntryPoint("tableaux", lambda: plugin_with(Tableau("one_b", **HEUN), name="y"), dist="dist_b")
    registry = make_registry(first, second)
    assert {"one_a", "one_b"} <= set(registry.names("tableau"))
    assert registry.load_errors == []


def test_no_warning_when_all_plugins_are_fine(registry):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        registry.load()
    assert registry.load_errors == []
