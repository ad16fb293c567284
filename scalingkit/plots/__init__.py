"""Figures: loss curves and L(N, D) (curves.py), compute-optimal panels (optimal.py), rank plots, Fig. 3
(ranks.py), exponents against entropy, Fig. 2 right (exponents.py).

Reads results and the cube: may import store, fit, optimal, families (to rebuild a family for its ranks), sweep
and the shared modules; never train, model, run or cli. matplotlib is imported lazily (Agg).
"""
