"""What the example scripts and the CLI share: whole-number options, output paths, figure options."""

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


#: The figure formats matplotlib writes from a file's suffix.
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")
#: The longest file name most file systems take (bytes of the last path component).
MAX_NAME_BYTES = 255


def output_file(text: str, suffixes: tuple[str, ...], example: str) -> Path:
    """argparse type for a file a long run writes at its end: checked before the run starts.

    The suffix must be one of ``suffixes``, the path must not be a directory, its directory must
    exist and its name must fit a file system (``MAX_NAME_BYTES``); ``example`` words the fix.
    """
    path = Path(text)
    if path.suffix.lower() not in suffixes:
        raise argparse.ArgumentTypeError(f"{text!r} must end in {', '.join(suffixes)} (the suffix sets the "
                                         f"format), e.g. {example}")
    if len(path.name.encode()) > MAX_NAME_BYTES:  # first: asking the file system about it would raise
        raise argparse.ArgumentTypeError(f"the file name of {text[:40]!r}... is {len(path.name.encode())} bytes long; "
                                         f"file systems take at most {MAX_NAME_BYTES}: give a shorter name")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file name such as {text}/{example}")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"the directory {str(path.parent)!r} of {text!r} does not exist; "
                                         "create it first")
    return path


def figure_file(text: str) -> Path:
    """argparse type: where a figure goes (``output_file`` with the figure suffixes)."""
    return output_file(text, FIGURE_SUFFIXES, "figure.png")


def json_file(text: str) -> Path:
    """argparse type: where a JSON document goes (``output_file`` with ``.json``)."""
    return output_file(text, (".json",), "results.json")


def add_figure_options(parser: argparse.ArgumentParser, default: Path, quick: str) -> None:
    """``--quick`` (with the script's own ``quick`` help), ``--plot PATH`` and ``--no-plot``.

    A full run writes its figure to ``default`` (docs/figures/<script>.png); a quick run writes
    one only when ``--plot`` says where, so a smoke run never overwrites the committed figure.
    """
    parser.add_argument("--quick", action="store_true", help=f"{quick}; writes a figure only with --plot")
    parser.add_argument("--plot", metavar="PATH", type=figure_file,
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
