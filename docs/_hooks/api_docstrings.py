"""MkDocs hook: every public object the API reference renders must have a docstring.

mkdocstrings silently renders an undocumented object as a bare signature. This hook reads each
``::: dotted.path`` directive of a page, imports the object, and logs a warning (which fails a
``--strict`` build) when it, or a member the directive lists under ``options: members:``, has no
docstring of its own. A module target is checked with every name in its ``__all__``.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any

from mkdocs.plugins import get_plugin_logger

log = get_plugin_logger("api_docstrings")

_DIRECTIVE = re.compile(r"^::: +(?P<path>[\w.]+)\s*$")
_MEMBERS = re.compile(r"^\s+members:\s*\[(?P<names>[^\]]*)\]\s*$")


def _resolve(path: str) -> Any:
    """The object at ``path``: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"cannot import any prefix of {path!r}")


def _own_docstring(obj: Any) -> str | None:
    """The object's own docstring: a class does not count its base class's."""
    if isinstance(obj, property):
        obj = obj.fget
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
    else:
        doc = getattr(obj, "__doc__", None)
    return doc if isinstance(doc, str) and doc.strip() else None


def _needs_docstring(obj: Any) -> bool:
    """Classes, functions, methods and properties; constants and type aliases are described in prose."""
    return inspect.isclass(obj) or inspect.isroutine(obj) or isinstance(obj, property) or inspect.ismodule(obj)


def _check(path: str, obj: Any, page: str) -> None:
    if _needs_docstring(obj) and _own_docstring(obj) is None:
        log.warning(f"{page}: {path} is in the API reference but has no docstring; document it")


def _members(lines: list[str], start: int) -> list[str]:
    """The names of an ``options: members: [a, b]`` list in the indented block after a directive."""
    names: list[str] = []
    for line in lines[start:]:
        if line.strip() and not line.startswith(" "):
            break
        match = _MEMBERS.match(line)
        if match:
            names += [n.strip() for n in match["names"].split(",") if n.strip()]
    return names


def on_page_markdown(markdown: str, page, config, files) -> str:
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if not match:
            continue
        path = match["path"]
        try:
            obj = _resolve(path)
        except (ImportError, AttributeError) as exc:
            log.warning(f"{page.file.src_path}: cannot import {path}: {exc}")
            continue
        _check(path, obj, page.file.src_path)
        names = list(getattr(obj, "__all__", ())) if inspect.ismodule(obj) else []
        for name in names + _members(lines, i + 1):
            member = inspect.getattr_static(obj, name, None) if inspect.isclass(obj) else getattr(obj, name, None)
            if member is None:
                log.warning(f"{page.file.src_path}: {path} has no member {name!r}")
                continue
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            _check(f"{path}.{name}", member, page.file.src_path)
    return markdown
