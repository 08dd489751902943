"""Friendlier inputs at the door of physim.eikonal: velocity=, unit warnings, source messages,
dropping degenerate elements."""

import warnings

import numpy as np
import pytest

from physim.eikonal import (
    DroppedElementsWarning,
    TetMesh,
    UnitsWarning,
    box_tet_mesh,
    from_meshio,
    solve,
)
from physim.errors import InvalidInputError, MeshError, ShapeError


@pytest.fixture(scope="module")
def mesh():
    return box_tet_mesh(4, size=20.0, seed=0)


def test_velocity_equals_squared_velocity_tensor(mesh):
    a = solve(mesh, velocity=0.6, sources=[0])
    b = solve(mesh, 0.36, [0])
    assert np.array_equal(a.times, b.times)
    v = np.full(mesh.n_cells, 0.6)
    v[: mesh.n_cells // 2] = 1.2
    c = solve(mesh, velocity=v, sources=[0])
    D = (v**2)[:, None, None] * np.eye(3)
    assert np.array_equal(c.times, solve(mesh, D, [0]).times)


def test_velocity_errors(mesh):
    with pytest.raises(InvalidInputError, match="either D"):
        solve(mesh, 0.36, [0], velocity=0.6)
    with pytest.raises(InvalidInputError, match="velocity="):
        solve(mesh, sources=[0])
    with pytest.raises(InvalidInputError, match="positive"):
        solve(mesh, velocity=-1.0, sources=[0])
    with pytest.raises(ShapeError, match="one value per element"):
        solve(mesh, velocity=np.ones(3), sources=[0])
    with pytest.raises(InvalidInputError, match="sources is required"):
        solve(mesh, velocity=0.6)


def test_mesh_in_metres_warns(mesh):
    metres = TetMesh(mesh.points * 1e-3, mesh.tets)
    with pytest.warns(UnitsWarning, match="metres") as rec:
        act = solve(metres, velocity=0.6, sources=[0])
    assert "activation spans only" in str(rec[0].message) and act.times.max() < 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnitsWarning)
        solve(mesh, velocity=0.6, sources=[0])  # a 20 mm cube at 0.6 mm/ms is plausible


def test_float_node_index_message(mesh):
    with pytest.raises(ShapeError) as exc:
        solve(mesh, velocity=0.6, sources=[22.0])
    msg = str(exc.value)
    assert "integer node indices" in msg and "sources=[22]" in msg
    # a point is still a point
    act = solve(mesh, velocity=0.6, sources=[[10.0, 10.0, 10.0]])
    assert np.isfinite(act.times).all()


def _with_slivers(mesh):
    pts = np.vstack([mesh.points, [[5.0, 5.0, 5.0]]])
    extra = len(pts) - 1
    t0 = mesh.tets[0]
    # a flat tet (the new point on the plane of three vertices) and one repeating a vertex
    pts[extra] = pts[t0[:3]].mean(axis=0)
    slivers = np.array([[t0[0], t0[1], t0[2], extra], [t0[0], t0[0], t0[1], t0[2]]])
    tets = np.vstack([mesh.tets[:5], slivers, mesh.tets[5:]])
    return pts, tets


def test_drop_degenerate_elements(mesh):
    pts, tets = _with_slivers(mesh)
    with pytest.raises(MeshError, match="drop_degenerate=True"):
        TetMesh(pts, tets)
    with pytest.warns(DroppedElementsWarning, match="dropped 2 degenerate element"):
        m = TetMesh(pts, tets, drop_degenerate=True)
    assert m.dropped_cells.tolist() == [5, 6] and m.n_cells == mesh.n_cells
    assert np.array_equal(m.tets, mesh.tets) and np.array_equal(tets[m.kept_cells], mesh.tets)
    assert (
        "original indices: 5, 6" in m.drop_report()
        and "1 point(s) now belong to no element" in m.drop_report()
    )
    act = solve(m, velocity=0.6, sources=[0])
    assert np.array_equal(act.times[:-1], solve(mesh, velocity=0.6, sources=[0]).times)
    assert np.isinf(act.times[-1])  # the orphaned point


def test_drop_degenerate_through_meshio(mesh):
    import meshio

    pts, tets = _with_slivers(mesh)
    mm = meshio.Mesh(pts, [("tetra", tets)])
    with pytest.warns(DroppedElementsWarning):
        m = from_meshio(mm, drop_degenerate=True)
    assert m.dropped_cells.size == 2
    clean = TetMesh(mesh.points, mesh.tets, drop_degenerate=True)
    assert clean.dropped_cells.size == 0 and "no element was dropped" in clean.drop_report()
