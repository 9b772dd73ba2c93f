"""How the command line refuses: ``UsageError`` and the one line it is printed on.

The library refuses a bad value with ``ValueError``, ``PluginError`` (and ``TypeError`` where a value
from the command line is handed over); the helpers here turn such a refusal into a ``UsageError``
or an argparse type error that names the argument, so that ``main`` prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..plugins import PluginError


class UsageError(Exception):
    """A bad command line. The message names the argument and the rule; ``main`` prints it on one line."""

    def __init__(self, message: str, prog: str | None = None) -> None:
        super().__init__(message)
        self.prog = prog


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (its lines joined by spaces); its type's name if it has none."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__


# What the library raises for a value it refuses. TypeError is only treated as the user's error where a
# value from the command line is handed over (``argument``); elsewhere it is a bug and propagates.
# UnknownPluginNameError is a ValueError; other LookupErrors (KeyError, IndexError) are bugs too.
LIBRARY_ERRORS = (ValueError, PluginError, FloatingPointError)
VALUE_ERRORS = (ValueError, TypeError, PluginError)


@contextlib.contextmanager
def argument(name: str) -> Iterator[None]:
    """Turn the library's refusal of a value taken from argument ``name`` into a ``UsageError`` naming it."""
    try:
        yield
    except UsageError:
        raise
    except VALUE_ERRORS as exc:
        raise UsageError(f"argument {name}: {one_line(exc)}") from exc


def as_argument_type(check: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse ``type=``: the library's refusal becomes argparse's 'argument NAME: message'."""

    def convert(text: str) -> Any:
        try:
            return check(text)
        except argparse.ArgumentTypeError:
            raise
        except VALUE_ERRORS as exc:
            raise argparse.ArgumentTypeError(one_line(exc)) from exc

    convert.__name__ = check.__name__
    convert.__doc__ = check.__doc__
    return convert


def _unused_field(t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - never solved
    return z


def check_block(name: str, /, **block: Any) -> None:
    """Build an ``ODEBlock(**block)`` on a field that is never solved; a refusal names argument ``name``.

    The block checks its method, options, regularizers, end time and schedule as it is built, so a
    command line the training would refuse is refused here, before any run starts.
    """
    from ..ode import ODEBlock

    with argument(name):
        ODEBlock(_unused_field, **block)


def write_figure(draw: Callable[[], None], path: str, quiet: bool = False) -> None:
    """Draw the --plot figure at ``path``, then say so unless ``quiet`` (--json output stays a document).

    A file that cannot be written is the user's error, named as --plot.
    """
    try:
        draw()
    except OSError as exc:
        raise UsageError(f"argument --plot: cannot write {path!r}: {exc.strerror or exc}") from exc
    if not quiet:
        print(f"figure written to {path}")
