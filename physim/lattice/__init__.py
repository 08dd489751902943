"""Spring-lattice mechanics and mechanical neural networks (Li & Mao 2024).

Networks of central-force springs with pinned dofs (:mod:`.network`), solved
in the linear (small-displacement) or geometrically exact model with one
sparse factorisation per batch (:mod:`.solve`, Numba kernels in
:mod:`._kernels`); gradients of any loss of the displacements with respect to
bond stiffnesses, rest lengths and loads by the in situ adjoint rule
``dL/dk_i = e_i(forward) e_i(adjoint)`` (:mod:`.adjoint`); losses on output
dofs (:mod:`.losses`); training helpers on top of :mod:`physim.optim`
(:mod:`.learning`); classification with the paper's force encoding
(:mod:`.classify`); printable solids of trained networks (:mod:`.export`); the physical
learning rules coupled learning and equilibrium propagation (:mod:`.rules`); ``.vtu`` output and pictures (:mod:`.plotting`).
Units: SI (m, N, N/m).

>>> from physim.lattice import paper_network, solve, adjoint, mse_loss
"""

from .adjoint import LatticeGradient, adjoint
from .classify import (
    PAPER_FORCE_SCALE,
    ClassifierResult,
    confusion_matrix,
    feature_forces,
    train_classifier,
)
from .export import PrintableSolid, check_closed, export_printable, printable_solid
from .learning import (
    PAPER,
    PENGUIN_SPECIES,
    LatticeObjective,
    accuracy,
    load_iris,
    load_penguins,
    paper_network,
    stiffness_from_width,
    stiffness_transform,
    train_adam,
    weight_force,
    width_from_stiffness,
)
from .losses import class_probabilities, classifier_loss, mse_loss, output_values, predict_class
from .network import SpringNetwork, from_mesh, remove_bonds, square_lattice, triangular_lattice
from .plotting import plot_network, write_network
from .rules import (
    RULES,
    RuleObjective,
    RuleUpdate,
    class_targets,
    coupled_learning,
    coupled_learning_limit,
    equilibrium_propagation,
)
from .solve import Equilibrium, FloppyModes, floppy_modes, solve, stiffness_matrix

__all__ = [
    "SpringNetwork",
    "triangular_lattice",
    "square_lattice",
    "from_mesh",
    "remove_bonds",
    "solve",
    "Equilibrium",
    "stiffness_matrix",
    "floppy_modes",
    "FloppyModes",
    "adjoint",
    "LatticeGradient",
    "mse_loss",
    "classifier_loss",
    "class_probabilities",
    "predict_class",
    "output_values",
    "PAPER",
    "stiffness_from_width",
    "width_from_stiffness",
    "stiffness_transform",
    "weight_force",
    "LatticeObjective",
    "train_adam",
    "accuracy",
    "paper_network",
    "load_iris",
    "load_penguins",
    "PENGUIN_SPECIES",
    "PAPER_FORCE_SCALE",
    "feature_forces",
    "train_classifier",
    "ClassifierResult",
    "confusion_matrix",
    "export_printable",
    "printable_solid",
    "PrintableSolid",
    "check_closed",
    "RULES",
    "RuleUpdate",
    "RuleObjective",
    "coupled_learning",
    "coupled_learning_limit",
    "equilibrium_propagation",
    "class_targets",
    "write_network",
    "plot_network",
]
