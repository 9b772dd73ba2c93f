"""The seed examples run end to end (``--quick``, in a subprocess as a user runs them) and refuse bad arguments.

Each quick run trains one epoch of every variant on the digits task and writes its figure; the full
runs and their numbers are in the README. Only the examples without a test of their own are here
(``tests/test_compose_all.py`` runs ``examples/compose_all.py``). Every other example's figure is
drawn from a small made-up result, in well under a second, so that its drawing code is covered
without its minutes of training.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

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
    sys.modules[spec.name] = module  # dataclasses of the example look their module up while it loads
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


def test_regularizers_table_quick_prints_both_tables_beside_the_paper_and_draws_both_figures(tmp_path):
    pytest.importorskip("matplotlib")
    done = run_example("regularizers_table.py", "--quick", "--plot", str(tmp_path / "table.png"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for method in ("vanilla", "STEER", "TayNODE", "SRNODE", "ERNODE", "STEER + SRNODE", "STEER + ERNODE",
                   "SRNODE + ERNODE"):
        assert sum(line.split("  ")[0] == method and " here " in line for line in lines) == 2, method  # a row per task
    assert sum(line.strip().startswith("paper") for line in lines) == 16
    assert sum("(paper " in line and "training time x" in line for line in lines) == 14
    for task in ("digits", "timeseries"):
        assert_png(tmp_path / f"table_{task}.png")


@pytest.mark.parametrize("argv, message", [
    (["--tasks", "mnist"], "--tasks: choose among digits, timeseries"),
    (["--seeds", "0"], "argument --seeds: must be a whole number >= 1, got '0'"),
    (["--plot", "x.png", "--no-plot"], "argument --no-plot: not allowed with --plot"),
])
def test_regularizers_table_refuses_bad_arguments_in_one_line(argv, message, capsys):
    module = load_example("regularizers_table.py")
    with pytest.raises(SystemExit) as exit_info:
        module.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


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


@pytest.mark.parametrize("name", ["neural_sde_digits.py", "steer_digits.py", "spiral_sde.py"])
def test_examples_with_seeds_refuse_zero_seeds(name, capsys):
    module = load_example(name)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--seeds", "0"])
    assert exit_info.value.code == 2
    assert "argument --seeds: must be a whole number >= 1, got '0'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["neural_sde_digits.py", "steer_digits.py", "spiral_sde.py",
                                  "proper_ode_digits_families.py"])
def test_examples_refuse_a_figure_and_no_figure(name, capsys):
    module = load_example(name)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--plot", "x.png", "--no-plot"])
    assert exit_info.value.code == 2
    assert "argument --no-plot: not allowed with --plot" in capsys.readouterr().err.strip().splitlines()[-1]


def test_spiral_sde_refuses_weights_that_are_not_positive(capsys):
    with pytest.raises(SystemExit):
        load_example("spiral_sde.py").main(["--weights", "0.1,0"])
    assert "argument --weights: must be comma-separated numbers > 0, got '0.1,0'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# Each example's figure, drawn from a small made-up result (no training): the drawing code runs
# without the minutes of training that produce the real numbers.

needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="the plots extra (matplotlib) is not installed")


@needs_matplotlib
def test_neural_sde_digits_figure(tmp_path):
    module = load_example("neural_sde_digits.py")

    def row(shift):
        return {"clean": 96.0 + shift, "gaussian": 88.0 + shift, "fgsm": 27.0 + 2 * shift, "pgd": 13.0 + 3 * shift}

    rows = {"ODE (none)": [row(0.0), row(0.5)], "additive (sigma=0.2)": [row(1.0), row(1.4)],
            "additive (sigma=0.2) + TTN": [row(0.8), row(1.1)]}
    path = tmp_path / "figures" / "neural_sde.png"  # the folder is made
    module.plot(rows, path, "digits, 2 seeds")
    assert_png(path)


@needs_matplotlib
def test_steer_digits_figure(tmp_path):
    module = load_example("steer_digits.py")
    b = 0.5
    times = module.end_times(b)
    assert len(times) == module.END_TIME_POINTS and times[0] == 1 - b and times[-1] == 1 + b
    assert times[len(times) // 2] == 1.0
    named = list(module.variants(b))
    out = {}
    for seed in (0, 1):
        for i, name in enumerate(named):
            result = SimpleNamespace(nfe_predict=80 - 10 * i, history=[{"epoch": e, "mean_nfe": 60 - e - 5 * i}
                                                                       for e in (1, 2, 3)])
            out[name, seed] = result, [90 + i - abs(t - 1) * (3 - i) + seed for t in times]
    path = tmp_path / "steer.png"
    module.plot(out, named, [0, 1], times, b, path, "digits, 2 seeds")
    assert_png(path)


@needs_matplotlib
def test_proper_ode_digits_families_figure(tmp_path):
    from nde_plugins.proper_ode import CheckReport, CheckRow

    module = load_example("proper_ode_digits_families.py")
    checks = {}
    for index, family in enumerate(module.FAMILIES[:3]):
        report = CheckReport(family, "accuracy", 0.9, 0.1)
        for solver in (f"{family}:u=0.5", module.REFERENCE):
            for factor, steps in ((0.5, 1), (0.75, 2), (1.0, 2), (1.5, 3), (2.0, 4)):
                report.rows.append(CheckRow(solver, factor, steps, None, 0.9 - 0.01 * index / steps, steps >= 2))
        checks[family] = 95.0, report
    hs, accuracies = module.accuracy_by_step(checks["rk2"][1], own=True)
    assert hs == [1.0, 0.5, 1 / 3, 0.25] and len(accuracies) == 4  # steps 2 twice (f = 0.75 and 1): once
    path = tmp_path / "families.png"
    module.plot(checks, 2, path, "digits, K = 2")
    assert_png(path)


@needs_matplotlib
def test_spiral_sde_figure(tmp_path):
    import torch

    module = load_example("spiral_sde.py")
    angles = torch.linspace(0, 3, len(module.TIMES))
    mean = torch.stack([2 * torch.cos(angles), -2 * torch.sin(angles)], dim=1)
    path_of = [[float(2 * torch.cos(a)), float(-1.8 * torch.sin(a))] for a in angles]
    results = {w: [{"loss": 0.02 + w, "nfe": 120 - 50 * w, "train s": 1.0, "path": path_of} for _ in range(2)]
               for w in (0.0, 0.1, 1.0)}
    path = tmp_path / "spiral.png"
    module.plot(results, mean, path, "spiral, 2 seeds")
    assert_png(path)


@needs_matplotlib
def test_meta_solver_digits_figure(tmp_path):
    module = load_example("meta_solver_digits.py")
    names = ["clean", "FGSM 0.1"]
    outcomes = []
    for seed in (0, 1):
        for variant in module.SWEPT:
            sweep = [{"clean": 97.0 + seed - u, "FGSM 0.1": 60.0 + u, "logit shift %": u} for u in module.U_GRID]
            outcomes.append(module.Outcome(variant, SimpleNamespace(), sweep, None))
    path = tmp_path / "meta.png"
    module.plot(outcomes, names, str(path), "digits, 2 seeds")
    assert_png(path)


@needs_matplotlib
def test_steer_stiff_figure(tmp_path):
    from nde_plugins.experiments.stiff import VARIANTS

    module = load_example("steer_stiff.py")
    results = {(variant, method, seed): SimpleNamespace(history=[{"iteration": i, "test_mae": (1 + seed) * 10 / i}
                                                                 for i in (20, 40, 60)])
               for variant in VARIANTS for method in module.METHODS for seed in (0, 1)}
    path = tmp_path / "stiff.png"
    module.plot(results, [0, 1], list(VARIANTS), str(path), "stiff toy, 2 seeds")
    assert_png(path)


@needs_matplotlib
def test_proper_ode_synthetic_figure(tmp_path):
    from nde_plugins.experiments.synthetic import SyntheticResult
    from nde_plugins.proper_ode import CheckReport, CheckRow

    module = load_example("proper_ode_synthetic.py")

    def run(k, seed, adapted=False):
        report = CheckReport("euler", "accuracy", 0.9, 0.1)
        for solver in ("euler", "midpoint", "rk4"):
            for factor in (0.5, 1.0, 2.0):
                steps = max(1, round(factor * k))
                report.rows.append(CheckRow(solver, factor, steps, None, 0.9 - 0.2 / k / factor, steps >= k))
        steps = [2, 4, 8, 6, 8] if adapted else []
        return SyntheticResult(config={"seed": seed}, test_accuracy=0.9, train_accuracy=0.92, mean_nfe=k,
                               mean_nfe_with_checks=k, final_steps=k, check=report.as_dict(), train_time_s=1.0,
                               steps_per_iteration=steps)

    results = {"spheres": {"grid": {k: [run(k, s) for s in (0, 1)] for k in (1, 4, 16)},
                           "adaption": [run(8, s, adapted=True) for s in (0, 1)]}}
    path = tmp_path / "synthetic.png"
    module.plot(results, ["spheres"], str(path))
    assert_png(path)


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.py")))
def test_every_example_checks_its_figure_path_before_any_run(name):
    """A bad output path fails at once (one line, exit 2), not after a run of minutes."""
    done = run_example(name, "--plot", "/no/such/dir/figure.png", timeout=60)
    assert done.returncode == 2, (done.returncode, done.stderr[-500:])
    last = done.stderr.strip().splitlines()[-1]
    assert "the directory '/no/such/dir' of '/no/such/dir/figure.png' does not exist" in last
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("text, message", [
    ("figure.jpg", "must end in .png, .pdf, .svg"),
    ("a" * 300 + ".png", "file systems take at most 255"),
    (".", "must end in"),
])
def test_the_output_path_rule_names_what_is_wrong(text, message):
    import argparse

    from nde_plugins.experiments.script import figure_file

    with pytest.raises(argparse.ArgumentTypeError, match=message):
        figure_file(text)


@pytest.mark.parametrize(("argv", "message"), [
    (["--grid", "0,32"], "argument --grid: expected comma-separated step counts >= 1"),
    (["--grid", "x"], "argument --grid: expected comma-separated step counts >= 1"),
    (["--grid", ""], "argument --grid: expected comma-separated step counts >= 1"),
    (["--budget", "huge"], "argument --budget: invalid choice: 'huge'"),
])
def test_the_synthetic_example_refuses_a_bad_grid_or_budget_in_one_line(argv, message, capsys):
    module = load_example("proper_ode_synthetic.py")
    with pytest.raises(SystemExit) as exit_info:
        module.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_the_synthetic_example_checks_its_json_path_before_any_run():
    done = run_example("proper_ode_synthetic.py", "--json", "results.txt", timeout=60)
    assert done.returncode == 2 and "argument --json: 'results.txt' must end in .json" in done.stderr
