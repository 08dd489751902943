"""Spring networks: geometry, connectivity and pinned degrees of freedom.

A :class:`SpringNetwork` is a set of nodes (2D or 3D points, in metres) joined
by central-force springs ("bonds"), with some degrees of freedom pinned. It
holds only geometry and topology; stiffnesses and rest lengths are passed to
:func:`physim.lattice.solve` so that one network can be trained (its
stiffnesses changed) without being rebuilt.

Builders: :func:`triangular_lattice`, :func:`square_lattice`,
:func:`from_mesh`; :func:`remove_bonds` returns a damaged copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from .._validate import as_float_array, as_index_array, as_int, as_scalar, check_finite, check_memory
from ..errors import InvalidInputError, InvalidTypeError, MeshError, ShapeError
from . import _kernels

if TYPE_CHECKING:
    import os

    import meshio
    import scipy.sparse as sp

#: coordinates and bond lengths (m) outside this range cannot be squared safely in float64
LENGTH_RANGE = (1e-100, 1e100)

__all__ = [
    "SpringNetwork",
    "triangular_lattice",
    "square_lattice",
    "from_mesh",
    "remove_bonds",
]


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class SpringNetwork:
    """A network of central-force springs with pinned degrees of freedom.

    Parameters
    ----------
    points : array_like, shape (n, d), float
        Node coordinates in metres, ``d`` = 2 or 3.
    bonds : array_like, shape (m, 2), int
        Node indices of the two ends of each bond.
    fixed : array_like
        Either pinned node indices, int shape (k,) (all dofs of those nodes are
        held at zero displacement), or a boolean mask of pinned dofs, shape
        (n, d).

    Attributes
    ----------
    points : ndarray, shape (n, d), float64
    bonds : ndarray, shape (m, 2), int64
    fixed_dofs : ndarray, shape (n, d), bool
        True where the displacement is held at zero.
    lengths : ndarray, shape (m,), float64
        Bond lengths in the reference configuration (m); the default rest lengths.
    directions : ndarray, shape (m, 3 or 2), float64
        Unit vectors from ``bonds[:, 0]`` to ``bonds[:, 1]``.

    Raises
    ------
    ShapeError, InvalidTypeError, NonFiniteError, InvalidInputError
        Wrong shapes, non-integer indices, non-finite coordinates, indices out
        of range, self-bonds, duplicate bonds or zero-length bonds.

    Notes
    -----
    The network is immutable: arrays are read-only and derived data (the
    sparsity pattern of the stiffness matrix) is computed once and cached.
    """

    def __init__(self, points: ArrayLike, bonds: ArrayLike, fixed: ArrayLike) -> None:
        pts = as_float_array("points", points, shape=(None, None), copy=True)
        n, d = pts.shape
        if d not in (2, 3):
            raise ShapeError(f"points must have shape (n, 2) or (n, 3), got {pts.shape}")
        if n < 2:
            raise ShapeError(f"a spring network needs at least 2 nodes, got points of shape {pts.shape}")
        b = as_index_array("bonds", bonds, upper=n, shape=(None, 2)).copy()
        if b.shape[0] == 0:
            raise ShapeError("bonds must contain at least one bond, got shape (0, 2)")
        self_loops = np.flatnonzero(b[:, 0] == b[:, 1])
        if self_loops.size:
            i = int(self_loops[0])
            raise InvalidInputError(f"bond {i} joins node {int(b[i, 0])} to itself")
        key = np.sort(b, axis=1)
        _, first, counts = np.unique(key, axis=0, return_index=True, return_counts=True)
        if np.any(counts > 1):
            j = int(np.argmax(counts > 1))
            pair = key[first[j]]
            dup = np.flatnonzero((key[:, 0] == pair[0]) & (key[:, 1] == pair[1]))
            raise InvalidInputError(
                f"duplicate bond between nodes {int(pair[0])} and {int(pair[1])} (bonds {dup.tolist()})"
            )
        scale = float(np.max(np.abs(pts))) if pts.size else 1.0
        if scale > LENGTH_RANGE[1]:
            i = int(np.argmax(np.abs(pts).max(axis=1)))
            raise InvalidInputError(
                f"points[{i}] = {pts[i].tolist()} m is beyond {LENGTH_RANGE[1]:g} m: squared lengths "
                "would overflow float64; rescale the coordinates"
            )
        vec = pts[b[:, 1]] - pts[b[:, 0]]
        lengths = np.sqrt(np.einsum("ij,ij->i", vec, vec))
        zero = np.flatnonzero(lengths <= 1e-12 * max(scale, 1e-300))
        if zero.size:
            i = int(zero[0])
            raise InvalidInputError(
                f"bond {i} between nodes {int(b[i, 0])} and {int(b[i, 1])} has zero length "
                f"(coincident points {pts[b[i, 0]].tolist()})"
            )
        tiny = np.flatnonzero(lengths < LENGTH_RANGE[0])
        if tiny.size:
            i = int(tiny[0])
            raise InvalidInputError(
                f"bond {i} between nodes {int(b[i, 0])} and {int(b[i, 1])} has length {lengths[i]:.3g} m, "
                f"below {LENGTH_RANGE[0]:g} m (squared lengths underflow float64); rescale the coordinates"
            )
        self.points = _readonly(pts)
        self.bonds = _readonly(b)
        self.fixed_dofs = _readonly(self._fixed_mask(fixed, n, d))
        self.lengths = _readonly(lengths)
        self.directions = _readonly(vec / lengths[:, None])

    @staticmethod
    def _fixed_mask(fixed, n: int, d: int) -> np.ndarray:
        a = np.asarray(fixed if fixed is not None else [], dtype=None)
        if a.dtype == bool and a.ndim == 2:
            if a.shape != (n, d):
                raise ShapeError(f"a boolean fixed mask must have shape ({n}, {d}), got {a.shape}")
            return np.ascontiguousarray(a, dtype=bool).copy()
        if a.dtype == bool:
            raise ShapeError(f"a boolean fixed mask must have shape ({n}, {d}), got {a.shape}")
        idx = as_index_array("fixed", a.ravel() if a.ndim == 0 else a, upper=n)
        if idx.ndim != 1:
            raise ShapeError(
                f"fixed must be node indices of shape (k,) or a boolean mask of shape ({n}, {d}), "
                f"got shape {idx.shape}"
            )
        mask = np.zeros((n, d), dtype=bool)
        mask[idx] = True
        return mask

    # -- sizes -------------------------------------------------------------
    @property
    def n_nodes(self) -> int:
        """Number of nodes ``n``."""
        return int(self.points.shape[0])

    @property
    def n_bonds(self) -> int:
        """Number of bonds ``m``."""
        return int(self.bonds.shape[0])

    @property
    def dim(self) -> int:
        """Spatial dimension ``d`` (2 or 3)."""
        return int(self.points.shape[1])

    @property
    def fixed_nodes(self) -> np.ndarray:
        """Indices of nodes with at least one pinned dof, int64 (k,)."""
        return np.flatnonzero(self.fixed_dofs.any(axis=1))

    # -- dof numbering and sparsity pattern (cached) -----------------------
    @cached_property
    def free_dofs(self) -> np.ndarray:
        """Flat indices (node * d + axis) of the free dofs, int64 (n_free,)."""
        return _readonly(np.flatnonzero(~self.fixed_dofs.ravel()).astype(np.int64))

    @property
    def n_free(self) -> int:
        """Number of free degrees of freedom."""
        return int(self.free_dofs.size)

    @cached_property
    def free_index(self) -> np.ndarray:
        """Map flat dof -> free-dof number, or -1 for pinned dofs, int64 (n * d,)."""
        fi = np.full(self.n_nodes * self.dim, -1, dtype=np.int64)
        fi[self.free_dofs] = np.arange(self.free_dofs.size, dtype=np.int64)
        return _readonly(fi)

    @cached_property
    def _pattern(self):
        """CSC sparsity pattern of the free-dof stiffness matrix.

        Returns ``(entry_map, indices, indptr)``: ``entry_map`` (m, (2d)^2)
        int64 gives, for each entry of each bond's element matrix, its position
        in the CSC data array (-1 for pinned rows/columns).
        """
        nf = self.n_free
        rows, cols = _kernels.element_rows_cols(self.bonds, self.free_index, self.dim)
        valid = (rows >= 0) & (cols >= 0)
        keys = cols[valid] * max(nf, 1) + rows[valid]
        uniq, inverse = np.unique(keys, return_inverse=True)
        entry_map = np.full(rows.size, -1, dtype=np.int64)
        entry_map[valid] = inverse
        indices = (uniq % max(nf, 1)).astype(np.int32)
        counts = np.bincount(uniq // max(nf, 1), minlength=nf)
        indptr = np.zeros(nf + 1, dtype=np.int32)
        np.cumsum(counts, out=indptr[1:])
        blk = (2 * self.dim) ** 2
        return _readonly(entry_map.reshape(self.n_bonds, blk)), _readonly(indices), _readonly(indptr)

    def compatibility_matrix(self) -> sp.csr_matrix:
        """The compatibility matrix ``C`` with ``e = C u`` (linear elongations).

        Returns
        -------
        scipy.sparse.csr_matrix, shape (m, n * d)
            Row ``i`` holds ``-n_i`` at the dofs of ``bonds[i, 0]`` and ``+n_i``
            at those of ``bonds[i, 1]`` (``n_i`` the unit direction). Pinned dofs
            are included; drop their columns with ``C[:, network.free_dofs]``.
        """
        import scipy.sparse as sp

        m, d = self.n_bonds, self.dim
        rows = np.repeat(np.arange(m), 2 * d)
        cols = np.concatenate(
            [self.bonds[:, :1] * d + np.arange(d), self.bonds[:, 1:] * d + np.arange(d)], axis=1
        ).ravel()
        vals = np.concatenate([-self.directions, self.directions], axis=1).ravel()
        return sp.csr_matrix((vals, (rows, cols)), shape=(m, self.n_nodes * d))

    def remove_bonds(self, idx: ArrayLike) -> SpringNetwork:
        """A new network without the bonds ``idx`` (damage); see :func:`remove_bonds`."""
        return remove_bonds(self, idx)

    def kept_bonds(self, idx: ArrayLike) -> np.ndarray:
        """Indices of the bonds kept when ``idx`` are removed, int64 (m - len(idx),)."""
        rm = as_index_array("idx", np.atleast_1d(idx), upper=self.n_bonds)
        keep = np.ones(self.n_bonds, dtype=bool)
        keep[rm] = False
        return np.flatnonzero(keep)

    def with_fixed(self, fixed: ArrayLike) -> SpringNetwork:
        """The same geometry with a different set of pinned dofs."""
        return SpringNetwork(self.points, self.bonds, fixed)

    def __repr__(self) -> str:
        return (
            f"SpringNetwork(n_nodes={self.n_nodes}, n_bonds={self.n_bonds}, dim={self.dim}, "
            f"pinned_dofs={int(self.fixed_dofs.sum())})"
        )


def remove_bonds(network: SpringNetwork, idx: ArrayLike) -> SpringNetwork:
    """Return a copy of ``network`` without the bonds ``idx``.

    Parameters
    ----------
    network : SpringNetwork
    idx : array_like of int, shape (r,)
        Bonds to remove (indices into ``network.bonds``).

    Returns
    -------
    SpringNetwork
        Bonds keep their relative order; ``network.kept_bonds(idx)`` maps the
        new bond numbering to the old one (use it to slice stiffness arrays).
        Removing bonds may create floppy modes; :func:`physim.lattice.solve`
        then raises :class:`~physim.errors.SingularSystemError`.
    """
    if not isinstance(network, SpringNetwork):
        raise InvalidTypeError(f"network must be a SpringNetwork, got {type(network).__name__}")
    keep = network.kept_bonds(idx)
    if keep.size == 0:
        raise InvalidInputError("remove_bonds would remove every bond of the network")
    return SpringNetwork(network.points, network.bonds[keep], network.fixed_dofs)


def triangular_lattice(rows: Sequence[int], spacing: float = 16e-3, fixed: ArrayLike = ()) -> SpringNetwork:
    """A triangular-lattice patch given the number of nodes in each row.

    Rows run from the top (``y = 0``) downwards, ``spacing * sqrt(3)/2`` apart.
    Consecutive rows must differ by at most one node; a row one node shorter
    is centred under the previous one, equal rows are staggered alternately by
    half a spacing. Bonds join horizontal neighbours and every pair of nodes
    in adjacent rows that are one spacing apart.

    Parameters
    ----------
    rows : sequence of int
        Nodes per row, top to bottom. ``(5, 4, 3, 2)`` with ``spacing=16e-3``
        is the 14-node, 28-bond network of Li & Mao (2024).
    spacing : float
        Bond length ``a`` (m).
    fixed : array_like
        Pinned nodes or dof mask, as for :class:`SpringNetwork`.

    Returns
    -------
    SpringNetwork
        2D network; nodes numbered row by row, left to right.
    """
    raw = np.atleast_1d(np.asarray(rows, dtype=object))
    if raw.ndim != 1:
        raise InvalidInputError(f"rows must be a sequence of node counts, got shape {raw.shape}")
    rows = [as_int(f"rows[{i}]", r, lower=1) for i, r in enumerate(raw)]
    if len(rows) < 1:
        raise InvalidInputError(f"rows must be positive node counts, got {rows}")
    check_memory(f"triangular_lattice with {sum(rows)} nodes", 400.0 * sum(rows))
    a = as_scalar("spacing", spacing, positive=True)
    h = a * np.sqrt(3.0) / 2.0
    offsets = [0.0]
    for r in range(1, len(rows)):
        diff = rows[r] - rows[r - 1]
        if abs(diff) > 1:
            raise InvalidInputError(
                f"consecutive rows must differ by at most one node; rows {r - 1} and {r} have "
                f"{rows[r - 1]} and {rows[r]}"
            )
        if diff == -1:
            offsets.append(offsets[-1] + a / 2)
        elif diff == 1:
            offsets.append(offsets[-1] - a / 2)
        else:
            offsets.append(offsets[-1] + (a / 2 if r % 2 == 1 else -a / 2))
    starts = np.concatenate([[0], np.cumsum(rows)])
    pts = np.concatenate(
        [
            np.column_stack([offsets[r] + a * np.arange(rows[r]), np.full(rows[r], -r * h)])
            for r in range(len(rows))
        ]
    )
    bonds = []
    for r in range(len(rows)):
        ids = np.arange(starts[r], starts[r + 1])
        bonds.append(np.column_stack([ids[:-1], ids[1:]]))
        if r + 1 < len(rows):
            nxt = np.arange(starts[r + 1], starts[r + 2])
            # a node of the next row at x is bonded to the nodes of this row at x -/+ a/2
            for shift in (-a / 2, a / 2):
                j = np.rint((pts[nxt, 0] + shift - offsets[r]) / a).astype(np.int64)
                ok = (j >= 0) & (j < rows[r])
                ok &= np.abs(offsets[r] + a * np.clip(j, 0, rows[r] - 1) - pts[nxt, 0] - shift) < 1e-9 * a
                bonds.append(np.column_stack([ids[j[ok]], nxt[ok]]))
    return SpringNetwork(pts, np.concatenate(bonds), fixed)


def square_lattice(nx: int, ny: int, diagonals: bool | str = True, spacing: float = 16e-3, fixed: ArrayLike = ()) -> SpringNetwork:
    """A square lattice of ``nx`` by ``ny`` nodes, optionally braced.

    Parameters
    ----------
    nx, ny : int
        Nodes along x and y (>= 2 each). Node ``(i, j)`` is at
        ``(i * spacing, j * spacing)`` and has index ``j * nx + i``.
    diagonals : bool or {"cross"}
        ``True``: one diagonal per cell (alternating direction), making the
        lattice rigid; ``"cross"``: both diagonals; ``False``: none (the bare
        square lattice has floppy shear modes).
    spacing : float
        Lattice constant (m).
    fixed : array_like
        Pinned nodes or dof mask, as for :class:`SpringNetwork`.

    Returns
    -------
    SpringNetwork
        2D network.
    """
    nx, ny = as_int("nx", nx, lower=2), as_int("ny", ny, lower=2)
    if not (isinstance(diagonals, (bool, np.bool_)) or (isinstance(diagonals, str) and diagonals == "cross")):
        raise InvalidInputError(f"diagonals must be True, False or 'cross', got {diagonals!r}")
    check_memory(f"square_lattice({nx}, {ny})", 400.0 * nx * ny)
    a = as_scalar("spacing", spacing, positive=True)
    I, J = np.meshgrid(np.arange(nx), np.arange(ny))
    pts = np.column_stack([I.ravel() * a, J.ravel() * a])
    idx = (J * nx + I).astype(np.int64)
    b = [
        np.column_stack([idx[:, :-1].ravel(), idx[:, 1:].ravel()]),
        np.column_stack([idx[:-1, :].ravel(), idx[1:, :].ravel()]),
    ]
    ll, lr, ul, ur = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    if isinstance(diagonals, str):
        b += [np.column_stack([ll.ravel(), ur.ravel()]), np.column_stack([lr.ravel(), ul.ravel()])]
    elif diagonals:
        alt = ((I[:-1, :-1] + J[:-1, :-1]) % 2 == 0).ravel()
        d1 = np.column_stack([ll.ravel(), ur.ravel()])
        d2 = np.column_stack([lr.ravel(), ul.ravel()])
        b.append(np.where(alt[:, None], d1, d2))
    return SpringNetwork(pts, np.concatenate(b), fixed)


def from_mesh(mesh: meshio.Mesh | str | os.PathLike, fixed: ArrayLike = (), dim: int | None = None) -> SpringNetwork:
    """A spring network on the edges of a triangle and/or tetrahedron mesh.

    Parameters
    ----------
    mesh : meshio.Mesh or path-like
        Its ``line``, ``triangle`` and ``tetra`` cells define the bonds (each
        unique edge once).
    fixed : array_like
        Pinned nodes or dof mask, as for :class:`SpringNetwork`.
    dim : {2, 3}, optional
        Spatial dimension. Default: 3 if the mesh has tetrahedra or any
        non-zero z coordinate, else 2.

    Returns
    -------
    SpringNetwork
        Nodes are the mesh points (points not used by any edge are kept and
        must be pinned, or the solve reports them as floppy).

    Raises
    ------
    MeshError
        If the mesh has no line, triangle or tetra cells.
    """
    import meshio

    if not isinstance(mesh, meshio.Mesh):
        from ..io import read_mesh

        mesh = read_mesh(mesh)
    pts = as_float_array("mesh.points", mesh.points, shape=(None, None))
    check_finite("mesh.points", pts)
    edges = []
    has_tet = False
    local = {
        "line": [(0, 1)],
        "triangle": [(0, 1), (1, 2), (2, 0)],
        "tetra": [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)],
    }
    for block in mesh.cells:
        if block.type not in local:
            continue
        has_tet |= block.type == "tetra"
        c = as_index_array(f"mesh cells[{block.type!r}]", block.data, upper=pts.shape[0])
        for i, j in local[block.type]:
            edges.append(c[:, [i, j]])
    if not edges:
        types = [b.type for b in mesh.cells]
        raise MeshError(f"from_mesh needs line, triangle or tetra cells, mesh has {types}")
    e = np.sort(np.concatenate(edges), axis=1)
    e = np.unique(e, axis=0)
    if dim is None:
        dim = 3 if has_tet or (pts.shape[1] == 3 and np.any(pts[:, 2] != 0)) else 2
    if dim not in (2, 3) or dim > pts.shape[1]:
        raise InvalidInputError(f"dim must be 2 or 3 (and <= point dimension {pts.shape[1]}), got {dim}")
    return SpringNetwork(pts[:, :dim], e, fixed)
