"""The registry's failure policy: what is refused, what is skipped, and that loading always completes."""

import gc
import sys
import threading
import time
import types
import warnings

import pytest

import nde_plugins as nde
from nde_plugins import PluginConflictError, PluginError, PluginWarning, Registry, Tableau, hookimpl

from .test_plugins import HEUN, FakeEntryPoint, make_registry, plugin_with

KNOWN_HOOKS = "register_tableaux, register_diffusions, register_end_time_samplers, " \
              "register_step_regularizers, register_solver_schedules"


def module_with(name, **functions):
    module = types.ModuleType(name)
    for attr, function in functions.items():
        setattr(module, attr, function)
    return module


def heun_hook():
    """A new, unmarked hook function (``hookimpl`` marks a function in place, so tests never share one)."""

    def register_tableaux(register):
        register(Tableau("heun_like", **HEUN))

    return register_tableaux


# -- unregistering -----------------------------------------------------------------------------------


@pytest.mark.parametrize("by_object", [False, True])
def test_builtin_plugins_cannot_be_unregistered(registry, by_object):
    import nde_plugins.tableaux.builtin as builtin

    before = registry.names("tableau")
    target = builtin if by_object else "nde_plugins.builtins.tableaux"
    with pytest.raises(PluginError, match="built-in plugin 'nde_plugins.builtins.tableaux'.*only plugins registered "
                                          "at run time with register_plugin can be unregistered"):
        registry.unregister_plugin(target)
    assert registry.names("tableau") == before
    assert "nde_plugins.builtins.tableaux" in registry.plugin_names()


def test_entry_point_plugins_cannot_be_unregistered():
    registry = make_registry(FakeEntryPoint("ep", lambda: plugin_with(Tableau("ep_heun", **HEUN), name="ep")))
    with pytest.raises(PluginError, match="entry point plugin 'thirdparty:ep'.*NDE_PLUGINS_DISABLE_ENTRY_POINTS=1 "
                                          "or uninstall the package that provides it \\(thirdparty\\)"):
        registry.unregister_plugin("thirdparty:ep")
    assert "ep_heun" in registry.names("tableau")


def test_runtime_plugins_can_still_be_unregistered(registry):
    name = registry.register_plugin(plugin_with(Tableau("gone_soon", **HEUN), name="gone_soon_plugin"))
    registry.unregister_plugin(name)
    assert "gone_soon" not in registry.names("tableau") and name not in registry.plugin_names()
    with pytest.raises(PluginError, match="no plugin 'gone_soon_plugin' is registered"):
        registry.unregister_plugin(name)


# -- what a plugin is --------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, 3, 2.5, True, b"bytes", [plugin_with()], {"register_tableaux": heun_hook()}])
def test_non_plugin_objects_are_refused(registry, value):
    before = registry.plugin_names()
    with pytest.raises(PluginError, match="a plugin is a module, class or instance with functions marked "
                                          "@nde_plugins.hookimpl"):
        registry.register_plugin(value)
    assert registry.plugin_names() == before


def test_a_module_name_given_as_plugin_gets_a_hint(registry):
    with pytest.raises(PluginError, match="importlib.import_module\\('nde_plugins.diffusions'\\)"):
        registry.register_plugin("nde_plugins.diffusions")


def test_entry_point_pointing_at_the_hook_function_gets_a_hint():
    @hookimpl
    def register_tableaux(register):
        register(Tableau("heun_like", **HEUN))

    registry = make_registry(FakeEntryPoint("fn", lambda: register_tableaux))
    with pytest.warns(PluginWarning, match="is the hook function 'register_tableaux' itself, not a plugin.*point the "
                                           "entry point at the module or object that defines it"):
        registry.load()
    assert "heun_like" not in registry.names("tableau")


def test_entry_point_loading_none_is_skipped():
    good = FakeEntryPoint("good", lambda: plugin_with(Tableau("after_none", **HEUN), name="good"), dist="gooddist")
    registry = make_registry(FakeEntryPoint("nothing", lambda: None, dist="nonedist"), good)
    with pytest.warns(PluginWarning, match="nonedist:nothing.*got None"):
        registry.load()
    assert "after_none" in registry.names("tableau")
    assert [e.source.plugin for e in registry.load_errors] == ["nonedist:nothing"]


def test_hook_function_without_marker_is_refused_at_run_time(registry):
    module = module_with("unmarked", register_tableaux=heun_hook())
    with pytest.raises(PluginError, match="'register_tableaux' is not marked as a hook implementation; decorate it "
                                          "with @nde_plugins.hookimpl"):
        registry.register_plugin(module)
    assert "unmarked" not in registry.plugin_names() and "heun_like" not in registry.names("tableau")


def test_one_unmarked_hook_refuses_the_whole_plugin(registry):
    module = module_with("half_marked", register_tableaux=hookimpl(heun_hook()),
                         register_diffusions=lambda register: None)
    with pytest.raises(PluginError, match="'register_diffusions' is not marked"):
        registry.register_plugin(module)
    assert "heun_like" not in registry.names("tableau")


def test_hook_function_without_marker_in_an_entry_point_is_skipped():
    module = module_with("unmarked_ep", register_tableaux=heun_hook())
    registry = make_registry(FakeEntryPoint("unmarked", lambda: module, dist="lazydist"))
    with pytest.warns(PluginWarning, match="lazydist:unmarked.*decorate it with @nde_plugins.hookimpl"):
        registry.load()
    (err,) = registry.load_errors
    assert err.source.distribution == "lazydist" and "not marked" in err.message
    assert "heun_like" not in registry.names("tableau")


def test_unmarked_static_method_of_a_class_plugin_is_refused(registry):
    class Plugin:
        register_tableaux = staticmethod(heun_hook())

    with pytest.raises(PluginError, match="'register_tableaux' is not marked"):
        registry.register_plugin(Plugin)


def test_marker_on_a_non_function_is_reported(registry):
    class Callable:
        def __call__(self, register):
            register(Tableau("heun_like", **HEUN))

    module = module_with("callable_hook", register_tableaux=hookimpl(Callable()))
    with pytest.raises(PluginError, match="'register_tableaux' is marked with @nde_plugins.hookimpl but is a "
                                          "Callable, not a function"):
        registry.register_plugin(module)


def broken_in_three_ways():
    """A module with an unknown hook, a hook wrapper and an unmarked hook-named function."""

    @hookimpl
    def register_tablaux(register):
        pass

    @hookimpl(hookwrapper=True)
    def register_diffusions(register):
        yield

    return module_with("three_faults", register_tablaux=register_tablaux, register_diffusions=register_diffusions,
                       register_step_regularizers=lambda register: None)


THREE_FAULTS = ["unknown hook 'register_tablaux'; did you mean 'register_tableaux'",
                "'register_diffusions' is a hook wrapper",
                "'register_step_regularizers' is not marked as a hook implementation"]


def test_every_fault_of_a_plugin_is_reported_at_run_time(registry):
    with pytest.raises(PluginError) as caught:
        registry.register_plugin(broken_in_three_ways())
    message = str(caught.value)
    assert message.startswith("runtime plugin 'three_faults' (no distribution) has 3 problems:\n  - ")
    assert all(fault in message for fault in THREE_FAULTS), message
    assert len(message.splitlines()) == 4
    assert "three_faults" not in registry.plugin_names()


def test_every_fault_of_an_entry_point_plugin_is_in_its_warning_and_load_error():
    registry = make_registry(FakeEntryPoint("acme", broken_in_three_ways, dist="acme-dist"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry.load()
    (warning,) = [str(w.message) for w in caught if w.category is PluginWarning]
    (err,) = registry.load_errors
    assert warning == f"nde_plugins skipped {err.source}: {err.message}"
    assert err.message.startswith("has 3 problems:\n  - ")
    assert all(fault in warning and fault in err.message for fault in THREE_FAULTS)


def test_instance_methods_of_a_class_are_each_reported(registry):
    class NeedsInstance:
        @hookimpl
        def register_tableaux(self, register):
            pass

        @hookimpl
        def register_diffusions(self, register):
            pass

    with pytest.raises(PluginError, match="has 2 problems:\n  - 'register_diffusions' is an instance method.*\n"
                                          "  - 'register_tableaux' is an instance method"):
        registry.register_plugin(NeedsInstance)


def test_a_single_fault_keeps_the_one_line_message(registry):
    with pytest.raises(PluginError) as caught:
        registry.register_plugin(module_with("unmarked_only", register_tableaux=heun_hook()))
    assert str(caught.value) == ("runtime plugin 'unmarked_only' (no distribution): 'register_tableaux' is not "
                                 "marked as a hook implementation; decorate it with @nde_plugins.hookimpl, or it is "
                                 "never called")


@pytest.mark.parametrize("load", [
    lambda: module_with("unmarked_ep", register_tableaux=heun_hook()),  # refused by the checks
    lambda: None,  # not a plugin at all
    lambda: plugin_with(Tableau("dopri5", **HEUN), name="reserved"),  # a reserved name
    lambda: module_with("raiser", register_tableaux=hookimpl(lambda register: 1 / 0)),  # fails in its hook
])
def test_the_warning_names_the_skipped_plugin_once(load):
    registry = make_registry(FakeEntryPoint("once", load, dist="oncedist"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry.load()
    (warning,) = [str(w.message) for w in caught if w.category is PluginWarning]
    assert warning.startswith("nde_plugins skipped entry point plugin 'oncedist:once' (oncedist 1.0): ")
    assert warning.count("oncedist:once") == 1, warning
    (err,) = registry.load_errors
    assert "oncedist:once" not in err.message and err.message


def test_plugin_without_any_hook_is_refused_listing_the_hooks(registry):
    module = module_with("hookless", helper=lambda: None)
    with pytest.raises(PluginError, match=f"implements none of the nde_plugins hooks \\({KNOWN_HOOKS}\\)"):
        registry.register_plugin(module)


def test_plugin_without_hooks_suggests_a_misspelled_unmarked_function(registry):
    module = module_with("typo_unmarked", register_tablaux=heun_hook())
    with pytest.raises(PluginError, match="it defines 'register_tablaux'; did you mean 'register_tableaux'"):
        registry.register_plugin(module)


def test_class_and_instance_plugins_with_marked_methods_work(registry):
    class StaticPlugin:
        @staticmethod
        @hookimpl
        def register_tableaux(register):
            register(Tableau("from_class", **HEUN))

    class InstancePlugin:
        def __init__(self, name):
            self.name = name

        @hookimpl
        def register_tableaux(self, register):
            register(Tableau(self.name, **HEUN))

    registry.register_plugin(StaticPlugin)
    registry.register_plugin(InstancePlugin("from_instance"))
    assert {"from_class", "from_instance"} <= set(registry.names("tableau"))


def test_class_given_instead_of_an_instance_is_refused_with_the_fix(registry):
    class NeedsInstance:
        @hookimpl
        def register_tableaux(self, register):
            register(Tableau("from_self", **HEUN))

    with pytest.raises(PluginError, match="'register_tableaux' is an instance method, but the class itself was "
                                          "given; register an instance \\(NeedsInstance\\(\\)\\)"):
        registry.register_plugin(NeedsInstance)
    registry.register_plugin(NeedsInstance())
    assert "from_self" in registry.names("tableau")


def test_hook_registered_under_another_attribute_name_with_specname(registry):
    @hookimpl(specname="register_tableaux")
    def contribute(register):
        register(Tableau("via_specname", **HEUN))

    registry.register_plugin(module_with("specname_plugin", contribute=contribute))
    assert "via_specname" in registry.names("tableau")


def test_hook_wrappers_are_refused(registry):
    @hookimpl(hookwrapper=True)
    def register_tableaux(register):
        yield

    with pytest.raises(PluginError, match="'register_tableaux' is a hook wrapper"):
        registry.register_plugin(module_with("wrapper_plugin", register_tableaux=register_tableaux))


def test_hook_returning_objects_instead_of_registering_them_is_refused(registry):
    @hookimpl
    def register_tableaux(register):
        return [Tableau("returned", **HEUN)]

    with pytest.raises(PluginError, match="register_tableaux returned a list instead of calling register"):
        registry.register_plugin(module_with("returner", register_tableaux=register_tableaux))
    assert "returned" not in registry.names("tableau")


def test_generator_hook_is_refused(registry):
    @hookimpl
    def register_tableaux(register):
        yield register(Tableau("generated", **HEUN))

    with pytest.raises(PluginError, match="returned a generator"):
        registry.register_plugin(module_with("generator_plugin", register_tableaux=register_tableaux))
    assert "generated" not in registry.names("tableau")


def test_async_hook_is_refused_without_leaving_an_unawaited_coroutine(registry):
    @hookimpl
    async def register_tableaux(register):
        register(Tableau("awaited", **HEUN))

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be a RuntimeWarning
        with pytest.raises(PluginError, match="returned a coroutine, so its body never ran"):
            registry.register_plugin(module_with("async_plugin", register_tableaux=register_tableaux))
        gc.collect()
    assert "awaited" not in registry.names("tableau")


def test_register_called_after_the_hook_returned_is_refused(registry):
    kept = []

    @hookimpl
    def register_tableaux(register):
        register(Tableau("in_time", **HEUN))
        kept.append(register)

    registry.register_plugin(module_with("late", register_tableaux=register_tableaux))
    with pytest.raises(PluginError, match="register\\(\\) was called after register_tableaux of runtime plugin "
                                          "'late'.*returned"):
        kept[0](Tableau("too_late", **HEUN))
    assert "in_time" in registry.names("tableau") and "too_late" not in registry.names("tableau")


def test_plugin_whose_dir_raises_is_refused_and_skipped():
    class Opaque:
        def __dir__(self):
            raise RuntimeError("no listing")

    with pytest.raises(PluginError, match="dir\\(\\) of the plugin raised RuntimeError: no listing"):
        make_registry(load_entry_points=False).register_plugin(Opaque(), name="opaque")
    registry = make_registry(FakeEntryPoint("opaque", Opaque))
    with pytest.warns(PluginWarning, match="thirdparty:opaque.*no listing"):
        registry.load()
    assert len(registry.load_errors) == 1


@pytest.mark.parametrize("name", [3, ""])
def test_register_plugin_needs_a_string_name(registry, name):
    plugin = plugin_with(Tableau("named", **HEUN), name="")
    with pytest.raises(PluginError, match="name"):
        registry.register_plugin(plugin, name=name)
    assert "named" not in registry.names("tableau")


def test_the_same_plugin_object_twice_is_a_conflict_not_a_crash(registry):
    plugin = plugin_with(Tableau("once", **HEUN), name="once_plugin")
    registry.register_plugin(plugin)
    with pytest.raises(PluginConflictError, match="already registered as 'once_plugin'"):
        registry.register_plugin(plugin, name="twice_plugin")
    assert "twice_plugin" not in registry.plugin_names()


def test_entry_point_pointing_at_a_builtin_module_is_skipped_and_loading_goes_on():
    import nde_plugins.diffusions as builtin_diffusions

    good = FakeEntryPoint("good", lambda: plugin_with(Tableau("after_dup", **HEUN), name="good"), dist="gooddist")
    registry = make_registry(FakeEntryPoint("dup", lambda: builtin_diffusions, dist="dupdist"), good)
    with pytest.warns(PluginWarning, match="dupdist:dup.*already registered as 'nde_plugins.builtins.diffusions'"):
        registry.load()
    assert "after_dup" in registry.names("tableau")


# -- the environment variable ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "true", " TRUE ", "Yes", "on\n"])
def test_entry_points_disabled_by_any_usual_spelling(monkeypatch, value):
    monkeypatch.setenv(nde.DISABLE_ENTRY_POINTS_ENV, value)
    registry = Registry(entry_points=lambda group: pytest.fail("entry points must not be scanned"))
    assert "rk4_uv" in registry.names("tableau")


@pytest.mark.parametrize("value", ["", "0", "false", " False ", "NO", "off"])
def test_entry_points_enabled_by_any_usual_spelling(monkeypatch, value):
    monkeypatch.setenv(nde.DISABLE_ENTRY_POINTS_ENV, value)
    registry = Registry(entry_points=lambda group: [FakeEntryPoint("ep", lambda: plugin_with(
        Tableau("env_heun", **HEUN), name="ep"))])
    assert "env_heun" in registry.names("tableau")


@pytest.mark.parametrize("value", ["2", "disable", "y", "ture"])
def test_unknown_spelling_of_the_environment_variable_is_refused(monkeypatch, value):
    monkeypatch.setenv(nde.DISABLE_ENTRY_POINTS_ENV, value)
    registry = Registry(entry_points=lambda group: [])
    with pytest.raises(PluginError, match=f"NDE_PLUGINS_DISABLE_ENTRY_POINTS={value!r}.*1, true, yes, on.*"
                                          "0, false, no, off"):
        registry.names("tableau")
    monkeypatch.setenv(nde.DISABLE_ENTRY_POINTS_ENV, "1")  # once fixed, the registry loads in full
    assert "rk4_uv" in registry.names("tableau")


# -- sys.exit and other escapes ----------------------------------------------------------------------


def test_entry_point_calling_sys_exit_at_import_is_skipped():
    def exits():
        sys.exit(3)

    good = FakeEntryPoint("good", lambda: plugin_with(Tableau("survivor", **HEUN), name="good"), dist="gooddist")
    registry = make_registry(FakeEntryPoint("quitter", exits, dist="quitdist"), good)
    with pytest.warns(PluginWarning, match="quitdist:quitter.*called sys.exit\\(3\\)"):
        registry.load()
    assert "survivor" in registry.names("tableau")
    (err,) = registry.load_errors
    assert "sys.exit" in err.message


def test_entry_point_calling_sys_exit_inside_its_hook_is_skipped():
    @hookimpl
    def register_tableaux(register):
        register(Tableau("half_way", **HEUN))
        sys.exit("bye")

    module = module_with("quitter", register_tableaux=register_tableaux)
    registry = make_registry(FakeEntryPoint("quitter", lambda: module))
    with pytest.warns(PluginWarning, match="called sys.exit\\('bye'\\) inside its hook"):
        registry.load()
    assert "half_way" not in registry.names("tableau")
    assert "thirdparty:quitter" not in registry.plugin_names()


def test_keyboard_interrupt_propagates_and_leaves_the_registry_unloaded():
    attempts = []

    def load():
        attempts.append(1)
        if len(attempts) == 1:
            raise KeyboardInterrupt
        return plugin_with(Tableau("second_try", **HEUN), name="ep")

    registry = make_registry(FakeEntryPoint("ep", load))
    with pytest.raises(KeyboardInterrupt):
        registry.load()
    assert "second_try" in registry.names("tableau")  # the next lookup loads everything afresh
    assert registry.load_errors == []


def test_failing_builtin_raises_every_time_instead_of_leaving_a_half_loaded_registry():
    registry = Registry(default_plugins=("nde_plugins.tableaux.builtin", "nde_plugins.no_such_module"),
                        load_entry_points=False)
    for _ in range(2):
        with pytest.raises(ModuleNotFoundError, match="no_such_module"):
            registry.names("tableau")


def test_failing_entry_point_discovery_is_a_load_error():
    def discover(group):
        raise OSError("unreadable metadata")

    registry = Registry(load_entry_points=True, entry_points=discover)
    with pytest.warns(PluginWarning, match="listing the entry points of group 'nde_plugins' failed: "
                                           "OSError: unreadable metadata"):
        names = registry.names("tableau")
    assert "rk4_uv" in names and len(registry.load_errors) == 1


# -- warnings as errors ------------------------------------------------------------------------------


def test_loading_completes_when_warnings_are_errors():
    def broken():
        raise ImportError("missing_dependency")

    def good_plugin():
        module = types.ModuleType("good")

        @hookimpl
        def register_tableaux(register):
            register(Tableau("good_a", **HEUN))
            register(Tableau("good_b", **HEUN))

        @hookimpl
        def register_diffusions(register):
            register("good_noise", lambda drift: None)

        module.register_tableaux, module.register_diffusions = register_tableaux, register_diffusions
        return module

    registry = make_registry(FakeEntryPoint("bad", broken, dist="baddist"),
                             FakeEntryPoint("good", good_plugin, dist="gooddist"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(PluginWarning, match="baddist"):
            registry.load()
        assert {"good_a", "good_b"} <= set(registry.names("tableau"))
        assert "good_noise" in registry.names("diffusion")
        assert [e.source.plugin for e in registry.load_errors] == ["baddist:bad"]
        assert "gooddist:good" in registry.plugin_names()
        registry.load()  # loaded once: no second warning


def test_every_skipped_plugin_is_warned_about_after_loading():
    def broken():
        raise ImportError("nope")

    entry_points = [FakeEntryPoint(f"bad{i}", broken, dist=f"dist{i}") for i in range(3)]
    registry = make_registry(*entry_points)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        registry.load()
    messages = [str(w.message) for w in caught if w.category is PluginWarning]
    assert len(messages) == 3
    assert all(f"'dist{i}:bad{i}'" in message for i, message in enumerate(messages))


# -- lookups -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [None, 3, ["rk4_uv"]])
def test_lookup_with_a_non_string_name_is_a_type_error(registry, name):
    with pytest.raises(TypeError, match="tableau name must be a str"):
        registry.get("tableau", name)
    with pytest.raises(TypeError, match="tableau name must be a str"):
        registry.find("tableau", name)


@pytest.mark.parametrize("kind", [None, 3, ["tableau"]])
def test_lookup_with_a_non_string_kind_names_the_kinds(registry, kind):
    with pytest.raises(ValueError, match="unknown plugin kind.*kinds are"):
        registry.names(kind)


def test_registrations_of_an_empty_kind_is_refused(registry):
    with pytest.raises(ValueError, match="unknown plugin kind ''"):
        registry.registrations("")


@pytest.mark.parametrize("name, rule", [("my-noise", "a Python identifier"), (3, "a str name")])
def test_factory_name_rules_are_stated(registry, name, rule):
    @hookimpl
    def register_diffusions(register):
        register(name, lambda drift: None)

    with pytest.raises(PluginError, match=rule):
        registry.register_plugin(module_with("bad_factory_name", register_diffusions=register_diffusions))


# -- threads -----------------------------------------------------------------------------------------


def test_concurrent_first_lookups_load_once_and_see_everything():
    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.05)
        return plugin_with(Tableau("slow_heun", **HEUN), name="slow")

    registry = make_registry(FakeEntryPoint("slow", slow))
    seen, errors = [], []

    def look():
        try:
            seen.append("slow_heun" in registry.names("tableau"))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=look) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and seen == [True] * 8 and calls == [1]


def test_lookups_stay_consistent_while_another_thread_registers(registry):
    registry.load()
    stop, errors = threading.Event(), []

    def churn():
        try:
            for i in range(200):
                name = registry.register_plugin(plugin_with(Tableau(f"churn_{i}", **HEUN), name=f"churn{i}"))
                registry.unregister_plugin(name)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            stop.set()

    worker = threading.Thread(target=churn)
    worker.start()
    while not stop.is_set():
        for reg in registry.registrations("tableau"):
            assert registry.find("tableau", reg.name) in (reg, None)
    worker.join()
    assert errors == []


def test_a_plugin_using_the_registry_while_it_loads_does_not_deadlock():
    seen = []

    def reentrant():
        seen.append(registry.names("tableau"))  # a plugin module that looks things up at import
        return plugin_with(Tableau("reentrant_heun", **HEUN), name="reentrant")

    registry = make_registry(FakeEntryPoint("reentrant", reentrant))
    assert "reentrant_heun" in registry.names("tableau")
    assert "rk4_uv" in seen[0] and "reentrant_heun" not in seen[0]


def test_the_old_paths_of_the_built_in_plugins_are_the_same_modules():
    """Code and pickles that name nde_plugins.regularizers and the like keep working after the move."""
    import importlib

    for old, new in [("nde_plugins.regularizers", "regularizers"), ("nde_plugins.diffusions", "diffusions"),
                     ("nde_plugins.end_times", "end_times"), ("nde_plugins.schedules", "schedules"),
                     ("nde_plugins.adaption", "adaption"), ("nde_plugins.tableaux.builtin", "tableaux")]:
        assert importlib.import_module(old) is importlib.import_module(f"nde_plugins.builtins.{new}")
