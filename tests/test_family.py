import copy
import math
import random
import re
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torchdiffeq

import nde_plugins  # noqa: F401  (installs the registered methods into torchdiffeq)
from nde_plugins import Tableau, TableauError, TableauFamily
from nde_plugins.tableaux._family import MEMBER_CACHE_SIZE
from nde_plugins.tableaux.builtin import FAMILIES_BY_NAME

NAME_RULE = re.compile(r"^[a-z][a-z0-9_]*$")


def _rk2(u):
    return Tableau("rk2", c=[0, u], a=[[], [u]], b=[1 - 1 / (2 * u), 1 / (2 * u)], order=2)


def _shifted_euler(u):
    # Order 1 for every u: the second stage is computed but carries no weight, so any finite u,
    # however large or tiny, gives a valid member.
    return Tableau("euler", c=[0, u], a=[[], [u]], b=[1, 0], order=1)


def fresh_rk2() -> TableauFamily:
    """An rk2 family of the test's own, so that cache contents do not depend on other tests."""
    return TableauFamily("rk2t", ("u",), {"u": 0.5}, _rk2, [("u != 0", lambda u: u != 0)])


def fresh_euler() -> TableauFamily:
    return TableauFamily("shifted", ("u",), {"u": 1.0}, _shifted_euler)


# ------------------------------------------------------------------------------------------------
# Parameter values


def test_parameter_requiring_grad_is_refused_with_the_reason():
    family = FAMILIES_BY_NAME["rk2"]
    u = torch.tensor(0.3, requires_grad=True)
    with pytest.raises(TableauError, match="parameter u is a tensor that requires grad") as info:
        family.member({"u": u})
    message = str(info.value)
    assert "fixed tableau of Python floats" in message and "no gradient can flow into u" in message
    assert "Gusak" in message and "unstable" in message
    assert "u.item()" in message and "solver schedule" in message


def test_parameter_requiring_grad_is_refused_through_plain_torchdiffeq():
    u = torch.nn.Parameter(torch.tensor(0.3))
    with pytest.raises(TableauError, match="requires grad"):
        torchdiffeq.odeint(lambda t, y: -y, torch.ones(2), torch.tensor([0.0, 1.0]), method="rk2",
                           options={"u": u, "step_size": 0.25})


def test_scalar_values_without_grad_are_accepted():
    family = fresh_rk2()
    half = family(u=0.5)
    assert family.member({"u": torch.tensor(0.5)}) is half
    assert family.member({"u": torch.tensor(0.5, requires_grad=True).detach()}) is half
    assert family.member({"u": np.float64(0.5)}) is half
    assert family.member({"u": np.array(0.5)}) is half
    assert family.member({"u": 1}) is family.member({"u": 1.0})


@pytest.mark.parametrize(
    "value, rule",
    [
        (True, "a bool \\(True\\)"),
        (False, "a bool \\(False\\)"),
        (np.bool_(True), "a bool"),
        (torch.tensor(True), "a bool tensor"),
        (torch.tensor([0.3]), "a tensor of shape \\(1,\\), not a single number"),
        (torch.ones(2, 2), "a tensor of shape \\(2, 2\\)"),
        (np.array([0.3]), "an array of shape \\(1,\\)"),
        (torch.tensor(0.3j), "a complex tensor"),
        ("0.3", "'0.3' \\(a str\\), not a number"),
        (None, "None \\(a NoneType\\)"),
        (10**400, "too large for a float"),
    ],
)
def test_non_numbers_are_refused(value, rule):
    with pytest.raises(TableauError, match="parameter u must be a number .*" + rule):
        fresh_rk2().member({"u": value})


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, torch.tensor(math.nan)])
def test_non_finite_values_are_refused(value):
    with pytest.raises(TableauError, match="parameter u must be finite"):
        fresh_rk2().member({"u": value})


def test_parameters_must_be_a_mapping():
    with pytest.raises(TableauError, match="parameters must be a mapping .* got float"):
        fresh_rk2().member(0.3)


# ------------------------------------------------------------------------------------------------
# Member names


@pytest.mark.parametrize(
    "u, name",
    [
        (0.5, "rk2_u0p5"),
        (1.0, "rk2_u1"),
        (2 / 3 + 0.0, "rk2_u0p6666666666666666"),
        (-1.25, "rk2_um1p25"),
        (0.3, "rk2_u0p3"),
        (2e6, "rk2_u2e06"),
        (1.5e-7, "rk2_u1p5em07"),
    ],
)
def test_member_names_are_valid_and_readable(u, name):
    member = FAMILIES_BY_NAME["rk2"](u=u)
    assert member.name == name


def test_members_with_large_or_tiny_parameters_can_be_built():
    assert FAMILIES_BY_NAME["rk2"](u=2e6).name == "rk2_u2e06"
    assert FAMILIES_BY_NAME["rk4_uv"](u=1e6).name == "rk4_uv_u1e06_v0p6666666666666666"
    euler = fresh_euler()
    for u in (1e-20, -1e-20, 1e300, 5e-324, 1.7976931348623157e308, 123456789.125):
        assert NAME_RULE.match(euler(u=u).name), euler(u=u).name


def test_different_values_get_different_names():
    family = FAMILIES_BY_NAME["rk2"]
    assert family(u=0.5).name != family(u=0.50000001).name
    assert family(u=0.5).name == "rk2_u0p5" and family(u=0.50000001).name == "rk2_u0p50000001"
    euler = fresh_euler()
    rng = random.Random(0)
    values = {0.0, 1.0, 0.1 + 0.2, 0.3, 5e-324, -5e-324}
    values |= {rng.uniform(-10, 10) * 10.0 ** rng.randint(-300, 300) for _ in range(5000)}
    values |= {round(rng.uniform(0, 1), rng.randint(1, 9)) for _ in range(2000)}
    names = {euler.member_name([v]) for v in values}
    assert len(names) == len(values)
    assert all(NAME_RULE.match(n) for n in names)


def test_member_names_are_deterministic():
    euler = fresh_euler()
    assert euler.member_name([0.1]) == euler.member_name([0.1]) == "shifted_u0p1"
    # -0.0 == 0.0 shares a cache entry, so it must give the same name whichever came first.
    assert euler(u=-0.0).name == euler(u=0.0).name == fresh_euler()(u=-0.0).name == "shifted_u0"
    with pytest.raises(TableauError, match="one value per parameter"):
        euler.member_name([0.1, 0.2])


# ------------------------------------------------------------------------------------------------
# The member cache


def test_member_cache_is_a_bounded_lru():
    family = fresh_rk2()
    old = family(u=0.1)
    recent = family(u=0.2)
    for i in range(3 * MEMBER_CACHE_SIZE):
        family(u=1 + i * 1e-3)
        if i % 16 == 0:
            assert family(u=0.2) is recent  # each use makes it the most recent again
    assert len(family._cache) == MEMBER_CACHE_SIZE
    assert family(u=0.2) is recent
    assert (0.1,) not in family._cache
    rebuilt = family(u=0.1)
    assert rebuilt == old and rebuilt is not old


def test_member_cache_memory_does_not_grow_with_the_number_of_draws():
    # Solver smoothing draws a new u every batch: memory must stay flat however many draws. Each
    # member holds ~1.3 KiB, so unbounded the two batches below would add ~0.8 and ~1.6 MiB.
    family = fresh_rk2()
    draws = iter(0.1 + i * 1e-7 for i in range(10**6))
    tracemalloc.start()
    try:
        for _ in range(2 * MEMBER_CACHE_SIZE):  # warm-up: the cache is full of traced members from here on
            family(u=next(draws))
        warm = tracemalloc.get_traced_memory()[0]
        for _ in range(600):
            family(u=next(draws))
        after_first = tracemalloc.get_traced_memory()[0]
        for _ in range(1200):
            family(u=next(draws))
        after_second = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after_first - warm < 64 * 1024
    assert after_second - after_first < 64 * 1024  # twice the draws, the same fixed budget
    assert len(family._cache) == MEMBER_CACHE_SIZE


def test_member_cache_is_thread_safe():
    family = fresh_rk2()
    values = [0.1 + i * 1e-3 for i in range(3 * MEMBER_CACHE_SIZE)]
    barrier = threading.Barrier(8)

    def work(seed: int) -> list[Tableau]:
        barrier.wait()
        rng = random.Random(seed)
        return [family(u=rng.choice(values)) for _ in range(500)]

    with ThreadPoolExecutor(8) as pool:
        results = [m for batch in pool.map(work, range(8)) for m in batch]
    assert len(family._cache) <= MEMBER_CACHE_SIZE
    by_name = {}
    for member in results:
        assert by_name.setdefault(member.name, member) == member


def test_copies_of_a_family_start_with_their_own_cache():
    family = FAMILIES_BY_NAME["rk2"]
    clone = copy.deepcopy(family)
    assert clone._cache is not family._cache and clone._lock is not family._lock
    assert clone(u=0.37) == family(u=0.37)


# ------------------------------------------------------------------------------------------------
# Defining a family


@pytest.mark.parametrize(
    "args, rule",
    [
        (("rk2x", "u", {"u": 0.5}, _rk2), "params must be a tuple of parameter names .* got 'u'"),
        (("rk2x", "uv", {"u": 0.5, "v": 1.0}, _rk2), "params must be a tuple .* got 'uv'"),
        (("rk2x", ("u", "u"), {"u": 0.5}, _rk2), "params names \\['u'\\] more than once"),
        (("rk2x", ("U",), {"U": 0.5}, _rk2), "parameter name 'U' is invalid"),
        (("RK2", ("u",), {"u": 0.5}, _rk2), "family name 'RK2' is invalid"),
        (("rk2x", ("u",), {"u": 0.5}, "not callable"), "build must be callable"),
        (("rk2x", ("u",), {"u": True}, _rk2), "parameter u must be a number .* a bool"),
        (("rk2x", ("u",), [("u", 0.5)], _rk2), "defaults must be a mapping"),
        (("rk2x", ("u",), {"u": 0.5}, _rk2, [lambda u: u != 0]), "domain\\[0\\] must be a \\(statement, predicate\\)"),
        (("rk2x", ("u",), {"u": 0.5}, _rk2, ("u != 0", lambda u: u != 0)), "domain\\[0\\] must be a"),
        (("rk2x", ("u",), {"u": 0.5}, _rk2, [], 3), "description must be a str"),
    ],
)
def test_family_definition_errors_name_the_rule(args, rule):
    with pytest.raises(TableauError, match=rule):
        TableauFamily(*args)


def test_domain_predicate_that_raises_is_reported_with_its_rule():
    def positive(u):
        if u == 0.25:
            raise ZeroDivisionError("division by zero")
        return u > 0

    family = TableauFamily("rk2p", ("u",), {"u": 0.5}, _rk2, [("u > 0", positive)])
    with pytest.raises(TableauError, match="domain rule 'u > 0' could not be checked at \\(u=0.25\\): "
                                           "its predicate raised ZeroDivisionError"):
        family(u=0.25)


def test_domain_predicate_returning_none_is_reported():
    def forgot_return(u):
        u > 0  # noqa: B015

    with pytest.raises(TableauError, match="predicate of the domain rule 'u > 0' returned None"):
        TableauFamily("rk2n", ("u",), {"u": 0.5}, _rk2, [("u > 0", forgot_return)])


def test_build_with_the_wrong_signature_is_reported():
    with pytest.raises(TableauError, match="family 'rk2w': building the member \\(u=0.5\\) failed: .*keyword"):
        TableauFamily("rk2w", ("u",), {"u": 0.5}, lambda alpha: _rk2(alpha))


def test_invalid_member_names_its_parameters_and_the_domain():
    family = TableauFamily("rk2z", ("u",), {"u": 0.5}, _rk2)
    with pytest.raises(TableauError, match="family 'rk2z': the member \\(u=1e-300\\) is not a valid tableau: "
                                           "tableau 'rk2': sum\\(b\\) = 0.0 but must be 1.*domain needs a rule"):
        family(u=1e-300)
