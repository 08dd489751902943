"""physim.eikonal — anisotropic eikonal activation on tetrahedral and triangle meshes.

Forward: :func:`solve` (fast iterative method, Numba) returns an
:class:`Activation`; backward: :func:`adjoint` pulls dL/dtimes back to the
conduction tensors ``D``, the source times and point-source positions.
Units: mm, ms, velocities in mm/ms; ``D`` is the squared-velocity tensor
(fim-python convention, ``sqrt(∇φᵀ D ∇φ) = 1``).
"""

from .adjoint import EikonalGradient, adjoint
from .conduction import ConductionGradient, conduction_tensor, conduction_tensor_vjp
from .ecg import (
    ECG,
    ActionPotential,
    ECGGradient,
    LeadField,
    LeadSystem,
    correlation_loss,
    intracellular_conductivity,
    lead_correlations,
    lead_field,
    mse_loss,
    simulate_ecg,
    standard_12_lead,
)
from .ecg import adjoint as ecg_adjoint
from .fibers import FiberField, rule_based
from .heart import BiventricularMesh, HeartGeometry, biventricular_mesh, load_biventricular
from .mesh import SimplexMesh, TetMesh, TriMesh, box_tet_mesh, from_meshio, square_tri_mesh
from .solve import Activation, UnreachedPointsWarning, solve
from .twin import (
    CandidateSites,
    FieldVelocities,
    GlobalVelocities,
    PointSites,
    RegionVelocities,
    TwinModel,
    activation_objective,
    ecg_objective,
)

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
    "adjoint",
    "EikonalGradient",
    "rule_based",
    "FiberField",
    "BiventricularMesh",
    "HeartGeometry",
    "biventricular_mesh",
    "load_biventricular",
    "ActionPotential",
    "LeadSystem",
    "LeadField",
    "ECG",
    "ECGGradient",
    "standard_12_lead",
    "intracellular_conductivity",
    "lead_field",
    "simulate_ecg",
    "ecg_adjoint",
    "mse_loss",
    "correlation_loss",
    "lead_correlations",
    "TwinModel",
    "GlobalVelocities",
    "RegionVelocities",
    "FieldVelocities",
    "CandidateSites",
    "PointSites",
    "activation_objective",
    "ecg_objective",
]
