"""Whether a fitted exponent is pinned down by the data, or only by its fit's bounds: an exponent at a bound of its
fit, or whose interval reaches 0 or a bound, is printed as "not resolved", never as a number (the summaries, the
report)."""
import math


def at_fitting_bound(result, name: str) -> bool:
    """The exponent ended on a bound of its fit, or its interval runs to one (0 or the form's upper bound)."""
    if name in result.diagnostics.get("at_bound", []):
        return True
    if result.form != "powerlaw":  # only the power law's exponent bounds (0, 10) are known here
        return False
    value, iv = result.params.get(name), result.intervals.get(name)
    bounds = result.diagnostics.get("exponent_bounds", (0.0, 10.0))
    touches = lambda x: x is not None and any(math.isclose(x, b, abs_tol=1e-6) for b in bounds)  # noqa: E731
    return touches(value) or (iv is not None and (touches(iv[0]) or touches(iv[1])))


def unresolved_exponents(result) -> list[str]:
    """A 2-d law's exponents (alpha, beta) that the data do not pin down: the 95% interval reaches 0 or below (no
    decrease along that axis is established), or the estimate sits on a bound of its fit."""
    if result.form not in ("chinchilla", "kaplan"):
        return []
    out = []
    for name in ("alpha", "beta"):
        iv = result.intervals.get(name)
        if name in result.params and (name in result.diagnostics.get("at_bound", []) or
                                      (iv is not None and iv[0] is not None and iv[0] <= 0)):
            out.append(name)
    return out
