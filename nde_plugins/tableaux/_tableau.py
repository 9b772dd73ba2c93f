"""The ``Tableau`` value type: an explicit Runge-Kutta method, validated on construction."""

from __future__ import annotations

import math
import re
import reprlib
import warnings
from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import torch

from ._order import OrderResidual, achieved_order, order_residuals

# Absolute tolerance for "equals" in the structural checks and the order conditions. Published
# coefficients are rationals rounded to double precision (a few ulp of error, amplified by sums of
# up to ~20 products), while a wrong coefficient is off by far more than 1e-10.
COEFFICIENT_TOL = 1e-10

# The largest order we verify; trees up to order 8 number 286, still instant to check.
MAX_VERIFIED_ORDER = 8

# The dense-output order we ask of ``b_mid``: torchdiffeq's interpolant is a quartic through y0, y1,
# f0, f1 and the midpoint value, so it cannot be better than order 4 whatever the midpoint, and a
# dense output one order below the method is the usual standard (Dormand-Prince and Tsitouras 5(4)
# both give 4). A lower order is allowed but warned about.
MAX_USEFUL_DENSE_ORDER = 4

_NAME_RULE = re.compile(r"^[a-z][a-z0-9_]*$")


class TableauError(ValueError):
    """A tableau or family member breaks a rule; the message names the rule and the fix."""


class TableauWarning(UserWarning):
    """A tableau is valid but weaker than it should be (for instance a low-order ``b_mid``)."""


def check_name(name: Any, what: str) -> str:
    """``name`` if it is a valid method name, else ``TableauError`` naming the rule."""
    if not isinstance(name, str) or not _NAME_RULE.match(name):
        raise TableauError(
            f"{what} name {name!r} is invalid: names must match [a-z][a-z0-9_]* "
            "(lower case, digits, underscores) so they can be used as method names and CLI specs"
        )
    return name


# ------------------------------------------------------------------------------------------------
# Numbers. A tableau is a value of Python floats, so anything that would not survive the trip to a
# float unchanged in meaning is refused rather than converted: a tensor that requires grad (its
# gradient would be silently cut), a bool (True is a mistake, not 1.0), a string (parsing belongs
# to the CLI), a multi-element tensor or array (which element was meant?).


class RequiresGradError(TypeError):
    """Raised by ``real_number`` for a tensor that requires grad; callers explain it in their words."""


class NotANumberError(TypeError):
    """Raised by ``real_number`` with a short description of what the value is instead."""


def real_number(value: Any) -> float:
    """``value`` as a float (possibly inf or nan: callers check finiteness in their own words).

    Accepts ``numbers.Real`` except bool (int, float, Fraction, numpy scalars) and 0-dim real
    tensors or arrays without grad. Raises ``RequiresGradError`` for a tensor that requires grad and
    ``NotANumberError`` for anything else.
    """
    if type(value) is float:  # the common case, ahead of the slower abstract-class checks below
        return value
    if isinstance(value, torch.Tensor):
        if value.requires_grad:
            raise RequiresGradError()
        if value.dtype == torch.bool:
            raise NotANumberError("a bool tensor")
        if value.is_complex():
            raise NotANumberError("a complex tensor")
        if value.dim() != 0:
            raise NotANumberError(f"a tensor of shape {tuple(value.shape)}, not a single number")
        return float(value)
    # numpy bools and arrays are recognized by their dtype, so numpy need not be imported here.
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    if isinstance(value, bool) or kind == "b":
        raise NotANumberError(f"a bool ({value!r})")
    if isinstance(value, Real):
        try:
            return float(value)
        except OverflowError:
            raise NotANumberError(f"a number too large for a float ({type(value).__name__})") from None
    if kind in ("i", "u", "f") and getattr(value, "shape", None) == ():
        return float(value)
    if getattr(value, "shape", None) not in (None, ()):
        raise NotANumberError(f"an array of shape {tuple(value.shape)}, not a single number")
    raise NotANumberError(f"{reprlib.repr(value)} (a {type(value).__name__}), not a number")


def _grad_refusal(where: str, label: str) -> TableauError:
    return TableauError(
        f"{where}: {label} is a tensor that requires grad, but a Tableau holds fixed Python floats, so no "
        "gradient could flow through it; pass a detached value (x.detach(), x.item() or x.tolist())"
    )


def _coefficient(label: str, value: Any, where: str) -> float:
    try:
        out = real_number(value)
    except RequiresGradError:
        raise _grad_refusal(where, label) from None
    except NotANumberError as exc:
        raise TableauError(
            f"{where}: {label} is {exc}; coefficients must be real numbers (int, float or a 0-dim tensor)"
        ) from None
    if not math.isfinite(out):
        raise TableauError(f"{where}: {label} is {out}; coefficients must be finite")
    return out


def _is_sequence(values: Any) -> bool:
    """Ordered and iterable: a str would be split into characters and a set has no order."""
    if type(values) in (list, tuple):
        return True
    if isinstance(values, (str, bytes, Set, Mapping)):
        return False
    try:
        iter(values)
    except TypeError:
        return False
    return True


def _vector(name: str, values: Any, where: str) -> tuple[float, ...]:
    """A sequence of finite floats, each entry checked (and named) on its own."""
    if isinstance(values, torch.Tensor):
        if values.requires_grad:
            raise _grad_refusal(where, name)
        if values.dim() != 1:
            raise TableauError(f"{where}: {name} must be 1-d, got a tensor of shape {tuple(values.shape)}")
        values = values.tolist()
    if not _is_sequence(values):
        raise TableauError(
            f"{where}: {name} must be a sequence of numbers (a list, tuple or 1-d tensor), "
            f"got {reprlib.repr(values)} (a {type(values).__name__})"
        )
    return tuple(_coefficient(f"{name}[{i}]", v, where) for i, v in enumerate(values))


def _ragged_rows(a: Any, s: int, where: str) -> tuple[tuple[float, ...], ...]:
    """Normalize ``a`` (ragged strictly-lower rows or a full s x s matrix) to ragged rows.

    Every entry is checked to be a number first, so a typo such as ``[[], ["x"]]`` is reported
    as what it is rather than as a shape problem.
    """
    if isinstance(a, torch.Tensor):
        if a.requires_grad:
            raise _grad_refusal(where, "a")
        if a.dim() != 2:
            raise TableauError(f"{where}: a must be a matrix, got a tensor of shape {tuple(a.shape)}")
        a = a.tolist()
    if not _is_sequence(a):
        raise TableauError(
            f"{where}: a must be a list of rows of numbers (ragged rows or a full square matrix), "
            f"got {reprlib.repr(a)} (a {type(a).__name__})"
        )
    rows = [list(_vector(f"a[{i}]", row, where)) for i, row in enumerate(a)]
    if len(rows) != s:
        raise TableauError(
            f"{where}: a has {len(rows)} rows but c has {s} stages; give one row per stage "
            "(ragged rows of the strictly lower triangle, the first one empty, or a full square matrix)"
        )
    # All rows of length s is the full matrix: ragged row 0 is always empty, so for any s >= 1
    # (a one-stage method's [[0]] included) the two forms cannot be confused.
    if all(len(row) == s for row in rows):
        for i, row in enumerate(rows):
            for j in range(i, s):
                if row[j] != 0.0:
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
    return tuple(tuple(row) for row in rows)


def _off(value: float, target: float) -> bool:
    """True unless ``value`` equals ``target`` within the tolerance; NaN (from overflow) is off."""
    return not abs(value - target) <= COEFFICIENT_TOL


def _order_value(label: str, value: Any, where: str, rule: str) -> int:
    # numpy ints are accepted (and stored as int, so equal tableaux hash alike); bools and floats
    # are not, since order=True or order=4.0 is a mistake rather than an order.
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TableauError(f"{where}: {label} must be {rule}, got {value!r} (a {type(value).__name__})")
    return int(value)


@dataclass(frozen=True)
class Tableau:
    """An explicit Runge-Kutta method (c, A, b), optionally with an embedded pair and dense output.

    Args:
        name: lower-case identifier (``[a-z][a-z0-9_]*``) used to select the method.
        c: stage times as fractions of the step; ``c[0]`` must be 0.
        a: the strictly lower triangle, as ragged rows (row i holds a_i1..a_i,i-1; row 0 empty) or
            as a full square matrix whose diagonal and upper part are zero (``[[0]]`` for one stage).
        b: weights of the propagated solution; ``order`` is its declared order.
        b_hat: weights of the embedded solution used for the error estimate (as papers list them,
            not the difference ``b - b_hat``); ``embedded_order`` is its order and defaults to
            ``order - 1``.
        b_mid: optional dense-output weights at the half step, so that
            ``y(t0 + h/2) ~ y0 + h * sum_i b_mid_i k_i``. Adaptive solves use it for interpolation;
            without it the midpoint weights of the highest order the stages allow are solved for.
            ``dense_order`` is the order it achieves; below ``min(order - 1, 4)`` a
            ``TableauWarning`` is issued.

    Coefficients are real numbers (ints, floats, numpy scalars, tensors without grad); bools,
    strings and tensors that require grad are refused. Construction checks every rule (shapes,
    explicitness, row sums, weight sums and all Butcher order conditions up to the declared orders)
    and raises ``TableauError`` naming the rule broken. Instances are frozen, hashable and compare
    by value; ``tensors()`` gives the coefficients as tensors of any dtype and device.
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
        check_name(self.name, "tableau")
        where = f"tableau {self.name!r}"
        if not isinstance(self.description, str):
            raise TableauError(f"{where}: description must be a str, got {type(self.description).__name__}")
        c = _vector("c", self.c, where)
        s = len(c)
        if s == 0:
            raise TableauError(f"{where}: c is empty; a method needs at least one stage")
        object.__setattr__(self, "c", c)
        object.__setattr__(self, "a", _ragged_rows(self.a, s, where))
        object.__setattr__(self, "b", self._weights("b", self.b, s, where))
        if self.b_hat is not None:
            object.__setattr__(self, "b_hat", self._weights("b_hat", self.b_hat, s, where))
        if self.b_mid is not None:
            object.__setattr__(self, "b_mid", self._weights("b_mid", self.b_mid, s, where))
        self._check_structure(where)
        self._check_orders(where)
        self._check_dense_output(where)

    @staticmethod
    def _weights(name: str, values: Any, s: int, where: str) -> tuple[float, ...]:
        out = _vector(name, values, where)
        if len(out) != s:
            raise TableauError(f"{where}: {name} has {len(out)} entries but c has {s} stages; they must match")
        total, shown, why = (0.5, "1/2", "weights of the half step") if name == "b_mid" else (1.0, "1", "consistency")
        if _off(sum(out), total):
            raise TableauError(f"{where}: sum({name}) = {sum(out)!r} but must be {shown} ({why})")
        return out

    def _check_structure(self, where: str) -> None:
        if self.c[0] != 0.0:
            raise TableauError(
                f"{where}: c[0] = {self.c[0]} but must be 0 (the first stage of an explicit method is at t0)"
            )
        for i, (ci, row) in enumerate(zip(self.c, self.a)):
            if _off(sum(row), ci):
                raise TableauError(
                    f"{where}: row {i} of a sums to {sum(row)!r} but c[{i}] = {ci!r}; each row of a must sum "
                    "to its c (the row-sum condition)"
                )

    def _check_orders(self, where: str) -> None:
        order = _order_value("order", self.order, where, "a positive int")
        if order < 1:
            raise TableauError(f"{where}: order must be a positive int, got {order!r}")
        if order > MAX_VERIFIED_ORDER:
            raise TableauError(f"{where}: order {order} exceeds {MAX_VERIFIED_ORDER}, the largest verified")
        object.__setattr__(self, "order", order)
        if self.b_hat is None:
            if self.embedded_order is not None:
                raise TableauError(f"{where}: embedded_order is given but b_hat is not; give both or neither")
        else:
            rule = f"an int with 1 <= embedded_order < order ({order})"
            emb = order - 1 if self.embedded_order is None else self.embedded_order
            emb = _order_value("embedded_order", emb, where, rule)
            if not 1 <= emb < order:
                raise TableauError(
                    f"{where}: embedded_order must be {rule}, got {emb!r}; b_hat is the lower-order solution "
                    "of the pair"
                )
            object.__setattr__(self, "embedded_order", emb)
            if not any(_off(x, y) for x, y in zip(self.b, self.b_hat)):
                raise TableauError(
                    f"{where}: b_hat equals b (within {COEFFICIENT_TOL:g}), so the error estimate would always "
                    "be zero; give the embedded method's own weights"
                )
        full = self.a_matrix()
        for label, weights, p in (("b", self.b, self.order), ("b_hat", self.b_hat, self.embedded_order)):
            if weights is None:
                continue
            for r in order_residuals(full, weights, p):
                if _off(r.value, r.target):
                    raise TableauError(
                        f"{where}: declared order {p} for {label} but the order-{r.order} condition for "
                        f"tree {r.label} fails: sum {label}_i Phi_i = {r.value!r}, expected 1/{1 / r.target:g} "
                        f"(residual {r.residual:.3g}); fix the coefficients or declare order {r.order - 1}"
                    )

    def _check_dense_output(self, where: str) -> None:
        if self.b_mid is None:
            return
        wanted = min(self.order - 1, MAX_USEFUL_DENSE_ORDER)
        found = self.dense_order
        if found < wanted:
            # stacklevel 4: warn -> _check_dense_output -> __post_init__ -> __init__ -> the caller.
            warnings.warn(
                f"{where}: b_mid gives a dense output of order {found} only (the continuous order conditions "
                f"at theta = 1/2 fail from order {found + 1}), below {wanted} = min(order - 1, "
                f"{MAX_USEFUL_DENSE_ORDER}) for an order-{self.order} method, so interpolated values are less "
                "accurate than the steps; fix b_mid, or omit it so the best midpoint weights the stages "
                "allow are solved for",
                TableauWarning,
                stacklevel=4,
            )

    # ----------------------------------------------------------------------------------------------
    @property
    def stages(self) -> int:
        """Number of stages s, i.e. vector-field evaluations per step (``len(c)``)."""
        return len(self.c)

    @property
    def is_adaptive(self) -> bool:
        """True when the method has an embedded pair (an error estimate)."""
        return self.b_hat is not None

    @property
    def is_fsal(self) -> bool:
        """First-same-as-last: the last stage is evaluated at y1, so it is the next step's first."""
        return self.c[-1] == 1.0 and self.a[-1] == self.b[:-1] and self.b[-1] == 0.0

    @property
    def dense_order(self) -> int | None:
        """Order of the continuous extension ``b_mid`` gives at the half step; None without ``b_mid``.

        The largest p <= ``order`` such that every continuous order condition at theta = 1/2
        (``order_residuals(a, b_mid, p, theta=0.5)``) holds within ``COEFFICIENT_TOL``.
        """
        if self.b_mid is None:
            return None
        return achieved_order(self.a_matrix(), self.b_mid, COEFFICIENT_TOL, limit=self.order, theta=0.5)

    def a_matrix(self) -> list[list[float]]:
        """The full s x s coefficient matrix as nested lists."""
        s = self.stages
        return [list(row) + [0.0] * (s - i) for i, row in enumerate(self.a)]

    def residuals(self, which: str = "b", max_order: int | None = None) -> list[OrderResidual]:
        """Order-condition residuals of ``b``, ``b_hat`` or ``b_mid`` up to ``max_order``.

        ``max_order`` defaults to the declared order (``embedded_order`` for ``b_hat``); the
        residuals of ``b_mid`` are those of the continuous conditions at theta = 1/2.
        Raises ``TableauError`` for another ``which``, a missing weight vector or a
        ``max_order`` that is not a positive int.
        """
        choices = {
            "b": (self.b, self.order), "b_hat": (self.b_hat, self.embedded_order), "b_mid": (self.b_mid, self.order)
        }
        if which not in choices:
            raise TableauError(f"tableau {self.name!r}: residuals: which must be one of {list(choices)}, got {which!r}")
        weights, order = choices[which]
        if weights is None:
            raise TableauError(f"tableau {self.name!r} has no {which}")
        if max_order is not None:
            max_order = _order_value("max_order", max_order, f"tableau {self.name!r}: residuals", "a positive int")
            if max_order < 1:
                raise TableauError(f"tableau {self.name!r}: residuals: max_order must be >= 1, got {max_order}")
        theta = 0.5 if which == "b_mid" else 1.0
        return order_residuals(self.a_matrix(), weights, max_order or order, theta)

    def tensors(self, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None):
        """``(c, A, b, b_hat)`` as tensors; ``A`` is s x s and ``b_hat`` is None without a pair.

        ``dtype`` must be a floating (or complex) dtype: an integer dtype would truncate 1/2 to 0.
        """
        if not isinstance(dtype, torch.dtype) or not (dtype.is_floating_point or dtype.is_complex):
            raise TableauError(
                f"tableau {self.name!r}: tensors() needs a floating dtype such as torch.float64, got {dtype!r}; "
                "an integer dtype would truncate the coefficients"
            )
        kw = {"dtype": dtype, "device": device}
        b_hat = None if self.b_hat is None else torch.tensor(self.b_hat, **kw)
        return torch.tensor(self.c, **kw), torch.tensor(self.a_matrix(), **kw), torch.tensor(self.b, **kw), b_hat

    def renamed(self, name: str, description: str = "") -> Tableau:
        """The same coefficients under another name (for named members of a family).

        ``name`` must follow the same rule as a tableau's name; ``description`` defaults to this
        tableau's. The coefficients were validated when this tableau was built, so they are not
        checked again (and no warning is repeated).
        """
        check_name(name, "tableau")
        if not isinstance(description, str):
            raise TableauError(f"tableau {name!r}: description must be a str, got {type(description).__name__}")
        out = object.__new__(type(self))
        out.__dict__.update(self.__dict__, name=name, description=description or self.description)
        return out

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
