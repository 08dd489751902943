"""Pictures and views: 3D mesh panels, curves with their data, standalone HTML views.

Nothing here opens a window when there is no display (or when
``PHYSIM_OFFSCREEN=1``, which the test suite sets): pyvista renders off-screen
and matplotlib uses the Agg backend. Functions write files and return their
path.

What every picture gets from these helpers:

* :func:`mesh_panels` -- one or more 3D views of meshes coloured by fields,
  each panel with its own colorbar (ticks at round numbers, the label below the
  bar, never on top of a tick), orientation axes, a scale bar (parallel
  projection, so the bar is exact everywhere in the view), a title above the
  panel and a legend for markers and isolines.
* :func:`plot_curves` -- curves against integer iteration ticks, a legend, a
  title, optional reference lines and a second y axis for a quantity in other
  units; the numbers behind it are written to a CSV file next to the PNG.
* :func:`save_figure` ``(..., data=...)`` -- the same CSV for any matplotlib
  figure (ECG signals, trajectories, histories).
* :func:`write_view_html` -- a standalone interactive page (rotate, zoom,
  choose the field) that opens in any browser without a server.
"""

from __future__ import annotations

import csv
import html as _html
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ensure_offscreen",
    "headless",
    "plotter",
    "save_scene",
    "nice_ticks",
    "nice_limits",
    "scalar_bar_args",
    "Marker",
    "Panel",
    "mesh_panels",
    "plot_mesh_field",
    "plot_curves",
    "integer_ticks",
    "figure",
    "save_figure",
    "write_csv",
    "as_grid",
    "scalar_fields",
    "write_view_html",
    "read_view_meshes",
    "InteractiveView",
    "show_interactive",
]

PathLike = str | os.PathLike


# ----------------------------------------------------------------------------------------------
# back ends


def headless() -> bool:
    """True when no display is available or off-screen rendering is forced."""
    if os.environ.get("PHYSIM_OFFSCREEN", "") not in ("", "0"):
        return True
    if os.name == "nt" or os.uname().sysname == "Darwin":
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def ensure_offscreen() -> None:
    """Select non-interactive backends when headless (idempotent).

    Headless, this also raises VTK's log threshold to errors (process-wide).
    """
    if headless():
        import matplotlib

        matplotlib.use("Agg", force=True)
        try:
            import pyvista as pv

            pv.OFF_SCREEN = True
        except ImportError:  # pragma: no cover - pyvista is a core dependency
            pass
        try:
            # without a display, VTK logs a "bad X server connection" warning for every
            # render window although off-screen rendering works; keep its errors only
            from vtkmodules.vtkCommonCore import vtkLogger

            vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_ERROR)
        except ImportError:  # pragma: no cover
            pass


def plotter(
    window_size: tuple[int, int] = (1024, 768), shape: tuple[int, int] = (1, 1), **kwargs: Any
) -> Any:
    """A pyvista ``Plotter`` rendering off-screen (always: physim only writes files)."""
    ensure_offscreen()
    import pyvista as pv

    pl = pv.Plotter(off_screen=True, window_size=list(window_size), shape=shape, **kwargs)
    pl.set_background("white")
    return pl


def save_scene(pl: Any, path: PathLike) -> Path:
    """Render a plotter to a PNG file and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.screenshot(str(path))
    pl.close()
    return path


# ----------------------------------------------------------------------------------------------
# round numbers


def _nice_step(span: float, n: int) -> float:
    """A step of 1, 2, 2.5 or 5 times a power of ten giving about ``n`` intervals over ``span``."""
    raw = span / max(int(n), 1)
    if not np.isfinite(raw) or raw <= 0:
        return 1.0
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * mag >= raw * (1 - 1e-9):
            return m * mag
    return 10.0 * mag  # pragma: no cover


def nice_limits(lo: float, hi: float, n: int = 5) -> tuple[float, float, float]:
    """Round limits covering ``[lo, hi]`` and the step of their ticks.

    Parameters
    ----------
    lo, hi : float
        Data range (any order; equal values give a unit-wide range).
    n : int
        About how many intervals between ticks.

    Returns
    -------
    (lower, upper, step) : tuple of float
        ``lower <= lo``, ``upper >= hi``, both multiples of ``step`` (1, 2, 2.5
        or 5 times a power of ten).
    """
    lo, hi = float(min(lo, hi)), float(max(lo, hi))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return 0.0, 1.0, 0.2
    if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1e-300):
        lo, hi = lo - 0.5 * max(abs(lo), 1.0), hi + 0.5 * max(abs(hi), 1.0)
    # among round steps near span / n, take the one whose limits give about n intervals
    # and waste the least of the colour or axis range
    raw = (hi - lo) / max(int(n), 1)
    k0 = math.floor(math.log10(raw))
    best = None
    for k in (k0 - 1, k0, k0 + 1):
        for m in (1.0, 2.0, 2.5, 5.0):
            step = m * 10.0**k
            lower = math.floor(lo / step + 1e-9) * step
            upper = math.ceil(hi / step - 1e-9) * step
            count = round((upper - lower) / step)
            if count < 2:
                continue
            score = abs(count - n) / max(n, 1) + 2.0 * ((upper - lower) / (hi - lo) - 1.0)
            if best is None or score < best[0] - 1e-12:
                best = (score, lower, upper, step)
    _, lower, upper, step = best
    return lower, upper, step


def nice_ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    """Ticks at round numbers covering ``[lo, hi]`` (see :func:`nice_limits`).

    Returns
    -------
    ndarray, shape (k,), float64
        Equally spaced values from the lower to the upper nice limit.
    """
    lower, upper, step = nice_limits(lo, hi, n)
    k = int(round((upper - lower) / step))
    return lower + step * np.arange(k + 1)


def _tick_format(step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    if step * 10**decimals % 1 > 1e-6:  # 2.5, 0.25, ...
        decimals += 1
    return f"%.{decimals}f"


def scalar_bar_args(
    title: str, clim: tuple[float, float], *, vertical: bool = True, n: int = 5, **kwargs: Any
) -> dict:
    """pyvista ``scalar_bar_args`` whose labels fall on round numbers.

    Use with ``clim`` from :func:`nice_limits` (the labels are equally spaced
    between the ends of ``clim``). The title sits clear of the end labels.

    Returns
    -------
    dict
        Keyword arguments for ``Plotter.add_mesh(scalar_bar_args=...)``.
    """
    lo, hi = float(clim[0]), float(clim[1])
    lower, upper, step = nice_limits(lo, hi, n)
    if abs(lower - lo) > 1e-9 * max(1.0, abs(lo)) or abs(upper - hi) > 1e-9 * max(1.0, abs(hi)):
        step = (hi - lo) / max(n, 1)
    n_labels = int(round((hi - lo) / step)) + 1 if step > 0 else 2
    args = {
        "title": title + ("\n" if vertical else ""),  # a blank line between title and top label
        "color": "black",
        "n_labels": max(2, n_labels),
        "fmt": _tick_format(step),
        "vertical": vertical,
        "title_font_size": 16,
        "label_font_size": 14,
    }
    if vertical:
        args.update(position_x=0.87, position_y=0.12, height=0.66, width=0.06)
    else:
        args.update(position_x=0.2, position_y=0.04, width=0.6, height=0.07)
    args.update(kwargs)
    return args


# ----------------------------------------------------------------------------------------------
# meshes


def as_grid(mesh: Any) -> Any:
    """A pyvista dataset from a pyvista dataset, a ``meshio.Mesh`` or a physim mesh.

    Physim meshes are objects with ``points`` (n, 3) and ``tets`` / ``cells`` /
    ``triangles`` (m, 4) or (m, 3) node indices (``TetMesh``, ``TriMesh``,
    ``BiventricularMesh``). The result is a new object (fields added to it do
    not touch ``mesh``).
    """
    import pyvista as pv

    if isinstance(mesh, pv.DataSet):
        return mesh.copy()
    try:
        import meshio

        if isinstance(mesh, meshio.Mesh):
            return pv.from_meshio(mesh)
    except ImportError:  # pragma: no cover - meshio is a core dependency
        pass
    points = getattr(mesh, "points", None)
    cells = None
    for attr in ("tets", "triangles", "cells"):
        if getattr(mesh, attr, None) is not None:
            cells = np.asarray(getattr(mesh, attr))
            break
    if points is None or cells is None or cells.ndim != 2 or cells.shape[1] not in (3, 4):
        raise TypeError(
            f"cannot draw a {type(mesh).__name__}: expected a pyvista/meshio mesh or points + cells"
        )
    points = np.asarray(points, dtype=float)
    if points.shape[1] == 2:
        points = np.column_stack([points, np.zeros(len(points))])
    nv = cells.shape[1]
    ctype = pv.CellType.TETRA if nv == 4 else pv.CellType.TRIANGLE
    flat = np.hstack([np.full((len(cells), 1), nv), cells]).ravel()
    return pv.UnstructuredGrid(flat, np.full(len(cells), ctype, dtype=np.uint8), points)


def _surface(grid):
    import pyvista as pv

    if isinstance(grid, pv.PolyData):
        return grid
    return grid.extract_surface(algorithm="dataset_surface")


@dataclass
class Marker:
    """Points drawn as spheres in a :class:`Panel`, with a legend entry.

    Attributes
    ----------
    points : array_like, shape (k, 3)
        Positions (mesh units).
    label : str
        Legend text.
    color : str
        Any matplotlib/pyvista colour name.
    size : float
        Sphere diameter in screen pixels.
    """

    points: Any
    label: str = ""
    color: str = "white"
    size: float = 14.0


@dataclass
class Panel:
    """One 3D view of :func:`mesh_panels`.

    Attributes
    ----------
    mesh : pyvista dataset, meshio.Mesh or physim mesh
        What to draw (its outer surface; clip it first for a cut view).
    scalars : str or ndarray, optional
        Name of a point/cell field of ``mesh``, or values per point or per cell.
        ``None`` draws the surface in ``color``.
    title : str
        Text above the panel.
    label : str
        Colorbar label, with units (e.g. ``"activation time (ms)"``).
    cmap : str
        Matplotlib colormap name.
    clim : (float, float), optional
        Colour range; default: round limits of the finite values.
    camera : pyvista camera position, optional
        ``[(position), (focal point), (view up)]`` or a name such as ``"xy"``.
    isolines : int or sequence of float
        Number of contour lines (at round values) or their levels; 0 = none.
    isoline_label : str
        Legend text of the isolines (default ``"isolines every <step>"``).
    markers : list of Marker
    lines : pyvista.PolyData, optional
        Line segments (e.g. fibre directions) coloured by ``scalars`` instead
        of the mesh, drawn over the mesh surface in ``color``.
    color : str
        Surface colour when ``scalars`` is None or ``lines`` is given.
    show_edges : bool
    colorbar : bool
        Draw this panel's colorbar (default True when there are scalars).
    zoom : float
        Magnification after the view is fitted to the mesh (> 1 zooms in).
    """

    mesh: Any
    scalars: Any = None
    title: str = ""
    label: str = ""
    cmap: str = "viridis"
    clim: tuple[float, float] | None = None
    camera: Any = None
    isolines: int | Sequence[float] = 0
    isoline_label: str = ""
    markers: list[Marker] = field(default_factory=list)
    lines: Any = None
    color: str = "lightgrey"
    show_edges: bool = False
    colorbar: bool = True
    zoom: float = 1.0


def _panel_values(grid, scalars):
    """(name, values, is_point) of a panel's scalars on ``grid`` (values added to grid)."""
    if scalars is None:
        return None, None, True
    if isinstance(scalars, str):
        if scalars in grid.point_data:
            return scalars, np.asarray(grid.point_data[scalars], dtype=float), True
        if scalars in grid.cell_data:
            return scalars, np.asarray(grid.cell_data[scalars], dtype=float), False
        raise KeyError(
            f"mesh has no field {scalars!r} (point: {list(grid.point_data)}, cell: {list(grid.cell_data)})"
        )
    vals = np.asarray(scalars, dtype=float)
    name = "_values"
    if vals.shape[0] == grid.n_points:
        grid.point_data[name] = vals
        return name, vals, True
    if vals.shape[0] == grid.n_cells:
        grid.cell_data[name] = vals
        return name, vals, False
    raise ValueError(
        f"scalars has {vals.shape[0]} values, mesh has {grid.n_points} points and {grid.n_cells} cells"
    )


def _finite_range(vals) -> tuple[float, float]:
    v = np.asarray(vals, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0, 1.0
    return float(v.min()), float(v.max())


def _render_panel(p: Panel, size: tuple[int, int]):
    """Render one panel; returns (image, world units per pixel, camera, colour info)."""
    import pyvista as pv

    grid = as_grid(p.mesh)
    lines = None if p.lines is None else p.lines.copy()
    # with lines, the scalars colour the lines; otherwise the mesh
    name, vals, is_point = _panel_values(lines if lines is not None else grid, p.scalars)
    surf = _surface(grid)
    info = None
    pl = plotter(window_size=size)
    pl.enable_parallel_projection()
    if name is not None:
        lo, hi = p.clim if p.clim is not None else nice_limits(*_finite_range(vals))[:2]
        info = {"clim": (float(lo), float(hi)), "cmap": p.cmap, "label": p.label}
    if lines is not None:
        pl.add_mesh(surf, color=p.color, smooth_shading=True, show_edges=p.show_edges)
        if name is not None:
            pl.add_mesh(
                lines, scalars=name, cmap=p.cmap, clim=info["clim"], line_width=3, show_scalar_bar=False
            )
        else:
            pl.add_mesh(lines, color="black", line_width=3)
    elif name is None:
        pl.add_mesh(surf, color=p.color, smooth_shading=True, show_edges=p.show_edges)
    else:
        pl.add_mesh(
            surf,
            scalars=name,
            preference="point" if is_point else "cell",
            cmap=p.cmap,
            clim=info["clim"],
            smooth_shading=True,
            split_sharp_edges=True,
            show_edges=p.show_edges,
            show_scalar_bar=False,
            nan_color="lightgrey",
        )
    levels = _iso_levels(p, vals if (is_point and lines is None) else None, info)
    if levels is not None and len(levels):
        iso = surf.contour(isosurfaces=list(levels), scalars=name)
        if iso.n_points:
            pl.add_mesh(iso, color="black", line_width=2)
    for m in p.markers:
        pts = np.atleast_2d(np.asarray(m.points, dtype=float))
        if pts.size:
            pl.add_mesh(
                pv.PolyData(pts),
                color=m.color,
                point_size=m.size,
                render_points_as_spheres=True,
            )
    if p.camera is not None:
        pl.camera_position = p.camera
    pl.reset_camera()  # parallel projection: fit the view to the scene, keeping the direction
    if p.zoom != 1.0:
        pl.camera.zoom(p.zoom)
    pl.render()
    img = pl.screenshot(return_img=True)
    cam = pl.camera
    units_per_px = 2.0 * float(cam.parallel_scale) / size[1]
    direction = np.asarray(cam.focal_point) - np.asarray(cam.position)
    up = np.asarray(cam.up, dtype=float)
    pl.close()
    return img, units_per_px, (direction, up), info, levels


def _iso_levels(p: Panel, vals, info):
    if vals is None or info is None or not p.isolines:
        return None
    if isinstance(p.isolines, (int, np.integer)):
        lo, hi = _finite_range(vals)
        ticks = nice_ticks(lo, hi, int(p.isolines) + 1)
        return ticks[(ticks > lo) & (ticks < hi)]
    return np.asarray(list(p.isolines), dtype=float)


def _draw_axes_triad(ax, direction, up, width_px, height_px, labels=("x", "y", "z")):
    """Orientation axes: the world x, y, z directions as seen from the camera (lower-left corner)."""
    d = direction / np.linalg.norm(direction)
    right = np.cross(d, up)
    right /= np.linalg.norm(right)
    upv = np.cross(right, d)
    r = 0.06 * min(width_px, height_px)
    ox, oy = 0.04 * width_px + 1.6 * r, height_px - 0.04 * height_px - 1.6 * r
    for e, lab, col in zip(np.eye(3), labels, ("tab:red", "tab:green", "tab:blue")):
        dx, dy = float(e @ right), float(e @ upv)
        ax.annotate(
            "",
            xy=(ox + r * dx, oy - r * dy),
            xytext=(ox, oy),
            xycoords="data",
            arrowprops={"arrowstyle": "-|>", "color": col, "lw": 1.6, "shrinkA": 0, "shrinkB": 0},
        )
        if dx * dx + dy * dy > 0.02:  # an axis pointing at the viewer has no visible direction
            ax.text(
                ox + 1.4 * r * dx, oy - 1.4 * r * dy, lab, color=col, fontsize=9, ha="center", va="center"
            )


def _draw_scale_bar(ax, units_per_px, width_px, unit):
    from matplotlib.offsetbox import AnchoredOffsetbox, AuxTransformBox, TextArea, VPacker
    from matplotlib.patches import Rectangle

    length = _nice_step(0.2 * width_px * units_per_px, 1)
    if length / units_per_px > 0.35 * width_px:
        length /= 2.0
    px = length / units_per_px
    box = AuxTransformBox(ax.transData)
    box.add_artist(Rectangle((0, 0), px, 0, fc="none", ec="black", lw=3))
    label = TextArea(f"{length:g} {unit}".strip(), textprops={"fontsize": 9})
    pack = VPacker(children=[box, label], align="center", pad=0, sep=4)
    ax.add_artist(AnchoredOffsetbox(loc="lower right", child=pack, frameon=False, pad=0.4, borderpad=0.5))


def mesh_panels(
    path: PathLike,
    panels: Sequence[Panel],
    *,
    ncols: int | None = None,
    panel_size: tuple[int, int] = (640, 560),
    suptitle: str = "",
    unit: str = "mm",
    scale_bar: bool = True,
    axes: bool = True,
    dpi: int = 110,
) -> Path:
    """Render 3D views of meshes side by side, each with its own colorbar, and save a PNG.

    Each panel is rendered by pyvista off-screen with a parallel projection and
    placed in a matplotlib figure, which draws the titles, the colorbars (round
    tick values; the label under the bar), orientation axes (world x, y, z as
    seen from the camera), a scale bar in ``unit`` and a legend of the markers
    and isolines.

    Parameters
    ----------
    path : path of the PNG
    panels : sequence of Panel
    ncols : int, optional
        Panels per row (default: all in one row).
    panel_size : (int, int)
        Rendered size of each 3D view in pixels (width, height).
    suptitle : str
        Title of the whole figure.
    unit : str
        Length unit of the mesh coordinates, shown on the scale bar.
    scale_bar, axes : bool
        Draw the scale bar / orientation axes in every panel.

    Returns
    -------
    pathlib.Path
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    panels = list(panels)
    if not panels:
        raise ValueError("mesh_panels needs at least one panel")
    ncols = len(panels) if ncols is None else max(1, min(int(ncols), len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    w_in, h_in = panel_size[0] / dpi, panel_size[1] / dpi
    fig, axs = figure(nrows, ncols, figsize=(w_in * ncols, (h_in + 1.3) * nrows), squeeze=False)
    for k, ax in enumerate(axs.ravel()):
        ax.set_axis_off()
        if k >= len(panels):
            continue
        p = panels[k]
        img, upp, (direction, up), info, levels = _render_panel(p, panel_size)
        ax.imshow(img, interpolation="antialiased")
        ax.set_xlim(0, img.shape[1])
        ax.set_ylim(img.shape[0], 0)
        if p.title:
            ax.set_title(p.title, fontsize=11, pad=6)
        if axes:
            _draw_axes_triad(ax, direction, up, img.shape[1], img.shape[0])
        if scale_bar:
            _draw_scale_bar(ax, upp, img.shape[1], unit)
        handles = []
        if levels is not None and len(levels):
            text = p.isoline_label
            if not text:
                step = float(np.min(np.diff(levels))) if len(levels) > 1 else float(levels[0])
                unit_txt = ""
                if p.label.endswith(")") and "(" in p.label:
                    unit_txt = " " + p.label[p.label.rindex("(") + 1 : -1]
                text = f"isolines every {step:g}{unit_txt}"
            handles.append(Line2D([], [], color="black", lw=1.5, label=text))
        for m in p.markers:
            if m.label:
                handles.append(
                    Line2D([], [], ls="none", marker="o", ms=8, mfc=m.color, mec="0.3", label=m.label)
                )
        if handles:
            ax.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.85)
        if info is not None and p.colorbar:
            sm = ScalarMappable(norm=Normalize(*info["clim"]), cmap=info["cmap"])
            cb = fig.colorbar(sm, ax=ax, orientation="horizontal", fraction=0.05, pad=0.02, aspect=30)
            cb.set_label(info["label"], fontsize=10)
            lo, hi = info["clim"]
            ticks = nice_ticks(lo, hi, 5)
            cb.set_ticks(ticks[(ticks >= lo - 1e-9 * abs(hi - lo)) & (ticks <= hi + 1e-9 * abs(hi - lo))])
            cb.ax.tick_params(labelsize=9)
    if suptitle:
        fig.suptitle(suptitle, fontsize=12)
    return save_figure(fig, path, dpi=dpi)


def plot_mesh_field(
    mesh: Any,
    scalars: np.ndarray,
    path: PathLike,
    *,
    title: str = "",
    cmap: str = "viridis",
    isolines: int = 0,
    camera_position: Any = None,
    clim: tuple[float, float] | None = None,
    show_edges: bool = False,
    label: str = "",
    unit: str = "mm",
) -> Path:
    """Colour a mesh by a point or cell field and save a PNG (one :func:`mesh_panels` panel).

    Parameters
    ----------
    mesh : pyvista.DataSet, meshio.Mesh or physim mesh
    scalars : ndarray, shape (n_points,) or (n_cells,)
    path : path of the PNG
    title : str
        Panel title (also the colorbar label unless ``label`` is given).
    isolines : int
        Number of contour lines of a point field to overlay (0 = none).
    camera_position : pyvista camera position, optional
    clim : (float, float), optional
    label : str
        Colorbar label with units.
    unit : str
        Length unit of the coordinates (scale bar).
    """
    panel = Panel(
        mesh,
        scalars,
        title=title,
        label=label or title,
        cmap=cmap,
        clim=clim,
        camera=camera_position,
        isolines=isolines,
        show_edges=show_edges,
    )
    return mesh_panels(path, [panel], unit=unit)


# ----------------------------------------------------------------------------------------------
# curves and data files


def figure(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    """A matplotlib figure and axes with the Agg backend when headless."""
    ensure_offscreen()
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, **kwargs)


def write_csv(path: PathLike, columns: Mapping[str, Iterable[float] | Iterable[str]]) -> Path:
    """Write named columns to a CSV file (shorter columns are padded with empty cells).

    Parameters
    ----------
    path : path of the CSV file
    columns : mapping of column name -> 1-D sequence
        2-D arrays are split into columns ``name[0], name[1], ...``.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols: dict[str, list] = {}
    for name, values in columns.items():
        arr = np.asarray(values)
        if arr.ndim == 2:
            for j in range(arr.shape[1]):
                cols[f"{name}[{j}]"] = arr[:, j].tolist()
        else:
            cols[str(name)] = arr.reshape(-1).tolist()
    n = max((len(v) for v in cols.values()), default=0)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(list(cols))
        for i in range(n):
            w.writerow([_csv_cell(v[i]) if i < len(v) else "" for v in cols.values()])
    return path


def _csv_cell(v):
    if isinstance(v, float):
        return repr(v) if np.isfinite(v) else ("nan" if np.isnan(v) else ("inf" if v > 0 else "-inf"))
    return v


def save_figure(fig: Any, path: PathLike, *, data: Mapping[str, Any] | None = None, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG and close it; ``data`` goes to a CSV next to it.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : path of the PNG
    data : mapping of column name -> 1-D sequence, optional
        The numbers behind the picture, written with :func:`write_csv` to
        ``path`` with the suffix ``.csv``.
    dpi : int
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    if data is not None:
        write_csv(path.with_suffix(".csv"), data)
    return path


def integer_ticks(ax: Any, axis: str = "x") -> None:
    """Put only integer ticks on an axis (iterations, epochs, counts)."""
    from matplotlib.ticker import MaxNLocator

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def _xy(c) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(c, tuple) and len(c) == 2:
        return np.asarray(c[0], dtype=float).ravel(), np.asarray(c[1], dtype=float).ravel()
    y = np.asarray(c, dtype=float).ravel()
    return np.arange(y.size, dtype=float), y


def plot_curves(
    curves: Mapping[str, Sequence[float] | tuple[Sequence[float], Sequence[float]]],
    path: PathLike,
    *,
    xlabel: str = "iteration",
    ylabel: str = "loss",
    title: str = "",
    logy: bool = False,
    references: Mapping[str, float] | None = None,
    right: Mapping[str, Sequence[float] | tuple[Sequence[float], Sequence[float]]] | None = None,
    right_ylabel: str = "",
    integer_x: bool | None = None,
) -> Path:
    """Plot named curves on one axis, save a PNG and the numbers as a CSV next to it.

    Parameters
    ----------
    curves : mapping of label -> y or (x, y)
        ``y`` alone is plotted against its index. Every curve is labelled in
        the legend.
    path : path of the PNG; the CSV is the same path with the suffix ``.csv``
        (columns ``<label> x`` and ``<label>`` for each curve).
    xlabel, ylabel, title : str
    logy : bool
        Logarithmic y axis.
    references : mapping of label -> float, optional
        Horizontal reference lines (e.g. a paper's value, the loss at the true
        parameters), dashed and labelled.
    right : mapping of label -> y or (x, y), optional
        Curves of a quantity in other units (e.g. accuracy next to a loss),
        drawn against a second y axis labelled ``right_ylabel``.
    integer_x : bool, optional
        Integer x ticks; default: when every x is an integer (iterations).

    Returns
    -------
    pathlib.Path
    """
    fig, ax = figure(figsize=(6.4, 4.2))
    columns: dict[str, np.ndarray] = {}
    all_int = True
    lines = []
    for label, c in curves.items():
        x, y = _xy(c)
        all_int &= bool(np.all(np.isfinite(x)) and np.all(x == np.round(x)))
        lines += ax.plot(x, y, label=str(label))
        columns[f"{label} x"], columns[str(label)] = x, y
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    for k, (label, value) in enumerate((references or {}).items()):
        lines.append(
            ax.axhline(float(value), color=f"C{(len(curves) + k) % 10}", ls="--", lw=1.2, label=str(label))
        )
        columns[str(label)] = np.array([float(value)])
    if right:
        ax2 = ax.twinx()
        for k, (label, c) in enumerate(right.items()):
            x, y = _xy(c)
            all_int &= bool(np.all(x == np.round(x)))
            color = f"C{(len(curves) + len(references or {}) + k) % 10}"
            lines += ax2.plot(x, y, label=str(label), color=color, ls="-.")
            columns[f"{label} x"], columns[str(label)] = x, y
        ax2.set_ylabel(right_ylabel)
    if integer_x if integer_x is not None else all_int:
        integer_ticks(ax)
    if title:
        ax.set_title(title, fontsize=11)
    if lines:
        ax.legend(handles=lines, fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return save_figure(fig, path, data=columns)


# ----------------------------------------------------------------------------------------------
# standalone interactive HTML views


def scalar_fields(grid: Any) -> dict[str, tuple[np.ndarray, bool]]:
    """The drawable scalar fields of a pyvista dataset: name -> (values, is_point_field).

    One-component numeric arrays are taken as they are; 3-component point
    arrays (vectors) are shown by their magnitude as ``"|name|"``; other arrays
    are skipped.
    """
    out: dict[str, tuple[np.ndarray, bool]] = {}
    for data, is_point in ((grid.point_data, True), (grid.cell_data, False)):
        for name in data.keys():
            arr = np.asarray(data[name])
            if arr.dtype.kind not in "biuf" or name.startswith("vtk"):
                continue
            if arr.ndim == 1:
                out.setdefault(name, (arr.astype(float), is_point))
            elif arr.ndim == 2 and arr.shape[1] == 3:
                out.setdefault(f"|{name}|", (np.linalg.norm(arr.astype(float), axis=1), is_point))
    return out


_VIEW_JS = """
<script>
(function () {
  const CSS = `#physim-ui{position:fixed;top:10px;left:10px;z-index:10;background:rgba(255,255,255,.9);padding:8px 10px;
 border-radius:6px;font:13px sans-serif;color:#222;box-shadow:0 1px 4px rgba(0,0,0,.3);max-width:360px}
#physim-ui .physim-title{font-weight:bold;margin-bottom:6px}
#physim-ui .physim-hint{color:#666;font-size:11px;margin-top:6px}
#physim-bar{margin-top:8px;width:300px}
#physim-grad{height:14px;border:1px solid #444}
#physim-ticks{position:relative;height:16px;font-size:11px}
#physim-ticks span{position:absolute;transform:translateX(-50%)}
#physim-label{text-align:center;font-size:12px}
`;
  const TITLE = __TITLE__;
  const FIELDS = __FIELDS__;
  function actors() {
    const rw = window.global && window.global.renderWindow;
    if (!rw) return [];
    return [].concat(...rw.getRenderers().map((r) => r.getActors()));
  }
  function decimals(step) {
    const d = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    return d + ((step * 10 ** d) % 1 > 1e-6 ? 1 : 0);
  }
  function show(i) {
    const f = FIELDS[i];
    actors().forEach((a, k) => a.setVisibility(f.actors.indexOf(k) >= 0 || FIELDS.every((g) => g.actors.indexOf(k) < 0)));
    document.getElementById("physim-grad").style.background = "linear-gradient(to right," + f.colors.join(",") + ")";
    const ticks = document.getElementById("physim-ticks");
    ticks.innerHTML = "";
    const d = decimals(f.step);
    f.ticks.forEach((t) => {
      const s = document.createElement("span");
      s.style.left = (100 * (t - f.clim[0]) / (f.clim[1] - f.clim[0])) + "%";
      s.textContent = t.toFixed(d);
      ticks.appendChild(s);
    });
    document.getElementById("physim-label").textContent = f.label;
    window.global.renderWindow.render();
    document.body.dataset.physimField = f.name;
  }
  function buildUi() {
    // the viewer empties <body> when it loads the scene: style and controls are added afterwards
    const style = document.createElement("style");
    style.textContent = CSS;
    document.head.appendChild(style);
    const ui = document.createElement("div");
    ui.id = "physim-ui";
    const title = document.createElement("div");
    title.className = "physim-title";
    title.textContent = TITLE;
    ui.appendChild(title);
    if (FIELDS.length) {
      const lab = document.createElement("label");
      lab.textContent = "field ";
      const sel = document.createElement("select");
      sel.id = "physim-field";
      FIELDS.forEach((f, i) => { const o = document.createElement("option"); o.value = i; o.textContent = f.name; sel.appendChild(o); });
      sel.addEventListener("change", () => show(Number(sel.value)));
      lab.appendChild(sel);
      ui.appendChild(lab);
      const bar = document.createElement("div");
      bar.id = "physim-bar";
      bar.innerHTML = '<div id="physim-grad"></div><div id="physim-ticks"></div><div id="physim-label"></div>';
      ui.appendChild(bar);
    }
    const hint = document.createElement("div");
    hint.className = "physim-hint";
    hint.textContent = "drag: rotate \u00b7 wheel: zoom \u00b7 shift+drag: pan";
    ui.appendChild(hint);
    document.body.appendChild(ui);
  }
  function init() {
    if (actors().length < __NACTORS__) { setTimeout(init, 50); return; }
    buildUi();
    if (FIELDS.length) show(0);
    document.body.dataset.physimReady = "1";
  }
  setTimeout(init, 50);
})();
</script>
"""


def _js(obj) -> str:
    """``obj`` as a JavaScript literal that is safe inside a <script> element."""
    return json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _colormap_css(cmap: str, n: int = 11) -> list[str]:
    import matplotlib

    cm = matplotlib.colormaps[cmap]
    out = []
    for t in np.linspace(0.0, 1.0, n):
        r, g, b, _ = cm(float(t))
        out.append(f"rgb({int(round(255 * r))},{int(round(255 * g))},{int(round(255 * b))})")
    return out


def _field_table(grid, fields) -> dict[str, tuple[np.ndarray, bool]]:
    """name -> (values, is_point) of the fields of ``grid`` chosen by ``fields`` (see write_view_html)."""
    available = scalar_fields(grid)
    if fields is None:
        return available
    chosen: dict[str, tuple[np.ndarray, bool]] = {}
    if isinstance(fields, Mapping):
        for name, values in fields.items():
            vals = np.asarray(values, dtype=float).ravel()
            if vals.size == grid.n_points:
                chosen[str(name)] = (vals, True)
            elif vals.size == grid.n_cells:
                chosen[str(name)] = (vals, False)
            else:
                raise ValueError(
                    f"field {name!r} has {vals.size} values; the mesh has {grid.n_points} points "
                    f"and {grid.n_cells} cells"
                )
        return chosen
    for name in fields:
        if name in available:
            chosen[name] = available[name]
    return chosen


def _view_layers(meshes, fields):
    """[(mesh label, surface with fields f0, f1, ..., {field name: (key, values, is_point)})]."""
    import pyvista as pv

    if isinstance(meshes, Mapping):
        items = list(meshes.items())
    else:
        items = [("", meshes)]
    layers = []
    for label, mesh in items:
        grid = as_grid(mesh)
        table = _field_table(grid, fields)
        base = grid.copy() if isinstance(grid, pv.PolyData) else pv.UnstructuredGrid(grid).copy()
        base.clear_data()
        keyed = {}
        for k, (name, (vals, is_point)) in enumerate(table.items()):
            (base.point_data if is_point else base.cell_data)[f"f{k}"] = vals
            keyed[name] = (f"f{k}", vals, is_point)
        layers.append((str(label), _surface(base), keyed))
    if not isinstance(fields, Mapping) and fields is not None:
        missing = [f for f in fields if not any(f in keyed for _, _, keyed in layers)]
        if missing:
            have = sorted({n for _, _, keyed in layers for n in keyed})
            raise KeyError(f"no scalar field {', '.join(map(repr, missing))}; the mesh has {have}")
    return layers


def write_view_html(
    path: PathLike,
    mesh: Any,
    fields: Mapping[str, Any] | Sequence[str] | None = None,
    *,
    title: str = "",
    cmaps: Mapping[str, str] | None = None,
    clims: Mapping[str, tuple[float, float]] | None = None,
    labels: Mapping[str, str] | None = None,
    cmap: str = "viridis",
    camera: Any = "iso",
) -> Path:
    """Write a standalone interactive 3D view of a mesh and its fields as one HTML file.

    The page opens in any browser without a server or network access: the
    scene is exported by pyvista/VTK through trame-vtk's vtk.js serializer and
    embedded in trame-vtk's offline viewer. Drag to rotate, scroll to zoom,
    choose the field from the list; each field has its colour legend.

    Parameters
    ----------
    path : path of the HTML file
    mesh : pyvista dataset, meshio.Mesh, physim mesh, or mapping label -> mesh
        Their outer surfaces are shown; with several meshes the fields are
        listed as ``"label: field"``.
    fields : mapping name -> values, or sequence of field names, optional
        Values per point or per cell of ``mesh``; names refer to fields of
        ``mesh``. Default: every scalar field (:func:`scalar_fields`).
    title : str
        Shown at the top of the page.
    cmaps, clims, labels : mapping field name -> colormap / (lo, hi) / legend text, optional
    cmap : str
        Colormap of the fields not in ``cmaps``.
    camera : pyvista camera position
        Initial view (default ``"iso"``).

    Returns
    -------
    pathlib.Path
    """
    layers = _view_layers(mesh, fields)
    several = len(layers) > 1
    pl = plotter(window_size=(900, 700))
    meta = []
    n_actors = 0
    for label, surf, keyed in layers:
        if not keyed:
            pl.add_mesh(surf, color="lightgrey", smooth_shading=True)
            n_actors += 1
        for name, (key, vals, is_point) in keyed.items():
            lo, hi = (clims or {}).get(name) or nice_limits(*_finite_range(vals))[:2]
            cm = (cmaps or {}).get(name, cmap)
            piece = surf.copy()
            pl.add_mesh(
                piece,
                scalars=key,
                preference="point" if is_point else "cell",
                cmap=cm,
                clim=(lo, hi),
                smooth_shading=True,
                show_scalar_bar=False,
                nan_color="lightgrey",
            )
            step = float(nice_limits(lo, hi, 5)[2])
            ticks = nice_ticks(lo, hi, 5)
            ticks = ticks[(ticks >= lo - 1e-9 * abs(hi - lo)) & (ticks <= hi + 1e-9 * abs(hi - lo))]
            meta.append(
                {
                    "name": f"{label}: {name}" if several else name,
                    "actors": [n_actors],
                    "clim": [float(lo), float(hi)],
                    "ticks": [float(t) for t in ticks],
                    "step": step,
                    "colors": _colormap_css(cm),
                    "label": (labels or {}).get(name, name),
                }
            )
            n_actors += 1
    if camera is not None:
        pl.camera_position = camera
    pl.reset_camera()
    pl.render()
    page = _export_page(pl)
    pl.close()
    ui = (
        _VIEW_JS.replace("__TITLE__", _js(title or "physim view"))
        .replace("__FIELDS__", _js(meta))
        .replace("__NACTORS__", str(max(1, n_actors)))
    )
    cut = page.rindex("</body>")
    page = page[:cut] + ui + page[cut:]
    page = page.replace(
        "<title>VTK.js | Example - OfflineLocalView</title>",
        f"<title>{_html.escape(title or 'physim view')}</title>",
        1,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_view_meshes(path: PathLike) -> dict[str, Any]:
    """The meshes to show for ``physim view PATH``: a mesh file, or every ``.vtu`` of a directory.

    Returns
    -------
    dict
        File name -> pyvista dataset.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist, or a directory holds no ``.vtu`` file.
    ValueError
        The file cannot be read as a mesh.
    """
    import pyvista as pv

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    files = sorted(path.glob("*.vtu")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no .vtu file in {path}")
    out = {}
    for f in files:
        try:
            if f.suffix.lower() in (".vtu", ".vtk", ".vtp", ".vts", ".vtr", ".vti"):
                out[f.name] = pv.read(str(f))
            else:
                from .io import read_mesh

                out[f.name] = pv.from_meshio(read_mesh(f))
        except Exception as exc:  # noqa: BLE001 - any reader failure is reported with the path
            raise ValueError(f"cannot read {f} as a mesh: {exc}") from None
    return out


class InteractiveView:
    """A pyvista window showing one field at a time; keys ``n`` / ``p`` switch fields.

    Parameters
    ----------
    meshes : mesh or mapping label -> mesh
    fields : sequence of field names, optional
    title : str
    off_screen : bool
        Render without a window (tests).

    Attributes
    ----------
    plotter : pyvista.Plotter
    names : list of str
        The fields, as listed.
    current : int
        Index of the field shown.
    """

    def __init__(
        self, meshes: Any, fields: Sequence[str] | None = None, title: str = "", off_screen: bool = False
    ) -> None:
        import pyvista as pv

        self._layers = _view_layers(meshes, fields)
        several = len(self._layers) > 1
        self._entries = [
            (f"{label}: {name}" if several else name, li, name)
            for li, (label, _, keyed) in enumerate(self._layers)
            for name in keyed
        ]
        self.names = [e[0] for e in self._entries]
        self.plotter = pv.Plotter(off_screen=off_screen, title=title or "physim view")
        self.plotter.set_background("white")
        for label, surf, keyed in self._layers:
            if not keyed:
                self.plotter.add_mesh(surf, color="lightgrey", smooth_shading=True, name=f"grey {label}")
        self.plotter.add_axes(color="black")
        self.plotter.add_key_event("n", lambda: self.show(self.current + 1))
        self.plotter.add_key_event("p", lambda: self.show(self.current - 1))
        self.current = 0
        if self._entries:
            self.show(0)

    def show(self, i: int) -> None:
        """Show field ``i`` (modulo the number of fields)."""
        if not self._entries:
            return
        self.current = i % len(self._entries)
        full, li, name = self._entries[self.current]
        _, surf, keyed = self._layers[li]
        key, vals, is_point = keyed[name]
        lo, hi = nice_limits(*_finite_range(vals))[:2]
        for bar in list(self.plotter.scalar_bars.keys()):
            self.plotter.remove_scalar_bar(bar)
        self.plotter.add_mesh(
            surf,
            scalars=key,
            preference="point" if is_point else "cell",
            clim=(lo, hi),
            smooth_shading=True,
            nan_color="lightgrey",
            name="physim-field",
            scalar_bar_args=scalar_bar_args(name, (lo, hi)),
        )
        self.plotter.add_text(
            f"{full}   ({self.current + 1}/{len(self._entries)}; keys n / p: next / previous field)",
            color="black",
            font_size=10,
            name="physim-field-text",
        )
        self.plotter.render()


def show_interactive(meshes: Any, fields: Sequence[str] | None = None, title: str = "") -> None:
    """Open an interactive window on the meshes (blocks until it is closed); see :class:`InteractiveView`."""
    InteractiveView(meshes, fields, title).plotter.show()


def _export_page(pl) -> str:
    """The plotter's scene as trame-vtk's standalone vtk.js page (a string of HTML)."""
    import io
    import zipfile

    try:
        from trame_vtk.modules.vtk.serializers import (
            SynchronizationContext,
            extract_array_hash,
            initialize_serializers,
            reference_id,
            serialize,
        )
        from trame_vtk.tools.vtksz2html import write_html
    except ImportError as exc:  # pragma: no cover - trame-vtk is a core dependency
        raise ImportError("HTML views need the trame-vtk package: pip install trame-vtk") from exc
    initialize_serializers()
    ctx = SynchronizationContext()
    rw = pl.render_window
    view = serialize(None, rw, f"physim-{id(rw)}", ctx, 1)
    cam = rw.GetRenderers().GetFirstRenderer().GetActiveCamera()
    view["extra"] = {
        "vtkRefId": reference_id(rw),
        "centerOfRotation": cam.GetFocalPoint(),
        "camera": reference_id(cam),
    }
    hashes = {}
    for entry in extract_array_hash(view):
        h = entry["hash"]
        hashes[h] = dict(**entry, content=ctx.get_cached_data_array(h, False))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(
            "index.json", json.dumps({"hashes": hashes, "scene": view}), compress_type=zipfile.ZIP_DEFLATED
        )
    out = io.StringIO()
    write_html(buf.getvalue(), out)
    # the viewer adds favicons from the web; a standalone page loads nothing from outside
    return re.sub(r"https?://[^`\"']*/favicon-\$\{t\}x\$\{t\}\.png", "data:,", out.getvalue())
