"""``nde-plugins plugins``: every registered plugin, and the plugins that failed to load."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .. import get_registry
from ..plugins import KINDS
from ..tableaux import Tableau, TableauFamily
from ._args import plugin_kind
from ._parser import command
from ._usage import one_line


def _describe(obj: object) -> str:
    """One line about a registered object: a tableau's order, a family's parameters, else its docstring's first line."""
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
        return f"(no description: {type(exc).__name__}: {one_line(exc)})"


def cmd_plugins(args: argparse.Namespace) -> int:
    """Print the registrations of ``args.kind`` (all kinds when None) as a table or, with --json, a list."""
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


def add_parser(sub: Any) -> None:
    """The ``plugins`` subcommand and its arguments."""
    p = command(sub, "plugins", "list registered plugins of every kind and plugins that failed to load")
    p.add_argument("--kind", type=plugin_kind, default=None, metavar="KIND",
                   help=f"list only plugins of this kind: {', '.join(KINDS)} (plugins that failed to load are "
                        "always listed)")
    p.add_argument("--json", action="store_true", help="print a JSON list of objects (kind, name, source, ...)")
    p.set_defaults(func=cmd_plugins)
