"""Pictures: pyvista scenes rendered off-screen and matplotlib curves.

Nothing here opens a window when there is no display (or when
``PHYSIM_OFFSCREEN=1``, which the test suite sets): pyvista renders off-screen
and matplotlib uses the Agg backend. Functions write PNG files and return
their path.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "ensure_offscreen",
    "headless",
    "plotter",
    "save_scene",
    "plot_curves",
    "plot_mesh_field",
    "figure",
    "save_figure",
]


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


def plotter(window_size: tuple[int, int] = (1024, 768), shape: tuple[int, int] = (1, 1), **kwargs):
    """A pyvista ``Plotter`` rendering off-screen (always: physim only writes files)."""
    ensure_offscreen()
    import pyvista as pv

    pl = pv.Plotter(off_screen=True, window_size=list(window_size), shape=shape, **kwargs)
    pl.set_background("white")
    return pl


def save_scene(pl, path: str | os.PathLike) -> Path:
    """Render a plotter to a PNG file and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.screenshot(str(path))
    pl.close()
    return path


def plot_mesh_field(
    mesh,
    scalars: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str = "",
    cmap: str = "viridis",
    isolines: int = 0,
    camera_position=None,
    clim=None,
    show_edges: bool = False,
) -> Path:
    """Colour a pyvista/meshio mesh by a point or cell field and save a PNG.

    Parameters
    ----------
    mesh : pyvista.DataSet or meshio.Mesh
    scalars : ndarray, shape (n_points,) or (n_cells,)
    path : path of the PNG
    isolines : number of contour lines of a point field to overlay (0 = none)
    """
    import pyvista as pv

    grid = mesh if isinstance(mesh, pv.DataSet) else pv.from_meshio(mesh)
    grid = grid.copy()
    name = title or "field"
    scalars = np.asarray(scalars, dtype=float)
    if scalars.shape[0] == grid.n_points:
        grid.point_data[name] = scalars
    else:
        grid.cell_data[name] = scalars
    pl = plotter()
    pl.add_mesh(
        grid,
        scalars=name,
        cmap=cmap,
        clim=clim,
        show_edges=show_edges,
        scalar_bar_args={"title": name, "color": "black"},
    )
    if isolines and scalars.shape[0] == grid.n_points:
        finite = grid.point_data[name][np.isfinite(grid.point_data[name])]
        if finite.size and finite.max() > finite.min():
            surf = grid.extract_surface(algorithm="dataset_surface")
            levels = np.linspace(finite.min(), finite.max(), isolines + 2)[1:-1]
            contours = surf.contour(isosurfaces=levels, scalars=name)
            if contours.n_points:
                pl.add_mesh(contours, color="black", line_width=2)
    if camera_position is not None:
        pl.camera_position = camera_position
    if title:
        pl.add_text(title, color="black", font_size=12)
    return save_scene(pl, path)


def figure(nrows: int = 1, ncols: int = 1, **kwargs):
    """A matplotlib figure and axes with the Agg backend when headless."""
    ensure_offscreen()
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, **kwargs)


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure as PNG and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_curves(
    curves: Mapping[str, Sequence[float] | tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike,
    *,
    xlabel: str = "iteration",
    ylabel: str = "loss",
    title: str = "",
    logy: bool = False,
) -> Path:
    """Plot named curves (loss, accuracy, traces) on one axis and save a PNG.

    Each value is either ``y`` (plotted against its index) or a pair ``(x, y)``.
    """
    fig, ax = figure(figsize=(6, 4))
    for label, c in curves.items():
        if isinstance(c, tuple) and len(c) == 2:
            x, y = c
        else:
            y = np.asarray(c, dtype=float)
            x = np.arange(len(y))
        ax.plot(np.asarray(x, dtype=float), np.asarray(y, dtype=float), label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    if len(curves) > 1:
        ax.legend()
    ax.grid(alpha=0.3)
    return save_figure(fig, path)
