"""The ``nde-plugins`` command: list plugins, inspect tableaux, solve a test problem, train on a task.

Every bad command line ends the same way: exit status 2 and one line on stderr that names the
argument, the rule it broke and, where there is one, the fix. Numbers are checked by the argument
types below as they are parsed; names and specs are looked up in the registry as they are parsed;
rules that tie several arguments together are checked before any solve or training starts.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import difflib
import importlib.metadata
import importlib.util
import inspect
import json
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from . import get_registry, get_tableau, odeint, parse_method_spec, resolve_method, torchdiffeq_method_names
from ._checks import check_factory_options
from ._torchdiffeq import is_fixed_grid
from .plugins import KINDS, PluginError
from .regularizers import ExponentialAnnealing, build_regularizers
from .tableaux import Tableau, TableauFamily

STIFFNESS_DEFAULT_WEIGHT = 0.0285

#: Step of `solve` for a fixed-grid method when --step-size is not given (clipped to |T|).
DEFAULT_STEP_SIZE = 0.1
#: `solve` refuses a fixed grid with more steps than this: more take minutes and gigabytes, and on [0, 2*pi]
#: a step of 1e-4 (63,000 RK4 steps) already reaches the float64 rounding floor.
MAX_FIXED_STEPS = 100_000
#: torch seeds are 64-bit integers; `train` uses seeds --seed .. --seed + --seeds - 1.
MAX_SEED = 2**63 - 1
#: Significant digits a float64 can carry; more only prints rounding noise.
MAX_PRECISION = 17
#: `tableau --sweep` draws at most this many members: more curves overlap into an unreadable figure.
MAX_SWEEP = 16
#: Figure formats --plot writes (matplotlib picks the format from the suffix).
PLOT_SUFFIXES = (".png", ".pdf", ".svg")


# ------------------------------------------------------------------------------------------------
# One-line errors


class UsageError(Exception):
    """A bad command line. The message names the argument and the rule; ``main`` prints it on one line."""

    def __init__(self, message: str, prog: str | None = None) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse, but a parse error is one line (no usage block) and is left to ``main`` to print."""

    def error(self, message: str):  # type: ignore[override]
        if message.endswith("expected one argument"):
            # argparse takes '-inf' or '-1e3' for an option; only '-1' and '-0.5' pass as negative numbers.
            message += "; write a value that starts with '-' as --option=VALUE"
        raise UsageError(f"{message} (see {self.prog} --help)", prog=self.prog)


def _one_line(exc: BaseException) -> str:
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


# What the library raises for a value it refuses. TypeError is only treated as the user's error where a
# value from the command line is handed over (``_argument``); elsewhere it is a bug and propagates.
# UnknownPluginNameError is a ValueError; other LookupErrors (KeyError, IndexError) are bugs too.
_LIBRARY_ERRORS = (ValueError, PluginError, FloatingPointError)
_VALUE_ERRORS = (ValueError, TypeError, PluginError)


@contextlib.contextmanager
def _argument(name: str) -> Iterator[None]:
    """Turn the library's refusal of a value taken from argument ``name`` into a ``UsageError`` naming it."""
    try:
        yield
    except UsageError:
        raise
    except _VALUE_ERRORS as exc:
        raise UsageError(f"argument {name}: {_one_line(exc)}") from exc


def _as_argument_type(check: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse ``type=``: the library's refusal becomes argparse's 'argument NAME: message'."""

    def convert(text: str):
        try:
            return check(text)
        except argparse.ArgumentTypeError:
            raise
        except _VALUE_ERRORS as exc:
            raise argparse.ArgumentTypeError(_one_line(exc)) from exc

    convert.__name__ = check.__name__
    return convert


# ------------------------------------------------------------------------------------------------
# Argument types


def _finite(text: str, rule: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number {rule}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (step sizes, tolerances, learning rates)."""
    value = _finite(text, "> 0")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def nonzero_float(text: str) -> float:
    """A finite number other than 0 (the end time: a negative one integrates backward)."""
    value = _finite(text, "other than 0")
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be a finite number other than 0, got {text!r}: [0, 0] is no interval")
    return value


def _whole(low: int, high: int | None = None, high_text: str = "") -> Callable[[str], int]:
    rule = f"in [{low}, {high_text or high}]" if high is not None else f">= {low}"

    def whole_number(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number {rule}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a whole number {rule}, got {text!r}")
        return value

    return whole_number


positive_int = _whole(1)


def stiffness_ratio(text: str) -> float:
    """A finite number > 1 (the fast rate r of the stiff toy against its slow rate 1)."""
    value = _finite(text, "> 1")
    if value <= 1:
        raise argparse.ArgumentTypeError(
            f"must be a finite number > 1, got {text!r}: r is the fast decay rate against the slow rate 1 "
            "(the paper uses 1000)"
        )
    return value


@_as_argument_type
def method_spec(text: str) -> str:
    """A torchdiffeq method name, a registered tableau or family, or a spec ``NAME:param=value,...``."""
    name, _ = parse_method_spec(text)
    if name not in torchdiffeq_method_names():
        get_tableau(text)  # first: names the family's parameters and checks its domain rules
    resolve_method(text)
    return text


@_as_argument_type
def tableau_spec(text: str) -> str:
    """A registered tableau or family name, or a family spec ``NAME:param=value,...``."""
    get_tableau(text)
    return text


def family_param(text: str) -> tuple[str, float]:
    """``NAME=VALUE`` with a finite number."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {value.strip()!r} is not a number") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"{text!r}: the value must be a finite number, got {value.strip()!r}")
    return key, number


def sweep_range(text: str) -> tuple[str, list[float]]:
    """``PARAM=START:STOP:N``: N evenly spaced values from START to STOP (both included), N in [2, MAX_SWEEP]."""
    key, sep, rest = text.partition("=")
    key, parts = key.strip(), rest.split(":")
    if not sep or not key or len(parts) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not PARAM=START:STOP:N, e.g. u=0.1:1.0:10")
    ends = []
    for label, part in zip(("START", "STOP"), parts[:2]):
        try:
            number = float(part)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise argparse.ArgumentTypeError(f"{text!r}: {label} must be a finite number, got {part.strip()!r}")
        ends.append(number)
    try:
        count = _whole(2, MAX_SWEEP)(parts[2].strip())
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: N {exc} (members drawn on one figure)") from None
    start, stop = ends
    # 12 significant digits: 0.1 + 0.1 * 2 is shown and named 0.3, not 0.30000000000000004.
    values = [float(f"{start + (stop - start) * i / (count - 1):.12g}") for i in range(count)]
    if len(set(values)) != count:
        raise argparse.ArgumentTypeError(f"{text!r}: START and STOP must differ enough to give {count} distinct "
                                         "values")
    return key, values


def plot_path(text: str) -> str:
    """Where --plot writes its figure: a .png, .pdf or .svg file in an existing directory.

    Checked as the command line is parsed, so a run is not trained for minutes and then unable to
    draw: matplotlib (the ``plots`` extra) must be installed, which is looked up without importing it.
    """
    if importlib.util.find_spec("matplotlib") is None:
        raise argparse.ArgumentTypeError("plots need matplotlib: pip install 'nde_plugins[plots]'")
    path = Path(text)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise argparse.ArgumentTypeError(f"{text!r} must end in {', '.join(PLOT_SUFFIXES)} (the suffix sets the "
                                         "figure's format), e.g. figure.png")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file name such as {text}/figure.png")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"the directory {str(path.parent)!r} of {text!r} does not exist; "
                                         "create it first")
    return text


def plugin_kind(text: str) -> str:
    """A plugin kind of the registry (``tableau``, ``diffusion``, ...)."""
    if text in KINDS:
        return text
    close = difflib.get_close_matches(text, KINDS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise argparse.ArgumentTypeError(f"unknown plugin kind {text!r}{hint} (kinds: {', '.join(KINDS)})")


def _checked_spec(parse: Callable[[str], object], name: str, doc: str) -> Callable[[str], str]:
    """An argparse ``type=`` for a plugin spec: ``parse`` checks it fully; the text itself is kept."""

    def check(text: str) -> str:
        try:
            parse(text)
        except _VALUE_ERRORS as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {_one_line(exc)}") from exc
        return text

    check.__name__, check.__doc__ = name, doc
    return check


regularizer_spec = _checked_spec(
    lambda text: _parse_regularizer(text, epochs=1), "regularizer_spec",
    "``NAME[:weight=W,option=V,...]`` or ``NAME:start=A,end=B``; checked fully, parsed again per run.")
end_time_spec = _checked_spec(
    lambda text: _parse_end_time(text), "end_time_spec",
    "``NAME[:option=V,...]``: a registered end-time sampler and its options, checked fully.")
schedule_spec = _checked_spec(
    lambda text: _parse_schedule(text), "schedule_spec",
    "``NAME[:option=V,...]``: a registered solver schedule and its options, checked fully.")


def _variant_part(item: str, name: str) -> None:
    """A name in a --compare variant: a registered step regularizer or end-time sampler."""
    registry = get_registry()
    if registry.find("step_regularizer", name) or registry.find("end_time_sampler", name):
        return
    regularizers, samplers = registry.names("step_regularizer"), registry.names("end_time_sampler")
    close = difflib.get_close_matches(name, [*regularizers, *samplers, "vanilla"], n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    raise argparse.ArgumentTypeError(
        f"variant {item!r}: {name!r} is neither a step regularizer nor an end-time sampler{hint} (regularizers: "
        f"{', '.join(regularizers) or 'none'}; end-time samplers: {', '.join(samplers) or 'none'})"
    )


def compare_list(text: str) -> list[str]:
    """``V1,V2,...``: each variant is ``vanilla`` or registered names joined by ``+``.

    A name is a step regularizer or an end-time sampler (at most one sampler per variant), e.g.
    ``vanilla,steer,error_estimate+steer``.
    """
    registry = get_registry()
    variants: list[str] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise argparse.ArgumentTypeError(
                f"{text!r} has an empty variant; write V1,V2,... e.g. vanilla,error_estimate,error_estimate+stiffness"
            )
        if item != "vanilla":
            names = [name.strip() for name in item.split("+")]
            for name in names:
                if not name:
                    raise argparse.ArgumentTypeError(f"variant {item!r} has an empty name around '+'")
                if name == "vanilla":
                    raise argparse.ArgumentTypeError(
                        f"variant {item!r}: 'vanilla' means no regularizer and is a variant of its own"
                    )
                if names.count(name) > 1:
                    raise argparse.ArgumentTypeError(f"variant {item!r} names {name!r} twice")
                _variant_part(item, name)
            samplers = [name for name in names if registry.find("end_time_sampler", name)]
            if len(samplers) > 1:
                raise argparse.ArgumentTypeError(
                    f"variant {item!r} names the end-time samplers {', '.join(map(repr, samplers))}; a solve has "
                    "one end time: give at most one sampler per variant"
                )
            item = "+".join(names)
        if item in variants:
            raise argparse.ArgumentTypeError(f"variant {item!r} is listed twice")
        variants.append(item)
    return variants


# ------------------------------------------------------------------------------------------------
# plugins


def _describe(obj: object) -> str:
    try:
        if isinstance(obj, TableauFamily):
            params = ", ".join(f"{p}={obj.defaults[p]:.6g}" for p in obj.params)
            return f"family({params}) order {obj.member().order}; {obj.description}".rstrip("; ")
        if isinstance(obj, Tableau):
            kind = f"order {obj.order}" + (f"({obj.embedded_order}) adaptive" if obj.is_adaptive else " fixed-grid")
            return f"{kind}; {obj.description}".rstrip("; ")
        doc = (getattr(obj, "__doc__", None) or "").strip()
        return doc.splitlines()[0] if doc else ""
    except Exception as exc:  # a third-party object that cannot describe itself must not break the listing
        return f"(no description: {type(exc).__name__}: {_one_line(exc)})"


def cmd_plugins(args: argparse.Namespace) -> int:
    registry = get_registry()
    rows = [
        {
            "kind": reg.kind,
            "name": reg.name,
            "source": reg.source.distribution or reg.source.plugin,
            "version": reg.source.version,
            "plugin": reg.source.plugin,
            "origin": reg.source.origin,
            "description": _describe(reg.obj),
        }
        for reg in registry.registrations(args.kind)
    ]
    errors = [
        {"plugin": e.source.plugin, "source": e.source.distribution, "version": e.source.version, "error": e.message}
        for e in registry.load_errors
    ]
    if args.json:
        # Plugins that failed to load appear as objects of kind "load_error".
        failed = [{"kind": "load_error", "name": e["plugin"], **e} for e in errors]
        json.dump(rows + failed, sys.stdout, indent=2)
        print()
        return 0
    headers = ("kind", "name", "source", "version", "description")
    table = [[r["kind"], r["name"], r["source"] or "", r["version"] or "", r["description"]] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    if errors:
        print(f"\n{len(errors)} plugin(s) failed to load and were skipped:")
        for e in errors:
            print(f"  {e['plugin']} ({e['source'] or 'no distribution'} {e['version'] or ''}): {e['error']}")
    return 0


# ------------------------------------------------------------------------------------------------
# tableau


def _params(pairs: Sequence[tuple[str, float]], spec_params: dict[str, float]) -> dict[str, float]:
    """--param values; a parameter given twice, or also in the NAME spec, is refused (neither would win)."""
    params: dict[str, float] = {}
    for key, value in pairs:
        if key in params:
            raise UsageError(f"argument --param: {key!r} is given twice ({params[key]:g} and {value:g}); give it once")
        if key in spec_params:
            raise UsageError(
                f"argument --param: {key!r} is given both in NAME ({spec_params[key]:g}) and with --param "
                f"({value:g}); give it once"
            )
        params[key] = value
    return params


def _write_figure(draw: Callable[[], None], path: str) -> None:
    """Draw with matplotlib; a file that cannot be written is the user's error, named as --plot."""
    try:
        draw()
    except OSError as exc:
        raise UsageError(f"argument --plot: cannot write {path!r}: {exc.strerror or exc}") from exc


def _stability_lines(tableau: Tableau) -> list[str]:
    from .tableaux._stability import (
        error_coefficient_norm,
        format_polynomial,
        real_stability_interval,
        stability_polynomial,
    )

    lines = []
    for which in ("b", "b_hat") if tableau.is_adaptive else ("b",):
        coefficients = stability_polynomial(tableau, which)
        lines.append(f"stability function ({which}): R(z) = {format_polynomial(coefficients)}")
        lines.append(f"  real stability interval [{real_stability_interval(coefficients):.4f}, 0]; principal "
                     f"error coefficients (order {(tableau.order if which == 'b' else tableau.embedded_order) + 1} "
                     f"trees): 2-norm {error_coefficient_norm(tableau, which):.4g}")
    return lines


def _family_names() -> list[str]:
    registry = get_registry()
    return [reg.name for reg in registry.registrations("tableau") if isinstance(reg.obj, TableauFamily)]


def _tableau_sweep(args: argparse.Namespace, name: str, fixed: dict[str, float]) -> int:
    """``tableau FAMILY --sweep PARAM=START:STOP:N``: the members' stability and error coefficients."""
    from .tableaux._stability import (
        error_coefficient_norm,
        format_polynomial,
        real_stability_interval,
        shared_stability_function,
        stability_polynomial,
    )

    param, values = args.sweep
    family = get_registry().get("tableau", name)
    if not isinstance(family, TableauFamily):
        raise UsageError(f"argument --sweep: {name!r} is a single tableau, not a family; --sweep varies a family's "
                         f"parameter (families: {', '.join(_family_names())})")
    if param not in family.params:
        raise UsageError(f"argument --sweep: family {name!r} has no parameter {param!r}; its parameters are "
                         f"{', '.join(family.params)}")
    if param in fixed:
        raise UsageError(f"argument --sweep: {param!r} is swept and also set to {fixed[param]:g} in NAME or --param; "
                         "give it once")
    members = []
    for value in values:
        with _argument("--sweep"):
            members.append(family.member({**fixed, param: value}))
    polynomials = [stability_polynomial(member) for member in members]
    others = ", ".join(f"{k}={v:g}" for k, v in family.resolve({**fixed, param: values[0]}).items() if k != param)
    print(f"{name}: {param} from {values[0]:g} to {values[-1]:g}, {len(values)} members"
          + (f" ({others})" if others else ""))
    order = members[0].order
    print(f"  {param:<10s}  {'real stability interval':<25s}  principal error coefficients (order {order + 1}), 2-norm")
    for value, member, coefficients in zip(values, members, polynomials):
        interval = f"[{real_stability_interval(coefficients):.4f}, 0]"
        print(f"  {value:<10.6g}  {interval:<25s}  {error_coefficient_norm(member):.4g}")
    if shared_stability_function(polynomials):
        print(f"every member has the same stability function R(z) = {format_polynomial(polynomials[0])}: "
              f"{param} changes the error coefficients, not the stability region")
    else:
        print("the members' stability functions differ:")
        for value, coefficients in zip(values, polynomials):
            print(f"  {param}={value:g}: R(z) = {format_polynomial(coefficients)}")
    if args.plot is not None:
        from .plots import plot_stability_sweep

        _write_figure(lambda: plot_stability_sweep(family, param, values, args.plot, fixed), args.plot)
        print(f"figure written to {args.plot}")
    return 0


def cmd_tableau(args: argparse.Namespace) -> int:
    name, spec_params = parse_method_spec(args.name)
    params = _params(args.param, spec_params)
    if args.sweep is not None:
        return _tableau_sweep(args, name, {**spec_params, **params})
    with _argument("--param" if params else "NAME"):
        tableau = get_tableau(name, **spec_params, **params)
    print(f"{tableau.name}: {tableau.stages} stages, order {tableau.order}"
          + (f", embedded order {tableau.embedded_order}" if tableau.is_adaptive else "")
          + (", FSAL" if tableau.is_fsal else ""))
    if tableau.description:
        print(tableau.description)
    print()
    print(tableau.format(args.precision))
    for which in ("b", "b_hat") if tableau.is_adaptive else ("b",):
        residuals = tableau.residuals(which)
        print(f"\norder conditions for {which} (up to order {residuals[-1].order}):")
        print(f"  {'order':>5s}  {'tree':24s} {'sum w*Phi':>22s} {'1/gamma':>22s} {'residual':>10s}")
        for r in residuals:
            print(f"  {r.order:5d}  {r.label:24s} {r.value:22.16g} {r.target:22.16g} {r.residual:10.2e}")
    print()
    print("\n".join(_stability_lines(tableau)))
    if args.plot is not None:
        from .plots import plot_stability

        _write_figure(lambda: plot_stability(tableau, args.plot), args.plot)
        print(f"\nfigure written to {args.plot}")
    return 0


# ------------------------------------------------------------------------------------------------
# solve


def _solve_step(args: argparse.Namespace) -> float | None:
    """The fixed step of the solve, or None for an adaptive one; refuses steps the interval cannot take."""
    name, options = resolve_method(args.method)
    span = abs(args.t_end)
    step = args.step_size
    if step is not None:
        if not is_fixed_grid(name, {**options, "step_size": step}):
            raise UsageError(
                f"argument --step-size: method {args.method!r} chooses its own steps and takes no fixed step size; "
                "drop --step-size and set --rtol/--atol, or use a fixed-grid method such as rk4"
            )
        if step > span:
            raise UsageError(
                f"argument --step-size: {step:g} is longer than the whole interval |--t-end| = {span:g}; "
                f"give --step-size <= {span:g}"
            )
    elif is_fixed_grid(name, options):
        step = min(DEFAULT_STEP_SIZE, span)
    if step is not None and span / step > MAX_FIXED_STEPS:
        if args.step_size is None:
            raise UsageError(
                f"argument --t-end: |{args.t_end:g}| with the default step {step:g} makes more than "
                f"{MAX_FIXED_STEPS} steps; give a shorter --t-end or a --step-size >= {span / MAX_FIXED_STEPS:.3g}"
            )
        raise UsageError(
            f"argument --step-size: {step:g} over |--t-end| = {span:g} makes more than {MAX_FIXED_STEPS} steps; "
            f"give --step-size >= {span / MAX_FIXED_STEPS:.3g}"
        )
    return step


def cmd_solve(args: argparse.Namespace) -> int:
    """Solve the harmonic oscillator x'' = -x over [0, T]; the exact solution is known."""
    nfe = 0

    def field(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nonlocal nfe
        nfe += 1
        return torch.stack([y[..., 1], -y[..., 0]], dim=-1)

    step = _solve_step(args)
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0.0, args.t_end, 2, dtype=torch.float64)
    options = {"step_size": step} if step is not None else {}
    y = odeint(field, y0, t, method=args.method, rtol=args.rtol, atol=args.atol, options=options)
    exact = torch.tensor([math.cos(args.t_end), -math.sin(args.t_end)], dtype=torch.float64)
    err = (y[-1] - exact).abs().max().item()
    if args.json:
        json.dump({"method": args.method, "t_end": args.t_end, "step_size": step, "y_end": y[-1].tolist(),
                   "max_abs_error": err, "nfe": nfe}, sys.stdout)
        print()
    else:
        print(f"harmonic oscillator on [0, {args.t_end:g}] with {args.method}"
              + (f", step_size {step:g}" if step is not None else f", rtol {args.rtol:g}, atol {args.atol:g}"))
        print(f"  y(T)       = {y[-1].tolist()}")
        print(f"  exact      = {exact.tolist()}")
        print(f"  max error  = {err:.3e}")
        print(f"  NFE        = {nfe}")
    return 0


# ------------------------------------------------------------------------------------------------
# train

# Weights used by `train --compare` for a regularizer not given with --regularizer; chosen on the
# digits task (benchmarks/digits_regularizers.py reports what was tried).
DEFAULT_WEIGHTS = {"error_estimate": 0.1, "stiffness": STIFFNESS_DEFAULT_WEIGHT, "kinetic_energy": 0.01,
                   "jacobian_frobenius": 0.01}

#: Keys of a --regularizer spec that set the weight rather than an option of the regularizer.
WEIGHT_KEYS = ("weight", "start", "end")


def _value(text: str):
    """An option value: true/false, a finite number, or a word."""
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


def _weight(key: str, text: str, zero_allowed: bool) -> float:
    """A weight (finite, >= 0) or an annealing end point (finite, > 0)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_allowed):
        raise ValueError(f"{key} must be a finite number {'>= 0' if zero_allowed else '> 0'}, got {text.strip()!r}")
    return value


def _key_values(rest: str) -> dict[str, str]:
    """``key=value,...`` after a spec's ':' as raw strings; each key once."""
    raw: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, value = part.strip().partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"{part.strip()!r} is not key=value")
        if key in raw:
            raise ValueError(f"{key!r} is given twice")
        raw[key] = value
    return raw


def _split_spec(spec: str, kind: str, what: str, example: str) -> tuple[str, Callable, dict[str, str]]:
    """``NAME[:key=value,...]`` as (name, the registered factory of ``kind``, raw option strings).

    Unknown names fail with suggestions; an empty name or a ':' with nothing after it is refused.
    """
    name, colon, rest = spec.partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"no {what} name; write NAME or NAME:option=V, e.g. {example}")
    factory = get_registry().get(kind, name)
    if colon and not rest.strip():
        raise ValueError(f"a ':' but nothing after it; write {name} or {name}:option=V")
    return name, factory, _key_values(rest) if colon else {}


def _parse_regularizer(spec: str, epochs: int) -> tuple[str, dict]:
    name, factory, raw = _split_spec(spec, "step_regularizer", "regularizer", "error_estimate:weight=0.1")
    check_factory_options("regularizer", name, factory, {k: v for k, v in raw.items() if k not in WEIGHT_KEYS},
                          also="weight=W or start=A,end=B")
    if "start" in raw or "end" in raw:
        if "weight" in raw or not ("start" in raw and "end" in raw):
            raise ValueError("give weight=W, or start=A,end=B for annealing")
        start, end = _weight("start", raw.pop("start"), False), _weight("end", raw.pop("end"), False)
        weight = ExponentialAnnealing(start, end, epochs)
    elif "weight" in raw:
        weight = _weight("weight", raw.pop("weight"), True)
    elif name in DEFAULT_WEIGHTS:
        weight = DEFAULT_WEIGHTS[name]
    else:
        raise ValueError(f"no weight given and {name!r} has no default; write {name}:weight=W")
    options = {key: _value(value) for key, value in raw.items()}
    build_regularizers({name: {"weight": weight, **options}})  # the regularizer's own checks of its options
    return name, {"weight": weight, **options}


def parse_regularizer(spec: str, epochs: int) -> tuple[str, dict]:
    """``NAME[:weight=W,opt=V,...]`` or ``NAME:start=A,end=B`` (exponential annealing over the epochs).

    Returns ``(name, {"weight": weight, **options})``; a bad spec raises ``ValueError`` naming it.
    """
    try:
        return _parse_regularizer(spec, epochs)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--regularizer {spec!r}: {_one_line(exc)}") from exc


def _parse_end_time(spec: str) -> tuple[str, dict]:
    name, factory, raw = _split_spec(spec, "end_time_sampler", "end-time sampler", "steer:b=0.5")
    options = {key: _value(value) for key, value in raw.items()}
    # per_sample (one draw per sample) and synchronized (one draw for every rank) are the block's options,
    # not the sampler's.
    flags = {key: options.pop(key, False) for key in ("per_sample", "synchronized")}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be true or false, got {value!r}")
    check_factory_options("end time", name, factory, options, also="per_sample=true|false, synchronized=true|false")
    missing = _required_options(factory) - set(options)
    if missing:
        raise ValueError(f"end time {name!r} needs {', '.join(sorted(missing))}; write "
                         f"{name}:{','.join(f'{key}=V' for key in sorted(missing))}")
    factory(**options)  # the sampler's own checks of the values (b > 0, ...); b against t comes later
    return name, options | {key: True for key, value in flags.items() if value}


#: --schedule options that take several values, separated by '|'.
_LIST_OPTIONS = {"members": str, "probs": float, "weights": float}


def _parse_schedule(spec: str) -> tuple[str, dict]:
    """``NAME[:option=V,...]``; lists with '|': ``switching:u=0.5|0.5125|0.4875`` gives one member per value
    of the family parameter u (several parameters are paired in order), ``members=rk4_classic|rk38`` names
    methods, ``probs=0.5|0.25|0.25`` and ``weights=...`` are numbers."""
    name, factory, raw = _split_spec(spec, "solver_schedule", "schedule", "smoothing:sigma=0.0125")
    options: dict = {}
    columns: dict[str, list[float]] = {}  # family parameter -> one value per member
    for key, value in raw.items():
        items = [item.strip() for item in value.split("|")]
        if key in _LIST_OPTIONS:
            options[key] = [_LIST_OPTIONS[key](item) for item in items] if _LIST_OPTIONS[key] is str else [
                _finite_number(key, item) for item in items]
        elif "|" in value:
            columns[key] = [_finite_number(key, item) for item in items]
        else:
            options[key] = _value(value)
    if columns:
        lengths = {len(values) for values in columns.values()}
        if len(lengths) != 1:
            raise ValueError(f"the parameter lists {sorted(columns)} must have the same number of values")
        members = [dict(zip(columns, values)) for values in zip(*columns.values())]
        options["members"] = members + list(options.get("members", []))
    check_factory_options("schedule", name, factory, options)
    factory(**options)  # the schedule's own checks of the values; members are checked against the method later
    return name, options


def _finite_number(key: str, text: str) -> float:
    value = _value(text)
    if isinstance(value, bool) or not isinstance(value, float):
        raise ValueError(f"{key} values must be numbers, got {text!r}")
    return value


def _required_options(factory: Callable) -> set[str]:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: let the factory itself decide
        return set()
    return {p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def parse_end_time(spec: str) -> tuple[str, dict]:
    """``NAME[:option=V,...]``, e.g. ``steer:b=0.5`` or ``steer:b=0.5,per_sample=true``.

    Returns ``(name, options)`` for ``ODEBlock(end_time=name, end_time_options=options)``; a bad
    spec raises ``ValueError`` naming it. Whether ``b`` fits the block's interval is checked when a
    block is built.
    """
    try:
        return _parse_end_time(spec)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--end-time {spec!r}: {_one_line(exc)}") from exc


def _given_regularizers(args: argparse.Namespace) -> dict[str, dict]:
    given: dict[str, dict] = {}
    for spec in args.regularizer:
        with _argument(f"--regularizer {spec!r}"):
            name, value = _parse_regularizer(spec, args.epochs or 1)
        if name in given:
            raise UsageError(f"argument --regularizer: {name!r} is given twice; give each regularizer once")
        if args.task == "stiff" and isinstance(value["weight"], ExponentialAnnealing):
            raise UsageError(f"argument --regularizer: {spec!r} anneals over epochs, and the stiff task counts "
                             "iterations, not epochs; give a constant weight=W")
        given[name] = value
    return given


def _given_end_time(args: argparse.Namespace) -> tuple[str, dict] | None:
    if args.end_time is None:
        return None
    with _argument(f"--end-time {args.end_time!r}"):
        return _parse_end_time(args.end_time)


def _variants(args: argparse.Namespace, given: dict[str, dict],
              end_time: tuple[str, dict] | None) -> dict[str, dict]:
    """Variant name -> the config fields it sets, for --compare.

    Each named regularizer gets its --regularizer spec or its default weight; a named end-time
    sampler gets the options of --end-time when that names it, else its defaults.
    """
    registry = get_registry()
    variants: dict[str, dict] = {}
    used: set[str] = set()
    for item in args.compare:
        regularizers: dict[str, dict] = {}
        changes: dict = {"regularizers": regularizers, "end_time": None, "end_time_options": {}}
        for name in item.split("+") if item != "vanilla" else ():
            used.add(name)
            if registry.find("end_time_sampler", name) is not None:
                options = end_time[1] if end_time is not None and end_time[0] == name else {}
                missing = _required_options(registry.get("end_time_sampler", name)) - set(options)
                if missing:
                    needs = ",".join(f"{key}=V" for key in sorted(missing))
                    raise UsageError(f"argument --compare: variant {item!r} uses the end time {name!r}, which needs "
                                     f"{', '.join(sorted(missing))}; give it with --end-time {name}:{needs}")
                changes["end_time"], changes["end_time_options"] = name, options
            elif name in given:
                regularizers[name] = given[name]
            elif name in DEFAULT_WEIGHTS:
                regularizers[name] = {"weight": DEFAULT_WEIGHTS[name]}
            else:
                raise UsageError(
                    f"argument --compare: variant {item!r} uses {name!r}, which has no default weight; "
                    f"give one with --regularizer {name}:weight=W"
                )
        variants[item] = changes
    unused = sorted(set(given) - used)
    if unused:
        raise UsageError(
            f"argument --regularizer: {', '.join(map(repr, unused))} is in no --compare variant and would be "
            "ignored; add it to a variant or drop it"
        )
    if end_time is not None and end_time[0] not in used:
        raise UsageError(
            f"argument --end-time: {end_time[0]!r} is in no --compare variant and would be ignored; add it to a "
            f"variant (e.g. vanilla,{end_time[0]}) or drop it"
        )
    return variants


def _unused_field(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - never solved
    return z


#: train's arguments that belong to one task only (argument -> the config field it sets).
TASK_ONLY = {"digits": {"--epochs": "epochs"},
             "stiff": {"--iterations": "iterations", "--stiffness-ratio": "stiffness_ratio", "--variant": "variant"}}
#: train's arguments whose default depends on the task (taken from the task's config class).
TASK_DEFAULTS = ("rtol", "atol", "lr", "batch_size", "epochs", "iterations", "stiffness_ratio", "variant")


def _config_class(task: str) -> type:
    if task == "stiff":
        from .experiments.stiff import StiffConfig

        return StiffConfig
    from .experiments.digits import TrainConfig

    return TrainConfig


def _check_train_arguments(args: argparse.Namespace) -> None:
    """Rules that tie train's arguments together (each argument alone was checked as it was parsed).

    Also fills in the defaults that depend on the task (tolerances, learning rate, batch size, ...).
    """
    for task, arguments in TASK_ONLY.items():
        for argument, attr in arguments.items():
            if args.task != task and getattr(args, attr) is not None:
                raise UsageError(f"argument {argument}: only applies with --task {task}; drop it or add --task {task}")
    defaults = {f.name: f.default for f in dataclasses.fields(_config_class(args.task))}
    for attr in TASK_DEFAULTS:
        if getattr(args, attr) is None and attr in defaults:
            setattr(args, attr, defaults[attr])
    if args.compare is None and args.seeds != 1:
        raise UsageError("argument --seeds: only applies with --compare; drop --seeds, or add --compare V1,V2,...")
    if args.seed + args.seeds - 1 > MAX_SEED:
        raise UsageError(f"argument --seeds: --seed {args.seed} + --seeds {args.seeds} - 1 exceeds the largest "
                         "torch seed 2**63 - 1; give a smaller --seed")
    if args.task == "digits" and importlib.util.find_spec("sklearn") is None:
        raise UsageError("argument --task: the digits task needs scikit-learn: pip install 'nde_plugins[tasks]'")
    if args.task == "stiff":
        from .experiments.stiff import StiffConfig

        largest = StiffConfig.n_train - 2
        if args.batch_size > largest:
            raise UsageError(f"argument --batch-size: the stiff task draws distinct training pairs, at most "
                             f"{largest}; give --batch-size <= {largest} (the authors use 20)")


def _task_interval(task: str) -> tuple[float, float]:
    """The interval the task's ODE block integrates over (where an end-time sampler draws)."""
    if task == "stiff":
        from .experiments.stiff import StiffConfig, interval

        return 0.0, interval(StiffConfig())
    from .experiments.digits import T0, T1

    return T0, T1


def _check_before_training(args: argparse.Namespace, runs: dict[str, dict]) -> None:
    """Refuse a method, tolerance, regularizer or end time the training would refuse, before any run starts.

    With --compare a variant that fails after others have trained for minutes would waste them, so
    every variant is built once here (construction only: nothing is solved). The end time is
    checked on a block of its own, so that an error names --end-time when that is what to change.
    """
    from .ode import ODEBlock

    t = _task_interval(args.task)
    for label, changes in runs.items():
        regularizers, end_time = changes["regularizers"], changes["end_time"]
        variant = f"--compare (variant {label!r})" if args.compare is not None else None
        with _argument(variant or ("--regularizer" if regularizers else "--method")):
            ODEBlock(_unused_field, t=t, method=args.method, rtol=args.rtol, atol=args.atol,
                     regularizers=regularizers or None, adjoint=args.adjoint)
        if end_time is not None:
            with _argument("--end-time" if args.end_time is not None else variant or "--end-time"):
                ODEBlock(_unused_field, t=t, method=args.method, rtol=args.rtol, atol=args.atol,
                         end_time=end_time, end_time_options=changes["end_time_options"])
    options = {"step_size": args.step_size} if args.step_size is not None else None
    with _argument("--step-size"):
        ODEBlock(_unused_field, t=t, method=args.method, rtol=args.rtol, atol=args.atol, options=options)
    if args.schedule is not None:
        name, schedule_options = _parse_schedule(args.schedule)
        with _argument("--schedule"):
            ODEBlock(_unused_field, t=t, method=args.method, rtol=args.rtol, atol=args.atol, options=options,
                     schedule=name, schedule_options=schedule_options)


def _describe_end_time(task: str, end_time: tuple[str, dict] | None) -> str:
    """``steer(b=0.5)``; steer's default b (the authors' |t1 - t0| - min_length) is spelled out."""
    if end_time is None:
        return "none"
    from .end_times import MIN_LENGTH

    name, options = end_time
    text = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items())
    if name == "steer" and "b" not in options:
        t0, t1 = _task_interval(task)
        default = abs(t1 - t0) - float(options.get("min_length", MIN_LENGTH))
        text = ", ".join(filter(None, [f"b={default:.4g} (default)", text]))
    return f"{name}({text})" if text else name


def _run_title(args: argparse.Namespace, given: dict, end_time: tuple[str, dict] | None) -> str:
    """One line naming a single digits or stiff run (the figure's title)."""
    regs = ", ".join(f"{k}={v['weight']!r}" for k, v in given.items()) or "none"
    task = _stiff_header(args) if args.task == "stiff" else \
        f"digits, {args.method} rtol={args.rtol:g} atol={args.atol:g}, {args.epochs} epochs"
    return (f"{task}, regularizers: {regs}, end time: {_describe_end_time(args.task, end_time)}"
            + (", adjoint" if args.adjoint else "") + f", seed {args.seed}")


def _print_digits(args: argparse.Namespace, result, given: dict, end_time: tuple[str, dict] | None) -> None:
    regs = ", ".join(f"{k}={v['weight']!r}" for k, v in given.items()) or "none"
    print(f"digits, {args.method} rtol={args.rtol:g} atol={args.atol:g}, regularizers: {regs}, "
          f"end time: {_describe_end_time(args.task, end_time)}, {args.epochs} epochs, seed {args.seed}")
    print(f"  train accuracy   {result.train_accuracy:.2f} %")
    print(f"  test accuracy    {result.test_accuracy:.2f} %")
    print(f"  prediction NFE   {result.nfe_predict}")
    print(f"  training time    {result.train_time_s:.2f} s")
    print(f"  prediction time  {result.predict_time_s:.4f} s")


def _stiff_header(args: argparse.Namespace) -> str:
    return (f"stiff toy r={args.stiffness_ratio:g}, {args.variant}, {args.method} rtol={args.rtol:g} "
            f"atol={args.atol:g}, RMSprop lr={args.lr:g}, batch {args.batch_size}, {args.iterations} iterations")


def _print_stiff(args: argparse.Namespace, result, given: dict, end_time: tuple[str, dict] | None) -> None:
    regs = ", ".join(f"{k}={v['weight']!r}" for k, v in given.items()) or "none"
    print(f"{_stiff_header(args)}, regularizers: {regs}, end time: {_describe_end_time(args.task, end_time)}, "
          f"seed {args.seed}")
    print(f"  best test MAE    {result.best_test_mae:.4f} (iteration {result.best_iteration}; the paper's metric)")
    print(f"  best test MSE    {result.best_test_mse:.4f}")
    print(f"  final test MAE   {result.final_test_mae:.4f}")
    print(f"  training time    {result.train_time_s:.2f} s (evaluations: {result.eval_time_s:.2f} s)")
    print(f"  training NFE     {result.nfe_train:.1f} per iteration (forward)")
    print(f"  test NFE         {result.nfe_test} (last evaluation, y(0) = 0 over [0, 25])")


SYNTHETIC_TASKS = ("spheres", "three_minima")


def _train_synthetic(args: argparse.Namespace) -> int:
    """``train --task spheres|three_minima``: seed 002's tasks, a fixed grid or step adaption, then the check."""
    from .experiments.synthetic import SyntheticConfig, steps_of, train_synthetic

    for flag, value in (("--regularizer", args.regularizer), ("--end-time", args.end_time),
                        ("--compare", args.compare), ("--rtol", args.rtol), ("--atol", args.atol),
                        ("--epochs", args.epochs), ("--stiffness-ratio", args.stiffness_ratio),
                        ("--variant", args.variant), ("--adjoint", args.adjoint)):
        if value:
            raise UsageError(f"argument {flag}: does not apply to --task {args.task} (a fixed-grid Euler task; "
                             "give --step-size or --schedule step_adaption)")
    schedule = _parse_schedule(args.schedule)[0] if args.schedule is not None else None
    if schedule not in (None, "step_adaption"):
        raise UsageError(f"argument --schedule: --task {args.task} trains on a fixed grid or with step_adaption, "
                         f"not {schedule!r}")
    if args.step_size is None and schedule is None:
        raise UsageError(f"argument --step-size: --task {args.task} needs a fixed step (e.g. --step-size 0.125) "
                         "or --schedule step_adaption")
    with _argument("--method"):
        from .ode import ODEBlock

        ODEBlock(_unused_field, method=args.method, options={"step_size": args.step_size or 1.0})
    config = SyntheticConfig(task=args.task, method=args.method, schedule=schedule, seed=args.seed,
                             steps=steps_of(args.step_size) if args.step_size else None, iterations=args.iterations,
                             batch_size=args.batch_size or 128, lr=args.lr)
    result = train_synthetic(config, progress=False if args.json else None)
    how = "under step adaption" if schedule else f"at K = {config.steps} steps"
    title = f"{args.task}, {args.method} {how}, seed {args.seed}"
    if args.json:
        json.dump(result.as_dict(), sys.stdout, indent=2)
        print()
    else:
        print(title)
        print(f"  test accuracy    {100 * result.test_accuracy:.2f} %")
        print(f"  train accuracy   {100 * result.train_accuracy:.2f} %")
        print(f"  NFE / iteration  {result.mean_nfe:.1f} (training solve; {result.mean_nfe_with_checks:.1f} with "
              "checks)")
        print(f"  final steps      {result.final_steps}")
        print(f"  proper-ODE check {result.verdict} (largest gap {100 * result.worst_gap:.1f} points)")
        print(f"  training time    {result.train_time_s:.2f} s")
    _plot_training(args, result, title)
    return 0


def _plot_training(args: argparse.Namespace, result, title: str, evaluations: list[dict] | None = None) -> None:
    """train --plot for one run: loss, accuracy and NFE per iteration (after the results are printed)."""
    if args.plot is None:
        return
    from .plots import plot_training

    _write_figure(lambda: plot_training(result.iterations, args.plot, title, evaluations), args.plot)
    if not args.json:
        print(f"figure written to {args.plot}")


# ------------------------------------------------------------------------------------------------
# train across processes (torchrun, --nproc)

#: Environment variables torchrun sets in every process it starts; all three mark a torchrun rank.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
#: Seconds a rank waits for the others, at the rendezvous and in every collective, before it fails
#: instead of hanging (every rank runs the same steps, so a healthy peer is never this far behind).
PROCESS_GROUP_TIMEOUT_S = 60
#: Backends train accepts for --backend; the default picks by the device the model trains on.
BACKENDS = ("gloo", "nccl")


def _torchrun_rank() -> bool:
    """True when torchrun started this process (it sets RANK, WORLD_SIZE and LOCAL_RANK)."""
    return all(name in os.environ for name in TORCHRUN_VARIABLES)


def torchrun_world() -> int | None:
    """The world size when this process is a torchrun rank, else None; malformed variables are refused."""
    if not _torchrun_rank():
        return None
    values = {name: os.environ[name] for name in TORCHRUN_VARIABLES}
    try:
        rank, world = int(values["RANK"]), int(values["WORLD_SIZE"])
    except ValueError:
        rank, world = -1, 0
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"environment: RANK={values['RANK']!r} and WORLD_SIZE={values['WORLD_SIZE']!r} are not a "
                         "rank 0 <= RANK < WORLD_SIZE; launch with torchrun, or unset RANK, WORLD_SIZE and LOCAL_RANK")
    return world


def default_backend(device: torch.device) -> str:
    """NCCL for a model on CUDA (where NCCL is built in), gloo otherwise."""
    if device.type == "cuda" and torch.distributed.is_nccl_available():
        return "nccl"
    return "gloo"


def _check_processes(args: argparse.Namespace) -> int | None:
    """How many processes train runs on (None: this one alone, no process group); refuses what cannot run there.

    Checked on the command line as given, before the task's defaults are filled in: the number
    comes from --nproc, or from torchrun's environment when this process is one of its ranks.
    """
    world = torchrun_world()
    if world is not None and args.nproc is not None:
        raise UsageError(f"argument --nproc: this process is already a torchrun rank (WORLD_SIZE={world}); drop "
                         "--nproc, or run nde-plugins train --nproc N without torchrun")
    if world is None and (args.nproc or 1) == 1:
        if args.backend is not None:
            raise UsageError("argument --backend: only applies across processes; add --nproc N (N >= 2) or launch "
                             "with torchrun")
        return None
    flag = "--nproc" if world is None else "--task"
    how = f"--nproc {args.nproc}" if world is None else f"torchrun, WORLD_SIZE={world}"
    if not torch.distributed.is_available():
        raise UsageError(f"argument {flag}: this torch build has no torch.distributed; train in one process")
    if args.task != "digits":
        raise UsageError(f"argument {flag}: training on several processes ({how}) is implemented for --task digits "
                         f"only; run --task {args.task} in one process")
    if args.compare is not None:
        raise UsageError(f"argument --compare: not available across processes ({how}); train the variants one by "
                         "one, each with --regularizer / --end-time")
    if args.backend is not None:
        if not torch.distributed.is_backend_available(args.backend):
            raise UsageError(f"argument --backend: this torch build has no {args.backend} backend; use "
                             f"{default_backend(torch.device('cpu'))}")
        if args.backend == "nccl":
            raise UsageError("argument --backend: the digits task trains on the CPU, and NCCL reduces CUDA tensors "
                             "only; use gloo (the default)")
    return world or args.nproc


def _check_global_batch(args: argparse.Namespace, processes: int | None) -> None:
    """The batch size is the global batch: it must split evenly over the processes."""
    if processes is not None and args.batch_size % processes:
        raise UsageError(f"argument --batch-size: {args.batch_size} does not split over {processes} processes; the "
                         f"batch size is the global batch, each process takes an equal part of it: give a multiple "
                         f"of {processes}")


def _without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without --nproc and its value (``--nproc N``, ``--nproc=N`` or an abbreviation argparse accepts).

    train has no other option starting with ``--n``, so every prefix of --nproc names it.
    """
    out: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        name, equals, _ = token.partition("=")
        if name.startswith("--n") and "--nproc".startswith(name):
            if not equals:
                next(tokens, None)
            continue
        out.append(token)
    return out


def torchrun_command(nproc: int, argv: Sequence[str]) -> list[str]:
    """The command that runs ``nde-plugins`` with ``argv`` (minus --nproc) on ``nproc`` local processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
            "-m", "nde_plugins", *_without_nproc(argv)]


def _launch(nproc: int, argv: Sequence[str]) -> int:
    """Run train on ``nproc`` processes through torchrun; its exit status.

    torchrun sets OMP_NUM_THREADS=1 for each of several processes when it is unset (and warns that it
    did); it is set here in advance to the same value, which keeps the warning out of the output.
    """
    env = {**os.environ}
    env.setdefault("OMP_NUM_THREADS", "1")
    process = subprocess.Popen(torchrun_command(nproc, argv), env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        # The terminal interrupted torchrun and its ranks as well: give torchrun the time to stop them.
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait()
        raise


@contextlib.contextmanager
def _process_group(args: argparse.Namespace, processes: int | None) -> Iterator[tuple[int, str | None]]:
    """(rank, backend) of this process inside the default process group, initialized from torchrun's
    environment and destroyed on the way out; (0, None) when train runs in one process."""
    if processes is None:
        yield 0, None
        return
    backend = args.backend or default_backend(torch.device("cpu"))  # the digits task trains on the CPU
    torch.distributed.init_process_group(backend, timeout=datetime.timedelta(seconds=PROCESS_GROUP_TIMEOUT_S))
    try:
        yield torch.distributed.get_rank(), backend
    finally:
        torch.distributed.destroy_process_group()


def _print_ranks(args: argparse.Namespace, result, backend: str) -> None:
    """The training numbers of every rank and their totals (text output of a run on several processes)."""
    from .experiments.compare import format_rows

    world = len(result.ranks)
    checksums = {entry["parameter_checksum"] for entry in result.ranks}
    agree = f"identical on every rank (CRC-32 {checksums.pop():08x})" if len(checksums) == 1 else \
        "DIFFERENT across ranks: " + ", ".join(f"{entry['parameter_checksum']:08x}" for entry in result.ranks)
    print(f"  processes        {world} ({backend}), global batch {args.batch_size} = {world} x "
          f"{args.batch_size // world} per step")
    print(f"  parameters       {agree}")
    print("  training solves, summed over each rank's batches:")
    header = ("rank", "samples", "batches", "NFE fwd", "NFE bwd", "steps acc", "steps rej", "regularization",
              "time s")
    keys = ("samples", "batches", "nfe_forward", "nfe_backward", "steps_accepted", "steps_rejected")

    def row(label: str, entry: dict) -> list[str]:
        return [label, *(f"{entry[key]:.0f}" for key in keys), f"{entry['regularization']:.4g}",
                f"{entry['train_time_s']:.2f}" if "train_time_s" in entry else ""]

    rows = [row(str(rank), entry) for rank, entry in enumerate(result.ranks)]
    rows.append(row("total", result.ranks_total))
    print("\n".join(f"    {line}" for line in format_rows(header, rows).splitlines()))


def cmd_train(args: argparse.Namespace) -> int:
    from .experiments import digits, stiff

    if args.method is None:
        args.method = "euler" if args.task in SYNTHETIC_TASKS else "dopri5"
    processes = _check_processes(args)
    if args.task in SYNTHETIC_TASKS:
        return _train_synthetic(args)
    from .experiments.compare import COLUMNS, STIFF_COLUMNS, compare_configs, format_table

    _check_train_arguments(args)
    _check_global_batch(args, processes)
    given = _given_regularizers(args)
    end_time = _given_end_time(args)
    single = {"regularizers": given, "end_time": end_time[0] if end_time else None,
              "end_time_options": end_time[1] if end_time else {}}
    variants = _variants(args, given, end_time) if args.compare is not None else None
    _check_before_training(args, variants if variants is not None else {"": single})
    common = {"method": args.method, "rtol": args.rtol, "atol": args.atol, "seed": args.seed,
              "batch_size": args.batch_size, "lr": args.lr, "adjoint": args.adjoint, **single}
    progress = False if args.json else None
    if args.task == "stiff":
        for flag, value in (("--schedule", args.schedule), ("--step-size", args.step_size)):
            if value is not None:
                raise UsageError(f"argument {flag}: applies to the digits task only")
        base = stiff.StiffConfig(stiffness_ratio=args.stiffness_ratio, variant=args.variant,
                                 iterations=args.iterations, **common)
        run, columns, printer = stiff.train_stiff, STIFF_COLUMNS, _print_stiff
        header = f"{_stiff_header(args)}, {args.seeds} seeds (mean +- std)"
    else:
        schedule = _parse_schedule(args.schedule) if args.schedule is not None else (None, {})
        base = digits.TrainConfig(epochs=args.epochs, step_size=args.step_size, schedule=schedule[0],
                                  schedule_options=schedule[1], **common)
        run, columns, printer = digits.train_digits, COLUMNS, _print_digits
        header = f"digits, {args.method} rtol={args.rtol:g} atol={args.atol:g}, {args.epochs} epochs, " \
                 f"{args.seeds} seeds (mean +- std)"
    if processes is not None and torchrun_world() is None:
        return _launch(processes, args.argv)  # every argument was checked above, before any process starts
    if variants is None:
        with _process_group(args, processes) as (rank, backend):
            result = run(base, progress=progress)
        if rank != 0:  # rank 0 reports for all: every rank holds the same numbers
            return 0
        if args.json:
            document = result.as_dict()
            if backend is not None:
                document["processes"] = {"world_size": processes, "backend": backend, "global_batch": args.batch_size,
                                         "batch_per_rank": args.batch_size // processes}
            json.dump(document, sys.stdout, indent=2)
            print()
        else:
            printer(args, result, given, end_time)
            if backend is not None:
                _print_ranks(args, result, backend)
        _plot_training(args, result, _run_title(args, given, end_time),
                       result.history if args.task == "stiff" else None)
        return 0
    results = compare_configs(variants, base, range(args.seed, args.seed + args.seeds),
                              run=lambda config: run(config, progress=progress))
    if args.json:
        json.dump({name: [r.as_dict() for r in runs] for name, runs in results.items()}, sys.stdout, indent=2)
        print()
    else:
        print(header)
        print(format_table(results, columns))
    if args.plot is not None:
        from .plots import plot_comparison

        _write_figure(lambda: plot_comparison(results, columns, args.plot, header), args.plot)
        if not args.json:
            print(f"figure written to {args.plot}")
    return 0


# ------------------------------------------------------------------------------------------------
# check


def cmd_check(args: argparse.Namespace) -> int:
    """Train a model on a task with a solver, then ask whether it is an ODE (the proper-ODE check)."""
    from .ode import ODEBlock
    from .proper_ode import proper_ode_check

    with _argument("--method"):
        ODEBlock(_unused_field, method=args.method, options={"step_size": 1.0 / args.steps})
    schedule = "step_adaption" if args.adapt else None
    if args.task == "digits":
        from .experiments.digits import TrainConfig, fit_digits, load_digits_split

        if args.iterations is not None:
            raise UsageError("argument --iterations: the digits task counts --epochs")
        config = TrainConfig(method=args.method, step_size=1.0 / args.steps, epochs=args.epochs or 15, seed=args.seed,
                             schedule=schedule)
        model, _ = fit_digits(config, progress=False if args.json else None)
        _, _, x_test, y_test = load_digits_split()
        history = []
    else:
        from .experiments.synthetic import SyntheticConfig, fit_synthetic, load_task

        if args.epochs is not None:
            raise UsageError(f"argument --epochs: the {args.task} task counts --iterations")
        config = SyntheticConfig(task=args.task, method=args.method, steps=args.steps, schedule=schedule,
                                 iterations=args.iterations, seed=args.seed)
        model, result = fit_synthetic(config, progress=False if args.json else None)
        data = load_task(args.task)
        x_test, y_test = data.x_test, data.y_test
        history = result.step_history
    report = proper_ode_check(model, model.block, (x_test, y_test), threshold=args.threshold)
    if args.json:
        print(json.dumps({**report.as_dict(), "task": args.task, "step_history": history}, indent=2))
    else:
        print(f"{args.task}, trained with {args.method}" + (" under step adaption" if args.adapt else
                                                             f" at K = {args.steps} steps") + f", seed {args.seed}")
        print(report.table())
    if args.plot is not None:
        from .plots import plot_check_report

        _write_figure(lambda: plot_check_report(report, args.plot, history), args.plot)
        if not args.json:
            print(f"figure written to {args.plot}")
    return 0


# ------------------------------------------------------------------------------------------------
# the parser and main


#: Command lines shown under "examples:" in each help text (None: the top-level help); a test parses each.
EXAMPLES: dict[str | None, tuple[str, ...]] = {
    None: (
        "nde-plugins plugins --kind tableau",
        "nde-plugins tableau rk2 --sweep u=0.1:1.0:10 --plot rk2_sweep.png",
        "nde-plugins train --epochs 5 --regularizer error_estimate:weight=0.1 --plot train.png",
    ),
    "plugins": (
        "nde-plugins plugins",
        "nde-plugins plugins --kind step_regularizer",
        "nde-plugins plugins --json",
    ),
    "tableau": (
        "nde-plugins tableau rk4_uv --param u=0.3 --param v=0.7",
        "nde-plugins tableau dormand_prince --plot dormand_prince.png",
        "nde-plugins tableau rk2 --sweep u=0.1:1.0:10 --plot rk2_sweep.png",
        "nde-plugins tableau rk4_uv:v=0.8 --sweep u=0.1:0.4:4",
    ),
    "solve": (
        "nde-plugins solve --method rk4_uv:u=0.3,v=0.7 --step-size 0.05",
        "nde-plugins solve --method tsitouras5 --rtol 1e-8 --atol 1e-10 --json",
    ),
    "check": (
        "nde-plugins check --task spheres --steps 2 --iterations 300 --plot check.png",
        "nde-plugins check --task digits --method rk2:u=0.5 --steps 2 --epochs 5",
    ),
    "train": (
        "nde-plugins train --epochs 5 --regularizer error_estimate:weight=0.1 --plot train.png",
        "nde-plugins train --epochs 5 --compare vanilla,error_estimate --seeds 3 --plot compare.png",
        "nde-plugins train --task stiff --iterations 300 --end-time steer --plot stiff.png",
        "nde-plugins train --method rk2:u=0.5 --step-size 0.125 --schedule smoothing:sigma=0.0125",
        "nde-plugins train --task spheres --step-size 0.125 --iterations 500",
        "nde-plugins train --nproc 2 --epochs 5 --batch-size 128 --json",
    ),
}


def _examples(command: str | None) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[command])


def _version() -> str:
    """The installed distribution's version; the package's own where it runs from a source tree."""
    try:
        return importlib.metadata.version("nde_plugins")
    except importlib.metadata.PackageNotFoundError:
        from . import __version__

        return __version__


class _VersionAction(argparse.Action):
    """--version: looks the version up only when asked (argparse's own action formats it up front)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version of nde_plugins and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog} {_version()}")
        parser.exit()


def _command(sub, name: str, summary: str, description: str | None = None) -> argparse.ArgumentParser:
    """A subcommand whose help starts with its summary and ends with example command lines."""
    return sub.add_parser(name, help=summary, description=description or summary, epilog=_examples(name),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nde-plugins", description=__doc__.split("\n\n")[0].replace("``", ""), epilog=_examples(None),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "plugins", "list registered plugins of every kind and plugins that failed to load")
    p.add_argument("--kind", type=plugin_kind, default=None, metavar="KIND",
                   help=f"list only plugins of this kind: {', '.join(KINDS)} (plugins that failed to load are "
                        "always listed)")
    p.add_argument("--json", action="store_true", help="print a JSON list of objects (kind, name, source, ...)")
    p.set_defaults(func=cmd_plugins)

    p = _command(sub, "tableau", "print a tableau's Butcher table, order-condition residuals and stability; "
                                 "draw its stability region",
                 "Print a tableau's Butcher table, order-condition residuals, stability function and principal "
                 "error\ncoefficients. --plot draws the stability region |R(z)| <= 1 (with the embedded method's "
                 "for a pair);\n--sweep compares members of a family, --plot overlays their regions.")
    p.add_argument("name", type=tableau_spec, metavar="NAME",
                   help="registered tableau or family, or a family spec, e.g. rk4_uv or rk4_uv:u=0.3,v=0.7")
    p.add_argument("--param", type=family_param, action="append", default=[], metavar="NAME=VALUE",
                   help="family parameter, a finite number (repeatable; each parameter once, here or in NAME)")
    p.add_argument("--precision", type=_whole(1, MAX_PRECISION), default=6,
                   help=f"significant digits in the table, 1 to {MAX_PRECISION} (default %(default)s)")
    p.add_argument("--sweep", type=sweep_range, default=None, metavar="PARAM=START:STOP:N",
                   help=f"families only: N members (2 to {MAX_SWEEP}) with PARAM evenly spaced from START to STOP, "
                        "every value inside the family's domain; prints each member's real stability interval and "
                        "error coefficients")
    p.add_argument("--plot", type=plot_path, default=None, metavar="PATH",
                   help="write the stability region(s) as a figure (.png, .pdf or .svg; needs the plots extra)")
    p.set_defaults(func=cmd_tableau)

    p = _command(sub, "solve", "solve a harmonic oscillator with a method and report the error and NFE")
    p.add_argument("--method", type=method_spec, default="rk4_uv:u=0.3,v=0.7",
                   help="torchdiffeq method, registered tableau or family spec (default %(default)s)")
    p.add_argument(
        "--step-size", type=positive_float, default=None,
        help=f"fixed step, > 0 and at most |T|, for fixed-grid methods and tableaux (a pair then runs on the "
             f"grid); default {DEFAULT_STEP_SIZE:g} for fixed-grid methods, none for adaptive ones; at most "
             f"{MAX_FIXED_STEPS} steps",
    )
    p.add_argument("--rtol", type=positive_float, default=1e-7, help="relative tolerance > 0 (default %(default)g)")
    p.add_argument("--atol", type=positive_float, default=1e-9, help="absolute tolerance > 0 (default %(default)g)")
    p.add_argument("--t-end", type=nonzero_float, default=2 * math.pi,
                   help="end time T, finite and != 0; a negative T integrates backward from 0 (default 2*pi)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_solve)

    p = _command(sub, "check", "train a model on a task, then check whether it is an ODE or a map tied to its "
                               "solver (seed 002)")
    p.add_argument("--task", choices=["spheres", "three_minima", "digits"], default="spheres")
    p.add_argument("--method", type=method_spec, default="euler",
                   help="fixed-grid training solver: euler, midpoint, rk4 or a tableau spec such as rk2:u=0.5 "
                        "(default %(default)s)")
    p.add_argument("--steps", type=positive_int, default=8, help="training steps K on [0, 1] (step 1/K; default 8)")
    p.add_argument("--adapt", action="store_true", help="train under step adaption instead (starting at 1/K)")
    p.add_argument("--iterations", type=positive_int, default=None, help="spheres, three_minima: iterations")
    p.add_argument("--epochs", type=positive_int, default=None, help="digits: epochs (default 15)")
    p.add_argument("--threshold", type=positive_float, default=0.1,
                   help="largest accuracy gap of an ODE-like model (default %(default)g)")
    p.add_argument("--seed", type=_whole(0, MAX_SEED, "2**63 - 1"), default=0)
    p.add_argument("--plot", type=plot_path, default=None, metavar="PATH",
                   help="write the accuracy-vs-test-solver figure (.png, .pdf or .svg; needs the plots extra)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)

    p = _command(sub, "train", "train a Neural ODE on an embedded task, optionally with regularizers and a "
                               "random end time")
    p.add_argument("--task", choices=["digits", "stiff", *SYNTHETIC_TASKS], default="digits",
                   help="digits: classifier on scikit-learn's 8x8 digits; stiff: seed 003's stiff toy ODE; "
                        "spheres, three_minima: seed 002's synthetic sets (default %(default)s)")
    p.add_argument("--method", type=method_spec, default=None,
                   help="torchdiffeq method, registered tableau or family spec (default dopri5; euler for "
                        "spheres and three_minima)")
    p.add_argument("--rtol", type=positive_float, default=None,
                   help="relative tolerance > 0 (default 1.4e-8 for digits, 1e-7 for stiff)")
    p.add_argument("--atol", type=positive_float, default=None,
                   help="absolute tolerance > 0 (default 1.4e-8 for digits, 1e-9 for stiff)")
    p.add_argument("--regularizer", type=regularizer_spec, action="append", default=[], metavar="NAME[:weight=W,...]",
                   help="step regularizer (repeatable, each name once); weight=W is a finite number >= 0, "
                        "start=A,end=B (both > 0) anneals exponentially over the epochs")
    p.add_argument("--step-size", type=positive_float, default=None,
                   help="digits: run --method on a fixed grid with this step (a family such as rk2 needs one)")
    p.add_argument("--schedule", type=schedule_spec, default=None, metavar="NAME[:option=V,...]",
                   help="digits: a solver schedule, e.g. smoothing:sigma=0.0125, switching:u=0.5|0.5125|0.4875, "
                        "step_adaption (lists use '|')")
    p.add_argument("--end-time", type=end_time_spec, default=None, metavar="NAME[:option=V,...]",
                   help="end-time sampler for training (seed 003, STEER), e.g. steer:b=0.5 draws T ~ U(t1 - b, "
                        "t1 + b) per training call, with 0 < b < |t1 - t0|; per_sample=true draws one T per sample; "
                        "evaluation integrates to t1. On the stiff task steer's default b is the authors' "
                        "dt - 0.001")
    p.add_argument("--epochs", type=positive_int, default=None, help="digits: epochs, >= 1 (default 15)")
    p.add_argument("--iterations", type=positive_int, default=None,
                   help="stiff: training iterations, >= 1 (default 3000, the authors' README)")
    p.add_argument("--stiffness-ratio", type=stiffness_ratio, default=None, metavar="R",
                   help="stiff: r in dy/dt = -r y + 3r - 2r e^-t, > 1 (default 1000)")
    p.add_argument("--variant", choices=["pairs_from_zero", "pairs_from_start"], default=None,
                   help="stiff: pairs_from_zero integrates every training pair over [0, dt] as the authors' code "
                        "does; pairs_from_start integrates each pair from its own start time (default "
                        "pairs_from_zero)")
    p.add_argument("--seed", type=_whole(0, MAX_SEED, "2**63 - 1"), default=0,
                   help="training seed, >= 0 (first seed with --seeds; default %(default)s)")
    p.add_argument("--seeds", type=positive_int, default=1, help="number of seeds for --compare, >= 1")
    p.add_argument("--compare", type=compare_list, default=None, metavar="V1,V2,...",
                   help="variants to compare, each 'vanilla' or names joined by '+': regularizers and at most one "
                        "end-time sampler, e.g. vanilla,error_estimate,stiffness,error_estimate+stiffness or "
                        "vanilla,steer (with --end-time steer:b=... for its options)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="batch size, >= 1 (default 128 for digits, 20 for stiff)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate > 0: Adam for digits (default 3e-3), RMSprop for stiff (default 1e-4)")
    p.add_argument("--nproc", type=positive_int, default=None, metavar="N",
                   help="digits: train data-parallel on N local processes (DistributedDataParallel), launched "
                        "through torchrun (python -m torch.distributed.run --standalone --nproc_per_node N); "
                        "--batch-size is the global batch, split evenly over them; 1 trains in this process. Under "
                        "torchrun itself (torchrun ... -m nde_plugins train) leave it out")
    p.add_argument("--backend", choices=BACKENDS, default=None,
                   help="process-group backend across processes (default: nccl for a model on CUDA, gloo otherwise; "
                        "the digits task trains on the CPU, so gloo)")
    p.add_argument("--adjoint", action="store_true",
                   help="digits, stiff: backpropagate with the adjoint method (odeint_adjoint); its backward field "
                        "evaluations are counted and plotted")
    p.add_argument("--plot", type=plot_path, default=None, metavar="PATH",
                   help="write a figure (.png, .pdf or .svg; needs the plots extra): loss, accuracy and NFE per "
                        "iteration, or with --compare the table as bar charts (mean +- std over seeds)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_train)
    return parser


def _fail(message: str, code: int = 2) -> int:
    print(message, file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (2 for a bad command line, never a traceback for one).

    An exception of another kind than the library raises for a refused value is a bug and propagates.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Under torchrun every rank says what failed, naming itself: torchrun stops the other ranks as soon
    # as one exits, so the first to fail may be the only one to speak.
    where = f" (rank {os.environ['RANK']})" if _torchrun_rank() else ""
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _fail(f"{exc.prog or parser.prog}{where}: error: {exc}")
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    args.argv = argv  # train --nproc hands it on to torchrun
    prog = f"{parser.prog} {args.command}"
    try:
        return args.func(args)
    except UsageError as exc:
        return _fail(f"{exc.prog or prog}{where}: error: {_one_line(exc)}")
    except _LIBRARY_ERRORS as exc:
        return _fail(f"{prog}{where}: error: {_one_line(exc)}")
    except KeyboardInterrupt:
        return _fail(f"{prog}: interrupted", 130)
    except BrokenPipeError:
        # The reader went away (`nde-plugins plugins | head`): stop quietly, without a second error at exit.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
