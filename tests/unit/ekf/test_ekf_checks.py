"""check_model: finite-difference checks of hand-written Jacobians and VJPs name the wrong one."""

import math

import numba
import numpy as np
import pytest
from ekf_user_models import CRangeBeacons, CUnicycle

from physim.ekf import Beacons, Bicycle, MeasurementModel, MotionModel, Unicycle, check_model
from physim.errors import InvalidInputError, InvalidTypeError

_range_vjp = numba.njit(CRangeBeacons.jac_vjp)


class NumpyUnicycle(MotionModel):
    """A user unicycle in numpy; ``bug`` plants one mistake."""

    n_state = 3
    n_control = 2

    def __init__(self, dt, bug=None):
        self.dt, self.bug = dt, bug

    def step(self, x, u):
        return np.array([x[0] + self.dt * u[0] * np.cos(x[2]), x[1] + self.dt * u[0] * np.sin(x[2]),
                         x[2] + self.dt * u[1]])  # fmt: skip

    def jacobians(self, x, u):
        c, s, dt, v = np.cos(x[2]), np.sin(x[2]), self.dt, u[0]
        F = np.array([[1, 0, -dt * v * s], [0, 1, dt * v * c], [0, 0, 1.0]])
        G = np.array([[dt * c, 0], [dt * s, 0], [0, dt]])
        if self.bug == "F":
            F[1, 2] = -F[1, 2]  # sign error
        if self.bug == "G":
            G[2, 1] = 1.0  # forgot dt
        return F, G

    def jacobians_vjp(self, x, u, Fb, Gb):
        c, s, dt, v = np.cos(x[2]), np.sin(x[2]), self.dt, u[0]
        xb = np.zeros(3)
        xb[2] = -Fb[0, 2] * dt * v * c - Fb[1, 2] * dt * v * s - Gb[0, 0] * dt * s + Gb[1, 0] * dt * c
        ub = np.array([-Fb[0, 2] * dt * s + Fb[1, 2] * dt * c, 0.0])
        if self.bug == "vjp_u":
            ub[0] = 0.0  # dropped term
        return xb, ub


class NumpyPosition(MeasurementModel):
    """z = (x, y) with noise σ² (1 + x²); ``bug`` plants one mistake."""

    n_meas = 2
    angular = np.zeros(2, dtype=bool)

    def __init__(self, bug=None):
        self.bug = bug

    def measure(self, X):
        return np.asarray(X)[:, :2].copy()

    def jacobians(self, X):
        X = np.asarray(X)
        H = np.zeros((len(X), 2, X.shape[1]))
        H[:, 0, 0] = H[:, 1, 1] = 1.0
        if self.bug == "H":
            H[:, 1, 0] = 0.5
        R = np.stack([1 + X[:, 0] ** 2, 1 + X[:, 0] ** 2], axis=1) * 0.01
        return H, R

    def jacobians_vjp(self, X, Hb, Rb):
        X = np.asarray(X)
        Xb = np.zeros_like(X)
        Xb[:, 0] = 0.02 * X[:, 0] * (Rb[:, 0] + Rb[:, 1]) * (0.0 if self.bug == "vjp" else 1.0)
        return Xb, {}


@pytest.mark.parametrize(
    "model", [Unicycle(0.1), Bicycle(0.1, 0.8), NumpyUnicycle(0.1), CUnicycle(dt=0.2)], ids=repr
)
def test_correct_motion_models_pass(model):
    rep = check_model(model)
    assert rep.ok, str(rep)
    assert rep.failed == [] and "ok" in str(rep)


@pytest.mark.parametrize(
    "bug, wrong",
    [
        ("F", "jacobians: F = ∂f/∂x"),
        ("G", "jacobians: G = ∂f/∂u"),
        ("vjp_u", "jacobians_vjp: ū = ∂(⟨F̄,F⟩ + ⟨Ḡ,G⟩)/∂u"),
    ],
)
def test_a_wrong_motion_derivative_is_named(bug, wrong):
    rep = check_model(NumpyUnicycle(0.1, bug=bug))
    assert not rep.ok
    assert rep.failed == [wrong], str(rep)
    assert "WRONG" in str(rep)


def test_a_wrong_parameter_gradient_is_named():
    class BadDt(CUnicycle):
        @staticmethod
        def f_vjp(x, u, p, lam, F_bar, G_bar, x_bar, u_bar, p_bar):
            dt, v = p[0], u[0]
            c, s = math.cos(x[2]), math.sin(x[2])
            x_bar[2] = (
                -F_bar[0, 2] * dt * v * c
                - F_bar[1, 2] * dt * v * s
                - G_bar[0, 0] * dt * s
                + G_bar[1, 0] * dt * c
            )
            u_bar[0] = -F_bar[0, 2] * dt * s + F_bar[1, 2] * dt * c
            # forgot the heading row λ₂ ω of ∂f/∂dt
            p_bar[0] = (
                lam[0] * v * c + lam[1] * v * s
                - F_bar[0, 2] * v * s + F_bar[1, 2] * v * c + G_bar[0, 0] * c + G_bar[1, 0] * s + G_bar[2, 1]
            )  # fmt: skip

    rep = check_model(BadDt(dt=0.1))
    assert rep.failed == ["parameter_vjp: ∂/∂dt"], str(rep)


@pytest.mark.parametrize(
    "sensor",
    [Beacons([[0.0, 2.0], [3.0, -1.0]], 0.1, 0.02, range_slope=0.05), Beacons([[1.0, 1.0]], bearing_std=0.03),
     NumpyPosition(), CRangeBeacons(positions=[[0.0, 1.0], [2.0, -1.0]], std=0.1, slope=0.05)],
    ids=repr,
)  # fmt: skip
def test_correct_sensors_pass(sensor):
    rep = check_model(sensor)
    assert rep.ok, str(rep)


@pytest.mark.parametrize(
    "bug, wrong", [("H", "jacobians: H = ∂h/∂x"), ("vjp", "jacobians_vjp: x̄ = ∂(⟨H̄,H⟩ + ⟨R̄,R⟩)/∂x")]
)
def test_a_wrong_sensor_derivative_is_named(bug, wrong):
    rep = check_model(NumpyPosition(bug=bug))
    assert rep.failed == [wrong], str(rep)


def test_a_wrong_sensor_parameter_gradient_is_named():
    class BadSlope(CRangeBeacons):
        @staticmethod
        def jac_vjp(x, q, H_bar, R_bar, x_bar, q_bar):
            _range_vjp(x, q, H_bar, R_bar, x_bar, q_bar)
            q_bar[q.shape[0] - 1] *= 2.0  # a helper compiled with numba.njit can be called

    rep = check_model(BadSlope(positions=[[0.0, 1.0], [2.0, -1.0]], std=0.1, slope=0.05))
    assert rep.failed == ["jacobians_vjp: ∂/∂slope"], str(rep)


def test_a_method_that_raises_is_reported():
    class Broken(NumpyUnicycle):
        def jacobians_vjp(self, x, u, Fb, Gb):
            raise ValueError("not implemented yet")

    rep = check_model(Broken(0.1))
    assert not rep.ok
    item = next(i for i in rep.items if not i.ok)
    assert "not implemented yet" in item.note


def test_check_model_arguments():
    rep = check_model(Unicycle(0.1), x=[0.0, 0.0, 0.3], u=[1.0, 0.2])
    assert rep.ok and rep.n_points == 1
    with pytest.raises(InvalidInputError, match=r"x must have shape \(3,\)"):
        check_model(Unicycle(0.1), x=np.zeros(2))
    with pytest.raises(InvalidInputError, match="u is for motion models"):
        check_model(NumpyPosition(), u=[1.0])
    with pytest.raises(InvalidTypeError, match="MotionModel or MeasurementModel"):
        check_model(object())
