"""Reliability at the door of physim.eikonal: typed errors instead of OverflowError, TypingError,
raw ValueError or MemoryError, and no silent garbage from subnormal tensors or ambiguous sources."""

import numpy as np
import pytest

from physim import errors
from physim.eikonal import box_tet_mesh, solve, square_tri_mesh


@pytest.fixture(scope="module")
def mesh():
    return box_tet_mesh(3, 3.0)


def test_huge_init_radius_initialises_every_node(mesh):
    a = solve(mesh, 1.0, [0], init_radius=1e300)
    b = solve(mesh, 1.0, [0], init_radius=100.0)
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_allclose(a.times, np.linalg.norm(mesh.points - mesh.points[0], axis=1), rtol=1e-12)


def test_max_visits_is_an_integer_in_range(mesh):
    for bad in (2**70, 0, np.nan, 1.5, "10"):
        with pytest.raises(errors.PhysimError, match="max_visits"):
            solve(mesh, 1.0, [0], max_visits=bad)


def test_locate_checks_the_point_dimension(mesh):
    with pytest.raises(errors.ShapeError, match=r"pts must have shape \(k, 3\)"):
        mesh.locate(np.zeros((2, 2)))
    cells, _ = mesh.locate([1.0, 1.0, 1.0])
    assert cells.shape == (1,) and cells[0] >= 0
    with pytest.raises(errors.PhysimError, match="tol"):
        mesh.locate([[1.0, 1.0, 1.0]], tol=np.nan)


@pytest.mark.parametrize("D", [1e-320, 1e-310])
def test_subnormal_conduction_is_rejected_not_silently_unreached(mesh, D):
    with pytest.raises(errors.InvalidInputError, match="D"):
        solve(mesh, D, [0])
    with pytest.raises(errors.InvalidInputError, match="overflows"):
        solve(mesh, np.eye(3) * D, [0])


def test_integer_valued_float_sources_are_never_silently_one_point(mesh):
    for src in ([0.0, 5.0, 7.0], np.array([1.0, 1.0, 1.0])):
        with pytest.raises(
            errors.ShapeError, match=r"for node indices pass integers.*for one point pass \[\["
        ):
            solve(mesh, 1.0, src)
    assert solve(mesh, 1.0, [0, 5, 7]).source_kind == "nodes"
    assert solve(mesh, 1.0, [[1.0, 1.0, 1.0]]).source_kind == "points"
    assert solve(mesh, 1.0, [1.5, 1.0, 1.0]).source_kind == "points"  # unambiguous: a point


def test_structured_meshes_validate_their_sizes():
    with pytest.raises(errors.ResourceLimitError, match="structured mesh"):
        box_tet_mesh(10**6)
    with pytest.raises(errors.PhysimError, match="n"):
        box_tet_mesh(np.nan)
    with pytest.raises(errors.PhysimError, match="size"):
        square_tri_mesh(3, size=[1.0, np.inf])
    with pytest.raises(errors.ShapeError, match="n must be a scalar or have 3 entries"):
        box_tet_mesh([2, 2])


def test_huge_velocity_is_an_error_not_inf():
    from physim.eikonal import conduction_tensor

    with pytest.raises(errors.InvalidInputError, match="overflows"):
        conduction_tensor(np.array([[1.0, 0, 0]]), 1e200, 0.1)
