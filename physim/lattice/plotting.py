"""Files and pictures of spring networks: ``.vtu`` meshes of bonds and PNG figures.

:func:`write_network` stores the bonds as ``line`` cells with stiffness,
tension and elongation as cell fields and the displacement as a point field.

:func:`draw_network` draws a 2D network into a matplotlib axes: bonds
coloured by stiffness with a line width proportional to it, the deformed
shape as a dashed wireframe (displacements magnified by a stated factor),
pinned, loaded and output nodes, targets and removed bonds, each in the
legend; :func:`plot_network` saves one such panel with its colorbar. Networks
of more than ``FIELD_LIMIT`` nodes, whose bonds are too thin to see (and
alias into moiré patterns), are drawn as smooth fields instead: the mean
stiffness of the bonds at each node, and the displacement magnitude on the
deformed shape. 3D networks are rendered with pyvista.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from ..io import write_mesh
from .network import SpringNetwork

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.cm import ScalarMappable

__all__ = ["write_network", "plot_network", "draw_network", "magnification", "FIELD_LIMIT"]

#: networks with more nodes are drawn as smooth node fields, not bond by bond
FIELD_LIMIT = 3000


def _pad3(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.zeros((x.shape[0], 3 - x.shape[1]))]) if x.shape[1] < 3 else x


def write_network(
    path: str | os.PathLike, network: SpringNetwork, stiffness: ArrayLike, displacements: ArrayLike | None = None, **cell_fields: ArrayLike
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


def magnification(network: SpringNetwork, u: ArrayLike) -> float:
    """A round displacement magnification (1, 2 or 5 times a power of ten) making the largest
    displacement ``u`` (m, any shape) about a quarter of the mean bond length."""
    u = np.asarray(u, dtype=float)
    umax = float(np.abs(u).max())
    if umax <= 0:
        return 1.0
    raw = 0.25 * float(network.lengths.mean()) / umax
    mag = 10.0 ** np.floor(np.log10(raw))
    for m in (5.0, 2.0, 1.0):
        if m * mag <= raw:
            return float(m * mag)
    return float(mag)


def _fmt_factor(s: float) -> str:
    return f"{s:.0f}" if s >= 1 and abs(s - round(s)) < 1e-9 else f"{s:.3g}"


def draw_network(
    ax: Axes,
    network: SpringNetwork,
    stiffness: ArrayLike,
    displacements: ArrayLike | None = None,
    *,
    scale: float | None = None,
    clim: tuple[float, float] | None = None,
    loads: Sequence[int] = (),
    outputs: ArrayLike = (),
    targets: ArrayLike | None = None,
    removed: ArrayLike | None = None,
    highlight: Sequence[int] = (),
    node_labels: dict | None = None,
    max_linewidth: float = 6.0,
    cmap: str = "viridis",
) -> tuple[ScalarMappable, list[Artist]]:
    """Draw a 2D network into a matplotlib axes (coordinates in mm).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    network : SpringNetwork
        2D network.
    stiffness : array_like, shape (m,)
        Bond stiffness (N/m): colour, and line width (from a third of
        ``max_linewidth`` at ``clim[0]`` to ``max_linewidth`` at ``clim[1]``).
    displacements : array_like, shape (n, 2), optional
        Drawn as a dashed wireframe at ``points + scale * u``.
    scale : float, optional
        Displacement magnification (default a round factor making the largest
        displacement about a quarter of a bond); stated in the legend.
    clim : (float, float), optional
        Stiffness colour range (N/m); default the data range.
    loads, outputs : sequence of int
        Loaded (input) and output nodes.
    targets : array_like, shape (t, 2), optional
        Target positions' displacements at the output nodes (m), drawn as
        stars at ``points[outputs] + scale * targets`` on the deformed shape.
    removed : array_like of int, shape (r, 2), optional
        Node pairs of removed bonds, drawn as red dotted lines.
    highlight : sequence of int
        Nodes drawn with a larger ring (e.g. the output of the predicted class).
    node_labels : dict of int to str, optional
        Text placed next to nodes.

    Returns
    -------
    (mappable, handles) : the colour mappable (for a colorbar) and the legend handles.
    """
    import matplotlib as mpl
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    if network.dim != 2:
        raise ValueError("draw_network draws 2D networks; use plot_network for 3D ones")
    k = np.asarray(stiffness, dtype=float) * np.ones(network.n_bonds)
    lo, hi = (float(k.min()), float(k.max())) if clim is None else (float(clim[0]), float(clim[1]))
    if hi <= lo:
        hi = lo + 1e-9 * max(abs(lo), 1.0)
    norm = mpl.colors.Normalize(lo, hi)
    pts = np.asarray(network.points, dtype=float) * 1e3
    handles = []
    big = network.n_nodes > FIELD_LIMIT
    u = None if displacements is None else np.asarray(displacements, dtype=float)
    if u is not None and scale is None:
        scale = magnification(network, u)
    if big:
        import matplotlib.tri as mtri

        # node field: mean stiffness of the bonds meeting at each node (no aliasing of thin lines)
        acc = np.zeros(network.n_nodes)
        cnt = np.zeros(network.n_nodes)
        np.add.at(acc, network.bonds.ravel(), np.repeat(k, 2))
        np.add.at(cnt, network.bonds.ravel(), 1.0)
        tri = mtri.Triangulation(pts[:, 0], pts[:, 1])
        mappable = ax.tripcolor(tri, acc / np.maximum(cnt, 1), shading="gouraud", cmap=cmap, norm=norm)
        mappable.set_rasterized(True)
        if u is not None:
            d = pts + scale * u * 1e3
            hull = _outline(network, d)
            ax.plot(hull[:, 0], hull[:, 1], color="0.15", lw=1.0, ls="--")
            handles.append(
                Line2D(
                    [],
                    [],
                    color="0.15",
                    lw=1.0,
                    ls="--",
                    label=f"deformed outline (u x {_fmt_factor(scale)})",
                )
            )
    else:
        seg = pts[network.bonds]
        lw = max_linewidth / 3 + (max_linewidth - max_linewidth / 3) * norm(np.clip(k, lo, hi))
        if u is not None:
            d = pts + scale * u * 1e3
            ax.add_collection(
                LineCollection(d[network.bonds], colors="0.25", linewidths=0.9, linestyles="--", zorder=1)
            )
            handles.append(
                Line2D(
                    [], [], color="0.25", lw=0.9, ls="--", label=f"deformed shape (u x {_fmt_factor(scale)})"
                )
            )
        coll = LineCollection(seg, cmap=cmap, norm=norm, linewidths=lw, capstyle="round", zorder=2)
        coll.set_array(k)
        ax.add_collection(coll)
        mappable = coll
        handles.append(
            Line2D([], [], color=mpl.colormaps[cmap](0.6), lw=max_linewidth * 0.6, label="bond (width ~ k)")
        )
        ms = 9 if network.n_nodes <= 200 else 4
        ax.plot(pts[:, 0], pts[:, 1], "o", color="white", mec="0.4", ms=ms * 0.55, zorder=3)
    ms = 9 if network.n_nodes <= 200 else 4
    fixed = network.fixed_nodes
    if fixed.size:
        ax.plot(pts[fixed, 0], pts[fixed, 1], "^", color="black", ms=ms, zorder=5, ls="none")
        handles.append(Line2D([], [], marker="^", color="black", ls="none", ms=ms, label="pinned node"))
    if len(loads):
        li = np.asarray(loads, dtype=int)
        ax.plot(pts[li, 0], pts[li, 1], "v", color="crimson", ms=ms, zorder=6, ls="none")
        handles.append(
            Line2D([], [], marker="v", color="crimson", ls="none", ms=ms, label="loaded node (input force)")
        )
    if len(outputs):
        oi = np.asarray(outputs, dtype=int)
        ax.plot(pts[oi, 0], pts[oi, 1], "s", color="royalblue", ms=ms, zorder=6, ls="none")
        handles.append(Line2D([], [], marker="s", color="royalblue", ls="none", ms=ms, label="output node"))
        if u is not None:
            d = pts + scale * u * 1e3
            ax.plot(d[oi, 0], d[oi, 1], "s", mfc="none", mec="royalblue", ms=ms, zorder=6, ls="none")
    if targets is not None and len(outputs):
        tg = np.asarray(targets, dtype=float).reshape(-1, 2)
        tp = pts[np.asarray(outputs, dtype=int)] + scale * tg * 1e3
        ax.plot(
            tp[:, 0],
            tp[:, 1],
            "*",
            color="darkorange",
            mec="black",
            mew=0.5,
            ms=ms * 1.6,
            zorder=7,
            ls="none",
        )
        handles.append(
            Line2D(
                [],
                [],
                marker="*",
                color="darkorange",
                mec="black",
                ls="none",
                ms=ms * 1.4,
                label="target position",
            )
        )
    if removed is not None and len(removed):
        rb = np.asarray(removed, dtype=int).reshape(-1, 2)
        ax.add_collection(LineCollection(pts[rb], colors="red", linewidths=2.0, linestyles=":", zorder=4))
        mid = pts[rb].mean(axis=1)
        ax.plot(mid[:, 0], mid[:, 1], "x", color="red", ms=ms, mew=2, zorder=4, ls="none")
        handles.append(Line2D([], [], color="red", lw=2.0, ls=":", marker="x", label="removed bond"))
    if len(highlight):
        hi_n = np.asarray(highlight, dtype=int)
        ax.plot(
            pts[hi_n, 0], pts[hi_n, 1], "o", mfc="none", mec="gold", mew=2.5, ms=ms * 2.0, zorder=8, ls="none"
        )
    for node, text in (node_labels or {}).items():
        ax.annotate(text, pts[int(node)], xytext=(6, 6), textcoords="offset points", fontsize=8, zorder=9)
    allp = pts if u is None else np.vstack([pts, pts + scale * u * 1e3])
    pad = 0.08 * float(np.ptp(allp, axis=0).max())
    ax.set_xlim(allp[:, 0].min() - pad, allp[:, 0].max() + pad)
    ax.set_ylim(allp[:, 1].min() - pad, allp[:, 1].max() + pad)
    ax.set_aspect("equal")
    ax.set_xlabel("x [mm]")
    ax.set_ylabel("y [mm]")
    return mappable, handles


def _outline(network: SpringNetwork, pts: np.ndarray) -> np.ndarray:
    """Closed polyline around the points (their convex hull): the outline of a convex patch."""
    from scipy.spatial import ConvexHull

    h = ConvexHull(pts)
    v = np.append(h.vertices, h.vertices[0])
    return pts[v]


def plot_network(
    path: str | os.PathLike,
    network: SpringNetwork,
    stiffness: ArrayLike,
    displacements: ArrayLike | None = None,
    *,
    scale: float | None = None,
    clim: tuple[float, float] | None = None,
    title: str = "",
    loads: Sequence[int] = (),
    outputs: ArrayLike = (),
    targets: ArrayLike | None = None,
    removed: ArrayLike | None = None,
    highlight: Sequence[int] = (),
    node_labels: dict | None = None,
    max_width: float = 6.0,
    figsize: tuple[float, float] = (7.0, 6.0),
    window_size: tuple[int, int] = (1000, 800),
    show_nodes: bool | None = None,
) -> Path:
    """Picture of a network: bond colour and width = stiffness, deformed wireframe, legend, colorbar.

    2D networks are drawn with :func:`draw_network` (see there for the
    arguments) and saved with a horizontal colorbar and the legend below the
    drawing; 3D networks are rendered with pyvista (bonds coloured by
    stiffness, the deformed shape as a grey overlay).

    Parameters
    ----------
    path : path-like
        PNG file.
    network : SpringNetwork
    stiffness : array_like, shape (m,)
        Bond stiffness (N/m).
    displacements : array_like, shape (n, d), optional
    title : str
        Figure title (wrapped, never clipped).
    max_width : float
        Line width (points) of the stiffest bond.
    figsize : (float, float)
        2D: figure size in inches.
    window_size : (int, int)
        3D: picture size in pixels.

    Returns
    -------
    pathlib.Path
    """
    from .. import viz

    if network.dim == 3:
        return _plot_network_3d(
            path, network, stiffness, displacements, scale=scale, clim=clim, title=title,
            loads=loads, outputs=outputs, window_size=window_size, show_nodes=show_nodes,
        )  # fmt: skip
    import textwrap

    big = network.n_nodes > FIELD_LIMIT
    if big and displacements is not None:
        fig, (ax, ax_u) = viz.figure(1, 2, figsize=(2 * figsize[0], figsize[1]), layout="constrained")
    else:
        fig, ax = viz.figure(figsize=figsize, layout="constrained")
        ax_u = None
    mappable, handles = draw_network(
        ax, network, stiffness, displacements, scale=scale, clim=clim, loads=loads, outputs=outputs,
        targets=targets, removed=removed, highlight=highlight, node_labels=node_labels,
        max_linewidth=max_width,
    )  # fmt: skip
    label = "mean stiffness of the bonds at a node [N/m]" if big else "bond stiffness k [N/m]"
    fig.colorbar(mappable, ax=ax, orientation="horizontal", label=label, shrink=0.8, pad=0.02, aspect=40)
    if ax_u is not None:
        import matplotlib.tri as mtri

        u = np.asarray(displacements, dtype=float)
        s = magnification(network, u) if scale is None else scale
        d = (np.asarray(network.points) + s * u) * 1e3
        um = ax_u.tripcolor(
            mtri.Triangulation(d[:, 0], d[:, 1]),
            np.linalg.norm(u, axis=1) * 1e3,
            shading="gouraud",
            cmap="magma",
        )
        um.set_rasterized(True)
        ax_u.set_aspect("equal")
        ax_u.set(xlabel="x [mm]", ylabel="y [mm]", title=f"deformed shape (displacements x {_fmt_factor(s)})")
        fig.colorbar(um, ax=ax_u, orientation="horizontal", label="|u| [mm]", shrink=0.8, pad=0.02, aspect=40)
    if handles:
        fig.legend(
            handles=handles, loc="outside lower center", ncol=min(3, len(handles)), fontsize=8, frameon=False
        )
    if title:
        ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=10)
    return viz.save_figure(fig, path)


def _plot_network_3d(
    path, network, stiffness, displacements, *, scale, clim, title, loads, outputs, window_size, show_nodes
):
    from .. import viz

    viz.ensure_offscreen()
    import pyvista as pv

    k = np.asarray(stiffness, dtype=float) * np.ones(network.n_bonds)
    pts = np.asarray(network.points, dtype=float)
    lines = np.column_stack([np.full(network.n_bonds, 2), network.bonds]).ravel()
    lo, hi = (float(k.min()), float(k.max())) if clim is None else (float(clim[0]), float(clim[1]))
    if hi <= lo:
        hi = lo + 1e-9 * max(abs(lo), 1.0)
    pl = viz.plotter(window_size=window_size)
    text = title
    if displacements is not None:
        u = np.asarray(displacements, dtype=float)
        if scale is None:
            scale = magnification(network, u)
        pl.add_mesh(pv.PolyData(pts + scale * u, lines=lines), color="dimgray", line_width=2.0, opacity=0.8)
        text = f"{title}\n" if title else ""
        text += f"grey: deformed shape, displacements x {_fmt_factor(scale)}"
    poly = pv.PolyData(pts, lines=lines)
    poly.cell_data["stiffness [N/m]"] = k
    pl.add_mesh(
        poly, scalars="stiffness [N/m]", cmap="viridis", clim=(lo, hi), line_width=4,
        scalar_bar_args=viz.scalar_bar_args("stiffness [N/m]", (lo, hi), vertical=False),
    )  # fmt: skip
    if show_nodes is None:
        show_nodes = network.n_nodes <= 500
    if show_nodes:
        pl.add_points(pts, color="lightgray", point_size=8, render_points_as_spheres=True)
    if network.fixed_nodes.size:
        pl.add_points(pts[network.fixed_nodes], color="black", point_size=12, render_points_as_spheres=True)
    if len(loads):
        pl.add_points(pts[np.asarray(loads)], color="red", point_size=14, render_points_as_spheres=True)
    if len(outputs):
        pl.add_points(
            pts[np.asarray(outputs)], color="royalblue", point_size=14, render_points_as_spheres=True
        )
    text += "\nblack: pinned, red: loaded, blue: output nodes"
    pl.add_text(text.strip(), color="black", font_size=10)
    pl.view_isometric()
    return viz.save_scene(pl, path)
