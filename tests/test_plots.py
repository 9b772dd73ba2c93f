"""Stability numbers against known facts, and every figure command writes a PNG of sensible size."""

import cmath
import importlib.util
import json
import math
import struct
import subprocess
import sys
from types import SimpleNamespace

import pytest

import nde_plugins as nde
from nde_plugins.cli import main
from nde_plugins.experiments.history import IterationLog
from nde_plugins.tableaux import TableauError
from nde_plugins.tableaux._stability import (
    _symmetry,
    error_coefficient_norm,
    format_polynomial,
    principal_error_coefficients,
    real_stability_interval,
    shared_stability_function,
    stability_function,
    stability_polynomial,
)

TAYLOR4 = (1.0, 1.0, 1 / 2, 1 / 6, 1 / 24)


def euler() -> nde.Tableau:
    return nde.Tableau("euler1", c=[0], a=[[]], b=[1], order=1)


def kutta_w_family() -> nde.TableauFamily:
    """Three stages, order 2 for every w (order 3 at w = 2): R(z) = 1 + z + z^2/2 + (w/12) z^3 depends on w."""

    def build(w):
        return nde.Tableau("kutta_w", c=[0, 0.5, 1], a=[[], [0.5], [1 - w, w]], b=[1 / 6, 2 / 3, 1 / 6], order=2)

    return nde.TableauFamily("kutta_w", ("w",), {"w": 1.0}, build, [("w != 2", lambda w: w != 2)])


def assert_png(path, least_bytes=10_000):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert 300 <= width <= 4000 and 300 <= height <= 4000, (width, height)
    assert len(data) > least_bytes, len(data)


# ------------------------------------------------------------------------------------------------
# numbers


def test_forward_euler_region_is_the_unit_disc_around_minus_one():
    coefficients = stability_polynomial(euler())
    assert coefficients == (1.0, 1.0)
    for angle in (0.0, 1.0, 2.5, math.pi):
        boundary = -1 + cmath.exp(1j * angle)
        assert abs(abs(stability_function(coefficients, boundary)) - 1) < 1e-12
        assert abs(stability_function(coefficients, -1 + 0.99 * cmath.exp(1j * angle))) < 1
        assert abs(stability_function(coefficients, -1 + 1.01 * cmath.exp(1j * angle))) > 1
    assert real_stability_interval(coefficients) == pytest.approx(-2.0, abs=1e-9)


@pytest.mark.parametrize("name", ["rk4_classic", "rk38"])
def test_rk4_has_the_degree_4_taylor_polynomial_and_interval(name):
    coefficients = stability_polynomial(nde.get_tableau(name))
    assert coefficients == pytest.approx(TAYLOR4, abs=1e-15)
    assert real_stability_interval(coefficients) == pytest.approx(-2.7853, abs=1e-4)
    assert format_polynomial(coefficients) == "1 + z + z^2/2 + z^3/6 + z^4/24"
    assert format_polynomial(coefficients, unicode=True) == "1 + z + z²/2 + z³/6 + z⁴/24"


@pytest.mark.parametrize("family, members", [
    ("rk2", [{"u": 0.1}, {"u": 0.5}, {"u": 2 / 3}, {"u": 1.0}, {"u": -0.7}]),
    ("rk3", [{"u": 0.5, "v": 1.0}, {"u": 0.2, "v": 0.9}, {"u": 0.9, "v": 0.3}]),
    ("rk4_uv", [{"u": 1 / 3, "v": 2 / 3}, {"u": 0.3, "v": 0.7}, {"u": 0.8, "v": 0.2}]),
    ("rk4_u1", [{"u": 0.1}, {"u": 0.9}]),
    ("rk4_u3", [{"u": 0.1}, {"u": 0.9}]),
])
def test_p_stage_order_p_family_members_share_r(family, members):
    polynomials = [stability_polynomial(nde.get_tableau(family, **params)) for params in members]
    assert shared_stability_function(polynomials)
    degree = len(polynomials[0]) - 1
    assert polynomials[0] == pytest.approx([1 / math.factorial(k) for k in range(degree + 1)], abs=1e-14)


def test_dormand_prince_and_its_embedded_method():
    tableau = nde.get_tableau("dormand_prince")
    coefficients = stability_polynomial(tableau)
    assert coefficients == pytest.approx([*(1 / math.factorial(k) for k in range(6)), 1 / 600], abs=1e-15)
    assert real_stability_interval(coefficients) == pytest.approx(-3.3066, abs=1e-3)
    embedded = stability_polynomial(tableau, "b_hat")
    assert len(embedded) == 8 and embedded[-1] == pytest.approx(1 / 36000, rel=1e-12)
    # Dormand and Prince (1980) give A6 = 3.99e-4 for the propagated 5th-order solution.
    assert error_coefficient_norm(tableau) == pytest.approx(3.99e-4, abs=1e-6)
    assert stability_polynomial(nde.get_tableau("heun_euler"), "b_hat") == (1.0, 1.0)


def test_rk2_error_coefficients_are_known_and_smallest_at_ralston():
    for u in (0.25, 0.5, 1.0):
        coefficients = dict(principal_error_coefficients(nde.get_tableau("rk2", u=u)))
        assert coefficients == pytest.approx({"[[t]]": -1 / 6, "[t, t]": (u / 2 - 1 / 3) / 2}, abs=1e-15)
    norms = {u: error_coefficient_norm(nde.get_tableau("rk2", u=u)) for u in (0.6, 2 / 3, 0.75)}
    assert norms[2 / 3] == pytest.approx(1 / 6) and norms[2 / 3] < min(norms[0.6], norms[0.75])
    assert error_coefficient_norm(nde.get_tableau("rk4_classic")) == pytest.approx(0.0145, abs=1e-4)


def test_a_family_whose_r_depends_on_its_parameter():
    family = kutta_w_family()
    polynomials = [stability_polynomial(family(w=w)) for w in (0.5, 1.0)]
    assert not shared_stability_function(polynomials)
    assert polynomials[0][3] == pytest.approx(0.5 / 12) and polynomials[1][3] == pytest.approx(1 / 12)


def test_tree_symmetries():
    single, chain = (), ((),)
    assert _symmetry(single) == 1 and _symmetry(chain) == 1
    assert _symmetry((single, single)) == 2 and _symmetry((single, single, single)) == 6
    assert _symmetry((chain, chain)) == 2 and _symmetry(((single, single),)) == 2


def test_bad_requests_are_refused_by_name():
    with pytest.raises(TableauError, match="which must be 'b' or 'b_hat'"):
        stability_polynomial(nde.get_tableau("dormand_prince"), "b_mid")
    with pytest.raises(TableauError, match="has no b_hat"):
        stability_polynomial(nde.get_tableau("rk4_classic"), "b_hat")
    with pytest.raises(ValueError, match="consistent method"):
        real_stability_interval([1.0, 0.5])


# ------------------------------------------------------------------------------------------------
# figures

needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="the plots extra (matplotlib) is not installed")


@needs_matplotlib
def test_tableau_plot_of_a_pair(tmp_path, capsys):
    path = tmp_path / "dp.png"
    assert main(["tableau", "dormand_prince", "--plot", str(path)]) == 0
    assert f"figure written to {path}" in capsys.readouterr().out
    assert_png(path)


@needs_matplotlib
def test_tableau_sweep_plot_says_the_members_share_r(tmp_path, capsys):
    path = tmp_path / "rk2.png"
    assert main(["tableau", "rk2", "--sweep", "u=0.1:1.0:4", "--plot", str(path)]) == 0
    out = capsys.readouterr().out
    assert "every member has the same stability function R(z) = 1 + z + z^2/2" in out
    assert_png(path)


@needs_matplotlib
def test_sweep_plot_of_members_with_different_r(tmp_path):
    from nde_plugins.plots import plot_stability_sweep

    path = tmp_path / "w.png"
    plot_stability_sweep(kutta_w_family(), "w", [0.0, 0.5, 1.0, 3.0], str(path))
    assert_png(path)


@needs_matplotlib
def test_train_plot_records_every_iteration(tmp_path, capsys):
    path = tmp_path / "train.png"
    assert main(["train", "--epochs", "1", "--batch-size", "512", "--rtol", "1e-3", "--atol", "1e-3", "--json",
                 "--plot", str(path)]) == 0
    log = json.loads(capsys.readouterr().out)["iterations"]  # --json: the figure adds nothing to stdout
    assert len(log["loss"]) == len(log["accuracy"]) == len(log["nfe_forward"]) == 3  # 1438 samples / 512
    assert all(0 <= a <= 100 for a in log["accuracy"]) and min(log["nfe_forward"]) > 0
    assert log["adjoint"] is False and log["nfe_backward"] == [0, 0, 0]
    assert_png(path)


def test_train_with_the_adjoint_counts_backward_evaluations(capsys):
    assert main(["train", "--epochs", "1", "--batch-size", "1000", "--rtol", "1e-3", "--atol", "1e-3", "--adjoint",
                 "--json"]) == 0
    log = json.loads(capsys.readouterr().out)["iterations"]
    assert log["adjoint"] is True and len(log["nfe_backward"]) == 2 and min(log["nfe_backward"]) > 0


@needs_matplotlib
def test_compare_plot(tmp_path):
    from nde_plugins.experiments.compare import COLUMNS
    from nde_plugins.plots import plot_comparison

    def run(accuracy, nfe):
        return SimpleNamespace(train_accuracy=accuracy + 1, test_accuracy=accuracy, train_time_s=1.5,
                               predict_time_s=0.01, nfe_predict=nfe)

    results = {"vanilla": [run(90, 40), run(92, 44)], "error_estimate": [run(89, 26), run(91, 30)]}
    path = tmp_path / "compare.png"
    plot_comparison(results, COLUMNS, str(path), "digits, 2 seeds")
    assert_png(path)


@needs_matplotlib
def test_training_plot_of_a_regression_under_the_adjoint(tmp_path):
    from nde_plugins.plots import plot_training

    log = IterationLog(adjoint=True)
    for i in range(60):
        log.record(1.0 / (i + 1), 20 + i % 3, 32)
    path = tmp_path / "stiff.png"
    plot_training(log, str(path), "stiff toy", evaluations=[{"iteration": 20 * k, "test_mae": 3.0 / k}
                                                            for k in (1, 2, 3)])
    assert_png(path)


def test_plot_without_matplotlib_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the plots extra were not installed
    for argv in (["tableau", "rk2", "--plot", str(tmp_path / "a.png")],
                 ["train", "--epochs", "1", "--plot", str(tmp_path / "b.png")],
                 ["check", "--plot", str(tmp_path / "c.png")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "argument --plot" in err and "pip install 'nde_plugins[plots]'" in err
    assert not list(tmp_path.iterdir())


def test_neither_the_library_nor_help_imports_matplotlib():
    code = (
        "import sys, contextlib, io\n"
        "import nde_plugins, nde_plugins.plots\n"
        "from nde_plugins.cli import main\n"
        "for argv in (['--help'], ['tableau', '--help'], ['train', '--help'], ['--version']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert main(argv) == 0\n"
        "print('matplotlib' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False", out.stderr
