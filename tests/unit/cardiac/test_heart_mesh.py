"""Biventricular heart mesher: validity, tags, watertightness, sizes, files, determinism."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from physim.cardiac import heart as hm
from physim.cardiac.heart import (
    REGION_LV,
    REGION_RV,
    REGION_SEPTUM,
    SURFACE_TAGS,
    HeartGeometry,
    biventricular_mesh,
    boundary_faces,
    classify_boundary,
    load_biventricular,
    read_biventricular,
    save_biventricular,
    tet_volumes,
)
from physim.errors import InvalidInputError, MeshError

GEOM = HeartGeometry()


@pytest.fixture(scope="module")
def heart():
    return biventricular_mesh("10k")


def quality(points, tets):
    """6 sqrt(2) V / l_rms^3: 1 for a regular tetrahedron, -> 0 for slivers/needles."""
    p = points[tets]
    e = np.stack([p[:, i] - p[:, j] for i, j in [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]], 1)
    lrms = np.sqrt((e**2).sum(-1).mean(1))
    return 6 * np.sqrt(2) * tet_volumes(points, tets) / lrms**3


def face_normals(points, faces):
    p = points[faces]
    return np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])


def check_watertight(points, tets, faces):
    # every undirected boundary edge in exactly two faces, with opposite directions
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    und = np.sort(directed, axis=1)
    _, cnt = np.unique(und, axis=0, return_counts=True)
    assert np.all(cnt == 2)
    _, dcnt = np.unique(directed, axis=0, return_counts=True)
    assert np.all(dcnt == 1), "boundary orientation is inconsistent"
    # closed surface of a ball: Euler characteristic 2
    n_v = np.unique(faces).size
    assert n_v - len(cnt) + len(faces) == 2
    # divergence theorem with outward faces gives the mesh volume
    p = points[faces]
    vol_surface = np.einsum("ij,ij->i", p[:, 0], np.cross(p[:, 1], p[:, 2])).sum() / 6.0
    assert vol_surface == pytest.approx(tet_volumes(points, tets).sum(), rel=1e-10)


def test_elements_positive_and_well_shaped(heart):
    vol = tet_volumes(heart.points, heart.tets)
    assert vol.min() > 1e-2 * np.median(vol)
    q = quality(heart.points, heart.tets)
    assert q.min() > 0.15 and np.median(q) > 0.45
    assert heart.tets.dtype == np.int64 and heart.points.dtype == np.float64
    # every point is used
    assert np.unique(heart.tets).size == heart.n_points


def test_watertight_boundary(heart):
    faces = boundary_faces(heart.tets)
    check_watertight(heart.points, heart.tets, faces)
    tagged = np.concatenate([heart.faces[t] for t in SURFACE_TAGS])
    assert len(tagged) == len(faces)
    assert np.unique(np.sort(tagged, axis=1), axis=0).shape[0] == len(faces)


def test_surface_tags_lie_on_their_surfaces(heart):
    a, c = GEOM.lv_radius, GEOM.lv_depth
    x = heart.points
    for tag in SURFACE_TAGS:
        assert len(heart.faces[tag]) > 0 and heart.masks[tag].any()
        mask = np.zeros(heart.n_points, bool)
        mask[heart.faces[tag].ravel()] = True
        np.testing.assert_array_equal(mask, heart.masks[tag])
    # LV endocardium: on the ellipsoid, outward (mesh) normal into the LV cavity
    lv = heart.faces["lv_endo"]
    q = (x[lv, 0] ** 2 + x[lv, 1] ** 2) / a**2 + x[lv, 2] ** 2 / c**2
    np.testing.assert_allclose(q, 1.0, atol=1e-9)
    cen = x[lv].mean(axis=1)
    grad = cen / np.array([a * a, a * a, c * c])
    assert np.all(np.einsum("ij,ij->i", face_normals(x, lv), grad) < 0)
    # base: in the plane z = 0, normal +z
    b = heart.faces["base"]
    assert np.all(x[b, 2] == 0.0)
    nb = face_normals(x, b)
    assert np.all(nb[:, 2] > 0) and np.allclose(nb[:, :2], 0.0, atol=1e-9 * np.abs(nb[:, 2]).max())
    # epicardium: outside the LV endocardial ellipsoid by about a wall, facing outwards
    e = heart.faces["epi"]
    cen = x[e].mean(axis=1)
    grad = cen / np.array([a * a, a * a, c * c])
    assert np.all(np.einsum("ij,ij->i", face_normals(x, e), grad) > 0)
    r_epi = np.sqrt((x[e, 0] ** 2 + x[e, 1] ** 2) / a**2 + x[e, 2] ** 2 / c**2)
    assert r_epi.min() > 1.1
    # RV endocardium: on the RV (+x) side, away from the LV endocardium, below the base
    r = heart.faces["rv_endo"]
    assert np.all(x[r, 0] > 0)
    assert np.all(x[r, 2] <= 0.0)
    r_rv = np.sqrt((x[r, 0] ** 2 + x[r, 1] ** 2) / a**2 + x[r, 2] ** 2 / c**2)
    assert r_rv.min() > 1.2
    # the Dirichlet sets of the fibre problems are disjoint
    for t1, t2 in [("lv_endo", "rv_endo"), ("lv_endo", "epi"), ("rv_endo", "epi")]:
        assert not np.any(heart.masks[t1] & heart.masks[t2])


def test_regions(heart):
    counts = np.bincount(heart.region, minlength=3)
    assert np.all(counts > 0) and counts[REGION_LV] > counts[REGION_SEPTUM] > counts[REGION_RV] / 2
    cen = heart.points[heart.tets].mean(axis=1)
    assert np.all(cen[heart.region == REGION_SEPTUM, 0] > 0)
    assert np.all(cen[heart.region == REGION_RV, 0] > 0)
    # RV free wall lies outside the septum (radially, at the same height)
    rad = np.hypot(cen[:, 0], cen[:, 1])
    assert np.median(rad[heart.region == REGION_RV]) > np.median(rad[heart.region == REGION_SEPTUM]) + 10.0


def test_construction_coordinates(heart):
    tm, ab = heart.transmural, heart.apicobasal
    assert tm.min() >= 0 and tm.max() <= 1
    assert np.all(tm[heart.lv_endo] == 0) and np.all(tm[heart.epi] == 1)
    assert ab[heart.apex] == 0 and np.all(ab[heart.base] == 1)
    assert heart.epi[heart.apex]
    assert heart.points[heart.apex, 2] == heart.points[:, 2].min()


@pytest.mark.parametrize("size, lo, hi", [("10k", 8_000, 12_000), ("65k", 55_000, 75_000)])
def test_size_targets(size, lo, hi):
    m = biventricular_mesh(size)
    assert lo <= m.n_tets <= hi


@pytest.mark.slow
def test_large_size_target():
    m = biventricular_mesh("large")
    assert m.n_tets >= 400_000
    assert tet_volumes(m.points, m.tets).min() > 0
    check_watertight(m.points, m.tets, boundary_faces(m.tets))


def test_deterministic():
    a, b = biventricular_mesh("10k"), biventricular_mesh("10k")
    assert np.array_equal(a.points, b.points) and np.array_equal(a.tets, b.tets)
    assert np.array_equal(a.region, b.region) and a.apex == b.apex
    for t in SURFACE_TAGS:
        assert np.array_equal(a.faces[t], b.faces[t])


@pytest.mark.parametrize(
    "geom",
    [
        HeartGeometry(rv_span=100.0, lv_depth=50.0, rv_cavity=12.0),
        HeartGeometry(lv_radius=20.0, septum=8.0, rv_wall=3.0, rv_extent=0.5),
    ],
)
def test_other_geometries_valid(geom):
    m = biventricular_mesh(edge_length=4.0, geometry=geom)
    assert tet_volumes(m.points, m.tets).min() > 0
    assert quality(m.points, m.tets).min() > 0.1
    check_watertight(m.points, m.tets, boundary_faces(m.tets))
    assert all(len(m.faces[t]) for t in SURFACE_TAGS)


def test_finer_mesh_same_shape():
    """Myocardial volume converges under refinement (same geometry at two resolutions)."""
    v1 = tet_volumes(*(lambda m: (m.points, m.tets))(biventricular_mesh(edge_length=5.0))).sum()
    v2 = tet_volumes(*(lambda m: (m.points, m.tets))(biventricular_mesh(edge_length=2.5))).sum()
    assert abs(v1 - v2) / v2 < 0.03


@pytest.mark.parametrize("size", ["10k", "65k"])
def test_shipped_file_matches_generator(size):
    assert hm.mesh_path(size).exists()
    a, b = load_biventricular(size), biventricular_mesh(size)
    np.testing.assert_allclose(a.points, b.points, rtol=0, atol=1e-12)
    assert np.array_equal(a.tets, b.tets) and np.array_equal(a.region, b.region)
    assert a.apex == b.apex
    np.testing.assert_allclose(a.transmural, b.transmural, atol=1e-12)
    for t in SURFACE_TAGS:  # faces rebuilt from the point masks equal the construction's
        assert np.array_equal(a.faces[t], b.faces[t])


def test_load_generates_missing_file(tmp_path, monkeypatch):
    target = tmp_path / "bivent_10k.vtu"
    monkeypatch.setattr(hm, "mesh_path", lambda size: target)
    m = load_biventricular("10k")
    assert target.exists()
    again = read_biventricular(target)
    assert np.array_equal(again.tets, m.tets)


def test_save_read_roundtrip_and_tet_mesh(tmp_path, heart):
    path = save_biventricular(heart, tmp_path / "h.vtu")
    back = read_biventricular(path)
    assert np.array_equal(back.tets, heart.tets)
    tm = heart.tet_mesh()
    assert tm.n_points == heart.n_points and tm.n_cells == heart.n_tets


def test_classify_rejects_untagged_faces(heart):
    masks = dict(heart.masks)
    masks["epi"] = np.zeros_like(masks["epi"])
    with pytest.raises(MeshError, match="carry no surface tag"):
        classify_boundary(boundary_faces(heart.tets), masks)


def test_read_rejects_plain_mesh(tmp_path, heart):
    from physim.io import write_mesh

    p = write_mesh(tmp_path / "plain.vtu", heart.points, {"tetra": heart.tets})
    with pytest.raises(MeshError, match="not a biventricular mesh"):
        read_biventricular(p)


def test_invalid_arguments():
    with pytest.raises(InvalidInputError, match="size must be one of"):
        biventricular_mesh("huge")
    with pytest.raises(InvalidInputError, match="edge_length"):
        biventricular_mesh(edge_length=0.1)
    with pytest.raises(InvalidInputError, match="edge_length"):
        biventricular_mesh(edge_length=float("nan"))
    with pytest.raises(InvalidInputError, match="geometry must be"):
        biventricular_mesh(geometry={"lv_radius": 3})
    with pytest.raises(InvalidInputError, match="rv_wall"):
        HeartGeometry(rv_wall=-1.0)
    with pytest.raises(InvalidInputError, match="rv_tip"):
        HeartGeometry(rv_tip=20.0, rv_cavity=10.0)
    with pytest.raises(InvalidInputError, match="rv_span"):
        HeartGeometry(rv_span=400.0)
    with pytest.raises(InvalidInputError, match="size must be one of"):
        load_biventricular("1M")


@settings(max_examples=8, deadline=None)
@given(
    lv_radius=st.floats(15.0, 35.0),
    lv_depth=st.floats(40.0, 80.0),
    lv_wall=st.floats(6.0, 14.0),
    septum=st.floats(6.0, 14.0),
    rv_wall=st.floats(2.0, 6.0),
    rv_cavity=st.floats(0.3, 0.7),
    rv_span=st.floats(100.0, 220.0),
    rv_extent=st.floats(0.3, 0.8),
)
def test_random_geometries_give_valid_meshes(
    lv_radius, lv_depth, lv_wall, septum, rv_wall, rv_cavity, rv_span, rv_extent
):
    g = HeartGeometry(
        lv_radius=lv_radius,
        lv_depth=lv_depth,
        lv_wall=lv_wall,
        septum=septum,
        rv_wall=rv_wall,
        rv_cavity=rv_cavity * lv_radius,  # steep RV bumps shear the elements
        rv_span=rv_span,
        rv_extent=rv_extent,
    )
    m = biventricular_mesh(edge_length=6.0, geometry=g)
    assert tet_volumes(m.points, m.tets).min() > 0
    assert quality(m.points, m.tets).min() > 0.05
    check_watertight(m.points, m.tets, boundary_faces(m.tets))
    assert all(len(m.faces[t]) for t in SURFACE_TAGS)
    assert np.all(np.bincount(m.region, minlength=3) > 0)


def test_nearest_node_matches_brute_force(heart):
    rng = np.random.default_rng(5)
    for tag in ("lv_endo", "rv_endo", "epi", "base"):
        for p in rng.uniform(-60, 60, size=(5, 3)):
            idx = [i for i in range(heart.n_points) if heart.masks[tag][i]]
            d = [float(np.sum((heart.points[i] - p) ** 2)) for i in idx]
            assert heart.nearest_node(p, tag) == idx[int(np.argmin(d))]
    both = heart.lv_endo | heart.rv_endo
    p = np.array([10.0, -5.0, -30.0])
    assert heart.nearest_node(p, both) in (heart.nearest_node(p, "lv_endo"), heart.nearest_node(p, "rv_endo"))


def test_nearest_node_errors(heart):
    with pytest.raises(InvalidInputError, match="surface must be one of"):
        heart.nearest_node((0, 0, 0), "septum")
    with pytest.raises(InvalidInputError, match="shape"):
        heart.nearest_node((0, 0, 0), np.ones(3, dtype=bool))
    with pytest.raises(InvalidInputError, match="no node"):
        heart.nearest_node((0, 0, 0), np.zeros(heart.n_points, dtype=bool))
    with pytest.raises(ValueError, match="point"):
        heart.nearest_node((0, 0), "epi")
