"""Files for spring networks: ``.vtu`` meshes of bonds and pyvista pictures.

:func:`write_network` stores the bonds as ``line`` cells with stiffness,
tension and elongation as cell fields and the displacement as a point field;
:func:`plot_network` draws the bonds coloured by stiffness with a line width
proportional to it, the deformed shape overlaid (displacements magnified),
pinned nodes, load and output nodes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..io import write_mesh
from .network import SpringNetwork

__all__ = ["write_network", "plot_network"]


def _pad3(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.zeros((x.shape[0], 3 - x.shape[1]))]) if x.shape[1] < 3 else x


def write_network(
    path: str | os.PathLike, network: SpringNetwork, stiffness, displacements=None, **cell_fields
) -> Path:
    """Write a network as a ``.vtu`` of line cells.

    Parameters
    ----------
    path : path-like
        Output file.
    network : SpringNetwork
    stiffness : array_like, shape (m,)
        Bond stiffness (N/m), stored as cell field ``stiffness``.
    displacements : array_like, shape (n, d), optional
        Stored as point field ``displacement`` (m, padded to 3 components).
    **cell_fields : array_like, shape (m,)
        Further bond fields (e.g. ``tension``, ``elongation``).
    """
    pd = {"pinned": network.fixed_dofs.any(axis=1).astype(np.int8)}
    if displacements is not None:
        pd["displacement"] = _pad3(np.asarray(displacements, dtype=float))
    cd = {"stiffness": np.asarray(stiffness, dtype=float) * np.ones(network.n_bonds)}
    cd.update({k: np.asarray(v, dtype=float) for k, v in cell_fields.items()})
    return write_mesh(path, network.points, {"line": network.bonds}, point_data=pd, cell_data=cd)


def plot_network(
    path: str | os.PathLike,
    network: SpringNetwork,
    stiffness,
    displacements=None,
    *,
    scale: float | None = None,
    clim=None,
    title: str = "",
    loads=(),
    outputs=(),
    max_width: float = 12.0,
    window_size=(1000, 800),
    show_nodes: bool | None = None,
) -> Path:
    """Picture of a network: bond colour and width = stiffness, deformed overlay.

    Parameters
    ----------
    path : path-like
        PNG file.
    network : SpringNetwork
    stiffness : array_like, shape (m,)
        Bond stiffness (N/m).
    displacements : array_like, shape (n, d), optional
        Drawn as a thin dark overlay at ``points + scale * u``.
    scale : float, optional
        Displacement magnification; default makes the largest displacement
        a quarter of the mean bond length.
    clim : (float, float), optional
        Stiffness colour range (default the data range).
    title : str
        Text in the top-left corner (the magnification is appended).
    loads, outputs : sequence of int
        Nodes marked red (loads) and blue (outputs).
    max_width : float
        Line width (pixels) of the stiffest bond; the softest is a third of it.
    show_nodes : bool, optional
        Draw node spheres (default: for networks up to 500 nodes).
    """
    from .. import viz

    viz.ensure_offscreen()
    import pyvista as pv

    k = np.asarray(stiffness, dtype=float) * np.ones(network.n_bonds)
    pts = _pad3(np.asarray(network.points, dtype=float))
    lines = np.column_stack([np.full(network.n_bonds, 2), network.bonds]).ravel()
    lo, hi = (float(k.min()), float(k.max())) if clim is None else (float(clim[0]), float(clim[1]))
    if hi <= lo:
        hi = lo + 1e-12 * max(abs(lo), 1.0)
    big = network.n_nodes > 2000
    if show_nodes is None:
        show_nodes = network.n_nodes <= 500
    side_by_side = big and displacements is not None
    if side_by_side:
        pl = viz.plotter(window_size=(2 * window_size[0], window_size[1]), shape=(1, 2))
    else:
        pl = viz.plotter(window_size=window_size)
    if displacements is not None:
        u = _pad3(np.asarray(displacements, dtype=float))
        umax = float(np.abs(u).max())
        if scale is None:
            scale = 0.25 * float(network.lengths.mean()) / umax if umax > 0 else 1.0
        deformed = pv.PolyData(pts + scale * u, lines=lines)
        if side_by_side:
            # large networks: the deformed shape, coloured by |u|, in its own panel
            pl.subplot(0, 1)
            deformed.point_data["|u| [mm]"] = np.linalg.norm(u, axis=1) * 1e3
            pl.add_mesh(
                deformed,
                scalars="|u| [mm]",
                cmap="magma",
                line_width=1.0,
                scalar_bar_args={"title": "|u| [mm]", "color": "black"},
            )
            pl.add_text(f"deformed x{scale:.3g}", color="black", font_size=11)
            if network.dim == 2:
                pl.view_xy()
            else:
                pl.view_isometric()
            pl.subplot(0, 0)
        else:
            # deformed overlay first (underneath the bonds)
            pl.add_mesh(deformed, color="dimgray", line_width=3.0, opacity=0.8)
            title = f"{title}  (deformed x{scale:.3g})" if title else f"deformed x{scale:.3g}"
    # bonds binned by stiffness: line width grows with stiffness
    n_bins = 8
    edges = np.linspace(lo, hi, n_bins + 1)
    which = np.clip(np.searchsorted(edges, k, side="right") - 1, 0, n_bins - 1)
    w_min = max_width / 3.0
    for b in range(n_bins):
        sel = np.flatnonzero(which == b)
        if sel.size == 0:
            continue
        poly = pv.PolyData(pts, lines=np.column_stack([np.full(sel.size, 2), network.bonds[sel]]).ravel())
        poly.cell_data["stiffness [N/m]"] = k[sel]
        width = w_min + (max_width - w_min) * (b + 0.5) / n_bins
        pl.add_mesh(
            poly,
            scalars="stiffness [N/m]",
            cmap="viridis",
            clim=(lo, hi),
            line_width=(width / 3.0 if big else width),
            render_lines_as_tubes=not big,
            show_scalar_bar=(b == int(which.max())),
            scalar_bar_args={
                "title": "stiffness [N/m]",
                "color": "black",
                "vertical": True,
                "position_x": 0.88,
                "position_y": 0.2,
            },
        )
    if show_nodes:
        pl.add_points(pts, color="lightgray", point_size=10, render_points_as_spheres=True)
    fixed = network.fixed_nodes
    marker = 14 if not big else 4
    if fixed.size:
        pl.add_points(pts[fixed], color="black", point_size=marker, render_points_as_spheres=True)
    if len(loads):
        pl.add_points(
            pts[np.asarray(loads)], color="red", point_size=marker + 2, render_points_as_spheres=True
        )
    if len(outputs):
        pl.add_points(
            pts[np.asarray(outputs)], color="royalblue", point_size=marker + 2, render_points_as_spheres=True
        )
    if title:
        pl.add_text(title, color="black", font_size=11)
    if network.dim == 2:
        pl.view_xy()
        pl.camera.zoom(1.1)
    else:
        pl.view_isometric()
    return viz.save_scene(pl, path)
