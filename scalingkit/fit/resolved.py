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


TERM_OVER_SCATTER = 2.0  # a term must move the loss by more than twice the residual RMS: what two runs' scatter makes


def term_too_small(result, name: str) -> bool:
    """The fit's term of this exponent moves the loss over the sampled sizes by less than twice the fit's residual
    RMS (fit/chinchilla.record_term_sizes): the term is within the scatter, its exponent not an estimate."""
    moves, rms = result.diagnostics.get("term_moves", {}), result.diagnostics.get("residual_rms")
    return name in moves and rms is not None and not moves[name] > TERM_OVER_SCATTER * rms


def unresolved_exponents(result) -> list[str]:
    """A 2-d law's exponents (alpha, beta) that the data do not pin down: the 95% interval reaches 0 or below (no
    decrease along that axis is established), the estimate sits on a bound of its fit, or its term moves the loss
    over the sampled sizes by less than twice the residual RMS."""
    if result.form not in ("chinchilla", "kaplan"):
        return []
    return [name for name in ("alpha", "beta") if name in result.params and exponent_unresolved(result, name)]


def exponent_unresolved(result, name: str, interval=None) -> bool:
    """One exponent of a 2-d law, by the rules of unresolved_exponents; `interval` replaces the fit's own (the
    compute-optimal parametric method judges by its bootstrap's)."""
    iv = interval if interval is not None else result.intervals.get(name)
    return (name in result.diagnostics.get("at_bound", []) or (iv is not None and iv[0] is not None and iv[0] <= 0)
            or term_too_small(result, name))
