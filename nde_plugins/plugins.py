"""The plugin registry: built-ins and entry-point plugins, loaded lazily and once, looked up by name.

Built-in plugins are modules listed in ``DEFAULT_PLUGINS`` and go through exactly the same hooks as
third-party ones. Every hook implementation is called on its own, with a ``register`` callback that
stages what the plugin contributes; the staged entries are committed only if the whole hook ran
cleanly and none of its names is taken, so a failing plugin leaves no half-registered state.

What a plugin is (the rules, and the types the registry deals in, live in ``_plugin_rules``): a
module, class or instance with at least one function marked ``@nde_plugins.hookimpl`` and named
after one of the hooks in ``KINDS`` (or marked with that name as ``specname``). Refused as broken:
an object that cannot be a plugin (None, a number, a string, a collection, a hook function on its
own), a function named like a hook but not marked (pluggy would never call it), an unknown hook, a
hook wrapper, an object with no hook at all, a hook that returns something instead of calling
``register``, and a ``register`` call made after its hook returned. Every such fault of a plugin's
hooks is reported in one error, one line each. Every registered name, of every kind, is a lower-case
identifier (``[a-z_][a-z0-9_]*``, the rule of docs/plugins/loading.md); any other name is refused
with the rule and a fix.

Failure policy:
- a built-in plugin that fails is a bug and raises;
- an entry-point plugin that fails to import, is broken as above, raises inside its hook, calls
  ``sys.exit()`` (at import or in its hook), registers something invalid or takes a name already
  taken is skipped and listed in ``Registry.load_errors`` (and by ``nde-plugins plugins``), whose
  message is the reason without the source (``LoadError.source`` carries it);
  everything else loads. One ``PluginWarning`` per skipped plugin is emitted once loading has
  finished, so a warning filter that turns warnings into errors cannot cut loading short;
- whatever escapes loading (a failing built-in, an invalid ``NDE_PLUGINS_DISABLE_ENTRY_POINTS``,
  ``KeyboardInterrupt``) leaves nothing registered and the next lookup loads afresh: the registry is
  never marked loaded with plugins missing;
- a plugin registered at run time with ``register_plugin`` raises, since its author is right there;
- ``unregister_plugin`` removes only such run-time plugins: built-in and entry-point plugins are
  refused (to leave entry-point plugins out, set ``NDE_PLUGINS_DISABLE_ENTRY_POINTS=1`` or uninstall
  the package that provides them).

``NDE_PLUGINS_DISABLE_ENTRY_POINTS`` set to ``1``, ``true``, ``yes`` or ``on`` loads the built-ins only
(for reproducible runs or to rule out a broken third-party package); unset, empty, ``0``, ``false``,
``no`` or ``off`` loads entry points too. Case and surrounding spaces do not matter; any other value
raises ``PluginError`` at the first lookup instead of being guessed at.

Lookups take no lock: a table of registrations is replaced on every change, never modified, so a
reader always sees a whole state. Loading and (un)registering are serialized by one lock.
"""

from __future__ import annotations

import copyreg
import importlib
import importlib.metadata
import os
import reprlib
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pluggy

from . import hookspecs
from ._plugin_rules import (
    KINDS,
    LoadError,
    PluginConflictError,
    PluginError,
    PluginSource,
    PluginWarning,
    Registration,
    UnknownPluginNameError,
    _refuse_non_plugin,
    _Register,
    _suggest,
    check_plugin,
    refuse_hook_result,
)
from .tableaux import Tableau, TableauFamily

ENTRY_POINT_GROUP = "nde_plugins"
DISABLE_ENTRY_POINTS_ENV = "NDE_PLUGINS_DISABLE_ENTRY_POINTS"
DEFAULT_PLUGINS: tuple[str, ...] = (
    "nde_plugins.builtins.tableaux",
    "nde_plugins.builtins.regularizers",
    "nde_plugins.builtins.diffusions",
    "nde_plugins.builtins.end_times",
    "nde_plugins.builtins.schedules",
    "nde_plugins.builtins.adaption",
)


_DISABLE_SPELLINGS = ("1", "true", "yes", "on")
_ENABLE_SPELLINGS = ("", "0", "false", "no", "off")
def _entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=group))


def _entry_points_disabled_by(environ: Mapping[str, str]) -> bool:
    """What ``NDE_PLUGINS_DISABLE_ENTRY_POINTS`` asks for; an unknown spelling raises ``PluginError``.

    A typo must not silently load exactly the third-party plugins its author meant to rule out.
    """
    raw = environ.get(DISABLE_ENTRY_POINTS_ENV, "")
    value = raw.strip().lower()
    if value in _DISABLE_SPELLINGS:
        return True
    if value in _ENABLE_SPELLINGS:
        return False
    raise PluginError(
        f"{DISABLE_ENTRY_POINTS_ENV}={raw!r} is not understood; set it to one of {', '.join(_DISABLE_SPELLINGS)} "
        f"to load the built-in plugins only, or to one of {', '.join(_ENABLE_SPELLINGS[1:])} (or leave it unset "
        "or empty) to load entry-point plugins too; case and surrounding spaces do not matter"
    )


def _own_version() -> str:
    try:
        return importlib.metadata.version("nde_plugins")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        from . import __version__

        return __version__


def _default_name(plugin: Any) -> str:
    try:
        name = getattr(plugin, "__name__", None)
    except Exception:  # noqa: BLE001 - arbitrary objects may raise on attribute access
        name = None
    return name if isinstance(name, str) and name else f"{type(plugin).__name__}-{id(plugin):x}"


def _entry_point_source(ep: Any) -> PluginSource:
    dist = getattr(ep, "dist", None)
    dist_name = getattr(dist, "name", None)
    ep_name = getattr(ep, "name", None) or repr(ep)
    # Qualify by distribution: two packages may both call their entry point "tableaux".
    plugin_name = f"{dist_name}:{ep_name}" if dist_name else ep_name
    return PluginSource(plugin_name, "entry point", dist_name, getattr(dist, "version", None))


class Registry:
    """Plugins of every kind, by name. Thread-safe; loads on first use.

    Args:
        default_plugins: importable module names registered as built-ins.
        entry_point_group: the entry-point group scanned for third-party plugins.
        load_entry_points: whether to scan it; ``None`` reads ``NDE_PLUGINS_DISABLE_ENTRY_POINTS``.
        entry_points: the discovery function (tests pass fakes).
        reserved: names per kind that no plugin may take (torchdiffeq's method names for tableaux).
    """

    def __init__(
        self,
        default_plugins: Iterable[str] = DEFAULT_PLUGINS,
        entry_point_group: str = ENTRY_POINT_GROUP,
        load_entry_points: bool | None = None,
        entry_points: Callable[[str], list] = _entry_points,
        reserved: dict[str, Callable[[], Iterable[str]]] | None = None,
    ) -> None:
        if isinstance(default_plugins, str):
            raise TypeError(f"default_plugins takes module names, got the single str {default_plugins!r}; "
                            f"pass ({default_plugins!r},)")
        if load_entry_points not in (None, True, False):
            raise TypeError(f"load_entry_points must be True, False or None (None reads {DISABLE_ENTRY_POINTS_ENV}), "
                            f"got {load_entry_points!r}")
        self._default_plugins = tuple(default_plugins)
        self._group = entry_point_group
        self._load_entry_points = load_entry_points
        self._discover = entry_points
        self._reserved = reserved or {}
        self._lock = threading.RLock()
        self._loaded = False
        self._loading = False
        self._reset()

    def _reset(self) -> None:
        """Back to the state before loading: no plugin registered, no load error."""
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        # kind -> name -> registration; replaced on every change, never modified (see the module docstring)
        self._entries: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
        self._sources: dict[str, PluginSource] = {}  # plugin name -> source
        self._errors: list[LoadError] = []

    # -- loading -----------------------------------------------------------------------------------
    def load(self) -> None:
        """Register built-ins and (unless disabled) entry-point plugins. Idempotent.

        Loading always runs to the end: each skipped entry-point plugin is warned about
        (``PluginWarning``) only after every plugin was processed, so a filter that turns warnings
        into errors makes this call raise the first warning but leaves the registry complete. If
        anything else escapes (a failing built-in, an invalid ``NDE_PLUGINS_DISABLE_ENTRY_POINTS``,
        ``KeyboardInterrupt``), nothing stays registered and the next call loads afresh.
        """
        if self._loaded:  # the common case: no lock on the lookup path
            return
        with self._lock:
            # _loading: a plugin module that uses the registry while it is imported sees what is
            # registered so far instead of starting a second, recursive load.
            if self._loaded or self._loading:
                return
            self._loading = True
            try:
                self._load_all()
            except BaseException:
                self._reset()
                raise
            finally:
                self._loading = False
            self._loaded = True
            skipped = list(self._errors)
        for error in skipped:  # outside the lock: a warning handler may itself look plugins up
            warnings.warn(f"nde_plugins skipped {error.source}: {error.message}", PluginWarning, stacklevel=2)

    def _load_all(self) -> None:
        scan_entry_points = self._entry_points_enabled()  # first: a bad setting is refused before anything loads
        version = _own_version()
        for module_name in self._default_plugins:
            module = importlib.import_module(module_name)
            self._add(module, PluginSource(module_name, "built-in", "nde_plugins", version))
        if not scan_entry_points:
            return
        try:
            entry_points = list(self._discover(self._group))
        except Exception as exc:  # noqa: BLE001 - broken metadata of some installed package
            source = PluginSource(f"{self._group} entry points", "entry point")
            self._skip(source, f"listing the entry points of group {self._group!r} failed: {type(exc).__name__}: {exc}")
            return
        for ep in entry_points:
            self._load_entry_point(ep)

    def _entry_points_enabled(self) -> bool:
        if self._load_entry_points is not None:
            return self._load_entry_points
        return not _entry_points_disabled_by(os.environ)

    def _load_entry_point(self, ep: Any) -> None:
        source = _entry_point_source(ep)
        target = getattr(ep, "value", source.plugin)
        # SystemExit too: a third-party package calling sys.exit() must not end the caller's program.
        try:
            plugin = ep.load()
        except SystemExit as exc:
            self._skip(source, f"import of {target!r} called sys.exit({exc.code!r})")
            return
        except Exception as exc:  # noqa: BLE001 - any import failure of a third-party package
            self._skip(source, f"import of {target!r} failed: {type(exc).__name__}: {exc}")
            return
        try:
            self._add(plugin, source)
        except PluginError as exc:
            self._skip(source, str(exc))
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - _add wraps plugin failures; this is the backstop
            self._skip(source, f"registration failed: {type(exc).__name__}: {exc}")

    def _skip(self, source: PluginSource, message: str) -> None:
        # Only recorded here; load() warns once every plugin was processed. The errors raised by _add
        # start with the source, which LoadError carries on its own: the message keeps the reason only,
        # so that the warning, the CLI and anyone printing (source, message) name the plugin once.
        who = str(source)
        if message.startswith(who):
            message = message[len(who):].lstrip(":").lstrip() or message
        self._errors.append(LoadError(source, message))

    # -- registering -------------------------------------------------------------------------------
    def register_plugin(self, plugin: Any, name: str | None = None) -> str:
        """Register a plugin object (module, class or instance with hook implementations) now.

        Raises ``PluginError`` (or ``PluginConflictError``) if it is invalid; on error nothing of
        it stays registered. ``name`` defaults to the object's ``__name__``. Returns the plugin's
        name, for ``unregister_plugin``.
        """
        _refuse_non_plugin(plugin, "register_plugin(plugin)")
        if name is not None and (not isinstance(name, str) or not name):
            raise PluginError(f"register_plugin(plugin, name): name must be a non-empty str or None (to use the "
                              f"plugin's __name__), got {reprlib.repr(name)}")
        self.load()
        with self._lock:
            name = name or _default_name(plugin)
            self._add(plugin, PluginSource(name, "runtime"))
            return name

    def unregister_plugin(self, plugin_or_name: Any) -> None:
        """Remove a plugin registered with ``register_plugin`` and everything it contributed.

        Built-in and entry-point plugins are refused with ``PluginError``: they are part of the
        installation, not of the running program.
        """
        self.load()
        with self._lock:
            name = plugin_or_name if isinstance(plugin_or_name, str) else self._pm.get_name(plugin_or_name)
            source = self._sources.get(name) if name is not None else None
            if source is None:
                raise PluginError(f"no plugin {plugin_or_name!r} is registered; registered: {sorted(self._sources)}")
            if source.origin != "runtime":
                if source.origin == "entry point":
                    fix = ("to leave entry-point plugins out, set NDE_PLUGINS_DISABLE_ENTRY_POINTS=1 or uninstall the "
                           f"package that provides it ({source.distribution or 'unknown distribution'})")
                else:
                    fix = "built-in plugins are part of nde_plugins (a Registry(default_plugins=...) leaves them out)"
                raise PluginError(
                    f"cannot unregister {source}: only plugins registered at run time with register_plugin can be "
                    f"unregistered; {fix}"
                )
            self._pm.unregister(name=name)
            del self._sources[name]
            self._entries = {
                kind: {key: reg for key, reg in table.items() if reg.source.plugin != name}
                for kind, table in self._entries.items()
            }

    def _add(self, plugin: Any, source: PluginSource) -> None:
        """Check ``plugin``, register it with pluggy, run its hooks, commit its entries; all or nothing."""
        who = str(source)
        if self._pm.get_plugin(source.plugin) is not None:
            raise PluginConflictError(
                f"a plugin named {source.plugin!r} is already registered ({self._sources.get(source.plugin)})"
            )
        check_plugin(self._pm, plugin, who)
        try:
            other = self._pm.get_name(plugin)
        except Exception:  # noqa: BLE001 - the plugin's own __eq__ raised; pluggy.register reports it below
            other = None
        if other is not None:
            raise PluginConflictError(
                f"{who}: this plugin object is already registered as {other!r} ({self._sources.get(other)}); "
                "a plugin object can be registered only once"
            )
        try:
            self._pm.register(plugin, name=source.plugin)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"{who}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - pluggy inspects every attribute; anything may raise
            if self._pm.get_plugin(source.plugin) is not None:
                self._pm.unregister(name=source.plugin)
            raise PluginError(f"{who} could not be registered: {type(exc).__name__}: {exc}") from exc
        try:
            self._commit(self._run_hooks(plugin, source))
        except BaseException as exc:
            self._pm.unregister(name=source.plugin)
            if isinstance(exc, PluginError):
                raise
            if isinstance(exc, SystemExit):
                raise PluginError(f"{who} called sys.exit({exc.code!r}) inside its hook") from exc
            if isinstance(exc, Exception):
                raise PluginError(f"{who} failed inside its hook: {type(exc).__name__}: {exc}") from exc
            raise  # KeyboardInterrupt and the like are the user's, not the plugin's
        self._sources[source.plugin] = source

    def _run_hooks(self, plugin: Any, source: PluginSource) -> list[Registration]:
        staged: list[Registration] = []
        for kind, hook_name in KINDS.items():
            caller = getattr(self._pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                register = _Register(kind, source, staged)
                try:
                    result = impl.function(register=register)
                finally:
                    register.open = False
                if result is not None:
                    refuse_hook_result(result, hook_name, str(source))
        return staged

    def _commit(self, staged: list[Registration]) -> None:
        seen: dict[tuple[str, str], Registration] = {}
        for reg in staged:
            key = (reg.kind, reg.name)
            if key in seen:
                raise PluginConflictError(f"{reg.source} registers {reg.kind} {reg.name!r} twice")
            seen[key] = reg
            existing = self._entries[reg.kind].get(reg.name)
            if existing is not None:
                raise PluginConflictError(
                    f"{reg.kind} name {reg.name!r} is registered by both {existing.source} and {reg.source}; "
                    "plugin names must be unique: uninstall or rename one of them"
                )
            reserved = self._reserved.get(reg.kind)
            if reserved is not None and reg.name in set(reserved()):
                by = " by torchdiffeq" if reg.kind == "tableau" else ""
                raise PluginConflictError(
                    f"{reg.source} registers {reg.kind} {reg.name!r}, a name reserved{by}; rename it"
                )
        if not staged:
            return
        entries = {kind: dict(table) for kind, table in self._entries.items()}
        for reg in staged:
            entries[reg.kind][reg.name] = reg
        self._entries = entries  # one assignment: readers see the old tables or the new ones

    def check_pending(self) -> None:
        """Raise ``PluginError`` if any registered plugin breaks a rule (for example an unknown hook)."""
        self.load()
        with self._lock:
            for name, plugin in self._pm.list_name_plugin():
                check_plugin(self._pm, plugin, str(self._sources.get(name) or f"plugin {name!r}"))
            try:
                self._pm.check_pending()
            except pluggy.PluginValidationError as exc:
                raise PluginError(str(exc)) from exc

    # -- lookup ------------------------------------------------------------------------------------
    def _table(self, kind: str) -> dict[str, Registration]:
        if not isinstance(kind, str) or kind not in KINDS:
            suggestion = _suggest(kind, KINDS) if isinstance(kind, str) else ""
            raise ValueError(f"unknown plugin kind {kind!r}{suggestion}; kinds are {list(KINDS)}")
        self.load()
        return self._entries[kind]

    def find(self, kind: str, name: str) -> Registration | None:
        """The registration of ``name`` or None; a name that is not a str raises ``TypeError``."""
        table = self._table(kind)
        if not isinstance(name, str):
            raise TypeError(f"{kind} name must be a str, got {type(name).__name__} {reprlib.repr(name)}")
        return table.get(name)

    def get(self, kind: str, name: str, extra_names: Iterable[str] = ()) -> Any:
        """The object registered as ``name``; unknown names raise with did-you-mean suggestions."""
        reg = self.find(kind, name)
        if reg is None:
            known = sorted(self._table(kind))
            raise UnknownPluginNameError(
                f"unknown {kind} {name!r}{_suggest(name, [*known, *extra_names])} "
                f"(registered: {', '.join(known) or 'none'}; `nde-plugins plugins` lists them all)"
            )
        return reg.obj

    def names(self, kind: str) -> list[str]:
        """The registered names of one kind (a key of ``KINDS``, e.g. ``"tableau"``), sorted."""
        return sorted(self._table(kind))

    def registrations(self, kind: str | None = None) -> list[Registration]:
        """The registrations of one kind, or of every kind when ``kind`` is None; by kind, then name."""
        kinds = list(KINDS) if kind is None else [kind]
        return [reg for k in kinds for _, reg in sorted(self._table(k).items())]

    def describe(self, kind: str, name: str) -> str:
        """``kind`` and ``name`` with where the registration came from, for error messages; never raises.

        ``"step_regularizer 'foo' (from entry point plugin 'acme-dist:acme' (acme-dist 1.0))"``,
        ``"step_regularizer 'error_estimate' (built-in)"`` or ``"... (registered at run time by
        plugin 'x')"``; a name that is not registered gives ``"step_regularizer 'foo'"``. Only
        looks at what is registered now: it does not load plugins.
        """
        if not (isinstance(kind, str) and isinstance(name, str)):
            try:
                return f"{reprlib.repr(kind) if not isinstance(kind, str) else kind} {reprlib.repr(name)}"
            except Exception:  # noqa: BLE001 - an object whose repr raises; this must not
                return f"{type(kind).__name__} {type(name).__name__}"
        what = f"{kind} {name!r}"
        table = self._entries.get(kind)  # one dict lookup each: read lock-free, like every lookup
        reg = table.get(name) if table is not None else None
        if reg is None:
            return what
        source = reg.source
        if source.origin == "built-in":
            return f"{what} (built-in)"
        if source.origin == "runtime":
            return f"{what} (registered at run time by plugin {source.plugin!r})"
        return f"{what} (from {source})"

    def plugin_names(self) -> list[str]:
        """The names of the registered plugins (built-in, entry point and run time), sorted."""
        self.load()
        with self._lock:
            return sorted(self._sources)

    @property
    def load_errors(self) -> list[LoadError]:
        """The plugins skipped while loading, with the reason; empty when every plugin loaded."""
        self.load()
        with self._lock:
            return list(self._errors)


_registry: Registry | None = None
_registry_lock = threading.Lock()
#: kind -> a function listing names no plugin of that kind may take. Filled in by the modules that
#: own those names (the torchdiffeq glue reserves torchdiffeq's method names), so that the registry
#: never imports them.
_reserved_names: dict[str, Callable[[], Iterable[str]]] = {}


def reserve_names(kind: str, names: Callable[[], Iterable[str]]) -> None:
    """Reserve ``names()`` of ``kind`` in the process-wide registry (before its first lookup)."""
    if kind not in KINDS:
        raise ValueError(f"unknown plugin kind {kind!r}; kinds are {list(KINDS)}")
    _reserved_names[kind] = names


def get_registry() -> Registry:
    """The process-wide registry (created on first call; plugins load on first lookup)."""
    global _registry
    with _registry_lock:
        if _registry is None:
            _registry = Registry(reserved=_reserved_names)
        return _registry


def registered_tableau(name: str) -> Tableau | TableauFamily:
    """The tableau or family registered as ``name`` (how a pickled registered family is loaded again)."""
    return get_registry().get("tableau", name)


def _reduce_family(family: TableauFamily) -> Any:
    """Pickle and copy a registered family by its name: its domain rules and builder are often lambdas,
    which pickle cannot store, and a family is a value that the loading process registers too. An
    unregistered family is pickled as usual (it then needs picklable functions)."""
    registry = _registry
    reg = registry.find("tableau", family.name) if registry is not None and registry._loaded else None
    if reg is not None and reg.obj is family:
        return registered_tableau, (family.name,)
    return family.__reduce_ex__(4)


copyreg.pickle(TableauFamily, _reduce_family)


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Register a plugin object in the process-wide registry (see ``Registry.register_plugin``)."""
    return get_registry().register_plugin(plugin, name)


def unregister_plugin(plugin_or_name: Any) -> None:
    """Remove a plugin registered with ``register_plugin``; built-in and entry-point plugins are refused."""
    get_registry().unregister_plugin(plugin_or_name)
