"""1-d exponential alternative to the power law: y = a + b exp(-c x) (fitted on u = x/x0, c' = c x0)."""
from __future__ import annotations

import numpy as np

from scalingkit.fit.base import register_form
from scalingkit.fit.curve1d import Curve, Curve1D, offset_guesses


# p is (3,) or (B, 3); u is (n,): f gives (n,) or (B, n), jac (n, 3) or (B, n, 3).
def _f(p, u):
    p = np.asarray(p)
    return p[..., 0, None] + p[..., 1, None] * np.exp(-p[..., 2, None] * u)


def _jac(p, u):
    p = np.asarray(p)
    e = np.exp(-p[..., 2, None] * u)
    return np.stack([np.ones_like(e), e, -p[..., 1, None] * u * e], axis=-1)


def _starts(u, y, n, lo=0.0):
    """Offsets from the data's floor times decay rates over four decades; b by least squares given both."""
    n_rates = 5
    offsets = offset_guesses(y, max(1, n // n_rates), lo)
    out = []
    for a0 in offsets:
        for c0 in np.geomspace(0.05, 20.0, n_rates):
            e = np.exp(-c0 * u)
            b0 = max(float(np.dot(y - a0, e) / max(np.dot(e, e), 1e-300)), 1e-6)
            out.append([a0, b0, c0])
    return np.array(out[:n])


def _to_public(p, x0):
    p = np.asarray(p, dtype=float)
    return np.stack([p[..., 0], p[..., 1], p[..., 2] / x0], axis=-1)


CURVE = Curve(
    form="exponential", names=("a", "b", "c"), f=_f, jac=_jac,
    lower=(0.0, 0.0, 0.0), upper=(np.inf, np.inf, np.inf),
    starts=_starts, to_public=_to_public, exponent=2,
)


class Exponential(Curve1D):
    """y = a + b exp(-c x): the alternative a power law must beat (MSE ratio in the diagnostics)."""

    name = "exponential"
    curve = CURVE


@register_form("exponential")
def predict(result, x):
    a, b, c = (result.params[n] for n in result.state.get("names", CURVE.names))
    return a + b * np.exp(-c * x)
