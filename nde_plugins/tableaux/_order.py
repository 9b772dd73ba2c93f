"""Butcher order conditions, generated from rooted trees rather than listed by hand.

A Runge-Kutta method has order p exactly when, for every rooted tree tau with at most p nodes,

    sum_i b_i Phi_i(tau) = 1 / gamma(tau)

where Phi_i is the elementary weight of stage i and gamma the tree's density. A tree is stored as
the sorted tuple of its root's subtrees, so ``()`` is the single node and ``((),)`` the two-node
chain; sorting makes every tree have exactly one spelling, which is what lets us enumerate them
without duplicates. The number of trees per order (1, 1, 2, 4, 9, 20, 48, 115) is checked in the
tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from math import prod
from numbers import Integral

Tree = tuple  # recursive: tuple[Tree, ...]


# tree_order and tree_density are cached: every member a family builds checks the same few trees,
# and recomputing them recursively was a visible share of that check.
@cache
def tree_order(tree: Tree) -> int:
    """Number of nodes of ``tree``."""
    return 1 + sum(tree_order(child) for child in tree)


@cache
def tree_density(tree: Tree) -> int:
    """gamma(tree): the order times the densities of the subtrees."""
    return tree_order(tree) * prod(tree_density(child) for child in tree)


def tree_to_str(tree: Tree) -> str:
    """Bracket notation: ``t`` for the single node, ``[t, [t]]`` for a root with two subtrees."""
    if not tree:
        return "t"
    return "[" + ", ".join(tree_to_str(child) for child in tree) + "]"


def _check_order(order: object, least: int) -> int:
    # bool is an int subclass and a float such as 2.0 hashes like 2: both would slip through the
    # cache below as if they were valid orders, so the type is checked before any lookup.
    if isinstance(order, bool) or not isinstance(order, Integral):
        raise ValueError(f"order must be an int >= {least}, got {order!r} ({type(order).__name__})")
    order = int(order)
    if order < least:
        raise ValueError(f"order must be >= {least}, got {order}")
    return order


def trees_of_order(order: int) -> tuple[Tree, ...]:
    """All rooted trees with exactly ``order`` nodes, each once, in a fixed order.

    Raises ``ValueError`` unless ``order`` is an integer (not a bool) >= 1.
    """
    return _trees_of_order(_check_order(order, 1))


@cache
def _trees_of_order(order: int) -> tuple[Tree, ...]:
    if order == 1:
        return ((),)
    forests = _forests(order - 1, max_child=None)
    return tuple(sorted(set(forests), key=_sort_key))


def _sort_key(tree: Tree) -> tuple:
    return (tree_order(tree), tree_to_str(tree))


def _forests(n_nodes: int, max_child: Tree | None) -> list[Tree]:
    """Sorted multisets of trees with ``n_nodes`` nodes in all, each tree <= ``max_child``.

    Bounding every later child by the previous one yields each multiset exactly once
    (non-increasing sequences under one total order on trees).
    """
    if n_nodes == 0:
        return [()]
    result = []
    for first_size in range(n_nodes, 0, -1):
        for first in _trees_of_order(first_size):
            if max_child is not None and _sort_key(first) > _sort_key(max_child):
                continue
            for rest in _forests(n_nodes - first_size, first):
                result.append((first, *rest))
    return result


def trees_up_to(order: int) -> tuple[Tree, ...]:
    """All rooted trees with 1..``order`` nodes (none for ``order == 0``)."""
    return tuple(t for p in range(1, _check_order(order, 0) + 1) for t in _trees_of_order(p))


def _stage_weights(tree: Tree, a: Sequence[Sequence[float]], cache: dict) -> list[float]:
    """Phi_i(tree) for every stage i: the product over subtrees of (A Phi(subtree))_i."""
    if tree in cache:
        return cache[tree]
    s = len(a)
    weights = [1.0] * s
    for child in tree:
        child_w = _stage_weights(child, a, cache)
        for i in range(s):
            weights[i] *= sum(a[i][j] * child_w[j] for j in range(i))
    cache[tree] = weights
    return weights


@dataclass(frozen=True)
class OrderResidual:
    """One order condition evaluated for a weight vector: ``value - target``."""

    tree: Tree
    order: int
    value: float
    target: float

    @property
    def residual(self) -> float:
        return self.value - self.target

    @property
    def label(self) -> str:
        return tree_to_str(self.tree)


def order_residuals(
    a: Sequence[Sequence[float]], weights: Sequence[float], max_order: int, theta: float = 1.0
) -> list[OrderResidual]:
    """Residuals of all order conditions up to ``max_order`` for the given stage ``weights``.

    ``a`` is the full square (strictly lower triangular) matrix and ``weights`` has one entry per
    stage; a mismatch raises ``ValueError`` (pairing them up silently would drop stages). With
    ``theta != 1`` the targets are ``theta**order / gamma``: the conditions a continuous
    (dense-output) extension must meet when ``weights`` are its weights at ``t0 + theta * h``.
    """
    s = len(a)
    if any(len(row) != s for row in a):
        raise ValueError(f"a must be a square matrix; its rows have lengths {[len(row) for row in a]} for {s} rows")
    if len(weights) != s:
        raise ValueError(f"weights has {len(weights)} entries but a has {s} stages; give one weight per stage")
    cache: dict = {}
    out = []
    for tree in trees_up_to(max_order):
        phi = _stage_weights(tree, a, cache)
        p = tree_order(tree)
        value = sum(w * f for w, f in zip(weights, phi))
        out.append(OrderResidual(tree, p, value, theta**p / tree_density(tree)))
    return out


def achieved_order(
    a: Sequence[Sequence[float]], weights: Sequence[float], tol: float, limit: int = 8, theta: float = 1.0
) -> int:
    """Largest p <= ``limit`` such that every condition up to p holds within ``tol`` (0 if none does).

    With ``theta != 1`` this is the order of the continuous extension whose weights at
    ``t0 + theta * h`` are ``weights`` (see ``order_residuals``). A NaN residual (coefficients
    whose products overflow) counts as a failed condition.
    """
    residuals = order_residuals(a, weights, limit, theta)
    for p in range(1, limit + 1):
        if any(not abs(r.residual) <= tol for r in residuals if r.order == p):
            return p - 1
    return limit
