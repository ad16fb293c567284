"""Sweeps: TOML specs -> cells (spec.py), the cube's growth and the missing-cell plan (plan.py), the learning-rate
search (lrsearch.py), and which missing cells train together (batching.py).

Plans work; trains nothing itself. May import model, train (the batching probe), families and store, and the
shared modules; never run, fit, optimal, plots or cli.
"""
