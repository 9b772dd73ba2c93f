"""Checks that an installed plugin honours the plugin contract: for plugin authors' tests.

``check_plugin(kind, name)`` puts one registered plugin through the checks of its kind;
``check_distribution("dist-name")`` every plugin a distribution contributes (and that its import
and hooks loaded cleanly). Both raise ``PluginCheckError`` (an ``AssertionError``, so pytest shows
it as a failed assertion) listing every failure, each with the plugin's name; when everything
passes they print one line per plugin checked and return those lines.

What is checked, per kind (see the contract page of the docs for the rules themselves):

- tableau (and family): every member tried (a family's defaults and two members around them inside
  its domain) keeps the rules of torchdiffeq's own solvers, ``MEMBER_CHECKS`` by name: on a fixed
  grid its declared convergence order, step callbacks and the warning for unused ones, ``perturb``
  stage times, ``grid_constructor``, events and the gradient of an event time, ``odeint_adjoint``
  with the gradients of backprop, decreasing time, tuple states, float32 and float64, the caller's
  options untouched; with an embedded pair, adaptively the same plus error control, accept/reject
  callbacks, ``step_t``, ``jump_t``, ``min_step`` / ``max_step``. A tableau that repeats the
  coefficients of another registered or torchdiffeq method gets a warning.
- step regularizer: ``requires`` uses known words; in a training step of an ``ODEBlock`` that can
  serve it, the value is a finite scalar whose gradient reaches the field's parameters, and no
  statistic outside ``requires`` is read.
- end-time sampler: draws come only from the generator given (equal seeds, equal draws; torch's
  global generator untouched), the ends keep the block's rules, and ``per_sample`` draws one row
  per sample.
- diffusion: the output is shaped like the state and finite (batch of one and more), and an
  ``SDEBlock`` training step with it gives the drift's parameters gradients.
- solver schedule: the members it returns are valid for the block's base solver, evaluation calls
  are deterministic, and ``update`` (if present) runs after a training step.

Plugins whose factory needs options are checked with ``options={name: {...}}``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

from ..plugins import get_registry
from ._fields import PluginCheckWarning
from ._kinds import check_diffusion, check_end_time_sampler, check_regularizer, check_schedule
from ._solver_api import MEMBER_CHECKS, MemberCheck
from ._tableaux import check_tableau

#: The kinds, as the registry names them, and their checks: ``check(name, obj, options) -> failures``.
CHECKS: Mapping[str, Callable[[str, Any, Mapping[str, Any]], list[str]]] = {
    "tableau": check_tableau,
    "step_regularizer": check_regularizer,
    "end_time_sampler": check_end_time_sampler,
    "diffusion": check_diffusion,
    "solver_schedule": check_schedule,
}


class PluginCheckError(AssertionError):
    """One or more plugins break the contract; the message lists every failure by plugin."""


def check_plugin(kind: str, name: str, options: Mapping[str, Any] | None = None, *, quiet: bool = False
                 ) -> list[str]:
    """Check the registered plugin ``name`` of ``kind``; ``options`` go to its factory.

    Returns the one-line report (also printed unless ``quiet``); raises ``PluginCheckError``
    listing every failure, or ``ValueError`` for an unknown kind or name.
    """
    if kind not in CHECKS:
        raise ValueError(f"check_plugin: kind must be one of {sorted(CHECKS)}, got {kind!r}")
    registry = get_registry()
    registration = registry.find(kind, name)
    if registration is None:
        known = ", ".join(registry.names(kind)) or "none"
        raise ValueError(f"check_plugin: no {kind} named {name!r} is registered (registered: {known})")
    return _report([(registration, dict(options or {}))], quiet)


def check_distribution(distribution: str, options: Mapping[str, Mapping[str, Any]] | None = None, *,
                       quiet: bool = False) -> list[str]:
    """Check every plugin the installed distribution ``distribution`` contributes.

    ``options`` maps a plugin name to the options its factory needs. Fails as well when the
    distribution's entry points were skipped on loading (a broken import or hook) or contribute
    nothing.
    """
    registry = get_registry()
    wanted = _normalized(distribution)
    failures = [f"{distribution}: {error.source}: skipped on loading: {error.message}"
                for error in registry.load_errors if _normalized(error.source.distribution) == wanted]
    registrations = [r for r in registry.registrations() if _normalized(r.source.distribution) == wanted]
    if not registrations and not failures:
        failures.append(f"{distribution}: no plugin is registered from this distribution (is it installed, with an "
                        "entry point in the 'nde_plugins' group?)")
    options = dict(options or {})
    unknown = sorted(set(options) - {r.name for r in registrations})
    if unknown:
        raise ValueError(f"check_distribution: options given for {unknown}, which {distribution} does not register")
    return _report([(r, dict(options.get(r.name, {}))) for r in registrations], quiet, failures)


def _report(items: list[tuple[Any, dict]], quiet: bool, failures: list[str] | None = None) -> list[str]:
    failures = list(failures or [])
    lines = []
    for registration, options in items:
        label = get_registry().describe(registration.kind, registration.name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                found = CHECKS[registration.kind](registration.name, registration.obj, options)
            except Exception as exc:  # a check that could not even run is a failure of the plugin
                found = [f"the check stopped: {type(exc).__name__}: {exc}"]
        failures += [f"{label}: {failure}" for failure in found]
        notes = sorted({str(w.message) for w in caught if issubclass(w.category, PluginCheckWarning)})
        lines.append(f"ok   {label}" + (f" (warning: {'; '.join(notes)})" if notes else "")
                     if not found else f"FAIL {label}")
    if failures:
        raise PluginCheckError(f"{len(failures)} contract failure(s):\n" + "\n".join(f"- {f}" for f in failures))
    if not quiet:
        print("\n".join(lines))
    return lines


def _normalized(name: str | None) -> str:
    return (name or "").lower().replace("_", "-")


__all__ = ["CHECKS", "MEMBER_CHECKS", "MemberCheck", "PluginCheckError", "PluginCheckWarning", "check_distribution",
           "check_plugin"]
