"""One resolution of a method into one immutable ``Solver`` value, which the blocks and the checks ask."""

import dataclasses

import pytest
import torch

import nde_plugins as nde


@pytest.mark.parametrize("method, options, fixed, adaptive, order, mode", [
    ("dopri5", {}, False, True, 5, "adaptive"),
    ("rk4", {"step_size": 0.1}, True, False, 4, "fixed"),
    ("euler", {"step_size": 0.1}, True, False, 1, "fixed"),
    ("rk2:u=0.25", {"step_size": 0.1}, True, False, 2, "fixed"),
    ("rk2_pair", {}, False, True, 2, "adaptive"),
    ("rk2_pair", {"step_size": 0.1}, True, False, 2, "fixed"),
    ("tsitouras5", {}, False, True, 5, "adaptive"),
    ("implicit_adams", {"step_size": 0.1}, True, False, None, "other"),  # a fixed grid, no tableau to observe
])
def test_a_solver_answers_every_question_about_its_method(method, options, fixed, adaptive, order, mode):
    solver = nde.resolve_solver(method, options)
    assert (solver.fixed_grid, solver.adaptive, solver.order, solver.plan.mode) == (fixed, adaptive, order, mode)
    assert set(solver.options) <= solver.accepted
    assert nde.resolve_method(method, options) == (solver.name, dict(solver.options))


def test_a_family_member_carries_its_parameters_with_defaults_filled_in():
    solver = nde.resolve_solver("rk4_uv:u=0.3", {"v": 0.7, "step_size": 0.5})
    assert solver.family is nde.get_registry().get("tableau", "rk4_uv")
    assert dict(solver.params) == {"u": 0.3, "v": 0.7}
    assert solver.step_options == {"step_size": 0.5}
    assert dict(nde.resolve_solver("rk2", {"step_size": 0.5}).params) == {"u": 0.5}


def test_a_solver_is_immutable():
    solver = nde.resolve_solver("rk2", {"step_size": 0.5})
    with pytest.raises(dataclasses.FrozenInstanceError):
        solver.order = 3
    with pytest.raises(TypeError):
        solver.options["step_size"] = 0.1


@pytest.mark.parametrize("method, options, error, match", [
    ("rk4_u4", {}, nde.UnknownPluginNameError, "did you mean"),
    ("dopri5", {"atol_typo": 1}, ValueError, r"unknown option\(s\) \[.atol_typo.\]"),
    ("rk2:w=1", {}, ValueError, r"gives \['w'\], but family 'rk2' has the parameters \['u'\]"),
    ("rk4_uv", {"u": 0.5, "step_size": 0.1}, nde.TableauError, "u not in"),
])
def test_bad_methods_are_refused_when_resolved(method, options, error, match):
    with pytest.raises(error, match=match):
        nde.resolve_solver(method, options)


def test_a_block_and_its_schedule_members_ask_the_same_value():
    block = nde.ODEBlock(lambda t, z: -z, method="rk2", options={"u": 0.25, "step_size": 0.25})
    assert block.solver == nde.resolve_solver("rk2", {"u": 0.25, "step_size": 0.25})
    base = block.base_solver
    assert (base.fixed_grid, base.order, dict(base.params)) == (True, 2, {"u": 0.25})
    member = nde.Member("rk2", {"u": 0.75})
    assert block.solver_for(member) == nde.resolve_solver("rk2", {"u": 0.75, "step_size": 0.25})
    with block.solving_with(member):
        block(torch.ones(1, 2))
    assert block.last_method == ("rk2", {"u": 0.75})


def test_an_unregistered_tableau_resolves_by_its_own_name_while_held():
    tableau = nde.Tableau("my_heun", c=[0, 1], a=[[], [1]], b=[0.5, 0.5], order=2)
    solver = nde.resolve_solver(tableau, {"step_size": 0.5})
    assert solver.name.startswith("my_heun@") and solver.order == 2 and solver.fixed_grid
    y = nde.odeint(lambda t, z: -z, torch.ones(1), torch.tensor([0.0, 1.0]), method=tableau,
                   options={"step_size": 0.5})
    assert torch.allclose(y[-1], torch.tensor([0.390625]))
