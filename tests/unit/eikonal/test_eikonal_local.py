"""The element local update against an independent formulation and brute-force minimisation."""

import numpy as np
import pytest
from eikonal_reference import local_update_brute, local_update_ref

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


def test_metric_heights_bound_every_update():
    """Pruning bound: every local update ≥ min upwind time + metric height."""
    rng = np.random.default_rng(5)
    edges = TET_EDGES
    pair = _pair_table(edges, 4)
    for _ in range(200):
        x = rng.standard_normal((4, 3))
        D = _random_spd(rng, 3, aniso=10)
        ev = (x[edges[:, 1]] - x[edges[:, 0]])[None]
        d2, _ = K.element_metrics(np.ascontiguousarray(ev), D[None].copy(), 1e-13)
        h = K.metric_heights(d2, pair)
        a = int(rng.integers(4))
        t = rng.uniform(0, 1, 4)
        t[a] = np.inf
        val, _ = K.element_update(t, np.arange(4, dtype=np.int64)[None], d2, pair, 0, a)
        assert val >= np.min(np.delete(t, a)) + h[0, a] - 1e-12
        # and the height is the metric distance of vertex a to the opposite face's plane
        others = [j for j in range(4) if j != a]
        L = np.linalg.cholesky(D)
        z = np.linalg.solve(L, x.T).T
        nrm = np.cross(z[others[1]] - z[others[0]], z[others[2]] - z[others[0]])
        dist = abs((z[a] - z[others[0]]) @ nrm) / np.linalg.norm(nrm)
        assert h[0, a] == pytest.approx(dist, rel=1e-9)
