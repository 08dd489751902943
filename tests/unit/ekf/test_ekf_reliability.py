"""User-written EKF models and sensors are checked before compiled code reads their arrays;
run_filter rejects what covariance_rollout rejects."""

import numpy as np
import pytest

from physim import errors
from physim.ekf import (
    Beacons,
    FinalTrace,
    MeasurementModel,
    Unicycle,
    adjoint,
    covariance_rollout,
    run_filter,
)

X0 = np.zeros(3)
P0 = np.diag([0.1, 0.1, 0.05])
M = np.diag([0.01, 0.005])
Q0 = np.eye(3) * 1e-4
U = np.tile([1.0, 0.1], (8, 1))


class Sensor(MeasurementModel):
    """Position sensor whose outputs can be broken on purpose."""

    def __init__(self, H_shape=None, R_len=2, nan=False, R_value=0.01, vjp_shape=None):
        self.H_shape, self.R_len, self.nan, self.R_value, self.vjp_shape = (
            H_shape,
            R_len,
            nan,
            R_value,
            vjp_shape,
        )

    n_meas = 2
    angular = np.zeros(2, dtype=bool)

    def measure(self, X):
        return np.asarray(X)[:, :2].copy()

    def jacobians(self, X):
        K, n = np.shape(X)
        H = np.zeros((K, 2, n))
        H[:, 0, 0] = H[:, 1, 1] = 1.0
        if self.H_shape is not None:
            H = H[..., : self.H_shape]
        if self.nan:
            H[-1, 1, 1] = np.nan
        return H, np.full((K, self.R_len), self.R_value)

    def jacobians_vjp(self, X, Hb, Rb):
        shape = np.shape(X) if self.vjp_shape is None else self.vjp_shape
        return np.zeros(shape), {}


def test_a_reference_user_sensor_works():
    r = covariance_rollout(Unicycle(0.1), Sensor(), X0, P0, U, M, Q0)
    assert np.all(np.isfinite(adjoint(r, FinalTrace()).controls))


@pytest.mark.parametrize(
    "sensor, err, match, match_filter",
    [
        (
            Sensor(H_shape=1),
            errors.ShapeError,
            r"Sensor\.jacobians H returned shape \(8, 2, 1\), expected \(8, 2, 3\)",
            r"Sensor\.jacobians H returned shape \(1, 2, 1\), expected \(1, 2, 3\)",
        ),
        (
            Sensor(R_len=1),
            errors.ShapeError,
            r"Sensor\.jacobians Rd returned shape \(8, 1\), expected \(8, 2\)",
            r"returned shape \(1, 1\), expected \(1, 2\)",
        ),
        (Sensor(nan=True), errors.NonFiniteError, r"Sensor\.jacobians H returned 1 non-finite", "non-finite"),
        (Sensor(R_value=0.0), errors.InvalidInputError, r"noise variance Rd\[0, 0\] = 0\.0", "Rd"),
    ],
)
def test_user_sensor_outputs_are_checked_before_the_kernels(sensor, err, match, match_filter):
    # before: an H of shape (K, m, 1) was read out of bounds (a finite, wrong covariance) and a
    # short R raised ZeroDivisionError from inside the kernel
    with pytest.raises(err, match=match):
        covariance_rollout(Unicycle(0.1), sensor, X0, P0, U, M, Q0)
    with pytest.raises(err, match=match_filter):
        run_filter(Unicycle(0.1), sensor, X0, P0, U, M, Q0, n_runs=1, seed=0)


def test_user_sensor_vjp_shape_is_checked():
    r = covariance_rollout(Unicycle(0.1), Sensor(vjp_shape=(8, 1)), X0, P0, U, M, Q0)
    with pytest.raises(errors.ShapeError, match=r"jacobians_vjp state cotangents returned shape \(8, 1\)"):
        adjoint(r, FinalTrace())


class Model(Unicycle):
    """The unicycle as a user model (the Python path), with breakable outputs."""

    _kind = None

    def __init__(self, dt, bad=None):
        super().__init__(dt)
        self.bad = bad

    def jacobians(self, x, u):
        F, G = super().jacobians(x, u)
        if self.bad == "G":
            return F, G[:, :1]
        if self.bad == "nan" and x[0] > 0.3:
            F = F.copy()
            F[0, 0] = np.inf
        return F, G

    def jacobians_vjp(self, x, u, Fb, Gb):
        xb, ub = super().jacobians_vjp(x, u, Fb, Gb)
        return (xb, ub[:1]) if self.bad == "vjp" else (xb, ub)


def test_user_model_outputs_are_checked_at_every_step():
    with pytest.raises(errors.ShapeError, match=r"Model\.jacobians G at step 0 returned shape \(3, 1\)"):
        covariance_rollout(Model(0.1, "G"), Beacons([[5.0, 5.0]], 0.1), X0, P0, U, M, Q0)
    with pytest.raises(errors.NonFiniteError, match=r"Model\.jacobians F at step 4"):
        covariance_rollout(Model(0.1, "nan"), Beacons([[5.0, 5.0]], 0.1), X0, P0, U, M, Q0)
    r = covariance_rollout(Model(0.1, "vjp"), Beacons([[5.0, 5.0]], 0.1), X0, P0, U, M, Q0)
    with pytest.raises(errors.ShapeError, match=r"jacobians_vjp u_bar at step 7 returned shape \(1,\)"):
        adjoint(r, FinalTrace())


def test_run_filter_rejects_a_beacon_on_the_path_like_covariance_rollout():
    x = np.zeros(3)
    U1 = np.array([[1.0, 0.1]] * 8)
    X = [x]
    for u in U1:  # the nominal unicycle path; put the first beacon exactly on step 3
        x = x + 0.1 * np.array([u[0] * np.cos(x[2]), u[0] * np.sin(x[2]), u[1]])
        X.append(x)
    beacons = Beacons([X[3][:2], [5.0, 5.0]], 0.1, 0.05)
    with pytest.raises(errors.InvalidInputError, match="beacon 0 .* step 3"):
        covariance_rollout(Unicycle(0.1), beacons, X0, P0, U1, M, Q0)
    with pytest.raises(errors.InvalidInputError, match="beacon 0 .* step 3"):
        run_filter(Unicycle(0.1), beacons, X0, P0, U1, M, Q0, n_runs=2, seed=1)


def test_run_filter_sizes_are_validated():
    b = Beacons([[5.0, 5.0]], 0.1)
    with pytest.raises(errors.ResourceLimitError, match="n_runs"):
        run_filter(Unicycle(0.1), b, X0, P0, U, M, Q0, n_runs=10**12)
    for bad in (0, np.nan, 2.5, None):
        with pytest.raises(errors.PhysimError, match="n_runs"):
            run_filter(Unicycle(0.1), b, X0, P0, U, M, Q0, n_runs=bad)
