"""The forms by name: which module implements each, imported on first use (the surrogates pull in heavier code).

One registry that the estimator base (to find a loaded result's predictor), the 1-d forms (each compares itself
with the other) and the command line all read; it imports no form, so no form imports another through it.
"""
from __future__ import annotations

import importlib

from scalingkit.errors import UserError

FORMS = ("powerlaw", "exponential", "chinchilla", "kaplan", "mlp", "kernel", "expr")
ONE_D = ("powerlaw", "exponential")
MODULES = {
    "powerlaw": "scalingkit.fit.powerlaw",
    "exponential": "scalingkit.fit.exponential",
    "chinchilla": "scalingkit.fit.chinchilla",
    "kaplan": "scalingkit.fit.kaplan",
    "mlp": "scalingkit.fit.surrogates",
    "kernel": "scalingkit.fit.surrogates",
    "expr": "scalingkit.fit.expr",  # a law the user writes (lmfit ExpressionModel)
}


def check_form(form: str) -> str:
    if form not in FORMS:
        raise UserError(f"unknown form {form!r} (choose from {', '.join(FORMS)})")
    return form


def load_module(form: str):
    """The module that implements `form` (and registers its predictor on import)."""
    check_form(form)
    try:
        return importlib.import_module(MODULES[form])
    except ModuleNotFoundError as exc:
        if exc.name == MODULES[form]:
            raise UserError(f"the {form} form is not available yet ({MODULES[form]} is missing)") from None
        raise


def estimator_class(form: str) -> type:
    """The Estimator subclass whose `name` is `form`, found in the module that implements it."""
    module = load_module(form)
    for obj in vars(module).values():
        if isinstance(obj, type) and getattr(obj, "name", None) == form and callable(getattr(obj, "fit", None)):
            return obj
    raise UserError(f"the {form} form is not available ({MODULES[form]} defines no estimator named {form!r})")
