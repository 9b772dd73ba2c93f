"""``nde-plugins new NAME``: write a plugin package that installs and passes its own contract tests."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..scaffold import KINDS, check_kinds, check_name, write_package
from ._parser import command
from ._usage import UsageError


def cmd_new(args: argparse.Namespace) -> int:
    """Write the package and say how to install and test it."""
    try:
        check_name(args.name)
    except ValueError as exc:
        raise UsageError(f"argument NAME: {exc}") from exc
    try:
        kinds = check_kinds(args.kinds)
    except ValueError as exc:
        raise UsageError(f"argument --kinds: {exc}") from exc
    try:
        root = write_package(args.name, Path(args.dir), kinds)
    except (FileExistsError, FileNotFoundError) as exc:
        raise UsageError(f"argument NAME: {exc}") from exc
    print(f"wrote {root} ({', '.join(kinds)})")
    print(f'next: cd {root} && pip install -e ".[test]" && pytest')
    return 0


def _kinds(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_parser(sub: Any) -> None:
    """The ``new`` subcommand and its arguments."""
    p = command(sub, "new", "write a plugin package (one working plugin per kind, contract tests, tox.ini)")
    p.add_argument("name", metavar="NAME",
                   help="the distribution name, e.g. acme-solvers (the folder it is written to)")
    p.add_argument("--kinds", type=_kinds, default=list(KINDS), metavar="K1,K2",
                   help=f"the plugin kinds to include, comma-separated (default all: {','.join(KINDS)})")
    p.add_argument("--dir", default=".", metavar="PARENT", help="the folder to write the package in (default: here)")
    p.set_defaults(func=cmd_new)
