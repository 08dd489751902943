"""physim.cardiac — the cardiac application on top of :mod:`physim.eikonal`.

Heart meshes (:mod:`.heart`), rule-based fibres (:mod:`.fibers`), the
pseudo-ECG and its adjoint (:mod:`.ecg`), digital-twin models and objectives
(:mod:`.twin`) and synthetic twin studies (:mod:`.study`). Everything here is
built from the general eikonal solver's public API (mesh, conduction tensors,
forward, adjoint). Units: mm, ms, mm/ms, mV.
"""

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
    lead_mse_loss,
    simulate_ecg,
    standard_12_lead,
)
from .ecg import adjoint as ecg_adjoint
from .fibers import FiberField, rule_based
from .heart import BiventricularMesh, HeartGeometry, biventricular_mesh, load_biventricular
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
    "lead_mse_loss",
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
