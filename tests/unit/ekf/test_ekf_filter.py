"""The EKF on simulated data: kernel vs Python path, Kalman-filter identity, NEES consistency."""

import numpy as np
import pytest
from ekf_reference import kalman_filter
from scipy import stats

from physim.ekf import Beacons, MeasurementModel, MotionModel, Unicycle, covariance_rollout, run_filter
from physim.errors import InvalidInputError

BEACONS = [[1.5, 2.5], [3.5, -2.0], [6.5, 1.5]]
P0 = np.diag([1.0, 1.0, 0.1])
M = np.diag([0.05**2, 0.02**2])
Q0 = 1e-6 * np.eye(3)


class PyBeacons(Beacons):
    """Same sensor, but not the built-in type: forces the Python filter path."""


class LinearModel(MotionModel):
    """x⁺ = A x + B u (a user model)."""

    def __init__(self, A, B):
        self.A, self.B = np.asarray(A, float), np.asarray(B, float)

    n_state = property(lambda self: self.A.shape[0])
    n_control = property(lambda self: self.B.shape[1])

    def step(self, x, u):
        return self.A @ x + self.B @ u

    def jacobians(self, x, u):
        return self.A, self.B

    def jacobians_vjp(self, x, u, Fb, Gb):
        return np.zeros(self.n_state), np.zeros(self.n_control)


class PositionSensor(MeasurementModel):
    """z = (x, y) + noise (a user sensor, linear)."""

    def __init__(self, std):
        self.std = std

    n_meas = 2
    angular = np.zeros(2, dtype=bool)

    def measure(self, X):
        return np.asarray(X)[:, :2].copy()

    def jacobians(self, X):
        K, n = np.shape(X)
        H = np.zeros((K, 2, n))
        H[:, 0, 0] = H[:, 1, 1] = 1.0
        return H, np.full((K, 2), self.std**2)

    def jacobians_vjp(self, X, Hb, Rb):
        return np.zeros(np.shape(X)), {}


def test_kernel_equals_python_path():
    U = np.tile([1.0, 0.05], (40, 1))
    for joseph in (True, False):
        a = run_filter(Unicycle(0.1), Beacons(BEACONS, 0.1, 0.02, range_slope=0.02), np.zeros(3), P0, U, M, Q0,
                       n_runs=3, seed=4, joseph=joseph)  # fmt: skip
        b = run_filter(Unicycle(0.1), PyBeacons(BEACONS, 0.1, 0.02, range_slope=0.02), np.zeros(3), P0, U, M, Q0,
                       n_runs=3, seed=4, joseph=joseph)  # fmt: skip
        np.testing.assert_allclose(a.truth, b.truth, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a.measurements, b.measurements, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a.estimates, b.estimates, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(a.covariances, b.covariances, rtol=1e-9, atol=1e-14)
    angles = a.measurements[..., 1::2]
    assert np.all(angles >= -np.pi) and np.all(angles < np.pi)


def test_linear_model_equals_kalman_filter():
    rng = np.random.default_rng(0)
    A = np.array([[1.0, 0.1, 0.0], [0.0, 1.0, 0.1], [0.0, -0.05, 0.95]])
    Bm = np.array([[0.0, 0.1], [0.1, 0.0], [0.05, 0.1]])
    model, sensor = LinearModel(A, Bm), PositionSensor(0.3)
    U = rng.standard_normal((30, 2))
    x0 = np.array([0.5, -0.2, 0.1])
    res = run_filter(model, sensor, x0, P0, U, M, Q0, n_runs=2, seed=1)
    C = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    for r in range(2):
        xs, Ps = kalman_filter(A, Bm, C, Bm @ M @ Bm.T + Q0, 0.09 * np.eye(2), x0, P0, U, res.measurements[r])
        np.testing.assert_allclose(res.estimates[r], xs, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(res.covariances[r], Ps, rtol=1e-10, atol=1e-14)
    # the covariance rollout does not depend on the data: same covariances
    roll = covariance_rollout(model, sensor, x0, P0, U, M, Q0)
    np.testing.assert_allclose(roll.P, Ps, rtol=1e-10, atol=1e-14)


def test_nees_is_consistent():
    """Average NEES over R runs is χ²(nR)/R distributed at each step for a consistent filter."""
    R, N, n = 200, 50, 3
    U = np.tile([1.0, 0.0], (N, 1))
    res = run_filter(Unicycle(0.1), Beacons(BEACONS, 0.1, 0.02), np.zeros(3), 0.1 * P0, U, M, Q0,
                     n_runs=R, seed=2)  # fmt: skip
    anees = res.mean_nees[1:]
    lo, hi = stats.chi2.ppf([0.0005, 0.9995], n * R) / R
    inside = np.mean((anees > lo) & (anees < hi))
    assert inside >= 0.9, (inside, lo, hi, anees)
    assert lo < anees.mean() < hi
    # the position RMSE matches the filter's own position uncertainty
    pred = np.sqrt(np.mean(np.trace(res.covariances[:, -1, :2, :2], axis1=1, axis2=2)))
    assert res.final_rmse == pytest.approx(pred, rel=0.15)


def test_run_filter_rejects_bad_runs():
    with pytest.raises(InvalidInputError, match="n_runs"):
        run_filter(Unicycle(0.1), Beacons(BEACONS, 0.1), np.zeros(3), P0, np.ones((5, 2)), M, Q0, n_runs=0)


def test_adjoint_through_user_model_and_sensor():
    """The Python paths of the adjoint (user model and sensor) pass a Taylor test."""
    from physim.ekf import FinalLogDet, adjoint
    from physim.optim import check_gradient

    A = np.array([[1.0, 0.1, 0.0], [0.0, 1.0, 0.1], [0.0, -0.05, 0.95]])
    Bm = np.array([[0.0, 0.1], [0.1, 0.0], [0.05, 0.1]])
    model, sensor = LinearModel(A, Bm), PositionSensor(0.3)
    U = np.zeros((12, 2))

    def fun(v):
        S = v.reshape(3, 3)
        r = covariance_rollout(model, sensor, np.zeros(3), 0.5 * (S + S.T), U, M, Q0)
        g = adjoint(r, FinalLogDet())
        return g.value, g.P0.reshape(-1)

    chk = check_gradient(fun, P0.reshape(-1), h0=0.05)
    assert chk.ok, str(chk)
    g = adjoint(covariance_rollout(model, sensor, np.zeros(3), P0, U, M, Q0), FinalLogDet())
    assert not g.controls.any() and g.beacons is None
