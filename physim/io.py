"""Mesh input/output through meshio.

``read_mesh`` reads any format meshio reads; ``write_mesh`` writes points,
cells and point/cell result fields (``.vtu`` by default) and is the one place
where physim turns arrays into files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import meshio
import numpy as np

from ._validate import as_float_array, as_index_array
from .errors import InvalidInputError, MeshError, ShapeError

__all__ = ["read_mesh", "write_mesh", "CELL_TYPES"]

#: nodes per cell for the cell types physim uses
CELL_TYPES = {"vertex": 1, "line": 2, "triangle": 3, "quad": 4, "tetra": 4, "hexahedron": 8}


def read_mesh(path: str | os.PathLike) -> meshio.Mesh:
    """Read a mesh file in any format meshio supports.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    MeshError
        If meshio cannot parse it.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"mesh file not found: {path}")
    try:
        return meshio.read(path)
    except (Exception, SystemExit) as exc:  # meshio raises many types, and exits on some formats
        detail = str(exc) if not isinstance(exc, SystemExit) else "unreadable or unknown format"
        raise MeshError(f"could not read mesh {path}: {detail}") from None


def write_mesh(
    path: str | os.PathLike,
    points,
    cells: Mapping[str, np.ndarray] | list[tuple[str, np.ndarray]],
    *,
    point_data: Mapping[str, np.ndarray] | None = None,
    cell_data: Mapping[str, np.ndarray] | None = None,
    file_format: str | None = None,
) -> Path:
    """Write a mesh with result fields.

    Parameters
    ----------
    path : path-like
        Output file; the format follows the suffix (``.vtu`` if none is given).
    points : array_like, shape (n_points, 2 or 3)
        Coordinates; 2D points are padded with z = 0.
    cells : mapping or list of (cell_type, connectivity)
        e.g. ``{"tetra": tets}`` with ``tets`` int (n_cells, 4).
    point_data : mapping name -> array, shape (n_points, ...)
    cell_data : mapping name -> array, shape (n_cells_total, ...)
        One array per field covering all cell blocks in order.
    file_format : str, optional
        meshio format name, overriding the suffix.

    Returns
    -------
    pathlib.Path
        The written path. The file is written to a temporary name and renamed,
        so an interrupted write never leaves a truncated mesh.
    """
    path = Path(path)
    if path.suffix == "" and file_format is None:
        path = path.with_suffix(".vtu")
    pts = as_float_array("points", points)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3):
        raise ShapeError(f"points must have shape (n, 2) or (n, 3), got {pts.shape}")
    if pts.shape[1] == 2:
        pts = np.hstack([pts, np.zeros((pts.shape[0], 1))])
    n = pts.shape[0]
    blocks = list(cells.items()) if isinstance(cells, Mapping) else list(cells)
    cell_blocks = []
    n_cells = 0
    for ctype, conn in blocks:
        if ctype not in CELL_TYPES:
            raise MeshError(f"unknown cell type {ctype!r}; known: {sorted(CELL_TYPES)}")
        c = as_index_array(f"cells[{ctype!r}]", conn, upper=n)
        if c.ndim != 2 or c.shape[1] != CELL_TYPES[ctype]:
            raise ShapeError(f"cells[{ctype!r}] must have shape (m, {CELL_TYPES[ctype]}), got {c.shape}")
        cell_blocks.append(meshio.CellBlock(ctype, c))
        n_cells += c.shape[0]
    pdata = {}
    for k, v in (point_data or {}).items():
        a = np.asarray(v)
        if a.shape[:1] != (n,):
            raise ShapeError(f"point_data[{k!r}] must have {n} rows, got shape {a.shape}")
        pdata[k] = a
    cdata = {}
    for k, v in (cell_data or {}).items():
        a = np.asarray(v)
        if a.shape[:1] != (n_cells,):
            raise ShapeError(f"cell_data[{k!r}] must have {n_cells} rows, got shape {a.shape}")
        splits, off = [], 0
        for b in cell_blocks:
            splits.append(a[off : off + len(b.data)])
            off += len(b.data)
        cdata[k] = splits
    mesh = meshio.Mesh(pts, cell_blocks, point_data=pdata, cell_data=cdata)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    fmt = file_format or meshio._helpers._filetypes_from_path(path)[0]
    try:
        meshio.write(tmp, mesh, file_format=fmt)
        os.replace(tmp, path)
    except Exception as exc:
        if tmp.exists():
            tmp.unlink()
        if isinstance(exc, InvalidInputError):
            raise
        raise MeshError(f"could not write mesh {path}: {exc}") from exc
    return path
