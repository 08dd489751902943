r"""Reverse-mode (adjoint) derivatives of the EKF covariance recursion.

Given a :class:`~physim.ekf.Rollout` and the cotangents ``P̄_k = ∂J/∂P_k``
(from a cost object, or a single (n, n) array for the final covariance),
:func:`adjoint` returns ∂J/∂(controls, x0, P0, M, Q0, sensor noise, beacon
positions) in one backward sweep, O(N), without re-running the forward pass
(after Benhamou, Bonnabel & Chapdelaine 2024).

Derivation
----------
Write ``⟨A, B⟩ = tr(AᵀB)`` and take all covariance cotangents symmetric.

*Update* (at state x_{k+1}, with H, R evaluated there)::

    S = H P⁻ Hᵀ + R,   K = P⁻ Hᵀ S⁻¹,   A = I - K H,
    P = A P⁻ Aᵀ + K R Kᵀ                                     (Joseph form)

As a function of K the Joseph form is stationary at the optimal gain::

    ∂P/∂K [dK] = -dK (H P⁻ Aᵀ - R Kᵀ) - (·)ᵀ,   H P⁻ Aᵀ - R Kᵀ = H P⁻ - S Kᵀ = 0

because S Kᵀ = H P⁻. So K can be held fixed when differentiating (envelope
theorem)::

    dP = A dP⁻ Aᵀ + K dR Kᵀ - K dH P⁻ Aᵀ - A P⁻ dHᵀ Kᵀ

and with ⟨P̄, dP⟩ = ⟨P̄⁻, dP⁻⟩ + ⟨H̄, dH⟩ + ⟨R̄, dR⟩::

    P̄⁻ = Aᵀ P̄ A,     R̄ = Kᵀ P̄ K  (diagonal part: R is diagonal),
    H̄ = -2 Kᵀ P̄ A P⁻.

The standard form P = A P⁻ equals the Joseph form at the optimal gain, so the
same formulas differentiate it.

*Predict* P⁻ = F P Fᵀ + G M Gᵀ + Q₀::

    P̄_k += Fᵀ P̄⁻ F,   F̄ = 2 P̄⁻ F P_k,   Ḡ = 2 P̄⁻ G M,
    M̄ += Gᵀ P̄⁻ G,    Q̄₀ += P̄⁻.

*Jacobians to states.* F_k = ∂f/∂x(x_k, u_k), G_k = ∂f/∂u(x_k, u_k),
H_{k+1} = ∂h/∂x(x_{k+1}), R_{k+1} = R(x_{k+1}) depend on the nominal
trajectory; their cotangents are pulled back by the models' Jacobian VJPs
(contractions with second derivatives of f and h) into direct state/control
cotangents x̃_k, ũ_k, plus beacon and noise-parameter gradients.

*Trajectory.* x_{k+1} = f(x_k, u_k) gives the costate recursion::

    λ_N = x̃_N,   λ_k = F_kᵀ λ_{k+1} + x̃_k,   ∂J/∂u_k = G_kᵀ λ_{k+1} + ũ_k,

and ∂J/∂x0 = λ_0, ∂J/∂P0 = P̄_0. Every step costs a few small dense
products, so the backward sweep costs about one forward sweep.

Consequence (structural zero): for the unicycle, ω_{N-1} only moves θ_N,
and neither H_N (beacons see the position; bearings depend on θ with a
constant Jacobian) nor F_{N-1}, G_{N-1} depend on it, so ∂J/∂ω_{N-1} = 0 for
any cost of P_N.

Units: gradients carry the units of J divided by those of the parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from .._result import Result
from .._validate import as_float_array, check_returned
from ..errors import InvalidTypeError, ShapeError
from . import _kernels as K
from .compiled import CompiledMotionModel
from .costs import CovarianceCost
from .filter import Rollout

__all__ = ["Gradients", "adjoint"]


@dataclass(frozen=True, eq=False)
class Gradients(Result):
    """Gradients of a covariance cost J.

    Attributes
    ----------
    value : float or None
        J, when the cost was given as a cost object.
    controls : ndarray (N, n_u)
        ∂J/∂u_k.
    x0 : ndarray (n,)
        ∂J/∂x0.
    P0, Q0 : ndarray (n, n)
        ∂J/∂P0, ∂J/∂Q0 (symmetric: dJ = ⟨grad, dA⟩ for symmetric dA).
    M : ndarray (n_u, n_u)
        ∂J/∂M (symmetric).
    beacons : ndarray (n_b, 2) or None
        ∂J/∂(beacon positions) for :class:`~physim.ekf.Beacons`.
    range_std, bearing_std, range_slope : float or None
        ∂J/∂σ₀, ∂J/∂σ_bearing, ∂J/∂(range slope) (``None`` when not measured).
    sensor : dict
        All sensor parameter gradients as returned by the sensor.
    dt : float or None
        ∂J/∂dt (time step, s) for models with a ``dt`` parameter.
    wheelbase : float or None
        ∂J/∂L (m) for the :class:`~physim.ekf.Bicycle`.
    model : dict
        All motion-model parameter gradients by name (built-in models and
        :class:`~physim.ekf.CompiledMotionModel`; empty for numpy user models).
    """

    value: float | None
    controls: np.ndarray
    x0: np.ndarray
    P0: np.ndarray
    M: np.ndarray
    Q0: np.ndarray
    beacons: np.ndarray | None
    range_std: float | None
    bearing_std: float | None
    range_slope: float | None
    sensor: dict
    dt: float | None = None
    wheelbase: float | None = None
    model: dict = field(default_factory=dict)


def _cotangents(rollout: Rollout, cost):
    Pall = rollout.P
    N1, n = Pall.shape[0], Pall.shape[1]
    if isinstance(cost, CovarianceCost) or (hasattr(cost, "value") and hasattr(cost, "gradient")):
        value = float(cost.value(Pall))
        Pbar = as_float_array("cost gradient", cost.gradient(Pall), (N1, n, n), copy=True)
        return value, Pbar
    C = as_float_array("d_cost_d_P", cost, copy=True)
    if C.shape == (n, n):
        Pbar = np.zeros((N1, n, n))
        Pbar[-1] = C
        return None, Pbar
    if C.shape == (N1, n, n):
        return None, C
    raise ShapeError(
        f"d_cost_d_P must have shape ({n}, {n}) (final covariance) or ({N1}, {n}, {n}) (every step), got {C.shape}"
    )


def adjoint(rollout: Rollout, cost: CovarianceCost, *, d_cost_d_states: ArrayLike | None = None) -> Gradients:
    """Gradients of a covariance cost by one backward sweep.

    Parameters
    ----------
    rollout : Rollout
        Result of :func:`~physim.ekf.covariance_rollout`.
    cost : CovarianceCost or array_like
        A cost object (``value(P)``, ``gradient(P)``; see :mod:`physim.ekf.costs`),
        or ∂J/∂P_N as an (n, n) array, or ∂J/∂P_k for all steps as (N+1, n, n).
        Array cotangents are symmetrised.
    d_cost_d_states : array_like, shape (N+1, n), optional
        Additional cotangent of the nominal trajectory (e.g. of a goal penalty
        on the final position), added to the costate recursion.

    Returns
    -------
    Gradients
        ``.controls`` (N, n_u), ``.x0``, ``.P0``, ``.M``, ``.Q0``, ``.beacons``,
        noise-parameter gradients and ``.value`` (cost objects only).
    """
    if not isinstance(rollout, Rollout):
        raise InvalidTypeError(f"rollout must be a physim.ekf.Rollout, got {type(rollout).__name__}")
    value, Pbar = _cotangents(rollout, cost)
    r = rollout
    N, n, nu = r.controls.shape[0], r.states.shape[1], r.controls.shape[1]
    m = r.H.shape[1]
    Fb = np.empty((N, n, n))
    Gb = np.empty((N, n, nu))
    Hb = np.empty((N, m, n))
    Rb = np.empty((N, m))
    P0b = np.empty((n, n))
    Mb = np.zeros((nu, nu))
    Q0b = np.zeros((n, n))
    cov_adjoint = K.cov_adjoint_3x2 if (n, nu) == K.SPECIALISED_SIZES else K.cov_adjoint
    cov_adjoint(r.F, r.G, r.H, r.gains, r.P_prior, r.P, r.M, Pbar, Fb, Gb, Hb, Rb, P0b, Mb, Q0b)
    out = r.sensor.jacobians_vjp(r.states[1:], Hb, Rb)
    sname = type(r.sensor).__name__
    if not (isinstance(out, (tuple, list)) and len(out) == 2 and isinstance(out[1], dict)):
        raise InvalidTypeError(
            f"{sname}.jacobians_vjp must return (state cotangents, dict of parameter gradients)"
        )
    Xb_meas = check_returned(f"{sname}.jacobians_vjp state cotangents", out[0], (N, n))
    sensor_grads = out[1]
    Xb = np.zeros((N + 1, n))
    Xb[1:] = Xb_meas
    if d_cost_d_states is not None:
        Xb += as_float_array("d_cost_d_states", d_cost_d_states, (N + 1, n))
    x0b, Ub, model_grads = _trajectory_adjoint(r.model, r.states, r.controls, r.F, r.G, Fb, Gb, Xb)
    return Gradients(
        value=value, controls=Ub, x0=x0b, P0=P0b, M=Mb, Q0=Q0b,
        beacons=sensor_grads.get("beacons"), range_std=sensor_grads.get("range_std"),
        bearing_std=sensor_grads.get("bearing_std"), range_slope=sensor_grads.get("range_slope"),
        sensor=sensor_grads, dt=model_grads.get("dt"), wheelbase=model_grads.get("wheelbase"),
        model=model_grads,
    )  # fmt: skip


def _trajectory_adjoint(model, X, U, F, G, Fb, Gb, Xb):
    """Costate recursion; returns (∂J/∂x0 (n,), ∂J/∂U (N, n_u), model-parameter gradients by name).

    X (N+1, n), U (N, n_u), F, G: trajectory and model Jacobians; Fb, Gb their
    cotangents; Xb (N+1, n) the direct state cotangents.
    """
    N, n, nu = U.shape[0], X.shape[1], U.shape[1]
    x0b = np.empty(n)
    Ub = np.empty((N, nu))
    if model._kind is not None:
        mpb = np.zeros(2)
        K.model_adjoint(model._kind, model._params(), X, U, F, G, Fb, Gb, Xb, x0b, Ub, mpb)
        return x0b, Ub, dict(zip(model.param_names, mpb.tolist()))
    if isinstance(model, CompiledMotionModel):
        grads = model._adjoint_kernel(X, U, F, G, Fb, Gb, Xb, x0b, Ub)
        return x0b, Ub, grads
    lam = Xb[N].copy()
    name = type(model).__name__
    for k in range(N - 1, -1, -1):
        out = model.jacobians_vjp(X[k], U[k], Fb[k], Gb[k])
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise InvalidTypeError(f"{name}.jacobians_vjp must return a pair (x_bar, u_bar)")
        xb = check_returned(f"{name}.jacobians_vjp x_bar at step {k}", out[0], (n,))
        ub = check_returned(f"{name}.jacobians_vjp u_bar at step {k}", out[1], (nu,))
        Ub[k] = G[k].T @ lam + ub
        lam = F[k].T @ lam + xb + Xb[k]
    x0b[:] = lam
    return x0b, Ub, {}


def trajectory_vjp(rollout: Rollout, d_cost_d_states: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """VJP of the nominal trajectory alone: (∂J/∂x0 (n,), ∂J/∂controls (N, n_u)).

    ``d_cost_d_states`` (N+1, n) is the cotangent of ``rollout.states``.
    """
    r = rollout
    N, n, nu = r.controls.shape[0], r.states.shape[1], r.controls.shape[1]
    Xb = as_float_array("d_cost_d_states", d_cost_d_states, (N + 1, n), copy=True)
    zF, zG = np.zeros((N, n, n)), np.zeros((N, n, nu))
    return _trajectory_adjoint(r.model, r.states, r.controls, r.F, r.G, zF, zG, Xb)[:2]
