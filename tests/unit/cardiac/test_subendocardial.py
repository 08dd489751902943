"""Distances to the endocardium, the subendocardial candidate set and synthetic ground truths."""

from __future__ import annotations

import numpy as np
import pytest

from physim.cardiac import twin as T
from physim.cardiac.heart import (
    HeartGeometry,
    biventricular_mesh,
    endocardial_depth,
    farthest_point_sample,
    load_biventricular,
    point_triangle_distance,
    save_biventricular,
    subendocardial_nodes,
    surface_distance,
)
from physim.cardiac.study import GroundTruth, TruthPrior, load_heart
from physim.errors import InvalidInputError


@pytest.fixture(scope="module")
def heart():
    return load_biventricular("10k")


def _naive_point_triangle(p, a, b, c, n=60):
    """Slow reference: the minimum over a dense barycentric sampling plus the exact edge distances."""
    u, v = np.meshgrid(np.linspace(0, 1, n + 1), np.linspace(0, 1, n + 1))
    keep = u + v <= 1
    q = a + u[keep, None] * (b - a) + v[keep, None] * (c - a)
    best = np.linalg.norm(q - p, axis=1).min()
    for e0, e1 in ((a, b), (b, c), (c, a)):
        d = e1 - e0
        t = np.clip(np.dot(p - e0, d) / np.dot(d, d), 0, 1)
        best = min(best, np.linalg.norm(e0 + t * d - p))
    # the face: projection if it falls inside
    nrm = np.cross(b - a, c - a)
    nrm /= np.linalg.norm(nrm)
    pp = p - np.dot(p - a, nrm) * nrm
    m = np.column_stack([b - a, c - a])
    lam = np.linalg.lstsq(m, pp - a, rcond=None)[0]
    if lam.min() >= 0 and lam.sum() <= 1:
        best = min(best, abs(np.dot(p - a, nrm)))
    return best


def test_point_triangle_distance_against_reference():
    rng = np.random.default_rng(0)
    n = 300
    a, b, c = (rng.normal(0, 1, (n, 3)) for _ in range(3))
    p = rng.normal(0, 2, (n, 3))
    # include points on vertices, edges and inside the face
    p[:20] = a[:20]
    p[20:40] = 0.5 * (b[20:40] + c[20:40])
    p[40:60] = (a[40:60] + b[40:60] + c[40:60]) / 3 + 0.3 * np.cross(b[40:60] - a[40:60], c[40:60] - a[40:60])
    d = point_triangle_distance(p, a, b, c)
    ref = np.array([_naive_point_triangle(p[i], a[i], b[i], c[i]) for i in range(n)])
    np.testing.assert_allclose(d, ref, atol=1e-9)
    assert np.all(d[:20] == 0.0)


def test_surface_distance_equals_brute_force(heart):
    tri = np.concatenate([heart.faces["lv_endo"], heart.faces["rv_endo"]])
    P = heart.points
    rng = np.random.default_rng(1)
    q = rng.choice(heart.n_points, 150, replace=False)
    brute = np.array(
        [
            point_triangle_distance(
                np.repeat(P[[i]], len(tri), 0), P[tri[:, 0]], P[tri[:, 1]], P[tri[:, 2]]
            ).min()
            for i in q
        ]
    )
    d = endocardial_depth(heart)
    np.testing.assert_allclose(d[q], brute, atol=1e-12)
    assert np.all(d[heart.lv_endo | heart.rv_endo] == 0.0)
    # max_distance: exact below, inf (or exact) beyond
    dd = endocardial_depth(heart, max_depth=2.0)
    ok = np.isfinite(dd)
    np.testing.assert_allclose(dd[ok], d[ok], atol=0)
    assert np.all(d[~ok] > 2.0)
    with pytest.raises(InvalidInputError, match="no triangle"):
        surface_distance(P[:3], P, np.zeros((0, 3), dtype=int))


@pytest.mark.parametrize("size,depth", [("10k", 2.5), ("65k", 2.5), ("65k", 1.0)])
def test_subendocardial_candidates_lie_within_the_depth(size, depth):
    h = load_biventricular(size)
    nodes = subendocardial_nodes(h, depth)
    d = endocardial_depth(h)
    assert np.all(d[nodes] <= depth)
    assert not np.any(h.base[nodes])
    # every node of the layer (off the base) is in the set
    assert set(nodes.tolist()) == set(np.nonzero((d <= depth) & ~h.base)[0].tolist())
    n_surface = int(np.sum((h.lv_endo | h.rv_endo) & ~h.base))
    assert nodes.size >= n_surface
    if size == "65k" and depth == 2.5:  # 1.25 mm layers in the LV free wall: two more node layers
        assert nodes.size > 1.5 * n_surface
    cs = T.CandidateSites.subendocardial(h, depth, spacing=6.0, count_prior=None)
    assert set(cs.nodes.tolist()) <= set(nodes.tolist())
    pts = h.points[cs.nodes]
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=2) + np.eye(len(pts)) * 1e9
    assert dist.min() >= 6.0
    # every layer node lies within the spacing of a chosen one (farthest-point covering)
    cover = np.linalg.norm(h.points[nodes][:, None] - pts[None], axis=2).min(axis=1)
    assert cover.max() < 6.0
    assert T.CandidateSites.subendocardial(h, depth, n_sites=25).n_params == 25


def test_farthest_point_sample_bad_input(heart):
    with pytest.raises(InvalidInputError, match="give n, spacing"):
        farthest_point_sample(heart.points, [0, 1, 2])
    with pytest.raises(InvalidInputError, match="empty"):
        farthest_point_sample(heart.points, [], n=2)
    with pytest.raises(InvalidInputError, match="depth"):
        subendocardial_nodes(heart, -1.0)


def test_ground_truth_draw(heart):
    pr = TruthPrior()
    a = GroundTruth.draw(heart, 5)
    b = GroundTruth.draw(heart, 5)
    c = GroundTruth.draw(heart, 6)
    np.testing.assert_array_equal(a.nodes, b.nodes)
    np.testing.assert_array_equal(a.times, b.times)
    assert not np.array_equal(a.nodes, c.nodes) or a.v_fiber != c.v_fiber
    layer = set(subendocardial_nodes(heart, pr.depth).tolist())
    for g in (a, c):
        assert pr.n_sites[0] <= g.n_sites <= pr.n_sites[1]
        assert set(g.nodes.tolist()) <= layer
        assert g.times.min() == 0.0 and g.times.max() <= 15.0
        assert 0.5 <= g.v_fiber <= 0.7 and 0.35 <= g.v_cross / g.v_fiber <= 0.55
        p = heart.points[g.nodes]
        dd = np.linalg.norm(p[:, None] - p[None], axis=2) + np.eye(g.n_sites) * 1e9
        assert dd.min() >= pr.min_separation
    assert not a.nodes.flags.writeable
    with pytest.raises(InvalidInputError, match="could not place"):
        GroundTruth.draw(heart, 0, TruthPrior(n_sites=(40, 40), min_separation=40.0))


def test_load_heart_from_a_file(tmp_path):
    g = HeartGeometry(lv_radius=22.0, lv_depth=55.0)
    path = save_biventricular(biventricular_mesh("10k", geometry=g), tmp_path / "my_heart.vtu")
    h, label = load_heart(str(path))
    assert label == "my_heart.vtu" and h.n_tets > 0
    assert load_heart(None, quick=True)[1] == "10k"
    with pytest.raises(InvalidInputError, match="not found"):
        load_heart(str(tmp_path / "nope.vtu"))
