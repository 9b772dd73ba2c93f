"""``TableauFamily``: a named, parameterized set of Runge-Kutta methods with a declared domain."""

from __future__ import annotations

import copy
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._tableau import NotANumberError, RequiresGradError, Tableau, TableauError, check_name, real_number

#: A domain rule: a human-readable statement (shown in errors) and a predicate on the parameters.
DomainRule = tuple[str, Callable[..., bool]]

# Members kept per family (least recently used are evicted first). Training with solver smoothing
# samples a new parameter every batch, so draws almost never repeat: an unbounded cache grew by
# 0.7 KiB (rk2) to 1.1 KiB (rk4_uv) per draw, about 1 GiB per million draws, and bought nothing,
# since a member takes 0.1-0.2 ms to rebuild. 128 still holds every value a run keeps returning
# to (the defaults, named members, a schedule over a handful of fixed values).
MEMBER_CACHE_SIZE = 128


@dataclass(frozen=True, eq=False)
class TableauFamily:
    """A function from named parameters to ``Tableau``, with defaults and a validity domain.

    Args:
        name: the method name the family is selected by (``method="rk4_uv"``); same rule as a
            tableau name.
        params: parameter names, in order (``("u", "v")``); a tuple or list, not a bare string.
        defaults: a value for every parameter, used for those a caller leaves out.
        build: ``build(**params) -> Tableau``; called only with parameters inside the domain.
        domain: rules as ``(statement, predicate)`` pairs; a member outside any of them is refused
            with an error quoting the statement (``"u != 0"``).
        description: one line for listings.
        clamp: optional ``clamp(params, eps) -> params`` bringing sampled parameters into the
            family's usable region with margin ``eps`` (solver smoothing calls it after every draw);
            the result must satisfy the domain rules.

    ``family(u=0.3)`` (or ``family.member({"u": 0.3})``) returns the validated member, named like
    ``rk2_u0p3`` (see ``member_name``). Parameters are plain numbers: a tensor that requires grad is
    refused, because a member is a fixed tableau of floats through which no gradient flows. The
    ``MEMBER_CACHE_SIZE`` most recently used members are cached (thread-safely), so a loop that
    returns to the same values pays the order-condition check once per value, while one that
    samples a new value every batch uses bounded memory.
    """

    name: str
    params: tuple[str, ...]
    defaults: Mapping[str, float]
    build: Callable[..., Tableau]
    domain: Sequence[DomainRule] = ()
    description: str = ""
    clamp: Callable[[Mapping[str, float], float], Mapping[str, float]] | None = None
    _cache: OrderedDict = field(default_factory=OrderedDict, init=False, repr=False, compare=False)
    _lock: Any = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_name(self.name, "family")
        where = f"family {self.name!r}"
        object.__setattr__(self, "params", _param_names(self.params, where))
        if not isinstance(self.defaults, Mapping):
            raise TableauError(
                f"{where}: defaults must be a mapping from parameter name to value, got {type(self.defaults).__name__}"
            )
        missing = [p for p in self.params if p not in self.defaults]
        extra = [p for p in self.defaults if p not in self.params]
        if missing or extra:
            raise TableauError(
                f"{where}: defaults must give exactly the parameters {self.params}; "
                f"missing {missing}, unexpected {extra}"
            )
        object.__setattr__(self, "defaults", {p: self._value(p, self.defaults[p]) for p in self.params})
        if not callable(self.build):
            raise TableauError(
                f"{where}: build must be callable as build(**params) -> Tableau, got {type(self.build).__name__}"
            )
        object.__setattr__(self, "domain", _domain_rules(self.domain, where))
        if not isinstance(self.description, str):
            raise TableauError(f"{where}: description must be a str, got {type(self.description).__name__}")
        if self.clamp is not None and not callable(self.clamp):
            raise TableauError(f"{where}: clamp must be callable as clamp(params, eps) -> params, "
                               f"got {type(self.clamp).__name__}")
        # Fail at registration, not at first use, if the documented default is itself invalid.
        self.member({})

    # A lock cannot be copied or pickled; a copy starts with an empty cache and a lock of its own.
    def __deepcopy__(self, memo: dict) -> TableauFamily:
        # A deep copy is a new family with its own cache and lock (pickling a registered family goes
        # by its name instead: see plugins._reduce_family).
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        clone.__setstate__(copy.deepcopy(self.__getstate__(), memo))
        return clone

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_cache", "_lock")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        object.__setattr__(self, "_cache", OrderedDict())
        object.__setattr__(self, "_lock", threading.Lock())

    def _value(self, key: str, value: Any) -> float:
        """One parameter as a finite float, or a ``TableauError`` saying why not and what to pass."""
        where = f"family {self.name!r}"
        try:
            out = real_number(value)
        except RequiresGradError:
            raise TableauError(
                f"{where}: parameter {key} is a tensor that requires grad, but a member is a fixed tableau of "
                f"Python floats, so no gradient can flow into {key}. Learning {key} this way is not supported: "
                f"the meta-solver paper (Gusak et al.) found it unstable and trains with a fixed or sampled {key} "
                f"instead. Pass a float ({key}.item()) or use a solver schedule that samples {key}"
            ) from None
        except NotANumberError as exc:
            raise TableauError(
                f"{where}: parameter {key} must be a number (int, float or a 0-dim tensor), got {exc}"
            ) from None
        if not math.isfinite(out):
            raise TableauError(f"{where}: parameter {key} must be finite, got {out}")
        # -0.0 == 0.0 shares a cache entry, so it must also share the member's name.
        return out + 0.0

    def resolve(self, params: Mapping[str, Any]) -> dict[str, float]:
        """Defaults overlaid with ``params``, as floats; bad names, values and out-of-domain points raise.

        A value must be a real number: an int, a float, a numpy scalar or a 0-dim tensor without
        grad. Bools, strings, tensors with more than one element and tensors that require grad are
        refused with a ``TableauError`` that says why and what to pass instead, and so is a point
        where a domain predicate raises rather than answering.
        """
        if not isinstance(params, Mapping):
            raise TableauError(
                f"family {self.name!r}: parameters must be a mapping from name to value such as {{'u': 0.3}}, "
                f"got {type(params).__name__}"
            )
        unknown = [k for k in params if k not in self.params]
        if unknown:
            raise TableauError(
                f"family {self.name!r} has no parameter {unknown[0]!r}; its parameters are {list(self.params)}"
            )
        values = dict(self.defaults)
        for key, value in params.items():
            values[key] = self._value(key, value)
        for statement, predicate in self.domain:
            try:
                inside = predicate(**values)
            except Exception as exc:  # a third-party predicate: report it as the family's fault, with context
                raise TableauError(
                    f"family {self.name!r}: the domain rule '{statement}' could not be checked at ({_shown(values)}): "
                    f"its predicate raised {type(exc).__name__}: {exc}; the family's predicate needs fixing"
                ) from exc
            if inside is None:  # almost always a predicate that forgot its return, not a "no"
                raise TableauError(
                    f"family {self.name!r}: the predicate of the domain rule '{statement}' returned None; "
                    "it must return True inside the domain and False outside"
                )
            if not inside:
                raise TableauError(
                    f"family {self.name!r}: parameters ({_shown(values)}) break the domain rule '{statement}'; "
                    "choose values inside the family's domain"
                )
        return values

    def member(self, params: Mapping[str, Any] | None = None) -> Tableau:
        """The validated tableau for ``params`` (defaults for the rest), from the cache when recent."""
        return self.member_with_params(params)[0]

    def member_with_params(self, params: Mapping[str, Any] | None = None) -> tuple[Tableau, dict[str, float]]:
        """``(member(params), resolve(params))`` with one validation: what a solver resolution needs both of."""
        if isinstance(params, Mapping) and len(params) == len(self.params) and all(
            type(params.get(p)) is float for p in self.params
        ):
            # A cached member was validated when it was built: a complete set of plain floats can be
            # looked up before ``resolve`` (whose domain checks a sampling schedule would otherwise
            # pay on every solve of every call).
            key = tuple(params[p] + 0.0 for p in self.params)
            with self._lock:
                cached = self._cache.get(key)
                if cached is not None:
                    self._cache.move_to_end(key)
                    return cached, dict(zip(self.params, key))
        values = self.resolve({} if params is None else params)
        key = tuple(values[p] for p in self.params)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached, values
        # Built outside the lock: building checks the order conditions, and other threads asking
        # for cached members should not wait for it.
        built = _build_member(self, key)
        with self._lock:
            # Another thread may have built the same member meanwhile; keep the first so that equal
            # parameters keep giving the same object.
            cached = self._cache.setdefault(key, built)
            self._cache.move_to_end(key)
            while len(self._cache) > MEMBER_CACHE_SIZE:
                self._cache.popitem(last=False)
        return cached, values

    def __call__(self, **params: Any) -> Tableau:
        return self.member(params)

    def member_name(self, values: Sequence[float]) -> str:
        """The name of the member with parameter ``values`` (in ``params`` order), e.g. ``rk2_u0p5``.

        Valid as a tableau name for every finite value and distinct for distinct values: a value
        is written with 6 significant digits when that reads back as the same float (``0p5``,
        ``m1p25``, ``2e06``, ``1em20``) and with its full ``repr`` digits otherwise
        (``0p3333333333333333``); ``-`` becomes ``m``, ``.`` becomes ``p`` and an exponent's ``+``
        is dropped.
        """
        values = tuple(values)
        if len(values) != len(self.params):
            raise TableauError(
                f"family {self.name!r}: member_name needs one value per parameter {list(self.params)}, "
                f"got {len(values)}"
            )
        return self.name + "".join(f"_{p}{_value_text(v)}" for p, v in zip(self.params, values))


def _value_text(value: float) -> str:
    value = float(value) + 0.0
    if not math.isfinite(value):
        raise TableauError(f"member names exist only for finite parameters, got {value}")
    short = f"{value:.6g}"
    # Either form reads back as exactly this float, so different floats never share a name.
    text = short if float(short) == value else repr(value)
    return text.replace("+", "").replace("-", "m").replace(".", "p")


def _shown(values: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in values.items())


def _param_names(params: Any, where: str) -> tuple[str, ...]:
    # A bare string is iterable, so "uv" would quietly become the two parameters ("u", "v").
    if isinstance(params, str) or not isinstance(params, (tuple, list)):
        raise TableauError(
            f"{where}: params must be a tuple of parameter names such as ('u',), got {params!r}"
        )
    names = tuple(params)
    for p in names:
        # Names appear in member names and CLI specs ("rk4_uv:u=0.3"), so they follow the tableau name rule.
        check_name(p, f"{where}: parameter")
    duplicates = sorted({p for p in names if names.count(p) > 1})
    if duplicates:
        raise TableauError(f"{where}: params names {duplicates} more than once; each parameter is named once")
    return names


def _domain_rules(domain: Any, where: str) -> tuple[DomainRule, ...]:
    if isinstance(domain, (str, Mapping)) or not isinstance(domain, (tuple, list)):
        raise TableauError(
            f"{where}: domain must be a list of (statement, predicate) pairs, got {type(domain).__name__}"
        )
    rules = []
    for i, rule in enumerate(domain):
        if not (isinstance(rule, tuple | list) and len(rule) == 2 and isinstance(rule[0], str) and callable(rule[1])):
            raise TableauError(
                f"{where}: domain[{i}] must be a (statement, predicate) pair such as "
                f"('u != 0', lambda u: u != 0), got {rule!r}"
            )
        rules.append((rule[0], rule[1]))
    return tuple(rules)


def _build_member(family: TableauFamily, key: tuple[float, ...]) -> Tableau:
    values = dict(zip(family.params, key))
    where = f"family {family.name!r}"
    try:
        tableau = family.build(**values)
    except TableauError as exc:
        raise TableauError(
            f"{where}: the member ({_shown(values)}) is not a valid tableau: {exc} "
            "(if these parameters are singular for the family, its domain needs a rule that excludes them)"
        ) from exc
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise TableauError(f"{where}: building the member ({_shown(values)}) failed: {exc}") from exc
    if not isinstance(tableau, Tableau):
        raise TableauError(f"{where}: build() returned {type(tableau).__name__}, not a Tableau")
    return tableau.renamed(family.member_name(key), tableau.description)
