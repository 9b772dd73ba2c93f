"""The plugin specs of ``train``: ``--regularizer``, ``--end-time`` and ``--schedule``.

Each is ``NAME[:key=value,...]`` in the one spec grammar of ``nde_plugins.specs``; what is read here
is what the keys mean: a regularizer's weight or annealing, the block's own end-time flags, a
schedule's '|'-separated lists. Every spec is checked fully (the plugin is built once) and raises
``ValueError`` naming the malformed part; the command line quotes the spec itself.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from .. import get_registry
from .._plugin_values import plugin_label
from .._regularization import ExponentialAnnealing, build_regularizers
from ..contract import build_plugin
from ..experiments.tasks import default_weights
from ..specs import option_value, split_spec
from ._usage import one_line

#: Keys of a --regularizer spec that set the weight rather than an option of the regularizer.
WEIGHT_KEYS = ("weight", "start", "end")
#: --schedule options that take several values, separated by '|'.
_LIST_OPTIONS = {"members": str, "probs": float, "weights": float}


def _read(spec: str, kind: str, what: str, example: str) -> tuple[str, Callable[..., Any], dict[str, str]]:
    """``NAME[:key=value,...]`` as (name, the registered factory of ``kind``, raw option strings).

    A malformed spec is refused first, then an unknown name (with suggestions).
    """
    name, raw = split_spec(spec, what, example, quote=False)
    return name, get_registry().get(kind, name), raw


def required_options(factory: Callable[..., Any]) -> set[str]:
    """The keyword arguments ``factory`` cannot do without (none known for a builtin or C callable)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: let the factory itself decide
        return set()
    return {p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _weight(key: str, text: str, zero_allowed: bool) -> float:
    """A weight (finite, >= 0) or an annealing end point (finite, > 0)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_allowed):
        raise ValueError(f"{key} must be a finite number {'>= 0' if zero_allowed else '> 0'}, got {text.strip()!r}")
    return value


def read_regularizer(spec: str, epochs: int, task: str = "digits") -> tuple[str, dict[str, Any]]:
    """``NAME[:weight=W,opt=V,...]`` or ``NAME:start=A,end=B`` as ``(name, {"weight": ..., **options})``.

    ``start=A,end=B`` anneals the weight exponentially over ``epochs``; without a weight the task's
    default weight (``tasks.default_weights(task)``) is taken. The regularizer is built once to check
    its options.
    """
    name, factory, raw = _read(spec, "step_regularizer", "regularizer", "error_estimate:weight=0.1")
    weight: float | ExponentialAnnealing
    if "start" in raw or "end" in raw:
        if "weight" in raw or not ("start" in raw and "end" in raw):
            raise ValueError("give weight=W, or start=A,end=B for annealing")
        start, end = _weight("start", raw.pop("start"), False), _weight("end", raw.pop("end"), False)
        weight = ExponentialAnnealing(start, end, epochs)
    elif "weight" in raw:
        weight = _weight("weight", raw.pop("weight"), True)
    elif name in default_weights(task):
        weight = default_weights(task)[name]
    else:
        raise ValueError(f"no weight given and {name!r} has no default; write {name}:weight=W")
    options = {key: option_value(value) for key, value in raw.items()}
    # Built once: its options against its signature, then its own checks of their values.
    build_plugin(plugin_label("step_regularizer", name), factory, options, also="weight=W or start=A,end=B")
    build_regularizers({name: {"weight": weight, **options}})  # the weight's rules
    return name, {"weight": weight, **options}


def read_end_time(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME[:option=V,...]`` as ``(name, options)`` for ``ODEBlock(end_time=name, end_time_options=options)``.

    ``per_sample`` and ``synchronized`` are the block's flags, kept only when true; the sampler is
    built once to check its values (whether ``b`` fits the block's interval is checked with the block).
    """
    name, factory, raw = _read(spec, "end_time_sampler", "end-time sampler", "steer:b=0.5")
    options = {key: option_value(value) for key, value in raw.items()}
    # per_sample (one draw per sample) and synchronized (one draw for every rank) are the block's options,
    # not the sampler's.
    flags = {key: options.pop(key, False) for key in ("per_sample", "synchronized")}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, got {value!r}")
    missing = required_options(factory) - set(options)
    if missing:
        raise ValueError(f"end time {name!r} needs {', '.join(sorted(missing))}; write "
                         f"{name}:{','.join(f'{key}=V' for key in sorted(missing))}")
    # Built once: its options, then its own checks of the values (b > 0, ...); b against t comes later.
    build_plugin(plugin_label("end_time_sampler", name), factory, options,
                 also="per_sample=true|false, synchronized=true|false")
    return name, options | {key: True for key, value in flags.items() if value}


def _finite_number(key: str, text: str) -> float:
    value = option_value(text)
    if isinstance(value, bool) or not isinstance(value, float):
        raise ValueError(f"{key} values must be numbers, got {text!r}")
    return value


def read_schedule(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME[:option=V,...]`` as ``(name, options)``; lists with '|'.

    ``switching:u=0.5|0.5125|0.4875`` gives one member per value of the family parameter u
    (several parameters are paired in order), ``members=rk4_classic|rk38`` names methods,
    ``probs=0.5|0.25|0.25`` and ``weights=...`` are numbers. The schedule is built once to check
    its values; its members are checked against the method with the block.
    """
    name, factory, raw = _read(spec, "solver_schedule", "schedule", "smoothing:sigma=0.0125")
    options: dict[str, Any] = {}
    columns: dict[str, list[float]] = {}  # family parameter -> one value per member
    for key, value in raw.items():
        items = [item.strip() for item in value.split("|")]
        if key in _LIST_OPTIONS:
            options[key] = [_LIST_OPTIONS[key](item) for item in items] if _LIST_OPTIONS[key] is str else [
                _finite_number(key, item) for item in items]
        elif "|" in value:
            columns[key] = [_finite_number(key, item) for item in items]
        else:
            options[key] = option_value(value)
    if columns:
        lengths = {len(values) for values in columns.values()}
        if len(lengths) != 1:
            raise ValueError(f"the parameter lists {sorted(columns)} must have the same number of values")
        members = [dict(zip(columns, values)) for values in zip(*columns.values())]
        options["members"] = members + list(options.get("members", []))
    build_plugin(plugin_label("solver_schedule", name), factory, options)
    return name, options


def _quoted(flag: str, read: Callable[[], tuple[str, dict[str, Any]]], spec: str) -> tuple[str, dict[str, Any]]:
    """``read()``, its refusal raised again as a ``ValueError`` that names ``flag`` and ``spec``."""
    try:
        return read()
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{flag} {spec!r}: {one_line(exc)}") from exc


def parse_regularizer(spec: str, epochs: int) -> tuple[str, dict[str, Any]]:
    """``NAME[:weight=W,opt=V,...]`` or ``NAME:start=A,end=B`` (exponential annealing over the epochs).

    Returns ``(name, {"weight": weight, **options})``; a bad spec raises ``ValueError`` naming it.
    """
    return _quoted("--regularizer", lambda: read_regularizer(spec, epochs), spec)


def parse_end_time(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME[:option=V,...]``, e.g. ``steer:b=0.5`` or ``steer:b=0.5,per_sample=true``.

    Returns ``(name, options)`` for ``ODEBlock(end_time=name, end_time_options=options)``; a bad
    spec raises ``ValueError`` naming it. Whether ``b`` fits the block's interval is checked when a
    block is built.
    """
    return _quoted("--end-time", lambda: read_end_time(spec), spec)
