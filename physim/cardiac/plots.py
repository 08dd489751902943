"""Pictures of twin fits and ensembles (PNG, with the numbers behind every curve as CSV).

* :func:`activation_figure` - activation maps on the heart from several views
  (anterior, posterior, and a long-axis cut showing the endocardium and the
  septum), one column per field, time maps on one colour scale, initiation
  sites marked.
* :func:`ecg_figure` - 12-lead ECG: target against a fit or an ensemble band.
* :func:`calibration_figure` - predicted standard deviation against the actual
  error per node, binned.

Built on :func:`physim.viz.mesh_panels` and :func:`physim.viz.save_figure`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from physim.viz import Marker

    from .heart import BiventricularMesh

__all__ = [
    "MapField",
    "VIEWS",
    "activation_figure",
    "ecg_figure",
    "calibration_figure",
    "site_markers",
    "time_levels",
]

#: camera positions (pyvista ``[position, focal point, view up]``) of the heart views;
#: the heart's base is the plane z = 0, the apex points to -z, the RV lies towards +x
VIEWS = {
    "anterior": [(150.0, 200.0, 10.0), (10.0, 0.0, -30.0), (0.0, 0.0, 1.0)],
    "posterior": [(-150.0, -200.0, 10.0), (10.0, 0.0, -30.0), (0.0, 0.0, 1.0)],
    "cut": [(10.0, 250.0, -30.0), (10.0, 0.0, -30.0), (0.0, 0.0, 1.0)],
}
_VIEW_TITLES = {"anterior": "anterior", "posterior": "posterior", "cut": "cut y = 0"}
#: the cut view keeps the half y <= 0 of the heart
_CUT_NORMAL = (0.0, 1.0, 0.0)


@dataclass
class MapField:
    """One column of :func:`activation_figure`: a point field and how to colour it.

    Attributes
    ----------
    values : ndarray (n_points,)
    title : str
    label : str
        Colorbar label with units.
    cmap : str
    clim : (float, float), optional
    isolines : int or sequence of float
        Number of isolines or their levels (give levels to have the same
        isolines in every view).
    markers : list of physim.viz.Marker
    """

    values: np.ndarray
    title: str
    label: str
    cmap: str = "turbo_r"
    clim: tuple[float, float] | None = None
    isolines: int | Sequence[float] = 0
    markers: list = field(default_factory=list)


def time_levels(tmax: float, step: float = 10.0) -> list[float]:
    """Isoline levels ``step, 2 step, ... < tmax`` (ms)."""
    return [float(v) for v in np.arange(step, float(tmax), step)]


def site_markers(heart: BiventricularMesh, nodes: ArrayLike, label: str, color: str, size: float = 14.0) -> Marker:
    """A :class:`physim.viz.Marker` at the given mesh nodes."""
    from physim.viz import Marker

    nodes = np.asarray(nodes, dtype=np.int64)
    return Marker(np.asarray(heart.points)[nodes] if nodes.size else np.zeros((0, 3)), label, color, size)


def _grid(heart, fields):
    from physim.viz import as_grid

    grid = as_grid(heart)
    for i, f in enumerate(fields):
        grid.point_data[f"f{i}"] = np.asarray(f.values, dtype=float)
    return grid


def activation_figure(
    path: str | os.PathLike,
    heart: BiventricularMesh,
    fields: Sequence[MapField],
    *,
    views: Sequence[str] = ("anterior", "posterior", "cut"),
    suptitle: str = "",
    panel_size: tuple[int, int] = (520, 470),
) -> Path:
    """Maps on the heart: one column per field, one row per view.

    Parameters
    ----------
    path : path of the PNG
    heart : BiventricularMesh (or any mesh with points and tets)
    fields : sequence of MapField
    views : sequence of {"anterior", "posterior", "cut"}
        ``"cut"`` clips the heart by the plane y = 0 and looks into it (LV and
        RV endocardium, septum); markers behind the cut are left out.
    suptitle : str
        Figure title (a line on the cut view is added when it is shown).

    Returns
    -------
    pathlib.Path
    """
    from physim.viz import Marker, Panel, mesh_panels

    grid = _grid(heart, fields)
    panels = []
    for v in views:
        if v not in VIEWS:
            raise ValueError(f"unknown view {v!r}; known: {sorted(VIEWS)}")
        cut = v == "cut"
        mesh = grid.clip(normal=_CUT_NORMAL, origin=(0.0, 0.0, 0.0), invert=True) if cut else grid
        for i, f in enumerate(fields):
            markers = list(f.markers)
            if cut:  # keep the markers on the drawn half
                markers = [Marker(np.asarray(m.points)[np.asarray(m.points)[:, 1] <= 1.0] if len(m.points) else
                                  m.points, m.label, m.color, m.size) for m in markers]  # fmt: skip
            panels.append(
                Panel(
                    mesh,
                    scalars=f"f{i}",
                    title=f"{f.title} ({_VIEW_TITLES[v]})" if len(views) > 1 else f.title,
                    label=f.label,
                    cmap=f.cmap,
                    clim=f.clim,
                    camera=VIEWS[v],
                    isolines=f.isolines,
                    markers=markers,
                )
            )
    if "cut" in views:
        suptitle = (
            suptitle + "\n" if suptitle else ""
        ) + "cut y = 0: long-axis section through LV, septum and RV"
    return mesh_panels(path, panels, ncols=len(fields), panel_size=panel_size, suptitle=suptitle)


def ecg_figure(
    path: str | os.PathLike,
    lead_names: Sequence[str],
    t: ArrayLike,
    target: ArrayLike,
    fitted: ArrayLike,
    *,
    std: ArrayLike | None = None,
    members: ArrayLike | None = None,
    target_label: str = "target",
    fitted_label: str = "fitted",
    columns: tuple[str, str] = ("target", "fitted"),
    title: str = "",
) -> Path:
    """12-lead ECG: target (grey) against a fit (red), optionally with a +-2 sigma band.

    Parameters
    ----------
    path : path of the PNG (the signals go to a CSV next to it)
    lead_names : sequence of str
    t : ndarray (n_samples,)
        Sample times (ms).
    target, fitted : ndarray (n_leads, n_samples)
        mV.
    std : ndarray (n_leads, n_samples), optional
        Ensemble standard deviation: draws ``fitted +- 2 std``.
    members : ndarray (n_members, n_leads, n_samples), optional
        Member ECGs, drawn thin.
    target_label, fitted_label : str
        Legend entries.
    columns : (str, str)
        Names of the two signals in the CSV: columns ``time (ms)``,
        ``<lead> <target> (mV)``, ``<lead> <fitted> (mV)`` (and ``<lead> std (mV)``).
    """
    from physim.cardiac.ecg import lead_correlations
    from physim.viz import figure, save_figure

    t = np.asarray(t, dtype=float)
    target = np.asarray(target, dtype=float)
    fitted = np.asarray(fitted, dtype=float)
    corr = lead_correlations(fitted, target)
    n = len(lead_names)
    ncols = 4 if n >= 4 else n
    nrows = int(np.ceil(n / ncols))
    fig, axes = figure(nrows, ncols, figsize=(3.6 * ncols, 2.5 * nrows + 0.6), sharex=True, squeeze=False)
    data = {"time (ms)": t}
    for i, ax in enumerate(axes.ravel()):
        if i >= n:
            ax.set_axis_off()
            continue
        if members is not None:
            for m in np.asarray(members):
                ax.plot(t, m[i], color="tab:red", lw=0.4, alpha=0.25)
        data[f"{lead_names[i]} {columns[0]} (mV)"] = target[i]
        data[f"{lead_names[i]} {columns[1]} (mV)"] = fitted[i]
        if std is not None:
            s = np.asarray(std)[i]
            ax.fill_between(t, fitted[i] - 2 * s, fitted[i] + 2 * s, color="tab:red", alpha=0.25, lw=0,
                            label="±2σ band")  # fmt: skip
            data[f"{lead_names[i]} std (mV)"] = s
        ax.plot(t, target[i], color="0.25", lw=1.0, label=target_label)
        ax.plot(t, fitted[i], color="tab:red", lw=1.1, label=fitted_label)
        ax.set_title(f"{lead_names[i]}  (r = {corr[i]:.3f})", fontsize=10)
        ax.grid(alpha=0.3)
        if i // ncols == nrows - 1:
            ax.set_xlabel("time (ms)")
        if i % ncols == 0:
            ax.set_ylabel("mV")
    axes[0, 0].legend(fontsize=8, loc="upper right")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, data=data)


def calibration_figure(
    path: str | os.PathLike,
    sigma: ArrayLike,
    abs_error: ArrayLike,
    *,
    n_bins: int = 10,
    title: str = "",
    label: str = "ensemble",
) -> Path:
    """Predicted standard deviation against the actual error per node, in quantile bins of sigma.

    For a calibrated Gaussian prediction the RMS error in a bin equals the
    bin's sigma (the diagonal), and 68 % / 95 % of the nodes lie within
    1 / 2 sigma.

    Parameters
    ----------
    path : path of the PNG (the binned numbers go to a CSV next to it)
    sigma, abs_error : ndarray (n_points,)
        Predicted standard deviation and ``|mean - truth|`` (ms).
    n_bins : int
    """
    from physim.viz import figure, save_figure

    s = np.asarray(sigma, dtype=float)
    e = np.asarray(abs_error, dtype=float)
    edges = np.unique(np.quantile(s, np.linspace(0, 1, n_bins + 1)))
    idx = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, max(len(edges) - 2, 0))
    keys = ("sigma (ms)", "RMS error (ms)", "mean |error| (ms)", "within 1 sigma", "within 2 sigma", "nodes")
    rows = {k: [] for k in keys}
    for b in range(max(len(edges) - 1, 1)):
        m = idx == b
        if not m.any():
            continue
        for k, v in zip(keys, (np.mean(s[m]), np.sqrt(np.mean(e[m] ** 2)), np.mean(e[m]), np.mean(e[m] <= s[m]),
                                np.mean(e[m] <= 2 * s[m]), m.sum())):  # fmt: skip
            rows[k].append(float(v) if k != "nodes" else int(v))
    fig, (ax, ax2) = figure(1, 2, figsize=(11, 4.4))
    top = max(max(rows["RMS error (ms)"], default=1.0), max(rows["sigma (ms)"], default=1.0)) * 1.1
    ax.plot([0, top], [0, top], color="0.4", ls="--", lw=1, label="calibrated (RMS error = σ)")
    ax.plot(rows["sigma (ms)"], rows["RMS error (ms)"], "o-", color="tab:red", label=f"{label}: RMS error")
    ax.plot(
        rows["sigma (ms)"], rows["mean |error| (ms)"], "s:", color="tab:blue", label=f"{label}: mean |error|"
    )
    ax.set_xlabel("predicted σ per node (ms), bin mean")
    ax.set_ylabel("actual error of the ensemble mean (ms)")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("error against predicted σ (quantile bins)")
    ax2.plot(rows["sigma (ms)"], rows["within 1 sigma"], "o-", color="tab:green", label="within 1σ")
    ax2.plot(rows["sigma (ms)"], rows["within 2 sigma"], "s-", color="tab:purple", label="within 2σ")
    ax2.axhline(0.683, color="tab:green", ls="--", lw=1, label="Gaussian 1σ: 0.683")
    ax2.axhline(0.954, color="tab:purple", ls="--", lw=1, label="Gaussian 2σ: 0.954")
    ax2.set_ylim(0, 1.02)
    ax2.set_xlabel("predicted σ per node (ms), bin mean")
    ax2.set_ylabel("fraction of nodes")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8, loc="lower right")
    ax2.set_title(
        f"coverage: {np.mean(e <= s):.2f} within 1σ, {np.mean(e <= 2 * s):.2f} within 2σ (all nodes)"
    )
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, data=rows)
