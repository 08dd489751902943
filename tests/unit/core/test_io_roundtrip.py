import meshio
import numpy as np
import pytest

from physim.errors import MeshError, ShapeError
from physim.io import read_mesh, write_mesh


def _tet_cube():
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=float)
    tets = np.array([[0, 1, 2, 3], [1, 2, 3, 4]])
    return pts, tets


@pytest.mark.parametrize("suffix", [".vtu", ".vtk"])
def test_tet_mesh_roundtrip_with_fields(tmp_path, suffix):
    pts, tets = _tet_cube()
    times = np.array([0.0, 1.5, 2.0, np.inf, 3.25])
    D = np.arange(18, dtype=float).reshape(2, 9)
    path = write_mesh(
        tmp_path / f"m{suffix}", pts, {"tetra": tets}, point_data={"activation": times}, cell_data={"D": D}
    )
    m = read_mesh(path)
    np.testing.assert_array_equal(m.points, pts)
    np.testing.assert_array_equal(m.cells_dict["tetra"], tets)
    np.testing.assert_array_equal(m.point_data["activation"], times)
    np.testing.assert_array_equal(m.cell_data["D"][0], D)


def test_triangle_2d_and_default_suffix(tmp_path):
    pts = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=float)
    tris = np.array([[0, 1, 2], [1, 3, 2]])
    path = write_mesh(tmp_path / "tri", pts, [("triangle", tris)], point_data={"u": np.ones((4, 2))})
    assert path.suffix == ".vtu"
    m = read_mesh(path)
    np.testing.assert_array_equal(m.points[:, :2], pts)
    np.testing.assert_array_equal(m.points[:, 2], 0.0)
    np.testing.assert_array_equal(m.cells_dict["triangle"], tris)
    np.testing.assert_array_equal(m.point_data["u"], np.ones((4, 2)))


def test_line_mesh_mixed_blocks(tmp_path):
    pts = np.random.default_rng(0).random((6, 3))
    lines = np.array([[0, 1], [1, 2], [3, 4]])
    tris = np.array([[0, 1, 5]])
    k = np.array([1.0, 2.0, 3.0, 4.0])
    path = write_mesh(tmp_path / "net.vtu", pts, {"line": lines, "triangle": tris}, cell_data={"k": k})
    m = read_mesh(path)
    np.testing.assert_array_equal(m.cells_dict["line"], lines)
    np.testing.assert_array_equal(np.concatenate(m.cell_data["k"]), k)


def test_reads_foreign_meshio_file(tmp_path):
    pts, tets = _tet_cube()
    meshio.write(tmp_path / "a.msh", meshio.Mesh(pts, [("tetra", tets)]), file_format="gmsh22")
    m = read_mesh(tmp_path / "a.msh")
    np.testing.assert_array_equal(m.cells_dict["tetra"], tets)


def test_io_errors(tmp_path):
    pts, tets = _tet_cube()
    with pytest.raises(FileNotFoundError):
        read_mesh(tmp_path / "nope.vtu")
    (tmp_path / "bad.vtu").write_text("not a mesh")
    with pytest.raises(MeshError, match="bad.vtu"):
        read_mesh(tmp_path / "bad.vtu")
    with pytest.raises(ValueError, match="outside the valid range"):
        write_mesh(tmp_path / "x.vtu", pts, {"tetra": tets + 3})
    with pytest.raises(ShapeError, match="point_data"):
        write_mesh(tmp_path / "x.vtu", pts, {"tetra": tets}, point_data={"a": np.zeros(3)})
    with pytest.raises(ShapeError, match=r"\(m, 4\)"):
        write_mesh(tmp_path / "x.vtu", pts, {"tetra": tets[:, :3]})
    with pytest.raises(MeshError, match="unknown cell type"):
        write_mesh(tmp_path / "x.vtu", pts, {"pyramid13": tets})
    assert not (tmp_path / "x.vtu").exists()
