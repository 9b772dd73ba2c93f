"""A step-regularizer plugin: the largest error ratio of a solve.

Where ``error_estimate`` sums E_j |h_j| over the accepted steps, ``error_peak`` penalizes only the
worst step: an adaptive solver's step count is set by the hardest stretch of the trajectory, so
flattening that stretch is what lets the controller take longer steps everywhere.
"""

import torch

from nde_plugins import StepStats, hookimpl


class ErrorPeak:
    """R = max_j E_j over the accepted steps (E_j: the solver's scaled error ratio, with its graph)."""

    # What the regularizer reads, so a block refuses a solver or mode that cannot provide it:
    # the error estimate needs an embedded pair; "graph" rules out adjoint=True.
    requires = frozenset({"error_estimate", "graph"})

    def __call__(self, stats: StepStats) -> torch.Tensor:
        errors = stats.error_ratios()
        return errors.max() if errors.numel() else torch.zeros(())


@hookimpl
def register_step_regularizers(register):
    register("error_peak", ErrorPeak)
