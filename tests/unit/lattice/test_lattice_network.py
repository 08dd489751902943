"""SpringNetwork validation, builders, damage and the compatibility matrix."""

import sys
from pathlib import Path

import meshio
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lattice_reference import dense_compatibility  # noqa: E402

from physim.errors import (  # noqa: E402
    InvalidInputError,
    InvalidTypeError,
    MeshError,
    NonFiniteError,
    ShapeError,
)
from physim.lattice import (  # noqa: E402
    SpringNetwork,
    from_mesh,
    remove_bonds,
    square_lattice,
    triangular_lattice,
)

TRI = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.8]])
TRI_BONDS = [[0, 1], [1, 2], [2, 0]]


def test_paper_network_has_14_nodes_28_bonds_of_equal_length():
    net = triangular_lattice((5, 4, 3, 2), 16e-3, fixed=[0, 4])
    assert (net.n_nodes, net.n_bonds, net.dim) == (14, 28, 2)
    np.testing.assert_allclose(net.lengths, 16e-3, rtol=1e-12)
    # every interior node of a triangular lattice has 6 neighbours; degrees sum to 2m
    deg = np.bincount(net.bonds.ravel(), minlength=14)
    assert deg.sum() == 56 and deg.max() == 6
    assert net.fixed_dofs[[0, 4]].all() and net.fixed_dofs.sum() == 4


def test_triangular_lattice_equal_rows_and_bad_rows():
    net = triangular_lattice([4] * 5, 1.0)
    np.testing.assert_allclose(net.lengths, 1.0, rtol=1e-12)
    # 5 rows x 3 horizontal + 4 row pairs x (2*4 - 1) diagonals
    assert net.n_bonds == 5 * 3 + 4 * 7
    with pytest.raises(InvalidInputError, match="differ by at most one"):
        triangular_lattice((5, 3))
    with pytest.raises(InvalidInputError, match="spacing"):
        triangular_lattice((3, 2), spacing=-1.0)


@pytest.mark.parametrize("diagonals, extra", [(False, 0), (True, 1), ("cross", 2)])
def test_square_lattice_bond_counts(diagonals, extra):
    nx, ny = 4, 3
    net = square_lattice(nx, ny, diagonals=diagonals, spacing=0.5)
    assert net.n_nodes == nx * ny
    assert net.n_bonds == (nx - 1) * ny + nx * (ny - 1) + extra * (nx - 1) * (ny - 1)
    np.testing.assert_allclose(net.points[nx + 1], [0.5, 0.5])


def test_from_mesh_tetra_and_triangle():
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=float)
    mesh = meshio.Mesh(pts, [("tetra", np.array([[0, 1, 2, 3], [1, 2, 3, 4]]))])
    net = from_mesh(mesh, fixed=[0])
    assert net.dim == 3 and net.n_bonds == 9  # 6 + 6 edges, 3 shared
    tri = meshio.Mesh(np.column_stack([TRI, np.zeros(3)]), [("triangle", np.array([[0, 1, 2]]))])
    net2 = from_mesh(tri)
    assert net2.dim == 2 and net2.n_bonds == 3
    with pytest.raises(MeshError, match="triangle or tetra"):
        from_mesh(meshio.Mesh(pts, [("vertex", np.array([[0], [1]]))]))


def test_compatibility_matrix_matches_dense_reference():
    rng = np.random.default_rng(1)
    for d in (2, 3):
        pts = rng.standard_normal((7, d))
        bonds = np.array([[i, j] for i in range(7) for j in range(i + 1, 7) if rng.random() < 0.6])
        net = SpringNetwork(pts, bonds, [0])
        np.testing.assert_allclose(
            net.compatibility_matrix().toarray(), dense_compatibility(pts, bonds), atol=1e-14
        )


def test_fixed_as_mask_and_indices_agree():
    mask = np.zeros((3, 2), dtype=bool)
    mask[0] = True
    mask[1, 1] = True
    net = SpringNetwork(TRI, TRI_BONDS, mask)
    assert net.free_dofs.tolist() == [2, 4, 5]
    assert SpringNetwork(TRI, TRI_BONDS, [0]).fixed_dofs[0].all()


def test_remove_bonds_keeps_order_and_maps_indices():
    net = triangular_lattice((5, 4, 3, 2), 16e-3, fixed=[0, 4])
    damaged = remove_bonds(net, [3, 10])
    keep = net.kept_bonds([3, 10])
    assert damaged.n_bonds == 26
    np.testing.assert_array_equal(damaged.bonds, net.bonds[keep])
    np.testing.assert_array_equal(net.remove_bonds([3, 10]).bonds, damaged.bonds)
    with pytest.raises(InvalidInputError, match="outside the valid range"):
        remove_bonds(net, [28])


@pytest.mark.parametrize(
    "points, bonds, fixed, exc, match",
    [
        (TRI[:, :1], TRI_BONDS, [0], ShapeError, r"\(n, 2\) or \(n, 3\)"),
        (TRI, [[0, 1, 2]], [0], ShapeError, "bonds must have shape"),
        (TRI, [[0, 3]], [0], InvalidInputError, "index 3"),
        (TRI, [[0, -1]], [0], InvalidInputError, "index -1"),
        (TRI, [[0.5, 1]], [0], InvalidTypeError, "integer"),
        (TRI, [[0, 0]], [0], InvalidInputError, "joins node 0 to itself"),
        (TRI, [[0, 1], [1, 0]], [0], InvalidInputError, "duplicate bond between nodes 0 and 1"),
        (np.array([[0.0, 0], [0, 0], [1, 1]]), [[0, 1]], [0], InvalidInputError, "zero length"),
        (np.array([[0.0, np.nan], [0, 1], [1, 1]]), [[0, 1]], [0], NonFiniteError, "non-finite"),
        (TRI, TRI_BONDS, [5], InvalidInputError, "index 5"),
        (TRI, TRI_BONDS, np.zeros((2, 2), bool), ShapeError, "boolean fixed mask"),
        (TRI, np.zeros((0, 2), int), [0], ShapeError, "at least one bond"),
    ],
)
def test_network_validation_errors(points, bonds, fixed, exc, match):
    with pytest.raises(exc, match=match):
        SpringNetwork(points, bonds, fixed)


def test_network_is_immutable():
    net = SpringNetwork(TRI, TRI_BONDS, [0])
    with pytest.raises(ValueError):
        net.points[0, 0] = 1.0
