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
    """Contribute end-time samplers for training with a random integration horizon (STEER).

    Call ``register(name, factory)``: ``factory(**options)`` returns a sampler ``s`` with

    - ``s(t, generator, batch=None) -> ends``: ``t`` is the block's 1-D grid (length n >= 2,
      increasing or decreasing); ``ends`` has ``t``'s shape, or ``(batch, n)`` with one independent
      draw per sample when ``batch`` is given. ``ends[0] == t[0]`` and ``ends[k]`` is where
      interval k stops; interval k starts from the unaltered ``t[k-1]`` (drawing only the last time
      gives the grid ``[t0, ..., T]``). Every interval must keep its direction and a positive
      length. Draw with ``generator`` (None means torch's global generator); no gradient.
    - optionally ``s.check(t)``: called once when a block is built, raising ``ValueError`` that
      names the option and the rule when the options cannot serve ``t``.

    Blocks call the sampler on every forward call in training mode only; evaluation uses ``t``.
    The option ``per_sample`` is the block's (it asks for ``batch``), not the factory's.
    """


@hookspec
def register_step_regularizers(register):
    """Contribute regularizers computed from a solve's step statistics.

    Call ``register(name, factory)``: ``factory(**options)`` returns a callable mapping a
    ``StepStats`` record to a finite scalar tensor that carries gradients to the vector field,
    with a ``requires`` set of ``nde_plugins.REQUIRES`` words naming what it reads (the block
    records and checks exactly that; reading an undeclared statistic raises ``ContractError``).
    """


@hookspec
def register_solver_schedules(register):
    """Contribute solver schedules: training-time policies that pick a block's solver per call.

    Call ``register(name, factory)``: ``factory(**options)`` returns a schedule ``s`` with

    - ``s.bind(base)``: called once when a block is built. ``base`` is a ``nde_plugins.BaseSolver``
      (``nde_plugins.contract``): the block's method, its ``TableauFamily`` (or None), the base
      parameters, ``validate(member)`` (raises if the block cannot solve with a member) and
      ``view``, the block as a schedule may use it (``view.solving_with(member)``, ``view.stats``).
      Raise ``ValueError`` naming the option and the rule for what the schedule cannot serve
      (smoothing on a method that is not a family).
    - ``s.members(state) -> list[Member]``: called on every forward call, training and
      evaluation. ``state`` is a ``CallState`` (``training``, ``generator``, ``epoch``,
      ``iteration``, the call's input ``x`` and vector ``field``); a ``Member`` is a method name,
      its family parameters and a weight. One member: the call solves with it; several: the output
      is the weighted mean of their final states. Return a list of ``Member`` with finite weights
      >= 0 summing to 1 (checked on every call). In evaluation return the base member unless the
      schedule is an ensemble. Draw only from ``state.generator``.
    - optionally ``s.update(model_fn, x, y)``: a schedule that learns from training batches; a
      training loop calls ``block.update(model_fn, x, y)`` after ``backward``, which reaches it.

    On one forward call the schedule acts first, then the end-time sampler (one draw shared by
    every member), then the solves; statistics record every solve, and the block's step
    regularizers read them.
    """
