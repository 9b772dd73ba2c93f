"""The ``nde-plugins`` command: list plugins, inspect tableaux, solve a test problem."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

import torch

from . import get_registry, get_tableau, odeint, parse_method_spec, resolve_method
from ._torchdiffeq import is_fixed_grid
from .plugins import PluginError, UnknownPluginNameError
from .regularizers import ExponentialAnnealing
from .tableaux import Tableau, TableauError, TableauFamily

STIFFNESS_DEFAULT_WEIGHT = 0.0285


def _describe(obj: object) -> str:
    if isinstance(obj, TableauFamily):
        params = ", ".join(f"{p}={obj.defaults[p]:.6g}" for p in obj.params)
        return f"family({params}) order {obj.member().order}; {obj.description}".rstrip("; ")
    if isinstance(obj, Tableau):
        kind = f"order {obj.order}" + (f"({obj.embedded_order}) adaptive" if obj.is_adaptive else " fixed-grid")
        return f"{kind}; {obj.description}".rstrip("; ")
    doc = (getattr(obj, "__doc__", None) or "").strip()
    return doc.splitlines()[0] if doc else ""


def cmd_plugins(args: argparse.Namespace) -> int:
    registry = get_registry()
    rows = [
        {
            "kind": reg.kind,
            "name": reg.name,
            "source": reg.source.distribution or reg.source.plugin,
            "version": reg.source.version,
            "plugin": reg.source.plugin,
            "origin": reg.source.origin,
            "description": _describe(reg.obj),
        }
        for reg in registry.registrations()
    ]
    errors = [
        {"plugin": e.source.plugin, "source": e.source.distribution, "version": e.source.version, "error": e.message}
        for e in registry.load_errors
    ]
    if args.json:
        # Plugins that failed to load appear as objects of kind "load_error".
        failed = [{"kind": "load_error", "name": e["plugin"], **e} for e in errors]
        json.dump(rows + failed, sys.stdout, indent=2)
        print()
        return 0
    headers = ("kind", "name", "source", "version", "description")
    table = [[r["kind"], r["name"], r["source"] or "", r["version"] or "", r["description"]] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    if errors:
        print(f"\n{len(errors)} plugin(s) failed to load and were skipped:")
        for e in errors:
            print(f"  {e['plugin']} ({e['source'] or 'no distribution'} {e['version'] or ''}): {e['error']}")
    return 0


def _params(pairs: Sequence[str]) -> dict[str, float]:
    params: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--param {pair!r} is not NAME=VALUE")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--param {pair!r}: {value!r} is not a number") from None
    return params


def cmd_tableau(args: argparse.Namespace) -> int:
    name, spec_params = parse_method_spec(args.name)
    tableau = get_tableau(name, **{**spec_params, **_params(args.param)})
    print(f"{tableau.name}: {tableau.stages} stages, order {tableau.order}"
          + (f", embedded order {tableau.embedded_order}" if tableau.is_adaptive else "")
          + (", FSAL" if tableau.is_fsal else ""))
    if tableau.description:
        print(tableau.description)
    print()
    print(tableau.format(args.precision))
    for which in ("b", "b_hat") if tableau.is_adaptive else ("b",):
        residuals = tableau.residuals(which)
        print(f"\norder conditions for {which} (up to order {residuals[-1].order}):")
        print(f"  {'order':>5s}  {'tree':24s} {'sum w*Phi':>22s} {'1/gamma':>22s} {'residual':>10s}")
        for r in residuals:
            print(f"  {r.order:5d}  {r.label:24s} {r.value:22.16g} {r.target:22.16g} {r.residual:10.2e}")
    return 0


def cmd_solve(args: argparse.Namespace) -> int:
    """Solve the harmonic oscillator x'' = -x over [0, T]; the exact solution is known."""
    nfe = 0

    def field(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nonlocal nfe
        nfe += 1
        return torch.stack([y[..., 1], -y[..., 0]], dim=-1)

    name, options = resolve_method(args.method)
    if args.step_size is None and is_fixed_grid(name, options):
        args.step_size = 0.1  # torchdiffeq's default grid is t itself: here a single step over [0, T]
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0.0, args.t_end, 2, dtype=torch.float64)
    options = {"step_size": args.step_size} if args.step_size else {}
    y = odeint(field, y0, t, method=args.method, rtol=args.rtol, atol=args.atol, options=options)
    exact = torch.tensor([math.cos(args.t_end), -math.sin(args.t_end)], dtype=torch.float64)
    err = (y[-1] - exact).abs().max().item()
    if args.json:
        json.dump({"method": args.method, "t_end": args.t_end, "y_end": y[-1].tolist(), "max_abs_error": err,
                   "nfe": nfe}, sys.stdout)
        print()
    else:
        print(f"harmonic oscillator on [0, {args.t_end:g}] with {args.method}"
              + (f", step_size {args.step_size:g}" if args.step_size else f", rtol {args.rtol:g}, atol {args.atol:g}"))
        print(f"  y(T)       = {y[-1].tolist()}")
        print(f"  exact      = {exact.tolist()}")
        print(f"  max error  = {err:.3e}")
        print(f"  NFE        = {nfe}")
    return 0


# Weights used by `train --compare` for a regularizer not given with --regularizer; chosen on the
# digits task (benchmarks/digits_regularizers.py reports what was tried).
DEFAULT_WEIGHTS = {"error_estimate": 0.1, "stiffness": STIFFNESS_DEFAULT_WEIGHT, "kinetic_energy": 0.01,
                   "jacobian_frobenius": 0.01}


def _value(text: str):
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return float(text)
    except ValueError:
        return text.strip()


def parse_regularizer(spec: str, epochs: int) -> tuple[str, object]:
    """``NAME[:weight=W,opt=V,...]`` or ``NAME:start=A,end=B`` (exponential annealing over the epochs)."""
    name, _, rest = spec.partition(":")
    name = name.strip()
    get_registry().get("step_regularizer", name)  # unknown names fail here, with suggestions
    options = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"--regularizer {spec!r}: {part!r} is not key=value")
        options[key.strip()] = _value(value)
    if "start" in options or "end" in options:
        if "weight" in options or not ("start" in options and "end" in options):
            raise ValueError(f"--regularizer {spec!r}: give weight=W, or start=A,end=B for annealing")
        weight = ExponentialAnnealing(options.pop("start"), options.pop("end"), epochs)
    elif "weight" in options:
        weight = options.pop("weight")
    elif name in DEFAULT_WEIGHTS:
        weight = DEFAULT_WEIGHTS[name]
    else:
        raise ValueError(f"--regularizer {spec!r}: no weight given (write {name}:weight=W)")
    return name, {"weight": weight, **options}


def cmd_train(args: argparse.Namespace) -> int:
    from .experiments.compare import compare, format_table
    from .experiments.digits import TrainConfig, train_digits

    given = dict(parse_regularizer(spec, args.epochs) for spec in args.regularizer)
    base = TrainConfig(method=args.method, rtol=args.rtol, atol=args.atol, regularizers=given, epochs=args.epochs,
                       seed=args.seed, batch_size=args.batch_size, lr=args.lr)
    progress = False if args.json else None
    if not args.compare:
        result = train_digits(base, progress=progress)
        if args.json:
            json.dump(result.as_dict(), sys.stdout, indent=2)
            print()
        else:
            regs = ", ".join(f"{k}={v['weight']!r}" for k, v in given.items()) or "none"
            print(f"digits, {args.method} rtol={args.rtol:g} atol={args.atol:g}, regularizers: {regs}, "
                  f"{args.epochs} epochs, seed {args.seed}")
            print(f"  train accuracy   {result.train_accuracy:.2f} %")
            print(f"  test accuracy    {result.test_accuracy:.2f} %")
            print(f"  prediction NFE   {result.nfe_predict}")
            print(f"  training time    {result.train_time_s:.2f} s")
            print(f"  prediction time  {result.predict_time_s:.4f} s")
        return 0
    variants = {}
    for item in (v.strip() for v in args.compare.split(",")):
        if item == "vanilla":
            variants[item] = {}
            continue
        variants[item] = {}
        for name in item.split("+"):
            variants[item][name] = given.get(name) or parse_regularizer(name, args.epochs)[1]
    results = compare(variants, base, range(args.seed, args.seed + args.seeds),
                      run=lambda config: train_digits(config, progress=progress))
    if args.json:
        json.dump({name: [r.as_dict() for r in runs] for name, runs in results.items()}, sys.stdout, indent=2)
        print()
    else:
        print(f"digits, {args.method} rtol={args.rtol:g} atol={args.atol:g}, {args.epochs} epochs, "
              f"{args.seeds} seeds (mean +- std)")
        print(format_table(results))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nde-plugins", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("plugins", help="list registered plugins of every kind and plugins that failed to load")
    p.add_argument("--json", action="store_true", help="print a JSON list of objects (kind, name, source, ...)")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("tableau", help="print a tableau's Butcher table and order-condition residuals")
    p.add_argument("name", help="registered name or spec, e.g. rk4_uv or rk4_uv:u=0.3,v=0.7")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="family parameter (repeatable)")
    p.add_argument("--precision", type=int, default=6, help="significant digits in the table")
    p.set_defaults(func=cmd_tableau)

    p = sub.add_parser("solve", help="solve a harmonic oscillator with a method and report the error and NFE")
    p.add_argument("--method", default="rk4_uv:u=0.3,v=0.7", help="method name or spec (default %(default)s)")
    p.add_argument(
        "--step-size", type=float, default=None,
        help="fixed step size; fixed-grid methods default to 0.1, others run adaptively",
    )
    p.add_argument("--rtol", type=float, default=1e-7)
    p.add_argument("--atol", type=float, default=1e-9)
    p.add_argument("--t-end", type=float, default=2 * math.pi)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_solve)

    p = sub.add_parser("train", help="train a Neural ODE on an embedded task, optionally with regularizers")
    p.add_argument("--task", choices=["digits"], default="digits")
    p.add_argument("--method", default="dopri5")
    p.add_argument("--rtol", type=float, default=1.4e-8)
    p.add_argument("--atol", type=float, default=1.4e-8)
    p.add_argument("--regularizer", action="append", default=[], metavar="NAME[:weight=W,...]",
                   help="step regularizer (repeatable); start=A,end=B anneals exponentially over the epochs")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0, help="training seed (first seed with --seeds)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds for --compare")
    p.add_argument("--compare", default=None, metavar="V1,V2,...",
                   help="variants to compare, e.g. vanilla,error_estimate,stiffness,error_estimate+stiffness")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (TableauError, PluginError, UnknownPluginNameError, ValueError) as exc:
        print(f"nde-plugins: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
