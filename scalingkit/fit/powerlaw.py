"""1-d power law with offset: y = E + A x^-alpha (fitted as E + A' (x/x0)^-alpha, x0 = median(x))."""
from __future__ import annotations

import numpy as np

from scalingkit.fit.base import register_form
from scalingkit.fit.curve1d import Curve, Curve1D, offset_guesses

_EXP_MAX = 10.0  # exponents beyond this are not scaling laws; the bound keeps the solver off overflow


# p is (3,) or (B, 3); u is (n,): f gives (n,) or (B, n), jac (n, 3) or (B, n, 3).
def _f(p, u):
    p = np.asarray(p)
    return p[..., 0, None] + p[..., 1, None] * np.exp(-p[..., 2, None] * np.log(u))


def _jac(p, u):
    p = np.asarray(p)
    lu = np.log(u)
    e = np.exp(-p[..., 2, None] * lu)
    return np.stack([np.ones_like(e), e, -p[..., 1, None] * lu * e], axis=-1)


def _starts(u, y, n, lo=0.0):
    """E0 from the data's floor, then (A', alpha) from a log-log line through the points above E0."""
    lu = np.log(u)
    out = []
    for e0 in offset_guesses(y, n, lo):
        above = y > e0
        if above.sum() >= 2 and np.ptp(lu[above]) > 0:
            slope, icpt = np.polyfit(lu[above], np.log(y[above] - e0), 1)
            out.append([e0, np.exp(icpt), min(max(-slope, 1e-3), _EXP_MAX - 1e-3)])
        else:
            out.append([e0, max(np.ptp(y), 1e-6), 0.5])
    return np.array(out)


def _to_public(p, x0):
    p = np.asarray(p, dtype=float)
    A = p[..., 1] * np.exp(p[..., 2] * np.log(x0))  # A' (x/x0)^-alpha = (A' x0^alpha) x^-alpha
    return np.stack([p[..., 0], A, p[..., 2]], axis=-1)


CURVE = Curve(
    form="powerlaw", names=("E", "A", "alpha"), f=_f, jac=_jac,
    lower=(0.0, 0.0, 0.0), upper=(np.inf, np.inf, _EXP_MAX),
    starts=_starts, to_public=_to_public, exponent=2, rates=(0.02, 5.0),
)
GAMMA_BOUNDS = (CURVE.lower[2], CURVE.upper[2])  # the exponent's fitting bounds


class PowerLaw(Curve1D):
    """Power law with offset, Huber/trust-region multi-start fit, wild-bootstrap BCa intervals.

    >>> PowerLaw(bootstrap=1000, seed=1).fit(N, loss).params   # {'E': ..., 'A': ..., 'alpha': ...}
    Use names=("E", "B", "beta") for a fit over D.
    """

    name = "powerlaw"
    curve = CURVE


@register_form("powerlaw")
def predict(result, x):
    E, A, k = (result.params[n] for n in result.state.get("names", CURVE.names))
    return E + np.exp(np.log(A) - k * np.log(x))
