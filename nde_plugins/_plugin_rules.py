"""What the registry deals in and the rules a plugin follows: sources, registrations, errors, checks.

The registry (``plugins``) loads plugins and keeps their registrations; this module says what a
plugin object must be (``check_plugin``: every fault found, one line each), what a registered name
must look like (a lower-case identifier), what ``register`` accepts for each kind (``Register``)
and what a hook may not do (return a value instead of calling ``register``).
"""

from __future__ import annotations

import difflib
import inspect
import numbers
import re
import reprlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from . import hookspecs
from .tableaux import Tableau, TableauFamily

#: plugin kind -> the hook that contributes it
KINDS: dict[str, str] = {
    "tableau": "register_tableaux",
    "diffusion": "register_diffusions",
    "end_time_sampler": "register_end_time_samplers",
    "step_regularizer": "register_step_regularizers",
    "solver_schedule": "register_solver_schedules",
}

_WHAT_A_PLUGIN_IS = "a plugin is a module, class or instance with functions marked @nde_plugins.hookimpl"
_IMPL_MARKER = f"{hookspecs.PROJECT_NAME}_impl"  # the attribute pluggy's HookimplMarker sets
# Values that are never plugins. pluggy would accept them (and silently ignore None) and find no hooks.
_NOT_PLUGINS = (str, bytes, bytearray, numbers.Number, list, tuple, dict, set, frozenset)
_MISSING = object()
# The rule for every registered name, of every kind: a lower-case identifier, so that it can be written
# in method specs and on the command line as it is (docs/plugins/loading.md, "Names").
_NAME_RULE = re.compile(r"[a-z_][a-z0-9_]*")
_NAME_RULE_TEXT = ("a Python identifier in lower case (lower-case letters a-z, digits and underscores, not "
                   "starting with a digit) so that it can be written in method specs and on the command line")



class PluginError(RuntimeError):
    """A plugin could not be loaded or registered; the message says which and why."""


class PluginConflictError(PluginError):
    """Two plugins contribute the same name (or a plugin takes a reserved name)."""


class PluginWarning(UserWarning):
    """An entry-point plugin was skipped; the library keeps working without it."""


class UnknownPluginNameError(ValueError, LookupError):
    """No plugin of the requested kind has that name."""


@dataclass(frozen=True)
class PluginSource:
    """Where a registration came from: the plugin object's name and the distribution shipping it."""

    plugin: str
    origin: str  # "built-in", "entry point" or "runtime"
    distribution: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        dist = f"{self.distribution} {self.version}" if self.distribution else "no distribution"
        return f"{self.origin} plugin {self.plugin!r} ({dist})"


@dataclass(frozen=True)
class Registration:
    """One named object contributed by a plugin."""

    kind: str
    name: str
    obj: Any
    source: PluginSource


@dataclass(frozen=True)
class LoadError:
    """A plugin that was skipped, with the reason."""

    source: PluginSource
    message: str  # the reason, without the source


def _check_name(name: str, what: str) -> None:
    """Raise ``ValueError`` naming ``name``, the rule and (where one exists) a fixed name, unless it is valid."""
    if _NAME_RULE.fullmatch(name):
        return
    fixed = re.sub(r"[-. ]", "_", name.lower())  # the usual separators; anything else has no obvious fix
    fix = f"; rename it, e.g. to {fixed!r}" if _NAME_RULE.fullmatch(fixed) else ""
    raise ValueError(f"{what} got the name {name!r}; a name must be {_NAME_RULE_TEXT}{fix}")


def _validate_tableau(obj: Any) -> str:
    if not isinstance(obj, (Tableau, TableauFamily)):
        raise TypeError(f"register_tableaux: register() takes a Tableau or TableauFamily, got {type(obj).__name__}")
    name = obj.name  # a Tableau checks its name when built; a subclass or a patched instance might not
    if not isinstance(name, str):
        raise TypeError(f"register_tableaux: the {type(obj).__name__} has a name that is not a str: "
                        f"{type(name).__name__} {reprlib.repr(name)}")
    _check_name(name, f"register_tableaux: register() of a {type(obj).__name__}")
    return name


def _validate_factory(kind: str) -> Callable[[Any, Any], str]:
    def check(name: Any, factory: Any) -> str:
        if not isinstance(name, str):
            raise TypeError(f"{KINDS[kind]}: register(name, factory) needs a str name, got {type(name).__name__} "
                            f"{reprlib.repr(name)}")
        _check_name(name, f"{KINDS[kind]}: register(name, factory)")
        if not callable(factory):
            raise TypeError(f"{KINDS[kind]}: the factory registered as {name!r} is not callable")
        return name

    return check


class _Register:
    """The ``register`` callback handed to one call of one hook.

    It stages what the hook contributes (``Registry._add`` commits it all or nothing) and refuses to
    be called once the hook has returned: a plugin that kept the callback for later would otherwise
    register nothing without a word.
    """

    def __init__(self, kind: str, source: PluginSource, staged: list[Registration]) -> None:
        self._kind, self._source, self._staged = kind, source, staged
        self._validate = _validate_tableau if kind == "tableau" else _validate_factory(kind)
        self.open = True

    def __call__(self, obj: Any, factory: Any = None) -> None:
        hook_name = KINDS[self._kind]
        if not self.open:
            raise PluginError(
                f"register() was called after {hook_name} of {self._source} had returned; call register() "
                "inside the hook, which runs once, when the plugin is registered"
            )
        if self._kind == "tableau":
            if factory is not None:
                raise TypeError("register_tableaux: register() takes one Tableau or TableauFamily")
            self._staged.append(Registration(self._kind, self._validate(obj), obj, self._source))
        else:
            self._staged.append(Registration(self._kind, self._validate(obj, factory), factory, self._source))


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _marker(value: Any) -> Any:
    """The hookimpl options attached to ``value`` (or to the function a static/class method wraps)."""
    for holder in (value, getattr(value, "__func__", None)):
        try:
            opts = getattr(holder, _IMPL_MARKER, None)
        except Exception:  # noqa: BLE001 - arbitrary objects may raise on attribute access
            opts = None
        if isinstance(opts, dict):
            return opts
    return None


def _refuse_non_plugin(plugin: Any, who: str) -> None:
    """Raise ``PluginError`` for values that cannot be plugins, with a hint at what was meant."""
    if plugin is None or isinstance(plugin, _NOT_PLUGINS):
        got = "None" if plugin is None else f"{type(plugin).__name__} {reprlib.repr(plugin)}"
        hint = ""
        if isinstance(plugin, str):
            hint = f"; to register a module by name, import it first: importlib.import_module({plugin!r})"
        elif isinstance(plugin, (list, tuple, set, frozenset)):
            hint = "; register each plugin of a collection on its own"
        raise PluginError(f"{who}: {_WHAT_A_PLUGIN_IS}, got {got}{hint}")
    if inspect.isroutine(plugin) and _marker(plugin) is not None:
        raise PluginError(
            f"{who} is the hook function {getattr(plugin, '__name__', '?')!r} itself, not a plugin; register "
            "the module or object that defines it (for an entry point: point the entry point at the module or "
            "object that defines it)"
        )


def _attributes(plugin: Any, who: str) -> list[str]:
    try:
        return [attr for attr in dir(plugin) if isinstance(attr, str)]
    except Exception as exc:  # noqa: BLE001 - a plugin's own __dir__ may raise anything
        raise PluginError(
            f"{who}: dir() of the plugin raised {type(exc).__name__}: {exc}; hooks are found by listing a "
            "plugin's attributes, so dir() must work on it"
        ) from exc


def _static_attribute(plugin: Any, name: str) -> Any:
    # Static lookup, like pluggy's: a property named like a hook is not run just to inspect it.
    try:
        return inspect.getattr_static(plugin, name, _MISSING)
    except Exception:  # noqa: BLE001 - exotic metaclasses may raise
        return _MISSING


def _is_instance_method(value: Any) -> bool:
    """Whether ``value``, found on a class, is a plain function that expects ``self``."""
    if not inspect.isfunction(value):
        return False
    try:
        first = next(iter(inspect.signature(value).parameters), None)
    except (TypeError, ValueError):
        return False
    return first == "self"


def check_plugin(pm: pluggy.PluginManager, plugin: Any, who: str) -> None:
    """Raise ``PluginError`` unless ``plugin`` is a plugin whose hooks will all be called.

    pluggy itself accepts any object and ignores what it does not recognize; each rule here
    turns one of those silent no-ops into an error that names the fix. Every fault found is
    reported, one line each, so that a plugin's author fixes them in one round.
    """
    _refuse_non_plugin(plugin, who)
    attributes = _attributes(plugin, who)
    faults = _plugin_faults(pm, plugin, attributes)
    if len(faults) == 1:
        separator, fault = faults[0]
        raise PluginError(f"{who}{separator}{fault}")
    if faults:
        listed = "".join(f"\n  - {fault}" for _, fault in faults)
        raise PluginError(f"{who} has {len(faults)} problems:{listed}")

def _plugin_faults(pm: pluggy.PluginManager, plugin: Any, attributes: list[str]) -> list[tuple[str, str]]:
    """What is wrong with ``plugin``, as (separator, text) pairs: ``who + separator + text`` reads as a sentence."""
    faults: list[tuple[str, str]] = []
    hooks: dict[str, tuple[str, dict]] = {}  # hook name -> (attribute, marker options)
    for attr in attributes:
        try:
            opts = pm.parse_hookimpl_opts(plugin, attr)
        except Exception:  # noqa: BLE001 - older pluggy reads attributes with getattr; a property may raise
            continue
        if opts is not None:
            hooks[opts.get("specname") or attr] = (attr, opts)
    known = list(KINDS.values())
    for hook_name, (attr, opts) in hooks.items():
        if hook_name not in known:
            faults.append((" ", f"implements unknown hook {hook_name!r}{_suggest(hook_name, known)} "
                                f"(known hooks: {', '.join(known)})"))
            continue
        if opts.get("hookwrapper") or opts.get("wrapper"):
            faults.append((": ", f"{attr!r} is a hook wrapper; nde_plugins calls each hook on its own, so "
                                 "wrappers never run: drop wrapper=True / hookwrapper=True and call register() "
                                 "in a plain hook"))
        if inspect.isclass(plugin) and _is_instance_method(_static_attribute(plugin, attr)):
            faults.append((": ", f"{attr!r} is an instance method, but the class itself was given; register "
                                 f"an instance ({plugin.__name__}()) or make the hook a @staticmethod"))
    marked = {attr for attr, _ in hooks.values()}
    for hook_name in known:
        if hook_name in hooks or hook_name in marked:
            continue
        value = _static_attribute(plugin, hook_name)
        if value is _MISSING:
            continue
        if _marker(value) is not None:
            faults.append((": ", f"{hook_name!r} is marked with @nde_plugins.hookimpl but is a "
                                 f"{type(value).__name__}, not a function; hooks must be functions or methods"))
        elif callable(value) or isinstance(value, (staticmethod, classmethod)):
            faults.append((": ", f"{hook_name!r} is not marked as a hook implementation; decorate it with "
                                 "@nde_plugins.hookimpl, or it is never called"))
    if not hooks and not faults:  # an unmarked or unusable hook already says why none is found
        near = [attr for attr in attributes if difflib.get_close_matches(attr, known, n=1, cutoff=0.8)]
        hint = f"; it defines {near[0]!r}{_suggest(near[0], known)}" if near else ""
        faults.append((" ", f"implements none of the nde_plugins hooks ({', '.join(known)}){hint}; "
                            f"{_WHAT_A_PLUGIN_IS}"))
    return faults


def refuse_hook_result(result: Any, hook_name: str, who: str) -> None:
    # A hook contributes through register() only; a returned value would be dropped silently.
    if inspect.isgenerator(result) or inspect.iscoroutine(result) or inspect.isasyncgen(result):
        close = getattr(result, "close", None)
        if inspect.isasyncgen(result):
            close = None  # closing an async generator needs an event loop; it never started anyway
        if close is not None:
            close()
        raise PluginError(
            f"{who}: {hook_name} returned a {type(result).__name__}, so its body never ran; hooks must be "
            "plain functions (not generators or async functions) that call register()"
        )
    raise PluginError(
        f"{who}: {hook_name} returned a {type(result).__name__} instead of calling register(); call "
        "register(...) once per object it contributes and return nothing"
    )
