"""The ``nde-plugins`` command: list plugins, inspect tableaux, solve, train on a task, start a plugin package.

Every bad command line ends the same way: exit status 2 and one line on stderr that names the
argument, the rule it broke and, where there is one, the fix. Numbers are checked by the argument
types (``_args``) as they are parsed; names and specs are looked up in the registry as they are
parsed; rules that tie several arguments together are checked before any solve or training starts.

One module per command (``plugins``, ``tableau``, ``solve``, ``check``, ``train``, and ``launch``
for training across processes); this one assembles the parser and runs a command line. Every name
that was importable from ``nde_plugins.cli`` still is.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

# solve and train look odeint and _launch up here when they run: replacing them on this package
# (as tests do, to make a solve fail or keep torchrun from starting) takes effect.
from .. import odeint
from ..experiments.tasks import DEFAULT_WEIGHTS, STIFFNESS_DEFAULT_WEIGHT
from . import check, new, plugins, solve, tableau, train
from ._args import (
    MAX_SEED,
    MAX_SWEEP,
    PLOT_SUFFIXES,
    compare_list,
    end_time_spec,
    family_param,
    method_spec,
    nonzero_float,
    plot_path,
    plugin_kind,
    positive_float,
    positive_int,
    regularizer_spec,
    schedule_spec,
    stiffness_ratio,
    sweep_range,
    tableau_spec,
)
from ._parser import EXAMPLES, Parser, VersionAction, examples
from ._plugin_specs import WEIGHT_KEYS, parse_end_time, parse_regularizer
from ._train_checks import TASK_DEFAULTS, TASK_ONLY
from ._train_report import print_ranks as _print_ranks  # noqa: F401 (its name before the split)
from ._usage import LIBRARY_ERRORS, UsageError, one_line
from .check import cmd_check
from .launch import (
    BACKENDS,
    PROCESS_GROUP_TIMEOUT_S,
    TORCHRUN_VARIABLES,
    default_backend,
    torchrun_command,
    torchrun_rank,
    torchrun_world,
)
from .launch import _launch as _launch
from .launch import _without_nproc as _without_nproc
from .plugins import _describe as _describe
from .plugins import cmd_plugins
from .solve import DEFAULT_STEP_SIZE, MAX_FIXED_STEPS, cmd_solve
from .tableau import MAX_PRECISION, cmd_tableau
from .train import SYNTHETIC_TASKS, cmd_train


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command line: one subcommand per command module, in the order of --help."""
    parser = Parser(prog="nde-plugins", description=__doc__.split("\n\n")[0].replace("``", ""), epilog=examples(None),
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (plugins, tableau, solve, check, train, new):
        module.add_parser(sub)
    return parser


def _fail(message: str, code: int = 2) -> int:
    print(message, file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (2 for a bad command line, never a traceback for one).

    An exception of another kind than the library raises for a refused value is a bug and propagates.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # Under torchrun every rank says what failed, naming itself: torchrun stops the other ranks as soon
    # as one exits, so the first to fail may be the only one to speak.
    where = f" (rank {os.environ['RANK']})" if torchrun_rank() else ""
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _fail(f"{exc.prog or parser.prog}{where}: error: {exc}")
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    args.argv = argv  # train --nproc hands it on to torchrun
    prog = f"{parser.prog} {args.command}"
    try:
        return args.func(args)
    except UsageError as exc:
        return _fail(f"{exc.prog or prog}{where}: error: {one_line(exc)}")
    except LIBRARY_ERRORS as exc:
        return _fail(f"{prog}{where}: error: {one_line(exc)}")
    except KeyboardInterrupt:
        return _fail(f"{prog}: interrupted", 130)
    except BrokenPipeError:
        # The reader went away (`nde-plugins plugins | head`): stop quietly, without a second error at exit.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


__all__ = [
    "BACKENDS", "DEFAULT_STEP_SIZE", "DEFAULT_WEIGHTS", "EXAMPLES", "MAX_FIXED_STEPS", "MAX_PRECISION", "MAX_SEED",
    "MAX_SWEEP", "PLOT_SUFFIXES", "PROCESS_GROUP_TIMEOUT_S", "STIFFNESS_DEFAULT_WEIGHT", "SYNTHETIC_TASKS",
    "TASK_DEFAULTS", "TASK_ONLY", "TORCHRUN_VARIABLES", "WEIGHT_KEYS", "UsageError", "build_parser", "cmd_check",
    "cmd_plugins", "cmd_solve", "cmd_tableau", "cmd_train", "compare_list", "default_backend", "end_time_spec",
    "family_param", "main", "method_spec", "nonzero_float", "odeint", "parse_end_time", "parse_regularizer",
    "plot_path", "plugin_kind", "positive_float", "positive_int", "regularizer_spec", "schedule_spec",
    "stiffness_ratio", "sweep_range", "tableau_spec", "torchrun_command", "torchrun_world",
]
