"""The element local updates (the forward's K form and the adjoint's Cholesky form) against an
independent formulation and brute-force minimisation."""

import numpy as np
import pytest
from eikonal_reference import local_update_brute, local_update_ref

from physim.eikonal import _fim as F
from physim.eikonal import _kernels as K
from physim.eikonal.mesh import TET_EDGES, TRI_EDGES, _pair_table


def _random_spd(rng, dim, aniso=4.0):
    Q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    ev = rng.uniform(1.0, aniso, dim)
    return (Q * ev) @ Q.T


def _kernel_update(x_cell, D, times, a):
    """element_update for a single element with vertex coordinates x_cell (nv, dim)."""
    nv = x_cell.shape[0]
    edges = TET_EDGES if nv == 4 else TRI_EDGES
    ev = (x_cell[edges[:, 1]] - x_cell[edges[:, 0]])[None]
    d2, bad = K.element_metrics(np.ascontiguousarray(ev), D[None].copy(), 1e-13)
    assert bad == -1
    cells = np.arange(nv, dtype=np.int64)[None]
    phi = np.array(times, dtype=float)
    return K.element_update(phi, cells, d2, _pair_table(edges, nv), 0, a)


CASES = [(3, 4), (2, 3), (3, 3)]  # (dim, nodes per cell): tets, planar and surface triangles


@pytest.mark.parametrize("dim,nv", CASES)
def test_local_update_matches_plane_wave_fit(dim, nv):
    """Kernel local update == independent plane-wave-fit formulation, on random elements/times."""
    rng = np.random.default_rng(7 + dim + nv)
    n_checked = {1: 0, 2: 0, 3: 0}
    for _ in range(300):
        x = rng.standard_normal((nv, dim))
        if nv == 3 and dim == 3:
            pass  # a triangle in 3D space (surface element)
        D = _random_spd(rng, dim)
        a = int(rng.integers(nv))
        times = rng.uniform(0, 1.5, nv)
        times[a] = np.inf
        # sometimes leave an upwind vertex unknown
        if nv == 4 and rng.random() < 0.2:
            times[(a + 1) % nv] = np.inf
        val, code = _kernel_update(x, D, times, a)
        others = [j for j in range(nv) if j != a and np.isfinite(times[j])]
        ref = local_update_ref(x[a], x[others], times[others], D)
        np.testing.assert_allclose(val, ref, rtol=1e-10, atol=1e-12)
        assert code >> 4 == a
        n_checked[bin(code & 15).count("1")] += 1
    # every kind of update (edge, face and — on tets — the full element) was exercised
    assert n_checked[1] > 0 and n_checked[2] > 0
    if nv == 4:
        assert n_checked[3] > 0


@pytest.mark.parametrize("dim,nv", CASES)
def test_local_update_matches_brute_force_minimisation(dim, nv):
    rng = np.random.default_rng(100 + dim + nv)
    for _ in range(12):
        x = rng.standard_normal((nv, dim))
        D = _random_spd(rng, dim)
        a = nv - 1
        times = np.append(rng.uniform(0, 0.8, nv - 1), np.inf)
        val, _ = _kernel_update(x, D, times, a)
        brute = local_update_brute(x[a], x[:a], times[:a], D)
        # the kernel is the exact minimum: never above the brute force, and equal to its accuracy
        assert val <= brute + 1e-12
        np.testing.assert_allclose(val, brute, rtol=1e-7)


def test_local_update_weights_reproduce_value():
    """support_update's weights λ and s satisfy U = Σλ t + s, Σλ = 1, λ ≥ 0."""
    rng = np.random.default_rng(3)
    edges = TET_EDGES
    pair = _pair_table(edges, 4)
    for _ in range(100):
        x = rng.standard_normal((4, 3))
        D = _random_spd(rng, 3)
        t = np.append(rng.uniform(0, 1, 3), np.inf)
        ev = (x[edges[:, 1]] - x[edges[:, 0]])[None]
        d2, _ = K.element_metrics(np.ascontiguousarray(ev), D[None].copy(), 1e-13)
        cells = np.arange(4, dtype=np.int64)[None]
        val, code = K.element_update(t, cells, d2, pair, 0, 3)
        mu, s, n, o0, o1, o2, l0, l1, l2 = K.support_update(t, cells, d2, pair, 0, code)
        lam = np.array([l0, l1, l2][:n])
        sup = [o for o in (o0, o1, o2)[:n]]
        assert mu == pytest.approx(val, rel=1e-13)
        assert lam.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.all(lam >= 0)
        y = lam @ x[sup]
        r = x[3] - y
        assert s == pytest.approx(np.sqrt(r @ np.linalg.solve(D, r)), rel=1e-10)
        assert mu == pytest.approx(lam @ t[sup] + s, rel=1e-12)


def _geometry(x_cell, D):
    """kmat, d2 of a single element (the forward's precomputation)."""
    nv = x_cell.shape[0]
    edges = TET_EDGES if nv == 4 else TRI_EDGES
    kmat = np.empty((1, 10 if nv == 4 else 3))
    d2 = np.empty((1, edges.shape[0]))
    cells = np.arange(nv, dtype=np.int64)[None]
    bad = F.element_geometry(np.ascontiguousarray(x_cell), cells, D[None].copy(), edges, kmat, d2, 1e-13)
    assert not bad.any()
    return kmat, d2, cells


@pytest.mark.parametrize("dim,nv", CASES)
def test_k_form_update_matches_plane_wave_fit(dim, nv):
    """The forward's K-form update == the independent plane-wave fit, on random elements/times,
    with every kind of winning candidate exercised."""
    rng = np.random.default_rng(17 + dim + nv)
    n_checked = {1: 0, 2: 0, 3: 0}
    for _ in range(400):
        x = rng.standard_normal((nv, dim))
        D = _random_spd(rng, dim, aniso=20.0)
        kmat, d2, cells = _geometry(x, D)
        a = int(rng.integers(nv))
        times = rng.uniform(0, 1.5, nv)
        times[a] = np.inf
        if nv == 4 and rng.random() < 0.2:
            times[(a + 1) % nv] = np.inf
        val, code = F.element_update(kmat, d2, cells, times, 0, a)
        others = [j for j in range(nv) if j != a and np.isfinite(times[j])]
        ref = local_update_ref(x[a], x[others], times[others], D)
        np.testing.assert_allclose(val, ref, rtol=1e-9, atol=1e-12)
        assert code >> 4 == a
        n_checked[bin(code & 15).count("1")] += 1
        # the Cholesky form of the adjoint gives the same value and support
        val2, code2 = K.element_update(
            times, cells, d2, _pair_table(TET_EDGES if nv == 4 else TRI_EDGES, nv), 0, a
        )
        np.testing.assert_allclose(val, val2, rtol=1e-10, atol=1e-12)
    assert n_checked[1] > 0 and n_checked[2] > 0
    if nv == 4:
        assert n_checked[3] > 0


@pytest.mark.parametrize("dim,nv", CASES)
def test_k_matrix_is_the_metric_gram_of_the_basis_gradients(dim, nv):
    """kmat holds ∇Nᵀ D ∇N (rows summing to zero) and d2 the squared metric edge lengths."""
    rng = np.random.default_rng(31 + dim + nv)
    for _ in range(50):
        x = rng.standard_normal((nv, dim))
        D = _random_spd(rng, dim, aniso=10.0)
        kmat, d2, _ = _geometry(x, D)
        edges = TET_EDGES if nv == 4 else TRI_EDGES
        E = x[edges[:, 1]] - x[edges[:, 0]]
        np.testing.assert_allclose(d2[0], np.einsum("ki,ki->k", E, np.linalg.solve(D, E.T).T), rtol=1e-12)
        B = (x[1:] - x[0]).T  # (dim, nv-1) edges from vertex 0
        if nv == 4:  # gradients of the barycentric coordinates 1..3: rows of B⁻¹
            grads = np.linalg.inv(B)
            Kin = grads @ D @ grads.T
        else:  # triangles (planar or surfaces): the inverse metric Gram of the edges
            Kin = np.linalg.inv(B.T @ np.linalg.solve(D, B))
        Kfull = np.zeros((nv, nv))
        Kfull[1:, 1:] = Kin
        Kfull[0, 1:] = Kfull[1:, 0] = -Kin.sum(1)
        Kfull[0, 0] = Kin.sum()
        np.testing.assert_allclose(kmat[0, :nv], np.diag(Kfull), rtol=1e-9)
        if nv == 4:
            off = [Kfull[a, b] for a, b in TET_EDGES]
            np.testing.assert_allclose(kmat[0, 4:], off, rtol=1e-9, atol=1e-12 * np.abs(Kfull).max())


def test_k_bound_prunes_no_update():
    """Pruning bound of the forward: every update of b ≥ min upwind time + 1/sqrt(K_bb),
    and 1/sqrt(K_bb) is the metric distance of b to the opposite face's plane."""
    rng = np.random.default_rng(5)
    for _ in range(200):
        x = rng.standard_normal((4, 3))
        D = _random_spd(rng, 3, aniso=10)
        kmat, d2, cells = _geometry(x, D)
        a = int(rng.integers(4))
        t = rng.uniform(0, 1, 4)
        t[a] = np.inf
        val, _ = F.element_update(kmat, d2, cells, t, 0, a)
        h = 1.0 / np.sqrt(kmat[0, a])
        assert val >= np.min(np.delete(t, a)) + h - 1e-12
        others = [j for j in range(4) if j != a]
        L = np.linalg.cholesky(D)
        z = np.linalg.solve(L, x.T).T
        nrm = np.cross(z[others[1]] - z[others[0]], z[others[2]] - z[others[0]])
        dist = abs((z[a] - z[others[0]]) @ nrm) / np.linalg.norm(nrm)
        assert h == pytest.approx(dist, rel=1e-9)


def test_record_weights_are_feasible_controls():
    """node_weights: λ on the simplex and s the metric distance to the foot point, also where the
    recorded support is no longer feasible at the given times (clipped)."""
    rng = np.random.default_rng(8)
    pair = _pair_table(TET_EDGES, 4)
    for k in range(200):
        x = rng.standard_normal((4, 3))
        D = _random_spd(rng, 3, aniso=10)
        kmat, d2, cells = _geometry(x, D)
        t = np.append(rng.uniform(0, 1, 3), np.inf)
        val, code = F.element_update(kmat, d2, cells, t, 0, 3)
        if k % 2:  # move the upwind times so the recorded support may become infeasible
            t[:3] += rng.uniform(-0.5, 0.5, 3)
        t[3] = val
        w = np.empty((4, 4))
        s = np.empty(4)
        rec_elem = np.array([-1, -1, -1, 0])
        rec_code = np.array([-1, -1, -1, code])
        K.node_weights(t, rec_elem, rec_code, cells, d2, pair, w, s)
        assert np.all(w[:3] == 0.0) and np.all(s[:3] == 0.0)
        lam = w[3, :3]
        assert np.all(lam >= 0) and lam.sum() == pytest.approx(1.0, abs=1e-12)
        r = x[3] - lam @ x[:3]
        assert s[3] == pytest.approx(np.sqrt(r @ np.linalg.solve(D, r)), rel=1e-9, abs=1e-12)
        if k % 2 == 0:  # unchanged times: the control reproduces the update
            assert lam @ t[:3] + s[3] == pytest.approx(val, rel=1e-10)
