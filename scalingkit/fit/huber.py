"""Huber loss pieces shared by the forms.

Two conventions from PAPER.md: the 1-d fits use Huber on linear residuals with delta = 1.4826 MAD(y) (a robust
scale of the data; fallback 0.1 std(y) when the MAD is zero), handed to scipy's least_squares(loss="huber");
the 2-d forms use Huber with delta = 1e-3 on log-loss residuals, summed over points, minimised by L-BFGS-B
with the analytic gradient below.
"""
from __future__ import annotations

import numpy as np
from scipy import special, stats


def mad_delta(y) -> float:
    """delta = 1.4826 * MAD(y); 0.1 * std(y) if the MAD vanishes; a tiny positive number if both do."""
    y = np.asarray(y, dtype=float)
    delta = float(stats.median_abs_deviation(y, scale="normal"))  # scale="normal" is the 1.4826 factor
    if not delta > 0:
        delta = 0.1 * float(np.std(y))
    return delta if delta > 0 else 1e-12


def huber_sum(r: np.ndarray, delta: float) -> float:
    """sum_i H_delta(r_i) with H = r^2/2 inside delta and delta (|r| - delta/2) outside (scipy.special.huber)."""
    return float(np.sum(special.huber(delta, r)))


def huber_psi(r: np.ndarray, delta: float) -> np.ndarray:
    """Derivative of H_delta: r clipped to [-delta, delta]."""
    return np.clip(r, -delta, delta)
