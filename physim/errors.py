"""Exception types raised by physim.

Every type subclasses the builtin a caller would naturally catch
(``ValueError``, ``TypeError``, ``RuntimeError``, ...), so ``except ValueError``
keeps working, while ``except physim.errors.PhysimError`` catches them all.
Messages name the offending argument, its shape, index or value.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PhysimError",
    "InvalidInputError",
    "ShapeError",
    "InvalidTypeError",
    "NonFiniteError",
    "SingularSystemError",
    "ConvergenceError",
    "MeshError",
    "ScenarioError",
]


class PhysimError(Exception):
    """Base class of every physim exception."""


class InvalidInputError(PhysimError, ValueError):
    """An argument has a wrong value (out of range, not SPD, duplicated, ...)."""


class ShapeError(InvalidInputError):
    """An array argument has the wrong shape or number of dimensions."""


class InvalidTypeError(PhysimError, TypeError):
    """An argument has the wrong type or dtype (e.g. float where indices are expected)."""


class NonFiniteError(InvalidInputError):
    """An array argument contains NaN or infinite values."""


class MeshError(InvalidInputError):
    """A mesh is malformed: bad connectivity, degenerate elements, unknown cell type."""


class SingularSystemError(PhysimError, np.linalg.LinAlgError):
    """A linear system is singular (e.g. a spring network with floppy modes)."""


class ConvergenceError(PhysimError, RuntimeError):
    """An iterative solver did not converge; the message gives the final residual."""


class ScenarioError(PhysimError, LookupError):
    """An unknown scenario name was requested, or a scenario script is broken."""
