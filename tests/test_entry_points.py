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
