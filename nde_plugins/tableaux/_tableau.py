"""The ``Tableau`` value type: an explicit Runge-Kutta method, validated on construction."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from ._order import order_residuals

# Absolute tolerance for "equals" in the structural checks and the order conditions. Published
# coefficients are rationals rounded to double precision (a few ulp of error, amplified by sums of
# up to ~20 products), while a wrong coefficient is off by far more than 1e-10.
COEFFICIENT_TOL = 1e-10

# The largest order we verify; trees up to order 8 number 286, still instant to check.
MAX_VERIFIED_ORDER = 8

_NAME_RULE = re.compile(r"^[a-z][a-z0-9_]*$")


class TableauError(ValueError):
    """A tableau or family member breaks a rule; the message names the rule and the fix."""


def _as_floats(name: str, values: Any, where: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise TableauError(f"{where}: {name} must be a sequence of numbers ({exc})") from None
    bad = [i for i, v in enumerate(out) if not math.isfinite(v)]
    if bad:
        raise TableauError(f"{where}: {name}[{bad[0]}] is {out[bad[0]]}; coefficients must be finite")
    return out


def _ragged_rows(a: Any, s: int, where: str) -> tuple[tuple[float, ...], ...]:
    """Normalize ``a`` (ragged strictly-lower rows or a full s x s matrix) to ragged rows."""
    if isinstance(a, torch.Tensor):
        a = a.tolist()
    try:
        rows = [list(row) for row in a]
    except TypeError:
        raise TableauError(f"{where}: a must be a list of rows, got {type(a).__name__}") from None
    if len(rows) != s:
        raise TableauError(
            f"{where}: a has {len(rows)} rows but c has {s} stages; give one row per stage "
            "(ragged rows of the strictly lower triangle, the first one empty, or a full square matrix)"
        )
    if all(len(row) == s for row in rows) and s > 1:
        for i, row in enumerate(rows):
            for j in range(i, s):
                if float(row[j]) != 0.0:
                    raise TableauError(
                        f"{where}: a[{i}][{j}] = {row[j]} is on or above the diagonal; a must be strictly "
                        "lower triangular (only explicit Runge-Kutta methods are supported)"
                    )
        rows = [row[:i] for i, row in enumerate(rows)]
    for i, row in enumerate(rows):
        if len(row) != i:
            raise TableauError(
                f"{where}: row {i} of a has {len(row)} entries; ragged rows must hold exactly the {i} "
                f"coefficients a[{i}][0..{i - 1}] left of the diagonal (or give a full {s}x{s} matrix)"
            )
    return tuple(_as_floats(f"a[{i}]", row, where) for i, row in enumerate(rows))


@dataclass(frozen=True)
class Tableau:
    """An explicit Runge-Kutta method (c, A, b), optionally with an embedded pair and dense output.

    Args:
        name: lower-case identifier (``[a-z][a-z0-9_]*``) used to select the method.
        c: stage times as fractions of the step; ``c[0]`` must be 0.
        a: the strictly lower triangle, as ragged rows (row i holds a_i1..a_i,i-1; row 0 empty) or
            as a full square matrix whose diagonal and upper part are zero.
        b: weights of the propagated solution; ``order`` is its declared order.
        b_hat: weights of the embedded solution used for the error estimate (as papers list them,
            not the difference ``b - b_hat``); ``embedded_order`` is its order and defaults to
            ``order - 1``.
        b_mid: optional dense-output weights at the half step, so that
            ``y(t0 + h/2) ~ y0 + h * sum_i b_mid_i k_i``. Adaptive solves use it for interpolation;
            without it a cubic Hermite midpoint is used.

    Construction checks every rule (shapes, explicitness, row sums, weight sums and all Butcher
    order conditions up to the declared orders) and raises ``TableauError`` naming the rule broken.
    Instances are frozen, hashable and compare by value; ``tensors()`` gives the coefficients as
    tensors of any dtype and device.
    """

    name: str
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int
    b_hat: tuple[float, ...] | None = None
    embedded_order: int | None = None
    b_mid: tuple[float, ...] | None = None
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        where = f"tableau {self.name!r}"
        if not isinstance(self.name, str) or not _NAME_RULE.match(self.name):
            raise TableauError(
                f"tableau name {self.name!r} is invalid: names must match [a-z][a-z0-9_]* "
                "(lower case, digits, underscores) so they can be used as method names and CLI specs"
            )
        c = _as_floats("c", self.c, where)
        s = len(c)
        if s == 0:
            raise TableauError(f"{where}: c is empty; a method needs at least one stage")
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "a", _ragged_rows(self.a, s, where))
        object.__setattr__(self, "b", self._weights("b", self.b, s, where))
        if self.b_hat is not None:
            object.__setattr__(self, "b_hat", self._weights("b_hat", self.b_hat, s, where))
        if self.b_mid is not None:
            b_mid = _as_floats("b_mid", self.b_mid, where)
            if len(b_mid) != s:
                raise TableauError(f"{where}: b_mid has {len(b_mid)} entries but the method has {s} stages")
            if abs(sum(b_mid) - 0.5) > COEFFICIENT_TOL:
                raise TableauError(
                    f"{where}: sum(b_mid) = {sum(b_mid)!r} but must be 1/2 (weights of the half step)"
                )
            object.__setattr__(self, "b_mid", b_mid)
        self._check_structure(where)
        self._check_orders(where)

    @staticmethod
    def _weights(name: str, values: Any, s: int, where: str) -> tuple[float, ...]:
        if isinstance(values, torch.Tensor):
            values = values.tolist()
        out = _as_floats(name, values, where)
        if len(out) != s:
            raise TableauError(f"{where}: {name} has {len(out)} entries but c has {s} stages; they must match")
        if abs(sum(out) - 1.0) > COEFFICIENT_TOL:
            raise TableauError(f"{where}: sum({name}) = {sum(out)!r} but must be 1 (consistency)")
        return out

    def _check_structure(self, where: str) -> None:
        if self.c[0] != 0.0:
            raise TableauError(
                f"{where}: c[0] = {self.c[0]} but must be 0 (the first stage of an explicit method is at t0)"
            )
        for i, (ci, row) in enumerate(zip(self.c, self.a)):
            if abs(sum(row) - ci) > COEFFICIENT_TOL:
                raise TableauError(
                    f"{where}: row {i} of a sums to {sum(row)!r} but c[{i}] = {ci!r}; each row of a must sum "
                    "to its c (the row-sum condition)"
                )

    def _check_orders(self, where: str) -> None:
        if not isinstance(self.order, int) or isinstance(self.order, bool) or self.order < 1:
            raise TableauError(f"{where}: order must be a positive int, got {self.order!r}")
        if self.order > MAX_VERIFIED_ORDER:
            raise TableauError(f"{where}: order {self.order} exceeds {MAX_VERIFIED_ORDER}, the largest verified")
        if self.b_hat is None:
            if self.embedded_order is not None:
                raise TableauError(f"{where}: embedded_order is given but b_hat is not; give both or neither")
        else:
            if self.embedded_order is None:
                object.__setattr__(self, "embedded_order", self.order - 1)
            emb = self.embedded_order
            if not isinstance(emb, int) or isinstance(emb, bool) or not 1 <= emb < self.order:
                raise TableauError(
                    f"{where}: embedded_order must be an int with 1 <= embedded_order < order ({self.order}), "
                    f"got {emb!r}; b_hat is the lower-order solution of the pair"
                )
            if self.b_hat == self.b:
                raise TableauError(f"{where}: b_hat equals b, so the error estimate would always be zero")
        full = self.a_matrix()
        for label, weights, order in (("b", self.b, self.order), ("b_hat", self.b_hat, self.embedded_order)):
            if weights is None:
                continue
            for r in order_residuals(full, weights, order):
                if abs(r.residual) > COEFFICIENT_TOL:
                    raise TableauError(
                        f"{where}: declared order {order} for {label} but the order-{r.order} condition for "
                        f"tree {r.label} fails: sum {label}_i Phi_i = {r.value!r}, expected 1/{1 / r.target:g} "
                        f"(residual {r.residual:.3g}); fix the coefficients or declare order {r.order - 1}"
                    )

    # ----------------------------------------------------------------------------------------------
    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def is_adaptive(self) -> bool:
        """True when the method has an embedded pair (an error estimate)."""
        return self.b_hat is not None

    @property
    def is_fsal(self) -> bool:
        """First-same-as-last: the last stage is evaluated at y1, so it is the next step's first."""
        return self.c[-1] == 1.0 and self.a[-1] == self.b[:-1] and self.b[-1] == 0.0

    def a_matrix(self) -> list[list[float]]:
        """The full s x s coefficient matrix as nested lists."""
        s = self.stages
        return [list(row) + [0.0] * (s - i) for i, row in enumerate(self.a)]

    def residuals(self, which: str = "b", max_order: int | None = None):
        """Order-condition residuals of ``b`` (or ``b_hat``) up to ``max_order`` (default: declared)."""
        weights = {"b": self.b, "b_hat": self.b_hat}[which]
        if weights is None:
            raise TableauError(f"tableau {self.name!r} has no {which}")
        order = self.order if which == "b" else self.embedded_order
        return order_residuals(self.a_matrix(), weights, max_order or order)

    def tensors(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None):
        """``(c, A, b, b_hat)`` as tensors; ``A`` is s x s and ``b_hat`` is None without a pair."""
        kw = {"dtype": dtype, "device": device}
        b_hat = None if self.b_hat is None else torch.tensor(self.b_hat, **kw)
        return torch.tensor(self.c, **kw), torch.tensor(self.a_matrix(), **kw), torch.tensor(self.b, **kw), b_hat

    def renamed(self, name: str, description: str = "") -> Tableau:
        """The same coefficients under another name (for named members of a family)."""
        return Tableau(name, self.c, self.a, self.b, self.order, self.b_hat, self.embedded_order, self.b_mid,
                       description or self.description)

    def format(self, precision: int = 6) -> str:
        """The Butcher table as text: c | A rows, then b (and b_hat)."""
        def fmt(x: float) -> str:
            return f"{x:.{precision}g}"

        rows = [[fmt(ci), "|", *map(fmt, row)] for ci, row in zip(self.c, self.a)]
        rows.append(["b", "|", *map(fmt, self.b)])
        if self.b_hat is not None:
            rows.append(["b_hat", "|", *map(fmt, self.b_hat)])
        if self.b_mid is not None:
            rows.append(["b_mid", "|", *map(fmt, self.b_mid)])
        width = max(len(cell) for row in rows for cell in row)
        return "\n".join("  ".join(cell.rjust(width) for cell in row).rstrip() for row in rows)
