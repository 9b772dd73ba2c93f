"""Built-in tableaux, registered through the same hook a third-party plugin uses.

Families follow the meta-solver paper (Gusak et al., "Meta-Solver for Neural Ordinary Differential
Equations"): every member of a family has the family's order for any parameter in its domain, so
a parameter can be sampled or tuned during training without leaving the class of consistent
solvers. Embedded pairs carry the weights their authors published.
"""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..tableaux import Tableau, TableauFamily

# ------------------------------------------------------------------------------------------------
# Families (seed 001). Each build function is the closed-form solution of the order conditions.


def _rk2(u: float) -> Tableau:
    return Tableau("rk2", c=[0, u], a=[[], [u]], b=[1 - 1 / (2 * u), 1 / (2 * u)], order=2)


def _rk3(u: float, v: float) -> Tableau:
    b2 = (2 - 3 * v) / (6 * u * (u - v))
    b3 = (2 - 3 * u) / (6 * v * (v - u))
    a32 = v * (v - u) / (u * (2 - 3 * u))
    return Tableau("rk3", c=[0, u, v], a=[[], [u], [v - a32, a32]], b=[1 - b2 - b3, b2, b3], order=3)


def _rk4_u1(u: float) -> Tableau:
    return Tableau(
        "rk4_u1",
        c=[0, 0.5, 0, 1],
        a=[[], [0.5], [-1 / (12 * u), 1 / (12 * u)], [-0.5 - 6 * u, 1.5, 6 * u]],
        b=[1 / 6 - u, 2 / 3, u, 1 / 6],
        order=4,
    )


def _rk4_u2(u: float) -> Tableau:
    return Tableau(
        "rk4_u2",
        c=[0, 0.5, 0.5, 1],
        a=[[], [0.5], [0.5 - 1 / (6 * u), 1 / (6 * u)], [0, 1 - 3 * u, 3 * u]],
        b=[1 / 6, 2 / 3 - u, u, 1 / 6],
        order=4,
    )


def _rk4_u3(u: float) -> Tableau:
    return Tableau(
        "rk4_u3",
        c=[0, 1, 0.5, 1],
        a=[[], [1], [3 / 8, 1 / 8], [1 - 1 / (4 * u), -1 / (12 * u), 1 / (3 * u)]],
        b=[1 / 6, 1 / 6 - u, 2 / 3, u],
        order=4,
    )


def _uv_denominator(u: float, v: float) -> float:
    return 6 * u * v - 4 * u - 4 * v + 3


def _rk4_uv(u: float, v: float) -> Tableau:
    d = _uv_denominator(u, v)
    b1 = (6 * u * v - 2 * u - 2 * v + 1) / (12 * u * v)
    b2 = (2 * v - 1) / (12 * u * (1 - u) * (v - u))
    b3 = (1 - 2 * u) / (12 * v * (1 - v) * (v - u))
    b4 = d / (12 * (1 - u) * (1 - v))
    a32 = v * (v - u) / (2 * u * (1 - 2 * u))
    a42 = (1 - u) * (u + v - 1 - (2 * v - 1) ** 2) / (2 * u * (v - u) * d)
    a43 = (1 - u) * (1 - 2 * u) * (1 - v) / (v * (v - u) * d)
    return Tableau(
        "rk4_uv",
        c=[0, u, v, 1],
        a=[[], [u], [v - a32, a32], [1 - a42 - a43, a42, a43]],
        b=[b1, b2, b3, b4],
        order=4,
    )


# Singular sets are tested with a small margin: at a float within 1e-9 of a pole the coefficients
# are ~1e9 and the member is useless, even if the order conditions still hold to rounding.
_MARGIN = 1e-9


def _away(x: float, *points: float) -> bool:
    return all(abs(x - p) > _MARGIN for p in points)


def _nonzero(name: str):
    return (f"{name} != 0", lambda **p: _away(p[name], 0))


# Clamps: where the meta-solver's code keeps sampled parameters (its ``_make_params_valid``), with
# margin eps. Singular points the code leaves unguarded (rk3 at u = 2/3, rk4_uv where
# 6uv - 4u - 4v + 3 = 0) are stepped over by eps too, so a clamped member can always be built.


def _clip(x: float, low: float, high: float) -> float:
    return min(max(x, low), high)


def _apart(u: float, v: float, eps: float) -> tuple[float, float]:
    """The code's u == v nudge: v moves up by eps, or u down when u is at the upper edge."""
    if abs(u - v) > _MARGIN:
        return u, v
    return (u, u + eps) if u < 1 - eps else (v - eps, v)


def _clamp_rk2(p, eps):
    return {"u": _clip(p["u"], eps, 1.0)}


def _clamp_rk3(p, eps):
    u, v = _apart(_clip(p["u"], eps, 1.0), _clip(p["v"], eps, 1.0), eps)
    if not _away(u, 2 / 3):
        u = 2 / 3 - eps
    return {"u": u, "v": v}


def _clamp_rk4_u(p, eps):
    return {"u": _clip(p["u"], eps, 1.0 - eps)}


def _clamp_rk4_uv(p, eps):
    u = p["u"]
    u = _clip(u, eps, 0.5 - eps) if u < 0.5 else _clip(u, 0.5 + eps, 1.0 - eps)
    u, v = _apart(u, _clip(p["v"], eps, 1.0 - eps), eps)
    if not _away(_uv_denominator(u, v), 0):
        v = v - eps if v - eps > eps and _away(v - eps, u) else v + eps
    return {"u": u, "v": v}


FAMILIES = (
    TableauFamily(
        "rk2", ("u",), {"u": 0.5}, _rk2, [_nonzero("u")],
        "2-stage order-2 family; u=1/2 midpoint, u=1 Heun, u=2/3 Ralston", clamp=_clamp_rk2,
    ),
    TableauFamily(
        "rk3", ("u", "v"), {"u": 0.5, "v": 1.0}, _rk3,
        [
            _nonzero("u"), _nonzero("v"),
            ("u != v", lambda u, v: _away(u, v)), ("u != 2/3", lambda u, v: _away(u, 2 / 3)),
        ],
        "3-stage order-3 family with c = (0, u, v); the default (1/2, 1) is Kutta's method", clamp=_clamp_rk3,
    ),
    TableauFamily(
        "rk4_u1", ("u",), {"u": 1 / 6}, _rk4_u1, [_nonzero("u")],
        "4-stage order-4 family with c = (0, 1/2, 0, 1)", clamp=_clamp_rk4_u,
    ),
    TableauFamily(
        "rk4_u2", ("u",), {"u": 1 / 3}, _rk4_u2, [_nonzero("u")],
        "4-stage order-4 family with c = (0, 1/2, 1/2, 1); u=1/3 is the classic RK4", clamp=_clamp_rk4_u,
    ),
    TableauFamily(
        "rk4_u3", ("u",), {"u": 1 / 6}, _rk4_u3, [_nonzero("u")],
        "4-stage order-4 family with c = (0, 1, 1/2, 1)", clamp=_clamp_rk4_u,
    ),
    TableauFamily(
        "rk4_uv", ("u", "v"), {"u": 1 / 3, "v": 2 / 3}, _rk4_uv,
        [
            ("u not in {0, 1/2, 1}", lambda u, v: _away(u, 0, 0.5, 1)),
            ("v not in {0, 1}", lambda u, v: _away(v, 0, 1)),
            ("u != v", lambda u, v: _away(u, v)),
            ("6uv - 4u - 4v + 3 != 0", lambda u, v: _away(_uv_denominator(u, v), 0)),
        ],
        "4-stage order-4 family with c = (0, u, v, 1); (1/3, 2/3) is the 3/8 rule (torchdiffeq's rk4)",
        clamp=_clamp_rk4_uv,
    ),
)

FAMILIES_BY_NAME = {f.name: f for f in FAMILIES}

# ------------------------------------------------------------------------------------------------
# Named members of the families.

NAMED_MEMBERS = (
    FAMILIES_BY_NAME["rk2"](u=2 / 3).renamed("ralston2", "Ralston's 2nd-order method (rk2 with u = 2/3)"),
    FAMILIES_BY_NAME["rk4_u2"](u=1 / 3).renamed("rk4_classic", "the classic RK4 (rk4_u2 with u = 1/3)"),
    FAMILIES_BY_NAME["rk4_uv"](u=1 / 3, v=2 / 3).renamed("rk38", "Kutta's 3/8 rule (rk4_uv with u = 1/3, v = 2/3)"),
)

NAMED_BY_NAME = {t.name: t for t in NAMED_MEMBERS}

# ------------------------------------------------------------------------------------------------
# Embedded pairs. b is the propagated solution, b_hat the embedded one (local extrapolation).

HEUN_EULER = Tableau(
    "heun_euler", c=[0, 1], a=[[], [1]], b=[0.5, 0.5], b_hat=[1, 0], order=2, embedded_order=1,
    description="Heun's method with an Euler error estimate, 2(1)",
)

BOGACKI_SHAMPINE = Tableau(
    "bogacki_shampine",
    c=[0, 1 / 2, 3 / 4, 1],
    a=[[], [1 / 2], [0, 3 / 4], [2 / 9, 1 / 3, 4 / 9]],
    b=[2 / 9, 1 / 3, 4 / 9, 0],
    b_hat=[7 / 24, 1 / 4, 1 / 3, 1 / 8],
    order=3,
    embedded_order=2,
    description="Bogacki-Shampine 3(2), FSAL",
)

FEHLBERG45 = Tableau(
    "fehlberg45",
    c=[0, 1 / 4, 3 / 8, 12 / 13, 1, 1 / 2],
    a=[
        [],
        [1 / 4],
        [3 / 32, 9 / 32],
        [1932 / 2197, -7200 / 2197, 7296 / 2197],
        [439 / 216, -8, 3680 / 513, -845 / 4104],
        [-8 / 27, 2, -3544 / 2565, 1859 / 4104, -11 / 40],
    ],
    b=[16 / 135, 0, 6656 / 12825, 28561 / 56430, -9 / 50, 2 / 55],
    b_hat=[25 / 216, 0, 1408 / 2565, 2197 / 4104, -1 / 5, 0],
    order=5,
    embedded_order=4,
    description="Runge-Kutta-Fehlberg 4(5), propagating the 5th-order solution",
)

CASH_KARP = Tableau(
    "cash_karp",
    c=[0, 1 / 5, 3 / 10, 3 / 5, 1, 7 / 8],
    a=[
        [],
        [1 / 5],
        [3 / 40, 9 / 40],
        [3 / 10, -9 / 10, 6 / 5],
        [-11 / 54, 5 / 2, -70 / 27, 35 / 27],
        [1631 / 55296, 175 / 512, 575 / 13824, 44275 / 110592, 253 / 4096],
    ],
    b=[37 / 378, 0, 250 / 621, 125 / 594, 0, 512 / 1771],
    b_hat=[2825 / 27648, 0, 18575 / 48384, 13525 / 55296, 277 / 14336, 1 / 4],
    order=5,
    embedded_order=4,
    description="Cash-Karp 5(4)",
)

# The embedded weights are Shampine's variant of the Dormand-Prince estimator, the one torchdiffeq's
# dopri5 uses; with them this tableau reproduces dopri5 step for step. b_mid is the pair's
# continuous extension at theta = 1/2.
DORMAND_PRINCE = Tableau(
    "dormand_prince",
    c=[0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1],
    a=[
        [],
        [1 / 5],
        [3 / 40, 9 / 40],
        [44 / 45, -56 / 15, 32 / 9],
        [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
        [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
        [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
    ],
    b=[35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0],
    b_hat=[1951 / 21600, 0, 22642 / 50085, 451 / 720, -12231 / 42400, 649 / 6300, 1 / 60],
    b_mid=[
        6025192743 / 30085553152 / 2,
        0,
        51252292925 / 65400821598 / 2,
        -2691868925 / 45128329728 / 2,
        187940372067 / 1594534317056 / 2,
        -1776094331 / 19743644256 / 2,
        11237099 / 235043384 / 2,
    ],
    order=5,
    embedded_order=4,
    description="Dormand-Prince 5(4), FSAL, with dense output (same steps as torchdiffeq's dopri5)",
)


def _tsit5_dense(theta: float) -> list[float]:
    """Tsitouras' 4th-order continuous extension: weights b_i(theta)."""
    t = theta
    return [
        -1.0530884977290216 * t * (t - 1.3299890189751412) * (t * t - 1.4364028541716351 * t + 0.7139816917074209),
        0.1017 * t * t * (t * t - 2.1966568338249754 * t + 1.2949852507374631),
        2.490627285651252793 * t * t * (t * t - 2.38535645472061657 * t + 1.57803468208092486),
        -16.54810288924490272 * (t - 1.21712927295533244) * (t - 0.61620406037800089) * t * t,
        47.37952196281928122 * (t - 1.203071208372362603) * (t - 0.658047292653547382) * t * t,
        -34.87065786149660974 * (t - 1.2) * (t - 2 / 3) * t * t,
        2.5 * (t - 1) * (t - 0.6) * t * t,
    ]


_TSIT5_B = [
    0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742,
    -3.290069515436081, 2.324710524099774, 0.0,
]
# Tsitouras lists the error weights b - b_hat; b_hat follows from them.
_TSIT5_ERROR = [
    -0.00178001105222577714, -0.0008164344596567469, 0.007880878010261995, -0.1447110071732629,
    0.5823571654525552, -0.45808210592918697, 1 / 66,
]

TSITOURAS5 = Tableau(
    "tsitouras5",
    c=[0, 0.161, 0.327, 0.9, 0.9800255409045097, 1, 1],
    a=[
        [],
        [0.161],
        [-0.008480655492356989, 0.335480655492357],
        [2.897153057105493, -6.359448489975075, 4.3622954328695815],
        [5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525],
        [5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401, -0.028269050394068383],
        _TSIT5_B[:6],
    ],
    b=_TSIT5_B,
    b_hat=[bi - ei for bi, ei in zip(_TSIT5_B, _TSIT5_ERROR)],
    b_mid=_tsit5_dense(0.5),
    order=5,
    embedded_order=4,
    description="Tsitouras 5(4), FSAL, with dense output",
)

EMBEDDED_PAIRS = (HEUN_EULER, BOGACKI_SHAMPINE, FEHLBERG45, CASH_KARP, DORMAND_PRINCE, TSITOURAS5)


@hookimpl
def register_tableaux(register):
    for obj in (*FAMILIES, *NAMED_MEMBERS, *EMBEDDED_PAIRS):
        register(obj)
