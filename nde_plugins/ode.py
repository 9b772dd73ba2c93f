"""``odeint`` over torchdiffeq, accepting registered names, method specs, tableaux and families."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torchdiffeq

from . import _torchdiffeq
from .plugins import UnknownPluginNameError, get_registry
from .tableaux import Tableau, TableauFamily

MethodLike = str | Tableau | TableauFamily


def torchdiffeq_method_names() -> frozenset[str]:
    """torchdiffeq's own method names (reserved: no plugin may take them)."""
    return _torchdiffeq.torchdiffeq_method_names()


def parse_method_spec(spec: str) -> tuple[str, dict[str, float]]:
    """Split ``"rk4_uv:u=0.3,v=0.7"`` into ``("rk4_uv", {"u": 0.3, "v": 0.7})``.

    A plain name gives no parameters. Raises ``ValueError`` naming the malformed part.
    """
    name, _, rest = spec.partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"method spec {spec!r} has no name; write NAME or NAME:param=value,...")
    params: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"method spec {spec!r}: {part!r} is not param=value")
        if key in params:
            raise ValueError(f"method spec {spec!r} gives {key!r} twice")
        try:
            params[key] = float(value)
        except ValueError:
            raise ValueError(f"method spec {spec!r}: value of {key!r} is not a number: {value!r}") from None
    return name, params


def resolve_method(method: MethodLike, options: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The torchdiffeq method name and options that select ``method``.

    ``method`` may be a torchdiffeq name, a registered tableau or family name, a spec
    ``"name:param=value,..."``, a ``Tableau`` or a ``TableauFamily`` (parameters in ``options``).
    Unknown names raise ``UnknownPluginNameError`` with suggestions.
    """
    table = _torchdiffeq.install()
    options = dict(options or {})
    if isinstance(method, (Tableau, TableauFamily)):
        reg = get_registry().find("tableau", method.name)
        if reg is not None and (reg.obj is method or reg.obj == method):
            return method.name, options
        return table.add_adhoc(method), options
    if not isinstance(method, str):
        raise TypeError(
            f"method must be a name, a 'name:param=value' spec, a Tableau or a TableauFamily; "
            f"got {type(method).__name__}"
        )
    name, params = parse_method_spec(method)
    for key, value in params.items():
        if key in options and options[key] != value:
            raise ValueError(f"parameter {key!r} is given both in the method spec ({value}) and in options "
                             f"({options[key]}); give it once")
        options[key] = value
    if name in table.builtin_names:
        if params:
            raise ValueError(f"torchdiffeq's method {name!r} takes no parameters; got {sorted(params)}")
        return name, options
    get_registry().get("tableau", name, extra_names=table.builtin_names)  # raises with suggestions
    return name, options


def odeint(
    func: Callable[..., Any],
    y0: torch.Tensor | tuple[torch.Tensor, ...],
    t: torch.Tensor,
    *,
    method: MethodLike = "dopri5",
    rtol: float | torch.Tensor = 1e-7,
    atol: float | torch.Tensor = 1e-9,
    options: Mapping[str, Any] | None = None,
    adjoint: bool = False,
    **kwargs: Any,
) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Solve dy/dt = func(t, y) with torchdiffeq, with any registered or given method.

    Same semantics, arguments and return value as ``torchdiffeq.odeint`` (or
    ``torchdiffeq.odeint_adjoint`` with ``adjoint=True``; then ``adjoint_*`` keyword arguments are
    passed on). ``method`` is resolved by ``resolve_method``; ``options`` holds torchdiffeq's solver
    options and a family's parameters.
    """
    name, opts = resolve_method(method, options)
    adjoint_kwargs = sorted(k for k in kwargs if k.startswith("adjoint_"))
    if adjoint_kwargs and not adjoint:
        raise ValueError(f"{adjoint_kwargs} only apply with adjoint=True")
    if adjoint:
        if kwargs.get("adjoint_method") is not None:
            given = kwargs.get("adjoint_options")
            adj_name, adj_opts = resolve_method(kwargs["adjoint_method"], given)
            kwargs["adjoint_method"] = adj_name
            if adj_opts or given is not None:
                kwargs["adjoint_options"] = adj_opts
        return torchdiffeq.odeint_adjoint(func, y0, t, rtol=rtol, atol=atol, method=name, options=opts, **kwargs)
    return torchdiffeq.odeint(func, y0, t, rtol=rtol, atol=atol, method=name, options=opts, **kwargs)


__all__ = ["MethodLike", "UnknownPluginNameError", "odeint", "parse_method_spec", "resolve_method"]
