"""nde-plugins new: the package it writes installs and passes its own contract tests with no edit."""

import os
import subprocess
import sys

import pytest

from nde_plugins.cli import main
from nde_plugins.scaffold import KINDS, write_package


def install_and_test(root, tmp_path):
    """pip-install the package into a folder of its own (the test environment stays as it is), run its tests."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(root)], check=True, capture_output=True, text=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", str(root / "tests")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("kinds", [KINDS, ("diffusion",)], ids=["every kind", "one kind"])
def test_a_scaffolded_package_installs_and_passes_its_own_contract_tests(tmp_path, kinds):
    root = write_package("acme-solvers", tmp_path, kinds)
    result = install_and_test(root, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    checked = [line for line in result.stdout.splitlines() if line.startswith("ok   ")]
    assert len(checked) == len(kinds) and all("acme-solvers 0.1.0" in line for line in checked)


def test_new_writes_the_package_and_refuses_what_it_cannot_write(tmp_path, capsys):
    assert main(["new", "acme-noise", "--kinds", "diffusion,regularizer", "--dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in (tmp_path / "acme-noise" / "acme_noise").iterdir()) == [
        "__init__.py", "diffusions.py", "regularizers.py"]
    assert "pip install -e" in capsys.readouterr().out
    for argv, words in ((["new", "acme-noise", "--dir", str(tmp_path)], "exists already"),
                        (["new", "Acme Noise", "--dir", str(tmp_path)], "is not a package name"),
                        (["new", "acme-x", "--kinds", "tableau,solver", "--dir", str(tmp_path)], "--kinds"),
                        (["new", "acme-x", "--dir", str(tmp_path / "missing")], "does not exist")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


#: One fault each, written into a scaffolded package: (kind, text replaced, its replacement, the rule reported).
FAULTS = {
    "regularizer without gradient": ("regularizer", "return (errors.square() * steps).sum()",
                                     "return torch.tensor(1.0)", "carries no gradient"),
    "sampler ignoring its generator": ("end_time", "generator=generator, dtype", "generator=None, dtype",
                                       "moved torch's global generator"),
    "diffusion of the wrong shape": ("diffusion", "torch.full_like(h, self.sigma)",
                                     "torch.full((h.shape[0], 1), self.sigma)", "has shape (1, 1)"),
    "pair whose estimate controls nothing": ("tableau", "    order=3,\n",
                                             "    order=3,\n    b_hat=[1 / 6 + 1e-6, 2 / 3 - 1e-6, 1 / 6],\n"
                                             "    embedded_order=1,\n",
                                             "the embedded pair does not control the error"),
    "module that cannot be imported": ("regularizer", "import torch\n", "import torch\nimport acme_no_such_module\n",
                                       "skipped on loading"),
    "schedule alternating in evaluation": ("schedule", "if not state.training or state.iteration % self.every:",
                                           "self.calls = getattr(self, 'calls', 0) + 1\n        if self.calls % 2:",
                                           "deterministic in evaluation"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_package_whose_plugin_breaks_the_contract_fails_the_check_naming_the_plugin(tmp_path, fault):
    kind, old, new, rule = FAULTS[fault]
    root = write_package("acme-faulty", tmp_path, (kind,))
    stem = {"end_time": "end_times", "tableau": "tableaux"}.get(kind, kind)
    module = next((root / "acme_faulty").glob(f"{stem}*.py"))
    text = module.read_text()
    assert old in text
    module.write_text(text.replace(old, new))
    result = install_and_test(root, tmp_path)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "(acme-faulty 0.1.0)" in result.stdout and rule in result.stdout  # the plugin, named by its package
