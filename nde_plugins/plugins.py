"""The plugin registry: built-ins and entry-point plugins, loaded lazily and once, looked up by name.

Built-in plugins are modules listed in ``DEFAULT_PLUGINS`` and go through exactly the same hooks as
third-party ones. Every hook implementation is called on its own, with a ``register`` callback that
stages what the plugin contributes; the staged entries are committed only if the whole hook ran
cleanly and none of its names is taken, so a failing plugin leaves no half-registered state.

Failure policy:
- a built-in plugin that fails is a bug and raises;
- an entry-point plugin that fails to import, implements an unknown hook, raises inside its hook,
  registers something invalid or takes a name already taken is skipped with a ``PluginWarning``
  and listed in ``Registry.load_errors`` (and by ``nde-plugins plugins``); everything else loads;
- a plugin registered at run time with ``register_plugin`` raises, since its author is right there.

Set ``NDE_PLUGINS_DISABLE_ENTRY_POINTS=1`` to load the built-ins only (for reproducible runs or
to rule out a broken third-party package).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import threading
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from . import hookspecs
from .tableaux import Tableau, TableauFamily

ENTRY_POINT_GROUP = "nde_plugins"
DISABLE_ENTRY_POINTS_ENV = "NDE_PLUGINS_DISABLE_ENTRY_POINTS"
DEFAULT_PLUGINS: tuple[str, ...] = (
    "nde_plugins.tableaux.builtin",
    "nde_plugins.regularizers",
    "nde_plugins.diffusions",
)

#: plugin kind -> the hook that contributes it
KINDS: dict[str, str] = {
    "tableau": "register_tableaux",
    "diffusion": "register_diffusions",
    "end_time_sampler": "register_end_time_samplers",
    "step_regularizer": "register_step_regularizers",
    "solver_schedule": "register_solver_schedules",
}


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
    message: str


def _validate_tableau(obj: Any) -> str:
    if not isinstance(obj, (Tableau, TableauFamily)):
        raise TypeError(f"register_tableaux: register() takes a Tableau or TableauFamily, got {type(obj).__name__}")
    return obj.name


def _validate_factory(kind: str) -> Callable[[Any, Any], str]:
    def check(name: Any, factory: Any) -> str:
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"{KINDS[kind]}: register(name, factory) needs an identifier name, got {name!r}")
        if not callable(factory):
            raise TypeError(f"{KINDS[kind]}: the factory registered as {name!r} is not callable")
        return name

    return check


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=group))


def _own_version() -> str:
    try:
        return importlib.metadata.version("nde_plugins")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        from . import __version__

        return __version__


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
        self._default_plugins = tuple(default_plugins)
        self._group = entry_point_group
        self._load_entry_points = load_entry_points
        self._discover = entry_points
        self._reserved = reserved or {}
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._entries: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
        self._sources: dict[str, PluginSource] = {}  # plugin name -> source
        self._errors: list[LoadError] = []
        self._loaded = False
        self._lock = threading.RLock()

    # -- loading -----------------------------------------------------------------------------------
    def load(self) -> None:
        """Register built-ins and (unless disabled) entry-point plugins. Idempotent."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True  # set first: a plugin importing nde_plugins must not re-enter
            version = _own_version()
            for module_name in self._default_plugins:
                module = importlib.import_module(module_name)
                self._add(module, PluginSource(module_name, "built-in", "nde_plugins", version))
            if self._entry_points_enabled():
                for ep in self._discover(self._group):
                    self._load_entry_point(ep)

    def _entry_points_enabled(self) -> bool:
        if self._load_entry_points is not None:
            return self._load_entry_points
        return os.environ.get(DISABLE_ENTRY_POINTS_ENV, "").strip().lower() not in {"1", "true", "yes", "on"}

    def _load_entry_point(self, ep: Any) -> None:
        dist = getattr(ep, "dist", None)
        dist_name = getattr(dist, "name", None)
        # Qualify by distribution: two packages may both call their entry point "tableaux".
        plugin_name = f"{dist_name}:{ep.name}" if dist_name else ep.name
        source = PluginSource(plugin_name, "entry point", dist_name, getattr(dist, "version", None))
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure of a third-party package
            self._skip(source, f"import of {ep.value!r} failed: {type(exc).__name__}: {exc}")
            return
        try:
            self._add(plugin, source)
        except PluginError as exc:
            self._skip(source, str(exc))

    def _skip(self, source: PluginSource, message: str) -> None:
        self._errors.append(LoadError(source, message))
        warnings.warn(f"nde_plugins skipped {source}: {message}", PluginWarning, stacklevel=4)

    # -- registering -------------------------------------------------------------------------------
    def register_plugin(self, plugin: Any, name: str | None = None) -> str:
        """Register a plugin object (module, class or instance with hook implementations) now.

        Raises ``PluginError`` (or ``PluginConflictError``) if it is invalid; on error nothing of
        it stays registered. Returns the plugin's name, for ``unregister_plugin``.
        """
        self.load()
        with self._lock:
            name = name or getattr(plugin, "__name__", None) or f"{type(plugin).__name__}-{id(plugin):x}"
            self._add(plugin, PluginSource(name, "runtime"))
            return name

    def unregister_plugin(self, plugin_or_name: Any) -> None:
        """Remove a plugin registered with ``register_plugin`` and everything it contributed."""
        with self._lock:
            if isinstance(plugin_or_name, str):
                name = plugin_or_name
            else:
                name = self._pm.get_name(plugin_or_name)
            if name is None or self._pm.get_plugin(name) is None:
                raise PluginError(f"no plugin {plugin_or_name!r} is registered; registered: {self.plugin_names()}")
            self._pm.unregister(name=name)
            self._sources.pop(name, None)
            for table in self._entries.values():
                for key in [k for k, reg in table.items() if reg.source.plugin == name]:
                    del table[key]

    def _add(self, plugin: Any, source: PluginSource) -> None:
        """Register ``plugin`` with pluggy, run its hooks, commit its entries; all or nothing."""
        if self._pm.get_plugin(source.plugin) is not None:
            raise PluginConflictError(
                f"a plugin named {source.plugin!r} is already registered ({self._sources.get(source.plugin)})"
            )
        self._check_pending_for(plugin, str(source))
        try:
            self._pm.register(plugin, name=source.plugin)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"{source}: {exc}") from exc
        try:
            self._commit(self._run_hooks(plugin, source))
        except Exception as exc:
            self._pm.unregister(name=source.plugin)
            if isinstance(exc, PluginError):
                raise
            raise PluginError(f"{source} failed inside its hook: {type(exc).__name__}: {exc}") from exc
        self._sources[source.plugin] = source

    def _check_pending_for(self, plugin: Any, who: str) -> None:
        for hook_name in self._hook_names_of(plugin):
            if hook_name not in KINDS.values():
                raise PluginError(
                    f"{who} implements unknown hook {hook_name!r}{_suggest(hook_name, KINDS.values())} "
                    f"(known hooks: {', '.join(KINDS.values())})"
                )

    def _hook_names_of(self, plugin: Any) -> list[str]:
        names = []
        for attr in dir(plugin):
            try:
                value = getattr(plugin, attr)
            except Exception:  # noqa: BLE001 - properties of arbitrary objects may raise
                continue
            if self._pm.parse_hookimpl_opts(plugin, attr) is not None and callable(value):
                names.append(attr)
        return names

    def _run_hooks(self, plugin: Any, source: PluginSource) -> list[Registration]:
        staged: list[Registration] = []
        for kind, hook_name in KINDS.items():
            caller = getattr(self._pm.hook, hook_name)
            for impl in caller.get_hookimpls():
                if impl.plugin is not plugin:
                    continue
                validate = _validate_tableau if kind == "tableau" else _validate_factory(kind)

                def register(obj: Any, factory: Any = None, *, _kind=kind, _validate=validate) -> None:
                    if _kind == "tableau":
                        if factory is not None:
                            raise TypeError("register_tableaux: register() takes one Tableau or TableauFamily")
                        name = _validate(obj)
                        staged.append(Registration(_kind, name, obj, source))
                    else:
                        name = _validate(obj, factory)
                        staged.append(Registration(_kind, name, factory, source))

                impl.function(register=register)
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
                raise PluginConflictError(
                    f"{reg.source} registers {reg.kind} {reg.name!r}, a name reserved by torchdiffeq; rename it"
                )
        for reg in staged:
            self._entries[reg.kind][reg.name] = reg

    def check_pending(self) -> None:
        """Raise ``PluginError`` if any registered plugin implements a hook that does not exist."""
        with self._lock:
            for name, plugin in self._pm.list_name_plugin():
                self._check_pending_for(plugin, f"plugin {name!r}")
            self._pm.check_pending()

    # -- lookup ------------------------------------------------------------------------------------
    def _table(self, kind: str) -> dict[str, Registration]:
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}{_suggest(kind, KINDS)}; kinds are {list(KINDS)}")
        self.load()
        return self._entries[kind]

    def find(self, kind: str, name: str) -> Registration | None:
        """The registration of ``name`` or None."""
        return self._table(kind).get(name)

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
        return sorted(self._table(kind))

    def registrations(self, kind: str | None = None) -> list[Registration]:
        kinds = [kind] if kind else list(KINDS)
        return [reg for k in kinds for _, reg in sorted(self._table(k).items())]

    def plugin_names(self) -> list[str]:
        self.load()
        return sorted(self._sources)

    @property
    def load_errors(self) -> list[LoadError]:
        self.load()
        return list(self._errors)


_registry: Registry | None = None
_registry_lock = threading.Lock()


def get_registry() -> Registry:
    """The process-wide registry (created on first call; plugins load on first lookup)."""
    global _registry
    with _registry_lock:
        if _registry is None:
            from ._torchdiffeq import torchdiffeq_method_names

            _registry = Registry(reserved={"tableau": torchdiffeq_method_names})
        return _registry


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Register a plugin object in the process-wide registry (see ``Registry.register_plugin``)."""
    return get_registry().register_plugin(plugin, name)


def unregister_plugin(plugin_or_name: Any) -> None:
    """Remove a plugin registered with ``register_plugin``."""
    get_registry().unregister_plugin(plugin_or_name)
