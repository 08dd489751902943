"""Simplicial meshes for the eikonal solver: tetrahedra and triangles.

Lengths are in mm. A mesh is validated once when it is built (index range,
non-finite coordinates, degenerate elements; inverted tetrahedra are
reoriented) and precomputes everything the solver needs per element and per
node, so that repeated solves on the same mesh pay nothing for geometry:

* ``edge_vectors`` (n_cells, n_edges, dim): ``x[b] - x[a]`` for every local
  vertex pair ``(a, b)`` in :data:`TET_EDGES` / :data:`TRI_EDGES` order;
* ``node_cell_ptr`` / ``node_cells`` / ``node_cell_local``: the node -> element
  adjacency in CSR form, with the local index of the node in each element.

Points used by no element are allowed; the solver leaves them unreached.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._validate import as_float_array, as_index_array, as_int, as_rng, as_scalar, check_memory
from ..errors import InvalidInputError, MeshError, ShapeError

if TYPE_CHECKING:
    import meshio

__all__ = [
    "TetMesh",
    "TriMesh",
    "SimplexMesh",
    "from_meshio",
    "box_tet_mesh",
    "square_tri_mesh",
    "TET_EDGES",
    "TRI_EDGES",
]

#: local vertex pairs of a tetrahedron; edge ``k`` joins ``TET_EDGES[k]``.
TET_EDGES = np.array([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]], dtype=np.int64)
#: local vertex pairs of a triangle.
TRI_EDGES = np.array([[0, 1], [0, 2], [1, 2]], dtype=np.int64)

#: relative size (w.r.t. the longest edge) below which an element counts as degenerate
DEGENERATE_RTOL = 1e-10


def _pair_table(edges: np.ndarray, nv: int) -> np.ndarray:
    table = np.full((nv, nv), -1, dtype=np.int64)
    for k, (a, b) in enumerate(edges):
        table[a, b] = k
        table[b, a] = k
    return table


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class DroppedElementsWarning(UserWarning):
    """Degenerate elements were dropped from a mesh (``drop_degenerate=True``)."""


class SimplexMesh:
    """Common base of :class:`TetMesh` and :class:`TriMesh` (do not build directly).

    Attributes
    ----------
    points : ndarray, shape (n_points, dim), float64
        Node coordinates in mm (read-only).
    cells : ndarray, shape (n_cells, nodes_per_cell), int64
        Element connectivity (read-only; tetrahedra positively oriented).
    dim : int
        Spatial dimension (2 or 3).
    edges : ndarray, shape (n_edges, 2), int64
        Local vertex pairs; ``edge_vectors[:, k] = x[cells[:, edges[k, 1]]] - x[cells[:, edges[k, 0]]]``.
    pair_index : ndarray, shape (nodes_per_cell, nodes_per_cell), int64
        ``pair_index[a, b]`` is the local edge joining local vertices ``a`` and ``b`` (-1 on the diagonal).
    edge_vectors : ndarray, shape (n_cells, n_edges, dim), float64
    measures : ndarray, shape (n_cells,), float64
        Element volumes (mm^3) or areas (mm^2).
    node_cell_ptr, node_cells, node_cell_local : ndarray, int64
        CSR node -> element adjacency: the elements of node ``i`` are
        ``node_cells[node_cell_ptr[i]:node_cell_ptr[i+1]]`` and ``i`` is their local
        vertex ``node_cell_local[...]``.
    """

    nodes_per_cell: int = 0
    cell_type: str = ""

    def drop_report(self) -> str:
        """What ``drop_degenerate=True`` removed: counts, the first indices, points left unused."""
        d = self.dropped_cells
        if d.size == 0:
            return f"no element was dropped ({self.n_cells} elements)"
        first = ", ".join(str(int(i)) for i in d[:10]) + (", ..." if d.size > 10 else "")
        orphans = int((~self.used).sum())
        kind = "volume" if self.nodes_per_cell == 4 else "area"
        return (
            f"dropped {d.size} degenerate element(s) of {d.size + self.n_cells} (repeated vertex or "
            f"{kind} <= {DEGENERATE_RTOL:g} x longest edge^{self.nodes_per_cell - 1}); original indices: "
            f"{first}; {self.n_cells} elements kept (mesh.kept_cells maps them to the input), "
            f"{orphans} point(s) now belong to no element"
        )

    def __init__(self, points: ArrayLike, cells: ArrayLike, *, drop_degenerate: bool = False) -> None:
        nv = self.nodes_per_cell
        pts = as_float_array("points", points, shape=(None, None), finite=False, copy=True)
        if pts.shape[1] not in self._allowed_dims:
            raise MeshError(
                f"points of a {type(self).__name__} must have shape (n_points, "
                f"{' or '.join(map(str, self._allowed_dims))}), got {pts.shape}"
            )
        bad = ~np.isfinite(pts)
        if bad.any():
            i = int(np.argwhere(bad)[0, 0])
            raise MeshError(
                f"points[{i}] is not finite: {pts[i]!r} ({int(bad.any(axis=1).sum())} bad points)"
            )
        n = pts.shape[0]
        c = as_index_array(f"{self.cell_type} connectivity", cells, upper=n, shape=(None, nv))
        if c.shape[0] == 0:
            raise MeshError(f"a {type(self).__name__} needs at least one element, got 0")
        c = c.copy()
        srt = np.sort(c, axis=1)
        repeated = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
        rep = np.nonzero(repeated)[0]
        m0 = c.shape[0]
        kept = np.arange(m0, dtype=np.int64)
        if drop_degenerate:
            x0 = pts[c]
            measure0, longest0 = self._measure(x0)
            flat = repeated | (np.abs(measure0) <= DEGENERATE_RTOL * longest0 ** (nv - 1))
            if flat.all():
                raise MeshError(
                    f"all {c.shape[0]} elements are degenerate: nothing is left after dropping them"
                )
            kept = np.nonzero(~flat)[0]
            c, rep = c[kept], rep[:0]
        self.kept_cells = _readonly(kept)
        self.dropped_cells = _readonly(np.setdiff1d(np.arange(m0, dtype=np.int64), kept))
        if rep.size:
            e = int(rep[0])
            raise MeshError(
                f"element {e} repeats a vertex: {c[e].tolist()} ({rep.size} such elements); "
                f"{type(self).__name__}(..., drop_degenerate=True) drops them and reports which"
            )
        self.dim = int(pts.shape[1])
        self.edges = TET_EDGES if nv == 4 else TRI_EDGES
        self.pair_index = _readonly(_pair_table(self.edges, nv))
        x = pts[c]  # (m, nv, dim)
        measure, longest = self._measure(x)
        deg = np.abs(measure) <= DEGENERATE_RTOL * longest ** (nv - 1)
        if deg.any():
            e = int(np.nonzero(deg)[0][0])
            raise MeshError(
                f"element {e} (vertices {c[e].tolist()}) is degenerate: "
                f"{'volume' if nv == 4 else 'area'} {measure[e]:.3g} "
                f"({int(deg.sum())} degenerate element(s)); "
                f"{type(self).__name__}(..., drop_degenerate=True) drops them and reports which"
            )
        if nv == 4:
            inv = measure < 0
            if inv.any():  # reorient inverted tetrahedra by swapping two vertices
                c[inv, 2], c[inv, 3] = c[inv, 3].copy(), c[inv, 2].copy()
                x = pts[c]
                measure = np.abs(measure)
            self.n_reoriented = int(inv.sum())
        else:
            self.n_reoriented = 0
            measure = np.abs(measure)
        self.points = _readonly(pts)
        self.cells = _readonly(np.ascontiguousarray(c))
        self.measures = _readonly(np.ascontiguousarray(measure))
        ev = x[:, self.edges[:, 1], :] - x[:, self.edges[:, 0], :]
        self.edge_vectors = _readonly(np.ascontiguousarray(ev))
        # node -> element CSR
        flat = c.ravel()
        order = np.argsort(flat, kind="stable")
        counts = np.bincount(flat, minlength=n)
        ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=ptr[1:])
        self.node_cell_ptr = _readonly(ptr)
        self.node_cells = _readonly(np.ascontiguousarray(order // nv, dtype=np.int64))
        self.node_cell_local = _readonly(np.ascontiguousarray(order % nv, dtype=np.int64))
        self.used = _readonly(counts > 0)
        if self.dropped_cells.size:
            warnings.warn(self.drop_report(), DroppedElementsWarning, stacklevel=3)
        self.h_max = float(np.sqrt((ev**2).sum(-1)).max())

    def _incidence(self) -> np.ndarray:
        """``element * 4 + local index`` per CSR entry of the node -> element adjacency (cached)."""
        inc = self.__dict__.get("_incidence_cache")
        if inc is None:
            inc = _readonly(np.ascontiguousarray(self.node_cells * 4 + self.node_cell_local))
            self.__dict__["_incidence_cache"] = inc
        return inc

    # -- geometry -----------------------------------------------------------------
    @property
    def n_points(self) -> int:
        return int(self.points.shape[0])

    @property
    def n_cells(self) -> int:
        return int(self.cells.shape[0])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_points={self.n_points}, n_cells={self.n_cells}, dim={self.dim})"

    def locate(self, pts: ArrayLike, *, tol: float = 1e-9) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        """Find the element containing each point.

        Parameters
        ----------
        pts : array_like, shape (k, dim), float
            Query points in mm.
        tol : float
            Barycentric tolerance (points this far outside an element still count as inside;
            for surface meshes also the allowed distance to the surface relative to the element size).

        Returns
        -------
        cells : ndarray, shape (k,), int64
            Containing element, -1 where none contains the point.
        bary : ndarray, shape (k, nodes_per_cell), float64
            Barycentric coordinates in that element.
        """
        q = as_float_array("pts", pts)
        if q.ndim == 1 and q.shape[0] == self.dim:
            q = q[None]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ShapeError(f"pts must have shape (k, {self.dim}) for this {self.dim}-D mesh, got {q.shape}")
        tol = as_scalar("tol", tol, nonnegative=True)
        x0 = self.points[self.cells[:, 0]]  # (m, dim)
        # columns: edges from vertex 0 (edge k = 0..nv-2 joins 0 and k+1)
        a = self.edge_vectors[:, : self.nodes_per_cell - 1, :].transpose(0, 2, 1)  # (m, dim, nv-1)
        out_c = np.full(q.shape[0], -1, dtype=np.int64)
        out_b = np.zeros((q.shape[0], self.nodes_per_cell))
        scale = np.sqrt((self.edge_vectors**2).sum(-1)).max(1)
        for s, p in enumerate(q):
            rhs = p[None, :] - x0
            if a.shape[1] == a.shape[2]:
                lam = np.linalg.solve(a, rhs[..., None])[..., 0]
                resid = np.zeros(len(lam))
            else:  # surface triangles in 3D: least squares in the element plane
                ata = a.transpose(0, 2, 1) @ a
                lam = np.linalg.solve(ata, (a.transpose(0, 2, 1) @ rhs[..., None]))[..., 0]
                resid = np.linalg.norm((a @ lam[..., None])[..., 0] - rhs, axis=1)
            bary = np.concatenate([1.0 - lam.sum(1, keepdims=True), lam], axis=1)
            ok = (bary >= -tol).all(1) & (resid <= tol * scale)
            hits = np.nonzero(ok)[0]
            if hits.size:
                # prefer the element where the point is deepest inside
                e = int(hits[np.argmax(bary[hits].min(1))])
                out_c[s] = e
                out_b[s] = bary[e]
        return out_c, out_b


class TetMesh(SimplexMesh):
    """A tetrahedral mesh in 3D.

    Parameters
    ----------
    points : array_like, shape (n_points, 3), float
        Node coordinates in mm.
    tets : array_like, shape (n_cells, 4), int
        Vertex indices of each tetrahedron. Inverted tetrahedra are reoriented
        (``n_reoriented`` counts them); points used by no tetrahedron are allowed.
    drop_degenerate : bool
        Drop zero-volume tetrahedra (e.g. Delaunay slivers) and those repeating
        a vertex instead of raising; a :class:`DroppedElementsWarning` says how
        many, ``drop_report()`` what was dropped, ``dropped_cells`` /
        ``kept_cells`` hold the input indices of the dropped / kept elements
        (index per-element inputs such as conduction tensors with ``kept_cells``).

    Raises
    ------
    MeshError
        Non-finite coordinates, indices out of range, repeated vertices or
        degenerate (zero-volume) tetrahedra, naming the first offending element.
    """

    nodes_per_cell = 4
    cell_type = "tetra"
    _allowed_dims = (3,)

    def __init__(self, points: ArrayLike, tets: ArrayLike, *, drop_degenerate: bool = False) -> None:
        super().__init__(points, tets, drop_degenerate=drop_degenerate)

    @property
    def tets(self) -> np.ndarray:
        """Alias of ``cells`` (n_cells, 4)."""
        return self.cells

    @staticmethod
    def _measure(x):
        a = x[:, 1] - x[:, 0]
        b = x[:, 2] - x[:, 0]
        c = x[:, 3] - x[:, 0]
        vol = np.einsum("ij,ij->i", np.cross(a, b), c) / 6.0
        longest = np.max(
            [np.linalg.norm(x[:, j] - x[:, i], axis=1) for i in range(4) for j in range(i + 1, 4)], axis=0
        )
        return vol, longest


class TriMesh(SimplexMesh):
    """A triangle mesh: planar (points (n, 2)) or a surface in 3D (points (n, 3)).

    Parameters
    ----------
    points : array_like, shape (n_points, 2) or (n_points, 3), float
        Node coordinates in mm.
    triangles : array_like, shape (n_cells, 3), int
        Vertex indices of each triangle (orientation is irrelevant).
    """

    nodes_per_cell = 3
    cell_type = "triangle"
    _allowed_dims = (2, 3)

    def __init__(self, points: ArrayLike, triangles: ArrayLike, *, drop_degenerate: bool = False) -> None:
        super().__init__(points, triangles, drop_degenerate=drop_degenerate)

    @property
    def triangles(self) -> np.ndarray:
        """Alias of ``cells`` (n_cells, 3)."""
        return self.cells

    @staticmethod
    def _measure(x):
        a = x[:, 1] - x[:, 0]
        b = x[:, 2] - x[:, 0]
        if x.shape[2] == 2:
            area = 0.5 * np.abs(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])
        else:
            area = 0.5 * np.linalg.norm(np.cross(a, b), axis=1)
        longest = np.max(
            [np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1), np.linalg.norm(b - a, axis=1)], 0
        )
        return area, longest


def from_meshio(mesh: meshio.Mesh, cell_type: str | None = None, *, drop_degenerate: bool = False) -> SimplexMesh:
    """Build a :class:`TetMesh` or :class:`TriMesh` from a ``meshio.Mesh``.

    Parameters
    ----------
    mesh : meshio.Mesh
        E.g. from :func:`physim.io.read_mesh`.
    cell_type : {"tetra", "triangle"}, optional
        Which cells to use; by default tetrahedra if present, else triangles.
        Planar triangle meshes (all z == 0) become 2D meshes.
    drop_degenerate : bool
        Drop degenerate elements instead of raising (see :class:`TetMesh`).
    """
    blocks: dict[str, list[np.ndarray]] = {}
    for cb in mesh.cells:
        blocks.setdefault(cb.type, []).append(np.asarray(cb.data))
    if cell_type is None:
        cell_type = "tetra" if "tetra" in blocks else "triangle" if "triangle" in blocks else None
        if cell_type is None:
            raise MeshError(f"mesh has no tetra or triangle cells (cell types: {sorted(blocks)})")
    if cell_type not in ("tetra", "triangle"):
        raise InvalidInputError(f"cell_type must be 'tetra' or 'triangle', got {cell_type!r}")
    if cell_type not in blocks:
        raise MeshError(f"mesh has no {cell_type} cells (cell types: {sorted(blocks)})")
    cells = np.concatenate(blocks[cell_type], axis=0)
    pts = np.asarray(mesh.points, dtype=np.float64)
    if cell_type == "tetra":
        return TetMesh(pts, cells, drop_degenerate=drop_degenerate)
    if pts.shape[1] == 3 and np.all(pts[:, 2] == 0.0):
        pts = pts[:, :2]
    return TriMesh(pts, cells, drop_degenerate=drop_degenerate)


def _grid_points(n, size, origin, jitter, seed):
    n = np.asarray(n, dtype=np.int64)
    axes = [origin[d] + np.linspace(0.0, size[d], int(n[d]) + 1) for d in range(len(n))]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(n))
    if jitter:
        rng = as_rng("seed", seed)
        h = np.asarray(size, dtype=float) / n
        disp = rng.uniform(-jitter, jitter, size=grid.shape) * h
        on_bnd = np.isclose(grid, origin) | np.isclose(grid, np.asarray(origin) + np.asarray(size))
        disp[on_bnd] = 0.0  # boundary nodes move only tangentially
        grid = grid + disp
    return grid


def _norm_args(n, size, origin, dim):
    def vec(name, v):
        a = np.asarray(v, dtype=object)
        if a.ndim > 1 or (a.ndim == 1 and a.shape[0] != dim):
            raise ShapeError(f"{name} must be a scalar or have {dim} entries, got shape {a.shape}")
        return [a.item()] * dim if a.ndim == 0 else list(a)

    nn = np.array([as_int(f"n[{i}]", v, lower=1) for i, v in enumerate(vec("n", n))], dtype=np.int64)
    cells = float(np.prod(nn.astype(float)))
    check_memory(f"a structured mesh with n={nn.tolist()}", 600.0 * cells * (6 if dim == 3 else 2))
    ss = np.array([as_scalar(f"size[{i}]", v, positive=True) for i, v in enumerate(vec("size", size))])
    oo = np.array([as_scalar(f"origin[{i}]", v) for i, v in enumerate(vec("origin", origin))])
    return nn, ss, oo


def box_tet_mesh(n: int | Sequence[int] = 4, size: float | Sequence[float] = 1.0, *, origin: float | Sequence[float] = 0.0, jitter: float = 0.0, seed: int | None = None) -> TetMesh:
    """Structured tetrahedral mesh of a box (default: the unit cube), 6 tets per cell.

    Each of the ``nx*ny*nz`` hexahedral cells is split into six tetrahedra
    around its main diagonal (Kuhn subdivision), which is conforming.

    Parameters
    ----------
    n : int or (3,) ints
        Cells per direction.
    size : float or (3,) floats
        Box edge lengths in mm.
    origin : float or (3,) floats
        Lower corner in mm.
    jitter : float
        Random displacement of the nodes, as a fraction of the cell size
        (boundary nodes move only tangentially). Keep below ~0.25 so that no
        element inverts.
    seed : int, optional
        Seed of the jitter.
    """
    nn, ss, oo = _norm_args(n, size, origin, 3)
    jitter = as_scalar("jitter", jitter, nonnegative=True)
    pts = _grid_points(nn, ss, oo, jitter, seed)
    nx, ny, nz = (int(v) for v in nn)

    def vid(i, j, k):
        return (i * (ny + 1) + j) * (nz + 1) + k

    i, j, k = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    i, j, k = i.ravel(), j.ravel(), k.ravel()
    tets = []
    for perm in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)):
        cur = [i.copy(), j.copy(), k.copy()]
        verts = [vid(*cur)]
        for ax in perm:
            cur[ax] = cur[ax] + 1
            verts.append(vid(*cur))
        tets.append(np.stack(verts, axis=1))
    tets = np.concatenate(tets, axis=0)
    return TetMesh(pts, tets)


def square_tri_mesh(n: int | Sequence[int] = 4, size: float | Sequence[float] = 1.0, *, origin: float | Sequence[float] = 0.0, jitter: float = 0.0, seed: int | None = None) -> TriMesh:
    """Structured 2D triangle mesh of a rectangle (default: the unit square), 2 triangles per cell.

    Parameters are those of :func:`box_tet_mesh` in 2D.
    """
    nn, ss, oo = _norm_args(n, size, origin, 2)
    jitter = as_scalar("jitter", jitter, nonnegative=True)
    pts = _grid_points(nn, ss, oo, jitter, seed)
    nx, ny = (int(v) for v in nn)
    i, j = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    i, j = i.ravel(), j.ravel()
    v00 = i * (ny + 1) + j
    v10 = (i + 1) * (ny + 1) + j
    v01 = i * (ny + 1) + j + 1
    v11 = (i + 1) * (ny + 1) + j + 1
    tris = np.concatenate([np.stack([v00, v10, v11], 1), np.stack([v00, v11, v01], 1)], 0)
    return TriMesh(pts, tris)
