"""P1 Laplace assembly and solves: dense reference, exact linear solutions, convergence, errors."""

import numpy as np
import pytest

from physim.cardiac import fibers as fb
from physim.cardiac.fibers import p1_gradients, solve_laplace, stiffness_matrix
from physim.errors import InvalidInputError, MeshError, SingularSystemError


def box_mesh(n, jitter=0.0, seed=0):
    """Unit cube, n^3 cells, 6 tets per cell (Kuhn split); interior nodes jittered."""
    g = np.linspace(0.0, 1.0, n + 1)
    X, Y, Z = np.meshgrid(g, g, g, indexing="ij")
    pts = np.stack([X, Y, Z], -1).reshape(-1, 3)
    if jitter:
        rng = np.random.default_rng(seed)
        inner = np.all((pts > 1e-12) & (pts < 1 - 1e-12), axis=1)
        pts[inner] += jitter / n * rng.uniform(-1, 1, (inner.sum(), 3))

    def vid(i, j, k):
        return (i * (n + 1) + j) * (n + 1) + k

    tets = []
    perms = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    for i in range(n):
        for j in range(n):
            for k in range(n):
                base = np.array([i, j, k])
                for p in perms:
                    v = [base.copy()]
                    for ax in p:
                        nxt = v[-1].copy()
                        nxt[ax] += 1
                        v.append(nxt)
                    tets.append([vid(*q) for q in v])
    tets = np.array(tets, dtype=np.int64)
    p = pts[tets]
    vol = np.einsum("ij,ij->i", p[:, 1] - p[:, 0], np.cross(p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]))
    tets[vol < 0] = tets[vol < 0][:, [0, 2, 1, 3]]
    return pts, tets


def dense_stiffness(points, tets):
    """Slow reference: per-element gradients from a linear solve of the affine map."""
    n = len(points)
    K = np.zeros((n, n))
    for t in tets:
        x = points[t]
        A = np.hstack([np.ones((4, 1)), x])  # rows [1, x, y, z]; hat coefficients solve A c = I
        C = np.linalg.solve(A, np.eye(4))
        G = C[1:].T  # (4, 3) gradients
        vol = abs(np.linalg.det(x[1:] - x[0])) / 6.0
        K[np.ix_(t, t)] += vol * G @ G.T
    return K


def boundary_nodes(points):
    return np.nonzero(np.any((points < 1e-12) | (points > 1 - 1e-12), axis=1))[0]


def test_stiffness_matches_dense_reference():
    pts, tets = box_mesh(3, jitter=0.3, seed=1)
    K = stiffness_matrix(pts, tets).toarray()
    Kref = dense_stiffness(pts, tets)
    np.testing.assert_allclose(K, Kref, rtol=0, atol=1e-12 * np.abs(Kref).max())
    np.testing.assert_allclose(K, K.T, atol=1e-14)
    np.testing.assert_allclose(K.sum(axis=1), 0.0, atol=1e-12)  # constants are in the kernel


def test_laplace_matches_dense_solve(rng):
    pts, tets = box_mesh(3, jitter=0.3, seed=2)
    n = len(pts)
    nodes = rng.choice(n, size=12, replace=False)
    vals = rng.normal(size=12)
    u = solve_laplace(pts, tets, nodes, vals)
    K = dense_stiffness(pts, tets)
    free = np.setdiff1d(np.arange(n), nodes)
    ref = np.zeros(n)
    ref[nodes] = vals
    ref[free] = np.linalg.solve(K[np.ix_(free, free)], -K[np.ix_(free, nodes)] @ vals)
    np.testing.assert_allclose(u, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("jitter", [0.0, 0.35])
def test_linear_between_parallel_planes_is_exact(jitter):
    pts, tets = box_mesh(4, jitter=jitter, seed=3)
    left = np.nonzero(pts[:, 0] < 1e-12)[0]
    right = np.nonzero(pts[:, 0] > 1 - 1e-12)[0]
    nodes = np.concatenate([left, right])
    vals = np.concatenate([np.zeros(left.size), np.ones(right.size)])
    u = solve_laplace(pts, tets, nodes, vals)
    np.testing.assert_allclose(u, pts[:, 0], atol=1e-11)


def test_any_affine_field_is_exact_and_gradients_exact():
    pts, tets = box_mesh(3, jitter=0.3, seed=4)
    g = np.array([0.3, -1.2, 2.0])
    f = pts @ g + 0.7
    b = boundary_nodes(pts)
    u = solve_laplace(pts, tets, b, f[b])
    np.testing.assert_allclose(u, f, atol=1e-11)
    grads, vol = p1_gradients(pts, tets)
    np.testing.assert_allclose(
        np.einsum("ek,ekd->ed", f[tets], grads), np.tile(g, (len(tets), 1)), atol=1e-11
    )
    assert vol.sum() == pytest.approx(1.0, rel=1e-12)


def test_harmonic_field_converges_second_order():
    errs = []
    for n in (4, 8):
        pts, tets = box_mesh(n)
        x, y, z = pts.T
        f = np.exp(x) * np.cos(y) + np.exp(2 * z) * np.sin(2 * y)  # harmonic
        b = boundary_nodes(pts)
        u = solve_laplace(pts, tets, b, f[b])
        errs.append(np.abs(u - f).max())
    order = np.log2(errs[0] / errs[1])
    assert errs[1] < 1e-2 and order > 1.6


def test_several_right_hand_sides_equal_single_solves(rng):
    pts, tets = box_mesh(3, jitter=0.2, seed=5)
    nodes = boundary_nodes(pts)
    V = rng.normal(size=(nodes.size, 3))
    U = solve_laplace(pts, tets, nodes, V)
    for j in range(3):
        np.testing.assert_allclose(U[:, j], solve_laplace(pts, tets, nodes, V[:, j]), atol=1e-12)


def test_iterative_path_agrees_with_direct(monkeypatch, rng):
    pts, tets = box_mesh(4, jitter=0.3, seed=6)
    nodes = boundary_nodes(pts)
    vals = rng.normal(size=nodes.size)
    direct = solve_laplace(pts, tets, nodes, vals)
    monkeypatch.setattr(fb, "DIRECT_LIMIT", 0)
    cg = solve_laplace(pts, tets, nodes, vals)
    np.testing.assert_allclose(cg, direct, atol=1e-8)
    warm = solve_laplace(pts, tets, nodes, vals, x0=direct + 1e-3)
    np.testing.assert_allclose(warm, direct, atol=1e-8)
    with pytest.raises(InvalidInputError, match="x0 must have shape"):
        solve_laplace(pts, tets, nodes, np.stack([vals, vals], 1), x0=direct)


def test_errors():
    pts, tets = box_mesh(2)
    b = boundary_nodes(pts)
    with pytest.raises(InvalidInputError, match="values must have"):
        solve_laplace(pts, tets, b, np.zeros(b.size + 1))
    with pytest.raises(InvalidInputError, match="nodes is empty"):
        solve_laplace(pts, tets, [], [])
    with pytest.raises(InvalidInputError, match="repeated"):
        solve_laplace(pts, tets, [0, 0], [1.0, 2.0])
    with pytest.raises(InvalidInputError, match="outside the valid range"):
        solve_laplace(pts, tets, [len(pts)], [1.0])
    # a point used by no tetrahedron
    with pytest.raises(MeshError, match="belong to no tetrahedron"):
        solve_laplace(np.vstack([pts, [[5.0, 5.0, 5.0]]]), tets, b, np.zeros(b.size))
    # two disjoint boxes, Dirichlet nodes only on the first
    pts2 = np.vstack([pts, pts + 3.0])
    tets2 = np.vstack([tets, tets + len(pts)])
    with pytest.raises(SingularSystemError, match="no Dirichlet node"):
        solve_laplace(pts2, tets2, b, np.zeros(b.size))
    # degenerate element
    flat = pts.copy()
    flat[:, 2] = 0.0
    with pytest.raises(MeshError, match="degenerate"):
        stiffness_matrix(flat, tets)
    with pytest.raises(InvalidInputError, match="shape"):
        stiffness_matrix(pts[:, :2], tets)
