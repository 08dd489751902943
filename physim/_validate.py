"""Input validation helpers used at the public API boundary.

Kernels assume valid input; these helpers check it once at the door and raise
:mod:`physim.errors` exceptions whose messages name the argument, the expected
and actual shape, and the first offending index/value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InvalidInputError, InvalidTypeError, NonFiniteError, ShapeError

__all__ = [
    "as_float_array",
    "as_index_array",
    "check_shape",
    "check_finite",
    "check_positive",
    "check_spd",
    "as_scalar",
]

Shape = Sequence["int | None"]


def _fmt_shape(shape: Shape) -> str:
    return (
        "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    )


def check_shape(name: str, a: np.ndarray, shape: Shape) -> None:
    """Raise :class:`ShapeError` unless ``a.shape`` matches ``shape`` (``None`` = any)."""
    if a.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape)):
        raise ShapeError(f"{name} must have shape {_fmt_shape(shape)}, got {a.shape}")


def check_finite(name: str, a: np.ndarray) -> None:
    """Raise :class:`NonFiniteError` naming the first non-finite entry of ``a``."""
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        idx_s = idx[0] if len(idx) == 1 else idx
        raise NonFiniteError(
            f"{name} contains {int(bad.sum())} non-finite value(s); first at index {idx_s}: {a[idx].item()!r}"
        )


def as_float_array(
    name: str,
    x,
    shape: Shape | None = None,
    *,
    finite: bool = True,
    copy: bool = False,
) -> np.ndarray:
    """Convert ``x`` to a C-contiguous float64 array and validate it.

    Parameters
    ----------
    name : str
        Argument name used in error messages.
    x : array_like
        Input; booleans, integers and floats are accepted, complex and objects are not.
    shape : sequence of int or None, optional
        Expected shape, ``None`` entries are free.
    finite : bool
        Reject NaN/inf.
    copy : bool
        Always return a fresh copy.
    """
    try:
        a = np.asarray(x)
    except Exception as exc:  # ragged lists etc.
        raise InvalidTypeError(f"{name} could not be converted to an array: {exc}") from None
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise InvalidTypeError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    a = (
        np.array(a, dtype=np.float64, order="C", copy=True)
        if copy
        else np.ascontiguousarray(a, dtype=np.float64)
    )
    if shape is not None:
        check_shape(name, a, shape)
    if finite:
        check_finite(name, a)
    return a


def as_index_array(
    name: str,
    x,
    upper: int | None = None,
    shape: Shape | None = None,
) -> np.ndarray:
    """Convert ``x`` to a C-contiguous int64 array of indices in ``[0, upper)``."""
    a = np.asarray(x)
    if a.dtype == object:
        raise InvalidTypeError(f"{name} must be an integer array, got dtype object")
    if a.size == 0:
        a = a.astype(np.int64)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or np.any(a != np.round(a)):
            raise InvalidTypeError(f"{name} must contain integer indices, got non-integer floats")
        a = a.astype(np.int64)
    elif a.dtype.kind == "b":
        raise InvalidTypeError(f"{name} must contain integer indices, got a boolean array")
    elif a.dtype.kind not in "iu":
        raise InvalidTypeError(f"{name} must be an integer array, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.int64)
    if shape is not None:
        check_shape(name, a, shape)
    if a.size and upper is not None:
        bad = (a < 0) | (a >= upper)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            idx_s = idx[0] if len(idx) == 1 else idx
            raise InvalidInputError(
                f"{name} has index {int(a[idx])} at position {idx_s}, outside the valid range [0, {upper})"
            )
    return a


def as_scalar(name: str, x, *, positive: bool = False, nonnegative: bool = False) -> float:
    """Validate a finite real scalar."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise InvalidTypeError(f"{name} must be a real number, got {x!r}") from None
    if not np.isfinite(v):
        raise NonFiniteError(f"{name} must be finite, got {v}")
    if positive and v <= 0:
        raise InvalidInputError(f"{name} must be > 0, got {v}")
    if nonnegative and v < 0:
        raise InvalidInputError(f"{name} must be >= 0, got {v}")
    return v


def check_positive(name: str, a: np.ndarray, *, strict: bool = True) -> None:
    """Raise :class:`InvalidInputError` naming the first entry that is not positive."""
    bad = (a <= 0) if strict else (a < 0)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        idx_s = idx[0] if len(idx) == 1 else idx
        raise InvalidInputError(
            f"{name} must be {'> 0' if strict else '>= 0'}; entry {idx_s} is {a[idx].item()!r}"
        )


def check_spd(name: str, mats: np.ndarray, *, rtol: float = 1e-12) -> None:
    """Check that ``mats`` (..., k, k) are symmetric positive definite.

    Symmetry is checked to a relative tolerance; positive definiteness by the
    smallest eigenvalue being > ``rtol`` times the largest. The message names the
    first offending matrix index and its smallest eigenvalue.
    """
    m = np.asarray(mats, dtype=np.float64)
    if m.ndim < 2 or m.shape[-1] != m.shape[-2]:
        raise ShapeError(f"{name} must be square matrices (..., k, k), got shape {m.shape}")
    flat = m.reshape(-1, m.shape[-1], m.shape[-1])
    scale = np.maximum(np.abs(flat).max(axis=(1, 2)), np.finfo(float).tiny)
    asym = np.abs(flat - flat.transpose(0, 2, 1)).max(axis=(1, 2)) / scale
    bad = np.nonzero(asym > 1e-10)[0]
    if bad.size:
        i = int(bad[0])
        raise InvalidInputError(
            f"{name}{_unravel(i, m.shape[:-2])} is not symmetric (relative asymmetry {asym[i]:.3g})"
        )
    ev = np.linalg.eigvalsh(0.5 * (flat + flat.transpose(0, 2, 1)))
    bad = np.nonzero(ev[:, 0] <= rtol * np.maximum(ev[:, -1], 0) + 0.0)[0]
    if bad.size or np.any(ev[:, -1] <= 0):
        i = int(bad[0]) if bad.size else int(np.argmin(ev[:, -1]))
        raise InvalidInputError(
            f"{name}{_unravel(i, m.shape[:-2])} is not positive definite "
            f"(smallest eigenvalue {ev[i, 0]:.6g}, largest {ev[i, -1]:.6g})"
        )


def _unravel(i: int, shape: tuple) -> str:
    if len(shape) == 0:
        return ""
    idx = np.unravel_index(i, shape)
    return "[" + ", ".join(str(int(j)) for j in idx) + "]"
