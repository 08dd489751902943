"""Pseudo-ECG: lead-field weights, forward model and losses against slow references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from physim.cardiac import ecg as E
from physim.errors import InvalidInputError, NonFiniteError, ShapeError


def box_mesh(n, L=10.0, jitter=0.0, seed=0):
    """Cube [0, L]^3 split into n^3 cells of 6 Kuhn tetrahedra (optionally jittered)."""
    g = np.linspace(0.0, L, n + 1)
    X, Y, Z = np.meshgrid(g, g, g, indexing="ij")
    pts = np.c_[X.ravel(), Y.ravel(), Z.ravel()]
    idx = np.arange((n + 1) ** 3).reshape(n + 1, n + 1, n + 1)
    tets = []
    for i, j, k in itertools.product(range(n), repeat=3):
        c = [idx[i + a, j + b, k + d] for a in (0, 1) for b in (0, 1) for d in (0, 1)]
        for p in itertools.permutations((4, 2, 1)):
            tets.append([c[0], c[p[0]], c[p[0] + p[1]], c[7]])
    if jitter:
        rng = np.random.default_rng(seed)
        inner = np.all((pts > 0) & (pts < L), axis=1)
        pts[inner] += rng.uniform(-jitter, jitter, (inner.sum(), 3)) * L / n
    return pts, np.array(tets, dtype=np.int64)


def random_spd(rng, n):
    A = rng.standard_normal((n, 3, 3)) * 0.05
    return np.einsum("kij,klj->kil", A, A) + 0.05 * np.eye(3)


# ------------------------------------------------------------------ slow references


def naive_grads(P):
    """Shape-function gradients of one tet (4, 3) by a linear solve."""
    J = np.array([P[1] - P[0], P[2] - P[0], P[3] - P[0]])  # rows are edges
    # grad N_1..3 solve J g = e_i
    g = np.linalg.solve(J, np.eye(3)).T
    return np.vstack([-g.sum(axis=0), g]), abs(np.linalg.det(J)) / 6.0


def quad_points(P, order):
    """Quadrature points/weights (relative to volume) of one tet: 'order' levels of
    8-fold subdivision of a 4-point degree-2 rule (order=0 is the plain rule)."""
    a, b = 0.5854101966249685, 0.1381966011250105
    bary = np.full((4, 4), b) + np.eye(4) * (a - b)
    tets = [np.asarray(P, float)]
    for _ in range(order):
        new = []
        for T in tets:
            m = {(i, j): 0.5 * (T[i] + T[j]) for i in range(4) for j in range(i, 4)}
            v = lambda i, j, m=m: m[(min(i, j), max(i, j))]  # noqa: E731
            new += [
                np.array([T[0], v(0, 1), v(0, 2), v(0, 3)]),
                np.array([v(0, 1), T[1], v(1, 2), v(1, 3)]),
                np.array([v(0, 2), v(1, 2), T[2], v(2, 3)]),
                np.array([v(0, 3), v(1, 3), v(2, 3), T[3]]),
                np.array([v(0, 1), v(0, 2), v(0, 3), v(1, 3)]),
                np.array([v(0, 1), v(0, 2), v(1, 2), v(1, 3)]),
                np.array([v(0, 2), v(0, 3), v(1, 3), v(2, 3)]),
                np.array([v(0, 2), v(1, 2), v(1, 3), v(2, 3)]),
            ]
        tets = new
    X = np.concatenate([bary @ T for T in tets])
    w = np.full(X.shape[0], 1.0 / X.shape[0])
    return X, w


def naive_ecg_direct(pts, tets, G, electrodes, V, sigma_bath, order):
    """-1/(4 pi sigma) sum_k int_k (G grad V).grad(1/|x-x_e|) dx, element by element."""
    out = np.zeros(len(electrodes))
    c = 1.0 / (4 * math.pi * sigma_bath)
    for k, t in enumerate(tets):
        gr, vol = naive_grads(pts[t])
        gV = gr.T @ V[t]
        X, w = quad_points(pts[t], order)
        for e, xe in enumerate(electrodes):
            r = X - xe
            grad_inv_r = -r / np.linalg.norm(r, axis=1)[:, None] ** 3
            out[e] += -c * vol * np.sum(w * (grad_inv_r @ (G[k] @ gV)))
    return out


@pytest.fixture(scope="module")
def setup():
    pts, tets = box_mesh(3, jitter=0.2, seed=1)
    rng = np.random.default_rng(0)
    G = random_spd(rng, len(tets))
    system = E.standard_12_lead((pts, tets))
    lf = E.lead_field((pts, tets), system, G)
    return pts, tets, G, system, lf


# ------------------------------------------------------------------ weights


def test_weights_match_reference_with_same_quadrature(setup):
    pts, tets, G, system, lf = setup
    rng = np.random.default_rng(3)
    for _ in range(3):
        V = rng.standard_normal(len(pts))
        ref = naive_ecg_direct(pts, tets, G, system.electrodes, V, E.SIGMA_BATH, order=0)
        np.testing.assert_allclose(lf.weights.T @ V, ref, rtol=1e-11, atol=1e-14 * np.abs(ref).max())


def test_weights_match_direct_fine_quadrature(setup):
    """The lead field (4-point rule) agrees with a fine quadrature (64 sub-tets x 4 points)."""
    pts, tets, G, system, lf = setup
    rng = np.random.default_rng(4)
    V = rng.standard_normal(len(pts))
    ref = naive_ecg_direct(pts, tets, G, system.electrodes, V, E.SIGMA_BATH, order=2)
    got = lf.weights.T @ V
    err = np.abs(got - ref) / np.abs(ref)
    assert err.max() < 1e-3, err
    # and the one-point rule is worse but still consistent
    lf1 = E.lead_field((pts, tets), system, G, quadrature=1)
    err1 = np.abs(lf1.weights.T @ V - ref) / np.abs(ref)
    assert err1.max() < 5e-2 and err1.max() > err.max()


def test_constant_potential_gives_no_ecg(setup):
    lf = setup[4]
    s = lf.weights.sum(axis=0)
    assert np.abs(s).max() < 1e-12 * np.abs(lf.weights).max()


def test_isotropic_scalar_conductivity_equals_tensor():
    pts, tets = box_mesh(2)
    el = np.array([[30.0, 5.0, 5.0], [5.0, -25.0, 5.0]])
    a = E.lead_field((pts, tets), el, 0.3)
    b = E.lead_field((pts, tets), el, np.full((len(tets), 3, 3), 0.0) + 0.3 * np.eye(3))
    c = E.lead_field((pts, tets), el, np.full(len(tets), 0.3))
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-14)
    np.testing.assert_allclose(a.weights, c.weights, rtol=1e-14)


def test_dipole_far_field():
    """A uniform gradient of V_m in a cube is a dipole p = -G grad V vol / (4 pi sigma);
    far away the electrode potential approaches p.r / |r|^3."""
    pts, tets = box_mesh(2, L=2.0)
    g = np.array([0.3, -0.2, 0.5])
    V = pts @ g
    sigma = 0.4
    x = np.array([600.0, 350.0, -420.0])
    lf = E.lead_field((pts, tets), x[None, :], sigma, sigma_bath=0.2)
    r = x - pts.mean(axis=0)
    p = -sigma * g * 8.0
    expected = (p @ r) / np.linalg.norm(r) ** 3 / (4 * math.pi * 0.2)
    assert lf.weights[:, 0] @ V == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------ forward


def dense_ecg(lf, phi, model, n_samples, dt, t0):
    t = t0 + dt * np.arange(n_samples)
    V = model.potential(phi, t) - model.v_rest
    return lf.leads.matrix @ (lf.weights.T @ V)


@pytest.mark.parametrize("repol", [True, False])
def test_simulate_matches_dense_reference(setup, repol):
    pts, tets, G, system, lf = setup
    rng = np.random.default_rng(5)
    phi = rng.uniform(-10.0, 120.0, len(pts))  # some before t0, some after the end
    phi[3] = np.inf  # unreached
    phi[7] = 1e300
    apd = rng.uniform(80.0, 140.0, len(pts))
    model = E.ActionPotential(upstroke_ms=3.0, repolarization=repol, apd_ms=apd, repolarization_ms=40.0)
    out = E.simulate_ecg(lf, phi, model=model, n_samples=173, dt=0.7, t0=-3.0)
    ref = dense_ecg(lf, phi, model, 173, 0.7, -3.0)
    assert out.signals.shape == (12, 173)
    np.testing.assert_allclose(out.signals, ref, rtol=1e-9, atol=1e-12 * np.abs(ref).max())


def test_ramp_is_smooth_step():
    from physim.cardiac._ecg_kernels import dramp, ramp

    u = np.linspace(-1.2, 1.2, 241)
    s = np.array([ramp(x) for x in u])
    assert s[0] == 0.0 and s[-1] == 1.0 and np.all(np.diff(s) >= 0)
    assert ramp(0.0) == 0.5 and dramp(0.0) == pytest.approx(0.5)
    h = 1e-6
    for x in (-0.9, -0.3, 0.2, 0.7):
        assert dramp(x) == pytest.approx((ramp(x + h) - ramp(x - h)) / (2 * h), rel=1e-6)


# ------------------------------------------------------------------ losses


def test_losses_values_and_invariance():
    rng = np.random.default_rng(6)
    y = rng.standard_normal((4, 50))
    x = 3.0 * y + 2.0
    assert E.correlation_loss(x, y)[0] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(E.lead_correlations(x, y), 1.0)
    v, g = E.lead_mse_loss(y, y)
    assert v == 0.0 and np.all(g == 0)
    v, _ = E.lead_mse_loss(y + 1.0, y, normalize=False)
    assert v == pytest.approx(4.0)


@pytest.mark.parametrize("loss", [E.lead_mse_loss, E.correlation_loss])
def test_loss_gradients(loss):
    from physim.optim import check_gradient

    rng = np.random.default_rng(7)
    y = rng.standard_normal((3, 40))
    x = y + 0.5 * rng.standard_normal((3, 40))
    chk = check_gradient(lambda z: loss(z, y), x)
    assert chk.ok, chk


# ------------------------------------------------------------------ bad input


def test_electrode_inside_heart_rejected():
    pts, tets = box_mesh(2)
    with pytest.raises(InvalidInputError, match="inside the heart"):
        E.lead_field((pts, tets), [[50.0, 0, 0], [5.1, 4.9, 5.2]], 0.2)
    with pytest.raises(InvalidInputError, match="closer than min_distance"):
        E.lead_field((pts, tets), [[10.5, 5.0, 5.0]], 0.2)


def test_bad_shapes_and_values(setup):
    pts, tets, G, system, lf = setup
    with pytest.raises(ShapeError, match="activation_times"):
        E.simulate_ecg(lf, np.zeros(len(pts) + 1))
    with pytest.raises(InvalidInputError, match=r"activation_times\[2\]"):
        phi = np.zeros(len(pts))
        phi[2] = np.nan
        E.simulate_ecg(lf, phi)
    with pytest.raises(ShapeError, match="conductivity"):
        E.lead_field((pts, tets), system, np.ones((len(tets) - 1, 3, 3)))
    with pytest.raises(InvalidInputError, match="not positive definite"):
        E.lead_field((pts, tets), system, -np.ones(1)[0] * np.tile(np.eye(3), (len(tets), 1, 1)))
    with pytest.raises(ShapeError, match="electrodes"):
        E.lead_field((pts, tets), np.zeros((3, 2)), 0.2)
    with pytest.raises(InvalidInputError, match="v_peak"):
        E.ActionPotential(v_peak=-90.0)
    with pytest.raises(InvalidInputError, match="n_samples"):
        E.simulate_ecg(lf, np.zeros(len(pts)), n_samples=0)
    with pytest.raises(InvalidInputError, match="unknown electrode"):
        E.LeadSystem.from_arrays(np.ones((2, 3)) * 50, ["A", "B"], [("A", "C")])
    ecg = E.simulate_ecg(lf, np.zeros(len(pts)), n_samples=20)
    with pytest.raises(ShapeError, match="d_loss_d_signals"):
        E.adjoint(ecg, np.zeros((12, 21)))


def test_non_finite_target_rejected():
    y = np.zeros((2, 10))
    y[1, 4] = np.nan
    with pytest.raises(NonFiniteError, match=r"target.*\(1, 4\)"):
        E.lead_mse_loss(np.zeros((2, 10)), y)
    with pytest.raises(NonFiniteError, match="target"):
        E.correlation_loss(np.zeros((2, 10)), np.full((2, 10), np.inf))
    with pytest.raises(ShapeError, match="target"):
        E.correlation_loss(np.zeros((2, 10)), np.zeros((3, 10)))


def test_lead_pairs():
    el = np.array([[50.0, 0, 0], [0, 50.0, 0], [0, 0, 50.0]])
    s = E.LeadSystem.from_arrays(el, ["A", "B", "C"], [("A", "B"), ("C", None)], ["AB", "C"])
    np.testing.assert_array_equal(s.matrix, [[1, -1, 0], [0, 0, 1]])


def test_parallel_kernels_equal_serial(setup, monkeypatch):
    pts, tets, G, system, lf = setup
    rng = np.random.default_rng(9)
    phi = rng.uniform(0.0, 60.0, len(pts))
    lam = rng.standard_normal((12, 90))
    a = E.simulate_ecg(lf, phi, n_samples=90)
    ga = E.adjoint(a, lam, conductivity=True)
    monkeypatch.setattr(E, "PARALLEL_WORK", 0)
    b = E.simulate_ecg(lf, phi, n_samples=90)
    gb = E.adjoint(b, lam, conductivity=True)
    np.testing.assert_allclose(b.signals, a.signals, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gb.times, ga.times, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(gb.conductivity, ga.conductivity, rtol=1e-12, atol=1e-15)
