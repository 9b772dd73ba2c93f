"""What the example scripts share: whole-number options, and their figure's options and path."""

from __future__ import annotations

import argparse
from pathlib import Path


def at_least_one(text: str) -> int:
    """argparse type: a whole number >= 1 (seeds, epochs, iterations, workers)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return value


def add_figure_options(parser: argparse.ArgumentParser, default: Path, quick: str) -> None:
    """``--quick`` (with the script's own ``quick`` help), ``--plot PATH`` and ``--no-plot``.

    A full run writes its figure to ``default`` (docs/figures/<script>.png); a quick run writes
    one only when ``--plot`` says where, so a smoke run never overwrites the committed figure.
    """
    parser.add_argument("--quick", action="store_true", help=f"{quick}; writes a figure only with --plot")
    parser.add_argument("--plot", metavar="PATH", type=Path,
                        help=f"the figure (default {default.name} in docs/figures; needs matplotlib)")
    parser.add_argument("--no-plot", action="store_true", help="write no figure")


def figure_path(parser: argparse.ArgumentParser, args: argparse.Namespace, default: Path) -> Path | None:
    """Where the figure goes (None: no figure); refuses ``--plot`` with ``--no-plot``, and a figure
    without matplotlib, before any run starts rather than after them."""
    if args.plot is not None and args.no_plot:
        parser.error("argument --no-plot: not allowed with --plot; give one of them")
    path = None if args.no_plot else args.plot or (None if args.quick else default)
    if path is not None:
        from ..plots import require_matplotlib

        try:
            require_matplotlib()
        except ImportError:
            parser.error("argument --plot: the figure needs matplotlib (pip install 'nde_plugins[plots]'); "
                         "or give --no-plot")
    return path
