"""The plugin contract: one ``register_*`` hook per plugin kind.

Every hook receives a ``register`` callback and calls it once per object it contributes. Built-in
plugins use exactly these hooks; a third-party package exposes a module (or object) implementing
some of them under the entry-point group ``nde_plugins``::

    [project.entry-points.nde_plugins]
    my_tableaux = "my_package.plugin"

Names are unique across all installed plugins and kinds share no namespace rules beyond that: a
second registration of a name already taken is refused with an error naming both sources.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "nde_plugins"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_tableaux(register):
    """Contribute Runge-Kutta methods.

    Call ``register(obj)`` with a ``nde_plugins.Tableau`` (a fixed method) or a
    ``nde_plugins.TableauFamily`` (parameters -> method). Each becomes a solver name usable in
    ``nde_plugins.odeint`` and, once ``nde_plugins`` is imported, in ``torchdiffeq.odeint`` and
    ``torchdiffeq.odeint_adjoint``. torchdiffeq's own method names are reserved.
    """


@hookspec
def register_diffusions(register):
    """Contribute SDE noise diffusions.

    Call ``register(name, factory)``: ``factory(drift, **options)`` returns a
    ``nde_plugins.Diffusion`` module whose ``forward(t, h, f)`` gives G(h, t) in the state's shape
    (diagonal Ito noise); ``f`` is the drift value at (t, h) when the module sets
    ``uses_drift = True``, so the drift is evaluated once and shared. ``SDEBlock`` uses it.
    """


@hookspec
def register_end_time_samplers(register):
    """Contribute end-time samplers for training with a random integration horizon.

    Call ``register(name, factory)``: ``factory(**options)`` returns a callable
    ``sample(t0, t1, generator) -> t1'`` used in training mode only; evaluation keeps ``t1``.
    """


@hookspec
def register_step_regularizers(register):
    """Contribute regularizers computed from a solve's step statistics.

    Call ``register(name, factory)``: ``factory(**options)`` returns a callable mapping a
    ``StepStats`` record to a scalar tensor that carries gradients to the vector field.
    """


@hookspec
def register_solver_schedules(register):
    """Contribute training-time solver policies (switching, smoothing, step adaption).

    Call ``register(name, factory)``: ``factory(**options)`` returns an object that picks the
    method, its parameters and step size for each forward call given the training state.
    """
