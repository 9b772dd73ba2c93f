"""nde_plugins: solver tableaux, noise diffusions, end-time samplers, step-statistic regularizers and
solver schedules for neural ODEs/SDEs, registered as pluggy plugins and run inside torchdiffeq and torchsde.

Importing the package makes every registered tableau usable as a method of plain
``torchdiffeq.odeint`` / ``torchdiffeq.odeint_adjoint``; plugins themselves load on first use.
"""

__version__ = "0.1.0"

from . import _torchdiffeq
from ._regularization import ExponentialAnnealing
from .builtins.regularizers import ErrorEstimate, JacobianFrobenius, KineticEnergy, Stiffness
from .builtins.schedules import ensemble_predict, solver_ensemble
from .contract import REQUIRES, BaseSolver, CallState, ContractError, Diffusion, Member
from .distributed import all_reduce_stats, rank_seed
from .hookspecs import hookimpl, hookspec
from .ode import ODEBlock, odeint
from .plugins import (
    DISABLE_ENTRY_POINTS_ENV,
    ENTRY_POINT_GROUP,
    KINDS,
    LoadError,
    PluginConflictError,
    PluginError,
    PluginSource,
    PluginWarning,
    Registration,
    Registry,
    UnknownPluginNameError,
    get_registry,
    register_plugin,
    unregister_plugin,
)
from .proper_ode import CheckReport, proper_ode_check
from .sde import SDEBlock
from .solvers import MethodLike, Solver, merge_params, resolve_method, resolve_solver, torchdiffeq_method_names
from .specs import parse_method_spec, parse_spec
from .stats import SolverPlan, Stage, StepRecord, StepStats
from .tableaux import Tableau, TableauError, TableauFamily, TableauWarning


def get_tableau(method: str, **params: float) -> Tableau:
    """The registered tableau ``method`` (a spec ``"name:u=0.3"`` or a name plus ``params``)."""
    name, spec_params = parse_method_spec(method)
    if name in torchdiffeq_method_names() and get_registry().find("tableau", name) is None:
        raise UnknownPluginNameError(
            f"{name!r} is one of torchdiffeq's own solvers, not a registered tableau; `nde-plugins plugins` lists "
            "the tableaux (dormand_prince has dopri5's coefficients, rk38 those of torchdiffeq's rk4)"
        )
    entry = get_registry().get("tableau", name)
    merged = merge_params(method, spec_params, params, "keyword arguments")
    if isinstance(entry, TableauFamily):
        return entry.member(merged)
    if merged:
        raise TableauError(f"tableau {name!r} is not a family and takes no parameters; got {sorted(merged)}")
    return entry


_torchdiffeq.install()

__all__ = [
    "REQUIRES",
    "Solver",
    "resolve_solver",
    "BaseSolver",
    "CallState",
    "ContractError",
    "parse_spec",
    "DISABLE_ENTRY_POINTS_ENV",
    "Diffusion",
    "SDEBlock",
    "ErrorEstimate",
    "ExponentialAnnealing",
    "JacobianFrobenius",
    "KineticEnergy",
    "ODEBlock",
    "SolverPlan",
    "Stage",
    "StepRecord",
    "StepStats",
    "Stiffness",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "LoadError",
    "Member",
    "MethodLike",
    "PluginConflictError",
    "PluginError",
    "PluginSource",
    "PluginWarning",
    "Registration",
    "Registry",
    "Tableau",
    "TableauError",
    "TableauFamily",
    "TableauWarning",
    "UnknownPluginNameError",
    "get_registry",
    "ensemble_predict",
    "get_tableau",
    "hookimpl",
    "hookspec",
    "odeint",
    "parse_method_spec",
    "register_plugin",
    "resolve_method",
    "solver_ensemble",
    "torchdiffeq_method_names",
    "unregister_plugin",
    "all_reduce_stats",
    "rank_seed",
    "CheckReport",
    "proper_ode_check",
]
