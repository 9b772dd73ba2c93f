"""``nde-plugins solve``: the harmonic oscillator x'' = -x with a method; its error and NFE."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import torch

from ..solvers import resolve_solver, with_options
from ._args import method_spec, nonzero_float, positive_float
from ._parser import command
from ._usage import UsageError

#: Step of `solve` for a fixed-grid method when --step-size is not given (clipped to |T|).
DEFAULT_STEP_SIZE = 0.1
#: `solve` refuses a fixed grid with more steps than this: more take minutes and gigabytes, and on [0, 2*pi]
#: a step of 1e-4 (63,000 RK4 steps) already reaches the float64 rounding floor.
MAX_FIXED_STEPS = 100_000


def _solve_step(args: argparse.Namespace) -> float | None:
    """The fixed step of the solve, or None for an adaptive one; refuses steps the interval cannot take."""
    solver = resolve_solver(args.method)
    span = abs(args.t_end)
    step = args.step_size
    if step is not None:
        stepped = "step_size" in solver.accepted and with_options(solver, {**solver.options, "step_size": step})
        if not stepped or not stepped.fixed_grid:
            raise UsageError(
                f"argument --step-size: method {args.method!r} chooses its own steps and takes no fixed step size; "
                "drop --step-size and set --rtol/--atol, or use a fixed-grid method such as rk4"
            )
        if step > span:
            raise UsageError(
                f"argument --step-size: {step:g} is longer than the whole interval |--t-end| = {span:g}; "
                f"give --step-size <= {span:g}"
            )
    elif solver.fixed_grid:
        step = min(DEFAULT_STEP_SIZE, span)
    if step is not None and span / step > MAX_FIXED_STEPS:
        if args.step_size is None:
            raise UsageError(
                f"argument --t-end: |{args.t_end:g}| with the default step {step:g} makes more than "
                f"{MAX_FIXED_STEPS} steps; give a shorter --t-end or a --step-size >= {span / MAX_FIXED_STEPS:.3g}"
            )
        raise UsageError(
            f"argument --step-size: {step:g} over |--t-end| = {span:g} makes more than {MAX_FIXED_STEPS} steps; "
            f"give --step-size >= {span / MAX_FIXED_STEPS:.3g}"
        )
    return step


def cmd_solve(args: argparse.Namespace) -> int:
    """Solve the harmonic oscillator x'' = -x over [0, T]; the exact solution is known."""
    # Looked up on the package when the command runs, not bound here: nde_plugins.cli.odeint is the
    # name to replace to make the solve fail (the tests of one-line run-time errors do).
    from . import odeint

    nfe = 0

    def field(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nonlocal nfe
        nfe += 1
        return torch.stack([y[..., 1], -y[..., 0]], dim=-1)

    step = _solve_step(args)
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0.0, args.t_end, 2, dtype=torch.float64)
    options = {"step_size": step} if step is not None else {}
    y = odeint(field, y0, t, method=args.method, rtol=args.rtol, atol=args.atol, options=options)
    exact = torch.tensor([math.cos(args.t_end), -math.sin(args.t_end)], dtype=torch.float64)
    err = (y[-1] - exact).abs().max().item()
    if args.json:
        json.dump({"method": args.method, "t_end": args.t_end, "step_size": step, "y_end": y[-1].tolist(),
                   "max_abs_error": err, "nfe": nfe}, sys.stdout)
        print()
    else:
        print(f"harmonic oscillator on [0, {args.t_end:g}] with {args.method}"
              + (f", step_size {step:g}" if step is not None else f", rtol {args.rtol:g}, atol {args.atol:g}"))
        print(f"  y(T)       = {y[-1].tolist()}")
        print(f"  exact      = {exact.tolist()}")
        print(f"  max error  = {err:.3e}")
        print(f"  NFE        = {nfe}")
    return 0


def add_parser(sub: Any) -> None:
    """The ``solve`` subcommand and its arguments."""
    p = command(sub, "solve", "solve a harmonic oscillator with a method and report the error and NFE")
    p.add_argument("--method", type=method_spec, default="rk4_uv:u=0.3,v=0.7",
                   help="torchdiffeq method, registered tableau or family spec (default %(default)s)")
    p.add_argument(
        "--step-size", type=positive_float, default=None,
        help=f"fixed step, > 0 and at most |T|, for fixed-grid methods and tableaux (a pair then runs on the "
             f"grid); default {DEFAULT_STEP_SIZE:g} for fixed-grid methods, none for adaptive ones; at most "
             f"{MAX_FIXED_STEPS} steps",
    )
    p.add_argument("--rtol", type=positive_float, default=1e-7, help="relative tolerance > 0 (default %(default)g)")
    p.add_argument("--atol", type=positive_float, default=1e-9, help="absolute tolerance > 0 (default %(default)g)")
    p.add_argument("--t-end", type=nonzero_float, default=2 * math.pi,
                   help="end time T, finite and != 0; a negative T integrates backward from 0 (default 2*pi)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_solve)
