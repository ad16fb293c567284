"""Scaling-law fits: 1-d power laws and their exponential alternative, the Chinchilla and Kaplan 2-d forms,
surrogates, bootstrap uncertainty, and results that save and load. Never imports torch."""
from scalingkit.fit.base import Estimator, FitResult, register_form

__all__ = ["Estimator", "FitResult", "register_form"]
