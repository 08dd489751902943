"""Input validation helpers used at the public API boundary.

Kernels assume valid input; these helpers check it once at the door and raise
:mod:`physim.errors` exceptions whose messages name the argument, the expected
and actual shape, and the first offending index/value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InvalidInputError, InvalidTypeError, NonFiniteError, ResourceLimitError, ShapeError

__all__ = [
    "as_float_array",
    "as_index_array",
    "check_shape",
    "check_finite",
    "check_positive",
    "check_spd",
    "as_scalar",
    "as_int",
    "as_bool",
    "as_rng",
    "check_memory",
    "check_returned",
    "check_result",
    "available_memory",
    "MAX_INT",
]

#: largest integer accepted for counts and sizes (fits an int64 with room for arithmetic)
MAX_INT = 2**62

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
        if a.size and np.max(np.abs(a)) > MAX_INT:
            raise InvalidInputError(f"{name} has index {np.max(np.abs(a)):g}, outside the valid range")
        a = a.astype(np.int64)
    elif a.dtype.kind == "u" and a.size and int(a.max()) > MAX_INT:
        raise InvalidInputError(f"{name} has index {int(a.max())}, outside the valid range")
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


def _short(x) -> str:
    r = repr(x)
    return r if len(r) <= 80 else r[:77] + "..."


def as_scalar(
    name: str,
    x,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    lower: float | None = None,
    upper: float | None = None,
) -> float:
    """Validate a finite real scalar (a Python or numpy number, not a bool, string or array).

    ``positive``/``nonnegative`` require ``x > 0`` / ``x >= 0``; ``lower``/``upper``
    are inclusive bounds. Raises :class:`InvalidTypeError` for non-numbers,
    :class:`NonFiniteError` for NaN/inf and :class:`InvalidInputError` out of range,
    each naming the argument and the value.
    """
    if isinstance(x, (bool, np.bool_, str, bytes)) or np.ndim(x) != 0:
        raise InvalidTypeError(f"{name} must be a real number, got {_short(x)}")
    if isinstance(x, (complex, np.complexfloating)):
        raise InvalidTypeError(f"{name} must be a real number, got {_short(x)}")
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError):
        raise InvalidTypeError(f"{name} must be a real number, got {_short(x)}") from None
    if not np.isfinite(v):
        raise NonFiniteError(f"{name} must be finite, got {v}")
    if positive and v <= 0:
        raise InvalidInputError(f"{name} must be > 0, got {v}")
    if nonnegative and v < 0:
        raise InvalidInputError(f"{name} must be >= 0, got {v}")
    if lower is not None and v < lower:
        raise InvalidInputError(f"{name} must be >= {lower}, got {v}")
    if upper is not None and v > upper:
        raise InvalidInputError(f"{name} must be <= {upper}, got {v}")
    return v


def as_int(name: str, x, *, lower: int | None = None, upper: int | None = MAX_INT) -> int:
    """Validate an integer count or size in ``[lower, upper]`` (inclusive).

    Python and numpy integers are accepted, and floats with an integer value
    (``1e3``); NaN, inf, fractions, bools, strings, arrays and ``None`` are not.
    The default ``upper`` (:data:`MAX_INT`) keeps the value inside int64.
    """
    if isinstance(x, (bool, np.bool_)) or x is None or np.ndim(x) != 0:
        raise InvalidTypeError(f"{name} must be an integer, got {_short(x)}")
    if isinstance(x, (int, np.integer)):
        v = int(x)
    elif isinstance(x, (float, np.floating)):
        if not np.isfinite(x):
            raise NonFiniteError(f"{name} must be a finite integer, got {x}")
        if float(x) != np.floor(x):
            raise InvalidTypeError(f"{name} must be an integer, got {x}")
        v = int(x)
    else:
        raise InvalidTypeError(f"{name} must be an integer, got {_short(x)}")
    if lower is not None and v < lower:
        raise InvalidInputError(f"{name} must be >= {lower}, got {v}")
    if upper is not None and v > upper:
        raise InvalidInputError(f"{name} must be <= {upper}, got {v}")
    return v


def as_bool(name: str, x) -> bool:
    """Validate a flag: ``True``/``False`` (or numpy bools and the integers 0 and 1)."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)) and int(x) in (0, 1):
        return bool(x)
    raise InvalidTypeError(f"{name} must be True or False, got {_short(x)}")


def as_rng(name: str, seed) -> np.random.Generator:
    """A random generator from ``seed``: None (fresh entropy), an integer >= 0, a
    :class:`numpy.random.SeedSequence` or a :class:`numpy.random.Generator` (used as is)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, (bool, np.bool_)):
        return np.random.default_rng(as_int(name, seed, lower=0, upper=None))
    raise InvalidTypeError(f"{name} must be None, an integer >= 0 or a numpy Generator, got {_short(seed)}")


def check_returned(what: str, value, shape: Shape, *, finite: bool = True) -> np.ndarray:
    """Validate an array returned by user code before compiled code reads it.

    ``what`` names the method (e.g. ``"MySensor.jacobians (H)"``); the array
    must be real (bool/int/float), have exactly ``shape`` (``None`` = any) and,
    if ``finite``, no NaN/inf. Returns it as C-contiguous float64.
    """
    try:
        a = np.asarray(value)
    except Exception:
        raise InvalidTypeError(f"{what} returned something that is not an array: {_short(value)}") from None
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise InvalidTypeError(f"{what} returned an array of dtype {a.dtype}, expected real numbers")
    if a.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, a.shape)):
        raise ShapeError(f"{what} returned shape {a.shape}, expected {_fmt_shape(shape)}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    if finite:
        bad = ~np.isfinite(a)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise NonFiniteError(
                f"{what} returned {int(bad.sum())} non-finite value(s); first at index "
                f"{idx[0] if len(idx) == 1 else idx}: {a[idx].item()!r}"
            )
    return a


def check_result(what: str, cause: str, **values) -> None:
    """Refuse to return a non-finite result computed from finite, validated inputs.

    Inputs that pass the door can still overflow float64 together (a huge target
    squared, a huge modulus times a width). ``values`` maps each result's name to
    the computed value; the first that holds NaN/inf raises
    :class:`~physim.errors.NonFiniteError` naming ``what``, that result, and
    ``cause`` (the arguments that made it overflow, with their values).
    """
    for name, v in values.items():
        a = np.asarray(v)
        if a.dtype.kind in "fc" and not np.all(np.isfinite(a)):
            raise NonFiniteError(f"{what}: {name} is not representable in float64 (overflow); {cause}")


def available_memory() -> int:
    """Bytes of memory available to new allocations (``MemAvailable`` on Linux)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2**62


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover


def check_memory(what: str, nbytes: float) -> None:
    """Refuse work whose arrays would need more than the available memory.

    ``what`` names the arguments that size the work (e.g. ``"n_samples=10**9
    with 9 electrodes"``); raises :class:`~physim.errors.ResourceLimitError`.
    """
    need = float(nbytes)
    if not need <= 0.9 * available_memory():
        raise ResourceLimitError(
            f"{what} would need {_fmt_bytes(need)} of memory, more than the "
            f"{_fmt_bytes(available_memory())} available"
        )


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
    nonfinite = np.nonzero(~np.isfinite(flat).all(axis=(1, 2)))[0]
    if nonfinite.size:
        raise NonFiniteError(
            f"{name}{_unravel(int(nonfinite[0]), m.shape[:-2])} has non-finite entries "
            f"({nonfinite.size} matrix(es))"
        )
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
