"""Argument types: each checks one command-line value as it is parsed and names the rule it broke.

A type raises ``argparse.ArgumentTypeError``, which argparse prints as 'argument NAME: message'.
Names and specs are looked up in the registry here, so an unknown plugin is refused before any
solve or training starts; rules that tie several arguments together are the commands' own.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import math
from collections.abc import Callable
from typing import Any

import torch

from .. import get_registry, get_tableau, parse_method_spec, resolve_method, torchdiffeq_method_names
from ..experiments.script import FIGURE_SUFFIXES, figure_file
from ..plugins import KINDS
from ._plugin_specs import read_end_time, read_regularizer, read_schedule
from ._usage import VALUE_ERRORS, as_argument_type, one_line

#: torch seeds are 64-bit integers; `train` uses seeds --seed .. --seed + --seeds - 1.
MAX_SEED = 2**63 - 1
#: `tableau --sweep` draws at most this many members: more curves overlap into an unreadable figure.
MAX_SWEEP = 16
#: Figure formats --plot writes (matplotlib picks the format from the suffix).
PLOT_SUFFIXES = FIGURE_SUFFIXES


def _number(text: str) -> float:
    """``text`` as a float; NaN where it is no number, so that one finiteness check refuses both."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def _finite(text: str, rule: str) -> float:
    value = _number(text)
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


def whole_number_in(low: int, high: int | None = None, high_text: str = "") -> Callable[[str], int]:
    """The type of a whole number in ``[low, high]`` (``>= low`` without ``high``; ``high_text`` words ``high``)."""
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


positive_int = whole_number_in(1)
#: A training seed: a whole number a torch generator takes.
seed = whole_number_in(0, MAX_SEED, "2**63 - 1")


def stiffness_ratio(text: str) -> float:
    """A finite number > 1 (the fast rate r of the stiff toy against its slow rate 1)."""
    value = _finite(text, "> 1")
    if value <= 1:
        raise argparse.ArgumentTypeError(
            f"must be a finite number > 1, got {text!r}: r is the fast decay rate against the slow rate 1 "
            "(the paper uses 1000)"
        )
    return value


@as_argument_type
def method_spec(text: str) -> str:
    """A torchdiffeq method name, a registered tableau or family, or a spec ``NAME:param=value,...``."""
    name, _ = parse_method_spec(text)
    if name not in torchdiffeq_method_names():
        get_tableau(text)  # first: names the family's parameters and checks its domain rules
    resolve_method(text)
    return text


@as_argument_type
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
        number = _number(part)
        if not math.isfinite(number):
            raise argparse.ArgumentTypeError(f"{text!r}: {label} must be a finite number, got {part.strip()!r}")
        ends.append(number)
    try:
        count = whole_number_in(2, MAX_SWEEP)(parts[2].strip())
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
    figure_file(text)  # the one rule for output paths (experiments.script), checked before any training
    return text


def plugin_kind(text: str) -> str:
    """A plugin kind of the registry (``tableau``, ``diffusion``, ...)."""
    if text in KINDS:
        return text
    close = difflib.get_close_matches(text, KINDS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise argparse.ArgumentTypeError(f"unknown plugin kind {text!r}{hint} (kinds: {', '.join(KINDS)})")


def _checked_spec(parse: Callable[[str], Any], name: str, doc: str) -> Callable[[str], str]:
    """An argparse ``type=`` for a plugin spec: ``parse`` checks it fully; the text itself is kept."""

    def check(text: str) -> str:
        try:
            parse(text)
        except VALUE_ERRORS as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {one_line(exc)}") from exc
        return text

    check.__name__, check.__doc__ = name, doc
    return check


regularizer_spec = _checked_spec(
    lambda text: read_regularizer(text, epochs=1), "regularizer_spec",
    "``NAME[:weight=W,option=V,...]`` or ``NAME:start=A,end=B``; checked fully, parsed again per run.")
end_time_spec = _checked_spec(
    read_end_time, "end_time_spec",
    "``NAME[:option=V,...]``: a registered end-time sampler and its options, checked fully.")
schedule_spec = _checked_spec(
    read_schedule, "schedule_spec",
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


#: torch's intra-op threads per process for ``train`` and ``check``. The embedded models are small (a
#: solve is hundreds of small kernels on tensors of a few thousand numbers): more threads mostly add
#: synchronization, and on a machine where another process is busy every extra thread waits for a
#: core (the digits run took 133 s instead of 7 s with torch's default on 2 busy cores).
DEFAULT_THREADS = 1


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's threads per process, set before training and printed in the run header."""
    parser.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS, metavar="N",
                        help=f"torch's threads per process (default {DEFAULT_THREADS}: the embedded models are "
                             "small, and more threads mostly add synchronization); printed in the run header")


def use_threads(args: argparse.Namespace) -> None:
    """Set torch's thread count from ``--threads`` (every rank of a --nproc run sets its own)."""
    torch.set_num_threads(args.threads)
