"""Meshes, conduction tensors and every validation error of the eikonal API."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from physim.eikonal import (
    TetMesh,
    TriMesh,
    box_tet_mesh,
    conduction_tensor,
    from_meshio,
    solve,
    square_tri_mesh,
)
from physim.errors import InvalidInputError, InvalidTypeError, MeshError, NonFiniteError, ShapeError

UNIT_TET = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])


# ---------------------------------------------------------------- meshes
@pytest.mark.parametrize("jitter", [0.0, 0.2])
def test_box_mesh_fills_the_cube_conformingly(jitter):
    mesh = box_tet_mesh((3, 4, 2), size=(1.0, 2.0, 0.5), jitter=jitter, seed=1)
    assert mesh.n_cells == 6 * 3 * 4 * 2 and mesh.n_points == 4 * 5 * 3
    assert mesh.measures.sum() == pytest.approx(1.0, rel=1e-12)
    assert np.all(mesh.measures > 0)
    # conforming: every interior face is shared by exactly two tets, boundary faces by one
    faces = np.sort(mesh.cells[:, [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]].reshape(-1, 3), axis=1)
    _, counts = np.unique(faces, axis=0, return_counts=True)
    assert set(counts) <= {1, 2}
    n_boundary = 2 * 2 * (3 * 4 + 4 * 2 + 3 * 2)
    assert np.sum(counts == 1) == n_boundary
    # positively oriented after construction
    x = mesh.points[mesh.cells]
    vol = np.einsum("ij,ij->i", np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]), x[:, 3] - x[:, 0])
    assert np.all(vol > 0)


def test_square_mesh_area_and_csr_adjacency():
    mesh = square_tri_mesh((4, 3), size=(2.0, 1.5), jitter=0.2, seed=2)
    assert mesh.measures.sum() == pytest.approx(3.0, rel=1e-12)
    for i in range(mesh.n_points):
        sl = slice(mesh.node_cell_ptr[i], mesh.node_cell_ptr[i + 1])
        cells, local = mesh.node_cells[sl], mesh.node_cell_local[sl]
        assert np.all(mesh.cells[cells, local] == i)
        assert set(cells) == set(np.nonzero((mesh.cells == i).any(1))[0])
    k = mesh.pair_index[0, 2]
    np.testing.assert_allclose(
        mesh.edge_vectors[:, k], mesh.points[mesh.cells[:, 2]] - mesh.points[mesh.cells[:, 0]]
    )


def test_inverted_tets_are_reoriented():
    pts = np.vstack([UNIT_TET, [[1.0, 1.0, 1.0]]])
    mesh = TetMesh(pts, np.array([[0, 1, 2, 3], [2, 1, 3, 4]]))  # the second is inverted
    assert mesh.n_reoriented == 1
    x = mesh.points[mesh.cells]
    vol = np.einsum("ij,ij->i", np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]), x[:, 3] - x[:, 0])
    assert np.all(vol > 0)
    assert set(mesh.cells[1]) == {1, 2, 3, 4}


def test_unused_points_are_allowed():
    mesh = TetMesh(np.vstack([UNIT_TET, [[5.0, 5, 5]]]), [[0, 1, 2, 3]])
    assert not mesh.used[4] and mesh.used[:4].all()


@pytest.mark.parametrize(
    "points,cells,err,match",
    [
        (UNIT_TET, [[0, 1, 2, 4]], InvalidInputError, "index 4 .* outside the valid range"),
        (UNIT_TET, [[0, 1, 2, -1]], InvalidInputError, "index -1"),
        (UNIT_TET, [[0, 1, 2]], ShapeError, r"\(\*, 4\)"),
        (UNIT_TET, [[0.0, 1.5, 2, 3]], InvalidTypeError, "integer"),
        (UNIT_TET, np.zeros((0, 4), int), MeshError, "at least one element"),
        (UNIT_TET, [[0, 1, 1, 3]], MeshError, "element 0 repeats a vertex"),
        (np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 0, 1]]), [[0, 1, 2, 3]], MeshError, "degenerate"),
        (
            np.where(np.arange(12).reshape(4, 3) == 4, np.nan, UNIT_TET),
            [[0, 1, 2, 3]],
            MeshError,
            r"points\[1\] is not finite",
        ),
        (UNIT_TET[:, :2], [[0, 1, 2, 3]], MeshError, r"\(n_points, 3\)"),
    ],
)
def test_tet_mesh_validation(points, cells, err, match):
    with pytest.raises(err, match=match):
        TetMesh(points, cells)


def test_tri_mesh_validation():
    with pytest.raises(MeshError, match="degenerate"):
        TriMesh([[0.0, 0], [1, 1], [2, 2]], [[0, 1, 2]])
    with pytest.raises(MeshError, match="degenerate"):
        TriMesh([[0.0, 0, 0], [1, 1, 1], [2, 2, 2]], [[0, 1, 2]])
    with pytest.raises(MeshError, match="2 or 3"):
        TriMesh(np.zeros((3, 4)), [[0, 1, 2]])
    with pytest.raises(InvalidInputError):
        box_tet_mesh(0)
    with pytest.raises(InvalidInputError):
        square_tri_mesh(3, size=-1.0)


def test_from_meshio_roundtrip(tmp_path):
    from physim.io import read_mesh, write_mesh

    mesh = box_tet_mesh(2, jitter=0.1, seed=3)
    path = tmp_path / "box.vtu"
    write_mesh(path, mesh.points, {"tetra": mesh.cells})
    back = from_meshio(read_mesh(path))
    assert isinstance(back, TetMesh)
    np.testing.assert_allclose(back.points, mesh.points)
    np.testing.assert_array_equal(back.cells, mesh.cells)
    tri = square_tri_mesh(3)
    path2 = tmp_path / "sq.vtu"
    write_mesh(path2, np.hstack([tri.points, np.zeros((tri.n_points, 1))]), {"triangle": tri.cells})
    back2 = from_meshio(read_mesh(path2))
    assert isinstance(back2, TriMesh) and back2.dim == 2
    with pytest.raises(MeshError, match="no tetra"):
        from_meshio(read_mesh(path2), cell_type="tetra")


def test_locate_finds_containing_element():
    mesh = box_tet_mesh(3, jitter=0.2, seed=4)
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, (20, 3))
    cells, bary = mesh.locate(p)
    assert np.all(cells >= 0) and np.all(bary >= -1e-9)
    np.testing.assert_allclose(np.einsum("kv,kvd->kd", bary, mesh.points[mesh.cells[cells]]), p, atol=1e-12)
    assert mesh.locate([[1.5, 0.5, 0.5]])[0][0] == -1


# ---------------------------------------------------------------- conduction tensors
def test_conduction_tensor_eigenstructure():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((5, 3)) * 3.0
    D = conduction_tensor(f, 0.6, 0.2)
    fh = f / np.linalg.norm(f, axis=1, keepdims=True)
    np.testing.assert_allclose(np.einsum("eij,ej->ei", D, fh), 0.36 * fh, atol=1e-14)
    np.testing.assert_allclose(np.trace(D, axis1=1, axis2=2), 0.36 + 2 * 0.04)
    # orthotropic with a non-orthogonal sheet input
    fs = rng.standard_normal((5, 2, 3))
    D = conduction_tensor(fs, 0.6, 0.3, 0.1)
    ev = np.linalg.eigvalsh(D)
    np.testing.assert_allclose(ev, np.tile([0.01, 0.09, 0.36], (5, 1)), atol=1e-14)
    # isotropic: D = v² I, and in 2D
    np.testing.assert_allclose(
        conduction_tensor(np.ones((2, 2)), 0.5, 0.5), np.tile(0.25 * np.eye(2), (2, 1, 1))
    )


@pytest.mark.parametrize(
    "args,err,match",
    [
        ((np.zeros((2, 3)), 0.6, 0.2), InvalidInputError, r"fibers\[0\] has zero length"),
        ((np.ones((2, 3)), -0.6, 0.2), InvalidInputError, "v_fiber must be > 0"),
        ((np.ones((2, 3)), 0.6, np.ones(3)), ShapeError, r"v_cross must be a scalar or have shape \(2,\)"),
        ((np.ones((2, 3)), 0.6, 0.2, 0.1), InvalidInputError, "v_normal needs sheet directions"),
        ((np.ones((2, 2, 3)), 0.6, 0.2, 0.1), InvalidInputError, "parallel to its fibre"),
        ((np.ones((2, 4)), 0.6, 0.2), ShapeError, "fibers must have shape"),
        ((np.full((2, 3), np.nan), 0.6, 0.2), NonFiniteError, "fibers"),
    ],
)
def test_conduction_tensor_validation(args, err, match):
    with pytest.raises(err, match=match):
        conduction_tensor(*args)


# ---------------------------------------------------------------- solve errors
@pytest.fixture(scope="module")
def small():
    return box_tet_mesh(2)


@pytest.mark.parametrize(
    "D,err,match",
    [
        (np.diag([1.0, -0.1, 1.0]), InvalidInputError, "not positive definite"),
        (np.array([[1.0, 0.5, 0], [0, 1, 0], [0, 0, 1]]), InvalidInputError, "not symmetric"),
        (np.eye(2), ShapeError, r"D must be a scalar, \(3, 3\) or \(48, 3, 3\)"),
        (-1.0, InvalidInputError, "D must be positive"),
        (np.full((3, 3), np.nan), NonFiniteError, "D contains"),
    ],
)
def test_solve_rejects_bad_D(small, D, err, match):
    with pytest.raises(err, match=match):
        solve(small, D, [0])


def test_solve_names_the_offending_element(small):
    D = np.tile(np.eye(3), (small.n_cells, 1, 1))
    D[17] = np.diag([1.0, 1.0, -2.0])
    with pytest.raises(InvalidInputError, match=r"D\[17\]"):
        solve(small, D, [0])
    D[17] = np.eye(3)
    D[30, 0, 1] = 0.3
    with pytest.raises(InvalidInputError, match=r"D\[30\].*not symmetric"):
        solve(small, D, [0])


def test_solve_source_errors(small):
    with pytest.raises(InvalidInputError, match="sources is empty"):
        solve(small, 1.0, [])
    with pytest.raises(InvalidInputError, match="index 99"):
        solve(small, 1.0, [0, 99])
    with pytest.raises(InvalidInputError, match=r"source point 1 at \[2.0, 0.5, 0.5\] lies outside the mesh"):
        solve(small, 1.0, [[0.5, 0.5, 0.5], [2.0, 0.5, 0.5]])
    with pytest.raises(ShapeError, match="sources"):
        solve(small, 1.0, [[0.5, 0.5]])
    with pytest.raises(ShapeError, match=r"source_times must be a scalar or have shape \(2,\)"):
        solve(small, 1.0, [0, 1], [0.0, 1.0, 2.0])
    with pytest.raises(NonFiniteError, match="source_times"):
        solve(small, 1.0, [0], [np.nan])
    with pytest.raises(InvalidInputError, match="tol must be >= 0"):
        solve(small, 1.0, [0], tol=-1.0)
    with pytest.raises(InvalidInputError, match="init_radius"):
        solve(small, 1.0, [0], init_radius=-0.1)
    with pytest.raises(InvalidInputError, match="active_list"):
        solve(small, 1.0, [0], active_list="stack")
    with pytest.raises(InvalidTypeError, match="TetMesh or TriMesh"):
        solve(small.points, 1.0, [0])
    with pytest.raises(InvalidTypeError, match="sources"):
        solve(small, 1.0, ["a"])
    lonely = TetMesh(np.vstack([small.points, [[3.0, 3, 3]]]), small.cells)
    with pytest.raises(InvalidInputError, match="source node 27 .* belongs to no element"):
        solve(lonely, 1.0, [27])


@settings(max_examples=40, deadline=None)
@given(
    idx=st.lists(st.integers(-50, 80), min_size=1, max_size=4),
    t=st.floats(-10, 10, allow_nan=False),
)
def test_solve_node_sources_property(idx, t):
    """Any index list is either solved (all times ≥ t, sources at t) or rejected with a clear error."""
    mesh = square_tri_mesh(4)
    if all(0 <= i < mesh.n_points for i in idx):
        act = solve(mesh, 0.5, idx, t)
        assert np.all(act.times >= t - 1e-12)
        np.testing.assert_allclose(act.times[idx], t)
    else:
        with pytest.raises(InvalidInputError, match="outside the valid range"):
            solve(mesh, 0.5, idx, t)
