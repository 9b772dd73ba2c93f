"""The seed examples run end to end (``--quick``, in a subprocess as a user runs them) and refuse bad arguments.

Each quick run trains one epoch of every variant on the digits task and writes its figure; the full
runs and their numbers are in the README. Only the examples without a test of their own are here
(``tests/test_compose_all.py`` runs ``examples/compose_all.py``).
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytest.importorskip("sklearn", reason="the digits examples need scikit-learn (the tasks extra)")


def run_example(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name.removesuffix('.py')}", EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000  # three panels of bars, not an empty canvas


def test_regularizers_digits_quick_prints_the_table_and_writes_the_figure(tmp_path):
    pytest.importorskip("matplotlib")
    figure = tmp_path / "regularizers.png"
    done = run_example("regularizers_digits.py", "--quick", "--plot", str(figure))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for variant in ("vanilla", "error_estimate (0.1)", "stiffness (0.0285)", "error_estimate + stiffness"):
        assert any(line.startswith(variant + " ") for line in lines), variant
    assert sum("vs vanilla: prediction NFE" in line for line in lines) == 3
    assert_png(figure)


@pytest.mark.parametrize("name", ["regularizers_digits.py", "compose_all.py"])
@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0"], "argument --seeds: must be a whole number >= 1, got '0'"),
    (["--epochs", "two"], "argument --epochs: must be a whole number >= 1, got 'two'"),
    (["--plot", "x.png", "--no-plot"], "argument --no-plot: not allowed with --plot"),
])
def test_examples_refuse_bad_arguments_in_one_line(name, argv, message, capsys):
    module = load_example(name)
    with pytest.raises(SystemExit) as exit_info:
        module.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "Traceback" not in "\n".join(err)
