"""The documentation site: it builds with ``mkdocs build --strict``, and every code block in it runs.

Code blocks are checked by language, so the docs cannot drift from the code:

- ``python``: the blocks of one page run in order in one namespace (a page may build on its earlier
  blocks), with ``--8<--`` snippet lines replaced by the files they include;
- ``bash``: every command is checked: ``nde-plugins plugins|tableau|solve`` run, ``train`` and
  ``check`` go through the CLI's parser (which looks up every name and spec), example and benchmark
  scripts must exist and define every ``--option`` used, ``pip install`` must name files and extras
  that exist;
- ``toml``: parses; ``text``: output and synopses, not run.

A block opts out only with ``<!-- not-run: reason -->`` on the line before it. A fence without a
language, or in a language not listed here, fails: every block must be one of these kinds.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shlex
import subprocess
import sys
import types
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

import nde_plugins as nde

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: TOML blocks and extras go unchecked
    tomllib = None

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_hooks" not in p.parts)
LANGUAGES = ("python", "bash", "toml", "text")

_FENCE_OPEN = re.compile(r"^```(?P<lang>\S*)\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(?P<reason>\S.*?)\s*-->$")
_SNIPPET = re.compile(r'^--8<--\s+"(?P<path>[^":]+)(?::(?P<section>[\w-]+))?"\s*$')
_SECTION_MARK = re.compile(r"--8<--\s+\[(?P<end>start|end):(?P<name>[\w-]+)\]")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None  # the not-run reason, if any

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def _include(path: str, section: str | None) -> str:
    """What a pymdownx.snippets line includes: the file, or one section of it, without section markers."""
    target = ROOT / path
    assert target.is_file(), f"snippet {path!r} does not exist"
    lines = target.read_text().splitlines()
    if section is not None:
        marks = [i for i, line in enumerate(lines) if (m := _SECTION_MARK.search(line)) and m["name"] == section]
        assert len(marks) == 2, f"snippet {path!r} has no section {section!r} (start and end markers)"
        lines = lines[marks[0] + 1:marks[1]]
    return "\n".join(line for line in lines if not _SECTION_MARK.search(line))


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page``, snippets expanded."""
    out: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE_OPEN.match(lines[i])
        if not match:
            i += 1
            continue
        start, lang = i, match["lang"]
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"{page.relative_to(ROOT)}:{start + 1}: unclosed code fence"
        body = []
        for line in lines[start + 1:end]:
            snippet = _SNIPPET.match(line)
            body.append(_include(snippet["path"], snippet["section"]) if snippet else line)
        previous = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        skip = _NOT_RUN.match(previous)
        out.append(Block(page, start + 1, lang, "\n".join(body) + "\n", skip["reason"] if skip else None))
        i = end + 1
    return out


ALL_BLOCKS = [b for page in PAGES for b in blocks(page)]


def _pages_with(lang: str) -> list[Path]:
    return sorted({b.page for b in ALL_BLOCKS if b.lang == lang and b.skip is None})


def _page_id(page: Path) -> str:
    return str(page.relative_to(DOCS))


# ------------------------------------------------------------------------------------------------
# The site


def test_the_docs_have_pages_and_code():
    assert (DOCS / "index.md") in PAGES and len(PAGES) >= 20
    assert sum(b.lang == "python" for b in ALL_BLOCKS) >= 20


def test_site_builds_strictly(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        if importlib.util.find_spec(module.split(".")[0]) is None or importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (the docs extra: pip install -e '.[docs]')")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "WARNING" not in result.stderr, result.stderr[-4000:]
    site = tmp_path / "site"
    assert (site / "index.html").is_file() and (site / "api" / "solving" / "index.html").is_file()
    # The plugin-author pages carry the sample package's code, included from its files.
    page = re.sub(r"<[^>]+>", "", (site / "plugins" / "end-times" / "index.html").read_text())
    assert "class SteerBelow:" in page


def test_every_block_has_a_known_language():
    unknown = [f"{b.where} ({b.lang or 'no language'})" for b in ALL_BLOCKS if b.lang not in LANGUAGES]
    assert not unknown, f"code blocks need one of {LANGUAGES}: {unknown}"


def test_opting_out_is_rare_and_explained():
    skipped = [b for b in ALL_BLOCKS if b.skip is not None]
    assert all(len(b.skip) >= 10 for b in skipped), [b.where for b in skipped]
    assert len(skipped) <= 3, [b.where for b in skipped]


# ------------------------------------------------------------------------------------------------
# Python blocks


@pytest.mark.parametrize("page", _pages_with("python"), ids=_page_id)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a block that writes a file writes it here
    registry = nde.get_registry()
    plugins_before = registry.plugin_names()
    # The page's code runs as a module of its own, as a reader's script would: classes it defines can be
    # pickled (a whole-model torch.save) because the module is importable while it runs.
    module = types.ModuleType(f"docs_{page.stem.replace('-', '_')}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace: dict = module.__dict__
    for block in blocks(page):
        if block.lang != "python" or block.skip is not None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # code a reader copies should run without warnings
            # ... of ours: torch.compile's own machinery warns about torch internals (torch.jit on import,
            # tensor attributes dynamo reads while it traces), which a reader's code cannot change.
            warnings.filterwarnings("ignore", module=r"torch\.")
            try:
                exec(compile(block.code, block.where, "exec"), namespace)
            except Exception as exc:
                pytest.fail(f"{block.where}: {type(exc).__name__}: {exc}")
    assert registry.plugin_names() == plugins_before, f"{_page_id(page)} left plugins registered"


# ------------------------------------------------------------------------------------------------
# Shell blocks

CLI_RUN = ("plugins", "tableau", "solve")  # cheap: run in full
CLI_PARSE = ("train", "check", "new")  # minutes of training, or files written: parsed, which checks every option,
# name and spec


def _commands(block: Block) -> list[list[str]]:
    out = []
    for line in block.code.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        for part in line.split("&&"):
            out.append(shlex.split(part))
    return out


def _check_nde_plugins(argv: list[str], where: str, capsys) -> None:
    from nde_plugins.cli import UsageError, build_parser, main

    assert argv and argv[0] in CLI_RUN + CLI_PARSE, f"{where}: unknown command nde-plugins {argv[:1]}"
    if argv[0] in CLI_RUN:
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 0, f"{where}: nde-plugins {shlex.join(argv)} exited {code}: {captured.err}"
        assert captured.out.strip(), f"{where}: nde-plugins {shlex.join(argv)} printed nothing"
        return
    try:
        build_parser().parse_args(argv)
    except (UsageError, SystemExit) as exc:
        pytest.fail(f"{where}: nde-plugins {shlex.join(argv)} does not parse: {exc}")


def _check_script(argv: list[str], where: str) -> None:
    script = ROOT / argv[1]
    assert script.is_file(), f"{where}: {argv[1]} does not exist"
    # Options may be defined in the script or in the shared helper module beside it.
    sources = script.read_text() + "".join(p.read_text() for p in script.parent.glob("_*.py"))
    for arg in argv[2:]:
        if arg.startswith("--"):
            option = arg.split("=", 1)[0]
            assert f'"{option}"' in sources, f"{where}: {argv[1]} has no option {option}"


def _check_pip_install(argv: list[str], where: str) -> None:
    args = argv[argv.index("install") + 1:]
    for i, arg in enumerate(args):
        if arg == "-r":
            assert (ROOT / args[i + 1]).is_file(), f"{where}: {args[i + 1]} does not exist"
        elif arg == "-e":
            match = re.fullmatch(r"(?P<path>[^\[]+)(\[(?P<extras>[^\]]*)\])?", args[i + 1])
            project = ROOT / match["path"] / "pyproject.toml"
            assert project.is_file(), f"{where}: {match['path']} is not a project"
            if tomllib is None:
                continue
            declared = tomllib.loads(project.read_text())["project"].get("optional-dependencies", {})
            for extra in filter(None, (match["extras"] or "").split(",")):
                assert extra in declared, f"{where}: {match['path']} has no extra {extra!r}"


@pytest.mark.parametrize("page", _pages_with("bash"), ids=_page_id)
def test_shell_blocks_are_valid_commands(page, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for block in blocks(page):
        if block.lang != "bash" or block.skip is not None:
            continue
        for argv in _commands(block):
            if argv[0] == "nde-plugins":
                _check_nde_plugins(argv[1:], block.where, capsys)
            elif argv[0] == "python" and len(argv) > 1 and argv[1].endswith(".py"):
                _check_script(argv, block.where)
            elif argv[:4] == ["python", "-m", "pip", "install"]:
                _check_pip_install(argv, block.where)
            elif argv[:3] == ["python", "-m", "pytest"]:
                assert (ROOT / "tests").is_dir()
            else:
                pytest.fail(f"{block.where}: no check for {shlex.join(argv)!r}; give the block a "
                            "'<!-- not-run: reason -->' line if it cannot be checked")


# ------------------------------------------------------------------------------------------------
# TOML blocks and the docstring hook


@pytest.mark.parametrize("block", [b for b in ALL_BLOCKS if b.lang == "toml"], ids=lambda b: b.where)
def test_toml_blocks_parse(block):
    if tomllib is None:
        pytest.skip("tomllib needs Python >= 3.11")
    tomllib.loads(block.code)


def _hook_module():
    spec = importlib.util.spec_from_file_location("api_docstrings", DOCS / "_hooks" / "api_docstrings.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _FakePage:
    class file:  # noqa: N801 - mimics mkdocs' page.file.src_path
        src_path = "api/fake.md"


def test_docstring_hook_flags_undocumented_api_objects(caplog):
    pytest.importorskip("mkdocs")
    hook = _hook_module()
    page = (
        "::: nde_plugins.odeint\n\n"
        "::: nde_plugins.stats\n    options:\n      members: [rms]\n\n"  # a helper without a docstring
        "::: nde_plugins.no_such_thing\n"
    )
    with caplog.at_level(logging.WARNING):
        assert hook.on_page_markdown(page, _FakePage(), None, None) == page
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("nde_plugins.stats.rms" in m and "no docstring" in m for m in messages), messages
    assert any("cannot import nde_plugins.no_such_thing" in m for m in messages), messages
    assert not any("nde_plugins.odeint " in m for m in messages), messages


def test_docstring_hook_flags_undocumented_class_members(caplog, monkeypatch):
    pytest.importorskip("mkdocs")
    import torch

    hook = _hook_module()

    def identity(x):
        return x

    @dataclass
    class Fake(torch.nn.Module):
        """A class in the reference."""

        transform: object = identity  # a dataclass field, described in the class docstring: not flagged

        def documented(self):
            """Has one."""

        def bare(self):
            pass

        @property
        def bare_property(self):
            return 1

        @staticmethod
        def bare_static():
            pass

        def _private(self):
            pass

    module = type(sys)("_fake_api")
    module.Fake, module.__all__ = Fake, ["Fake"]
    monkeypatch.setitem(sys.modules, "_fake_api", module)
    page = (
        "::: _fake_api\n\n"  # the module: each class of __all__, member by member
        "::: _fake_api.Fake\n    options:\n      members: [documented, bare_property]\n"  # only the listed ones
    )
    with caplog.at_level(logging.WARNING):
        hook.on_page_markdown(page, _FakePage(), None, None)
    flagged = sorted(re.findall(r"(_fake_api\.[\w.]+) is in the API reference but has no docstring",
                                "\n".join(r.getMessage() for r in caplog.records)))
    # Inherited members (forward, train, ...), dataclass fields and private names are not checked.
    assert flagged == ["_fake_api.Fake.bare", "_fake_api.Fake.bare_property", "_fake_api.Fake.bare_property",
                       "_fake_api.Fake.bare_static"], flagged
