"""``nde-plugins tableau``: a tableau's Butcher table, order conditions and stability; --sweep over a family."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from .. import get_registry, get_tableau, parse_method_spec
from ..tableaux import Tableau, TableauFamily
from ._args import MAX_SWEEP, family_param, plot_path, sweep_range, tableau_spec, whole_number_in
from ._parser import command
from ._usage import UsageError, argument, write_figure

#: Significant digits a float64 can carry; more only prints rounding noise.
MAX_PRECISION = 17


def _params(pairs: Sequence[tuple[str, float]], spec_params: dict[str, float]) -> dict[str, float]:
    """--param values; a parameter given twice, or also in the NAME spec, is refused (neither would win)."""
    params: dict[str, float] = {}
    for key, value in pairs:
        if key in params:
            raise UsageError(f"argument --param: {key!r} is given twice ({params[key]:g} and {value:g}); give it once")
        if key in spec_params:
            raise UsageError(
                f"argument --param: {key!r} is given both in NAME ({spec_params[key]:g}) and with --param "
                f"({value:g}); give it once"
            )
        params[key] = value
    return params


def _stability_lines(tableau: Tableau) -> list[str]:
    from ..tableaux._stability import (
        error_coefficient_norm,
        format_polynomial,
        real_stability_interval,
        stability_polynomial,
    )

    lines = []
    for which in ("b", "b_hat") if tableau.is_adaptive else ("b",):
        coefficients = stability_polynomial(tableau, which)
        lines.append(f"stability function ({which}): R(z) = {format_polynomial(coefficients)}")
        lines.append(f"  real stability interval [{real_stability_interval(coefficients):.4f}, 0]; principal "
                     f"error coefficients (order {(tableau.order if which == 'b' else tableau.embedded_order) + 1} "
                     f"trees): 2-norm {error_coefficient_norm(tableau, which):.4g}")
    return lines


def _family_names() -> list[str]:
    registry = get_registry()
    return [reg.name for reg in registry.registrations("tableau") if isinstance(reg.obj, TableauFamily)]


def _tableau_sweep(args: argparse.Namespace, name: str, fixed: dict[str, float]) -> int:
    """``tableau FAMILY --sweep PARAM=START:STOP:N``: the members' stability and error coefficients."""
    from ..tableaux._stability import (
        error_coefficient_norm,
        format_polynomial,
        real_stability_interval,
        shared_stability_function,
        stability_polynomial,
    )

    param, values = args.sweep
    family = get_registry().get("tableau", name)
    if not isinstance(family, TableauFamily):
        raise UsageError(f"argument --sweep: {name!r} is a single tableau, not a family; --sweep varies a family's "
                         f"parameter (families: {', '.join(_family_names())})")
    if param not in family.params:
        raise UsageError(f"argument --sweep: family {name!r} has no parameter {param!r}; its parameters are "
                         f"{', '.join(family.params)}")
    if param in fixed:
        raise UsageError(f"argument --sweep: {param!r} is swept and also set to {fixed[param]:g} in NAME or --param; "
                         "give it once")
    members = []
    for value in values:
        with argument("--sweep"):
            members.append(family.member({**fixed, param: value}))
    polynomials = [stability_polynomial(member) for member in members]
    others = ", ".join(f"{k}={v:g}" for k, v in family.resolve({**fixed, param: values[0]}).items() if k != param)
    print(f"{name}: {param} from {values[0]:g} to {values[-1]:g}, {len(values)} members"
          + (f" ({others})" if others else ""))
    order = members[0].order
    print(f"  {param:<10s}  {'real stability interval':<25s}  principal error coefficients (order {order + 1}), 2-norm")
    for value, member, coefficients in zip(values, members, polynomials):
        interval = f"[{real_stability_interval(coefficients):.4f}, 0]"
        print(f"  {value:<10.6g}  {interval:<25s}  {error_coefficient_norm(member):.4g}")
    if shared_stability_function(polynomials):
        print(f"every member has the same stability function R(z) = {format_polynomial(polynomials[0])}: "
              f"{param} changes the error coefficients, not the stability region")
    else:
        print("the members' stability functions differ:")
        for value, coefficients in zip(values, polynomials):
            print(f"  {param}={value:g}: R(z) = {format_polynomial(coefficients)}")
    if args.plot is not None:
        from ..plots import plot_stability_sweep

        write_figure(lambda: plot_stability_sweep(family, param, values, args.plot, fixed), args.plot)
    return 0


def cmd_tableau(args: argparse.Namespace) -> int:
    """Print the tableau ``args.name`` (a family member with ``--param``), or a family's members with --sweep."""
    name, spec_params = parse_method_spec(args.name)
    params = _params(args.param, spec_params)
    if args.sweep is not None:
        return _tableau_sweep(args, name, {**spec_params, **params})
    with argument("--param" if params else "NAME"):
        tableau = get_tableau(name, **spec_params, **params)
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
    print()
    print("\n".join(_stability_lines(tableau)))
    if args.plot is not None:
        from ..plots import plot_stability

        write_figure(lambda: plot_stability(tableau, args.plot), args.plot, quiet=True)
        print(f"\nfigure written to {args.plot}")  # set apart from the stability lines above
    return 0


def add_parser(sub: Any) -> None:
    """The ``tableau`` subcommand and its arguments."""
    p = command(sub, "tableau", "print a tableau's Butcher table, order-condition residuals and stability; "
                                "draw its stability region",
                "Print a tableau's Butcher table, order-condition residuals, stability function and principal "
                "error\ncoefficients. --plot draws the stability region |R(z)| <= 1 (with the embedded method's "
                "for a pair);\n--sweep compares members of a family, --plot overlays their regions.")
    p.add_argument("name", type=tableau_spec, metavar="NAME",
                   help="registered tableau or family, or a family spec, e.g. rk4_uv or rk4_uv:u=0.3,v=0.7")
    p.add_argument("--param", type=family_param, action="append", default=[], metavar="NAME=VALUE",
                   help="family parameter, a finite number (repeatable; each parameter once, here or in NAME)")
    p.add_argument("--precision", type=whole_number_in(1, MAX_PRECISION), default=6,
                   help=f"significant digits in the table, 1 to {MAX_PRECISION} (default %(default)s)")
    p.add_argument("--sweep", type=sweep_range, default=None, metavar="PARAM=START:STOP:N",
                   help=f"families only: N members (2 to {MAX_SWEEP}) with PARAM evenly spaced from START to STOP, "
                        "every value inside the family's domain; prints each member's real stability interval and "
                        "error coefficients")
    p.add_argument("--plot", type=plot_path, default=None, metavar="PATH",
                   help="write the stability region(s) as a figure (.png, .pdf or .svg; needs the plots extra)")
    p.set_defaults(func=cmd_tableau)
