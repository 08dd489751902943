"""physim: differentiable physics solvers compiled with Numba.

Subpackages
-----------
physim.lattice   spring networks and mechanical neural networks
physim.eikonal   anisotropic eikonal activation on tetrahedral/triangle meshes (+ ECG)
physim.ekf       EKF localisation with covariance backpropagation, active sensing
physim.optim     minimize(), Adam, parameter transforms, gradient checks
"""

from __future__ import annotations

from . import errors
from .errors import (
    ConvergenceError,
    InvalidInputError,
    PhysimError,
    SingularSystemError,
)

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "errors",
    "PhysimError",
    "InvalidInputError",
    "SingularSystemError",
    "ConvergenceError",
]
