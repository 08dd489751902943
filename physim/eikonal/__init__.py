"""physim.eikonal — anisotropic eikonal activation on tetrahedral and triangle meshes.

Forward: :func:`solve` (fast iterative method, Numba) returns an
:class:`Activation`; backward: :func:`adjoint` pulls dL/dtimes back to the
conduction tensors ``D``, the source times and point-source positions.
Units: mm, ms, velocities in mm/ms; ``D`` is the squared-velocity tensor
(fim-python convention, ``sqrt(∇φᵀ D ∇φ) = 1``).

This package is a general travel-time solver and imports nothing cardiac; the
heart meshes, fibres, pseudo-ECG and twin models live in :mod:`physim.cardiac`.
"""

from .adjoint import EikonalGradient, adjoint
from .conduction import ConductionGradient, conduction_tensor, conduction_tensor_vjp
from .mesh import (
    DroppedElementsWarning,
    SimplexMesh,
    TetMesh,
    TriMesh,
    box_tet_mesh,
    from_meshio,
    square_tri_mesh,
)
from .solve import Activation, UnitsWarning, UnreachedPointsWarning, solve

__all__ = [
    "TetMesh",
    "TriMesh",
    "SimplexMesh",
    "from_meshio",
    "box_tet_mesh",
    "square_tri_mesh",
    "conduction_tensor",
    "conduction_tensor_vjp",
    "ConductionGradient",
    "solve",
    "Activation",
    "UnreachedPointsWarning",
    "UnitsWarning",
    "DroppedElementsWarning",
    "adjoint",
    "EikonalGradient",
]
