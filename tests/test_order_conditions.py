import math

import pytest

from nde_plugins.tableaux import order_residuals, trees_of_order
from nde_plugins.tableaux._order import achieved_order, tree_density, tree_order


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
