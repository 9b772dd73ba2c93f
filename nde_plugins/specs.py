"""The one spec grammar: ``NAME`` or ``NAME:key=value,...``, for every plugin kind, in the API and the CLI.

``"rk4_uv:u=0.3,v=0.7"``, ``"steer:b=0.5"``, ``"smoothing:sigma=0.0125"`` and
``"error_estimate:weight=0.1"`` are all read by ``split_spec``; values are read by
``option_value`` (``true``/``false``, a finite number, or a word). A method spec keeps its
stricter rule (every value a number: they are a family's parameters) in ``parse_method_spec``.

This module imports nothing of the library: the registry, the blocks and the CLI all use it.
"""

from __future__ import annotations

import math
from typing import Any


def split_spec(spec: str, what: str = "plugin", example: str = "NAME:option=V", key_word: str = "key",
               noun: str = "option", *, quote: bool = True) -> tuple[str, dict[str, str]]:
    """``"name:key=value,..."`` as ``(name, {key: raw value string})``.

    Raises ``TypeError`` for a non-string and ``ValueError`` naming the malformed part: an empty
    name, a ':' with nothing after it, an empty part between commas, a part that is not
    ``key=value`` or a key given twice. ``what``, ``example``, ``key_word`` and ``noun`` word the messages.
    ``quote=False`` leaves the spec itself out of them, for a caller that quotes it already (the
    command line's "argument --regularizer: 'SPEC': no regularizer name; ...").
    """
    if not isinstance(spec, str):
        raise TypeError(f"a {what} spec is a string NAME or NAME:option=value,...; got {type(spec).__name__}")
    quoted = f"{what} spec {spec!r}"
    name, colon, rest = spec.partition(":")
    name = name.strip()
    if not name:
        problem = f"{quoted} has no name" if quote else f"no {what} name"
        raise ValueError(f"{problem}; write NAME or NAME:option=V, e.g. {example}")
    if not colon:
        return name, {}
    has = f"{quoted} has " if quote else ""
    if not rest.strip():
        raise ValueError(f"{has}a ':' but nothing after it (no {noun}s); write {name} or {name}:{key_word}=V")
    raw: dict[str, str] = {}
    for part in (p.strip() for p in rest.split(",")):
        if not part:
            raise ValueError(f"{has}an empty {noun} between commas; write {name}:a=1,b=2")
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{quoted + ': ' if quote else ''}{part!r} is not {key_word}=value")
        if key in raw:
            raise ValueError(f"{quoted} gives {key!r} twice" if quote else f"{key!r} is given twice")
        raw[key] = value.strip()
    return name, raw


def option_value(text: str) -> bool | float | str:
    """An option value written in a spec: ``true``/``false``, a finite number, or a word."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        number = float(text)
    except ValueError:
        return text.strip()
    if not math.isfinite(number):
        raise ValueError(f"option values must be finite numbers, true/false or words, got {text.strip()!r}")
    return number


def parse_spec(spec: str, what: str = "plugin", example: str = "NAME:option=V") -> tuple[str, dict[str, Any]]:
    """``"steer:b=0.5,per_sample=true"`` as ``("steer", {"b": 0.5, "per_sample": True})``."""
    name, raw = split_spec(spec, what, example)
    return name, {key: option_value(value) for key, value in raw.items()}


def parse_method_spec(spec: str) -> tuple[str, dict[str, float]]:
    """Split ``"rk4_uv:u=0.3,v=0.7"`` into ``("rk4_uv", {"u": 0.3, "v": 0.7})``.

    A plain name gives no parameters. Raises ``ValueError`` naming the malformed part; every value
    must be a number (a family's parameters).
    """
    if not isinstance(spec, str):
        raise TypeError(f"a method spec is a string NAME or NAME:param=value,...; got {type(spec).__name__}")
    name, raw = split_spec(spec, "method", "rk4_uv:u=0.3,v=0.7", key_word="param", noun="parameter")
    params: dict[str, float] = {}
    for key, value in raw.items():
        try:
            params[key] = float(value)
        except ValueError:
            raise ValueError(f"method spec {spec!r}: value of {key!r} is not a number: {value!r}") from None
    return name, params


__all__ = ["option_value", "parse_method_spec", "parse_spec", "split_spec"]
