"""The argument parser's parts: one-line parse errors, --version, and subcommands with examples."""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Sequence
from typing import Any, NoReturn

from ._usage import UsageError

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
    "new": (
        "nde-plugins new acme-solvers",
        "nde-plugins new acme-noise --kinds diffusion,regularizer --dir packages",
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


def examples(command: str | None) -> str:
    """The "examples:" block that ends the help of ``command`` (None: the top-level help)."""
    return "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[command])


class Parser(argparse.ArgumentParser):
    """argparse, but a parse error is one line (no usage block) and is left to ``main`` to print."""

    def error(self, message: str) -> NoReturn:
        if message.endswith("expected one argument"):
            # argparse takes '-inf' or '-1e3' for an option; only '-1' and '-0.5' pass as negative numbers.
            message += "; write a value that starts with '-' as --option=VALUE"
        raise UsageError(f"{message} (see {self.prog} --help)", prog=self.prog)


def _version() -> str:
    """The installed distribution's version; the package's own where it runs from a source tree."""
    try:
        return importlib.metadata.version("nde_plugins")
    except importlib.metadata.PackageNotFoundError:
        from .. import __version__

        return __version__


class VersionAction(argparse.Action):
    """--version: looks the version up only when asked (argparse's own action formats it up front)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version of nde_plugins and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog} {_version()}")
        parser.exit()


def command(sub: Any, name: str, summary: str, description: str | None = None) -> argparse.ArgumentParser:
    """Subcommand ``name`` of the subparsers ``sub``: its help starts with ``summary`` and ends with examples."""
    return sub.add_parser(name, help=summary, description=description or summary, epilog=examples(name),
                          formatter_class=argparse.RawDescriptionHelpFormatter)
