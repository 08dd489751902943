"""Printable solids of trained 2D networks (STL, OBJ), as Li & Mao (2024) 3D-printed them.

Each bond becomes a straight bar of its trained width ``w = k L / (Y t)``
(stiffness ``k``, length ``L``, Young's modulus ``Y``, thickness ``t``; the
inverse of :func:`~physim.lattice.stiffness_from_width`) running from node
centre to node centre, each node a round hub. The union of bars and hubs
(shapely) is triangulated without added points (constrained Delaunay) and
extruded to the thickness: top and bottom faces plus one wall quad per
boundary edge, sharing vertices, so the solid is closed and consistently
oriented (outward normals). Coordinates are written in millimetres, the
unit slicers assume.

ASCII STL and OBJ keep every coordinate to double precision; binary STL
stores float32 by definition, which rounds coordinates of a 64 mm part to
about 4e-6 mm (a relative width error of a few 1e-6).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from .._result import Result
from .._validate import as_float_array, as_scalar
from ..errors import InvalidInputError, InvalidTypeError, ShapeError
from .learning import PAPER
from .network import SpringNetwork

__all__ = ["PrintableSolid", "printable_solid", "export_printable", "check_closed"]


@dataclass(frozen=True)
class PrintableSolid(Result):
    """A closed triangle mesh of a network's bars and hubs.

    Attributes
    ----------
    vertices : ndarray, float64 (V, 3)
        Vertex coordinates (mm); the network's ``(x, y)`` and ``z`` in [0, t].
    triangles : ndarray, int64 (T, 3)
        Vertex indices, counter-clockwise seen from outside.
    widths : ndarray, float64 (m,)
        Bar widths (m).
    thickness : float
        Extrusion thickness (m).
    hub_radius : float
        Radius of the round hubs (m).
    """

    vertices: np.ndarray
    triangles: np.ndarray
    widths: np.ndarray
    thickness: float
    hub_radius: float

    @property
    def volume(self) -> float:
        """Enclosed volume (mm^3), by the divergence theorem."""
        v = self.vertices[self.triangles]
        return float(np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6.0)


def check_closed(triangles: ArrayLike) -> None:
    """Raise :class:`InvalidInputError` unless every edge is shared by exactly two triangles in opposite directions.

    That is: the surface is closed (watertight), manifold at its edges and
    consistently oriented.
    """
    t = np.asarray(triangles, dtype=np.int64)
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    if np.any(e[:, 0] == e[:, 1]):
        raise InvalidInputError("the mesh has degenerate triangles (a repeated vertex)")
    keys, counts = np.unique(e, axis=0, return_counts=True)
    if np.any(counts != 1):
        i = int(np.argmax(counts != 1))
        raise InvalidInputError(
            f"directed edge {keys[i].tolist()} is used {counts[i]} times (inconsistent orientation)"
        )
    fwd = {tuple(r) for r in keys.tolist()}
    for a, b in keys.tolist():
        if (b, a) not in fwd:
            raise InvalidInputError(f"edge ({a}, {b}) belongs to one triangle only: the surface is open")


def printable_solid(
    network: SpringNetwork,
    stiffness: ArrayLike,
    *,
    thickness: float = PAPER["thickness"],
    youngs_modulus: float = PAPER["youngs_modulus"],
    hub_radius: float | None = None,
    hub_segments: int = 48,
) -> PrintableSolid:
    """The solid of a trained 2D network: bars of width ``k L / (Y t)`` and round hubs, extruded.

    Parameters
    ----------
    network : SpringNetwork
        2D network (coordinates in m).
    stiffness : array_like, shape (m,)
        Bond stiffnesses (N/m).
    thickness : float
        Thickness ``t`` (m); default the paper's 2 mm.
    youngs_modulus : float
        Young's modulus ``Y`` of the printed material (Pa); default the paper's 0.55 MPa.
    hub_radius : float, optional
        Hub radius (m); default 0.75 times the widest bar (at least half of
        it, so that hubs cover the bar ends; at most a third of the shortest
        bond, so that bar middles stay bare).
    hub_segments : int
        Polygon sides of a hub.

    Returns
    -------
    PrintableSolid
    """
    import shapely
    from shapely.geometry import Point, Polygon
    from shapely.geometry.polygon import orient

    if not isinstance(network, SpringNetwork):
        raise InvalidTypeError(f"network must be a SpringNetwork, got {type(network).__name__}")
    if network.dim != 2:
        raise ShapeError(f"printable_solid extrudes 2D networks, got a {network.dim}D network")
    k = as_float_array("stiffness", stiffness)
    if k.shape != (network.n_bonds,):
        raise ShapeError(f"stiffness must have shape ({network.n_bonds},), got {k.shape}")
    if np.any(k <= 0):
        i = int(np.argmax(k <= 0))
        raise InvalidInputError(f"stiffness[{i}] = {k[i]} must be > 0")
    t = as_scalar("thickness", thickness, positive=True)
    Y = as_scalar("youngs_modulus", youngs_modulus, positive=True)
    L = np.asarray(network.lengths)
    w = k * L / (Y * t)
    r = 0.75 * float(w.max()) if hub_radius is None else as_scalar("hub_radius", hub_radius, positive=True)
    if r < 0.5 * float(w.max()):
        raise InvalidInputError(f"hub_radius {r} m is below half the widest bar ({0.5 * w.max()} m)")
    if r >= float(L.min()) / 3 or float(w.max()) >= float(L.min()) / 3:
        raise InvalidInputError(
            f"bars of width up to {w.max():.4g} m and hubs of radius {r:.4g} m are too wide for bonds as "
            f"short as {L.min():.4g} m (at most a third of a bond)"
        )
    pts = np.asarray(network.points, dtype=float) * 1e3  # mm
    wm, rm = w * 1e3, r * 1e3
    shapes = []
    for (a, b), wi in zip(network.bonds, wm):
        d = pts[b] - pts[a]
        nrm = np.array([-d[1], d[0]]) / np.hypot(*d) * (wi / 2)
        shapes.append(Polygon([pts[a] - nrm, pts[b] - nrm, pts[b] + nrm, pts[a] + nrm]))
    quad = max(2, int(hub_segments) // 4)
    shapes += [Point(p).buffer(rm, quad_segs=quad) for p in pts]
    union = shapely.unary_union(shapes)
    polys = list(union.geoms) if hasattr(union, "geoms") else [union]
    verts2: list[tuple[float, float]] = []
    index: dict[tuple[float, float], int] = {}
    walls: list[tuple[int, int]] = []

    def vid(xy) -> int:
        key = (float(xy[0]), float(xy[1]))
        if key not in index:
            index[key] = len(verts2)
            verts2.append(key)
        return index[key]

    caps = []
    for poly in polys:
        poly = orient(poly, sign=1.0)  # exterior counter-clockwise, holes clockwise
        for ring in [poly.exterior, *poly.interiors]:
            c = np.asarray(ring.coords)[:-1]
            ids = [vid(p) for p in c]
            walls += list(zip(ids, ids[1:] + ids[:1]))
        tris = shapely.constrained_delaunay_triangles(poly)
        for tri in tris.geoms:
            c = np.asarray(tri.exterior.coords)[:3]
            missing = [tuple(p) for p in c if (float(p[0]), float(p[1])) not in index]
            if missing:
                raise InvalidInputError(f"the triangulation added a vertex {missing[0]} (not on the outline)")
            ids = [index[(float(p[0]), float(p[1]))] for p in c]
            area = (c[1, 0] - c[0, 0]) * (c[2, 1] - c[0, 1]) - (c[2, 0] - c[0, 0]) * (c[1, 1] - c[0, 1])
            if area < 0:
                ids = [ids[0], ids[2], ids[1]]
            if area != 0:
                caps.append(ids)
    nv = len(verts2)
    v2 = np.array(verts2)
    vertices = np.vstack([np.column_stack([v2, np.zeros(nv)]), np.column_stack([v2, np.full(nv, t * 1e3)])])
    caps = np.array(caps, dtype=np.int64)
    top = caps + nv  # counter-clockwise seen from +z: normal up
    bottom = caps[:, ::-1]  # reversed: normal down
    e = np.array(walls, dtype=np.int64)
    # boundary edge a -> b runs with the solid on its left; the outward wall faces right
    side = np.concatenate(
        [
            np.column_stack([e[:, 0], e[:, 1] + nv, e[:, 0] + nv]),
            np.column_stack([e[:, 0], e[:, 1], e[:, 1] + nv]),
        ]
    )
    triangles = np.concatenate([top, bottom, side])
    check_closed(triangles)
    return PrintableSolid(vertices=vertices, triangles=triangles, widths=w, thickness=t, hub_radius=r)


def export_printable(
    network: SpringNetwork,
    stiffness: ArrayLike,
    path: str | os.PathLike,
    *,
    thickness: float = PAPER["thickness"],
    youngs_modulus: float = PAPER["youngs_modulus"],
    hub_radius: float | None = None,
    binary: bool = False,
) -> Path:
    """Write the trained network as a printable solid (see :func:`printable_solid`).

    Parameters
    ----------
    network : SpringNetwork
        2D network.
    stiffness : array_like, shape (m,)
        Bond stiffnesses (N/m).
    path : path-like
        ``.stl`` or ``.obj`` file; coordinates in mm.
    thickness, youngs_modulus, hub_radius
        As for :func:`printable_solid` (m, Pa, m).
    binary : bool
        STL only: binary (float32, compact) instead of ASCII (full precision).

    Returns
    -------
    pathlib.Path
    """
    from .._atomic import atomic_write

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".stl", ".obj"):
        raise InvalidInputError(f"export_printable writes .stl or .obj files, got {path.name!r}")
    solid = printable_solid(
        network, stiffness, thickness=thickness, youngs_modulus=youngs_modulus, hub_radius=hub_radius
    )
    v, f = solid.vertices, solid.triangles
    tri = v[f]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    if suffix == ".obj":
        lines = ["# physim printable lattice, units: mm"]
        lines += [f"v {a!r} {b!r} {c!r}" for a, b, c in v.tolist()]
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in f.tolist()]
        text = "\n".join(lines) + "\n"
        return atomic_write(path, lambda tmp: tmp.write_text(text))
    if binary:
        rec = np.zeros(len(f), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
        rec["n"], rec["v"] = n, tri
        header = b"physim printable lattice, units: mm".ljust(80, b" ")
        data = header + struct.pack("<I", len(f)) + rec.tobytes()
        return atomic_write(path, lambda tmp: tmp.write_bytes(data))
    out = ["solid physim_lattice"]
    for ni, ti in zip(n.tolist(), tri.tolist()):
        out.append(f"  facet normal {ni[0]!r} {ni[1]!r} {ni[2]!r}\n    outer loop")
        out += [f"      vertex {p[0]!r} {p[1]!r} {p[2]!r}" for p in ti]
        out.append("    endloop\n  endfacet")
    out.append("endsolid physim_lattice")
    text = "\n".join(out) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))
