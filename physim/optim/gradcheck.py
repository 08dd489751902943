"""Taylor test of a gradient (first-order remainder must decay at rate 2).

For a smooth ``f`` with gradient ``g``, along a direction ``d``::

    r(h) = | f(x + h d) - f(x) - h g·d | = O(h²)

so halving ``h`` divides ``r`` by 4: the observed rate log2(r(h)/r(h/2)) is
≈ 2. A wrong gradient leaves an O(h) term and the rate drops to ≈ 1. The
directional derivative ``g·d`` is also compared with a central difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .._result import Result
from .._validate import as_float_array, as_int, as_scalar
from ..errors import InvalidInputError, InvalidTypeError, NonFiniteError, ShapeError

__all__ = ["GradientCheck", "check_gradient", "RATE_TOL", "REL_TOL"]

#: project-wide tolerances used by ``GradientCheck.ok``
RATE_TOL = 1.8
REL_TOL = 1e-4


@dataclass(frozen=True)
class GradientCheck(Result):
    """Outcome of :func:`check_gradient`.

    Attributes
    ----------
    rate : float
        Observed convergence rate of the first-order remainder (median of the
        last three rates over step pairs not dominated by round-off, i.e. the
        asymptotic regime); ≈ 2 when correct, ≈ 1 when the gradient is wrong.
    rel_error : float
        Relative error |g·d − FD| / max(|FD|, |g·d|, tiny) of the directional
        derivative against the best central difference.
    rates : ndarray, shape (n_steps - 1,)
        Rates between consecutive step sizes (NaN where round-off dominates).
    remainders : ndarray, shape (n_steps,)
        First-order remainders r(h).
    steps : ndarray, shape (n_steps,)
        Step sizes h.
    directional : float
        g·d from the supplied gradient.
    fd_directional : float
        Central finite-difference estimate of the directional derivative.
    """

    rate: float
    rel_error: float
    rates: np.ndarray
    remainders: np.ndarray
    steps: np.ndarray
    directional: float
    fd_directional: float

    @property
    def ok(self) -> bool:
        """True when rel_error ≤ ``REL_TOL`` and the rate is ≥ ``RATE_TOL``.

        A NaN rate (every remainder at round-off: the function is locally linear
        and the gradient reproduces it) passes on the directional-derivative test alone.
        """
        rate_ok = bool(np.isnan(self.rate) or self.rate >= RATE_TOL)
        return rate_ok and bool(self.rel_error <= REL_TOL)

    def __str__(self) -> str:
        return (
            f"GradientCheck(rate={self.rate:.3f}, rel_error={self.rel_error:.2e}, "
            f"ok={self.ok}, rates={np.array2string(self.rates, precision=2)})"
        )


def _value(fun, x, args):
    out = fun(x.copy(), *args)
    g = None
    if isinstance(out, tuple):
        if len(out) != 2:
            raise InvalidInputError(
                f"fun must return a value or a (value, gradient) pair, got {len(out)} items"
            )
        out, g = out
        if g is not None:
            g = as_float_array("the gradient returned by fun", g, finite=False)
    try:
        f = float(np.asarray(out, dtype=float).reshape(-1)[0]) if np.size(out) == 1 else None
    except (TypeError, ValueError):
        f = None
    if f is None:
        raise InvalidInputError(f"fun must return a real scalar value, got {out!r:.80}")
    return f, g


def check_gradient(
    fun: Callable,
    x: ArrayLike,
    direction: ArrayLike | None = None,
    *,
    grad: ArrayLike | None = None,
    h0: float | None = None,
    n_steps: int = 12,
    seed: int = 0,
    args: tuple = (),
) -> GradientCheck:
    """Taylor test of ``fun(x) -> (value, gradient)`` at ``x``.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args)`` returning ``(value, grad)`` (or only the value if
        ``grad`` is given).
    x : array_like, shape (n,) or any shape
        Point of the test; the gradient has the same shape.
    direction : array_like, optional
        Perturbation direction (same shape as ``x``; finite and not zero,
        otherwise the test would pass for any gradient); default a random
        unit vector.
    grad : array_like, optional
        Gradient to test, if ``fun`` returns only values.
    h0 : float, optional
        Largest step (> 0); default ``1e-2`` relative to |x| (at least 1e-2).
    n_steps : int
        Number of halvings (>= 3).
    seed : int
        Seed (>= 0) for the random direction.

    Returns
    -------
    GradientCheck

    Raises
    ------
    InvalidInputError, NonFiniteError, ShapeError, InvalidTypeError
        A zero or non-finite direction, non-finite ``x``, value or gradient,
        mismatched shapes, or bad ``h0``/``n_steps``/``seed``.
    """
    if not callable(fun):
        raise InvalidTypeError(f"fun must be callable, got {type(fun).__name__}")
    if not isinstance(args, tuple):
        raise InvalidTypeError(f"args must be a tuple, got {type(args).__name__}")
    x = as_float_array("x", x, copy=True)
    if x.size == 0:
        raise ShapeError("x must have at least one entry")
    n_steps = as_int("n_steps", n_steps, lower=3, upper=60)
    seed = as_int("seed", seed, lower=0)
    if h0 is not None:
        h0 = as_scalar("h0", h0, positive=True)
    f0, g = _value(fun, x, args)
    if not np.isfinite(f0):
        raise NonFiniteError(f"fun(x) is not finite: {f0}")
    if grad is not None:
        g = as_float_array("grad", grad)
    if g is None:
        raise ShapeError("check_gradient needs fun to return (value, grad) or grad=...")
    if g.shape != x.shape:
        raise ShapeError(f"gradient shape {g.shape} differs from x shape {x.shape}")
    if not np.all(np.isfinite(g)):
        raise NonFiniteError(f"the gradient at x is not finite ({int((~np.isfinite(g)).sum())} entries)")
    rng = np.random.default_rng(seed)
    if direction is None:
        d = rng.standard_normal(x.shape)
        d /= np.linalg.norm(d) or 1.0
    else:
        d = as_float_array("direction", direction)
        if d.shape != x.shape:
            raise ShapeError(f"direction shape {d.shape} differs from x shape {x.shape}")
        if not np.any(d != 0):
            raise InvalidInputError("direction is zero: a Taylor test along it passes for any gradient")
    if h0 is None:
        scale = float(np.max(np.abs(x))) if x.size else 1.0
        h0 = 1e-2 * max(scale, 1.0) / max(float(np.max(np.abs(d))), 1e-300)
    steps = h0 * 0.5 ** np.arange(n_steps)
    with np.errstate(over="ignore", invalid="ignore"):
        dd = float(np.sum(g * d))
        xp = x + steps[0] * d
    if not (np.all(np.isfinite(xp)) and np.isfinite(dd)):
        raise NonFiniteError(
            f"h0={h0:g} along a direction of largest entry {np.max(np.abs(d)):g} overflows float64 "
            "(x + h0 * direction or grad . direction is not finite)"
        )
    if np.array_equal(xp, x):
        raise InvalidInputError(
            f"h0={h0:g} is too small: x + h0 * direction rounds to x, so the test has no information"
        )
    fp = np.array([_value(fun, x + h * d, args)[0] for h in steps])
    fm = np.array([_value(fun, x - h * d, args)[0] for h in steps])
    if not (np.all(np.isfinite(fp)) and np.all(np.isfinite(fm))):
        h = float(steps[int(np.argmax(~(np.isfinite(fp) & np.isfinite(fm))))])
        raise NonFiniteError(f"fun(x ± h * direction) is not finite at step h={h:g} (h0={h0:g})")
    rem = np.abs(fp - f0 - steps * dd)
    # round-off floor of the remainder: a few ulps of the function values
    floor = 64 * np.finfo(float).eps * (abs(f0) + np.abs(fp) + steps * abs(dd)) + 1e-300
    valid = rem > floor
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.log2(rem[:-1] / rem[1:])
    rates = np.where(valid[:-1] & valid[1:], rates, np.nan)
    # asymptotic rate: the smallest steps not at round-off (an O(h) error in the
    # gradient only shows once the O(h^2) term has become small)
    finite = rates[np.isfinite(rates)]
    rate = float(np.median(finite[-3:])) if finite.size else float("nan")
    fd = (fp - fm) / (2 * steps)
    err = np.abs(fd - dd)
    k = int(np.argmin(err))
    rel = float(err[k] / max(abs(fd[k]), abs(dd), 1e-300))
    return GradientCheck(
        rate=rate,
        rel_error=rel,
        rates=rates,
        remainders=rem,
        steps=steps,
        directional=dd,
        fd_directional=float(fd[k]),
    )
