"""physim.cardiac — the cardiac application on top of :mod:`physim.eikonal`.

Heart meshes (:mod:`.heart`), rule-based fibres (:mod:`.fibers`), the
pseudo-ECG and its adjoint (:mod:`.ecg`), digital-twin models (:mod:`.twin`),
their objectives (:mod:`.objectives`) and physiological priors (:mod:`.priors`),
ensembles of fits with calibrated spread (:mod:`.ensemble`), synthetic studies
with a known ground truth (:mod:`.study`) and pictures (:mod:`.plots`). Everything here is
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
    shifted_correlation_loss,
    simulate_ecg,
    standard_12_lead,
)
from .ecg import adjoint as ecg_adjoint
from .ensemble import EnsembleMember, StartDistribution, TwinEnsemble, fit_ensemble
from .fibers import FiberField, rule_based
from .heart import (
    BiventricularMesh,
    HeartGeometry,
    biventricular_mesh,
    endocardial_depth,
    load_biventricular,
    save_biventricular,
    subendocardial_nodes,
)
from .objectives import (
    activation_objective,
    activation_term,
    ecg_objective,
    ecg_term,
    multimodal_objective,
)
from .priors import SiteCountPrior
from .study import GroundTruth, SyntheticStudy, TruthPrior
from .twin import (
    AnisotropicVelocities,
    CandidateSites,
    FieldVelocities,
    GlobalVelocities,
    PointSites,
    RegionVelocities,
    TwinModel,
)

__all__ = [
    "rule_based",
    "FiberField",
    "BiventricularMesh",
    "HeartGeometry",
    "biventricular_mesh",
    "load_biventricular",
    "save_biventricular",
    "endocardial_depth",
    "subendocardial_nodes",
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
    "shifted_correlation_loss",
    "lead_correlations",
    "TwinModel",
    "GlobalVelocities",
    "RegionVelocities",
    "FieldVelocities",
    "CandidateSites",
    "PointSites",
    "AnisotropicVelocities",
    "SiteCountPrior",
    "activation_objective",
    "ecg_objective",
    "ecg_term",
    "activation_term",
    "multimodal_objective",
    "fit_ensemble",
    "TwinEnsemble",
    "EnsembleMember",
    "StartDistribution",
    "GroundTruth",
    "SyntheticStudy",
    "TruthPrior",
]
