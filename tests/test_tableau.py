import dataclasses
import random
import warnings

import numpy as np
import pytest
import torch

import nde_plugins as nde
from nde_plugins import Tableau, TableauError, TableauFamily
from nde_plugins.tableaux import TableauWarning, order_residuals
from nde_plugins.tableaux.builtin import DORMAND_PRINCE, EMBEDDED_PAIRS, FAMILIES, NAMED_MEMBERS, TSITOURAS5

BUILTIN_TABLEAUX = [*NAMED_MEMBERS, *EMBEDDED_PAIRS]
BUILTIN_FAMILIES = list(FAMILIES)

SSPRK3 = dict(name="ssprk3", c=[0, 1, 0.5], a=[[], [1], [0.25, 0.25]], b=[1 / 6, 1 / 6, 2 / 3], order=3)


def test_public_contract_example():
    t = Tableau(**SSPRK3)
    assert t.stages == 3 and t.order == 3 and not t.is_adaptive


def test_ragged_and_square_a_are_the_same_value():
    square = [[0, 0, 0], [1, 0, 0], [0.25, 0.25, 0]]
    assert Tableau(**{**SSPRK3, "a": square}) == Tableau(**SSPRK3)


def test_frozen_hashable_comparable():
    t1, t2 = Tableau(**SSPRK3), Tableau(**SSPRK3)
    assert t1 == t2 and hash(t1) == hash(t2) and len({t1, t2}) == 1
    with pytest.raises(AttributeError):
        t1.order = 2
    assert t1 != t1.renamed("other")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tensors_follow_dtype(dtype):
    c, a, b, b_hat = DORMAND_PRINCE.tensors(dtype=dtype, device="cpu")
    assert c.dtype == a.dtype == b.dtype == b_hat.dtype == dtype
    assert a.shape == (7, 7) and torch.all(torch.triu(a) == 0)
    assert torch.allclose(a.sum(1), c)


@pytest.mark.parametrize(
    "change, rule",
    [
        ({"c": [0, 1]}, "a has 3 rows but c has 2 stages"),
        ({"a": [[], [1, 2], [0.25, 0.25]]}, "row 1 of a has 2 entries"),
        ({"a": [[0, 0, 0], [1, 0, 0], [0.25, 0.25, 0.5]]}, "strictly lower triangular"),
        ({"c": [0, 1, 0.4]}, "row-sum condition"),
        ({"c": [0.1, 1, 0.5], "a": [[], [1], [0.25, 0.25]]}, "c\\[0\\] = 0.1 but must be 0"),
        ({"b": [1 / 6, 1 / 6, 0.6]}, "sum\\(b\\) = .* must be 1"),
        ({"b": [1 / 6, 1 / 6]}, "b has 2 entries but c has 3"),
        ({"order": 4}, "order-4 condition .* fails"),
        ({"order": 0}, "order must be a positive int"),
        ({"b_hat": [0.5, 0.5, 0.1]}, "sum\\(b_hat\\)"),
        ({"b_hat": [0.5, 0.5, 0], "embedded_order": 3},
         "embedded_order must be an int with 1 <= embedded_order < order"),
        ({"b_hat": [0, 1, 0], "embedded_order": 2}, "declared order 2 for b_hat but the order-2 condition"),
        ({"embedded_order": 2}, "embedded_order is given but b_hat is not"),
        ({"name": "SSP RK3"}, "names must match"),
        ({"c": [0, float("nan"), 0.5]}, "must be finite"),
        ({"b_mid": [0.1, 0.1, 0.1]}, "sum\\(b_mid\\)"),
    ],
)
def test_validation_names_the_rule(change, rule):
    with pytest.raises(TableauError, match=rule):
        Tableau(**{**SSPRK3, **change})


def test_b_hat_equal_to_b_is_refused():
    with pytest.raises(TableauError, match="error estimate would always be zero"):
        Tableau(**SSPRK3, b_hat=SSPRK3["b"], embedded_order=2)


def test_embedded_order_defaults_to_order_minus_one():
    t = Tableau("he", c=[0, 1], a=[[], [1]], b=[0.5, 0.5], b_hat=[1, 0], order=2)
    assert t.embedded_order == 1


@pytest.mark.parametrize("tableau", BUILTIN_TABLEAUX, ids=lambda t: t.name)
def test_builtin_tableaux_pass_their_order_conditions(tableau):
    assert max(abs(r.residual) for r in tableau.residuals("b")) < 1e-12
    if tableau.is_adaptive:
        assert max(abs(r.residual) for r in tableau.residuals("b_hat")) < 1e-12
        # the pair is genuinely of two different orders: b_hat fails one condition of order `order`
        assert max(abs(r.residual) for r in tableau.residuals("b_hat", tableau.order)) > 1e-6


@pytest.mark.parametrize("tableau", [DORMAND_PRINCE, TSITOURAS5], ids=lambda t: t.name)
def test_dense_output_midpoint_is_fourth_order(tableau):
    residuals = order_residuals(tableau.a_matrix(), tableau.b_mid, 4, theta=0.5)
    assert max(abs(r.residual) for r in residuals) < 1e-12


def _random_params(family: TableauFamily, rng: random.Random) -> dict:
    """Random parameters well inside the family's domain (away from every singular set)."""
    while True:
        p = {name: rng.uniform(0.1, 1.4) for name in family.params}
        if _well_inside(family, p):
            family.resolve(p)
            return p


def _well_inside(family, p, margin=0.15):
    u, v = p.get("u", 0.5), p.get("v", 0.25)
    singular_u = {"rk2": [0], "rk3": [0, 2 / 3], "rk4_u1": [0], "rk4_u2": [0], "rk4_u3": [0], "rk4_uv": [0, 0.5, 1]}
    if any(abs(u - s) < margin for s in singular_u.get(family.name, [])):
        return False
    if "v" in p and (abs(v - u) < margin or (family.name == "rk4_uv" and abs(v - 1) < margin)):
        return False
    if family.name == "rk4_uv" and abs(6 * u * v - 4 * u - 4 * v + 3) < margin:
        return False
    return True


@pytest.mark.parametrize("family", BUILTIN_FAMILIES, ids=lambda f: f.name)
def test_family_members_at_random_parameters_pass_order_conditions(family):
    rng = random.Random(family.name)
    for _ in range(5):
        member = family.member(_random_params(family, rng))
        assert member.order == family.member().order
        assert max(abs(r.residual) for r in member.residuals()) < 1e-10


def test_family_defaults_and_named_members():
    assert nde.get_tableau("rk4_u2").c == nde.get_tableau("rk4_classic").c
    assert nde.get_tableau("rk4_uv").b == pytest.approx([1 / 8, 3 / 8, 3 / 8, 1 / 8])
    assert nde.get_tableau("rk2").b == (0.0, 1.0)  # midpoint
    assert nde.get_tableau("rk2:u=1").b == (0.5, 0.5)  # Heun
    assert nde.get_tableau("ralston2").c == (0.0, 2 / 3)


@pytest.mark.parametrize(
    "spec, rule",
    [
        ("rk2:u=0", "'u != 0'"),
        ("rk3:u=0.6667,v=0.6667", "'u != v'"),
        ("rk3:u=0.6666666666666666", "'u != 2/3'"),
        ("rk4_uv:u=0.5", "'u not in \\{0, 1/2, 1\\}'"),
        ("rk4_uv:u=1", "'u not in \\{0, 1/2, 1\\}'"),
        ("rk4_uv:v=1", "'v not in \\{0, 1\\}'"),
        ("rk4_uv:u=0.3,v=0.3", "'u != v'"),
        ("rk4_uv:u=0.25,v=0.8", "'6uv - 4u - 4v \\+ 3 != 0'"),
        ("rk4_u1:u=0", "'u != 0'"),
    ],
)
def test_family_domain_errors_name_the_rule(spec, rule):
    with pytest.raises(TableauError, match=rule):
        nde.get_tableau(spec)


def test_family_rejects_unknown_and_non_numeric_parameters():
    with pytest.raises(TableauError, match="has no parameter 'w'"):
        nde.get_tableau("rk4_uv", w=0.3)
    with pytest.raises(TableauError, match="must be a number"):
        nde.get_registry().get("tableau", "rk2").member({"u": "big"})
    with pytest.raises(TableauError, match="takes no parameters"):
        nde.get_tableau("dormand_prince", u=0.3)


def test_family_with_invalid_default_fails_at_definition():
    with pytest.raises(TableauError, match="domain rule 'u > 1'"):
        TableauFamily("bad", ("u",), {"u": 0.5}, lambda u: None, [("u > 1", lambda u: u > 1)])
    with pytest.raises(TableauError, match="defaults must give exactly the parameters"):
        TableauFamily("bad", ("u", "v"), {"u": 0.5}, lambda u, v: None)


def test_family_build_returning_wrong_order_is_caught():
    def build(u):
        return Tableau("x", c=[0, u], a=[[], [u]], b=[0.5, 0.5], order=2)

    fam = TableauFamily("wrong", ("u",), {"u": 1.0}, build)
    with pytest.raises(TableauError, match="order-2 condition"):
        fam.member({"u": 0.5})


def test_family_members_are_cached():
    fam = nde.get_registry().get("tableau", "rk2")
    assert fam(u=0.37) is fam(u=0.37)


# ------------------------------------------------------------------------------------------------
# Shapes and the numbers a tableau is built from


def test_one_stage_method_accepts_the_full_1x1_matrix():
    full = Tableau("euler1", c=[0], a=[[0]], b=[1], order=1)
    assert full == Tableau("euler1", c=[0], a=[[]], b=[1], order=1)
    assert full.a == ((),) and full.a_matrix() == [[0.0]]
    with pytest.raises(TableauError, match="a\\[0\\]\\[0\\] = 0.5 is on or above the diagonal.*explicit"):
        Tableau("implicit1", c=[0], a=[[0.5]], b=[1], order=1)


@pytest.mark.parametrize(
    "a, rule",
    [
        ([[], ["x"], [0.25, 0.25]], "a\\[1\\]\\[0\\] is 'x' \\(a str\\), not a number"),
        ([[], [None], [0.25, 0.25]], "a\\[1\\]\\[0\\] is None \\(a NoneType\\), not a number"),
        ([[], [1], [0.25, True]], "a\\[2\\]\\[1\\] is a bool"),
        ("abc", "a must be a list of rows of numbers .*got 'abc' \\(a str\\)"),
        (3.0, "a must be a list of rows of numbers"),
        ([[], 1.0, [0.25, 0.25]], "a\\[1\\] must be a sequence of numbers .*got 1.0 \\(a float\\)"),
        ([[], "1", [0.25, 0.25]], "a\\[1\\] must be a sequence of numbers"),
    ],
)
def test_non_numeric_a_is_reported_as_such_not_as_a_shape_error(a, rule):
    with pytest.raises(TableauError, match=rule):
        Tableau(**{**SSPRK3, "a": a})


@pytest.mark.parametrize(
    "change, rule",
    [
        ({"c": torch.tensor([0.0, 1.0, 0.5], requires_grad=True)}, "c is a tensor that requires grad"),
        ({"b": torch.tensor([1 / 6, 1 / 6, 2 / 3], requires_grad=True)}, "b is a tensor that requires grad"),
        ({"a": [[], [torch.tensor(1.0, requires_grad=True)], [0.25, 0.25]]}, "a\\[1\\]\\[0\\] is a tensor that"),
        ({"a": torch.tensor([[0, 0, 0], [1, 0, 0], [0.25, 0.25, 0]], requires_grad=True)}, "a is a tensor that"),
        ({"b_mid": [torch.tensor(0.25, requires_grad=True), 0, 0.25]}, "b_mid\\[0\\] is a tensor that"),
    ],
)
def test_coefficients_that_require_grad_are_refused(change, rule):
    # A Tableau is a value of Python floats: converting would silently cut the gradient.
    with pytest.raises(TableauError, match=rule + ".*no gradient could flow.*detach"):
        Tableau(**{**SSPRK3, **change})


def test_tensors_and_numpy_values_without_grad_are_accepted():
    t = Tableau(
        "ssprk3",
        c=torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64),
        a=torch.tensor([[0, 0, 0], [1, 0, 0], [0.25, 0.25, 0]], dtype=torch.float64),
        b=np.array([1 / 6, 1 / 6, 2 / 3]),
        order=np.int64(3),
    )
    assert t == Tableau(**SSPRK3) and hash(t) == hash(Tableau(**SSPRK3))
    assert type(t.order) is int and all(type(x) is float for x in t.c)


@pytest.mark.parametrize(
    "change, rule",
    [
        ({"b": [True, False]}, "b\\[0\\] is a bool"),
        ({"b": [np.bool_(True), np.bool_(False)]}, "b\\[0\\] is a bool"),
        ({"c": [False, 1]}, "c\\[0\\] is a bool"),
        ({"order": True}, "order must be a positive int, got True"),
        ({"order": 1.0}, "order must be a positive int, got 1.0"),
        ({"b": ["0.5", "0.5"]}, "b\\[0\\] is '0.5' \\(a str\\), not a number"),
        ({"b": {0.5, 0.25}}, "b must be a sequence of numbers"),
        ({"c": [0, 10**400]}, "c\\[1\\] is a number too large for a float"),
        ({"b": [0.5, torch.tensor([0.5])]}, "b\\[1\\] is a tensor of shape \\(1,\\)"),
        ({"description": 3}, "description must be a str"),
    ],
)
def test_bools_strings_and_other_non_numbers_are_refused(change, rule):
    heun = dict(name="heun", c=[0, 1], a=[[], [1]], b=[0.5, 0.5], order=1)
    with pytest.raises(TableauError, match=rule):
        Tableau(**{**heun, **change})


def test_overflowing_products_do_not_pass_as_satisfied_conditions():
    # sum b_i c_i is inf - inf = nan here; a NaN residual compares False with the tolerance, so
    # the check has to be written the other way round.
    with pytest.raises(TableauError, match="order-2 condition .* nan"):
        Tableau("overflow", c=[0, 1e200, 1e200, 0.5], a=[[], [1e200], [1e200, 0], [0.5, 0, 0]],
                b=[0, 1e200, -1e200, 1], order=2)


def test_b_hat_equal_to_b_up_to_rounding_is_refused():
    b = SSPRK3["b"]
    with pytest.raises(TableauError, match="error estimate would always be zero"):
        Tableau(**SSPRK3, b_hat=[b[0] + 1e-15, b[1], b[2] - 1e-15], embedded_order=2)


def test_renamed_checks_the_name_and_keeps_the_value():
    t = Tableau(**SSPRK3, description="three stages")
    r = t.renamed("ssprk3_copy")
    assert (r.c, r.a, r.b, r.order, r.description) == (t.c, t.a, t.b, t.order, "three stages")
    assert r.name == "ssprk3_copy" and t.name == "ssprk3"
    for bad in ("SSPRK3", "3rk", "", "rk-3", None):
        with pytest.raises(TableauError, match="names must match"):
            t.renamed(bad)
    with pytest.raises(TableauError, match="description must be a str"):
        t.renamed("ok", description=1)


def test_residuals_and_tensors_name_bad_arguments():
    t = Tableau(**SSPRK3)
    with pytest.raises(TableauError, match="which must be one of \\['b', 'b_hat', 'b_mid'\\]"):
        t.residuals("c")
    with pytest.raises(TableauError, match="has no b_hat"):
        t.residuals("b_hat")
    with pytest.raises(TableauError, match="max_order must be a positive int"):
        t.residuals("b", max_order=True)
    with pytest.raises(TableauError, match="max_order must be >= 1"):
        t.residuals("b", max_order=0)
    assert len(t.residuals("b", max_order=4)) == 8
    with pytest.raises(TableauError, match="floating dtype"):
        t.tensors(dtype=torch.int64)


# ------------------------------------------------------------------------------------------------
# Dense output: the order b_mid gives


@pytest.mark.parametrize("tableau", [DORMAND_PRINCE, TSITOURAS5], ids=lambda t: t.name)
def test_builtin_dense_outputs_are_fourth_order_and_do_not_warn(tableau):
    assert tableau.dense_order == 4
    fields = {f.name: getattr(tableau, f.name) for f in dataclasses.fields(tableau)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", TableauWarning)
        assert Tableau(**fields) == tableau
    assert max(abs(r.residual) for r in tableau.residuals("b_mid", 4)) < 1e-12


@pytest.mark.parametrize("tableau", BUILTIN_TABLEAUX, ids=lambda t: t.name)
def test_builtin_dense_orders_meet_the_standard(tableau):
    if tableau.b_mid is None:
        assert tableau.dense_order is None
    else:
        assert tableau.dense_order >= min(tableau.order - 1, 4)


def test_low_order_b_mid_warns_naming_the_tableau_and_the_fix():
    # sum(b_mid) = 1/2 holds, but sum b_mid_i c_i = 1/4 instead of 1/8: a first-order midpoint.
    with pytest.warns(TableauWarning, match="'ssprk3': b_mid gives a dense output of order 1 only.*below 2.*"
                                            "fix b_mid, or omit it"):
        t = Tableau(**SSPRK3, b_mid=[1 / 6, 1 / 6, 1 / 6])
    assert t.dense_order == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", TableauWarning)
        good = Tableau(**SSPRK3, b_mid=[0.25, 0, 0.25])  # second order: sum w_i c_i = 1/8
        good.renamed("ssprk3_dense")
    assert good.dense_order == 2 and Tableau(**SSPRK3).dense_order is None


def test_low_order_b_mid_on_a_fifth_order_pair_warns():
    fields = {f.name: getattr(DORMAND_PRINCE, f.name) for f in dataclasses.fields(DORMAND_PRINCE)}
    # The linear-interpolation midpoint (b / 2) is only first order.
    with pytest.warns(TableauWarning, match="order 1 only.*below 4 = min\\(order - 1, 4\\) for an order-5"):
        t = Tableau(**{**fields, "b_mid": [x / 2 for x in DORMAND_PRINCE.b]})
    assert t.dense_order == 1
