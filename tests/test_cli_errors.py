"""Every bad command line exits with status 2 and one line on stderr naming the argument; never a traceback."""

import os
import subprocess
import sys

import pytest

import nde_plugins.experiments.digits as digits
import nde_plugins.experiments.stiff as stiff
from nde_plugins import cli
from nde_plugins.cli import main


@pytest.fixture(autouse=True)
def _no_training(monkeypatch):
    """A bad `train` must be refused before any training starts; if one slips through, fail at once."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started for a command line that should have been refused")

    monkeypatch.setattr(digits, "train_digits", refuse)
    monkeypatch.setattr(stiff, "train_stiff", refuse)


# (argv, what the one line must contain: the argument it names, and where useful the rule or fix)
BAD = [
    # no command / unknown command
    ([], ["COMMAND", "required"]),
    (["bogus"], ["COMMAND", "invalid choice"]),
    # plugins takes nothing but --json
    (["plugins", "extra"], ["unrecognized arguments: extra"]),
    (["plugins", "--bogus"], ["--bogus"]),
    (["plugins", "--json=yes"], ["--json"]),
    (["plugins", "--kind", "tablau"], ["argument --kind", "did you mean 'tableau'", "step_regularizer"]),
    (["plugins", "--kind", "tableaux", "--json"], ["argument --kind", "unknown plugin kind 'tableaux'"]),
    (["plugins", "--kind"], ["argument --kind", "expected one argument"]),
    # tableau
    (["tableau"], ["NAME", "required"]),
    (["tableau", "nope"], ["argument NAME", "unknown tableau 'nope'"]),
    (["tableau", "rk4_u4"], ["argument NAME", "did you mean 'rk4_uv'"]),
    (["tableau", "dopri5"], ["argument NAME", "dormand_prince"]),
    (["tableau", ""], ["argument NAME", "no name"]),
    (["tableau", "rk2:"], ["argument NAME", "no parameters"]),
    (["tableau", "rk2:u=0"], ["argument NAME", "domain rule 'u != 0'"]),
    (["tableau", "rk2:u=abc"], ["argument NAME", "not a number"]),
    (["tableau", "rk2", "--param", "u"], ["argument --param", "is not NAME=VALUE"]),
    (["tableau", "rk2", "--param", "u=nan"], ["argument --param", "finite"]),
    (["tableau", "rk2", "--param", "u=inf"], ["argument --param", "finite"]),
    (["tableau", "rk2", "--param", "u=true"], ["argument --param", "'true' is not a number"]),
    (["tableau", "rk2", "--param", "=1"], ["argument --param", "is not NAME=VALUE"]),
    (["tableau", "rk2", "--param", "w=1"], ["argument --param", "no parameter 'w'"]),
    (["tableau", "rk2", "--param", "u=0"], ["argument --param", "domain rule 'u != 0'"]),
    (["tableau", "rk2", "--param", "u=0.3", "--param", "u=0.4"], ["argument --param", "given twice"]),
    (["tableau", "rk2:u=0.3", "--param", "u=0.4"], ["argument --param", "both in NAME"]),
    (["tableau", "rk4_classic", "--param", "u=1"], ["argument --param", "not a family"]),
    (["tableau", "rk2", "--precision", "0"], ["argument --precision", "[1, 17]"]),
    (["tableau", "rk2", "--precision", "-3"], ["argument --precision", "[1, 17]"]),
    (["tableau", "rk2", "--precision", "99"], ["argument --precision", "[1, 17]"]),
    (["tableau", "rk2", "--precision", "2.5"], ["argument --precision", "whole number"]),
    # tableau --sweep / --plot
    (["tableau", "dormand_prince", "--sweep", "u=0.1:1:3"], ["argument --sweep", "not a family", "rk4_uv"]),
    (["tableau", "rk2", "--sweep", "w=0.1:1:3"], ["argument --sweep", "no parameter 'w'", "parameters are u"]),
    (["tableau", "rk2", "--sweep", "u=-1:1:3"], ["argument --sweep", "u=0.0", "domain rule 'u != 0'"]),
    (["tableau", "rk4_uv", "--param", "v=0.5", "--sweep", "u=0.1:0.9:5"], ["argument --sweep", "u not in {0, 1/2, 1}"]),
    (["tableau", "rk2:u=0.5", "--sweep", "u=0.1:1:3"], ["argument --sweep", "swept and also set"]),
    (["tableau", "rk2", "--sweep", "u=0.1:1"], ["argument --sweep", "not PARAM=START:STOP:N"]),
    (["tableau", "rk2", "--sweep", "0.1:1:3"], ["argument --sweep", "not PARAM=START:STOP:N"]),
    (["tableau", "rk2", "--sweep", "u=abc:1:3"], ["argument --sweep", "START must be a finite number"]),
    (["tableau", "rk2", "--sweep", "u=0.1:inf:3"], ["argument --sweep", "STOP must be a finite number"]),
    (["tableau", "rk2", "--sweep", "u=0.1:1:1"], ["argument --sweep", "N must be a whole number in [2, 16]"]),
    (["tableau", "rk2", "--sweep", "u=0.1:1:99"], ["argument --sweep", "[2, 16]"]),
    (["tableau", "rk2", "--sweep", "u=0.1:1:2.5"], ["argument --sweep", "whole number"]),
    (["tableau", "rk2", "--sweep", "u=0.5:0.5:3"], ["argument --sweep", "must differ"]),
    (["tableau", "rk2", "--plot", "region.txt"], ["argument --plot", "must end in .png"]),
    (["tableau", "rk2", "--plot", "/no/such/directory/region.png"], ["argument --plot", "does not exist"]),
    # solve
    (["solve", "--step-size", "-1"], ["argument --step-size", "> 0"]),
    (["solve", "--step-size", "0"], ["argument --step-size", "> 0"]),
    (["solve", "--step-size", "nan"], ["argument --step-size", "finite"]),
    (["solve", "--step-size", "inf"], ["argument --step-size", "finite"]),
    (["solve", "--step-size", "abc"], ["argument --step-size"]),
    (["solve", "--step-size"], ["argument --step-size", "expected one argument"]),
    (["solve", "--step-size", "10"], ["argument --step-size", "longer than the whole interval"]),
    (["solve", "--method", "rk4", "--step-size", "1e-7"], ["argument --step-size", "give --step-size >="]),
    (["solve", "--method", "dopri5", "--step-size", "0.1"], ["argument --step-size", "--rtol/--atol"]),
    (["solve", "--t-end", "0"], ["argument --t-end", "other than 0"]),
    (["solve", "--t-end", "nan"], ["argument --t-end", "finite"]),
    (["solve", "--t-end=-inf"], ["argument --t-end", "finite"]),
    (["solve", "--t-end", "-1e3"], ["argument --t-end", "expected one argument", "--option=VALUE"]),
    (["solve", "--t-end", "1e300"], ["argument --t-end", "steps"]),
    (["solve", "--rtol", "-1"], ["argument --rtol", "> 0"]),
    (["solve", "--rtol", "nan"], ["argument --rtol", "finite"]),
    (["solve", "--atol", "0"], ["argument --atol", "> 0"]),
    (["solve", "--method", "nope"], ["argument --method", "unknown tableau 'nope'"]),
    (["solve", "--method", "rk2:u=0"], ["argument --method", "domain rule 'u != 0'"]),
    (["solve", "--method", "rk2:u=abc"], ["argument --method", "not a number"]),
    (["solve", "--method", "rk2:"], ["argument --method", "no parameters"]),
    (["solve", "--method", "rk2:u=0.5,,"], ["argument --method", "empty parameter"]),
    (["solve", "--method", "rk2:w=1"], ["argument --method", "no parameter 'w'"]),
    (["solve", "--method", "dopri5:u=1"], ["argument --method", "takes no parameters"]),
    (["solve", "--bogus"], ["--bogus"]),
    # train: every one refused before the data is even loaded
    (["train", "--epochs", "0"], ["argument --epochs", ">= 1"]),
    (["train", "--epochs", "-1"], ["argument --epochs", ">= 1"]),
    (["train", "--epochs", "1.5"], ["argument --epochs", "whole number"]),
    (["train", "--batch-size", "0"], ["argument --batch-size", ">= 1"]),
    (["train", "--lr", "0"], ["argument --lr", "> 0"]),
    (["train", "--lr", "nan"], ["argument --lr", "finite"]),
    (["train", "--seed", "-1"], ["argument --seed", "[0, 2**63 - 1]"]),
    (["train", "--seeds", "0"], ["argument --seeds", ">= 1"]),
    (["train", "--seeds", "3"], ["argument --seeds", "only applies with --compare"]),
    (["train", "--seed", str(2**63 - 1), "--seeds", "2", "--compare", "vanilla"], ["argument --seeds", "2**63 - 1"]),
    (["train", "--rtol", "-1"], ["argument --rtol", "> 0"]),
    (["train", "--atol", "inf"], ["argument --atol", "finite"]),
    (["train", "--task", "mnist"], ["argument --task", "invalid choice"]),
    (["train", "--method", "nope"], ["argument --method", "unknown tableau 'nope'"]),
    (["train", "--method", "rk2:u=0"], ["argument --method", "domain rule"]),
    (["train", "--regularizer", "stifness"], ["argument --regularizer", "did you mean 'stiffness'"]),
    (["train", "--regularizer", ":weight=1"], ["argument --regularizer", "no regularizer name"]),
    (["train", "--regularizer", "error_estimate:"], ["argument --regularizer", "nothing after it"]),
    (["train", "--regularizer", "error_estimate:weight"], ["argument --regularizer", "is not key=value"]),
    (["train", "--regularizer", "error_estimate:powr=2"],
     ["argument --regularizer", "no option 'powr'", "did you mean 'power'", "power, reduce"]),
    (["train", "--regularizer", "kinetic_energy:probe=x"], ["argument --regularizer", "takes no options"]),
    (["train", "--regularizer", "error_estimate:weight=nan"], ["argument --regularizer", "weight must be a finite"]),
    (["train", "--regularizer", "error_estimate:weight=inf"], ["argument --regularizer", "weight must be a finite"]),
    (["train", "--regularizer", "error_estimate:weight=-1"], ["argument --regularizer", ">= 0"]),
    (["train", "--regularizer", "error_estimate:weight=abc"], ["argument --regularizer", "weight must be a finite"]),
    (["train", "--regularizer", "error_estimate:weight=1,weight=2"], ["argument --regularizer", "given twice"]),
    (["train", "--regularizer", "error_estimate:start=1"], ["argument --regularizer", "start=A,end=B"]),
    (["train", "--regularizer", "error_estimate:start=0,end=1"], ["argument --regularizer", "start must be"]),
    (["train", "--regularizer", "error_estimate:weight=1,start=2,end=1"], ["argument --regularizer", "start=A,end=B"]),
    (["train", "--regularizer", "error_estimate:power=3"], ["argument --regularizer", "power must be 1"]),
    (["train", "--regularizer", "error_estimate:power=nan"], ["argument --regularizer", "finite"]),
    (["train", "--regularizer", "error_estimate:reduce=bogus"], ["argument --regularizer", "reduce must be"]),
    (["train", "--regularizer", "error_estimate", "--regularizer", "error_estimate:weight=2"],
     ["argument --regularizer", "given twice"]),
    (["train", "--method", "rk4", "--regularizer", "error_estimate"], ["argument --regularizer", "error estimate"]),
    (["train", "--method", "rk4", "--regularizer", "stiffness"], ["argument --regularizer", "equal c"]),
    (["train", "--compare", ""], ["argument --compare", "empty variant"]),
    (["train", "--compare", "vanilla,,stiffness"], ["argument --compare", "empty variant"]),
    (["train", "--compare", "vanilla,vanilla"], ["argument --compare", "listed twice"]),
    (["train", "--compare", "vanilla+stiffness"], ["argument --compare", "variant of its own"]),
    (["train", "--compare", "error_estimate+"], ["argument --compare", "empty name"]),
    (["train", "--compare", "error_estimate+error_estimate"], ["argument --compare", "twice"]),
    (["train", "--compare", "stifness"], ["argument --compare", "did you mean 'stiffness'"]),
    (["train", "--compare", "vanilla", "--regularizer", "stiffness"], ["argument --regularizer", "no --compare"]),
    (["train", "--compare", "vanilla,stiffness", "--method", "rk4"], ["argument --compare", "variant 'stiffness'"]),
    # train --end-time: the sampler, its options and their values while parsing; b against the interval before
    # training
    (["check", "--steps", "0"], ["argument --steps", ">= 1"]),
    (["check", "--task", "mnist"], ["argument --task", "invalid choice"]),
    (["check", "--method", "dopri5"], ["argument --method", "unknown option(s) ['step_size']"]),
    (["check", "--threshold", "-1"], ["argument --threshold", "> 0"]),
    (["check", "--task", "digits", "--iterations", "5"], ["argument --iterations", "--epochs"]),
    (["check", "--epochs", "5"], ["argument --epochs", "--iterations"]),
    (["check", "--plot", "check.jpg"], ["argument --plot", "must end in .png, .pdf, .svg"]),
    (["train", "--plot", "/no/such/directory/train.png"], ["argument --plot", "does not exist", "create it"]),
    (["train", "--compare", "vanilla,steer", "--plot", "compare"], ["argument --plot", "must end in"]),
    (["train", "--adjoint", "--regularizer", "error_estimate"], ["argument --regularizer", "adjoint"]),
    (["train", "--task", "spheres", "--step-size", "0.5", "--adjoint"], ["argument --adjoint", "does not apply"]),
    (["train", "--adjoint", "--gradient", "checkpoint"],
     ["argument --adjoint", "disagrees with --gradient checkpoint"]),
    (["train", "--gradient", "adjoint", "--regularizer", "stiffness"], ["argument --regularizer",
                                                                       "use gradient='checkpoint'"]),
    (["train", "--gradient", "discrete"], ["argument --gradient", "invalid choice"]),
    (["train", "--task", "spheres", "--step-size", "0.5", "--gradient", "checkpoint"],
     ["argument --gradient", "does not apply"]),
    (["train", "--task", "spheres"], ["argument --step-size", "needs a fixed step"]),
    (["train", "--task", "spheres", "--step-size", "0.1", "--end-time", "steer"], ["argument --end-time",
                                                                                    "does not apply"]),
    (["train", "--task", "three_minima", "--method", "dopri5", "--step-size", "0.1"], ["argument --method",
                                                                                        "unknown option"]),
    (["train", "--task", "spheres", "--step-size", "0.1", "--schedule", "smoothing"], ["argument --schedule"]),
    (["train", "--schedule", "smooth"], ["argument --schedule", "did you mean 'smoothing'"]),
    (["train", "--schedule", "smoothing"], ["argument --schedule", "not a parameterized family"]),
    (["train", "--method", "rk2", "--step-size", "0.125", "--schedule", "smoothing:sigma=-1"],
     ["argument --schedule", "sigma must be a finite number > 0"]),
    (["train", "--method", "rk2", "--step-size", "0.125", "--schedule", "smoothing:sgma=1"],
     ["argument --schedule", "did you mean 'sigma'"]),
    (["train", "--method", "rk2", "--step-size", "0.125", "--schedule", "switching:u=0.5|0"],
     ["argument --schedule", "u != 0"]),
    (["train", "--method", "rk2", "--step-size", "0.125", "--schedule", "switching:u=0.5|0.6,v=1"],
     ["argument --schedule", "no option 'v'"]),
    (["train", "--method", "rk2", "--step-size", "0.125", "--schedule", "switching:u=0.5|x"],
     ["argument --schedule", "must be numbers"]),
    (["train", "--method", "rk2", "--step-size", "0.125", "--schedule", "switching:u=0.5|0.6,probs=1|1"],
     ["argument --schedule", "probs must sum to 1"]),
    (["train", "--schedule", "step_adaption"], ["argument --schedule", "runs adaptively"]),
    (["train", "--method", "rk2", "--step-size", "0"], ["argument --step-size", "> 0"]),
    (["train", "--method", "rk2", "--step-size", "2"], ["argument --step-size", "longer than the whole"]),
    (["train", "--end-time", "stere"], ["argument --end-time", "did you mean 'steer'"]),
    (["train", "--end-time", ":b=0.5"], ["argument --end-time", "no end-time sampler name"]),
    (["train", "--end-time", "steer:"], ["argument --end-time", "nothing after it"]),
    (["train", "--end-time", "steer:b"], ["argument --end-time", "is not key=value"]),
    (["train", "--end-time", "steer:b=0.1,b=0.2"], ["argument --end-time", "given twice"]),
    (["train", "--end-time", "steer:c=1"], ["argument --end-time", "no option 'c'", "b, min_length", "per_sample"]),
    (["train", "--end-time", "steer:bb=0.5"], ["argument --end-time", "did you mean 'b'"]),
    (["train", "--end-time", "steer:b=-1"], ["argument --end-time", "b must be a finite number > 0"]),
    (["train", "--end-time", "steer:b=0"], ["argument --end-time", "b must be a finite number > 0"]),
    (["train", "--end-time", "steer:b=abc"], ["argument --end-time", "b must be a number"]),
    (["train", "--end-time", "steer:b=nan"], ["argument --end-time", "finite"]),
    (["train", "--end-time", "steer:b=1"], ["argument --end-time", "0 < b <", "give a smaller b"]),
    (["train", "--end-time", "steer:b=2.5"], ["argument --end-time", "0 < b <"]),
    (["train", "--end-time", "steer:b=0.5,per_sample=maybe"], ["argument --end-time", "per_sample must be true"]),
    (["train", "--end-time", "steer_normal"], ["argument --end-time", "needs std", "steer_normal:std=V"]),
    (["train", "--end-time", "steer_normal:std=-1"], ["argument --end-time", "std must be a finite number > 0"]),
    (["train", "--end-time", "steer_intervals:eps=2"], ["argument --end-time", "eps = 2 must be smaller"]),
    (["train", "--task", "stiff", "--end-time", "steer:b=0.2"], ["argument --end-time", "0 < b <", "0.12605"]),
    (["train", "--end-time", "steer", "--compare", "vanilla"], ["argument --end-time", "in no --compare variant"]),
    (["train", "--end-time", "steer:b=1", "--compare", "vanilla,steer"], ["argument --end-time", "0 < b <"]),
    (["train", "--compare", "vanilla,stere"], ["argument --compare", "did you mean 'steer'"]),
    (["train", "--compare", "steer+steer_normal"], ["argument --compare", "at most one sampler"]),
    (["train", "--compare", "vanilla,steer_normal"], ["argument --compare", "needs std", "steer_normal:std=V"]),
    # train --task stiff: its own arguments, and the other task's refused
    (["train", "--task", "stiff", "--epochs", "3"], ["argument --epochs", "only applies with --task digits"]),
    (["train", "--iterations", "3"], ["argument --iterations", "only applies with --task stiff"]),
    (["train", "--stiffness-ratio", "100"], ["argument --stiffness-ratio", "only applies with --task stiff"]),
    (["train", "--variant", "pairs_from_start"], ["argument --variant", "only applies with --task stiff"]),
    (["train", "--task", "stiff", "--iterations", "0"], ["argument --iterations", ">= 1"]),
    (["train", "--task", "stiff", "--iterations", "2.5"], ["argument --iterations", "whole number"]),
    (["train", "--task", "stiff", "--stiffness-ratio", "1"], ["argument --stiffness-ratio", "> 1"]),
    (["train", "--task", "stiff", "--stiffness-ratio", "-5"], ["argument --stiffness-ratio", "> 1"]),
    (["train", "--task", "stiff", "--stiffness-ratio", "nan"], ["argument --stiffness-ratio", "finite"]),
    (["train", "--task", "stiff", "--stiffness-ratio", "abc"], ["argument --stiffness-ratio", "finite"]),
    (["train", "--task", "stiff", "--variant", "abs"], ["argument --variant", "invalid choice"]),
    (["train", "--task", "stiff", "--batch-size", "200"], ["argument --batch-size", "<= 118"]),
    (["train", "--task", "stiff", "--lr", "-1"], ["argument --lr", "> 0"]),
    (["train", "--task", "stiff", "--regularizer", "error_estimate:start=1,end=2"],
     ["argument --regularizer", "constant weight=W"]),
    (["train", "--task", "stiff", "--method", "rk4", "--regularizer", "error_estimate"],
     ["argument --regularizer", "error estimate"]),
    (["train", "--task", "stiff", "--seeds", "2"], ["argument --seeds", "only applies with --compare"]),
]


def _id(case):
    return " ".join(case) or "<empty>"


@pytest.mark.parametrize("argv, expected", BAD, ids=[_id(argv) for argv, _ in BAD])
def test_bad_command_line_is_one_line_and_exit_2(argv, expected, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("nde-plugins") and ": error: " in err
    assert "Traceback" not in err
    assert out == ""  # refused before anything was printed (or trained)
    for fragment in expected:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def test_step_size_zero_is_refused_not_taken_as_absent(capsys):
    # 0 used to be read as "not given" and returned a wrong answer with exit status 0.
    assert main(["solve", "--method", "rk4", "--step-size", "0", "--json"]) == 2
    assert "--step-size" in capsys.readouterr().err


def test_help_still_works(capsys):
    assert main(["--help"]) == 0
    assert "usage: nde-plugins" in capsys.readouterr().out
    assert main(["solve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--step-size" in out and "backward" in out


def test_a_bug_is_not_hidden_as_a_usage_error(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not a bad argument")

    monkeypatch.setattr(cli, "odeint", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["solve", "--method", "rk4"])
    monkeypatch.setattr(cli, "odeint", lambda *a, **k: {}["missing"])
    with pytest.raises(KeyError):
        main(["solve", "--method", "rk4"])


def test_library_refusal_at_run_time_is_one_line(monkeypatch, capsys):
    def diverged(*args, **kwargs):
        raise FloatingPointError("non-finite state at the final time\nwith 'rk4'")

    monkeypatch.setattr(cli, "odeint", diverged)
    assert main(["solve", "--method", "rk4"]) == 2
    err = capsys.readouterr().err
    assert err == "nde-plugins solve: error: non-finite state at the final time with 'rk4'\n"


def test_interrupt_is_one_line(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "odeint", interrupted)
    assert main(["solve", "--method", "rk4"]) == 130
    assert capsys.readouterr().err == "nde-plugins solve: interrupted\n"


def test_plugins_listing_survives_an_object_that_cannot_describe_itself():
    class Odd:
        __doc__ = 5  # not a string: .strip() fails

    assert cli._describe(Odd()).startswith("(no description: AttributeError")


def test_no_traceback_from_the_command(tmp_path):
    """The command run as a program: two bad command lines, side by side."""
    env = {**os.environ, "NDE_PLUGINS_DISABLE_ENTRY_POINTS": "1"}
    commands = {
        "argument --step-size": ["solve", "--step-size", "nan"],
        "argument --regularizer": ["train", "--regularizer", "error_estimate:powr=2"],
    }
    procs = {
        name: subprocess.Popen([sys.executable, "-m", "nde_plugins.cli", *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
        for name, argv in commands.items()
    }
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err
        assert "Traceback" not in err and err.count("\n") == 1, err
        assert name in err and out == ""


def test_a_figure_that_cannot_be_written_is_one_line(monkeypatch, tmp_path, capsys):
    import errno

    import nde_plugins.plots as plots

    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(plots, "plot_stability", refused)
    path = tmp_path / "region.png"
    assert main(["tableau", "rk2", "--plot", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"nde-plugins tableau: error: argument --plot: cannot write {str(path)!r}: Permission denied\n"


def test_a_check_with_more_training_steps_than_a_task_can_hold_is_one_line(capsys):
    """Refused before training: K = 1e8 would run out of memory in the first backward pass."""
    assert main(["check", "--steps", "100000000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --steps" in err and "at most 10,000 fixed steps" in err


@pytest.mark.parametrize("command", ["train", "check"])
def test_a_thread_count_below_one_is_one_line(command, capsys):
    assert main([command, "--threads", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --threads" in err and ">= 1" in err


@pytest.mark.parametrize("argv, fix", [
    (["train", "--method", "rk4"], "give --step-size"),
    (["train", "--task", "stiff", "--method", "rk4"], "use an adaptive method such as dopri5"),
])
def test_a_fixed_grid_method_without_a_step_size_is_refused(argv, fix, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --method: rk4 runs on a fixed grid" in err and fix in err
