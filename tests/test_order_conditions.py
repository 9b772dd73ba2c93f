import math

import numpy as np
import pytest

from nde_plugins.tableaux import order_residuals, trees_of_order, trees_up_to
from nde_plugins.tableaux._order import achieved_order, tree_density, tree_order
from nde_plugins.tableaux.builtin import DORMAND_PRINCE


def test_number_of_rooted_trees_per_order():
    # OEIS A000081
    assert [len(trees_of_order(p)) for p in range(1, 9)] == [1, 1, 2, 4, 9, 20, 48, 115]


def test_trees_are_distinct_and_have_their_order():
    for p in range(1, 8):
        trees = trees_of_order(p)
        assert len(set(trees)) == len(trees)
        assert all(tree_order(t) == p for t in trees)


def test_densities_of_small_trees():
    # gamma of the bushy tree [t, t, t] is 4, of the tall tree [[[t]]] is 24.
    assert tree_density(((), (), ())) == 4
    assert tree_density(((((),),),)) == 24
    assert sorted(tree_density(t) for t in trees_of_order(4)) == [4, 8, 12, 24]


def test_classic_rk4_satisfies_order_4_but_not_5():
    a = [[0, 0, 0, 0], [0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 1, 0]]
    b = [1 / 6, 1 / 3, 1 / 3, 1 / 6]
    assert max(abs(r.residual) for r in order_residuals(a, b, 4)) < 1e-15
    assert achieved_order(a, b, 1e-12) == 4


def test_dense_output_targets_scale_with_theta():
    euler_a, euler_b = [[0.0]], [0.5]
    (r,) = order_residuals(euler_a, euler_b, 1, theta=0.5)
    assert math.isclose(r.target, 0.5) and math.isclose(r.residual, 0.0)


def test_rejects_order_zero():
    with pytest.raises(ValueError, match="order must be >= 1"):
        trees_of_order(0)


@pytest.mark.parametrize("order", [True, 2.0, "3", None])
def test_rejects_orders_that_are_not_ints(order):
    # True == 1 and 2.0 == 2 hash alike, so a cached lookup would have answered them as valid orders.
    trees_of_order(1), trees_of_order(2)
    with pytest.raises(ValueError, match="order must be an int >= 1"):
        trees_of_order(order)
    with pytest.raises(ValueError, match="order must be an int >= 0"):
        trees_up_to(order)


def test_numpy_integer_orders_are_accepted():
    assert trees_of_order(np.int64(4)) == trees_of_order(4)
    assert len(trees_up_to(np.int32(3))) == 4 and trees_up_to(0) == ()


def test_weights_and_matrix_must_match():
    a = [[0, 0], [1, 0]]
    with pytest.raises(ValueError, match="weights has 3 entries but a has 2 stages"):
        order_residuals(a, [0.5, 0.5, 0.0], 2)
    with pytest.raises(ValueError, match="a must be a square matrix"):
        order_residuals([[0], [1, 0]], [0.5, 0.5], 2)


def test_achieved_order_of_a_continuous_extension():
    a, b_mid = DORMAND_PRINCE.a_matrix(), DORMAND_PRINCE.b_mid
    assert achieved_order(a, b_mid, 1e-10, limit=5, theta=0.5) == 4
    # the same weights are no step-end method (their sum is 1/2, not 1)
    assert achieved_order(a, b_mid, 1e-10, limit=5) == 0


def test_achieved_order_counts_nan_residuals_as_failures():
    # c = (0, 1e200, 1e200, 1/2): sum w_i c_i is inf - inf = nan, which is no satisfied condition.
    a = [[0, 0, 0, 0], [1e200, 0, 0, 0], [1e200, 0, 0, 0], [0.5, 0, 0, 0]]
    assert achieved_order(a, [0, 1e200, -1e200, 1], 1e-10, limit=4) == 1
