"""Idealised biventricular heart: a structured, dependency-free tetrahedral mesher.

Construction
------------
The left-ventricular (LV) endocardium is the lower half of a prolate
ellipsoid ``(x/a)^2 + (y/a)^2 + (z/c)^2 = 1, z <= 0`` (the base is the plane
``z = 0``, the apex points to ``-z``). It is covered by a quadrilateral grid
without a pole: a cube-sphere patch on the apical cap joined to a
(longitude x height) band, so every surface cell is a well-shaped quad.

The wall is extruded along the outward normals of that ellipsoid (offsets of
a convex surface never fold). Each surface column is cut into
``n_septum + n_cavity + n_rv`` layers. Over a rectangular patch ``R`` of the
band (the right-ventricular sector: a range of longitudes, from the base down
to the RV apex) the middle ``n_cavity`` layers are left empty; that hole is
the RV cavity, open at the base. The layers below it form the septum, the
layers above it the RV free wall. Away from ``R`` all layers are LV free wall
and share the LV wall thickness; between the two the layer depths blend
smoothly, giving the RV insertion ridges.

Every hexahedral cell (surface quad x layer) is split into two prisms by the
shorter quad diagonal and each prism into three tetrahedra with the rule that
depends only on the global surface indices of each vertical face, so the
mesh is conforming by construction. The pieces of the boundary (LV and RV
endocardium, epicardium, base) are known from the construction and stored as
boundary triangles and point masks.

Units are millimetres. The default geometry has an LV cavity of radius 25 mm
and depth 60 mm, 10 mm LV free wall and septum, an RV cavity up to 16 mm
deep spanning 140 degrees of longitude and 70 % of the LV depth, and a 4 mm
RV free wall.

Limitations: the RV free wall is meshed with as many circumferential cells as
the septum it covers, so its elements are about (RV epicardial radius / LV
endocardial radius) times wider than thick; a deep RV cavity over a narrow
sector (a steep epicardial bump) shears the elements further (minimum
quality 0.18-0.23 with the default shape; see the tests).
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from .._result import Result
from .._validate import as_float_array, as_index_array, as_rng, as_scalar, check_memory
from ..errors import InvalidInputError, MeshError

if TYPE_CHECKING:
    from ..eikonal import TetMesh

__all__ = [
    "HeartGeometry",
    "BiventricularMesh",
    "REGION_LV",
    "REGION_SEPTUM",
    "REGION_RV",
    "SURFACE_TAGS",
    "SIZES",
    "LANDMARKS",
    "biventricular_mesh",
    "boundary_faces",
    "classify_boundary",
    "tet_volumes",
    "load_biventricular",
    "save_biventricular",
    "read_biventricular",
    "mesh_path",
    "point_triangle_distance",
    "surface_distance",
    "endocardial_depth",
    "subendocardial_nodes",
    "farthest_point_sample",
]

#: element region labels (``BiventricularMesh.region``)
REGION_LV, REGION_SEPTUM, REGION_RV = 0, 1, 2
#: surface tag names, in the priority order used to classify boundary faces
SURFACE_TAGS = ("base", "lv_endo", "rv_endo", "epi")

#: named sizes -> target edge length (mm); 9 336, 69 120 and 415 440 tetrahedra
SIZES = {"10k": 5.3, "65k": 2.85, "large": 1.55}

#: named endocardial landmarks of the default geometry: name -> (target point in mm, surface tag);
#: ``BiventricularMesh.nearest_node(point, tag)`` gives the mesh node
LANDMARKS = {
    "LV septum": ((25.0, 0.0, -30.0), "lv_endo"),
    "LV anterior": ((-12.0, 22.0, -35.0), "lv_endo"),
    "LV posterior": ((-10.0, -22.0, -35.0), "lv_endo"),
    "LV apex": ((0.0, 0.0, -55.0), "lv_endo"),
    "RV free wall": ((55.0, -10.0, -25.0), "rv_endo"),
}


@dataclass(frozen=True)
class HeartGeometry(Result):
    """Shape parameters of the idealised biventricular heart (all lengths in mm).

    Attributes
    ----------
    lv_radius, lv_depth : float
        Short (equatorial) and long semi-axes of the LV endocardial ellipsoid.
    lv_wall : float
        LV free-wall thickness.
    septum : float
        Septal thickness.
    rv_wall : float
        RV free-wall thickness.
    rv_cavity : float
        Largest depth of the RV cavity (between septum and RV free wall).
    rv_tip : float
        RV cavity depth along its rim (the blunt crescent tips), > 0.
    rv_span : float
        Angular width of the RV sector in degrees of longitude (< 360).
    rv_extent : float
        Fraction of the LV endocardial depth (from the base) covered by the RV cavity.
    junction : float
        Width (mm) over which the wall blends from RV to LV thickness outside the RV sector.
    """

    lv_radius: float = 25.0
    lv_depth: float = 60.0
    lv_wall: float = 10.0
    septum: float = 10.0
    rv_wall: float = 4.0
    rv_cavity: float = 16.0
    rv_tip: float = 2.5
    rv_span: float = 140.0
    rv_extent: float = 0.7
    junction: float = 10.0

    def __post_init__(self):
        for name in (
            "lv_radius",
            "lv_depth",
            "lv_wall",
            "septum",
            "rv_wall",
            "rv_cavity",
            "rv_tip",
            "junction",
        ):
            v = as_scalar(f"HeartGeometry.{name}", getattr(self, name))
            if not v > 0:
                raise InvalidInputError(f"HeartGeometry.{name} must be a finite number > 0, got {v!r}")
            object.__setattr__(self, name, v)
        for name in ("rv_span", "rv_extent"):
            object.__setattr__(self, name, as_scalar(f"HeartGeometry.{name}", getattr(self, name)))
        if not 0 < self.rv_span < 330:
            raise InvalidInputError(f"HeartGeometry.rv_span must be in (0, 330) degrees, got {self.rv_span}")
        if not 0 < self.rv_extent < 0.9:
            raise InvalidInputError(f"HeartGeometry.rv_extent must be in (0, 0.9), got {self.rv_extent}")
        if self.rv_tip > self.rv_cavity:
            raise InvalidInputError(
                f"HeartGeometry.rv_tip ({self.rv_tip}) must not exceed rv_cavity ({self.rv_cavity})"
            )
        super().__post_init__()


@dataclass(frozen=True)
class BiventricularMesh(Result):
    """A tagged tetrahedral mesh of the biventricular heart.

    Attributes
    ----------
    points : ndarray, float64, shape (n_points, 3)
        Node coordinates in mm; base in the plane z = 0, apex towards -z,
        RV on the +x side.
    tets : ndarray, int64, shape (n_tets, 4)
        Positively oriented tetrahedra.
    region : ndarray, int8, shape (n_tets,)
        ``REGION_LV`` (0, LV free wall), ``REGION_SEPTUM`` (1) or ``REGION_RV`` (2, RV free wall).
    faces : dict str -> ndarray, int64, shape (k, 3)
        Boundary triangles per surface tag (``SURFACE_TAGS``), oriented outwards.
    masks : dict str -> ndarray, bool, shape (n_points,)
        Nodes on each tagged surface (a node on an edge between two surfaces is in both).
    transmural : ndarray, float64, shape (n_points,)
        Construction coordinate in [0, 1]: LV free wall 0 (LV endo) -> 1 (epi);
        RV free wall 0 (RV endo) -> 1 (epi); septum 0 (LV side) -> 1 (RV side).
    apicobasal : ndarray, float64, shape (n_points,)
        Normalised height (z - z_apex) / (z_base - z_apex), 0 at the epicardial apex, 1 at the base.
    apex : int
        Index of the epicardial apex node.
    """

    points: np.ndarray
    tets: np.ndarray
    region: np.ndarray
    faces: dict = field(repr=False)
    masks: dict = field(repr=False)
    transmural: np.ndarray = field(repr=False)
    apicobasal: np.ndarray = field(repr=False)
    apex: int = 0

    @property
    def n_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def n_tets(self) -> int:
        return int(self.tets.shape[0])

    @property
    def lv_endo(self) -> np.ndarray:
        return self.masks["lv_endo"]

    @property
    def rv_endo(self) -> np.ndarray:
        return self.masks["rv_endo"]

    @property
    def epi(self) -> np.ndarray:
        return self.masks["epi"]

    @property
    def base(self) -> np.ndarray:
        return self.masks["base"]

    def nearest_node(self, point: ArrayLike, surface: str | ArrayLike = "lv_endo") -> int:
        """Index of the node on ``surface`` closest to ``point``.

        Parameters
        ----------
        point : array_like, shape (3,)
            Position in mm.
        surface : str or ndarray of bool, shape (n_points,)
            A tag of ``SURFACE_TAGS`` or a node mask.

        Returns
        -------
        int
        """
        if isinstance(surface, str):
            if surface not in self.masks:
                raise InvalidInputError(f"surface must be one of {sorted(self.masks)}, got {surface!r}")
            mask = self.masks[surface]
        else:
            mask = np.asarray(surface, dtype=bool)
            if mask.shape != (self.n_points,):
                raise InvalidInputError(f"surface mask must have shape ({self.n_points},), got {mask.shape}")
        idx = np.nonzero(mask)[0]
        if idx.size == 0:
            raise InvalidInputError("surface mask selects no node")
        p = as_float_array("point", point, shape=(3,))
        return int(idx[np.argmin(np.linalg.norm(self.points[idx] - p, axis=1))])

    def tet_mesh(self) -> TetMesh:
        """The mesh as a :class:`physim.eikonal.TetMesh` (for the eikonal solver)."""
        from physim.eikonal.mesh import TetMesh

        return TetMesh(self.points, self.tets)

    def point_data(self) -> dict:
        """Point fields written to files: surface masks (uint8), coordinates, apex mask."""
        data = {k: v.astype(np.uint8) for k, v in self.masks.items()}
        data["transmural"] = self.transmural
        data["apicobasal"] = self.apicobasal
        apex = np.zeros(self.n_points, dtype=np.uint8)
        apex[self.apex] = 1
        data["apex"] = apex
        return data

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={len(v)}" for k, v in self.faces.items())
        return f"BiventricularMesh(n_points={self.n_points}, n_tets={self.n_tets}, faces: {counts})"


# ----------------------------------------------------------------------------------------------
# geometry helpers


def tet_volumes(points: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """Signed volumes (mm^3) of tetrahedra, positive for right-handed vertex order.

    Parameters
    ----------
    points : ndarray, float64, shape (n_points, 3)
    tets : ndarray, int, shape (n_tets, 4)

    Returns
    -------
    ndarray, float64, shape (n_tets,)
    """
    p = points[tets]
    a, b, c = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]
    return np.einsum("ij,ij->i", a, np.cross(b, c)) / 6.0


def boundary_faces(tets: ArrayLike) -> np.ndarray:
    """Triangles that belong to exactly one tetrahedron, oriented outwards.

    Parameters
    ----------
    tets : array_like, int, shape (n_tets, 4)
        Positively oriented tetrahedra.

    Returns
    -------
    ndarray, int64, shape (n_faces, 3)
        Boundary triangles whose normal (right-hand rule) points out of the mesh,
        in a deterministic order (sorted by their sorted vertex triple).
    """
    tets = np.asarray(tets, dtype=np.int64)
    # faces opposite vertex 0..3 with outward orientation for a positive tet
    local = np.array([[1, 2, 3], [0, 3, 2], [0, 1, 3], [0, 2, 1]])
    f = tets[:, local].reshape(-1, 3)
    key = np.sort(f, axis=1)
    _, idx, counts = np.unique(key, axis=0, return_index=True, return_counts=True)
    return f[np.sort(idx[counts == 1])]


def classify_boundary(faces: np.ndarray, masks: dict) -> dict:
    """Split boundary triangles by surface tag from point masks.

    A face gets the first tag in ``SURFACE_TAGS`` whose mask holds all three of
    its vertices. Raises :class:`MeshError` if a face matches no tag.

    Parameters
    ----------
    faces : ndarray, int, shape (k, 3)
    masks : dict str -> bool ndarray (n_points,)

    Returns
    -------
    dict str -> ndarray, int64, shape (k_tag, 3)
    """
    faces = np.asarray(faces, dtype=np.int64)
    left = np.ones(len(faces), dtype=bool)
    out = {}
    for tag in SURFACE_TAGS:
        if tag not in masks:
            out[tag] = np.zeros((0, 3), dtype=np.int64)
            continue
        hit = left & np.asarray(masks[tag], dtype=bool)[faces].all(axis=1)
        out[tag] = faces[hit]
        left &= ~hit
    if left.any():
        i = int(np.argmax(left))
        raise MeshError(
            f"{int(left.sum())} boundary face(s) carry no surface tag; first: {faces[i].tolist()}"
        )
    return out


def point_triangle_distance(points: ArrayLike, a: ArrayLike, b: ArrayLike, c: ArrayLike) -> np.ndarray:
    """Euclidean distance from points to triangles, pairwise (row i to triangle i).

    Closest point by the Voronoi regions of the triangle's vertices, edges and
    face (Ericson, *Real-Time Collision Detection*, 5.1.5).

    Parameters
    ----------
    points, a, b, c : ndarray, float64, shape (n, 3)
        Query points and triangle vertices (mm).

    Returns
    -------
    ndarray, float64, shape (n,)
        Distances (mm).
    """
    p = np.asarray(points, dtype=float)
    a, b, c = (np.asarray(v, dtype=float) for v in (a, b, c))
    ab, ac, ap = b - a, c - a, p - a
    d1 = np.einsum("ij,ij->i", ab, ap)
    d2 = np.einsum("ij,ij->i", ac, ap)
    bp = p - b
    d3 = np.einsum("ij,ij->i", ab, bp)
    d4 = np.einsum("ij,ij->i", ac, bp)
    cp = p - c
    d5 = np.einsum("ij,ij->i", ab, cp)
    d6 = np.einsum("ij,ij->i", ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    with np.errstate(invalid="ignore", divide="ignore"):
        # face interior (default), then edges, then vertices (later masks win)
        den = va + vb + vc
        v = vb / den
        w = vc / den
        q = a + v[:, None] * ab + w[:, None] * ac
        on_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
        t = d1 / (d1 - d3)
        q = np.where(on_ab[:, None], a + t[:, None] * ab, q)
        on_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
        t = d2 / (d2 - d6)
        q = np.where(on_ac[:, None], a + t[:, None] * ac, q)
        on_bc = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
        t = (d4 - d3) / ((d4 - d3) + (d5 - d6))
        q = np.where(on_bc[:, None], b + t[:, None] * (c - b), q)
    q = np.where(((d1 <= 0) & (d2 <= 0))[:, None], a, q)
    q = np.where(((d3 >= 0) & (d4 <= d3))[:, None], b, q)
    q = np.where(((d6 >= 0) & (d5 <= d6))[:, None], c, q)
    return np.linalg.norm(p - q, axis=1)


def surface_distance(points: ArrayLike, surface_points: ArrayLike, triangles: ArrayLike, *, max_distance: float | None = None) -> np.ndarray:
    """Exact distance from each point to a triangulated surface.

    Candidate triangles are found with a k-d tree of triangle centroids: the
    nearest triangle lies within ``d_v + r`` of the query, where ``d_v`` is the
    distance to the nearest surface vertex and ``r`` the largest
    centroid-to-vertex distance, so every triangle that can be nearest is tested.

    Parameters
    ----------
    points : array_like, shape (n, 3)
        Query points (mm).
    surface_points : array_like, shape (m, 3)
        Vertices of the surface (mm).
    triangles : int array_like, shape (k, 3)
        Surface triangles (indices into ``surface_points``).
    max_distance : float, optional
        Points farther than this from every surface vertex by more than ``r``
        get ``inf`` without an exact computation (faster when only a thin
        layer matters).

    Returns
    -------
    ndarray, float64, shape (n,)
        Distances (mm); ``inf`` beyond ``max_distance``.
    """
    from scipy.spatial import cKDTree

    pts = as_float_array("points", points, shape=(None, 3))
    sp_ = as_float_array("surface_points", surface_points, shape=(None, 3))
    tri = as_index_array("triangles", triangles, upper=sp_.shape[0], shape=(None, 3))
    if tri.shape[0] == 0:
        raise InvalidInputError("the surface has no triangle")
    corners = sp_[tri]  # (k, 3, 3)
    cen = corners.mean(axis=1)
    r = float(np.linalg.norm(corners - cen[:, None], axis=2).max())
    used = np.unique(tri)
    d_v = cKDTree(sp_[used]).query(pts)[0]
    out = np.full(pts.shape[0], np.inf)
    todo = np.arange(pts.shape[0])
    if max_distance is not None:
        todo = todo[d_v <= as_float_array("max_distance", max_distance).item() + r]
    tree = cKDTree(cen)
    # process in chunks of query points to bound memory
    for lo in range(0, todo.size, 2048):
        idx = todo[lo : lo + 2048]
        lists = tree.query_ball_point(pts[idx], d_v[idx] + r + 1e-9)
        counts = np.fromiter((len(x) for x in lists), dtype=np.int64, count=idx.size)
        if counts.sum() == 0:  # pragma: no cover - the nearest vertex's triangles are always found
            continue
        flat = np.fromiter((j for x in lists for j in x), dtype=np.int64, count=int(counts.sum()))
        owner = np.repeat(idx, counts)
        d = point_triangle_distance(pts[owner], corners[flat, 0], corners[flat, 1], corners[flat, 2])
        best = np.full(idx.size, np.inf)
        np.minimum.at(best, np.repeat(np.arange(idx.size), counts), d)
        out[idx] = best
    return out


def endocardial_depth(heart: BiventricularMesh, *, max_depth: float | None = None) -> np.ndarray:
    """Distance (mm) of every node to the nearest endocardial surface (LV or RV).

    Parameters
    ----------
    heart : BiventricularMesh
        Tagged mesh (uses ``faces["lv_endo"]`` and ``faces["rv_endo"]``).
    max_depth : float, optional
        Nodes certainly deeper than this get ``inf`` (skips their exact distance).

    Returns
    -------
    ndarray, float64, shape (n_points,)
        0 on the endocardium; ``inf`` beyond ``max_depth``.
    """
    if not isinstance(heart, BiventricularMesh):
        raise InvalidInputError(f"heart must be a BiventricularMesh, got {type(heart).__name__}")
    tri = np.concatenate([heart.faces["lv_endo"], heart.faces["rv_endo"]])
    return surface_distance(heart.points, heart.points, tri, max_distance=max_depth)


def farthest_point_sample(points: ArrayLike, candidates: ArrayLike, *, n: int | None = None, spacing: float | None = None, seed: int | None = 0) -> np.ndarray:
    """Well-spread nodes among ``candidates`` by greedy farthest-point sampling.

    Starts from a random candidate (``seed``) and repeatedly adds the
    candidate farthest from those chosen, until ``n`` are chosen or the
    farthest remaining one is closer than ``spacing`` (mm) to a chosen one;
    chosen nodes are then at least ``spacing`` apart and every candidate lies
    within ``spacing`` of one. Give ``n``, ``spacing`` or both.

    Parameters
    ----------
    points : array_like, shape (n_points, 3)
    candidates : int array_like, shape (k,)
        Node indices to choose from.
    n : int, optional
        Number of nodes to choose (at most ``k``).
    spacing : float, optional
        Minimum distance between chosen nodes (mm).
    seed : int
        Seed of the first choice.

    Returns
    -------
    ndarray, int64, sorted
        Chosen node indices.
    """
    pts = as_float_array("points", points, shape=(None, 3))
    cand = as_index_array("candidates", candidates, upper=pts.shape[0], shape=(None,))
    if cand.size == 0:
        raise InvalidInputError("candidates must not be empty")
    if n is None and spacing is None:
        raise InvalidInputError("give n, spacing or both")
    n_max = cand.size if n is None else int(n)
    if n_max < 1:
        raise InvalidInputError(f"n must be >= 1, got {n}")
    gap = 0.0 if spacing is None else float(spacing)
    if not np.isfinite(gap) or gap < 0:
        raise InvalidInputError(f"spacing must be a finite number >= 0, got {spacing!r}")
    rng = as_rng("seed", seed)
    P = pts[cand]
    chosen = [int(rng.integers(cand.size))]
    d = np.linalg.norm(P - P[chosen[0]], axis=1)
    while len(chosen) < min(n_max, cand.size):
        j = int(np.argmax(d))
        if d[j] < gap or d[j] == 0.0:
            break
        chosen.append(j)
        d = np.minimum(d, np.linalg.norm(P - P[j], axis=1))
    return np.sort(cand[np.array(chosen)])


def subendocardial_nodes(
    heart: BiventricularMesh,
    depth: float = 2.5,
    *,
    spacing: float | None = None,
    n_sites: int | None = None,
    exclude_base: bool = True,
    seed: int | None = 0,
) -> np.ndarray:
    """Nodes of the subendocardial layer: within ``depth`` mm of the LV or RV endocardium.

    The Purkinje-muscle junctions where the conduction system activates the
    myocardium lie in this thin layer (Grandits et al. 2024 use it as the
    prior on initiation sites). Optionally thinned to well-spread nodes by
    :func:`farthest_point_sample`.

    Parameters
    ----------
    heart : BiventricularMesh
    depth : float
        Layer thickness (mm), >= 0; 0 keeps the endocardial surface nodes only.
        A node counts when its exact distance to the endocardial triangles is
        at most ``depth`` (so on coarse meshes the layer may hold only the
        surface nodes).
    spacing : float, optional
        Minimum distance between chosen nodes (mm).
    n_sites : int, optional
        Number of nodes to choose.
    exclude_base : bool
        Leave out nodes on the base (the valve plane carries no junctions).
    seed : int
        Seed of the farthest-point sampling.

    Returns
    -------
    ndarray, int64, sorted
    """
    if not isinstance(heart, BiventricularMesh):
        raise InvalidInputError(f"heart must be a BiventricularMesh, got {type(heart).__name__}")
    depth = float(depth)
    if not np.isfinite(depth) or depth < 0:
        raise InvalidInputError(f"depth must be a finite number >= 0 mm, got {depth!r}")
    d = endocardial_depth(heart, max_depth=depth)
    layer = d <= depth
    if exclude_base:
        layer &= ~heart.base
    nodes = np.nonzero(layer)[0]
    if nodes.size == 0:  # pragma: no cover - the endocardium always has nodes
        raise InvalidInputError("the subendocardial layer holds no node")
    if spacing is None and n_sites is None:
        return nodes
    return farthest_point_sample(heart.points, nodes, n=n_sites, spacing=spacing, seed=seed)


# ----------------------------------------------------------------------------------------------
# construction


def _ellipsoid_arclength_grid(a: float, c: float, z0: float, n: int) -> np.ndarray:
    """Heights ``z`` on the meridian of ellipse (a, c), from z0 < 0 to 0, at equal arc length."""
    t0 = math.asin(max(-1.0, min(1.0, z0 / c)))  # meridian: (a cos t, c sin t), t in [t0, 0]
    t = np.linspace(t0, 0.0, 4001)
    ds = np.hypot(a * np.sin(t), c * np.cos(t))
    s = np.concatenate([[0.0], np.cumsum(0.5 * (ds[1:] + ds[:-1]) * np.diff(t))])
    target = np.linspace(0.0, s[-1], n + 1)
    return c * np.sin(np.interp(target, s, t))


def _smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _construct(h: float, g: HeartGeometry) -> BiventricularMesh:
    a, c = g.lv_radius, g.lv_depth
    # ---- resolution ---------------------------------------------------------------------
    mid_r = a + 0.5 * g.lv_wall
    m = max(2, int(round(2.0 * math.pi * mid_r / (8.0 * h))))  # 8m cells around
    n_lon = 8 * m
    kappa = 0.55  # size of the apical cube-sphere cap relative to a sphere's
    # height of the cap rim on the ellipsoid: direction (1, 0, -1/kappa) normalised
    zc = -c * (1.0 / kappa) / math.hypot(1.0, 1.0 / kappa)
    band_len = float(
        np.sum(
            np.hypot(
                np.diff(a * np.sqrt(1 - (np.linspace(zc, 0, 200) / c) ** 2)), np.diff(np.linspace(zc, 0, 200))
            )
        )
    )
    m_z = max(3, int(round(band_len / (0.95 * h))))
    n_sep = max(2, int(round(g.septum / h)))
    n_cav = max(1, int(round(0.5 * (g.rv_cavity + g.rv_tip) / (1.6 * h))))
    n_rv = max(1, int(round(g.rv_wall / (0.6 * h))))
    n_lay = n_sep + n_cav + n_rv
    i1, i2 = n_sep, n_sep + n_cav

    # ---- surface nodes: cap (cube-sphere face) + band ----------------------------------
    q = np.tan(0.25 * math.pi * (np.arange(2 * m + 1) - m) / m)
    qx, qy = np.meshgrid(q, q, indexing="ij")
    cap_dir = np.stack([kappa * qx, kappa * qy, -np.ones_like(qx)], axis=-1).reshape(-1, 3)
    n_cap = cap_dir.shape[0]
    cap_id = np.arange(n_cap).reshape(2 * m + 1, 2 * m + 1)
    # band longitudes; ring k = 0 is the cap boundary, matched to the cap rim by longitude
    lon = 2.0 * math.pi * np.arange(n_lon) / n_lon
    ring_i = np.concatenate([cap_id[-1, :], cap_id[::-1, -1][1:], cap_id[0, ::-1][1:], cap_id[:, 0][1:-1]])
    ring_lon = np.mod(np.arctan2(cap_dir[ring_i, 1], cap_dir[ring_i, 0]), 2 * math.pi)
    order = np.rint(ring_lon / (2 * math.pi) * n_lon).astype(np.int64) % n_lon
    if len(np.unique(order)) != n_lon:  # pragma: no cover - construction invariant
        raise MeshError("internal error: cap boundary does not match the band")
    ring0 = np.empty(n_lon, dtype=np.int64)
    ring0[order] = ring_i
    band_id = np.empty((n_lon, m_z + 1), dtype=np.int64)
    band_id[:, 0] = ring0
    n_band = n_lon * m_z
    band_id[:, 1:] = n_cap + np.arange(n_band).reshape(n_lon, m_z)
    ns = n_cap + n_band
    # endocardial positions: cap via the parametric ellipsoid map of unit directions
    P = np.empty((ns, 3))
    d = cap_dir / np.linalg.norm(cap_dir, axis=1, keepdims=True)
    P[:n_cap] = d * np.array([a, a, c])
    # band: each meridian from the cap rim up to the base at equal arc length
    for l in range(n_lon):
        zl = _ellipsoid_arclength_grid(a, c, P[ring0[l], 2], m_z)
        r = a * np.sqrt(np.maximum(0.0, 1.0 - (zl / c) ** 2))
        ids = band_id[l, 1:]
        P[ids, 0] = r[1:] * np.cos(lon[l])
        P[ids, 1] = r[1:] * np.sin(lon[l])
        P[ids, 2] = zl[1:]
    P[band_id[:, -1], 2] = 0.0
    # outward unit normals of the ellipsoid
    N = P / np.array([a * a, a * a, c * c])
    N /= np.linalg.norm(N, axis=1, keepdims=True)
    N[band_id[:, -1], 2] = 0.0

    # ---- surface quads ----------------------------------------------------------------
    ci = cap_id
    cap_quads = np.stack([ci[:-1, :-1], ci[1:, :-1], ci[1:, 1:], ci[:-1, 1:]], axis=-1).reshape(-1, 4)
    bi = np.concatenate([band_id, band_id[:1]], axis=0)  # periodic in longitude
    band_quads = np.stack([bi[:-1, :-1], bi[1:, :-1], bi[1:, 1:], bi[:-1, 1:]], axis=-1)  # (n_lon, m_z, 4)
    # RV sector: longitudes centred on +x, rings from the RV apex to the base
    half = 0.5 * math.radians(g.rv_span)
    l_half = max(1, int(round(half / (2 * math.pi) * n_lon)))
    lon_cell = (np.arange(n_lon) + 0.5) * 2 * math.pi / n_lon
    lon_cell = np.where(lon_cell > math.pi, lon_cell - 2 * math.pi, lon_cell)
    in_lon = np.abs(lon_cell) < l_half * 2 * math.pi / n_lon
    k1 = int(round(m_z * (1.0 - g.rv_extent * c / (-zc))))
    k1 = min(max(k1, 1), m_z - 2)
    in_rv_quad = in_lon[:, None] & (np.arange(m_z)[None, :] >= k1)
    quads = np.concatenate([cap_quads, band_quads.reshape(-1, 4)])
    quad_rv = np.concatenate([np.zeros(len(cap_quads), bool), in_rv_quad.reshape(-1)])

    # ---- column depths ----------------------------------------------------------------
    lon_span = l_half * 2 * math.pi / n_lon
    node_lon = np.zeros(ns)
    node_k = np.full(ns, -1.0)
    node_lon[band_id] = np.where(lon > math.pi, lon - 2 * math.pi, lon)[:, None]
    node_k[band_id] = np.arange(m_z + 1)[None, :]
    node_lon[:n_cap] = np.arctan2(P[:n_cap, 1], P[:n_cap, 0])
    ii, jj = np.meshgrid(np.arange(2 * m + 1) - m, np.arange(2 * m + 1) - m, indexing="ij")
    node_k[:n_cap] = -(m - np.maximum(np.abs(ii), np.abs(jj))).reshape(-1)  # rings below the rim
    # distance (mm, approximate, along the mid wall) outside the closed RV patch
    mid = a + g.lv_wall
    dlon = np.maximum(np.abs(node_lon) - lon_span, 0.0) * mid
    dz = np.maximum(k1 - node_k, 0.0) * band_len / m_z / 2.0  # blend twice as far towards the apex
    dist = np.hypot(dlon, dz)
    w = _smoothstep(1.0 - dist / g.junction)
    # cavity depth inside the patch: sine bump across longitude, rising from the RV apex
    u = np.clip((node_lon + lon_span) / (2 * lon_span), 0.0, 1.0)
    v = np.clip((node_k - k1) / (m_z - k1), 0.0, 1.0)
    bump = np.sin(math.pi * u) ** 0.75 * np.sin(0.5 * math.pi * v) ** 0.8
    cav = g.rv_tip + (g.rv_cavity - g.rv_tip) * bump
    frac = np.arange(n_lay + 1, dtype=float)
    d_lv = g.lv_wall * frac[:, None] / n_lay * np.ones(ns)[None, :]
    d_rv = np.empty((n_lay + 1, ns))
    for i in range(n_lay + 1):
        if i <= i1:
            d_rv[i] = g.septum * i / i1
        elif i <= i2:
            d_rv[i] = g.septum + cav * (i - i1) / n_cav
        else:
            d_rv[i] = g.septum + cav + g.rv_wall * (i - i2) / n_rv
    depth = w[None, :] * d_rv + (1.0 - w[None, :]) * d_lv  # (n_lay + 1, ns)
    X = P[None, :, :] + depth[:, :, None] * N[None, :, :]  # (n_lay + 1, ns, 3)

    # ---- surface triangles (shorter diagonal) and prism split ---------------------------
    d02 = np.linalg.norm(P[quads[:, 0]] - P[quads[:, 2]], axis=1)
    d13 = np.linalg.norm(P[quads[:, 1]] - P[quads[:, 3]], axis=1)
    use02 = d02 <= d13
    tri = np.where(
        use02[:, None, None],
        np.stack([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]], axis=1),
        np.stack([quads[:, [0, 1, 3]], quads[:, [1, 2, 3]]], axis=1),
    ).reshape(-1, 3)
    tri_rv = np.repeat(quad_rv, 2)
    tri = np.sort(tri, axis=1)
    a_, b_, c_ = tri[:, 0], tri[:, 1], tri[:, 2]
    tets, region = [], []
    for i in range(n_lay):
        keep = ~(tri_rv & (i1 <= i) & (i < i2))
        lo, hi = i * ns, (i + 1) * ns
        ta, tb, tc = a_[keep], b_[keep], c_[keep]
        t = np.stack(
            [
                np.stack([ta + lo, tb + lo, tc + lo, ta + hi], axis=1),
                np.stack([tb + lo, tc + lo, ta + hi, tb + hi], axis=1),
                np.stack([tc + lo, ta + hi, tb + hi, tc + hi], axis=1),
            ],
            axis=1,
        ).reshape(-1, 4)
        r = np.full(keep.sum(), REGION_LV, dtype=np.int8)
        if i < i1:
            r[tri_rv[keep]] = REGION_SEPTUM
        elif i >= i2:
            r[tri_rv[keep]] = REGION_RV
        tets.append(t)
        region.append(np.repeat(r, 3))
    tets = np.concatenate(tets)
    region = np.concatenate(region)
    pts_all = X.reshape(-1, 3)
    layer_all = np.repeat(np.arange(n_lay + 1), ns)

    # ---- drop unused nodes, orient --------------------------------------------------------
    used = np.zeros(len(pts_all), dtype=bool)
    used[tets.ravel()] = True
    new_id = np.cumsum(used) - 1
    tets = new_id[tets]
    points = np.ascontiguousarray(pts_all[used])
    layer = layer_all[used]
    surf = np.tile(np.arange(ns), n_lay + 1)[used]
    vol = tet_volumes(points, tets)
    neg = vol < 0
    tets[neg] = tets[neg][:, [0, 2, 1, 3]]
    vol = np.abs(vol)
    if vol.min() <= 1e-9 * h**3:  # pragma: no cover - construction invariant
        raise MeshError(f"internal error: degenerate tetrahedron (volume {vol.min():.3g} mm^3)")

    # ---- boundary classification from the construction ------------------------------------
    faces = boundary_faces(tets)
    fz = points[faces, 2]
    fl = layer[faces]
    is_base = np.all(fz == 0.0, axis=1)
    is_lv = ~is_base & np.all(fl == 0, axis=1)
    is_epi = ~is_base & np.all(fl == n_lay, axis=1)
    is_rv = ~(is_base | is_lv | is_epi)
    if np.any(is_rv & ~np.all((fl >= i1) & (fl <= i2), axis=1)):  # pragma: no cover
        raise MeshError("internal error: RV endocardial face outside the cavity layers")
    fdict = {"base": faces[is_base], "lv_endo": faces[is_lv], "rv_endo": faces[is_rv], "epi": faces[is_epi]}
    masks = {}
    for tag in SURFACE_TAGS:
        mk = np.zeros(len(points), dtype=bool)
        mk[fdict[tag].ravel()] = True
        masks[tag] = mk

    # ---- construction coordinates --------------------------------------------------------
    in_patch_node = np.zeros(ns, dtype=bool)
    in_patch_node[np.unique(quads[quad_rv])] = True
    col_rv = in_patch_node[surf]
    tm = layer / n_lay
    tm = np.where(col_rv & (layer <= i1), layer / i1, tm)
    tm = np.where(col_rv & (layer >= i2), (layer - i2) / n_rv, tm)
    tm = np.where(col_rv & (layer > i1) & (layer < i2), 0.0, tm)
    apex_surface = int(cap_id[m, m])
    apex = int(np.nonzero((surf == apex_surface) & (layer == n_lay))[0][0])
    z_apex = points[apex, 2]
    ab = (points[:, 2] - z_apex) / (0.0 - z_apex)
    return BiventricularMesh(
        points=points,
        tets=np.ascontiguousarray(tets, dtype=np.int64),
        region=region,
        faces=fdict,
        masks=masks,
        transmural=tm.astype(np.float64),
        apicobasal=ab,
        apex=apex,
    )


def biventricular_mesh(
    size: str | None = "10k",
    *,
    edge_length: float | None = None,
    geometry: HeartGeometry | None = None,
) -> BiventricularMesh:
    """Generate the idealised biventricular heart mesh.

    Deterministic: the same arguments give bit-identical arrays.

    Parameters
    ----------
    size : {"10k", "65k", "large"}, optional
        Named resolution: 9 336, 69 120 and 415 440 tetrahedra. Ignored
        when ``edge_length`` is given.
    edge_length : float, optional
        Target edge length in mm (> 0.5); overrides ``size``.
    geometry : HeartGeometry, optional
        Shape parameters (defaults: ``HeartGeometry()``).

    Returns
    -------
    BiventricularMesh
    """
    if edge_length is None:
        if not isinstance(size, str) or size not in SIZES:
            raise InvalidInputError(f"size must be one of {sorted(SIZES)}, got {size!r}")
        h = SIZES[size]
    else:
        h = as_scalar("edge_length", edge_length)
        if h < 0.5:
            raise InvalidInputError(f"edge_length must be a finite number >= 0.5 mm, got {edge_length!r}")
    # about 415k tetrahedra at 1.55 mm, scaling as h^-3; ~1 kB each while building
    check_memory(f"biventricular_mesh(edge_length={h:g})", 1000.0 * 415_440 * (SIZES["large"] / h) ** 3)
    g = geometry if geometry is not None else HeartGeometry()
    if not isinstance(g, HeartGeometry):
        raise InvalidInputError(f"geometry must be a HeartGeometry, got {type(g).__name__}")
    return _construct(h, g)


# ----------------------------------------------------------------------------------------------
# files


def mesh_path(size: str) -> Path:
    """Path of the shipped (or generated) mesh file ``bivent_<size>.vtu``.

    The meshes install as the ``physim.meshes`` package: the repository's
    ``meshes/`` directory in a source checkout or editable install.
    """
    import importlib.resources

    return Path(str(importlib.resources.files("physim.meshes"))) / f"bivent_{size}.vtu"


def save_biventricular(mesh: BiventricularMesh, path: str | os.PathLike) -> Path:
    """Write the mesh as .vtu (tetrahedra; masks and coordinates as point data, region as cell data)."""
    from ..io import write_mesh

    return write_mesh(
        path,
        mesh.points,
        {"tetra": mesh.tets},
        point_data=mesh.point_data(),
        cell_data={"region": mesh.region},
    )


def read_biventricular(path: str | os.PathLike) -> BiventricularMesh:
    """Read a mesh written by :func:`save_biventricular`; boundary faces are rebuilt from the masks."""
    from ..io import read_mesh

    mm = read_mesh(path)
    blocks = [b for b in mm.cells if b.type == "tetra"]
    if len(blocks) != 1:
        raise MeshError(f"{path}: expected one tetra cell block, found {len(blocks)}")
    points = as_float_array("points", mm.points, shape=(None, 3))
    tets = as_index_array("tets", blocks[0].data, upper=len(points), shape=(None, 4))
    pd = mm.point_data
    missing = [k for k in (*SURFACE_TAGS, "transmural", "apicobasal", "apex") if k not in pd]
    if missing or "region" not in mm.cell_data:
        raise MeshError(f"{path}: not a biventricular mesh (missing fields {missing or ['region']})")
    masks = {k: np.asarray(pd[k]).astype(bool) for k in SURFACE_TAGS}
    region = np.asarray(mm.cell_data["region"][mm.cells.index(blocks[0])]).astype(np.int8)
    faces = classify_boundary(boundary_faces(tets), masks)
    return BiventricularMesh(
        points=points,
        tets=tets,
        region=region,
        faces=faces,
        masks=masks,
        transmural=np.asarray(pd["transmural"], dtype=np.float64),
        apicobasal=np.asarray(pd["apicobasal"], dtype=np.float64),
        apex=int(np.argmax(np.asarray(pd["apex"]))),
    )


def load_biventricular(size: str | os.PathLike = "10k") -> BiventricularMesh:
    """The shipped biventricular mesh ``meshes/bivent_<size>.vtu``, or a tagged mesh file.

    If the file of a named size is missing (e.g. ``"large"``, which is not
    shipped) it is generated; it is also written there when that directory is
    writable.

    Parameters
    ----------
    size : {"10k", "65k", "large"} or path
        A named size, or the path of a ``.vtu`` written by
        :func:`save_biventricular` (any tagged biventricular mesh, e.g. a
        user's own heart).

    Returns
    -------
    BiventricularMesh

    Raises
    ------
    InvalidInputError
        An unknown size, or a path that does not exist.
    MeshError
        The file is not a tagged biventricular mesh.
    """
    if isinstance(size, os.PathLike) or (isinstance(size, str) and size not in SIZES):
        p = Path(size)
        if p.suffix or p.exists():
            if not p.is_file():
                raise InvalidInputError(f"mesh file {str(p)!r} not found (or give a size: {sorted(SIZES)})")
            return read_biventricular(p)
    if not isinstance(size, str) or size not in SIZES:
        raise InvalidInputError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    path = mesh_path(size)
    if path.exists():
        return read_biventricular(path)
    mesh = biventricular_mesh(size)
    if path.parent.is_dir() and os.access(path.parent, os.W_OK):
        try:
            save_biventricular(mesh, path)
        except (OSError, MeshError) as exc:  # a read-only install still gets its mesh
            warnings.warn(f"could not cache the generated mesh at {path}: {exc}", stacklevel=2)
    return mesh
