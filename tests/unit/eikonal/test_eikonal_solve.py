"""Forward eikonal solve: exact plane waves, point-source convergence, reference solver, fim-python."""

import warnings

import numpy as np
import pytest
from eikonal_reference import solve_ref
from hypothesis import given, settings
from hypothesis import strategies as st

from physim.eikonal import (
    Activation,
    TetMesh,
    TriMesh,
    UnreachedPointsWarning,
    box_tet_mesh,
    solve,
    square_tri_mesh,
)

PLANE_TOL = 1e-12  # plane waves are reproduced to round-off


def _rand_spd(rng, dim, lo=0.2, hi=1.5):
    Q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    return (Q * rng.uniform(lo, hi, dim)) @ Q.T


def _plane_wave_case(mesh, D, k_dir):
    """Sources on the inflow boundary with exact values of φ = k·x, sqrt(kᵀDk) = 1."""
    k = np.asarray(k_dir, float)
    k = k / np.sqrt(k @ D @ k)
    x = mesh.points
    lo, hi = x.min(0), x.max(0)
    # inflow faces: characteristics run along the ray direction D k (not k), so a
    # box face is an inflow face when D k points into the box through it
    ray = D @ k
    inflow = np.zeros(len(x), bool)
    for d in range(x.shape[1]):
        inflow |= np.isclose(x[:, d], lo[d] if ray[d] > 0 else hi[d])
    src = np.nonzero(inflow)[0]
    return k, src, x[src] @ k


@pytest.mark.parametrize("jitter", [0.0, 0.22])
@pytest.mark.parametrize("aniso", [False, True])
def test_plane_wave_exact_tets(jitter, aniso):
    rng = np.random.default_rng(11)
    mesh = box_tet_mesh((5, 4, 6), size=(1.0, 0.8, 1.3), jitter=jitter, seed=3)
    D = _rand_spd(rng, 3, 0.1, 2.0) if aniso else 0.36 * np.eye(3)
    k, src, t0 = _plane_wave_case(mesh, D, [0.7, 0.4, 0.55])
    act = solve(mesh, D, src, t0)
    exact = mesh.points @ k
    assert np.max(np.abs(act.times - exact)) <= PLANE_TOL * np.max(exact)
    # interior nodes took the full tet update somewhere
    assert np.any(act.update_kind == 3)


@pytest.mark.parametrize("jitter", [0.0, 0.22])
@pytest.mark.parametrize("aniso", [False, True])
def test_plane_wave_exact_triangles_2d(jitter, aniso):
    rng = np.random.default_rng(12)
    mesh = square_tri_mesh((9, 7), size=(1.0, 0.7), jitter=jitter, seed=4)
    D = _rand_spd(rng, 2, 0.1, 2.0) if aniso else 0.5 * np.eye(2)
    k, src, t0 = _plane_wave_case(mesh, D, [0.8, 0.45])
    act = solve(mesh, D, src, t0)
    exact = mesh.points @ k
    assert np.max(np.abs(act.times - exact)) <= PLANE_TOL * np.max(exact)


def test_surface_triangles_in_3d_match_planar_solution():
    """A planar triangle mesh rotated into 3D with a 3x3 D having the plane invariant."""
    rng = np.random.default_rng(13)
    m2 = square_tri_mesh(8, jitter=0.2, seed=5)
    D2 = _rand_spd(rng, 2)
    Q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    D3 = Q @ np.block([[D2, np.zeros((2, 1))], [np.zeros((1, 2)), np.array([[0.7]])]]) @ Q.T
    pts3 = np.hstack([m2.points, np.zeros((m2.n_points, 1))]) @ Q.T + np.array([0.3, -1.0, 2.0])
    m3 = TriMesh(pts3, m2.cells)
    assert m3.dim == 3
    k, src, t0 = _plane_wave_case(m2, D2, [0.6, 0.8])
    a2 = solve(m2, D2, src, t0)
    a3 = solve(m3, D3, src, t0)
    np.testing.assert_allclose(a3.times, a2.times, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(a3.times, m2.points @ k, atol=PLANE_TOL)
    # point sources on the surface too
    p2 = np.array([[0.41, 0.37]])
    p3 = np.hstack([p2, [[0.0]]]) @ Q.T + np.array([0.3, -1.0, 2.0])
    np.testing.assert_allclose(solve(m3, D3, p3).times, solve(m2, D2, p2).times, rtol=1e-11)


def _point_source_errors(radius, ns, D):
    errs = []
    for n in ns:
        mesh = square_tri_mesh(n, 2.0, origin=-1.0)
        c = int(np.argmin((mesh.points**2).sum(1)))
        act = solve(mesh, D, [c], init_radius=radius)
        x = mesh.points
        exact = np.sqrt(np.einsum("ij,ij->i", x, np.linalg.solve(D, x.T).T))
        errs.append(np.max(np.abs(act.times - exact)))
    return np.array(errs)


def test_point_source_convergence_with_and_without_exact_initialisation():
    """max error vs sqrt(xᵀD⁻¹x): order ≈ 0.6 from a bare node source, ≈ 1 with the exact
    initialisation of a fixed radius (the scheme is first order where the solution is smooth)."""
    th = 0.5
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    D = R @ np.diag([1.0, 0.16]) @ R.T
    ns = [16, 32, 64]
    bare = _point_source_errors(0.0, ns, D)
    init = _point_source_errors(0.4, ns, D)
    order_bare = np.log2(bare[:-1] / bare[1:])
    order_init = np.log2(init[:-1] / init[1:])
    assert np.all(np.diff(bare) < 0) and np.all(np.diff(init) < 0)  # both converge
    assert 0.4 < order_bare[-1] < 0.85
    assert order_init[-1] > 0.9
    assert np.all(init < bare)


def test_point_source_3d_anisotropic_converges():
    D = np.diag([1.0, 0.3, 0.5])
    errs = []
    for n in (4, 8, 12):
        mesh = box_tet_mesh(n, 2.0, origin=-1.0)
        c = int(np.argmin((mesh.points**2).sum(1)))
        act = solve(mesh, D, [c], init_radius=0.3)
        x = mesh.points
        exact = np.sqrt(np.einsum("ij,ij->i", x, np.linalg.solve(D, x.T).T))
        errs.append(np.max(np.abs(act.times - exact)))
    assert errs[0] > errs[1] > errs[2]


def _ref_init(mesh, D, act):
    """Initial values of the reference solver, computed independently from the sources."""
    init = np.full(mesh.n_points, np.inf)
    for s in range(act.source_times.size):
        if act.source_kind == "nodes":
            init[act.sources[s]] = min(init[act.sources[s]], act.source_times[s])
        else:
            e = act.source_elements[s]
            for v in mesh.cells[e]:
                r = mesh.points[v] - act.sources[s]
                init[v] = min(init[v], act.source_times[s] + np.sqrt(r @ np.linalg.solve(D[e], r)))
    return init


@pytest.mark.parametrize(
    "make",
    [
        lambda: box_tet_mesh(2, jitter=0.2, seed=1),
        lambda: box_tet_mesh((3, 2, 2), size=(1.5, 1, 1), jitter=0.2, seed=2),
        lambda: square_tri_mesh(5, jitter=0.25, seed=3),
    ],
    ids=["tet2", "tet3x2x2", "tri5"],
)
@pytest.mark.parametrize("kind", ["nodes", "points"])
def test_matches_reference_relaxation_heterogeneous(make, kind):
    """Random per-element SPD tensors (strong heterogeneity, non-causal updates included)."""
    mesh = make()
    rng = np.random.default_rng(mesh.n_cells)
    D = np.stack([_rand_spd(rng, mesh.dim, 0.05, 2.0) for _ in range(mesh.n_cells)])
    if kind == "nodes":
        act = solve(mesh, D, [0, mesh.n_points // 2], [0.0, 0.25], tol=0.0)
    else:
        pts = rng.uniform(0.15, 0.85, (2, mesh.dim))
        act = solve(mesh, D, pts, [0.1, 0.0], tol=0.0)
    ref = solve_ref(mesh.points, mesh.cells, D, _ref_init(mesh, D, act))
    np.testing.assert_allclose(act.times, ref, rtol=1e-11, atol=1e-12)


def test_fifo_and_heap_active_lists_reach_the_same_fixed_point():
    rng = np.random.default_rng(21)
    mesh = box_tet_mesh(5, jitter=0.2, seed=9)
    D = np.stack([_rand_spd(rng, 3, 0.1, 2.0) for _ in range(mesh.n_cells)])
    a_heap = solve(mesh, D, [0, 77], [0.0, 0.2], tol=0.0)
    a_fifo = solve(mesh, D, [0, 77], [0.0, 0.2], tol=0.0, active_list="fifo")
    np.testing.assert_allclose(a_fifo.times, a_heap.times, rtol=1e-13)
    assert a_heap.visits <= a_fifo.visits


def test_sources_keep_the_earliest_arrival():
    """A late source overtaken by an earlier wave takes the earlier time (min semantics)."""
    mesh = square_tri_mesh(10)
    a1 = solve(mesh, 1.0, [0])
    far = mesh.n_points - 1
    a2 = solve(mesh, 1.0, [0, far], [0.0, 100.0])
    np.testing.assert_allclose(a2.times, a1.times)
    assert a2.source_of[far] == -1 and a2.update_kind[far] > 0
    assert a2.source_of[0] == 0 and a2.update_kind[0] == 0


def test_point_source_initialises_containing_element_exactly():
    rng = np.random.default_rng(2)
    mesh = box_tet_mesh(3, jitter=0.15, seed=2)
    D = _rand_spd(rng, 3)
    p = np.array([[0.41, 0.52, 0.33]])
    act = solve(mesh, D, p, 1.5)
    e = act.source_elements[0]
    for v in mesh.cells[e]:
        r = mesh.points[v] - p[0]
        assert act.times[v] <= 1.5 + np.sqrt(r @ np.linalg.solve(D, r)) + 1e-15
    # and with a radius, every node within it is exact
    act = solve(mesh, D, p, 1.5, init_radius=0.4)
    near = np.linalg.norm(mesh.points - p, axis=1) <= 0.4
    r = mesh.points[near] - p
    exact = 1.5 + np.sqrt(np.einsum("ij,ij->i", r, np.linalg.solve(D, r.T).T))
    np.testing.assert_allclose(act.times[near], exact, rtol=1e-13)


def test_unreached_component_is_inf_with_a_warning():
    m1 = box_tet_mesh(2)
    pts = np.vstack([m1.points, m1.points + 5.0, [[9.0, 9.0, 9.0]]])  # + one unused point
    cells = np.vstack([m1.cells, m1.cells + m1.n_points])
    mesh = TetMesh(pts, cells)
    with pytest.warns(UnreachedPointsWarning, match=f"{m1.n_points} of {mesh.n_points} mesh points"):
        act = solve(mesh, 1.0, [0])
    assert np.all(np.isfinite(act.times[: m1.n_points]))
    assert np.all(np.isinf(act.times[m1.n_points :]))
    assert act.n_unreached == m1.n_points + 1
    assert np.all(act.update_kind[m1.n_points :] == -1)


def test_unused_points_alone_do_not_warn():
    m1 = box_tet_mesh(2)
    mesh = TetMesh(np.vstack([m1.points, [[3.0, 3.0, 3.0]]]), m1.cells)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        act = solve(mesh, 1.0, [0])
    assert np.isinf(act.times[-1]) and act.n_unreached == 1


def test_activation_is_frozen_and_read_only():
    mesh = square_tri_mesh(4)
    act = solve(mesh, 1.0, [0])
    assert isinstance(act, Activation)
    with pytest.raises(AttributeError):
        act.times = None
    with pytest.raises(ValueError):
        act.times[0] = 1.0
    D = np.tile(np.eye(2), (mesh.n_cells, 1, 1))
    solve(mesh, D, [0])
    D[0, 0, 0] = 2.0  # the caller's array stays writable


def test_isotropic_scalar_D_is_squared_speed():
    mesh = square_tri_mesh(6)
    v = 0.6
    a = solve(mesh, v**2, [0])
    # along the x edge from node 0 the time is distance / v
    on_edge = np.isclose(mesh.points[:, 1], 0.0)
    np.testing.assert_allclose(a.times[on_edge], mesh.points[on_edge, 0] / v, rtol=1e-13)


@pytest.mark.parametrize("dim", [2, 3])
def test_agrees_with_fim_python(dim):
    fp = pytest.importorskip("fimpy")
    rng = np.random.default_rng(30 + dim)
    mesh = box_tet_mesh(3, jitter=0.2, seed=6) if dim == 3 else square_tri_mesh(8, jitter=0.2, seed=6)
    D = np.stack([_rand_spd(rng, dim, 0.2, 1.5) for _ in range(mesh.n_cells)])
    src = np.array([0, mesh.n_points // 3])
    act = solve(mesh, D, src, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        solver = fp.create_fim_solver(
            mesh.points, mesh.cells, D, device="cpu", use_active_list=True, precision=np.float64
        )
        ref = solver.comp_fim(src, np.zeros(2))
    # fim-python stops each node at its convergence threshold (1e-9)
    np.testing.assert_allclose(act.times, ref, atol=1e-8)


@settings(max_examples=15, deadline=None)
@given(
    c=st.floats(0.2, 5.0),
    shift=st.floats(-50.0, 50.0),
    seed=st.integers(0, 10_000),
)
def test_speed_scaling_and_time_shift_identities(c, shift, seed):
    """Speeds times c and source times t₀/c + s give φ(D, t₀)/c + s (to round-off, any D)."""
    rng = np.random.default_rng(seed)
    mesh = box_tet_mesh(3, jitter=0.2, seed=seed % 7)
    D = np.stack([_rand_spd(rng, 3, 0.1, 2.0) for _ in range(mesh.n_cells)])
    src = rng.choice(mesh.n_points, 2, replace=False)
    t0 = rng.uniform(0, 1, 2)
    base = solve(mesh, D, src, t0, tol=0.0)
    scaled = solve(mesh, c**2 * D, src, t0 / c + shift, tol=0.0)
    np.testing.assert_allclose(scaled.times, base.times / c + shift, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(scaled.update_kind, base.update_kind)


def test_many_node_sources_with_repeated_nodes():
    """Node sources set their own node (the earliest source of a node wins): a source list with
    repeated nodes solves like the de-duplicated one, and source_D is the mean D of the incident cells."""
    from physim.eikonal import box_tet_mesh, conduction_tensor, solve

    mesh = box_tet_mesh(6, size=20.0, jitter=0.2, seed=3)
    rng = np.random.default_rng(0)
    D = conduction_tensor(rng.standard_normal((mesh.n_cells, 3)), 0.6, 0.3)
    src = rng.choice(mesh.n_points, 40, replace=False)
    src = np.r_[src, src[:10]]
    t = rng.uniform(0, 10, src.size)
    t[40:] = t[:10] + np.array([-1.0, 0.0, 1.0, -2.0, 0.0, 3.0, -0.5, 0.0, 2.0, -1.0])
    a = solve(mesh, D, src, t)
    best = {}
    for i, (n, ti) in enumerate(zip(src.tolist(), t.tolist())):
        if n not in best or ti < best[n][0]:
            best[n] = (ti, i)
    nodes = np.array(list(best))
    b = solve(mesh, D, nodes, np.array([best[n][0] for n in nodes]))
    np.testing.assert_array_equal(a.times, b.times)
    for n, (_, i) in best.items():
        assert a.source_of[n] in (i, -1)
    ref = np.array(
        [D[mesh.node_cells[mesh.node_cell_ptr[n] : mesh.node_cell_ptr[n + 1]]].mean(0) for n in src]
    )
    np.testing.assert_allclose(a.source_D, ref, rtol=1e-13, atol=1e-15)
