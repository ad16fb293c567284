"""Scaling-law fits: 1-d power laws and their exponential alternative, the Chinchilla and Kaplan 2-d forms,
surrogates, bootstrap uncertainty, and results that save and load.

A fit runs on plain arrays (the cube, a CSV of published runs, anything with N, D and loss), so this stage
imports nothing of scalingkit but the shared modules (errors, progress): not the store, not the training side.
Never imports torch at module level (the MLP surrogate imports it inside `fit`).

    from scalingkit.fit import Chinchilla, PowerLaw, fit_slices, load_result
    res = Chinchilla(bootstrap=4000, seed=0).fit(N, D, loss)     # or .fit(df) with columns N, D, loss
    print(res); res.predict(N, D); save_result(res, "store/fits"); load_result(path)

Forms are imported on first use (``scalingkit.fit.Chinchilla`` works, so does ``get_form("kaplan")``).
"""
from scalingkit.fit.base import Estimator, FitResult, register_form
from scalingkit.fit.registry import FORMS
from scalingkit.fit.registry import estimator_class as get_form

_LAZY = {
    "PowerLaw": "scalingkit.fit.powerlaw",
    "Exponential": "scalingkit.fit.exponential",
    "Chinchilla": "scalingkit.fit.chinchilla",
    "Kaplan": "scalingkit.fit.kaplan",
    "Expr": "scalingkit.fit.expr",
    "fit_slices": "scalingkit.fit.slices",
    "FitCollection": "scalingkit.fit.results",
    "load_result": "scalingkit.fit.results",
    "save_result": "scalingkit.fit.results",
    "read_csv_table": "scalingkit.fit.table",
}

__all__ = ["Estimator", "FitResult", "register_form", "FORMS", "get_form", *_LAZY]


def __getattr__(name):
    # Lazy: importing the package stays cheap (the CLI's --help), and forms load when first asked for.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scalingkit.fit' has no attribute {name!r}")
