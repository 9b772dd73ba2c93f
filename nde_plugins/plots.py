"""Figures (matplotlib, the ``plots`` extra); never imported by the library itself, only on request."""

from __future__ import annotations

from typing import Any


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display is needed or assumed
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'nde_plugins[plots]'") from None
    return plt


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
    fig.savefig(path, dpi=120)
    plt.close(fig)
