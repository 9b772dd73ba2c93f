"""MkDocs hook: every public object the API reference renders must have a docstring.

mkdocstrings silently renders an undocumented object as a bare signature, and leaves an
undocumented class member out altogether. This hook reads each ``::: dotted.path`` directive of a
page, imports the object, and logs a warning (which fails a ``--strict`` build) for every object
below without a docstring of its own:

- the target itself;
- for a module target, the names its directive lists under ``options: members:``, else every name
  in its ``__all__``, else its public objects defined there;
- for each class among these (or the target class), its public methods and properties defined on
  the class itself (not inherited, not dataclass fields), or, for a class target with a
  ``members:`` list, only those: the list applies to the directive's own object, as in mkdocstrings.

Attributes and constants are left to the prose.
"""

from __future__ import annotations

import dataclasses
import functools
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
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        obj = obj.fget
    if isinstance(obj, functools.cached_property):
        obj = obj.func
    if inspect.isclass(obj):
        doc = obj.__dict__.get("__doc__")
    else:
        doc = getattr(obj, "__doc__", None)
    return doc if isinstance(doc, str) and doc.strip() else None


def _needs_docstring(obj: Any) -> bool:
    """Classes, functions, methods and properties; constants and type aliases are described in prose."""
    return (
        inspect.isclass(obj)
        or inspect.isroutine(obj)
        or isinstance(obj, (property, functools.cached_property, staticmethod, classmethod))
        or inspect.ismodule(obj)
    )


def _check(path: str, obj: Any, page: str) -> None:
    if _needs_docstring(obj) and _own_docstring(obj) is None:
        log.warning(f"{page}: {path} is in the API reference but has no docstring; document it")


def _class_members(cls: type) -> list[str]:
    """The public names a class defines itself that need a docstring, dataclass fields excluded."""
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    return [
        name
        for name, value in vars(cls).items()
        if not name.startswith("_") and name not in fields and _needs_docstring(value)
    ]


def _module_names(module: Any) -> list[str]:
    """What a module directive without a ``members:`` list renders: ``__all__``, else its own public objects."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == module.__name__
    ]


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
        src = page.file.src_path
        _check(path, obj, src)
        listed = _members(lines, i + 1)
        if inspect.isclass(obj):
            rendered = [(path, obj)]
        else:
            rendered = []
            for name in listed or (_module_names(obj) if inspect.ismodule(obj) else []):
                member = getattr(obj, name, None)
                if member is None:
                    log.warning(f"{src}: {path} has no member {name!r}")
                    continue
                _check(f"{path}.{name}", member, src)
                rendered.append((f"{path}.{name}", member))
        for cls_path, cls in rendered:
            if not inspect.isclass(cls):
                continue
            for name in (listed if cls is obj and listed else _class_members(cls)):
                member = inspect.getattr_static(cls, name, None)
                if member is None:
                    log.warning(f"{src}: {cls_path} has no member {name!r}")
                    continue
                _check(f"{cls_path}.{name}", member, src)
    return markdown
