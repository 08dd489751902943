"""Printable solids: closed and consistently oriented, bar widths round-trip to the stiffness."""

import sys
import warnings
from pathlib import Path

import meshio
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lattice_reference import paper_network  # noqa: E402

from physim.errors import InvalidInputError, ShapeError  # noqa: E402
from physim.lattice import (  # noqa: E402
    check_closed,
    export_printable,
    printable_solid,
    stiffness_from_width,
    triangular_lattice,
)


def _closed_reference(triangles):
    """Slow reference: every undirected edge in exactly two triangles, traversed once each way."""
    seen = {}
    for t in np.asarray(triangles).tolist():
        for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0])):
            seen[(a, b)] = seen.get((a, b), 0) + 1
    return all(c == 1 and seen.get((b, a), 0) == 1 for (a, b), c in seen.items())


def _read_back(path):
    """Vertices (merged by exact coordinates) and triangles of an STL/OBJ, read with meshio."""
    with warnings.catch_warnings():  # meshio first tries an ASCII STL as binary (overflowing a count)
        warnings.simplefilter("ignore", RuntimeWarning)
        m = meshio.read(path)
    tri = m.cells_dict["triangle"]
    pts, inv = np.unique(np.asarray(m.points, dtype=float)[tri.ravel()], axis=0, return_inverse=True)
    return pts, inv.reshape(-1, 3)


def _bar_widths(pts, tri, network, thickness_mm):
    """Width of each bar measured on the top face, across its midpoint (mm)."""
    top = tri[np.all(np.isclose(pts[tri, 2], thickness_mm), axis=1)]
    P = pts[top][:, :, :2]
    widths = []
    for a, b in network.bonds:
        pa, pb = network.points[a] * 1e3, network.points[b] * 1e3
        m = 0.5 * (pa + pb)
        d = (pb - pa) / np.linalg.norm(pb - pa)
        n = np.array([-d[1], d[0]])
        # clip the line m + s n against every top triangle, keep the intervals
        ivals = []
        for T in P:
            lo, hi = -np.inf, np.inf
            ok = True
            for i in range(3):
                e0, e1 = T[i], T[(i + 1) % 3]
                edge = e1 - e0
                inward = np.array([-edge[1], edge[0]])  # triangles are counter-clockwise
                num = inward @ (m - e0)
                den = inward @ n
                if abs(den) < 1e-300:
                    if num < 0:
                        ok = False
                    continue
                s = -num / den
                if den > 0:
                    lo = max(lo, s)
                else:
                    hi = min(hi, s)
            if ok and hi > lo:
                ivals.append((lo, hi))
        ivals.sort()
        merged = []
        for lo, hi in ivals:
            if merged and lo <= merged[-1][1] + 1e-12:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        seg = [iv for iv in merged if iv[0] <= 0 <= iv[1]]
        assert len(seg) == 1
        widths.append(seg[0][1] - seg[0][0])
    return np.array(widths)


@pytest.mark.parametrize("suffix", [".stl", ".obj"])
def test_export_is_closed_and_widths_round_trip(tmp_path, suffix):
    net = paper_network()
    rng = np.random.default_rng(11)
    k = rng.uniform(103.125, 171.875, net.n_bonds)
    path = export_printable(net, k, tmp_path / f"lattice{suffix}")
    pts, tri = _read_back(path)
    assert _closed_reference(tri)
    check_closed(tri)
    assert np.ptp(pts[:, 2]) == pytest.approx(2.0, rel=1e-12)  # 2 mm thick
    w = _bar_widths(pts, tri, net, 2.0)  # mm
    np.testing.assert_allclose(stiffness_from_width(w * 1e-3), k, rtol=1e-6)
    solid = printable_solid(net, k)
    assert solid.volume > 0
    # volume = thickness x area of the union, which exceeds the bars minus hub overlaps
    bars = float(np.sum(solid.widths * net.lengths)) * 1e6 * 2.0
    assert 0.5 * bars < solid.volume < 2.0 * bars


def test_binary_stl_is_float32_close(tmp_path):
    net = paper_network()
    k = np.full(net.n_bonds, 137.5)
    path = export_printable(net, k, tmp_path / "lattice.stl", binary=True)
    assert path.stat().st_size == 84 + 50 * printable_solid(net, k).triangles.shape[0]
    pts, tri = _read_back(path)
    check_closed(tri)
    w = _bar_widths(pts, tri, net, float(pts[:, 2].max()))
    np.testing.assert_allclose(w, 2.0, rtol=2e-5)  # float32 coordinates


def test_other_networks_and_thickness():
    net = triangular_lattice((6, 5, 6, 5), 10e-3, fixed=[0, 5])
    k = np.random.default_rng(2).uniform(60, 120, net.n_bonds)
    s = printable_solid(net, k, thickness=3e-3, youngs_modulus=1e6)
    check_closed(s.triangles)
    np.testing.assert_allclose(s.widths, k * net.lengths / (1e6 * 3e-3), rtol=1e-15)
    assert s.vertices[:, 2].max() == pytest.approx(3.0)


def test_check_closed_detects_open_and_flipped():
    tet = np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])
    check_closed(tet)
    with pytest.raises(InvalidInputError, match="open"):
        check_closed(tet[:3])
    with pytest.raises(InvalidInputError, match="orientation"):
        check_closed(np.vstack([tet[:3], tet[3, ::-1]]))


def test_export_validation(tmp_path):
    net = paper_network()
    with pytest.raises(ShapeError, match="stiffness"):
        export_printable(net, np.ones(3), tmp_path / "x.stl")
    with pytest.raises(InvalidInputError, match=r"\.stl or \.obj"):
        export_printable(net, np.full(28, 137.5), tmp_path / "x.step")
    with pytest.raises(InvalidInputError, match="too wide"):
        export_printable(net, np.full(28, 5000.0), tmp_path / "x.stl")
    with pytest.raises(InvalidInputError, match="> 0"):
        export_printable(net, np.full(28, -1.0), tmp_path / "x.stl")
