"""Stability functions and principal local error coefficients of explicit Runge-Kutta tableaux.

Plain Python (exact fractions where it matters, one rounding to float64 at the end): what
``nde-plugins tableau`` prints and ``nde_plugins.plots`` draws.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from ._tableau import COEFFICIENT_TOL, Tableau, TableauError


def _weights(tableau: Tableau, which: str) -> tuple[float, ...]:
    if which == "b":
        return tableau.b
    if which == "b_hat":
        if tableau.b_hat is None:
            raise TableauError(f"tableau {tableau.name!r} has no b_hat (no embedded method); use which='b'")
        return tableau.b_hat
    raise TableauError(f"which must be 'b' or 'b_hat' (the weights of a solution), got {which!r}")


def stability_polynomial(tableau: Tableau, which: str = "b") -> tuple[float, ...]:
    """The coefficients ``(r_0, r_1, ..., r_d)`` of the stability function ``R(z) = sum_k r_k z^k``.

    ``R`` is what one step does to ``y' = lambda y`` with ``z = h lambda``:
    ``R(z) = 1 + z w^T (I - z A)^{-1} 1`` for the weights ``w`` (``which="b"``, or ``"b_hat"`` for
    the embedded method of a pair). A is strictly lower triangular, so the series ends and
    ``r_0 = 1``, ``r_k = w^T A^(k-1) 1`` for k = 1 .. s. The sums are taken in exact rational
    arithmetic on the tableau's floats and rounded once to float64.

    Trailing coefficients with ``|r_k| k! <= COEFFICIENT_TOL`` are dropped, so ``d`` is the degree:
    a coefficient that is zero for the published rational method comes out of rounded
    coefficients as noise of that size, and left in place it would put spurious far-away pieces
    into the region. ``r_k`` is compared with ``1/k!``, the size of the exponential's coefficient.
    """
    weights = [Fraction(w) for w in _weights(tableau, which)]
    a = [[Fraction(x) for x in row] for row in tableau.a_matrix()]
    s = tableau.stages
    vector = [Fraction(1)] * s  # A^(k-1) 1
    coefficients = [1.0]
    for _ in range(s):
        coefficients.append(float(sum(w * v for w, v in zip(weights, vector))))
        vector = [sum(a[i][j] * vector[j] for j in range(i)) for i in range(s)]
    while len(coefficients) > 1 and abs(coefficients[-1]) * math.factorial(len(coefficients) - 1) <= COEFFICIENT_TOL:
        coefficients.pop()
    return tuple(coefficients)


def stability_function(coefficients: Sequence[float], z: Any) -> Any:
    """``R(z)`` by Horner's rule; ``z`` is a number or an array (numpy or torch, real or complex)."""
    value = coefficients[-1] + 0 * z
    for coefficient in reversed(coefficients[:-1]):
        value = value * z + coefficient
    return value


#: Points per unit of the Chebyshev bound scanned by ``real_stability_interval``.
_SCAN_POINTS = 20_000


def real_stability_interval(coefficients: Sequence[float]) -> float:
    """The left end beta < 0 of the real stability interval: ``|R(x)| <= 1`` for every x in [beta, 0].

    For a consistent method (``R(0) = 1``, ``R'(0) = 1``) of degree d the interval is at most
    ``2 d^2`` long (the shifted Chebyshev polynomial reaches it), so [-2 d^2 - 1, 0] is scanned
    from 0 leftwards in ``_SCAN_POINTS`` steps and the first exit is refined by bisection. An
    excursion above 1 shorter than one scan step (about 2 d^2 / 20000) can be missed. Raises
    ``ValueError`` unless ``coefficients`` start with 1, 1 (a consistent method).
    """
    if len(coefficients) < 2 or coefficients[0] != 1.0 or abs(coefficients[1] - 1.0) > COEFFICIENT_TOL:
        raise ValueError(f"coefficients must start with 1, 1 (R(0) = 1 and R'(0) = 1: a consistent method), "
                         f"got {list(coefficients[:2])}")
    degree = len(coefficients) - 1
    bound = 2.0 * degree**2 + 1.0
    step = bound / _SCAN_POINTS
    inside = 0.0
    for i in range(1, _SCAN_POINTS + 1):
        x = -i * step
        if abs(stability_function(coefficients, x)) > 1.0:
            outside = x
            break
        inside = x
    else:
        return -bound
    for _ in range(60):
        middle = (inside + outside) / 2
        if abs(stability_function(coefficients, middle)) > 1.0:
            outside = middle
        else:
            inside = middle
    return inside


def _symmetry(tree: tuple) -> int:
    """sigma(tree): the order of the tree's automorphism group (equal subtrees may be swapped)."""
    out = 1
    for child, count in Counter(tree).items():
        out *= math.factorial(count) * _symmetry(child) ** count
    return out


def principal_error_coefficients(tableau: Tableau, which: str = "b") -> list[tuple[str, float]]:
    """``(tree, coefficient)`` for every rooted tree of order p + 1 (p: the order of the weights).

    The local error of one step is ``h^(p+1) sum_t tau(t) F(t) + O(h^(p+2))`` with the elementary
    differentials F(t) and ``tau(t) = (Phi(t) - 1/gamma(t)) / sigma(t)``: the order-(p + 1)
    residual of ``Tableau.residuals`` divided by the tree's symmetry. Their 2-norm (see
    ``error_coefficient_norm``) is the usual single measure of a method's accuracy; it is what a
    family's parameters change when the stability function stays the same.
    """
    _weights(tableau, which)
    order = tableau.order if which == "b" else tableau.embedded_order
    residuals = tableau.residuals(which, max_order=order + 1)
    return [(r.label, r.residual / _symmetry(r.tree)) for r in residuals if r.order == order + 1]


def error_coefficient_norm(tableau: Tableau, which: str = "b") -> float:
    """The 2-norm of ``principal_error_coefficients``."""
    return math.sqrt(sum(value**2 for _, value in principal_error_coefficients(tableau, which)))


_SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def format_polynomial(coefficients: Sequence[float], unicode: bool = False) -> str:
    """``1 + z + z^2/2 + z^3/6`` (``z²/2`` with ``unicode=True``): a coefficient that is 1/n for a whole
    n up to 10^6 is written as a fraction, others with 6 significant digits."""
    terms = []
    for k, value in enumerate(coefficients):
        if value == 0:
            continue
        power = "" if k == 0 else "z" if k == 1 else (f"z{str(k).translate(_SUPERSCRIPTS)}" if unicode else f"z^{k}")
        size, sign = abs(value), "-" if value < 0 else "+"
        denominator = round(1 / size)
        if denominator and abs(size * denominator - 1) <= 1e-12 and denominator <= 1_000_000:
            body = (power or "1") if denominator == 1 else f"{power}/{denominator}" if power else f"1/{denominator}"
        else:
            body = f"{size:.6g}" + (f" {power}" if power else "")
        terms.append((sign, body))
    if not terms:
        return "0"
    text = ("-" if terms[0][0] == "-" else "") + terms[0][1]
    return text + "".join(f" {sign} {body}" for sign, body in terms[1:])


def shared_stability_function(polynomials: Sequence[Sequence[float]], tol: float = 1e-12) -> bool:
    """True when every polynomial has the same coefficients as the first, within ``tol`` each."""
    first = list(polynomials[0])
    for other in polynomials[1:]:
        width = max(len(first), len(other))
        padded = (list(first) + [0.0] * width)[:width], (list(other) + [0.0] * width)[:width]
        if any(abs(x - y) > tol for x, y in zip(*padded)):
            return False
    return True
