"""physim: differentiable physics solvers compiled with Numba.

Subpackages
-----------
physim.lattice   spring networks and mechanical neural networks
physim.eikonal   anisotropic eikonal activation on tetrahedral/triangle meshes
physim.cardiac   heart meshes, fibres, pseudo-ECG and digital twins on physim.eikonal
physim.ekf       EKF localisation with covariance backpropagation, active sensing
physim.optim     minimize(), Adam, parameter transforms, gradient checks
physim.distributed  run_sweep(): independent runs (ensembles, sweeps, Monte-Carlo) on Dask
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

_SUBPACKAGES = ("lattice", "eikonal", "cardiac", "ekf", "optim", "io", "viz", "distributed")


def __getattr__(name: str):
    # subpackages are imported on first use, so `import physim` stays cheap
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'physim' has no attribute {name!r}")


__all__ = [
    "__version__",
    "errors",
    "PhysimError",
    "InvalidInputError",
    "SingularSystemError",
    "ConvergenceError",
    *_SUBPACKAGES,
]
