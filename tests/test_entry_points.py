"""Discovery of the third-party plugin package in tests/fixtures/example_plugin, in fresh interpreters.

The README's test command installs that package into the test environment; if it is missing this
module fails (it does not skip), since entry-point discovery is a promise of the library.
"""

import json
import os
import subprocess
import sys

import pytest

FIXTURE = "nde-plugins-example"


def run(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_fixture_package_is_installed():
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(FIXTURE)
    except PackageNotFoundError:
        pytest.fail(f"{FIXTURE} is not installed; run `pip install -e tests/fixtures/example_plugin` "
                    "(the README's test command does)")


def test_plain_torchdiffeq_runs_a_third_party_tableau_after_import():
    out = run(
        "import torch, torchdiffeq, nde_plugins\n"
        "y = torchdiffeq.odeint(lambda t, y: -y, torch.ones(1, dtype=torch.float64),"
        " torch.tensor([0.0, 1.0], dtype=torch.float64), method='ssprk3', options={'step_size': 0.01})\n"
        "print(abs(y[-1].item() - 0.36787944117144233))\n"
        "y = torchdiffeq.odeint(lambda t, y: -y, torch.ones(1), torch.tensor([0.0, 1.0]),"
        " method='generic2', options={'alpha': 0.5, 'step_size': 0.01})\n"
        "print(abs(y[-1].item() - 0.36787944117144233))\n"
    )
    errors = [float(x) for x in out.split()]
    assert errors[0] < 1e-6 and errors[1] < 1e-4


def test_cli_lists_the_third_party_source():
    out = subprocess.run([sys.executable, "-m", "nde_plugins.cli", "plugins", "--json"], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    rows = {row["name"]: row for row in json.loads(out)}
    assert rows["ssprk3"]["source"] == FIXTURE and rows["ssprk3"]["kind"] == "tableau"
    assert rows["generic2"]["source"] == FIXTURE
    assert rows["rk4_uv"]["source"] == "nde_plugins"


def test_environment_variable_disables_third_party_plugins():
    out = run("import nde_plugins as n; print('ssprk3' in n.get_registry().names('tableau'))",
              NDE_PLUGINS_DISABLE_ENTRY_POINTS="1")
    assert out.strip() == "False"


def test_import_does_not_load_plugins():
    out = run("import nde_plugins, nde_plugins.plugins as p, sys\n"
              "print(p._registry is None, 'nde_plugins_example' in sys.modules)")
    assert out.strip() == "True False"


def fake_distribution(root, name: str, module_source: str) -> None:
    """An installed-looking distribution ``name`` on ``root`` whose module ``name`` is an nde_plugins entry point."""
    (root / f"{name}.py").write_text(module_source)
    info = root / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[nde_plugins]\nplugin = {name}\n")


def test_a_plugin_calling_sys_exit_does_not_end_the_program(tmp_path):
    fake_distribution(tmp_path, "nde_quitter", "import sys\nsys.exit(5)\n")
    out = run(
        "import warnings, nde_plugins as n\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    names = n.get_registry().names('tableau')\n"
        "print('ssprk3' in names, 'rk4_uv' in names)\n"
        "print([e.message for e in n.get_registry().load_errors if e.source.distribution == 'nde_quitter'])\n"
        "print(any('nde_quitter' in str(w.message) for w in caught))\n",
        PYTHONPATH=str(tmp_path),
    )
    loaded, errors, warned = out.strip().splitlines()
    assert loaded == "True True" and "called sys.exit(5)" in errors and warned == "True"


def test_warnings_as_errors_leave_every_good_plugin_loaded(tmp_path):
    fake_distribution(tmp_path, "nde_broken", "raise ImportError('missing dependency')\n")
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c",
         "import nde_plugins as n\n"
         "try:\n"
         "    n.get_registry().load()\n"
         "except n.PluginWarning as w:\n"
         "    print('raised:', 'nde_broken' in str(w))\n"
         "print('ssprk3' in n.get_registry().names('tableau'), len(n.get_registry().load_errors))\n"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["raised: True", "True 1"]


def test_unmarked_hook_in_an_installed_package_is_listed_as_a_load_error(tmp_path):
    fake_distribution(tmp_path, "nde_unmarked", "def register_tableaux(register):\n    pass\n")
    result = subprocess.run([sys.executable, "-m", "nde_plugins.cli", "plugins", "--json"], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    (failed,) = [row for row in json.loads(result.stdout) if row["kind"] == "load_error"]
    assert failed["source"] == "nde_unmarked" and "@nde_plugins.hookimpl" in failed["error"]
    assert "PluginWarning" in result.stderr and "nde_unmarked" in result.stderr


def test_environment_variable_spellings_in_a_fresh_interpreter():
    code = "import nde_plugins as n; print('ssprk3' in n.get_registry().names('tableau'))"
    assert run(code, NDE_PLUGINS_DISABLE_ENTRY_POINTS=" TRUE ").strip() == "False"
    assert run(code, NDE_PLUGINS_DISABLE_ENTRY_POINTS="off").strip() == "True"
    result = subprocess.run([sys.executable, "-m", "nde_plugins.cli", "plugins"], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "NDE_PLUGINS_DISABLE_ENTRY_POINTS": "maybe"})
    assert result.returncode == 2
    assert "NDE_PLUGINS_DISABLE_ENTRY_POINTS='maybe' is not understood" in result.stderr
