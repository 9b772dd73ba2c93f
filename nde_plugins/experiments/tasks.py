"""What the training tasks of ``nde-plugins train`` know about plugins by name.

The command line (``nde_plugins.cli``) names no plugin itself: the weights ``train --compare``
gives a regularizer it was not given one for, and the spelled-out default of the ``steer`` end time,
come from here, beside the tasks they were chosen on. (The schedule the synthetic tasks train
under is ``synthetic.ADAPTIVE_SCHEDULE``.)
"""

from __future__ import annotations

from typing import Any

#: The most fixed steps K a task trains with. Backpropagation through the solver keeps every step's
#: states, so training memory grows linearly in K: K = 60,000 ran out of 9 GB on a small model, while
#: the seed papers train with K <= 100. 10,000 leaves room for studies of fine grids.
MAX_TRAINING_STEPS = 10_000


def check_training_steps(name: str, steps: int) -> int:
    """``steps`` if a task can train with that many fixed steps; ``ValueError`` naming ``name`` otherwise."""
    if steps > MAX_TRAINING_STEPS:
        raise ValueError(f"{name} is {steps}; tasks train with at most {MAX_TRAINING_STEPS:,} fixed steps "
                         "(backpropagation keeps every step's states, so memory grows with K); give a smaller K")
    return steps

#: The stiffness regularizer's weight on the digits task.
STIFFNESS_DEFAULT_WEIGHT = 0.0285
#: Weights used by `train --compare` for a regularizer not given with --regularizer; chosen on the
#: digits task (benchmarks/digits_regularizers.py reports what was tried).
DEFAULT_WEIGHTS = {"error_estimate": 0.1, "stiffness": STIFFNESS_DEFAULT_WEIGHT, "kinetic_energy": 0.01,
                   "jacobian_frobenius": 0.01, "taylor": 0.003}
#: The same for the time-series task, chosen there (examples/regularizers_table.py says how).
TIMESERIES_WEIGHTS = {**DEFAULT_WEIGHTS, "error_estimate": 5e-4, "stiffness": 0.002, "taylor": 0.01}


def default_weights(task: str) -> dict[str, float]:
    """The weights ``train --compare`` gives regularizers on ``task`` when none is given."""
    return TIMESERIES_WEIGHTS if task == "timeseries" else DEFAULT_WEIGHTS


def interval(task: str) -> tuple[float, float]:
    """``(t0, t1)``: the interval the ODE block of ``task`` (``"digits"``, ``"stiff"`` or ``"timeseries"``)
    integrates over.

    It is where an end-time sampler draws. The task modules are imported here, on first use: the
    digits task's own imports are only needed when it runs.
    """
    if task == "stiff":
        from .stiff import StiffConfig
        from .stiff import interval as stiff_interval

        return 0.0, stiff_interval(StiffConfig())
    if task == "timeseries":
        from .timeseries import GRID_POINTS, GRID_STEP

        return 0.0, GRID_POINTS * GRID_STEP
    from .digits import T0, T1

    return T0, T1


def describe_end_time(task: str, end_time: tuple[str, dict[str, Any]] | None) -> str:
    """``"none"``, ``"NAME"`` or ``"NAME(key=value, ...)"`` for a run's end time on ``task``.

    ``steer`` without ``b`` draws with the authors' default ``|t1 - t0| - min_length``; its value on
    the task's interval is spelled out, e.g. ``steer(b=0.999 (default))``.
    """
    if end_time is None:
        return "none"
    from ..builtins.end_times import MIN_LENGTH

    name, options = end_time
    text = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in options.items())
    if name == "steer" and "b" not in options:
        t0, t1 = interval(task)
        default = abs(t1 - t0) - float(options.get("min_length", MIN_LENGTH))
        text = ", ".join(filter(None, [f"b={default:.4g} (default)", text]))
    return f"{name}({text})" if text else name


__all__ = ["DEFAULT_WEIGHTS", "MAX_TRAINING_STEPS", "STIFFNESS_DEFAULT_WEIGHT", "TIMESERIES_WEIGHTS",
           "check_training_steps", "default_weights", "describe_end_time", "interval"]
