"""Costs on the EKF covariances, with their derivatives ∂J/∂P_k.

A cost object has ``value(P) -> float`` and ``gradient(P) -> (N+1, n, n)``
where ``P`` (N+1, n, n) is :attr:`physim.ekf.Rollout.P`; ``gradient`` returns
the symmetric ∂J/∂P_k for every step (zeros where J does not depend on P_k).
Any object with these two methods can be passed to :func:`physim.ekf.adjoint`
and :func:`physim.ekf.plan_active_sensing`.

Covariances in m², m·rad, rad² (state units squared).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sl
from numpy.typing import ArrayLike

from .._result import readonly
from .._validate import as_float_array
from ..errors import InvalidInputError, ShapeError, SingularSystemError

__all__ = ["CovarianceCost", "FinalTrace", "PositionTrace", "FinalLogDet", "HorizonSum"]


class CovarianceCost:
    """Base class: a function of one covariance applied at the final step.

    Subclasses implement ``_value1(P (n, n)) -> float`` and
    ``_grad1(P (n, n)) -> (n, n)``; :class:`HorizonSum` applies them at every step.
    """

    def _value1(self, P: np.ndarray) -> float:
        raise NotImplementedError

    def _grad1(self, P: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _values(self, Ps: np.ndarray) -> np.ndarray:
        """φ(P_k) for a stack (K, n, n); subclasses may vectorise."""
        return np.array([self._value1(P) for P in Ps])

    def _grads(self, Ps: np.ndarray) -> np.ndarray:
        """∂φ/∂P_k for a stack (K, n, n); subclasses may vectorise."""
        return np.array([self._grad1(P) for P in Ps])

    @staticmethod
    def _stack(P) -> np.ndarray:
        P = np.asarray(P, dtype=np.float64)
        if P.ndim != 3 or P.shape[1] != P.shape[2]:
            raise ShapeError(f"P must have shape (N+1, n, n), got {P.shape}")
        return P

    def value(self, P: ArrayLike) -> float:
        """J(P) for covariances P (N+1, n, n)."""
        return float(self._value1(self._stack(P)[-1]))

    def gradient(self, P: ArrayLike) -> np.ndarray:
        """∂J/∂P_k (N+1, n, n), symmetric."""
        P = self._stack(P)
        g = np.zeros_like(P)
        g[-1] = self._grad1(P[-1])
        return g


class FinalTrace(CovarianceCost):
    """J = tr(W P_N) (m² for the unweighted trace).

    Parameters
    ----------
    weight : array_like, shape (n, n) or (n,), optional
        Symmetric weight matrix (a vector is its diagonal); identity by default.
    """

    def __init__(self, weight: ArrayLike | None = None) -> None:
        if weight is None:
            self.weight = None
        else:
            w = as_float_array("weight", weight)
            if w.ndim == 1:
                w = np.diag(w)
            if w.ndim != 2 or w.shape[0] != w.shape[1]:
                raise ShapeError(f"weight must have shape (n,) or (n, n), got {w.shape}")
            if not np.allclose(w, w.T):
                raise InvalidInputError("weight must be symmetric")
            self.weight = readonly(w)

    def _w(self, n: int) -> np.ndarray:
        if self.weight is None:
            return np.eye(n)
        if self.weight.shape != (n, n):
            raise ShapeError(f"weight has shape {self.weight.shape}, the state has dimension {n}")
        return self.weight

    def _value1(self, P):
        return float(np.sum(self._w(P.shape[-1]) * P))

    def _grad1(self, P):
        return self._w(P.shape[-1]).copy()

    def _values(self, Ps):
        return np.einsum("ij,kij->k", self._w(Ps.shape[-1]), Ps)

    def _grads(self, Ps):
        return np.broadcast_to(self._w(Ps.shape[-1]), Ps.shape)


class PositionTrace(FinalTrace):
    """J = tr of the position block P_N[:2, :2] (m²)."""

    def __init__(self) -> None:
        super().__init__(None)

    def _w(self, n: int) -> np.ndarray:
        w = np.zeros((n, n))
        w[0, 0] = w[1, 1] = 1.0
        return w


class FinalLogDet(CovarianceCost):
    """J = log det P_N (Cholesky); ∂J/∂P_N = P_N⁻¹ (the gradient is the inverse itself)."""

    @staticmethod
    def _chol(P):
        try:
            return sl.cho_factor(P, lower=True)
        except np.linalg.LinAlgError:
            raise SingularSystemError("covariance is not positive definite; log det undefined") from None

    def _value1(self, P):
        c, _ = self._chol(P)
        return float(2.0 * np.sum(np.log(np.diag(c))))

    def _grad1(self, P):
        g = sl.cho_solve(self._chol(P), np.eye(P.shape[0]))
        return 0.5 * (g + g.T)


class HorizonSum(CovarianceCost):
    """J = Σ_{k=1..N} w_k φ(P_k) for a per-step cost φ (trace by default).

    Parameters
    ----------
    step_cost : CovarianceCost, optional
        Per-step cost φ (its single-covariance function is used); ``FinalTrace()`` by default.
    mean : bool
        Divide by N (average over the horizon) instead of summing.
    """

    def __init__(self, step_cost: CovarianceCost | None = None, mean: bool = False) -> None:
        self.step_cost = FinalTrace() if step_cost is None else step_cost
        if not isinstance(self.step_cost, CovarianceCost) or isinstance(self.step_cost, HorizonSum):
            raise InvalidInputError("step_cost must be a single-step CovarianceCost such as FinalTrace()")
        self.mean = bool(mean)

    def value(self, P: ArrayLike) -> float:
        P = self._stack(P)
        s = float(np.sum(self.step_cost._values(P[1:])))
        return s / (P.shape[0] - 1) if self.mean else s

    def gradient(self, P: ArrayLike) -> np.ndarray:
        P = self._stack(P)
        g = np.zeros_like(P)
        scale = 1.0 / (P.shape[0] - 1) if self.mean else 1.0
        g[1:] = scale * self.step_cost._grads(P[1:])
        return g
