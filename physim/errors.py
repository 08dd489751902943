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
    "CheckpointError",
    "FileError",
    "MissingFileError",
    "ResourceLimitError",
    "ClusterError",
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


class CheckpointError(InvalidInputError):
    """A checkpoint cannot be resumed from: truncated, empty, foreign or malformed
    file, or one written by a different problem (method, size, starting point).
    The message names the file and what is wrong."""


class FileError(PhysimError, OSError):
    """A file could not be written or read (permissions, name too long, disk full, ...);
    the message names the path."""


class MissingFileError(FileError, FileNotFoundError):
    """A file that was asked for does not exist; the message names the path."""


class ResourceLimitError(PhysimError, MemoryError):
    """The requested work would need more memory than the machine has available;
    the message names the argument that sizes it and the memory it would need."""


class ClusterError(PhysimError, RuntimeError):
    """A Dask cluster cannot run physim work: the scheduler is unreachable, no worker
    joined in time, or a worker runs another physim version than the client."""
