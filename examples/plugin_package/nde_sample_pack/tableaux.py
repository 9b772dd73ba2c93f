"""Tableau plugins: a fixed method and a parameterized family of embedded pairs.

``ralston3`` is Ralston's third-order method (the member of the three-stage family with the
smallest truncation-error bound). ``rk2_pair`` is every two-stage second-order method, each with
the Euler step as its embedded first-order solution, so that each member has an error estimate
and runs adaptively.
"""

from nde_plugins import Tableau, TableauFamily, hookimpl

RALSTON3 = Tableau(
    "ralston3",
    c=[0, 1 / 2, 3 / 4],
    a=[[], [1 / 2], [0, 3 / 4]],
    b=[2 / 9, 1 / 3, 4 / 9],
    order=3,
    description="Ralston's third-order method (minimal error bound)",
)


def _rk2_pair(u: float) -> Tableau:
    # The order-2 conditions fix b from c2 = u: b1 + b2 = 1 and b2 * u = 1/2.
    return Tableau(
        "rk2_pair",
        c=[0, u],
        a=[[], [u]],
        b=[1 - 1 / (2 * u), 1 / (2 * u)],
        b_hat=[1, 0],  # the Euler step: its difference from b is the error estimate
        order=2,
        embedded_order=1,
    )


def _clamp(params, eps):
    # Smoothing schedules draw u around its base value; keep a draw inside the domain, eps away from 0.
    return {"u": min(max(params["u"], eps), 1.0)}


RK2_PAIR = TableauFamily(
    "rk2_pair",
    params=("u",),
    defaults={"u": 2 / 3},
    build=_rk2_pair,
    # u <= 1 keeps the second stage inside the step; u near 0 makes b blow up.
    domain=[("0 < u <= 1", lambda u: 0 < u <= 1)],
    description="two-stage second-order methods, c2 = u, with an embedded Euler step",
    clamp=_clamp,
)


@hookimpl
def register_tableaux(register):
    register(RALSTON3)
    register(RK2_PAIR)
