"""The specialised 3-state / 2-control covariance kernels against the generic ones."""

import numpy as np
import pytest
from ekf_reference import random_spd

from physim.ekf import Beacons, Unicycle, covariance_rollout
from physim.ekf import _kernels as K


def _random_inputs(rng, N, m):
    """Random Jacobians, noise and an SPD P0: a generic instance of the recursion (not a trajectory)."""
    F = np.eye(3) + 0.3 * rng.standard_normal((N, 3, 3))
    G = 0.5 * rng.standard_normal((N, 3, 2))
    H = rng.standard_normal((N, m, 3))
    Rd = rng.uniform(0.05, 2.0, (N, m))
    M = random_spd(rng, 2, 0.1)
    M[0, 1] += 1e-3  # slightly asymmetric: both kernels use sym(M) forward and M as given backward
    return F, G, H, Rd, random_spd(rng, 3, 1.0), M, random_spd(rng, 3, 1e-2)


def _forward(kernel, F, G, H, Rd, P0, M, Q0, joseph):
    N, m = H.shape[0], H.shape[1]
    P, Pm, Kg = np.empty((N + 1, 3, 3)), np.empty((N, 3, 3)), np.empty((N, 3, m))
    fail = kernel(F, G, H, Rd, P0, M, Q0, joseph, P, Pm, Kg)
    return fail, P, Pm, Kg


def _backward(kernel, F, G, H, Kg, Pm, P, M, Pbar):
    N, m = H.shape[0], H.shape[1]
    out = dict(Fb=np.empty((N, 3, 3)), Gb=np.empty((N, 3, 2)), Hb=np.empty((N, m, 3)), Rb=np.empty((N, m)),
               P0b=np.empty((3, 3)), Mb=np.full((2, 2), 0.25), Q0b=np.full((3, 3), -0.5))  # fmt: skip
    kernel(F, G, H, Kg, Pm, P, M, Pbar, *out.values())
    return out


@pytest.mark.parametrize("m", [1, 2, 6, 13])
@pytest.mark.parametrize("joseph", [True, False])
def test_specialised_forward_equals_generic(m, joseph):
    rng = np.random.default_rng(100 + m)
    args = _random_inputs(rng, 40, m)
    f_gen, *ref = _forward(K.cov_forward, *args, joseph)
    f_fast, *got = _forward(K.cov_forward_3x2, *args, joseph)
    assert f_gen == f_fast == -1
    for name, a, b in zip(("P", "P_prior", "gains"), ref, got):
        scale = np.abs(a).max()
        assert np.abs(a - b).max() <= 1e-11 * scale, name
        if name != "gains":
            assert np.array_equal(b, b.transpose(0, 2, 1)), f"{name} not exactly symmetric"


@pytest.mark.parametrize("m", [1, 6, 13])
def test_specialised_adjoint_equals_generic(m):
    rng = np.random.default_rng(200 + m)
    F, G, H, Rd, P0, M, Q0 = _random_inputs(rng, 30, m)
    _, P, Pm, Kg = _forward(K.cov_forward, F, G, H, Rd, P0, M, Q0, True)
    Pbar = rng.standard_normal((31, 3, 3))  # not symmetric: both kernels symmetrise
    ref = _backward(K.cov_adjoint, F, G, H, Kg, Pm, P, M, Pbar)
    got = _backward(K.cov_adjoint_3x2, F, G, H, Kg, Pm, P, M, Pbar)
    for name in ref:
        scale = np.abs(ref[name]).max()
        assert np.abs(ref[name] - got[name]).max() <= 1e-11 * scale, name


def test_specialised_forward_reports_the_same_failing_step():
    rng = np.random.default_rng(300)
    F, G, H, Rd, P0, M, Q0 = _random_inputs(rng, 20, 4)
    Rd[7, 2] = -50.0  # innovation covariance indefinite at step 7
    f_gen = _forward(K.cov_forward, F, G, H, Rd, P0, M, Q0, True)[0]
    f_fast = _forward(K.cov_forward_3x2, F, G, H, Rd, P0, M, Q0, True)[0]
    assert f_gen == f_fast == 7


def test_nearest_beacon_matches_brute_force():
    rng = np.random.default_rng(400)
    X = rng.uniform(-5, 5, (50, 3))
    B = rng.uniform(-5, 5, (7, 2))
    d = np.linalg.norm(X[:, None, :2] - B[None], axis=2)
    k, j, dist = K.nearest_beacon(X, B)
    assert (k, j) == np.unravel_index(np.argmin(d), d.shape)
    assert dist == pytest.approx(d.min(), rel=1e-15)


def test_rollout_uses_the_same_numbers_on_both_paths():
    """A library rollout (specialised path) equals the generic kernel on its own Jacobians."""
    rng = np.random.default_rng(500)
    U = np.column_stack([rng.uniform(0.5, 1.0, 60), rng.uniform(-0.3, 0.3, 60)])
    beacons = Beacons(rng.uniform([-2, -4], [8, 4], (4, 2)), 0.1, 0.02, range_slope=0.01)
    r = covariance_rollout(Unicycle(0.1), beacons, np.zeros(3), np.diag([1.0, 1.0, 0.1]), U,
                           np.diag([0.05**2, 0.02**2]), 1e-6 * np.eye(3))  # fmt: skip
    _, P, Pm, Kg = _forward(K.cov_forward, r.F, r.G, r.H, r.R, r.P0, r.M, r.Q0, True)
    np.testing.assert_allclose(r.P, P, rtol=0, atol=1e-12 * np.abs(P).max())
    np.testing.assert_allclose(r.gains, Kg, rtol=0, atol=1e-11 * np.abs(Kg).max())
