"""Registered tableaux against torchdiffeq's own solvers, both called through ``torchdiffeq.odeint``.

Fixed grid (step ``--step-size``, default 0.05 on [0, 1]): every built-in fixed-grid tableau, at its
default parameters, is paired with the torchdiffeq solver that has the same coefficients
(``rk4_uv`` and ``rk38`` with ``rk4``, the 3/8 rule; ``rk2`` with ``midpoint``), and the family
members equal to torchdiffeq's other solvers are added (``rk2:u=1`` with ``heun2``,
``rk3:u=1/3,v=2/3`` with ``heun3``). A tableau torchdiffeq has no solver for (``rk4_classic``,
``ralston2``, the other rk4 families) is paired with the torchdiffeq solver of the same stage count
and marked ``~``: that ratio is the cost of the solver class, not a like-for-like comparison.

Adaptive (rtol = atol = ``--tol``): the built-in pairs with a torchdiffeq twin, which take the same
steps: ``dormand_prince`` vs ``dopri5`` and ``bogacki_shampine`` vs ``bosh3`` (whose dense-output
midpoint weights differ, so the states interpolated at t = 1 may differ slightly). ``heun_euler`` is
not paired with ``adaptive_heun``: torchdiffeq's method reuses the derivative at the Euler predictor
as the next step's first stage, one evaluation per step where Heun-Euler takes two.
``fehlberg45``, ``cash_karp`` and ``tsitouras5`` have no twin upstream.

Per size and mode (forward+backward of ``y(1).square().mean()``, and under ``torch.no_grad()``) one
table holds all pairs, timed in one random order per round; the A/A row is torchdiffeq's ``rk4``.
A same-tableau pair must give the same NFE and the same result (checked; a note says otherwise).
Target (issue 11): a same-tableau fixed-grid pair <= 1.02 at every size.

    python benchmarks/tableau_overhead.py [--sizes 1,2,16 16,8,32 256,16,64 1024,64,256] [--quick]
"""

from __future__ import annotations

import torch
import torchdiffeq
from _common import MODES, CountingMLP, Report, Timing, call, make_parser, measure, positive_float, setup

import nde_plugins as nde
from nde_plugins.tableaux import Tableau, TableauFamily

# torchdiffeq's fixed-grid solvers as Butcher tableaux (c, full a matrix, b), read off
# torchdiffeq/_impl/fixed_grid.py and rk_common.py (rk4 is rk4_alt_step_func, the 3/8 rule).
UPSTREAM_FIXED: dict[str, tuple[list[float], list[list[float]], list[float]]] = {
    "euler": ([0.0], [[0.0]], [1.0]),
    "midpoint": ([0.0, 0.5], [[0.0, 0.0], [0.5, 0.0]], [0.0, 1.0]),
    "heun2": ([0.0, 1.0], [[0.0, 0.0], [1.0, 0.0]], [0.5, 0.5]),
    "heun3": ([0.0, 1 / 3, 2 / 3], [[0.0, 0.0, 0.0], [1 / 3, 0.0, 0.0], [0.0, 2 / 3, 0.0]], [0.25, 0.0, 0.75]),
    "rk4": ([0.0, 1 / 3, 2 / 3, 1.0],
            [[0.0] * 4, [1 / 3, 0.0, 0.0, 0.0], [-1 / 3, 1.0, 0.0, 0.0], [1.0, -1.0, 1.0, 0.0]],
            [1 / 8, 3 / 8, 3 / 8, 1 / 8]),
}
#: The torchdiffeq solver a tableau without a twin is compared with, by stage count.
BY_STAGES = {1: "euler", 2: "midpoint", 3: "heun3", 4: "rk4"}
#: Family members that equal a torchdiffeq solver other than the one of their family's default.
EXTRA_MEMBERS = [("rk2", {"u": 1.0}, "rk2:u=1"), ("rk3", {"u": 1 / 3, "v": 2 / 3}, "rk3:u=1/3,v=2/3")]
ADAPTIVE_TWINS = {"dormand_prince": "dopri5", "bogacki_shampine": "bosh3"}
#: Upper bound on the CPU ratio of a same-tableau fixed-grid pair (the harness marks a row above it).
TARGET = 1.02


def same_tableau(tableau: Tableau, upstream: tuple[list[float], list[list[float]], list[float]]) -> bool:
    c, a, b = upstream
    if tableau.stages != len(c):
        return False
    ours = [*tableau.c, *(x for row in tableau.a_matrix() for x in row), *tableau.b]
    theirs = [*c, *(x for row in a for x in row), *b]
    return all(abs(x - y) < 1e-12 for x, y in zip(ours, theirs))


def fixed_grid_pairs() -> list[tuple[str, str, dict, str, bool]]:
    """(label, our method, its parameters, torchdiffeq method, same tableau) for every built-in fixed-grid tableau."""
    pairs = []
    members = []
    for reg in nde.get_registry().registrations("tableau"):
        if reg.source.origin != "built-in":
            continue
        tableau = reg.obj.member() if isinstance(reg.obj, TableauFamily) else reg.obj
        if tableau.b_hat is None:
            members.append((reg.name, {}, reg.name, tableau))
    members += [(name, params, label, nde.get_tableau(name, **params)) for name, params, label in EXTRA_MEMBERS]
    for name, params, label, tableau in members:
        twin = next((up for up, coeffs in UPSTREAM_FIXED.items() if same_tableau(tableau, coeffs)), None)
        upstream = twin or BY_STAGES.get(tableau.stages)
        if upstream is None:
            continue  # no torchdiffeq solver with as many stages
        pairs.append((label if twin else f"{label} ~", name, params, upstream, twin is not None))
    pairs.sort(key=lambda p: (list(UPSTREAM_FIXED).index(p[3]), not p[4], p[0]))
    return pairs


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--step-size", type=positive_float, default=0.05,
                        help="fixed-grid step on [0, 1] (default 0.05)")
    parser.add_argument("--tol", type=positive_float, default=1e-5,
                        help="rtol = atol of the adaptive pairs (default 1e-5)")
    args = parser.parse_args()
    if not 0 < args.step_size <= 1:
        parser.error(f"--step-size must lie in (0, 1] (a step on [0, 1]); got {args.step_size}")
    setup()
    timing = Timing.from_args(args)
    report = Report(args, f"registered tableaux vs torchdiffeq's own solvers, torchdiffeq.odeint on [0, 1], fixed "
                          f"step {args.step_size:g}, adaptive rtol=atol={args.tol:g}, field dim-width-dim tanh")
    pairs = fixed_grid_pairs()
    upstream_names = list(dict.fromkeys(p[3] for p in pairs))
    # Which solve each variant runs: (method, options).
    solves: dict[str, tuple[str, dict]] = {}
    against: dict[str, str] = {}
    for upstream in upstream_names:
        solves[upstream] = (upstream, {"step_size": args.step_size})
        for label, name, params, up, _ in pairs:
            if up == upstream:
                solves[label] = (name, {**params, "step_size": args.step_size})
                against[label] = upstream
    for ours, theirs in ADAPTIVE_TWINS.items():
        solves[theirs] = (theirs, {})
        solves[ours] = (ours, {})
        against[ours] = theirs
    twins = {label: up for label, _, _, up, same in pairs if same} | dict(ADAPTIVE_TWINS)

    for size in args.sizes:
        field = CountingMLP(size.dim, size.width)
        y0 = torch.randn(size.batch, size.dim)
        t = torch.tensor([0.0, 1.0])

        def solve(method, options, field=field, y0=y0, t=t):
            return torchdiffeq.odeint(field, y0, t, method=method, options=options, rtol=args.tol,
                                      atol=args.tol)[-1]

        with torch.no_grad():
            finals = {label: solve(*spec) for label, spec in solves.items()}
        differ = [f"{label} vs {up} (max abs difference {float((finals[label] - finals[up]).abs().max()):.2g})"
                  for label, up in twins.items() if not torch.allclose(finals[label], finals[up], rtol=1e-5, atol=1e-6)]
        notes = [f"(!) same tableau, different final state: {', '.join(differ)}"] if differ else []
        for mode in MODES:
            variants = {label: call(field, lambda spec=spec: solve(*spec), mode) for label, spec in solves.items()}
            result = measure(variants, "rk4", timing, against=against)
            targets = {label: TARGET for label, _, _, _, same in pairs if same}  # "~" and adaptive pairs: none
            report.table(f"{size}, {mode}", result, targets, notes=notes,
                         meta={"size": size.spec, "mode": mode, "step_size": args.step_size, "tol": args.tol})
    report.finish()


if __name__ == "__main__":
    main()
