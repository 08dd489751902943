"""Digital-twin parametrisations: end-to-end gradients and a small inverse problem."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from physim.cardiac import ecg as E
from physim.cardiac import twin as T
from physim.eikonal import box_tet_mesh
from physim.errors import InvalidInputError, ShapeError
from physim.optim import check_gradient, minimize, transformed


@pytest.fixture(scope="module")
def setup():
    mesh = box_tet_mesh(4, size=10.0, jitter=0.2, seed=1)
    rng = np.random.default_rng(0)
    fib = rng.standard_normal((mesh.n_cells, 3))
    lf = E.lead_field(mesh, E.standard_12_lead(mesh), E.intracellular_conductivity(fib))
    return mesh, fib, lf


def _target(model, x, lf, n=120):
    return E.simulate_ecg(lf, model.forward(x).times, n_samples=n).signals


@pytest.mark.parametrize("loss", ["correlation", "mse"])
def test_taylor_velocities_and_site_times_to_ecg(setup, loss):
    mesh, fib, lf = setup
    m = T.TwinModel(mesh, fib, T.GlobalVelocities(mesh.n_cells), T.CandidateSites([0, 20, 60, 100]))
    target = _target(m, np.array([0.6, 0.3, 0.0, 3.0, 5.0, 7.0]), lf)
    fun = T.ecg_objective(m, lf, target, loss=loss)
    chk = check_gradient(fun, np.array([0.8, 0.35, 1.0, 2.0, 4.0, 6.0]))
    assert chk.ok, chk


def test_taylor_site_positions_to_ecg(setup):
    mesh, fib, lf = setup
    m = T.TwinModel(mesh, fib, T.GlobalVelocities(mesh.n_cells), T.PointSites(2, [1, 1, 1], [9, 9, 9]))
    x_true = np.array([0.6, 0.3, 3.0, 4.0, 5.0, 6.0, 6.0, 5.0, 0.0, 2.0])
    fun = T.ecg_objective(m, lf, _target(m, x_true, lf))
    x = np.array([0.7, 0.33, 3.1, 4.2, 5.3, 6.2, 6.1, 5.4, 0.0, 2.0])
    for seed in range(2):
        chk = check_gradient(fun, x, h0=1e-2, seed=seed)
        assert chk.ok, chk
    # positions alone
    d = np.zeros_like(x)
    d[2:8] = np.random.default_rng(3).standard_normal(6)
    chk = check_gradient(fun, x, direction=d, h0=1e-2)
    assert chk.ok, chk


def test_taylor_region_velocities_through_transform(setup):
    mesh, fib, lf = setup
    labels = (mesh.points[mesh.tets].mean(axis=1)[:, 0] > 5).astype(int)
    m = T.TwinModel(mesh, fib, T.RegionVelocities(labels, ["a", "b"]), T.CandidateSites([0, 124]))
    x_true = np.array([0.6, 0.9, 0.3, 0.4, 0.0, 5.0])
    fun = T.ecg_objective(m, lf, _target(m, x_true, lf))
    t = m.transform()
    fz = transformed(fun, t)
    chk = check_gradient(fz, t.inverse(np.array([0.7, 0.8, 0.35, 0.3, 1.0, 3.0])))
    assert chk.ok, chk


def test_taylor_anisotropic_velocities(setup):
    mesh, fib, lf = setup
    m = T.TwinModel(mesh, fib, T.AnisotropicVelocities(mesh.n_cells), T.CandidateSites([0, 60]))
    fun = T.ecg_objective(m, lf, _target(m, np.array([0.6, 0.5, 0.0, 4.0]), lf), loss="mse")
    chk = check_gradient(fun, np.array([0.8, 0.6, 1.0, 3.0]))
    assert chk.ok, chk
    vf, vc = m.velocity.velocities(np.array([0.8, 0.6]))
    assert np.allclose(vc, 0.48) and np.allclose(vf, 0.8)


def test_taylor_field_velocities_with_regularisation(setup):
    mesh, fib, _ = setup
    fv = T.FieldVelocities(mesh, weight=0.5)
    m = T.TwinModel(mesh, fib, fv, T.CandidateSites([0, 60]))
    rng = np.random.default_rng(4)
    nodes = np.arange(0, mesh.n_points, 2)
    tt = rng.uniform(0, 20, nodes.size)
    fun = T.activation_objective(m, nodes, tt)
    x = np.concatenate(
        [rng.uniform(0.5, 0.7, mesh.n_cells), rng.uniform(0.28, 0.32, mesh.n_cells), [0.0, 3.0]]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        chk = check_gradient(fun, x, h0=1e-3)
    assert chk.ok, chk
    # the regulariser alone against finite differences
    chk = check_gradient(lambda p: fv.regularization(p), x[: 2 * mesh.n_cells])
    assert chk.ok, chk


def test_site_sparsity_prior_value_and_gradient(setup):
    """The L1 earliness prior of CandidateSites: value against its formula, its
    gradient and the full ECG objective with it by Taylor test."""
    mesh, fib, lf = setup
    cs = T.CandidateSites([0, 20, 60, 100], -10.0, 150.0, sparsity=0.3)
    t = np.array([0.0, 40.0, 149.0, 5.0])
    val, g = cs.regularization(t)
    assert val == pytest.approx(0.3 * np.mean((150.0 - t) / 160.0), rel=1e-14)
    chk = check_gradient(lambda p: cs.regularization(p), t)
    assert chk.ok, chk
    assert cs.regularization(np.full(4, 150.0))[0] == 0.0
    assert T.CandidateSites([0, 20]).regularization(np.array([1.0, 2.0]))[0] == 0.0
    m = T.TwinModel(mesh, fib, T.GlobalVelocities(mesh.n_cells), cs)
    target = _target(m, np.array([0.6, 0.3, 0.0, 3.0, 5.0, 7.0]), lf)
    fun = T.ecg_objective(m, lf, target)
    x = np.array([0.8, 0.35, 1.0, 2.0, 4.0, 6.0])
    chk = check_gradient(fun, x)
    assert chk.ok, chk
    # the prior adds exactly its value and gradient to the data term
    m0 = T.TwinModel(
        mesh, fib, T.GlobalVelocities(mesh.n_cells), T.CandidateSites([0, 20, 60, 100], -10.0, 150.0)
    )
    v0, g0 = T.ecg_objective(m0, lf, target)(x)
    v1, g1 = fun(x)
    rv, rg = cs.regularization(x[2:])
    assert v1 == pytest.approx(v0 + rv, rel=1e-12)
    np.testing.assert_allclose(g1, g0 + np.r_[0.0, 0.0, rg], rtol=1e-12, atol=1e-15)
    with pytest.raises(InvalidInputError, match="sparsity"):
        T.CandidateSites([0, 1], sparsity=-1.0)


def test_late_candidate_sites_get_zero_gradient(setup):
    mesh, fib, lf = setup
    m = T.TwinModel(mesh, fib, T.GlobalVelocities(mesh.n_cells), T.CandidateSites([0, 124, 60]))
    x = np.array([0.6, 0.3, 0.0, 140.0, 2.0])
    fun = T.ecg_objective(m, lf, _target(m, np.array([0.6, 0.3, 0.0, 5.0, 3.0]), lf))
    _, g = fun(x)
    assert g[3] == 0.0 and g[2] != 0.0


def test_small_inverse_problem_recovers_parameters():
    """Global velocities and the times of 2 active sites among 6 candidates, from
    activation times at every node, starting far from the truth."""
    mesh = box_tet_mesh(5, size=20.0, jitter=0.15, seed=2)
    fib = np.tile([1.0, 0.3, 0.0], (mesh.n_cells, 1))
    cand = [0, 5, 30, 185, 215, 210]
    m = T.TwinModel(mesh, fib, T.GlobalVelocities(mesh.n_cells), T.CandidateSites(cand, 0.0, 60.0))
    x_true = np.array([0.65, 0.3, 0.0, 60.0, 60.0, 4.0, 60.0, 60.0])
    nodes = np.arange(mesh.n_points)
    tt = m.forward(x_true).times
    fun = T.activation_objective(m, nodes, tt)
    t = m.transform()
    x0 = np.array([1.2, 0.6, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0])
    res = minimize(transformed(fun, t), t.inverse(x0), method="lbfgs", maxiter=300, tol=1e-14)
    x = t.forward(res.x)
    assert abs(x[0] - 0.65) < 0.01 and abs(x[1] - 0.3) < 0.01, x
    assert abs(x[2] - 0.0) < 0.3 and abs(x[5] - 4.0) < 0.3, x
    err = np.abs(m.forward(x).times - tt)
    assert err.max() < 0.3


def test_bad_inputs(setup):
    mesh, fib, lf = setup
    with pytest.raises(ShapeError, match="fibers"):
        T.TwinModel(mesh, fib[:-1], T.GlobalVelocities(mesh.n_cells), T.CandidateSites([0]))
    with pytest.raises(InvalidInputError, match="distinct"):
        T.CandidateSites([0, 0])
    with pytest.raises(InvalidInputError, match="outside the valid range"):
        T.activation_objective(
            T.TwinModel(mesh, fib, T.GlobalVelocities(mesh.n_cells), T.CandidateSites([0])),
            [mesh.n_points],
            [1.0],
        )
    m = T.TwinModel(mesh, fib, T.GlobalVelocities(mesh.n_cells), T.CandidateSites([0]))
    with pytest.raises(ShapeError, match="target"):
        T.ecg_objective(m, lf, np.zeros((11, 50)))
    bad = np.zeros((12, 50))
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        T.ecg_objective(m, lf, bad)
    with pytest.raises(InvalidInputError, match="v_max"):
        T.GlobalVelocities(10, 2.0, 1.0)
    with pytest.raises(ShapeError, match=r"x must have shape \(3,\)"):
        m.forward(np.zeros(4))


def test_element_adjacency_matches_naive(setup):
    mesh = setup[0]
    tets = np.asarray(mesh.tets)
    faces = {}
    for k, t in enumerate(tets):
        for drop in range(4):
            key = tuple(sorted(np.delete(t, drop)))
            faces.setdefault(key, []).append(k)
    naive = sorted(tuple(sorted(v)) for v in faces.values() if len(v) == 2)
    got = sorted(tuple(sorted(p)) for p in T.element_adjacency(tets).tolist())
    assert got == naive


def test_heart_regions_and_region_model():
    from physim.cardiac.heart import load_biventricular

    heart = load_biventricular("10k")
    labels, names = T.heart_regions(heart, endo_layer=0.15)
    assert names == ("lv", "septum", "rv", "endo")
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    rv = T.RegionVelocities(labels, names)
    p = np.array([0.5, 0.6, 0.7, 1.5, 0.2, 0.25, 0.3, 1.4])
    vf, vc = rv.velocities(p)
    assert np.all(vf[labels == 3] == 1.5) and np.all(vc[labels == 1] == 0.25)
    g = rv.vjp(p, np.ones(heart.n_tets), np.zeros(heart.n_tets))
    np.testing.assert_array_equal(g[:4], np.bincount(labels, minlength=4))
