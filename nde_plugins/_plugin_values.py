"""Every plugin argument of a block, read one way: a registered name, a spec with options, or a plugin object.

``end_time="steer"``, ``end_time="steer:b=0.5"`` and ``end_time=Steer(b=0.5)`` say the same
thing; so do ``schedule="smoothing:sigma=0.02"`` and a schedule object, ``diffusion="dropout:p=0.9"``
and a ``Diffusion`` module, and a regularizer's name, spec or instance as a key of ``regularizers``.
Options may also come as the separate ``*_options`` dict; an option given both ways must agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .contract import ContractError, build_plugin
from .plugins import get_registry
from .specs import parse_spec

#: How messages call each kind.
_LABELS = {"diffusion": "diffusion", "end_time_sampler": "end time", "step_regularizer": "regularizer",
           "solver_schedule": "schedule"}


def plugin_label(kind: str, name: str) -> str:
    """``"regularizer 'error_estimate'"``, plus the distribution that ships a third-party plugin."""
    label = f"{_LABELS.get(kind, kind)} {name!r}"
    reg = get_registry().find(kind, name)
    if reg is not None and reg.source.origin == "entry point":
        label += f" (from {reg.source})"
    return label


def object_label(kind: str, obj: Any) -> str:
    """How messages name a plugin given as an object: its kind and class."""
    return f"{_LABELS.get(kind, kind)} {type(obj).__name__}"


def split_plugin_arg(kind: str, value: str, options: Mapping[str, Any] | None, argument: str,
                     example: str) -> tuple[str, Callable[..., Any], dict[str, Any]]:
    """A name or spec as ``(name, registered factory, options)``: the spec's options merged with ``options``."""
    try:
        name, from_spec = parse_spec(value, _LABELS.get(kind, kind), example)
    except ValueError as exc:  # name the argument the malformed spec was given as
        raise ValueError(f"{argument}: {exc}") from None
    factory = get_registry().get(kind, name)
    merged = dict(options or {})
    for key, option in from_spec.items():
        if key in merged and merged[key] != option:
            raise ValueError(f"{argument}: option {key!r} is given both in the spec {value!r} ({option!r}) and in "
                             f"{argument}_options ({merged[key]!r}); give it once")
        merged[key] = option
    return name, factory, merged


def plugin_from(kind: str, value: Any, options: Mapping[str, Any] | None, owner: str, argument: str,
                example: str, is_plugin: Callable[[Any], bool], *leading: Any) -> tuple[str, Any]:
    """``(label, plugin)`` for a name, spec or object given as ``argument``; options checked, factory called.

    ``is_plugin(value)`` says whether a non-string value is a plugin object of this kind; an object
    comes with no options (they are its constructor's). ``leading`` are the factory's positional
    arguments (a diffusion's drift).
    """
    if options is not None and not isinstance(options, Mapping):
        raise TypeError(f"{owner}: {argument}_options must be a dict of options, got {type(options).__name__}")
    if isinstance(value, str):
        name, factory, merged = split_plugin_arg(kind, value, options, argument, example)
        label = plugin_label(kind, name)
        return label, build_plugin(label, factory, merged, *leading)
    if options:
        raise ValueError(f"{owner}: {argument}_options apply when {argument} is given by name or spec; an object "
                         f"{argument} takes its options in its own constructor")
    if not is_plugin(value):
        raise TypeError(f"{owner}: {argument} must be a registered name, a spec like {example!r} or a plugin object, "
                        f"got {type(value).__name__}")
    return object_label(kind, value), value


__all__ = ["ContractError", "object_label", "plugin_from", "plugin_label", "split_plugin_arg"]
