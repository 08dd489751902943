"""Adjoint of the eikonal solve against finite differences (Taylor tests via physim.optim)."""

import numpy as np
import pytest

from physim.eikonal import (
    EikonalGradient,
    adjoint,
    box_tet_mesh,
    conduction_tensor,
    conduction_tensor_vjp,
    solve,
    square_tri_mesh,
)
from physim.errors import InvalidTypeError, NonFiniteError, ShapeError
from physim.optim import check_gradient


def _rand_spd(rng, dim, lo=0.2, hi=1.5):
    Q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    return (Q * rng.uniform(lo, hi, dim)) @ Q.T


MESHES = {
    "tet": lambda: box_tet_mesh(3, jitter=0.2, seed=2),
    "tri": lambda: square_tri_mesh(6, jitter=0.2, seed=3),
}


def _sym_param(m, dim):
    """x (m * dim(dim+1)/2) <-> symmetric D, and the matching gradient map."""
    iu = np.triu_indices(dim)

    def to_D(x):
        S = np.zeros((m, dim, dim))
        S[:, iu[0], iu[1]] = x.reshape(m, -1)
        S[:, iu[1], iu[0]] = x.reshape(m, -1)
        return S

    def grad(G):  # dL/dx from dL/dD (off-diagonal entries appear twice)
        G2 = G + G.transpose(0, 2, 1)
        G2[:, np.arange(dim), np.arange(dim)] /= 2
        return G2[:, iu[0], iu[1]].ravel()

    def from_D(D):
        return D[:, iu[0], iu[1]].ravel()

    return to_D, grad, from_D


def _loss_weights(rng, n):
    return rng.standard_normal(n)


@pytest.mark.parametrize("kind", ["tet", "tri"])
@pytest.mark.parametrize("sources", ["nodes", "points", "points+radius", "nodes+radius"])
def test_gradient_wrt_D_entries(kind, sources):
    mesh = MESHES[kind]()
    rng = np.random.default_rng(40 + len(sources))
    m, dim = mesh.n_cells, mesh.dim
    D0 = np.stack([_rand_spd(rng, dim) for _ in range(m)])
    w = _loss_weights(rng, mesh.n_points)
    to_D, grad, from_D = _sym_param(m, dim)
    if sources.startswith("nodes"):
        src, st = [0, mesh.n_points - 1], [0.0, 0.3]
    else:
        src, st = rng.uniform(0.2, 0.8, (2, dim)), [0.0, 0.1]
    radius = 0.3 if "radius" in sources else 0.0

    def f(x):
        act = solve(mesh, to_D(x), src, st, tol=0.0, init_radius=radius)
        g = adjoint(act, w)
        return float(w @ act.times), grad(g.D)

    chk = check_gradient(f, from_D(D0))
    assert chk.ok, chk


@pytest.mark.parametrize("kind", ["tet", "tri"])
def test_gradient_wrt_source_times(kind):
    mesh = MESHES[kind]()
    rng = np.random.default_rng(50)
    D = np.stack([_rand_spd(rng, mesh.dim) for _ in range(mesh.n_cells)])
    w = _loss_weights(rng, mesh.n_points)
    src = [0, mesh.n_points // 2, mesh.n_points - 1]

    def f(t):
        act = solve(mesh, D, src, t, tol=0.0)
        return float(w @ act.times) + 0.5 * float(act.times @ act.times), adjoint(
            act, w + act.times
        ).source_times

    chk = check_gradient(f, np.array([0.0, 0.35, 0.2]))
    assert chk.ok, chk


@pytest.mark.parametrize("kind", ["tet", "tri"])
@pytest.mark.parametrize("radius", [0.0, 0.35])
def test_gradient_wrt_point_source_positions(kind, radius):
    mesh = MESHES[kind]()
    rng = np.random.default_rng(60)
    D = np.stack([_rand_spd(rng, mesh.dim) for _ in range(mesh.n_cells)])
    w = _loss_weights(rng, mesh.n_points)
    p0 = rng.uniform(0.25, 0.75, (2, mesh.dim))

    def f(p):
        act = solve(mesh, D, p.reshape(2, -1), [0.0, 0.05], tol=0.0, init_radius=radius)
        g = adjoint(act, w)
        return float(w @ act.times), g.source_points.ravel()

    # small steps: moving a point source across an element face is a kink
    chk = check_gradient(f, p0.ravel(), h0=1e-3)
    assert chk.ok, chk


@pytest.mark.parametrize("orthotropic", [False, True])
@pytest.mark.parametrize("per_element", [False, True])
def test_gradient_wrt_velocities_and_fibres_through_conduction_tensor(orthotropic, per_element):
    mesh = box_tet_mesh(3, jitter=0.2, seed=4)
    rng = np.random.default_rng(70)
    m = mesh.n_cells
    fib = rng.standard_normal((m, 2, 3)) if orthotropic else rng.standard_normal((m, 3))
    w = _loss_weights(rng, mesh.n_points)
    nv = 3 if orthotropic else 2
    v0 = np.array([0.6, 0.3, 0.2][:nv])
    if per_element:
        v0 = np.repeat(v0[:, None], m, axis=1) * rng.uniform(0.8, 1.2, (nv, m))

    def f(v):
        vv = v.reshape(nv, -1) if per_element else v
        args = (fib, vv[0], vv[1], vv[2] if orthotropic else None)
        act = solve(mesh, conduction_tensor(*args), [0, 40], [0.0, 0.1], tol=0.0)
        cg = conduction_tensor_vjp(*args, adjoint(act, w).D)
        parts = [cg.v_fiber, cg.v_cross] + ([cg.v_normal] if orthotropic else [])
        return float(w @ act.times), np.concatenate([np.atleast_1d(p) for p in parts])

    chk = check_gradient(f, v0.ravel())
    assert chk.ok, chk

    def ff(x):
        fb = x.reshape(fib.shape)
        args = (fb, 0.6, 0.3, 0.2 if orthotropic else None)
        act = solve(mesh, conduction_tensor(*args), [0, 40], [0.0, 0.1], tol=0.0)
        return float(w @ act.times), conduction_tensor_vjp(*args, adjoint(act, w).D).fibers.ravel()

    chk = check_gradient(ff, fib.ravel())
    assert chk.ok, chk


def test_full_jacobian_wrt_source_times_by_central_differences():
    """Every column of d(times)/d(source times), on a tiny 2D problem."""
    mesh = square_tri_mesh(3, jitter=0.2, seed=8)
    rng = np.random.default_rng(80)
    D = np.stack([_rand_spd(rng, 2) for _ in range(mesh.n_cells)])
    src = [0, 5, mesh.n_points - 1]
    t0 = np.array([0.0, 0.2, 0.1])
    act = solve(mesh, D, src, t0, tol=0.0)
    J_adj = np.stack([adjoint(act, np.eye(mesh.n_points)[i]).source_times for i in range(mesh.n_points)])
    h = 1e-6
    J_fd = np.stack(
        [
            (
                solve(mesh, D, src, t0 + h * np.eye(3)[k], tol=0.0).times
                - solve(mesh, D, src, t0 - h * np.eye(3)[k], tol=0.0).times
            )
            / (2 * h)
            for k in range(3)
        ],
        axis=1,
    )
    np.testing.assert_allclose(J_adj, J_fd, atol=1e-7)
    # each node depends on the sources through weights that sum to one
    np.testing.assert_allclose(J_adj.sum(1), 1.0, atol=1e-12)


def test_cycles_of_non_causal_updates_are_solved_exactly():
    """Randomly oriented fibres (obtuse elements in the metric) produce non-causal
    dependency cycles in the upwind graph; the gradient stays exact."""
    mesh = box_tet_mesh(3, jitter=0.25, seed=0)
    rng = np.random.default_rng(90)
    m = mesh.n_cells
    D0 = conduction_tensor(rng.standard_normal((m, 3)), 0.6, 0.2)
    w = _loss_weights(rng, mesh.n_points)
    to_D, grad, from_D = _sym_param(m, 3)
    act = solve(mesh, D0, [0, 30], [0.0, 0.1], tol=0.0)
    assert adjoint(act, w).n_cyclic > 0  # this instance exercises the cycle path

    def f(x):
        a = solve(mesh, to_D(x), [0, 30], [0.0, 0.1], tol=0.0)
        return float(w @ a.times), grad(adjoint(a, w).D)

    chk = check_gradient(f, from_D(D0), h0=1e-4)
    assert chk.ok, chk


def test_unreached_points_have_zero_adjoint_and_any_cotangent():
    m1 = box_tet_mesh(2)
    from physim.eikonal import TetMesh

    mesh = TetMesh(np.vstack([m1.points, m1.points + 5.0]), np.vstack([m1.cells, m1.cells + m1.n_points]))
    with pytest.warns(RuntimeWarning):
        act = solve(mesh, 1.0, [0])
    ct = np.ones(mesh.n_points)
    ct[m1.n_points :] = np.nan  # e.g. a loss that produced NaN at inf times
    g = adjoint(act, ct)
    assert isinstance(g, EikonalGradient)
    assert np.all(g.times[m1.n_points :] == 0.0)
    assert np.all(np.isfinite(g.D))
    assert np.all(g.D[m1.n_cells :] == 0.0)
    assert g.source_points is None


def test_adjoint_input_errors():
    mesh = square_tri_mesh(3)
    act = solve(mesh, 1.0, [0])
    with pytest.raises(ShapeError, match="d_loss_d_times"):
        adjoint(act, np.ones(mesh.n_points + 1))
    bad = np.ones(mesh.n_points)
    bad[3] = np.nan
    with pytest.raises(NonFiniteError, match=r"d_loss_d_times\[3\]"):
        adjoint(act, bad)
    with pytest.raises(InvalidTypeError, match="Activation"):
        adjoint(act.times, np.ones(mesh.n_points))


def test_adjoint_is_cheaper_than_forward():
    """One reverse sweep: the adjoint costs less than the forward solve (best of 3)."""
    import time

    mesh = box_tet_mesh(12, jitter=0.2, seed=5)
    rng = np.random.default_rng(5)
    D = conduction_tensor(rng.standard_normal((mesh.n_cells, 3)), 0.6, 0.25)
    act = solve(mesh, D, [0])
    adjoint(act, np.ones(mesh.n_points))
    tf, ta = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        act = solve(mesh, D, [0])
        t1 = time.perf_counter()
        adjoint(act, np.ones(mesh.n_points))
        t2 = time.perf_counter()
        tf.append(t1 - t0)
        ta.append(t2 - t1)
    assert min(ta) < min(tf)


def test_gradient_on_curved_surface_triangles():
    """Triangles on a cylinder in 3D with 3x3 tensors: D entries and a point source on a face."""
    from physim.eikonal import TriMesh

    flat = square_tri_mesh(6, size=(3.0, 1.0), jitter=0.15, seed=9)
    R = 1.5
    u, v = flat.points[:, 0], flat.points[:, 1]
    mesh = TriMesh(np.stack([R * np.cos(u / R), R * np.sin(u / R), v], axis=1), flat.cells)
    rng = np.random.default_rng(95)
    m = mesh.n_cells
    D0 = np.stack([_rand_spd(rng, 3) for _ in range(m)])
    w = _loss_weights(rng, mesh.n_points)
    to_D, grad, from_D = _sym_param(m, 3)
    e = 17
    p = np.array([0.2, 0.3, 0.5]) @ mesh.points[mesh.cells[e]]  # a point on face e

    def f(x):
        act = solve(mesh, to_D(x), p[None], [0.0], tol=0.0)
        return float(w @ act.times), grad(adjoint(act, w).D)

    chk = check_gradient(f, from_D(D0))
    assert chk.ok, chk
