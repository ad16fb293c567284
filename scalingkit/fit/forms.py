"""Form name -> estimator class, imported lazily (the surrogates pull in heavier code and live elsewhere)."""
from __future__ import annotations

import importlib

from scalingkit.errors import UserError
from scalingkit.fit.base import Estimator

FORMS = ("powerlaw", "exponential", "chinchilla", "kaplan", "mlp", "kernel")
ONE_D = ("powerlaw", "exponential")
_MODULES = {
    "powerlaw": "scalingkit.fit.powerlaw",
    "exponential": "scalingkit.fit.exponential",
    "chinchilla": "scalingkit.fit.chinchilla",
    "kaplan": "scalingkit.fit.kaplan",
    "mlp": "scalingkit.fit.surrogates",
    "kernel": "scalingkit.fit.surrogates",
}


def check_form(form: str) -> str:
    if form not in FORMS:
        raise UserError(f"unknown form {form!r} (choose from {', '.join(FORMS)})")
    return form


def estimator_class(form: str) -> type[Estimator]:
    """The Estimator subclass whose `name` is `form`, found in the module that implements it."""
    check_form(form)
    try:
        module = importlib.import_module(_MODULES[form])
    except ModuleNotFoundError as exc:
        if exc.name == _MODULES[form]:
            raise UserError(f"the {form} form is not available yet ({_MODULES[form]} is missing)") from None
        raise
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, Estimator) and getattr(obj, "name", None) == form:
            return obj
    raise UserError(f"the {form} form is not available ({_MODULES[form]} defines no estimator named {form!r})")
