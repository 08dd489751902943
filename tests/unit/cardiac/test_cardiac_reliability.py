"""Door validation of physim.cardiac: flat tetrahedra, sample counts, loss regularisers."""

import numpy as np
import pytest

from physim import errors
from physim.cardiac import ecg as E
from physim.eikonal import box_tet_mesh


@pytest.fixture(scope="module")
def setup():
    m = box_tet_mesh(3, 3.0)
    pts, tets = np.array(m.points), np.array(m.cells)
    system = E.standard_12_lead((pts, tets))
    lf = E.lead_field((pts, tets), system, 0.2)
    phi = np.linalg.norm(pts, axis=1)
    return pts, tets, system, lf, phi


def test_flat_tetrahedron_is_a_mesh_error_not_a_kernel_zero_division(setup):
    pts, tets, system, _, _ = setup
    flat = pts.copy()
    flat[tets[0]] = flat[tets[0][0]] + np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]]) * 0.1
    with pytest.raises(errors.MeshError, match=r"tetrahedron 0 .* degenerate"):
        E.lead_field((flat, tets), system, 0.2)
    rep = tets.copy()
    rep[3, 1] = rep[3, 0]
    with pytest.raises(errors.MeshError, match="tetrahedron 3"):
        E.lead_field((pts, rep), system, 0.2)


@pytest.mark.parametrize("n", [np.nan, None, 0, 2.5, "100", True])
def test_n_samples_is_a_positive_integer(setup, n):
    _, _, _, lf, phi = setup
    with pytest.raises(errors.PhysimError, match="n_samples"):
        E.simulate_ecg(lf, phi, n_samples=n)


def test_n_samples_beyond_memory_is_refused(setup):
    _, _, _, lf, phi = setup
    with pytest.raises(errors.ResourceLimitError, match="n_samples=1000000000000"):
        E.simulate_ecg(lf, phi, n_samples=10**12)


@pytest.mark.parametrize("eps", [0.0, -1.0, np.nan])
def test_correlation_loss_eps_is_validated(setup, eps):
    _, _, _, lf, phi = setup
    sig = E.simulate_ecg(lf, phi, n_samples=50).signals
    with pytest.raises(errors.PhysimError, match="eps"):
        E.correlation_loss(np.zeros_like(sig), sig, eps=eps)


def test_lead_field_arguments_are_validated(setup):
    pts, tets, system, _, _ = setup
    with pytest.raises(errors.PhysimError, match="quadrature"):
        E.lead_field((pts, tets), system, 0.2, quadrature=2)
    with pytest.raises(errors.PhysimError, match="min_distance"):
        E.lead_field((pts, tets), system, 0.2, min_distance=np.nan)
