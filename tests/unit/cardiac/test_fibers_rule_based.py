"""Rule-based fibres on the biventricular mesh: Laplace coordinates, frames, helix angles, inputs."""

import numpy as np
import pytest
from scipy.stats import spearmanr

from physim.cardiac.fibers import helix_angles, laplace_coordinates, rule_based
from physim.cardiac.heart import REGION_LV, REGION_RV, REGION_SEPTUM, HeartGeometry, load_biventricular
from physim.errors import InvalidInputError, InvalidTypeError

GEOM = HeartGeometry()


@pytest.fixture(scope="module")
def heart():
    return load_biventricular("10k")


@pytest.fixture(scope="module")
def field(heart):
    return rule_based(heart)


def analytic_frame(heart):
    """Long axis +z and the LV ellipsoid normal at element centroids (the construction's transmural axis)."""
    c = heart.points[heart.tets].mean(axis=1)
    a, cz = GEOM.lv_radius, GEOM.lv_depth
    normal = c / np.array([a * a, a * a, cz * cz])
    return c, np.tile([0.0, 0.0, 1.0], (len(c), 1)), normal


def fit_line(x, y):
    A = np.vstack([np.ones_like(x), x]).T
    b = np.linalg.lstsq(A, y, rcond=None)[0]
    return b[0], b[0] + b[1], np.abs(A @ b - y).max()


def test_frames_orthonormal(field, heart):
    F = field
    assert F.fibers.shape == (heart.n_tets, 3)
    for v in (F.fibers, F.sheets, F.normals):
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.einsum("ij,ij->i", F.fibers, F.sheets), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.einsum("ij,ij->i", F.fibers, F.normals), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.einsum("ij,ij->i", F.sheets, F.normals), 0.0, atol=1e-12)
    assert np.all(np.isfinite(F.fibers))


def test_laplace_coordinates_boundary_values_and_bounds(field, heart):
    co = field.coordinates
    tol = 1e-9
    assert np.all(np.abs(co.phi_epi[heart.lv_endo | heart.rv_endo]) < tol)
    assert np.all(np.abs(co.phi_epi[heart.epi] - 1) < tol)
    assert np.all(np.abs(co.phi_lv[heart.lv_endo] - 1) < tol)
    assert np.all(np.abs(co.phi_rv[heart.rv_endo] - 1) < tol)
    np.testing.assert_allclose(co.phi_epi + co.phi_lv + co.phi_rv, 1.0, atol=1e-12)
    for u in (co.phi_epi, co.phi_lv, co.phi_rv, co.apicobasal):  # maximum principle
        assert u.min() > -tol and u.max() < 1 + tol
    assert co.apicobasal[heart.apex] == 0 and np.all(co.apicobasal[heart.base] == 1)
    assert co.apex == heart.apex


def test_laplace_coordinates_cross_check_construction(field, heart):
    co, tm = field.coordinates, heart.transmural
    x = heart.points

    def nodes_of(region, extra):
        n = np.unique(heart.tets[heart.region == region])
        return n[extra(x[n])]

    mid = lambda p: (p[:, 2] < -10) & (p[:, 2] > -45)  # noqa: E731
    lv = nodes_of(REGION_LV, lambda p: (p[:, 0] < -5) & mid(p))
    d = np.abs(co.phi_epi[lv] - tm[lv])
    assert np.median(d) < 0.05 and d.max() < 0.15
    rv = nodes_of(REGION_RV, mid)
    assert np.abs(co.phi_epi[rv] - tm[rv]).max() < 0.1
    sep = nodes_of(REGION_SEPTUM, mid)
    d = np.abs(co.septal[sep] - tm[sep])
    assert np.percentile(d, 90) < 0.08 and d.max() < 0.15
    assert spearmanr(co.apicobasal, heart.apicobasal).statistic > 0.98


@pytest.mark.parametrize("alpha_endo, alpha_epi", [(60.0, -60.0), (40.0, -50.0)])
def test_helix_angle_endo_to_epi(heart, alpha_endo, alpha_epi):
    F = rule_based(heart, alpha_endo=alpha_endo, alpha_epi=alpha_epi)
    c, el, nrm = analytic_frame(heart)
    h = helix_angles(F.fibers, el, nrm)
    mid = (c[:, 2] < -10) & (c[:, 2] > -40)
    front = np.abs(np.arctan2(c[:, 1], c[:, 0])) < np.radians(45)
    # LV free wall: linear from alpha_endo (LV endocardium) to alpha_epi (epicardium)
    sel = (heart.region == REGION_LV) & (c[:, 0] < -5) & mid
    at0, at1, resid = fit_line(F.transmural[sel], h[sel])
    assert at0 == pytest.approx(alpha_endo, abs=3) and at1 == pytest.approx(alpha_epi, abs=3)
    assert resid < 8
    # RV free wall: the same w.r.t. its own outward axis (RV endocardium -> epicardium)
    sel = (heart.region == REGION_RV) & mid & front
    at0, at1, _ = fit_line(F.transmural[sel], h[sel])
    assert at0 == pytest.approx(alpha_endo, abs=6) and at1 == pytest.approx(alpha_epi, abs=6)
    # septum: alpha_endo on the LV side turning to -alpha_endo (w.r.t. the LV outward axis) on the RV side
    sel = (heart.region == REGION_SEPTUM) & mid & front
    s = F.coordinates.septal[heart.tets].mean(axis=1)
    at0, at1, _ = fit_line(s[sel], h[sel])
    assert at0 == pytest.approx(alpha_endo, abs=3) and at1 == pytest.approx(-alpha_endo, abs=3)


def test_prescribed_helix_matches_measured(field, heart):
    c, el, nrm = analytic_frame(heart)
    sel = (heart.region == REGION_LV) & (c[:, 0] < -5) & (c[:, 2] < -10) & (c[:, 2] > -40)
    h = helix_angles(field.fibers[sel], el[sel], nrm[sel])
    assert np.abs(h - field.helix[sel]).max() < 10  # frame from Laplace gradients vs analytic frame


def test_same_result_for_tetmesh_and_arrays(field, heart):
    tm = heart.tet_mesh()
    tags = dict(lv_endo=heart.lv_endo, rv_endo=np.nonzero(heart.rv_endo)[0], epi=heart.epi, base=heart.base)
    F1 = rule_based(tm, apex=heart.apex, **tags)
    F2 = rule_based(heart.points, heart.tets, apex=heart.apex, **tags)
    np.testing.assert_allclose(F1.fibers, field.fibers, atol=1e-12)
    np.testing.assert_allclose(F2.fibers, field.fibers, atol=1e-12)
    # default apex: epicardial node farthest from the base plane
    F3 = rule_based(heart.points, heart.tets, **tags)
    assert F3.coordinates.apex == heart.apex
    # precomputed coordinates are reused
    F4 = rule_based(heart, coordinates=field.coordinates)
    np.testing.assert_array_equal(F4.fibers, field.fibers)


def test_deterministic(field, heart):
    again = rule_based(heart)
    np.testing.assert_array_equal(again.fibers, field.fibers)


def test_slab_transmural_is_linear():
    """LV-only slab: endocardium x = 0, epicardium x = 1, no RV: phi_epi = x exactly."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_fibers_laplace import box_mesh

    pts, tets = box_mesh(3, jitter=0.3, seed=7)
    lv = pts[:, 0] < 1e-12
    epi = pts[:, 0] > 1 - 1e-12
    base = (pts[:, 2] > 1 - 1e-12) & ~lv & ~epi
    F = rule_based(pts, tets, lv_endo=lv, rv_endo=np.zeros(len(pts), bool), epi=epi, base=base)
    np.testing.assert_allclose(F.coordinates.phi_epi, pts[:, 0], atol=1e-11)
    np.testing.assert_allclose(F.coordinates.septal[~epi], 0.0, atol=1e-12)  # 0.5 on the epicardium
    # sheets are the transmural axis (x) made orthogonal to the longitudinal one
    assert np.all(np.abs(F.sheets[:, 0]) > 0.5)
    np.testing.assert_allclose(np.linalg.norm(F.fibers, axis=1), 1.0, atol=1e-12)


def test_invalid_inputs(heart):
    pts, tets = heart.points, heart.tets
    tags = dict(lv_endo=heart.lv_endo, rv_endo=heart.rv_endo, epi=heart.epi, base=heart.base)
    with pytest.raises(InvalidInputError, match="alpha_endo"):
        rule_based(heart, alpha_endo=120.0)
    with pytest.raises(InvalidInputError, match="epi is required"):
        rule_based(pts, tets, lv_endo=heart.lv_endo, rv_endo=heart.rv_endo, base=heart.base)
    with pytest.raises(InvalidTypeError, match="without tets"):
        rule_based(pts, **tags)
    with pytest.raises(InvalidInputError, match="share"):
        rule_based(pts, tets, **{**tags, "epi": heart.epi | heart.lv_endo})
    with pytest.raises(InvalidInputError, match="lv_endo is empty"):
        rule_based(pts, tets, **{**tags, "lv_endo": np.zeros(len(pts), bool)})
    with pytest.raises(InvalidInputError, match="as a mask must have shape"):
        rule_based(pts, tets, **{**tags, "base": heart.base[:-1]})
    with pytest.raises(InvalidInputError, match="outside the valid range"):
        rule_based(pts, tets, **{**tags, "base": [len(pts) + 3]})
    with pytest.raises(InvalidInputError, match="lies on the base"):
        laplace_coordinates(heart, apex=int(np.argmax(heart.base)))
    with pytest.raises(InvalidInputError, match="apex must be one node"):
        laplace_coordinates(heart, apex=[1, 2])
    with pytest.raises(InvalidInputError, match="coordinates are for"):
        small = load_biventricular("10k")
        co = rule_based(small).coordinates
        from dataclasses import replace

        rule_based(heart, coordinates=replace(co, phi_epi=co.phi_epi[:-1]))
