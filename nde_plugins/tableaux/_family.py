"""``TableauFamily``: a named, parameterized set of Runge-Kutta methods with a declared domain."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from ._tableau import Tableau, TableauError

#: A domain rule: a human-readable statement (shown in errors) and a predicate on the parameters.
DomainRule = tuple[str, Callable[..., bool]]


@dataclass(frozen=True, eq=False)
class TableauFamily:
    """A function from named parameters to ``Tableau``, with defaults and a validity domain.

    Args:
        name: the method name the family is selected by (``method="rk4_uv"``).
        params: parameter names, in order (``("u", "v")``).
        defaults: a value for every parameter, used for those a caller leaves out.
        build: ``build(**params) -> Tableau``; called only with parameters inside the domain.
        domain: rules as ``(statement, predicate)`` pairs; a member outside any of them is refused
            with an error quoting the statement (``"u != 0"``).
        description: one line for listings.

    ``family(u=0.3)`` (or ``family.member({"u": 0.3})``) returns the validated member, named like
    ``rk2_u0p3``. Members are cached per parameter value, so a training loop that samples
    parameters every batch pays the order-condition check once per distinct value.
    """

    name: str
    params: tuple[str, ...]
    defaults: Mapping[str, float]
    build: Callable[..., Tableau]
    domain: Sequence[DomainRule] = ()
    description: str = ""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))
        missing = [p for p in self.params if p not in self.defaults]
        extra = [p for p in self.defaults if p not in self.params]
        if missing or extra:
            raise TableauError(
                f"family {self.name!r}: defaults must give exactly the parameters {self.params}; "
                f"missing {missing}, unexpected {extra}"
            )
        object.__setattr__(self, "defaults", dict(self.defaults))
        # Fail at registration, not at first use, if the documented default is itself invalid.
        self.member({})

    def resolve(self, params: Mapping[str, float]) -> dict[str, float]:
        """Defaults overlaid with ``params``; unknown names and out-of-domain values raise."""
        unknown = [k for k in params if k not in self.params]
        if unknown:
            raise TableauError(
                f"family {self.name!r} has no parameter {unknown[0]!r}; its parameters are {list(self.params)}"
            )
        values = dict(self.defaults)
        for key, value in params.items():
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise TableauError(f"family {self.name!r}: parameter {key} must be a number, got {value!r}") from None
            if not math.isfinite(value):
                raise TableauError(f"family {self.name!r}: parameter {key} must be finite, got {value}")
            values[key] = value
        for statement, predicate in self.domain:
            if not predicate(**values):
                shown = ", ".join(f"{k}={v:g}" for k, v in values.items())
                raise TableauError(
                    f"family {self.name!r}: parameters ({shown}) break the domain rule '{statement}'; "
                    "choose values inside the family's domain"
                )
        return values

    def member(self, params: Mapping[str, float] | None = None) -> Tableau:
        """The validated tableau for ``params`` (defaults for the rest)."""
        values = self.resolve(params or {})
        key = tuple(values[p] for p in self.params)
        cached = self._cache.get(key)
        if cached is None:
            cached = _build_member(self, key)
            self._cache[key] = cached
        return cached

    def __call__(self, **params: float) -> Tableau:
        return self.member(params)

    def member_name(self, values: Sequence[float]) -> str:
        return self.name + "".join(f"_{p}{v:.6g}" for p, v in zip(self.params, values)).replace("-", "m").replace(
            ".", "p"
        )


def _build_member(family: TableauFamily, key: tuple[float, ...]) -> Tableau:
    values = dict(zip(family.params, key))
    try:
        tableau = family.build(**values)
    except TableauError:
        raise
    except (ZeroDivisionError, ValueError, ArithmeticError) as exc:
        shown = ", ".join(f"{k}={v:g}" for k, v in values.items())
        raise TableauError(f"family {family.name!r}: building the member ({shown}) failed: {exc}") from exc
    if not isinstance(tableau, Tableau):
        raise TableauError(f"family {family.name!r}: build() returned {type(tableau).__name__}, not a Tableau")
    return tableau.renamed(family.member_name(key), tableau.description)
