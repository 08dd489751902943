"""EKF covariance rollout along a nominal trajectory, and the EKF on simulated data.

:func:`covariance_rollout` propagates the noise-free (nominal) trajectory
``x_{k+1} = f(x_k, u_k)`` and the EKF covariances along it::

    P⁻_{k+1} = F_k P_k F_kᵀ + G_k M G_kᵀ + Q₀         (predict; F = ∂f/∂x, G = ∂f/∂u)
    S = H P⁻ Hᵀ + R,  K = P⁻ Hᵀ S⁻¹                   (solves, no inverse)
    P_{k+1} = (I - K H) P⁻ (I - K H)ᵀ + K R Kᵀ         (Joseph form, symmetrised)

with ``H``, ``R`` evaluated at ``x_{k+1}``. The gain comes from a Cholesky
factorisation of S in general; for 3 states and 2 controls (both built-in
models) from m scalar updates, K = P⁺ Hᵀ R⁻¹, which needs no m x m
factorisation (R is diagonal; see :mod:`physim.ekf._kernels`). This is the
covariance the EKF would report if it tracked the nominal trajectory, the
quantity active-sensing costs are built on; :func:`physim.ekf.adjoint`
differentiates it.

:func:`run_filter` runs the actual EKF on noisy measurements of a simulated
true trajectory (Monte-Carlo runs), to check that a plan really localises
better (RMSE) and that the filter is consistent (NEES).

Units: m, s, rad (controls in the model's units, e.g. m/s and rad/s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .._result import Result, freeze
from .._validate import as_bool, as_float_array, as_int, as_rng, check_memory, check_returned, check_spd
from ..errors import InvalidInputError, InvalidTypeError, NonFiniteError, ShapeError, SingularSystemError
from . import _kernels as K
from . import _user_kernels as UK
from .compiled import CompiledMeasurementModel, CompiledMotionModel
from .models import MotionModel
from .sensors import Beacons, MeasurementModel

__all__ = ["Rollout", "covariance_rollout", "FilterResult", "run_filter"]


@dataclass(frozen=True, eq=False)
class Rollout(Result):
    """Nominal trajectory and EKF covariances, with what the adjoint needs.

    Attributes
    ----------
    model : MotionModel
    sensor : MeasurementModel
    x0 : ndarray (n,)
    P0 : ndarray (n, n)
    controls : ndarray (N, n_u)
    M : ndarray (n_u, n_u)
        Control (odometry) noise covariance.
    Q0 : ndarray (n, n)
        Additive process noise covariance.
    joseph : bool
        Whether the Joseph form was used for the update.
    states : ndarray (N+1, n)
        Nominal trajectory, ``states[0] = x0``.
    P : ndarray (N+1, n, n)
        Posterior covariances, ``P[0] = P0``, ``P[k]`` after the update at step k.
    P_prior : ndarray (N, n, n)
        Predicted covariances ``P⁻`` before the update at step k+1.
    gains : ndarray (N, n, m)
        Kalman gains.
    F, G : ndarray (N, n, n), (N, n, n_u)
        Model Jacobians along the trajectory.
    H, R : ndarray (N, m, n), (N, m)
        Measurement Jacobians and noise variances at states 1..N.
    """

    model: MotionModel
    sensor: MeasurementModel
    x0: np.ndarray
    P0: np.ndarray
    controls: np.ndarray
    M: np.ndarray
    Q0: np.ndarray
    joseph: bool
    states: np.ndarray
    P: np.ndarray
    P_prior: np.ndarray
    gains: np.ndarray
    F: np.ndarray
    G: np.ndarray
    H: np.ndarray
    R: np.ndarray

    @property
    def trajectory(self) -> np.ndarray:
        """Alias of :attr:`states` (N+1, n)."""
        return self.states

    @property
    def n_steps(self) -> int:
        """Horizon N."""
        return self.controls.shape[0]


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def _check_psd(name: str, A: np.ndarray) -> None:
    scale = max(float(np.abs(A).max()), np.finfo(float).tiny)
    asym = float(np.abs(A - A.T).max()) / scale
    if asym > 1e-10:
        raise InvalidInputError(f"{name} is not symmetric (relative asymmetry {asym:.3g})")
    ev = np.linalg.eigvalsh(0.5 * (A + A.T))
    if ev[0] < -1e-12 * max(ev[-1], 0.0):
        raise InvalidInputError(f"{name} is not positive semi-definite (smallest eigenvalue {ev[0]:.6g})")


def _validate(model, sensor, x0, P0, controls, M, Q0):
    if not isinstance(model, MotionModel):
        raise InvalidTypeError(
            f"model must be a physim.ekf.MotionModel (e.g. Unicycle(dt)), got {type(model).__name__}"
        )
    if not isinstance(sensor, MeasurementModel):
        raise InvalidTypeError(
            f"beacons must be a physim.ekf.MeasurementModel (e.g. Beacons(...)), got {type(sensor).__name__}"
        )
    n = as_int(f"{type(model).__name__}.n_state", model.n_state, lower=2, upper=10**4)
    nu = as_int(f"{type(model).__name__}.n_control", model.n_control, lower=1, upper=10**4)
    m = as_int(f"{type(sensor).__name__}.n_meas", sensor.n_meas, lower=1, upper=10**7)
    x0 = as_float_array("x0", x0, (n,), copy=True)
    P0 = as_float_array("P0", P0, (n, n), copy=True)
    check_spd("P0", P0)
    U = as_float_array("controls", controls, (None, nu), copy=True)
    if U.shape[0] < 1:
        raise ShapeError(f"controls must hold at least one step, got shape {U.shape}")
    N = U.shape[0]
    check_memory(
        f"a rollout of N={N} steps with {n} states and {m} measurements",
        8.0 * N * (4 * n * n + 3 * n * m + 2 * n * nu + 2 * m + n),
    )
    model.check_controls(U)
    M = as_float_array("M", M, (nu, nu), copy=True)
    _check_psd("M", M)
    Q0 = as_float_array("Q0", Q0, (n, n), copy=True)
    _check_psd("Q0", Q0)
    return x0, P0, U, M, Q0


# ---------------------------------------------------------------------------
# rollout
# ---------------------------------------------------------------------------


def _trajectory(model: MotionModel, x0, U):
    """Nominal states (N+1, n) and Jacobians F, G along them."""
    N, n, nu = U.shape[0], model.n_state, model.n_control
    X = np.empty((N + 1, n))
    F = np.empty((N, n, n))
    G = np.empty((N, n, nu))
    if model._kind is not None:
        K.model_rollout(model._kind, model._params(), x0, U, X, F, G)
        return X, F, G
    if isinstance(model, CompiledMotionModel):
        model._rollout_kernel(x0, U, X, F, G)
        return X, F, G
    X[0] = x0
    name = type(model).__name__
    for k in range(N):
        out = model.jacobians(X[k], U[k])
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise InvalidTypeError(f"{name}.jacobians must return a pair (F, G), got {type(out).__name__}")
        F[k] = check_returned(f"{name}.jacobians F at step {k}", out[0], (n, n))
        G[k] = check_returned(f"{name}.jacobians G at step {k}", out[1], (n, nu))
        X[k + 1] = check_returned(f"{name}.step at step {k}", model.step(X[k], U[k]), (n,))
    return X, F, G


def _sensor_jacobians(sensor, X):
    """``(H, Rd)`` at states X (K, n), validated when the sensor is user code."""
    out = sensor.jacobians(X)
    if type(sensor) is Beacons or isinstance(sensor, CompiledMeasurementModel):
        H, Rd = out
    else:  # a user sensor: shapes, dtype and finiteness checked before a kernel reads them
        name = type(sensor).__name__
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise InvalidTypeError(f"{name}.jacobians must return a pair (H, Rd), got {type(out).__name__}")
        K_, n = X.shape
        m = sensor.n_meas
        H = check_returned(f"{name}.jacobians H", out[0], (K_, m, n))
        Rd = check_returned(f"{name}.jacobians Rd", out[1], (K_, m))
        if not np.all(Rd > 0):
            k, a = (int(i) for i in np.argwhere(~(Rd > 0))[0])
            raise InvalidInputError(
                f"{name}.jacobians returned a noise variance Rd[{k}, {a}] = {float(Rd[k, a])!r} that is not > 0"
            )
    return H, Rd


def _cov_forward(F, G, H, Rd, P0, M, Q0, joseph, P, Pm, Kg) -> int:
    """Covariance recursion; the specialised kernel for 3 states / 2 controls, else the generic one.

    A failure of the specialised kernel (a scalar innovation variance ≤ 0 in
    its sequential gain computation) is confirmed by the generic kernel, whose
    test is the Cholesky factorisation of the innovation covariance S.
    """
    if (F.shape[1], G.shape[2]) == K.SPECIALISED_SIZES:
        fail = K.cov_forward_3x2(F, G, H, Rd, P0, M, Q0, joseph, P, Pm, Kg)
        if fail < 0:
            return fail
    return K.cov_forward(F, G, H, Rd, P0, M, Q0, joseph, P, Pm, Kg)


def _rollout(model, sensor, x0, P0, U, M, Q0, joseph=True, check=True) -> Rollout:
    """Rollout on validated arrays (no argument checks)."""
    X, F, G = _trajectory(model, x0, U)
    if check:
        bad = ~np.isfinite(X)
        if bad.any():
            k = int(np.argwhere(bad)[0][0])
            raise InvalidInputError(f"the nominal trajectory is not finite from step {k}")
        sensor.check_states(X[1:])
    H, Rd = _sensor_jacobians(sensor, X[1:])
    # writable C-contiguous float64: the kernels compile a single signature
    H = np.require(H, np.float64, ["C", "W"])
    Rd = np.require(Rd, np.float64, ["C", "W"])
    if check and not np.all(Rd > 0):
        k, a = np.argwhere(~(Rd > 0))[0]
        raise InvalidInputError(f"measurement noise variance R[{k}, {a}] = {Rd[k, a]!r} is not > 0")
    N, n = F.shape[0], F.shape[1]
    m = H.shape[1]
    P = np.empty((N + 1, n, n))
    Pm = np.empty((N, n, n))
    Kg = np.empty((N, n, m))
    fail = _cov_forward(F, G, H, Rd, P0, M, Q0, bool(joseph), P, Pm, Kg)
    if fail >= 0:
        raise SingularSystemError(f"innovation covariance is not positive definite at step {fail + 1}")
    freeze(X, F, G, P, Pm, Kg)  # created here: the Rollout owns them without a copy
    if type(sensor) is Beacons or isinstance(sensor, CompiledMeasurementModel):
        freeze(H, Rd)  # physim's sensors return new arrays (a user sensor's are copied by the Rollout)
    return Rollout(
        model=model, sensor=sensor, x0=x0, P0=P0, controls=U, M=M, Q0=Q0, joseph=bool(joseph),
        states=X, P=P, P_prior=Pm, gains=Kg, F=F, G=G, H=H, R=Rd,
    )  # fmt: skip


def covariance_rollout(model: MotionModel, beacons: MeasurementModel, x0: ArrayLike, P0: ArrayLike, controls: ArrayLike, M: ArrayLike, Q0: ArrayLike, *, joseph: bool = True) -> Rollout:
    """Nominal trajectory and EKF covariances for a control sequence.

    Parameters
    ----------
    model : MotionModel
        Motion model, e.g. ``Unicycle(dt)``.
    beacons : MeasurementModel
        Sensor, e.g. ``Beacons(positions, range_std, bearing_std)``.
    x0 : array_like, shape (n,)
        Initial state (m, m, rad).
    P0 : array_like, shape (n, n)
        Initial covariance (SPD).
    controls : array_like, shape (N, n_u)
        Control sequence u_0..u_{N-1}.
    M : array_like, shape (n_u, n_u)
        Control (odometry) noise covariance (symmetric PSD); process noise is
        ``G M Gᵀ + Q0`` with ``G = ∂f/∂u``.
    Q0 : array_like, shape (n, n)
        Additive process noise covariance (symmetric PSD).
    joseph : bool
        Joseph-form update (default) or the standard form ``(I - K H) P⁻``.

    Returns
    -------
    Rollout
        ``.P`` (N+1, n, n) with ``.P[0] = P0`` and ``.P[k]`` the covariance
        after the update at step k; ``.states`` (N+1, n).

    Raises
    ------
    ShapeError, InvalidInputError, NonFiniteError, InvalidTypeError
        Wrong shapes, non-SPD ``P0``, non-PSD noise, NaN controls, a beacon on
        the trajectory.
    """
    x0, P0, U, M, Q0 = _validate(model, beacons, x0, P0, controls, M, Q0)
    return _rollout(model, beacons, x0, P0, U, M, Q0, joseph=joseph, check=True)


# ---------------------------------------------------------------------------
# EKF on simulated data
# ---------------------------------------------------------------------------


def _wrap(a):
    return np.mod(a + np.pi, 2 * np.pi) - np.pi


def _sqrt_psd(A: np.ndarray) -> np.ndarray:
    w, V = np.linalg.eigh(0.5 * (A + A.T))
    return np.ascontiguousarray(V * np.sqrt(np.clip(w, 0.0, None)))


@dataclass(frozen=True, eq=False)
class FilterResult(Result):
    """Monte-Carlo runs of the EKF on simulated data.

    Attributes
    ----------
    truth : ndarray (R, N+1, n)
        Simulated true states.
    estimates : ndarray (R, N+1, n)
        EKF state estimates (``estimates[:, 0] = x0``).
    covariances : ndarray (R, N+1, n, n)
        EKF covariances.
    measurements : ndarray (R, N, m)
        Noisy measurements taken at steps 1..N.
    """

    truth: np.ndarray
    estimates: np.ndarray
    covariances: np.ndarray
    measurements: np.ndarray

    @property
    def errors(self) -> np.ndarray:
        """Estimation errors (R, N+1, n), heading component wrapped to [-π, π)."""
        e = self.truth - self.estimates
        if e.shape[2] >= 3:
            e[..., 2] = _wrap(e[..., 2])
        return e

    @property
    def position_rmse(self) -> np.ndarray:
        """Position RMSE over the runs at each step (N+1,), m."""
        e = self.errors[..., :2]
        return np.sqrt(np.mean(np.sum(e * e, axis=2), axis=0))

    @property
    def rmse(self) -> float:
        """Position RMSE over runs and steps 1..N, m."""
        e = self.errors[:, 1:, :2]
        return float(np.sqrt(np.mean(np.sum(e * e, axis=2))))

    @property
    def final_rmse(self) -> float:
        """Position RMSE over runs at the final step, m."""
        return float(self.position_rmse[-1])

    @property
    def nees(self) -> np.ndarray:
        """Normalised estimation error squared eᵀ P⁻¹ e (R, N+1) (Cholesky solves)."""
        e = self.errors
        L = np.linalg.cholesky(self.covariances)
        y = np.linalg.solve(L, e[..., None])[..., 0]
        return np.sum(y * y, axis=-1)

    @property
    def mean_nees(self) -> np.ndarray:
        """NEES averaged over runs (N+1,); ≈ n for a consistent filter."""
        return self.nees.mean(axis=0)


def run_filter(
    model: MotionModel,
    beacons: MeasurementModel,
    x0: ArrayLike,
    P0: ArrayLike,
    controls: ArrayLike,
    M: ArrayLike,
    Q0: ArrayLike,
    *,
    n_runs: int = 1,
    seed: int | None = None,
    joseph: bool = True,
) -> FilterResult:
    """Run the EKF on simulated noisy data (Monte-Carlo).

    Each run draws the true initial state from N(x0, P0), drives the truth
    with the commanded controls corrupted by N(0, M) plus additive N(0, Q0)
    process noise, measures it with noise N(0, R(x_true)) and runs the EKF
    from (x0, P0) with the commanded controls. Bearing innovations are wrapped.

    Parameters
    ----------
    model, beacons, x0, P0, controls, M, Q0
        As in :func:`covariance_rollout`.
    n_runs : int
        Number of Monte-Carlo runs R (≥ 1).
    seed : int or numpy.random.Generator, optional
        Randomness of the simulation.
    joseph : bool
        Joseph-form (default) or standard covariance update.

    Returns
    -------
    FilterResult
        Truth, estimates, covariances, measurements; ``.rmse``,
        ``.position_rmse``, ``.nees``.
    """
    x0, P0, U, M, Q0 = _validate(model, beacons, x0, P0, controls, M, Q0)
    n_runs = as_int("n_runs", n_runs, lower=1)
    joseph = as_bool("joseph", joseph)
    N, n, nu, m = U.shape[0], model.n_state, model.n_control, beacons.n_meas
    check_memory(
        f"run_filter with n_runs={n_runs}, N={N} steps",
        8.0 * n_runs * (N + 1) * (3 * n + n * n + 2 * m + nu),
    )
    # the same checks as covariance_rollout on the nominal trajectory (e.g. a beacon on the path)
    Xn = _trajectory(model, x0, U)[0]
    if not np.all(np.isfinite(Xn)):
        k = int(np.argwhere(~np.isfinite(Xn))[0][0])
        raise InvalidInputError(f"the nominal trajectory is not finite from step {k}")
    beacons.check_states(Xn[1:])
    e0, eu, eq, ez = _draw_noise(as_rng("seed", seed), n_runs, N, n, nu, m)
    L0 = np.ascontiguousarray(np.linalg.cholesky(P0))
    Lm, Lq = _sqrt_psd(M), _sqrt_psd(Q0)
    if model._kind is not None and type(beacons) is Beacons:
        if beacons.bearing_std is None or n >= 3:
            Xt = np.empty((n_runs, N + 1, n))
            Xh = np.empty_like(Xt)
            Ph = np.empty((n_runs, N + 1, n, n))
            Z = np.empty((n_runs, N, m))
            try:
                fail = K.ekf_monte_carlo(
                    model._kind, model._params(), beacons.positions, beacons._params(), x0, P0, U, M, Q0,
                    L0, Lm, Lq, e0, eu, eq, ez, bool(joseph), Xt, Xh, Ph, Z,
                )  # fmt: skip
            except ZeroDivisionError:  # a simulated or estimated state exactly on a beacon
                raise SingularSystemError(
                    "a simulated or estimated robot position coincides with a beacon: range/bearing "
                    "Jacobians are singular there"
                ) from None
            if fail >= 0:
                raise SingularSystemError(
                    f"innovation covariance not positive definite in run {fail // N}, step {fail % N + 1}"
                )
            freeze(Xt, Xh, Ph, Z)
            return FilterResult(truth=Xt, estimates=Xh, covariances=Ph, measurements=Z)
    fm, fs = _compiled_model(model), _compiled_sensor(beacons, n)
    if fm is not None and fs is not None:
        Xt = np.empty((n_runs, N + 1, n))
        Xh = np.empty_like(Xt)
        Ph = np.empty((n_runs, N + 1, n, n))
        Z = np.empty((n_runs, N, m))
        status, at = _user_kernel_call(
            model, beacons, UK.user_ekf_monte_carlo, *fm, *fs, x0, P0, U, M, Q0, L0, Lm, Lq, e0, eu, eq, ez,
            bool(joseph), Xt, Xh, Ph, Z,
        )  # fmt: skip
        _raise_status(model, beacons, status, f"run {at // N}, step {at % N + 1}")
        freeze(Xt, Xh, Ph, Z)
        return FilterResult(truth=Xt, estimates=Xh, covariances=Ph, measurements=Z)
    return _run_filter_python(model, beacons, x0, P0, U, M, Q0, L0, Lm, Lq, e0, eu, eq, ez, joseph)


def _compiled_model(model):
    """(f, p) of a built-in or compiled model for the function-argument kernels, else None."""
    if model._kind is not None:
        return UK.builtin_functions()["f"], np.array([*model._params(), float(model._kind)])
    if isinstance(model, CompiledMotionModel):
        return model._compiled()
    return None


def _compiled_sensor(sensor, n):
    """(h, jac, q, angular) of the beacon sensor or a compiled sensor, else None."""
    if type(sensor) is Beacons:
        if sensor.bearing_std is not None and n < 3:
            return None
        q = np.concatenate([sensor._params(), sensor.positions.reshape(-1)])
        fns = UK.builtin_functions()
        return fns["h"], fns["jac"], q, np.ascontiguousarray(sensor.angular)
    if isinstance(sensor, CompiledMeasurementModel):
        return sensor._compiled()
    return None


def _user_kernel_call(model, sensor, kernel, *args):
    from .compiled import _user_call

    return _user_call(f"{type(model).__name__} / {type(sensor).__name__}", kernel, *args)


def _raise_status(model, sensor, status, where):
    if status == UK.OK:
        return
    if status == UK.BAD_INNOVATION:
        raise SingularSystemError(f"innovation covariance not positive definite in {where}")
    if status == UK.BAD_NOISE:
        raise InvalidInputError(
            f"{type(sensor).__name__}.jac returned a noise variance that is not finite and > 0 in {where}"
        )
    raise NonFiniteError(f"{type(model).__name__}.f returned a non-finite state in {where}")


def _draw_noise(rng, R, N, n, nu, m):
    """Standard-normal draws (e0 (R, n), eu (R, N, n_u), eq (R, N, n), ez (R, N, m)), in this order.

    Every simulation (:func:`run_filter`, closed-loop runs) draws its noise
    through here, so equal seeds give equal noise (common random numbers).
    """
    e0 = rng.standard_normal((R, n))
    eu = rng.standard_normal((R, N, nu))
    eq = rng.standard_normal((R, N, n))
    ez = rng.standard_normal((R, N, m))
    return e0, eu, eq, ez


def _run_filter_python(model, sensor, x0, P0, U, M, Q0, L0, Lm, Lq, e0, eu, eq, ez, joseph):
    """Reference path for user-defined models/sensors (same noise draws as the kernel)."""
    R, N = e0.shape[0], U.shape[0]
    n, m = x0.shape[0], sensor.n_meas
    Xt = np.empty((R, N + 1, n))
    Xh = np.empty_like(Xt)
    Ph = np.empty((R, N + 1, n, n))
    Z = np.empty((R, N, m))
    for r in range(R):
        k = _segment_python(model, sensor, x0 + L0 @ e0[r], x0, P0, U, M, Q0, Lm, Lq, eu[r], eq[r], ez[r],
                            joseph, Xt[r], Xh[r], Ph[r], Z[r])  # fmt: skip
        if k >= 0:
            raise SingularSystemError(f"innovation covariance not positive definite in run {r}, step {k + 1}")
    freeze(Xt, Xh, Ph, Z)
    return FilterResult(truth=Xt, estimates=Xh, covariances=Ph, measurements=Z)


def _segment_python(model, sensor, xt0, xh0, Ph0, U, M, Q0, Lm, Lq, eu, eq, ez, joseph, Xt, Xh, Ph, Z) -> int:
    """One run of truth + EKF over the steps of U in numpy; returns -1 or the failing step.

    Every array the user's model and sensor return is checked (shape, dtype, finiteness).
    """
    n, nu, m = xh0.shape[0], U.shape[1], sensor.n_meas
    mname, sname = type(model).__name__, type(sensor).__name__
    ang = np.asarray(sensor.angular, dtype=bool)
    if ang.shape != (m,):
        raise ShapeError(f"{sname}.angular must have shape ({m},), got {ang.shape}")

    def step(x, u, k):
        return check_returned(f"{mname}.step at step {k}", model.step(x, u), (n,))

    def measure(x, k):
        return check_returned(f"{sname}.measure at step {k + 1}", sensor.measure(x), (1, m))[0]

    def noise_std(x, k):
        return check_returned(f"{sname}.noise_std at step {k + 1}", sensor.noise_std(x), (1, m))[0]

    def jacobians(x, u, k):
        out = model.jacobians(x, u)
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise InvalidTypeError(f"{mname}.jacobians must return a pair (F, G), got {type(out).__name__}")
        F = check_returned(f"{mname}.jacobians F at step {k}", out[0], (n, n))
        return F, check_returned(f"{mname}.jacobians G at step {k}", out[1], (n, nu))

    I = np.eye(n)
    Xt[0], Xh[0], Ph[0] = xt0, xh0, Ph0
    for k in range(U.shape[0]):
        Xt[k + 1] = step(Xt[k], U[k] + Lm @ eu[k], k) + Lq @ eq[k]
        xt = Xt[k + 1][None]
        z = measure(xt, k) + noise_std(xt, k) * ez[k]
        z[ang] = _wrap(z[ang])
        Z[k] = z
        F, G = jacobians(Xh[k], U[k], k)
        xp = step(Xh[k], U[k], k)
        Pm = F @ Ph[k] @ F.T + G @ M @ G.T + Q0
        Pm = 0.5 * (Pm + Pm.T)
        H, Rd = _sensor_jacobians(sensor, xp[None])
        H, Rd = H[0], Rd[0]
        S = H @ Pm @ H.T + np.diag(Rd)
        try:
            L = np.linalg.cholesky(S)
        except np.linalg.LinAlgError:
            return k
        Kg = np.linalg.solve(L.T, np.linalg.solve(L, H @ Pm)).T
        y = z - measure(xp[None], k)
        y[ang] = _wrap(y[ang])
        Xh[k + 1] = xp + Kg @ y
        A = I - Kg @ H
        P = A @ Pm @ A.T + Kg @ np.diag(Rd) @ Kg.T if joseph else A @ Pm
        Ph[k + 1] = 0.5 * (P + P.T)
    return -1


def _segment(model, sensor, xt0, xh0, Ph0, U, M, Q0, Lm, Lq, eu, eq, ez, joseph):
    """Truth + EKF of one run over the K steps of U from truth xt0 and estimate (xh0, Ph0).

    Validated C-contiguous float64 inputs; eu (K, n_u), eq (K, n), ez (K, m)
    are standard-normal draws. Returns Xt, Xh (K+1, n), Ph (K+1, n, n), Z (K, m).
    """
    K_, n, m = U.shape[0], xh0.shape[0], sensor.n_meas
    Xt = np.empty((K_ + 1, n))
    Xh = np.empty_like(Xt)
    Ph = np.empty((K_ + 1, n, n))
    Z = np.empty((K_, m))
    fm, fs = _compiled_model(model), _compiled_sensor(sensor, n)
    if model._kind is not None and type(sensor) is Beacons and fs is not None:
        k = K.ekf_segment(model._kind, model._params(), sensor.positions, sensor._params(), xt0, xh0, Ph0, U, M,
                          Q0, Lm, Lq, eu, eq, ez, bool(joseph), Xt, Xh, Ph, Z)  # fmt: skip
        if k >= 0:
            raise SingularSystemError(f"innovation covariance not positive definite at step {k + 1}")
    elif fm is not None and fs is not None:
        status, k = _user_kernel_call(model, sensor, UK.user_ekf_segment, *fm, *fs, xt0, xh0, Ph0, U, M, Q0,
                                      Lm, Lq, eu, eq, ez, bool(joseph), Xt, Xh, Ph, Z)  # fmt: skip
        _raise_status(model, sensor, status, f"step {k + 1}")
    else:
        k = _segment_python(model, sensor, xt0, xh0, Ph0, U, M, Q0, Lm, Lq, eu, eq, ez, joseph, Xt, Xh, Ph, Z)
        if k >= 0:
            raise SingularSystemError(f"innovation covariance not positive definite at step {k + 1}")
    return Xt, Xh, Ph, Z
