"""Models, sensors and the covariance rollout against the numpy reference; bad inputs."""

import numpy as np
import pytest
from ekf_reference import BICYCLE, UNICYCLE, library_objects, meas, random_problem, step
from ekf_reference import rollout as ref_rollout
from hypothesis import given, settings
from hypothesis import strategies as st

from physim.ekf import Beacons, Bicycle, Unicycle, covariance_rollout
from physim.errors import InvalidInputError, InvalidTypeError, NonFiniteError, ShapeError

FD_H = 1e-6
FD_RTOL = 1e-6


def _fd_jac(f, x, h=FD_H):
    cols = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        cols.append((f(x + e) - f(x - e)) / (2 * h))
    return np.stack(cols, axis=-1)


@pytest.mark.parametrize("model", [Unicycle(0.2), Bicycle(0.2, 0.7)], ids=["unicycle", "bicycle"])
def test_model_jacobians_and_vjp(model):
    rng = np.random.default_rng(0)
    kind = UNICYCLE if isinstance(model, Unicycle) else BICYCLE
    for _ in range(5):
        x, u = rng.standard_normal(3), np.array([rng.uniform(0.2, 2), rng.uniform(-0.6, 0.6)])
        xn_ref, F_ref, G_ref = step(kind, 0.2, 0.7, x, u)
        np.testing.assert_allclose(model.step(x, u), xn_ref, rtol=1e-14, atol=1e-14)
        F, G = model.jacobians(x, u)
        np.testing.assert_allclose(F, F_ref, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(G, G_ref, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(F, _fd_jac(lambda y, u=u: model.step(y, u), x), rtol=FD_RTOL, atol=1e-9)
        np.testing.assert_allclose(G, _fd_jac(lambda v, x=x: model.step(x, v), u), rtol=FD_RTOL, atol=1e-9)
        Fb, Gb = rng.standard_normal((3, 3)), rng.standard_normal((3, 2))
        xb, ub = model.jacobians_vjp(x, u, Fb, Gb)

        def pairing(x_, u_, Fb=Fb, Gb=Gb):
            F_, G_ = model.jacobians(x_, u_)
            return np.sum(Fb * F_) + np.sum(Gb * G_)

        np.testing.assert_allclose(
            xb, _fd_jac(lambda y, u=u: np.array(pairing(y, u)), x), rtol=FD_RTOL, atol=1e-8
        )
        np.testing.assert_allclose(
            ub, _fd_jac(lambda v, x=x: np.array(pairing(x, v)), u), rtol=FD_RTOL, atol=1e-8
        )


@pytest.mark.parametrize("cfg", [(0.1, 0.02, 0.05), (0.1, None, 0.0), (None, 0.02, 0.0)])
def test_sensor_jacobians_and_vjp(cfg):
    rs, bs, slope = cfg
    rng = np.random.default_rng(1)
    B = rng.uniform(-5, 5, (4, 2))
    sensor = Beacons(B, rs, bs, range_slope=slope)
    X = rng.uniform(-5, 5, (6, 3))
    Z = sensor.measure(X)
    H, Rd = sensor.jacobians(X)
    for k, x in enumerate(X):
        z_ref, H_ref, R_ref = meas(x, B, rs, bs, slope)
        dz = Z[k] - z_ref
        dz[sensor.angular] = np.mod(dz[sensor.angular] + np.pi, 2 * np.pi) - np.pi
        np.testing.assert_allclose(dz, 0, atol=1e-12)
        np.testing.assert_allclose(H[k], H_ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(Rd[k], R_ref, rtol=1e-12)
    assert np.all(Z[:, sensor.angular] >= -np.pi) and np.all(Z[:, sensor.angular] < np.pi)
    Hb, Rb = rng.standard_normal(H.shape), rng.standard_normal(Rd.shape)
    Xb, grads = sensor.jacobians_vjp(X, Hb, Rb)

    def pairing(Xf):
        H_, R_ = sensor.jacobians(Xf.reshape(X.shape))
        return np.array(np.sum(Hb * H_) + np.sum(Rb * R_))

    np.testing.assert_allclose(Xb.reshape(-1), _fd_jac(pairing, X.reshape(-1)), rtol=FD_RTOL, atol=1e-8)

    def pairing_b(Bf):
        H_, R_ = Beacons(Bf.reshape(B.shape), rs, bs, range_slope=slope).jacobians(X)
        return np.array(np.sum(Hb * H_) + np.sum(Rb * R_))

    np.testing.assert_allclose(grads["beacons"].reshape(-1), _fd_jac(pairing_b, B.reshape(-1)),
                               rtol=FD_RTOL, atol=1e-8)  # fmt: skip


def test_bearing_wraps_angles():
    s = Beacons([[-1.0, 1e-3], [-1.0, -1e-3]], None, 0.01)
    z = s.measure(np.array([[0.0, 0.0, 0.0]]))[0]
    assert z[0] == pytest.approx(np.pi - 1e-3, abs=1e-9)
    assert z[1] == pytest.approx(-np.pi + 1e-3, abs=1e-9)
    z = s.measure(np.array([[0.0, 0.0, 4 * np.pi + 0.5]]))[0]
    assert z[0] == pytest.approx(np.pi - 1e-3 - 0.5, abs=1e-9)


@pytest.mark.parametrize("kind", [UNICYCLE, BICYCLE])
@pytest.mark.parametrize("joseph", [True, False])
def test_rollout_matches_reference(kind, joseph):
    rng = np.random.default_rng(2 + kind)
    p = random_problem(rng, kind=kind, N=20, n_beacons=4)
    model, beacons = library_objects(p)
    r = covariance_rollout(model, beacons, p["x0"], p["P0"], p["U"], p["M"], p["Q0"], joseph=joseph)
    X, P = ref_rollout(kind, p["dt"], p["L"], p["x0"], p["P0"], p["U"], p["M"], p["Q0"], p["B"],
                       p["range_std"], p["bearing_std"], p["slope"])  # fmt: skip
    assert r.P.shape == (21, 3, 3)
    assert np.array_equal(r.P[0], p["P0"])
    np.testing.assert_allclose(r.states, X, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(r.P, P, rtol=1e-9, atol=1e-14)
    assert np.array_equal(r.P, np.swapaxes(r.P, 1, 2))
    assert np.all(np.linalg.eigvalsh(r.P) > 0)


def test_joseph_and_standard_agree():
    rng = np.random.default_rng(3)
    p = random_problem(rng, N=200, n_beacons=5)
    model, beacons = library_objects(p)
    args = (model, beacons, p["x0"], p["P0"], p["U"], p["M"], p["Q0"])
    a = covariance_rollout(*args, joseph=True)
    b = covariance_rollout(*args, joseph=False)
    np.testing.assert_allclose(a.P, b.P, rtol=1e-8, atol=1e-15)


# ---------------------------------------------------------------------------
# bad inputs
# ---------------------------------------------------------------------------


def _good():
    return dict(
        model=Unicycle(0.1), beacons=Beacons([[2.0, 3.0], [5.0, -2.0], [8.0, 1.0]], 0.1, 0.02),
        x0=np.zeros(3), P0=np.diag([1.0, 1.0, 0.1]), controls=np.tile([1.0, 0.1], (10, 1)),
        M=np.diag([0.05**2, 0.02**2]), Q0=1e-6 * np.eye(3),
    )  # fmt: skip


def test_good_inputs_pass():
    r = covariance_rollout(**_good())
    assert r.P.shape == (11, 3, 3)


@pytest.mark.parametrize(
    "change, exc, match",
    [
        (dict(P0=np.diag([1.0, -1.0, 0.1])), InvalidInputError, "P0.*positive definite"),
        (dict(P0=np.array([[1, 0.5, 0], [0, 1, 0], [0, 0, 1.0]])), InvalidInputError, "P0.*symmetric"),
        (dict(P0=np.eye(2)), ShapeError, r"P0 must have shape \(3, 3\)"),
        (dict(x0=np.zeros(2)), ShapeError, r"x0 must have shape \(3,\)"),
        (dict(controls=np.zeros((10, 3))), ShapeError, "controls"),
        (dict(controls=np.zeros((0, 2))), ShapeError, "at least one step"),
        (dict(M=-np.eye(2)), InvalidInputError, "M is not positive semi-definite"),
        (dict(Q0=np.ones((2, 2))), ShapeError, "Q0"),
        (dict(model="unicycle"), InvalidTypeError, "MotionModel"),
        (dict(beacons=np.zeros((3, 2))), InvalidTypeError, "MeasurementModel"),
        (dict(x0=np.array([5.0, -2.0, 0.0])), None, None),  # x0 itself is not measured
        (
            dict(x0=np.array([4.0, -2.0, 0.0]), controls=np.tile([1.0, 0.0], (10, 1))),
            InvalidInputError,
            r"beacon 1 .* step 10",
        ),
    ],
)
def test_bad_inputs_raise(change, exc, match):
    kw = _good()
    kw.update(change)
    if exc is None:
        covariance_rollout(**kw)
        return
    with pytest.raises(exc, match=match):
        covariance_rollout(**kw)


def test_nan_controls_raise():
    kw = _good()
    kw["controls"] = kw["controls"].copy()
    kw["controls"][4, 1] = np.nan
    with pytest.raises(NonFiniteError, match=r"controls.*\(4, 1\)"):
        covariance_rollout(**kw)


def test_bad_models_and_sensors():
    with pytest.raises(InvalidInputError, match="dt"):
        Unicycle(0.0)
    with pytest.raises(InvalidInputError, match="wheelbase"):
        Bicycle(0.1, -1.0)
    with pytest.raises(InvalidInputError, match="neither"):
        Beacons([[0.0, 0.0]], None, None)
    with pytest.raises(ShapeError, match=r"positions must have shape \(\*, 2\)"):
        Beacons([0.0, 1.0, 2.0], 0.1)
    with pytest.raises(InvalidInputError, match="range_std"):
        Beacons([[0.0, 1.0]], -0.1)
    with pytest.raises(NonFiniteError, match="positions"):
        Beacons([[0.0, np.inf]], 0.1)
    kw = _good()
    kw["model"] = Bicycle(0.1, 1.0)
    kw["controls"] = np.tile([1.0, 1.6], (10, 1))
    with pytest.raises(InvalidInputError, match="steering"):
        covariance_rollout(**kw)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3),
    st.floats(-10, 10),
)
def test_random_covariances_rejected_unless_spd(diag, off):
    kw = _good()
    P0 = np.diag(diag)
    P0[0, 1] = P0[1, 0] = off
    spd = np.all(np.linalg.eigvalsh(P0) > 1e-12 * max(np.abs(diag).max(), 1e-300))
    kw["P0"] = P0
    if spd:
        assert covariance_rollout(**kw).P.shape == (11, 3, 3)
    else:
        with pytest.raises(InvalidInputError, match="P0"):
            covariance_rollout(**kw)


def test_bearing_only_beacons_need_no_range_std():
    b = Beacons([[1.0, 2.0], [3.0, -1.0]], bearing_std=0.02)
    assert b.range_std is None and b.n_meas == 2 and b.angular.all()
    r = covariance_rollout(Unicycle(0.1), b, np.zeros(3), np.eye(3) * 0.1, np.tile([1.0, 0.1], (10, 1)),
                           np.diag([0.05**2, 0.02**2]), 1e-6 * np.eye(3))  # fmt: skip
    assert np.isfinite(r.P).all()
    with pytest.raises(InvalidInputError, match="range_slope .* needs range measurements"):
        Beacons([[1.0, 2.0]], bearing_std=0.02, range_slope=0.1)
    with pytest.raises(InvalidInputError, match="neither"):
        Beacons([[1.0, 2.0]])
