"""Parameter transforms with exact derivatives.

A transform maps unconstrained optimisation variables ``z`` to physical
parameters ``x = forward(z)``. Optimising ``f(forward(z))`` over ``z`` keeps
``x`` inside its admissible set without bound constraints; the chain rule
needs only the vector-Jacobian product ``vjp(z, df/dx) = (dx/dz)^T df/dx``,
which every transform provides exactly (all of them act elementwise, so the
Jacobian is diagonal).

``Bounded(lower, upper, beta)`` is the scaled sigmoid used to keep spring
stiffness inside its printable range (x = lower + (upper - lower) σ(β z));
``Positive()`` is softplus (x = log(1 + e^z)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._result import readonly
from .._validate import as_float_array, as_int, as_scalar
from ..errors import InvalidInputError, InvalidTypeError, ShapeError

__all__ = ["Transform", "Identity", "Bounded", "Positive", "Stack", "transformed"]


def _sigmoid(t: np.ndarray) -> np.ndarray:
    # numerically stable logistic function
    out = np.empty_like(t)
    pos = t >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-t[pos]))
    e = np.exp(t[~pos])
    out[~pos] = e / (1.0 + e)
    return out


class Transform:
    """Interface: elementwise map z -> x with ``forward``, ``inverse`` and ``vjp``."""

    def forward(self, z: ArrayLike) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def inverse(self, x: ArrayLike) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def vjp(self, z: ArrayLike, dx: ArrayLike) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, z: ArrayLike) -> np.ndarray:
        return self.forward(z)


def _arg(name: str, a, like=None) -> np.ndarray:
    """A finite float64 copy of a transform argument, checked to broadcast against ``like``."""
    a = as_float_array(name, a, copy=True)
    if like is not None:
        try:
            np.broadcast_shapes(a.shape, like.shape)
        except ValueError:
            raise ShapeError(f"{name} of shape {a.shape} does not match shape {like.shape}") from None
    return a


class Identity(Transform):
    """x = z."""

    def forward(self, z: ArrayLike) -> NDArray[np.float64]:
        return _arg("z", z)

    def inverse(self, x: ArrayLike) -> NDArray[np.float64]:
        return _arg("x", x)

    def vjp(self, z: ArrayLike, dx: ArrayLike) -> NDArray[np.float64]:
        z = _arg("z", z)
        return _arg("dx", dx, z)

    def __repr__(self) -> str:
        return "Identity()"


@dataclass(frozen=True, eq=False)
class Bounded(Transform):
    """Scaled sigmoid: ``x = lower + (upper - lower) * sigmoid(beta * z)``.

    Parameters
    ----------
    lower, upper : float or ndarray
        Bounds (broadcast against ``z``), ``lower < upper`` elementwise.
    beta : float
        Steepness; larger values make the map closer to a hard clip.
    """

    lower: float | np.ndarray
    upper: float | np.ndarray
    beta: float = 1.0

    def __post_init__(self):
        lo = as_float_array("lower", self.lower)
        hi = as_float_array("upper", self.upper)
        try:
            shape = np.broadcast_shapes(lo.shape, hi.shape)
        except ValueError:
            raise ShapeError(
                f"lower {lo.shape} and upper {hi.shape} must have broadcastable shapes"
            ) from None
        lo_b, hi_b = np.broadcast_to(lo, shape).ravel(), np.broadcast_to(hi, shape).ravel()
        if np.any(lo_b >= hi_b):
            i = int(np.argmax(lo_b >= hi_b))
            raise InvalidInputError(
                f"Bounded needs lower < upper; entry {i} has lower={lo_b[i]} and upper={hi_b[i]}"
            )
        if not np.all(np.isfinite(hi_b - lo_b)):
            raise InvalidInputError("Bounded needs upper - lower to be finite (the range overflows float64)")
        object.__setattr__(self, "lower", readonly(lo))
        object.__setattr__(self, "upper", readonly(hi))
        object.__setattr__(self, "beta", as_scalar("beta", self.beta, positive=True))

    def __repr__(self) -> str:
        def side(a):
            return f"{float(a):.6g}" if a.ndim == 0 else f"array{a.shape}"

        return f"Bounded(lower={side(self.lower)}, upper={side(self.upper)}, beta={self.beta:.6g})"

    def forward(self, z: ArrayLike) -> NDArray[np.float64]:
        z = _arg("z", z, self.lower)
        return self.lower + (self.upper - self.lower) * _sigmoid(np.atleast_1d(self.beta * z)).reshape(
            z.shape
        )

    def inverse(self, x: ArrayLike) -> NDArray[np.float64]:
        x = _arg("x", x, self.lower)
        s = (x - self.lower) / (self.upper - self.lower)
        if np.any((s <= 0) | (s >= 1)) or not np.all(np.isfinite(s)):
            bad = int(np.argmax(((s <= 0) | (s >= 1) | ~np.isfinite(s)).ravel()))
            raise InvalidInputError(
                f"Bounded.inverse: x must lie strictly inside (lower, upper); entry {bad} is "
                f"{np.ravel(x)[bad] if np.ndim(x) else float(x)}"
            )
        return (np.log(s) - np.log1p(-s)) / self.beta

    def vjp(self, z: ArrayLike, dx: ArrayLike) -> NDArray[np.float64]:
        z = _arg("z", z, self.lower)
        dx = _arg("dx", dx, z)
        s = _sigmoid(np.atleast_1d(self.beta * z)).reshape(z.shape)
        return dx * (self.upper - self.lower) * self.beta * s * (1.0 - s)


class Positive(Transform):
    """Softplus: ``x = log(1 + exp(z))`` (x > 0)."""

    def forward(self, z: ArrayLike) -> NDArray[np.float64]:
        return np.logaddexp(0.0, _arg("z", z))

    def inverse(self, x: ArrayLike) -> NDArray[np.float64]:
        x = _arg("x", x)
        if np.any(~(x > 0)):
            bad = int(np.argmax(~(np.ravel(x) > 0)))
            raise InvalidInputError(f"Positive.inverse: x must be > 0; entry {bad} is {np.ravel(x)[bad]}")
        # x + log(1 - exp(-x)), stable for small and large x
        return x + np.log(-np.expm1(-x))

    def vjp(self, z: ArrayLike, dx: ArrayLike) -> NDArray[np.float64]:
        z = _arg("z", z)
        dx = _arg("dx", dx, z)
        return dx * _sigmoid(np.atleast_1d(z)).reshape(z.shape)

    def __repr__(self) -> str:
        return "Positive()"


class Stack(Transform):
    """Concatenate transforms acting on consecutive blocks of a flat vector.

    Parameters
    ----------
    blocks : sequence of (Transform, int)
        Each transform and the length of the block it acts on.

    Example
    -------
    >>> t = Stack([(Bounded(0.1, 2.0), 2), (Identity(), 100)])  # 2 velocities, 100 times
    """

    def __init__(self, blocks: Sequence[tuple[Transform, int]]) -> None:
        out = []
        for i, b in enumerate(blocks):
            if not (isinstance(b, (tuple, list)) and len(b) == 2):
                raise InvalidTypeError(f"Stack blocks[{i}] must be a (Transform, size) pair, got {b!r:.60}")
            t, n = b
            if not isinstance(t, Transform):
                raise InvalidTypeError(f"Stack blocks[{i}][0] must be a Transform, got {type(t).__name__}")
            out.append((t, as_int(f"Stack blocks[{i}] size", n, lower=0)))
        self.blocks = out
        self.size = sum(n for _, n in self.blocks)

    def __repr__(self) -> str:
        return f"Stack({', '.join(f'({t!r}, {n})' for t, n in self.blocks)})"

    def _apply(self, name, v, *others):
        v = _arg("z" if name != "inverse" else "x", v)
        if v.shape != (self.size,):
            raise ShapeError(f"Stack.{name} expects a vector of shape ({self.size},), got {v.shape}")
        out = np.empty(self.size)
        off = 0
        for t, n in self.blocks:
            sl = slice(off, off + n)
            out[sl] = getattr(t, name)(v[sl], *(np.asarray(o, dtype=float)[sl] for o in others))
            off += n
        return out

    def forward(self, z: ArrayLike) -> NDArray[np.float64]:
        return self._apply("forward", z)

    def inverse(self, x: ArrayLike) -> NDArray[np.float64]:
        return self._apply("inverse", x)

    def vjp(self, z: ArrayLike, dx: ArrayLike) -> NDArray[np.float64]:
        return self._apply("vjp", z, dx)


def transformed(fun: Callable, transform: Transform) -> Callable:
    """Compose an objective ``fun(x, *args) -> (f, df/dx)`` with a transform.

    Returns ``fz(z, *args) -> (f(forward(z)), vjp(z, df/dx))``, an objective of
    the unconstrained variables ``z`` with its exact gradient.
    """

    if not callable(fun):
        raise InvalidTypeError(f"fun must be callable, got {type(fun).__name__}")
    if not isinstance(transform, Transform):
        raise InvalidTypeError(f"transform must be a Transform, got {type(transform).__name__}")

    def fz(z, *args):
        x = transform.forward(z)
        f, g = fun(x, *args)
        return f, transform.vjp(z, g)

    fz.transform = transform  # type: ignore[attr-defined]
    return fz
