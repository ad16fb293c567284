"""The offset of a 1-d curve tied to the data's exact loss floor: bounded below by it, or fixed at it.

A curve here is curve1d.Curve: y = offset + amplitude * g(rate, u), internal parameters (offset, amplitude, rate).
offset "free" keeps all three and raises the offset's lower bound from 0 to the floor; offset "floor" drops the
offset from the fitted parameters (the curve's `free` becomes (1, 2)) and puts the floor back wherever the three
are needed (f, jac, to_public, `Curve.full`). Every fit of the curve (multistart, bootstrap, jackknife, window,
the competing form, the verdict) takes the constrained curve, so they all keep the same constraint.
"""
from __future__ import annotations

import dataclasses

import numpy as np

OFFSETS = ("free", "floor")


def constrained(curve, floor: float | None, offset: str = "free"):
    """`curve` with its offset bounded below by `floor` (offset "free") or fixed at it (offset "floor")."""
    if floor is None:
        return curve
    if offset == "free":
        lower = (max(curve.lower[0], floor), *curve.lower[1:])
        return dataclasses.replace(curve, lower=lower, starts=lambda u, y, n: curve.starts(u, y, n, lo=lower[0]))

    full = dataclasses.replace(curve, fixed_offset=float(floor)).full

    def starts(u, y, n):
        # one nonlinear parameter left: a grid of rates, the amplitude by least squares given each
        rates = np.geomspace(*curve.rates, n)
        G = curve.f(np.c_[np.zeros(n), np.ones(n), rates], u)
        amp = G @ (y - floor) / np.maximum(np.einsum("ij,ij->i", G, G), 1e-300)
        return np.c_[np.maximum(amp, 1e-6), rates]

    return dataclasses.replace(
        curve, f=lambda q, u: curve.f(full(q), u), jac=lambda q, u: curve.jac(full(q), u)[..., 1:],
        lower=curve.lower[1:], upper=curve.upper[1:], starts=starts,
        to_public=lambda q, x0: curve.to_public(full(q), x0), free=(1, 2), fixed_offset=float(floor),
    )
