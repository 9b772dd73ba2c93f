"""Figures (matplotlib, the ``plots`` extra); never imported by the library itself, only on request.

matplotlib (and numpy, which it brings) is imported inside the drawing functions, never at import
time, so ``import nde_plugins.plots`` costs nothing and works without the extra. The stability
figures draw the numbers of ``nde_plugins.tableaux._stability`` (the stability polynomial of a tableau,
its real stability interval, the principal local error coefficients), which ``nde-plugins
tableau`` also prints. ``plot_comparison`` (bars per variant) and ``plot_curves`` (a quantity
against a swept one, mean and spread over seeds) draw the CLI's ``--compare`` figure and those of
the examples.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .tableaux import Tableau, TableauError, TableauFamily
from .tableaux._stability import (
    error_coefficient_norm,
    format_polynomial,
    principal_error_coefficients,
    real_stability_interval,
    shared_stability_function,
    stability_function,
    stability_polynomial,
)

#: Resolution of every figure written here (pixels per inch).
DPI = 120

# ------------------------------------------------------------------------------------------------
# Drawing


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display is needed or assumed
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'nde_plugins[plots]'") from None
    return plt


def require_matplotlib() -> None:
    """Raise ``ImportError`` naming the install command unless matplotlib is there: a script calls
    it before a long run whose figure would otherwise fail only at the end."""
    _pyplot()


def _save(fig: Any, plt: Any, path: str) -> None:
    try:
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)


def plot_check_report(report: Any, path: str, step_history: list[int] | None = None) -> None:
    """The proper-ODE check as a figure: the metric against the test step for every test solver
    (the training value as a line, the threshold band around it), and, if given, the number of steps
    over training under step adaption."""
    plt = _pyplot()
    panels = 2 if step_history else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    ax = axes[0][0]
    by_solver: dict[str, list] = {}
    for row in report.rows:
        by_solver.setdefault(row.solver, []).append(row)
    for solver, rows in by_solver.items():
        xs = [r.steps if r.steps is not None else r.tolerance for r in rows]
        ax.plot(xs, [r.value for r in rows], marker="o", label=solver)
    if report.rows and report.rows[0].tolerance is not None:
        ax.set_xscale("log")
        ax.set_xlabel("test tolerance")
    else:
        ax.set_xlabel("test steps (training grid x factor)")
    ax.axhline(report.training_value, color="black", linewidth=1, label="training solver")
    ax.axhspan(report.training_value - report.threshold, report.training_value + report.threshold, color="grey",
               alpha=0.15, label=f"threshold {report.threshold:g}")
    ax.set_ylabel(f"test {report.metric}")
    ax.set_title(f"{report.training_solver}: {report.verdict}")
    ax.legend(fontsize=8)
    if step_history:
        ax2 = axes[0][1]
        ax2.plot(range(1, len(step_history) + 1), step_history, marker=".")
        ax2.set_xlabel("adaption check")
        ax2.set_ylabel("steps on [t0, t1]")
        ax2.set_title("step adaption")
    fig.tight_layout()
    _save(fig, plt, path)


# -- stability regions ---------------------------------------------------------------------------


def _main_radius(coefficients: Sequence[float]) -> float:
    """How far the region reaches from 0 into the left half-plane: the largest first exit from
    |R| <= 1 along rays from the origin (the region of a consistent method starts there)."""
    import numpy as np

    degree = len(coefficients) - 1
    radii = np.linspace(0.0, 2.0 * degree**2 + 1.0, 4000)[1:]
    angles = np.linspace(np.pi / 2, 3 * np.pi / 2, 91)
    outside = np.abs(stability_function(coefficients, radii[None, :] * np.exp(1j * angles)[:, None])) > 1.0
    first_exit = np.where(outside.any(axis=1), outside.argmax(axis=1), len(radii) - 1)
    return float(radii[first_exit].max())


def _region_box(polynomials: Sequence[Sequence[float]]) -> tuple[float, float, float]:
    """(x_min, x_max, y_max) of the curves |R(z)| = 1 near the region that starts at the origin.

    The curves come from the boundary locus (the roots of R(z) = e^(i theta)). Pieces farther than
    twice the main region's reach are left out of the box: a high-degree R with a small leading
    coefficient has specks of |R| <= 1 tens of units away (Dormand-Prince's embedded method has one
    near z = -45) that would shrink the region itself to a few pixels.
    """
    import numpy as np

    xs, ys = [0.0], [0.0]
    for coefficients in polynomials:
        if len(coefficients) < 2:
            continue
        reach = 2.0 * _main_radius(coefficients)
        highest_first = np.array(coefficients[::-1], dtype=complex)
        for theta in np.linspace(0.0, 2 * np.pi, 181):
            shifted = highest_first.copy()
            shifted[-1] -= np.exp(1j * theta)
            roots = np.roots(shifted)
            roots = roots[np.abs(roots) <= reach]
            xs.extend(roots.real)
            ys.extend(np.abs(roots.imag))
    return float(min(xs)), float(max(xs)), float(max(ys))


def _complex_grid(polynomials: Sequence[Sequence[float]], points: int = 700) -> tuple[Any, Any, Any]:
    """(X, Y, Z) over a box that holds every region with a margin, equal scales on both axes."""
    import numpy as np

    x_min, x_max, y_max = _region_box(polynomials)
    span = max(x_max - x_min, 2 * y_max, 1e-3)
    pad = 0.08 * span
    x_low, x_high, y_high = x_min - pad, max(x_max, 0.0) + pad, y_max + pad
    rows = int(min(max(points * 2 * y_high / (x_high - x_low), 200), 1400))
    x, y = np.meshgrid(np.linspace(x_low, x_high, points), np.linspace(-y_high, y_high, rows))
    return x, y, x + 1j * y


def _region_axes(ax: Any) -> None:
    ax.axhline(0, color="black", linewidth=0.6)
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.set_xlabel("Re(hλ)")
    ax.set_ylabel("Im(hλ)")


def _fill_region(ax: Any, grid: tuple, coefficients: Sequence[float], color: Any, alpha: float = 0.35,
                 linestyle: str = "solid") -> None:
    import numpy as np

    x, y, z = grid
    magnitude = np.abs(stability_function(coefficients, z))
    if alpha:
        ax.contourf(x, y, magnitude, levels=[0.0, 1.0], colors=[color], alpha=alpha)
    ax.contour(x, y, magnitude, levels=[1.0], colors=[color], linewidths=1.6, linestyles=linestyle)


def _caption(fig: Any, lines: Sequence[str], width: int = 110) -> None:
    text = "\n".join(wrapped for line in lines for wrapped in textwrap.wrap(line, width))
    fig.text(0.01, 0.01, text, ha="left", va="bottom", fontsize=9, family="DejaVu Sans")


def _interval_text(coefficients: Sequence[float]) -> str:
    return f"real interval [{real_stability_interval(coefficients):.3f}, 0]"


def plot_stability(tableau: Tableau, path: str) -> None:
    """The stability region ``|R(z)| <= 1`` of ``tableau`` in the complex plane of z = h lambda,
    with the embedded method's region (dashed) for a pair; the caption gives R and the real
    stability interval of each."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    plt = _pyplot()
    polynomials = {"b": stability_polynomial(tableau)}
    if tableau.is_adaptive:
        polynomials["b_hat"] = stability_polynomial(tableau, "b_hat")
    grid = _complex_grid(list(polynomials.values()))
    # Equal scales on both axes: the figure takes the region's shape, with room on the right for the legend.
    x, y, _ = grid
    shape = (x.max() - x.min()) / (y.max() - y.min())
    fig, ax = plt.subplots(figsize=(min(max(5.0 * shape, 3.5), 9.0) + 4.2, 6.4))
    _fill_region(ax, grid, polynomials["b"], "C0")
    handles = [Patch(facecolor="C0", edgecolor="C0", alpha=0.5,
                     label=f"b, order {tableau.order}: {_interval_text(polynomials['b'])}")]
    caption = [f"b:  R(z) = {format_polynomial(polynomials['b'], unicode=True)}"]
    if "b_hat" in polynomials:
        _fill_region(ax, grid, polynomials["b_hat"], "C3", alpha=0.0, linestyle="dashed")
        handles.append(Line2D([], [], color="C3", linestyle="dashed",
                              label=f"b_hat (embedded), order {tableau.embedded_order}: "
                                    f"{_interval_text(polynomials['b_hat'])}"))
        caption.append(f"b_hat:  R(z) = {format_polynomial(polynomials['b_hat'], unicode=True)}")
    _region_axes(ax)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.03, 1.0), fontsize=8, borderaxespad=0)
    ax.set_title(f"{tableau.name}: stability region |R(z)| ≤ 1, z = hλ")
    _caption(fig, caption, width=100)
    fig.tight_layout(rect=(0, 0.035 * len(caption) + 0.01, 1, 1))
    _save(fig, plt, path)


def _shared_reason(members: Sequence[Tableau], polynomial: Sequence[float]) -> str:
    degree = len(polynomial) - 1
    if all(m.stages == m.order == degree for m in members):
        return (f"explicit methods with {degree} stages and order {degree} all have the degree-{degree} Taylor "
                "polynomial of e^z as R")
    return "their weights and coefficients differ, but not in w^T A^k 1"


def _values_text(param: str, values: Sequence[float]) -> str:
    return f"{param} = {', '.join(f'{v:g}' for v in values)}" if len(values) <= 4 else \
        f"{param} = {values[0]:g} ... {values[-1]:g} ({len(values)} values)"


def _error_curves(family: TableauFamily, param: str, grid: Sequence[float], fixed: Mapping[str, float]
                  ) -> tuple[list[str], list[list[float]]]:
    """Tree labels and, per grid value, the principal error coefficients (NaN where no member exists)."""
    labels: list[str] = []
    rows: list[list[float]] = []
    for value in grid:
        try:
            member = family.member({**fixed, param: value})
        except TableauError:  # a singular point of the family between the requested members
            rows.append([])
            continue
        coefficients = principal_error_coefficients(member)
        labels = labels or [label for label, _ in coefficients]
        rows.append([c for _, c in coefficients])
    width = len(labels)
    return labels, [row if row else [math.nan] * width for row in rows]


def _smallest(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """The minimum of sampled ys, refined by the parabola through it and its neighbours."""
    finite = [i for i, y in enumerate(ys) if math.isfinite(y)]
    i = min(finite, key=lambda k: ys[k])
    if 0 < i < len(xs) - 1 and math.isfinite(ys[i - 1]) and math.isfinite(ys[i + 1]):
        (x0, x1, x2), (y0, y1, y2) = xs[i - 1:i + 2], ys[i - 1:i + 2]
        denominator = (x0 - x1) * (x0 - x2) * (x1 - x2)
        a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denominator
        b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / denominator
        if a > 0:
            vertex = -b / (2 * a)
            if x0 <= vertex <= x2:
                c = y1 - a * x1 * x1 - b * x1
                return vertex, a * vertex * vertex + b * vertex + c
    return xs[i], ys[i]


def plot_stability_sweep(family: TableauFamily, param: str, values: Sequence[float], path: str,
                         fixed: Mapping[str, float] | None = None) -> None:
    """Members of ``family`` with ``param`` at each of ``values`` (the other parameters at ``fixed``
    or their defaults): their stability regions overlaid, and their principal local error
    coefficients against ``param``.

    When every member has the same R (all built-in families: explicit methods with p stages and
    order p), one region is drawn and the figure says so; the second panel then shows what the
    parameter does change. Raises ``TableauError`` for a value outside the family's domain.
    """
    import numpy as np
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fixed = dict(fixed or {})
    members = [family.member({**fixed, param: value}) for value in values]
    polynomials = [stability_polynomial(m) for m in members]
    embedded = [stability_polynomial(m, "b_hat") for m in members] if all(m.is_adaptive for m in members) else []
    shared = shared_stability_function(polynomials)
    shared_embedded = bool(embedded) and shared_stability_function(embedded)
    plt = _pyplot()
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(values)))
    others = ", ".join(f"{k} = {v:g}" for k, v in family.resolve(fixed).items() if k != param)
    name = family.name + (f" ({others})" if others else "")
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 6.2), gridspec_kw={"width_ratios": [1.15, 1]})
    grid = _complex_grid(polynomials + embedded, points=600)
    handles: list[Any] = []
    if shared:
        _fill_region(left, grid, polynomials[0], "C0")
        handles.append(Patch(facecolor="C0", edgecolor="C0", alpha=0.5,
                             label=f"every member: {_interval_text(polynomials[0])}"))
        note = (f"All {len(values)} members, {_values_text(param, values)}, have the same "
                f"R(z) = {format_polynomial(polynomials[0], unicode=True)}: "
                f"{_shared_reason(members, polynomials[0])}. {param} does not move the region; "
                "the right panel shows what it changes.")
    else:
        for value, coefficients, color in zip(values, polynomials, colors):
            _fill_region(left, grid, coefficients, color, alpha=0.0)
            handles.append(Line2D([], [], color=color, label=f"{param} = {value:g}: {_interval_text(coefficients)}"))
        note = f"R(z) differs between the members, {_values_text(param, values)}: one curve per member."
    if embedded:
        pairs = [embedded[0]] if shared_embedded else embedded
        for coefficients, color in zip(pairs, ["C3"] if shared_embedded else colors):
            _fill_region(left, grid, coefficients, color, alpha=0.0, linestyle="dashed")
        handles.append(Line2D([], [], color="C3" if shared_embedded else "grey", linestyle="dashed",
                              label="embedded (b_hat)" + (", same for every member" if shared_embedded else "")))
    _region_axes(left)
    left.legend(handles=handles, loc="upper left", fontsize=7 if len(handles) > 6 else 8, framealpha=0.9)
    left.set_title(f"{name}: stability regions |R(z)| ≤ 1")

    low, high = min(values), max(values)
    fine = sorted({*np.linspace(low, high, 241).tolist(), *values})
    labels, rows = _error_curves(family, param, fine, fixed)
    table = np.array(rows, dtype=float)
    norm = np.sqrt(np.sum(table**2, axis=1))
    order = members[0].order
    right.plot(fine, norm, color="black", linewidth=2.2,
               label=f"‖τ‖₂ over the {len(labels)} trees of order {order + 1}")
    if len(labels) <= 4:
        for i, label in enumerate(labels):
            right.plot(fine, table[:, i], linewidth=1.1, linestyle="--", color=f"C{i + 1}", label=f"τ({label})")
    at_members = [error_coefficient_norm(m) for m in members]
    right.scatter(values, at_members, c=colors, s=36, zorder=3, edgecolors="black", linewidths=0.5,
                  label="requested members")
    if np.isfinite(norm).any():
        x_best, y_best = _smallest(fine, norm.tolist())
        right.axvline(x_best, color="grey", linestyle=":", linewidth=1)
        right.annotate(f"smallest ‖τ‖₂ at {param} ≈ {x_best:.4g}", (x_best, y_best),
                       textcoords="offset points", xytext=(6, 10), fontsize=8)
    # The y-range follows the requested members: between them a curve can run off to a singular point.
    # Room is left above the curves for the legend.
    shown = [v for v in [*at_members, *table[[fine.index(v) for v in values]].ravel().tolist()] if math.isfinite(v)]
    if shown:
        top, bottom = max(max(shown), 0.0), min(min(shown), 0.0)
        span = top - bottom or 1.0
        right.set_ylim(bottom - 0.1 * span, top + 0.45 * span)
    right.axhline(0, color="black", linewidth=0.6)
    right.grid(alpha=0.3)
    right.set_xlabel(param)
    right.set_ylabel(f"principal local error coefficient (h^{order + 1} term)")
    right.set_title(f"principal local error coefficients against {param}")
    right.legend(fontsize=8, loc="best")
    _caption(fig, [note], width=150)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    _save(fig, plt, path)


# -- training ------------------------------------------------------------------------------------


def _smoothed(values: Sequence[float]) -> tuple[list[float], int]:
    """The running mean over a window of 1/25 of the run and the window; runs under 100 iterations
    are shown as they are (a window of 2 or 3 hides little noise and blurs the shape)."""
    window = len(values) // 25 if len(values) >= 100 else 1
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out, window


def _raw_and_smoothed(ax: Any, values: Sequence[float], color: str, label: str, smooth: bool = True) -> None:
    steps = range(1, len(values) + 1)
    smooth, window = _smoothed(values) if smooth else (values, 1)
    if window > 1:
        ax.plot(steps, values, color=color, alpha=0.3, linewidth=0.8)
        ax.plot(steps, smooth, color=color, linewidth=1.8, label=f"{label} (running mean of {window})")
    else:
        ax.plot(steps, values, color=color, linewidth=1.5, marker="." if len(values) < 40 else None, label=label)


def plot_training(log: Any, path: str, title: str, evaluations: Sequence[Mapping[str, float]] | None = None) -> None:
    """Loss, accuracy and NFE per training iteration, from an ``IterationLog``.

    For a task without accuracy (the stiff toy) the middle panel shows the test MAE of
    ``evaluations`` (dicts with ``iteration`` and ``test_mae``, as ``StiffResult.history``).
    The NFE panel shows the forward evaluations and, under the adjoint, the backward ones (with
    ``gradient="checkpoint"``: the recomputed segments'); otherwise it says why there are none.
    """
    plt = _pyplot()
    fig, (ax_loss, ax_mid, ax_nfe) = plt.subplots(1, 3, figsize=(15, 4.6))
    _raw_and_smoothed(ax_loss, log.loss, "C0", "batch loss")
    if log.loss and min(log.loss) > 0 and max(log.loss) > 10 * min(log.loss):
        ax_loss.set_yscale("log")
    ax_loss.set_title("training loss")
    ax_loss.set_ylabel("loss (without regularization)")
    if log.accuracy:
        _raw_and_smoothed(ax_mid, log.accuracy, "C2", "batch accuracy")
        ax_mid.set_ylim(0, 100)
        ax_mid.set_title("batch accuracy (training forward pass)")
        ax_mid.set_ylabel("%")
    elif evaluations:
        iterations = [e["iteration"] for e in evaluations]
        errors = [e["test_mae"] for e in evaluations]
        ax_mid.plot(iterations, errors, color="C2", marker="." if len(errors) < 40 else None)
        if all(math.isfinite(e) and e > 0 for e in errors):
            ax_mid.set_yscale("log")
        ax_mid.set_title("test MAE at the evaluations (no accuracy: a regression)")
        ax_mid.set_ylabel("mean absolute error")
    else:
        ax_mid.text(0.5, 0.5, "no accuracy recorded", ha="center", va="center", transform=ax_mid.transAxes)
    # Counts change in steps (the solver's step count): drawn as they are, a running mean would blur the jumps.
    _raw_and_smoothed(ax_nfe, log.nfe_forward, "C1", "forward", smooth=False)
    replay = list(getattr(log, "nfe_replay", ()))
    if log.adjoint:
        _raw_and_smoothed(ax_nfe, log.nfe_backward, "C4", "backward (adjoint)", smooth=False)
        ax_nfe.set_title("field evaluations per iteration")
    elif getattr(log, "gradient", "backprop") == "checkpoint":
        _raw_and_smoothed(ax_nfe, replay, "C4", "backward (recomputed segments)", smooth=False)
        ax_nfe.set_title("field evaluations per iteration")
    else:
        ax_nfe.set_title("field evaluations per iteration (forward)")
        ax_nfe.text(0.02, 0.03, "backward: gradients flow through the solver's operations,\n"
                                "no field evaluations to count (the adjoint would make them)",
                    transform=ax_nfe.transAxes, fontsize=8, va="bottom", color="dimgray")
    # Room above the curves for the legend.
    ax_nfe.set_ylim(0, 1.25 * max([*log.nfe_forward, *log.nfe_backward, *replay, 1]))
    ax_nfe.set_ylabel("NFE")
    for ax in (ax_loss, ax_mid, ax_nfe):
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper right" if ax is ax_nfe else "best")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    _save(fig, plt, path)


def _wrapped(text: str, width_in: float, fontsize: float) -> str:
    """``text`` broken into lines that fit a figure ``width_in`` inches wide at ``fontsize`` points
    (a long run header as a title would otherwise run off both edges)."""
    chars = max(40, int(width_in * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.fill(line, chars) for line in text.splitlines())


def _zoomed(ax: Any, runs: Sequence[Sequence[float]]) -> None:
    """The y-axis over the range of the runs with a margin, not from 0: accuracies that differ by a
    few points would otherwise be bars of equal height. Bars are cut at the bottom of the axis."""
    values = [v for run in runs for v in run]
    low, high = min(values), max(values)
    pad = max(high - low, 0.02 * abs(high), 1e-9)
    bottom = low - 2 * pad
    ax.set_ylim(max(bottom, 0.0) if low >= 0 else bottom, high + pad)


def plot_comparison(results: Mapping[str, Sequence[Any]], columns: Sequence[tuple[str, str, str]], path: str,
                    title: str, value: Callable[[Any, str], float] = getattr, zoom: Sequence[str] = ()) -> None:
    """The ``--compare`` table as bars: one panel per column ``(header, attribute, format)``, one bar
    per variant at the mean over its runs (written at the bar's foot in the column's ``str.format``
    format), error bars of one standard deviation (runs > 1), and each run as a dot.

    ``value(run, attribute)`` reads a number from a run (default ``getattr``; ``lambda r, k: r[k]``
    for dicts). The panels of the attributes in ``zoom`` span the range of the runs instead of
    starting at 0. Up to four variants are named under their bars; more share one legend.
    """
    import numpy as np
    from matplotlib.patches import Patch

    plt = _pyplot()
    n = len(columns)
    cols = n if n <= 4 else 3
    rows = math.ceil(n / cols)
    names = list(results)
    colors = [f"C{i % 10}" for i in range(len(names))]
    legend = len(names) > 4
    width = 4.2 * cols
    legend_rows = math.ceil(len(names) / 4) if legend else 0
    fig, axes = plt.subplots(rows, cols, figsize=(width, 3.9 * rows + 0.22 * legend_rows), squeeze=False)
    positions = np.arange(len(names))
    for index, (header, attribute, fmt) in enumerate(columns):
        ax = axes[index // cols][index % cols]
        runs = [[float(value(r, attribute)) for r in results[name]] for name in names]
        means = [float(np.mean(v)) for v in runs]
        spreads = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in runs]
        ax.bar(positions, means, yerr=spreads, capsize=4, color=colors, alpha=0.75, edgecolor="black",
               linewidth=0.5)
        for i, v in enumerate(runs):
            offsets = np.linspace(-0.15, 0.15, len(v)) if len(v) > 1 else [0.0]
            ax.scatter(positions[i] + np.asarray(offsets), v, color="black", s=10, zorder=3)
        if attribute in zoom:
            _zoomed(ax, runs)
        bottom, top = ax.get_ylim()
        for i, mean in enumerate(means):
            ax.text(positions[i], bottom + 0.03 * (top - bottom), fmt.format(mean), ha="center", va="bottom",
                    fontsize=7 if len(names) > 4 else 8, rotation=90 if len(names) > 6 else 0, zorder=4,
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
        if legend:
            ax.set_xticks([])
        else:
            ax.set_xticks(positions, [textwrap.fill(name, 16) for name in names], fontsize=8)
        ax.set_title(header + (" (axis zoomed)" if attribute in zoom else ""), fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for index in range(n, rows * cols):
        axes[index // cols][index % cols].set_visible(False)
    seeds = {len(v) for v in results.values()}
    spread = "bars: mean; error bars: ±1 std over seeds; dots: single seeds" if max(seeds) > 1 else \
        "one seed per variant"
    fig.suptitle(_wrapped(f"{title}\n({spread})", width, 9), fontsize=9)
    bottom = 0.0
    if legend:
        handles = [Patch(facecolor=c, alpha=0.75, edgecolor="black", label=name) for c, name in zip(colors, names)]
        fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
        bottom = (0.22 * legend_rows + 0.05) / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, 1))
    _save(fig, plt, path)


# -- curves over a swept quantity ----------------------------------------------------------------


@dataclass(frozen=True)
class Curves:
    """One panel of ``plot_curves``: a quantity against another, one line per label.

    ``lines`` maps a label to ``(xs, runs)``: at each x the values of the runs (one per seed),
    drawn at their mean with error bars of one standard deviation where there are several.
    The xs are drawn in the order given (a path in a phase plane is a line too). ``marks`` are
    vertical reference lines, ``x -> label``; ``xticks`` names the ticks of a categorical axis,
    ``x -> label``; ``styles`` are extra matplotlib line options per label (a target in black);
    ``ylim`` and ``legend_loc`` leave room for a legend where the automatic placement would cover lines.
    """

    title: str
    xlabel: str
    ylabel: str
    lines: Mapping[str, tuple[Sequence[float], Sequence[Sequence[float]]]]
    xscale: str = "linear"
    yscale: str = "linear"
    marks: Mapping[float, str] = field(default_factory=dict)
    xticks: Mapping[float, str] = field(default_factory=dict)
    styles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    ylim: tuple[float, float] | None = None
    equal_aspect: bool = False
    legend_loc: str = "best"


def _draw_curves(ax: Any, panel: Curves) -> None:
    import numpy as np

    count = len(panel.lines)
    for index, (label, (xs, runs)) in enumerate(panel.lines.items()):
        means = [float(np.mean(r)) for r in runs]
        spreads = [float(np.std(r, ddof=1)) if len(r) > 1 else 0.0 for r in runs]
        # Lines that coincide (equal accuracies) stay visible: each later one has a smaller marker of
        # its own shape, drawn on top of the earlier ones.
        style = {"color": f"C{index % 10}", "marker": "osD^vP*X"[index % 8] if len(xs) <= 12 else None,
                 "markersize": 4 + 0.7 * (count - 1 - index) if count > 1 else 4, "linewidth": 1.5,
                 **panel.styles.get(label, {})}
        if any(spreads):
            ax.errorbar(xs, means, yerr=spreads, capsize=3, label=label, **style)
        else:
            ax.plot(xs, means, label=label, **style)
    for position, (x, text) in enumerate(panel.marks.items()):
        ax.axvline(x, color="dimgray", linestyle=(":", "--", "-.")[position % 3], linewidth=1.1, label=text)
    ax.set_xscale(panel.xscale)
    ax.set_yscale(panel.yscale)
    bottom, top = ax.get_ylim()
    if panel.yscale == "log" and top < 10 * bottom:
        # Within one decade a log axis may hold no tick at all: plain numbers at a few even places.
        from matplotlib.ticker import FormatStrFormatter, MaxNLocator, NullLocator

        ax.yaxis.set_major_locator(MaxNLocator(5))
        ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
        ax.yaxis.set_minor_locator(NullLocator())
    if panel.xticks:
        ax.set_xticks(list(panel.xticks), list(panel.xticks.values()), fontsize=8)
        ax.minorticks_off()
    if panel.ylim is not None:
        ax.set_ylim(*panel.ylim)
    if panel.equal_aspect:
        ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(panel.title, fontsize=10)
    ax.set_xlabel(panel.xlabel)
    ax.set_ylabel(panel.ylabel)
    ax.grid(alpha=0.3)
    if len(panel.lines) > 1 or panel.marks:
        ax.legend(fontsize=7 if len(panel.lines) + len(panel.marks) > 5 else 8, loc=panel.legend_loc)


def plot_curves(panels: Sequence[Curves], path: str, title: str, caption: str = "") -> None:
    """``panels`` side by side under ``title`` (wrapped to the figure's width), with ``caption``
    (the setting, what the error bars mean) in small type under them."""
    plt = _pyplot()
    width = 5.2 * len(panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4.6), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        _draw_curves(ax, panel)
    fig.suptitle(_wrapped(title, width, 9), fontsize=9)
    bottom = 0.0
    if caption:
        text = _wrapped(caption, width, 8)
        fig.text(0.01, 0.01, text, ha="left", va="bottom", fontsize=8, color="dimgray")
        bottom = (0.18 * (text.count("\n") + 1) + 0.05) / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, 1))
    _save(fig, plt, path)
