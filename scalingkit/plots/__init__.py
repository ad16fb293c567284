"""Figures: loss curves and L(N, D) (curves.py), fits with their bands, residuals, excess-loss view and the
power-vs-exponential ratios (fits.py), compute-optimal panels and methods side by side (optimal.py), rank plots,
Fig. 3 (ranks.py), exponents against entropy, Fig. 2 right (exponents.py), the shared labels, ticks and layout
checks (style.py), and the one-page HTML report of a store (report.py).

Reads results and the cube: may import store, fit, optimal, families (to rebuild a family for its ranks), sweep
and the shared modules; never train, model, run or cli. matplotlib is imported lazily (Agg).
"""
