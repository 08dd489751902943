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
from numpy.typing import ArrayLike

from ._atomic import atomic_write
from ._validate import as_float_array, as_index_array
from .errors import FileError, InvalidInputError, InvalidTypeError, MeshError, MissingFileError, ShapeError

__all__ = ["read_mesh", "write_mesh", "CELL_TYPES"]

#: nodes per cell for the cell types physim uses
CELL_TYPES = {"vertex": 1, "line": 2, "triangle": 3, "quad": 4, "tetra": 4, "hexahedron": 8}


def read_mesh(path: str | os.PathLike) -> meshio.Mesh:
    """Read a mesh file in any format meshio supports.

    Raises
    ------
    MissingFileError
        If ``path`` does not exist (a ``FileNotFoundError``).
    MeshError
        If meshio cannot parse it.
    """
    path = _as_path(path)
    if not path.exists():
        raise MissingFileError(f"mesh file not found: {path}")
    if path.is_dir():
        raise MeshError(f"could not read mesh {path}: it is a directory")
    try:
        return meshio.read(path)
    except (Exception, SystemExit) as exc:  # meshio raises many types, and exits on some formats
        detail = str(exc) if not isinstance(exc, SystemExit) else "unreadable or unknown format"
        raise MeshError(f"could not read mesh {path}: {detail}") from None


def _as_path(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidTypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    if "\x00" in str(p):
        raise InvalidInputError(f"path {str(p)!r} contains a NUL character")
    return p


def _field(kind: str, name, value, rows: int) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise InvalidTypeError(f"{kind}[{name!r}] must be a real numeric array, got dtype {a.dtype}")
    if a.shape[:1] != (rows,):
        raise ShapeError(f"{kind}[{name!r}] must have {rows} rows, got shape {a.shape}")
    return np.ascontiguousarray(a)


def write_mesh(
    path: str | os.PathLike,
    points: ArrayLike,
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
        The written path. The file is written to a unique temporary name in the
        same directory and renamed, so an interrupted write never leaves a
        truncated mesh and concurrent writes of one path never collide; it gets
        the permissions of any new file under the user's umask.

    Raises
    ------
    MeshError
        Unknown format (suffix or ``file_format``) or a failure inside meshio;
        the message names the path.
    FileError
        The file cannot be created (permissions, name too long, ...); names the path.
    """
    path = _as_path(path)
    if path.suffix == "" and file_format is None:
        path = path.with_suffix(".vtu")
    if file_format is not None:
        if file_format not in meshio._helpers._writer_map:
            raise MeshError(
                f"cannot write mesh {path}: unknown file_format {file_format!r}; "
                f"known: {sorted(meshio._helpers._writer_map)}"
            )
        fmt = file_format
    else:
        try:
            fmt = meshio._helpers._filetypes_from_path(path)[0]
        except Exception:
            raise MeshError(
                f"cannot write mesh {path}: unknown mesh format for suffix {path.suffix!r} "
                "(give a known suffix such as .vtu, or file_format=)"
            ) from None
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
        pdata[k] = _field("point_data", k, v, n)
    cdata = {}
    for k, v in (cell_data or {}).items():
        a = _field("cell_data", k, v, n_cells)
        splits, off = [], 0
        for b in cell_blocks:
            splits.append(a[off : off + len(b.data)])
            off += len(b.data)
        cdata[k] = splits
    mesh = meshio.Mesh(pts, cell_blocks, point_data=pdata, cell_data=cdata)

    def write(tmp: Path) -> None:
        try:
            meshio.write(tmp, mesh, file_format=fmt)
        except (InvalidInputError, OSError):
            raise
        except Exception as exc:  # meshio raises many types
            raise MeshError(f"could not write mesh {path}: {exc}") from exc

    try:
        return atomic_write(path, write)
    except FileError:
        raise
    except OSError as exc:  # pragma: no cover - atomic_write converts OSErrors
        raise FileError(f"could not write mesh {path}: {exc}") from exc
