"""Optimisation layer shared by every physim solver.

``minimize`` (L-BFGS-B, SLSQP, first-party Adam with minibatches), parameter
transforms with exact derivatives, and ``check_gradient`` (Taylor test).
"""

from .gradcheck import RATE_TOL, REL_TOL, GradientCheck, check_gradient
from .minimize import GTOL_REL, METHODS, STOP_REASONS, MinimizeResult, minimize
from .transforms import Bounded, Identity, Positive, Stack, Transform, transformed

__all__ = [
    "minimize",
    "METHODS",
    "MinimizeResult",
    "STOP_REASONS",
    "GTOL_REL",
    "Transform",
    "Identity",
    "Bounded",
    "Positive",
    "Stack",
    "transformed",
    "check_gradient",
    "GradientCheck",
    "RATE_TOL",
    "REL_TOL",
]
