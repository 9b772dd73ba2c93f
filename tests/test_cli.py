import argparse
import importlib.util
import json
import shlex

import pytest
import torch

from nde_plugins.cli import main


def test_plugins_table(capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["kind", "name", "source", "version", "description"]
    assert "rk4_uv" in out and "dormand_prince" in out


def test_plugins_json(capsys):
    assert main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert all({"kind", "name", "source"} <= set(row) for row in rows)
    assert any(row["name"] == "tsitouras5" and row["kind"] == "tableau" for row in rows)


def test_tableau_prints_table_and_residuals(capsys):
    assert main(["tableau", "rk4_uv", "--param", "u=0.3", "--param", "v=0.7"]) == 0
    out = capsys.readouterr().out
    assert "rk4_uv_u0p3_v0p7: 4 stages, order 4" in out
    assert "order conditions for b (up to order 4)" in out
    assert out.count("e-1") >= 8 or "0.00e+00" in out  # 8 trees, tiny residuals


def test_tableau_of_a_pair_shows_both_weight_vectors(capsys):
    assert main(["tableau", "dormand_prince"]) == 0
    out = capsys.readouterr().out
    assert "order conditions for b_hat (up to order 4)" in out and "b_mid" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["tableau", "rk4_u4"], "did you mean 'rk4_uv'"),
        (["tableau", "rk2:u=0"], "domain rule 'u != 0'"),
        (["tableau", "rk2", "--param", "u"], "is not NAME=VALUE"),
        (["solve", "--method", "nope"], "unknown tableau 'nope'"),
    ],
)
def test_errors_exit_2_with_a_message(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("method", ["rk4_uv:u=0.3,v=0.7", "tsitouras5", "rk4"])
def test_solve_reports_small_error(method, capsys):
    assert main(["solve", "--method", method, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["max_abs_error"] < 1e-4 and result["nfe"] > 0


def test_solve_with_a_given_step_reports_it(capsys):
    assert main(["solve", "--method", "rk4", "--step-size", "0.05", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step_size"] == 0.05 and result["nfe"] == 4 * 126 and result["max_abs_error"] < 1e-6


def test_solve_backward_and_on_a_short_interval(capsys):
    assert main(["solve", "--t-end", "-1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["t_end"] == -1 and result["max_abs_error"] < 1e-5
    # The default fixed step 0.1 is clipped to an interval shorter than it.
    assert main(["solve", "--t-end", "0.05", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step_size"] == 0.05 and result["nfe"] == 4


def test_solve_adaptive_has_no_step(capsys):
    assert main(["solve", "--method", "dopri5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step_size"] is None and result["max_abs_error"] < 1e-5


def test_train_stiff_tiny_run_reports_the_paper_metric(capsys):
    assert main(["train", "--task", "stiff", "--iterations", "3", "--end-time", "steer:per_sample=true",
                 "--variant", "pairs_from_start", "--stiffness-ratio", "100"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("stiff toy r=100, pairs_from_start, dopri5 rtol=1e-07 atol=1e-09")
    assert "end time: steer(b=0.1251 (default), per_sample=True)" in out
    for label in ("best test MAE", "final test MAE", "training time", "training NFE", "test NFE"):
        assert label in out


def test_train_stiff_json_holds_the_run(capsys):
    assert main(["train", "--task", "stiff", "--iterations", "2", "--end-time", "steer:b=0.1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["end_time"] == "steer" and result["config"]["end_time_options"] == {"b": 0.1}
    assert result["config"]["variant"] == "pairs_from_zero" and result["config"]["lr"] == 1e-4
    assert result["best_test_mae"] <= result["final_test_mae"] and result["nfe_train"] > 0
    assert [h["iteration"] for h in result["history"]] == [2]


def test_train_stiff_compare_standard_and_steer(capsys):
    assert main(["train", "--task", "stiff", "--iterations", "2", "--compare", "vanilla,steer", "--seeds", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 seeds (mean +- std)" in out and "best test MAE" in out
    assert any(line.startswith("steer ") and "+-" in line for line in out.splitlines())


def test_train_digits_with_steer(capsys):
    assert main(["train", "--epochs", "1", "--end-time", "steer:b=0.5", "--rtol", "1e-4", "--atol", "1e-4",
                 "--batch-size", "512", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["end_time"] == "steer" and result["config"]["end_time_options"] == {"b": 0.5}
    assert 0 < result["test_accuracy"] <= 100 and result["nfe_predict"] > 0


def test_train_digits_with_checkpointed_gradients_reports_the_recomputed_evaluations(capsys, tmp_path):
    plot = tmp_path / "train.png"
    assert main(["train", "--epochs", "1", "--rtol", "1e-4", "--atol", "1e-4", "--batch-size", "512",
                 "--regularizer", "error_estimate:weight=0.1", "--gradient", "checkpoint", "--json",
                 "--plot", str(plot)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["gradient"] == "checkpoint" and result["test_accuracy"] > 0
    log = result["iterations"]
    assert log["gradient"] == "checkpoint" and all(0 < r < f for r, f in zip(log["nfe_replay"], log["nfe_forward"]))
    assert plot.stat().st_size > 0


@pytest.mark.parametrize("schedule", ["smoothing:sigma=0.0125", "switching:u=0.5|0.5125|0.4875,probs=0.5|0.25|0.25",
                                      "output_ensemble:u=0.5|1"])
def test_train_digits_with_a_solver_schedule(capsys, schedule):
    assert main(["train", "--epochs", "1", "--method", "rk2:u=0.5", "--step-size", "0.25", "--schedule", schedule,
                 "--batch-size", "512", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["schedule"] == schedule.split(":")[0] and result["test_accuracy"] > 0


def test_train_digits_with_step_adaption_calls_the_update(capsys):
    assert main(["train", "--epochs", "1", "--method", "euler", "--step-size", "0.5", "--schedule",
                 "step_adaption:k=1", "--batch-size", "512", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["schedule_options"] == {"k": 1.0}


def test_check_trains_and_reports_a_verdict(capsys, tmp_path):
    plot = tmp_path / "check.png"
    assert main(["check", "--task", "spheres", "--steps", "1", "--iterations", "20", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("spheres, trained with euler at K = 1 steps") and "verdict:" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_check_json_under_step_adaption(capsys):
    assert main(["check", "--task", "three_minima", "--adapt", "--iterations", "20", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] in ("ODE-like", "solver-dependent") and report["task"] == "three_minima"
    assert [row["solver"] for row in report["rows"]][::5] == ["euler", "midpoint", "rk4"]


def test_train_a_synthetic_task_reports_the_check(capsys):
    assert main(["train", "--task", "spheres", "--step-size", "0.5", "--iterations", "10"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("spheres, euler at K = 2 steps") and "proper-ODE check" in out


def test_version_is_the_installed_distribution(capsys):
    import importlib.metadata

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"nde-plugins {importlib.metadata.version('nde_plugins')}\n"


def test_plugins_of_one_kind(capsys):
    assert main(["plugins", "--kind", "step_regularizer"]) == 0
    table = capsys.readouterr().out.split("\n\n")[0]  # plugins that failed to load follow a blank line
    rows = table.splitlines()[1:]
    assert rows and all(row.split()[0] == "step_regularizer" for row in rows)
    assert any(row.split()[1] == "error_estimate" for row in rows)
    assert main(["plugins", "--kind", "end_time_sampler", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {row["kind"] for row in listed} <= {"end_time_sampler", "load_error"}
    assert "steer" in {row["name"] for row in listed}


def _subcommands():
    from nde_plugins.cli import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


@pytest.mark.parametrize("command", [None, "plugins", "tableau", "solve", "check", "train"])
def test_every_help_shows_examples_that_parse(command, capsys):
    from nde_plugins.cli import build_parser

    assert command is None or command in _subcommands()
    assert main(["--help"] if command is None else [command, "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "examples:" in help_text
    examples = [line.strip() for line in help_text.split("examples:", 1)[1].splitlines() if line.strip()]
    assert examples and all(line.startswith("nde-plugins ") for line in examples)
    for line in examples:
        argv = shlex.split(line)[1:]
        if "--plot" in argv and importlib.util.find_spec("matplotlib") is None:
            continue
        args = build_parser().parse_args(argv)  # a bad example raises UsageError here
        assert command is None or args.command == command


def test_every_subcommand_has_examples():
    from nde_plugins.cli import EXAMPLES

    assert set(_subcommands()) == {name for name in EXAMPLES if name is not None}


def test_tableau_prints_the_stability_function(capsys):
    assert main(["tableau", "rk4_classic"]) == 0
    out = capsys.readouterr().out
    assert "stability function (b): R(z) = 1 + z + z^2/2 + z^3/6 + z^4/24" in out
    assert "real stability interval [-2.7853, 0]" in out
    assert main(["tableau", "heun_euler"]) == 0
    assert "stability function (b_hat): R(z) = 1 + z\n" in capsys.readouterr().out


def test_tableau_sweep_lists_the_members(capsys):
    assert main(["tableau", "rk4_uv", "--param", "v=0.8", "--sweep", "u=0.1:0.4:4"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rk4_uv: u from 0.1 to 0.4, 4 members (v=0.8)")
    assert [line.split()[0] for line in out.splitlines()[2:6]] == ["0.1", "0.2", "0.3", "0.4"]
    assert "every member has the same stability function R(z) = 1 + z + z^2/2 + z^3/6 + z^4/24" in out


def test_train_sets_and_prints_the_thread_count(capsys):
    before = torch.get_num_threads()
    try:
        assert main(["train", "--task", "spheres", "--step-size", "0.5", "--iterations", "2", "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
        assert "2 thread(s)" in capsys.readouterr().out.splitlines()[0]
        assert main(["train", "--task", "stiff", "--iterations", "2", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["threads"] == 1  # the default, stated in --help
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_digits_header_names_the_step_size_and_schedule_actually_used(capsys):
    assert main(["train", "--epochs", "1", "--method", "rk2:u=0.5", "--step-size", "0.25", "--schedule",
                 "smoothing"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "rk2:u=0.5 step 0.25, schedule smoothing" in first and "rtol" not in first
