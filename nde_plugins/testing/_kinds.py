"""The checks of step regularizers, end-time samplers, diffusions and solver schedules.

Each builds the plugin from its registered factory (options checked against its signature, as a
block does), uses it the way a block does, and returns a list of failures (empty: it passed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .._plugin_values import plugin_label
from ..contract import ContractError, build_plugin, check_ends, check_requires
from ..ode import ODEBlock
from ..sde import SDEBlock
from ._fields import MLPField, gradient_reaches, states

#: Bases a schedule is tried on, in order: the first block that builds is the one checked.
_SCHEDULE_BASES = ({"method": "rk2", "options": {"step_size": 0.25}}, {"method": "dopri5", "rtol": 1e-5, "atol": 1e-5},
                   {"method": "euler", "options": {"step_size": 0.25}})


def _build(kind: str, name: str, factory: Any, options: Mapping[str, Any], *leading: Any) -> Any:
    return build_plugin(plugin_label(kind, name), factory, dict(options), *leading)


def check_regularizer(name: str, factory: Any, options: Mapping[str, Any]) -> list[str]:
    """A finite scalar carrying gradient to the field's parameters, reading only what it declares."""
    regularizer = _build("step_regularizer", name, factory, options)
    label = plugin_label("step_regularizer", name)
    try:
        requires = check_requires(label, regularizer)
    except ContractError as exc:
        return [str(exc)]
    failures = [] if requires is not None else ["declares no 'requires' (deprecated: the block records everything "
                                                 "for it); add requires = frozenset({...})"]
    field = MLPField(dim=3).float()
    try:
        block = ODEBlock(field, method="dopri5", rtol=1e-5, atol=1e-5, regularizers={regularizer: 1.0})
        block(states(dtype=torch.float32))
        value = block.regularization()
    except (ContractError, ValueError) as exc:
        return failures + [f"in an ODEBlock training step (dopri5): {exc}"]
    if not value.requires_grad:
        return failures + ["its value carries no gradient: a penalty must be built from the statistics' tensors"]
    value.backward()
    if not gradient_reaches(list(field.parameters())):
        failures.append("its gradient reaches none of the field's parameters (or is not finite)")
    return failures


def check_end_time_sampler(name: str, factory: Any, options: Mapping[str, Any]) -> list[str]:
    """Draws from the given generator only, reproducibly, within the rules; one row per sample on request."""
    sampler = _build("end_time_sampler", name, factory, options)
    label = plugin_label("end_time_sampler", name)
    failures, served = [], []
    for t in (torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.5, 1.0])):
        check = getattr(sampler, "check", None)
        if callable(check):
            try:
                check(t)
            except ValueError:  # the options cannot serve this grid, and the sampler says so: allowed
                continue
        served.append(t)
        global_state = torch.get_rng_state()
        first = sampler(t, torch.Generator().manual_seed(7))
        second = sampler(t, torch.Generator().manual_seed(7))
        if not torch.equal(torch.get_rng_state(), global_state):
            failures.append("a draw with a generator given moved torch's global generator: draw only from the "
                            "generator passed in")
        try:
            check_ends(label, t, first, None)
            rows = sampler(t, torch.Generator().manual_seed(7), batch=5)
            check_ends(label, t, rows, 5)
        except ContractError as exc:
            failures.append(f"for t = {t.tolist()}: {exc}")
            continue
        if not torch.equal(torch.as_tensor(first), torch.as_tensor(second)):
            failures.append(f"for t = {t.tolist()}: two generators with the same seed gave different ends")
    if not served:
        return ["its check(t) refuses both t = [0, 1] and t = [0, 0.5, 1] with these options"]
    field = MLPField(dim=3).float()
    try:
        block = ODEBlock(field, t=served[0], method="rk4", options={"step_size": 0.25}, end_time=sampler, seed=0)
        block(states(dtype=torch.float32)).square().sum().backward()
    except (ContractError, ValueError) as exc:
        failures.append(f"in an ODEBlock training step: {exc}")
    return sorted(set(failures), key=failures.index)


def check_diffusion(name: str, factory: Any, options: Mapping[str, Any]) -> list[str]:
    """G(t, h, f) shaped like h and finite; an SDEBlock training step reaches the drift's parameters."""
    drift = MLPField(dim=3).float()
    diffusion = _build("diffusion", name, factory, options, drift)
    if not isinstance(diffusion, torch.nn.Module) or not hasattr(diffusion, "uses_drift"):
        return [f"the factory returned {type(diffusion).__name__}; a diffusion factory returns a "
                "nde_plugins.Diffusion module"]
    failures = []
    t = torch.tensor(0.25)
    for batch in (1, 4):
        h = states(batch, dtype=torch.float32)
        f = drift(t, h) if diffusion.uses_drift else None
        g = diffusion(t, h, f)
        if not torch.is_tensor(g) or g.shape != h.shape:
            shape = tuple(g.shape) if torch.is_tensor(g) else type(g).__name__
            failures.append(f"G(t, h, f) has shape {shape} for a state of shape {tuple(h.shape)}")
        elif not bool(torch.isfinite(g).all()):
            failures.append(f"G(t, h, f) is not finite for a batch of {batch}")
    if failures:
        return failures
    try:
        block = SDEBlock(drift, diffusion, dt=0.25, seed=0)
        block(states(dtype=torch.float32)).square().sum().backward()
    except (ContractError, ValueError) as exc:
        return [f"in an SDEBlock training step: {exc}"]
    if not gradient_reaches(list(drift.parameters())):
        failures.append("an SDEBlock training step gives the drift's parameters no finite gradient")
    return failures


def check_schedule(name: str, factory: Any, options: Mapping[str, Any]) -> list[str]:
    """Valid members for its base, deterministic in evaluation, ``update`` runs after a training step."""
    errors = []
    for base in _SCHEDULE_BASES:
        schedule = _build("solver_schedule", name, factory, options)
        try:
            block = ODEBlock(MLPField(dim=3).float(), schedule=schedule, seed=0, **base)
            break
        except ValueError as exc:
            errors.append(f"{base['method']}: {exc}")
    else:
        return ["no block could be built with it on rk2 (fixed grid), dopri5 or euler (fixed grid): "
                + "; ".join(errors)]
    head = torch.nn.Linear(3, 2)
    x = states(dtype=torch.float32)
    labels = torch.tensor([0, 1, 0, 1])

    def model(inputs: torch.Tensor) -> torch.Tensor:
        return head(block(inputs))

    failures = []
    try:
        block.train()
        for _ in range(2):
            loss = torch.nn.functional.cross_entropy(model(x), labels)
            loss.backward()
            block.update(model, x, labels)
        block.eval()
        with torch.no_grad():
            first, second = block(x), block(x)
    except (ContractError, ValueError) as exc:
        return [f"in an ODEBlock on {block.method_name}: {exc}"]
    if not torch.equal(first, second):
        failures.append("two evaluation calls on the same input differ: a schedule must be deterministic in "
                        "evaluation")
    return failures
