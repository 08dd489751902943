"""Sinus-like activation of the idealised biventricular heart (anisotropic eikonal).

The biventricular mesh (``meshes/bivent_65k.vtu``; 10k with ``--quick``)
gets rule-based fibres (helix +60 deg endocardium to -60 deg epicardium,
from Laplace coordinates). Conduction is transversely isotropic, 0.6 mm/ms
along and 0.4 mm/ms across the fibres, with a fast (1.5 mm/ms, isotropic)
sub-endocardial layer (the elements with a face on the endocardium, so its
thickness follows the mesh) standing in for the Purkinje network. Activation
starts at three endocardial sites, as in Durrer's maps: the mid LV septum
(0 ms), the LV antero-lateral free wall (2 ms) and the RV free wall (5 ms).
The eikonal equation is solved with :func:`physim.eikonal.solve`.

Writes ``activation.vtu`` (times, fibres, regions, tags), ``activation.png``
(isochrones on the heart: epicardial view and a long-axis cut), ``fibers.png``
(fibre directions on the epicardium and endocardium) and reports the
total activation time (QRS-like duration) and per-region mean times in
``results.json``.
"""

from __future__ import annotations

import time

import numpy as np

from physim.cardiac.fibers import rule_based
from physim.cardiac.heart import LANDMARKS, REGION_LV, REGION_RV, REGION_SEPTUM, load_biventricular
from physim.eikonal import conduction_tensor, solve
from physim.io import write_mesh
from physim.scenario import ScenarioContext, scenario_main

V_FIBER, V_CROSS, V_ENDO = 0.6, 0.4, 1.5  # mm/ms

#: (name, target point in mm, surface tag, initiation time in ms)
SITES = (
    ("LV septum", *LANDMARKS["LV septum"], 0.0),
    ("LV free wall", *LANDMARKS["LV anterior"], 2.0),
    ("RV free wall", *LANDMARKS["RV free wall"], 5.0),
)


def _picture(path, heart, times, sources, tat):
    import pyvista as pv

    from physim.viz import plotter, save_scene

    cells = np.hstack([np.full((heart.n_tets, 1), 4), heart.tets]).ravel()
    grid = pv.UnstructuredGrid(cells, np.full(heart.n_tets, pv.CellType.TETRA), heart.points)
    grid.point_data["activation (ms)"] = times
    levels = np.arange(5.0, np.ceil(times.max()), 5.0)
    clim = (0.0, float(np.ceil(times.max() / 5.0) * 5.0))
    bar = {
        "title": "activation time (ms)",
        "color": "black",
        "n_labels": 6,
        "fmt": "%.0f",
        "vertical": True,
        "position_x": 0.86,
        "position_y": 0.15,
        "height": 0.7,
        "width": 0.06,
        "title_font_size": 14,
        "label_font_size": 12,
    }
    pl = plotter(window_size=(1600, 800), shape=(1, 2), border=False)
    # left: epicardial view with the RV on the viewer's left, base up
    surf = grid.extract_surface(algorithm="dataset_surface")
    iso = surf.contour(isosurfaces=levels, scalars="activation (ms)")
    for col in (0, 1):
        pl.subplot(0, col)
        if col == 0:
            pl.add_mesh(
                surf,
                scalars="activation (ms)",
                cmap="turbo_r",
                clim=clim,
                smooth_shading=True,
                split_sharp_edges=True,
                show_scalar_bar=False,
            )
            if iso.n_points:
                pl.add_mesh(iso, color="black", line_width=2)
            pl.add_text("epicardium, RV in front-left; isochrones every 5 ms", color="black", font_size=11)
            pl.camera_position = [(170.0, 190.0, 10.0), (10.0, 0.0, -30.0), (0.0, 0.0, 1.0)]
        else:
            cut = grid.clip(normal=(0.0, -1.0, 0.0), origin=(0.0, 0.0, 0.0))
            csurf = cut.extract_surface(algorithm="dataset_surface")
            ciso = csurf.contour(isosurfaces=levels, scalars="activation (ms)")
            pl.add_mesh(
                csurf,
                scalars="activation (ms)",
                cmap="turbo_r",
                clim=clim,
                smooth_shading=True,
                split_sharp_edges=True,
                scalar_bar_args=bar,
            )
            if ciso.n_points:
                pl.add_mesh(ciso, color="black", line_width=2)
            src = pv.PolyData(heart.points[sources])
            pl.add_mesh(src, color="white", point_size=16, render_points_as_spheres=True)
            pl.add_text(
                f"long-axis cut, sites in white\ntotal activation {tat:.1f} ms", color="black", font_size=11
            )
            pl.camera_position = [(40.0, -240.0, 40.0), (10.0, 0.0, -32.0), (0.0, 0.0, 1.0)]
    return save_scene(pl, path)


def _fiber_picture(path, heart, fib):
    """Fibre directions as short segments, coloured by helix angle: epicardium and endocardia."""
    import pyvista as pv

    from physim.viz import plotter, save_scene

    cen = heart.points[heart.tets].mean(axis=1)
    endo = heart.lv_endo | heart.rv_endo
    on_epi = heart.epi[heart.tets].sum(axis=1) >= 3
    on_endo = endo[heart.tets].sum(axis=1) >= 3
    pl = plotter(window_size=(1600, 800), shape=(1, 2), border=False)
    views = [
        (on_epi, "epicardial fibres (helix angle, deg)", [(170.0, 190.0, 10.0)]),
        (on_endo & (cen[:, 1] < 0), "endocardial fibres, posterior half", [(40.0, -240.0, 40.0)]),
    ]
    for col, (sel, title, cam) in enumerate(views):
        pl.subplot(0, col)
        idx = np.nonzero(sel)[0]
        half = 0.45 * np.cbrt(
            6.0
            * np.median(
                np.abs(np.linalg.det(heart.points[heart.tets[idx, 1:]] - heart.points[heart.tets[idx, :1]]))
            )
        )
        pts = np.concatenate([cen[idx] - half * fib.fibers[idx], cen[idx] + half * fib.fibers[idx]])
        n = len(idx)
        lines = np.hstack([np.full((n, 1), 2), np.arange(n)[:, None], np.arange(n, 2 * n)[:, None]])
        poly = pv.PolyData(pts, lines=lines.ravel())
        poly["helix (deg)"] = np.concatenate([fib.helix[idx]] * 2)
        pl.add_mesh(
            poly,
            scalars="helix (deg)",
            cmap="coolwarm",
            clim=(-60, 60),
            line_width=2,
            show_scalar_bar=col == 1,
            scalar_bar_args={
                "title": "helix angle (deg)",
                "color": "black",
                "vertical": True,
                "position_x": 0.86,
                "position_y": 0.15,
                "height": 0.7,
                "width": 0.06,
            },
        )
        pl.add_text(title, color="black", font_size=11)
        pl.camera_position = [cam[0], (10.0, 0.0, -30.0), (0.0, 0.0, 1.0)]
    return save_scene(pl, path)


def run(ctx: ScenarioContext) -> dict:
    size = "10k" if ctx.quick else "65k"
    t0 = time.perf_counter()
    heart = load_biventricular(size)
    ctx.log(f"mesh {size}: {heart.n_points} points, {heart.n_tets} tets")
    t1 = time.perf_counter()
    fib = rule_based(heart)
    t_fib = time.perf_counter() - t1
    endo = heart.lv_endo | heart.rv_endo
    # sub-endocardial layer: the elements with a face on the endocardium (one element thick)
    fast = endo[heart.tets].sum(axis=1) >= 3
    vf = np.where(fast, V_ENDO, V_FIBER)
    vc = np.where(fast, V_ENDO, V_CROSS)
    D = conduction_tensor(fib.fibers, vf, vc)
    sources = np.array([heart.nearest_node(p, tag) for _, p, tag, _ in SITES])
    stimes = np.array([t for *_, t in SITES])
    mesh = heart.tet_mesh()
    t2 = time.perf_counter()
    act = solve(mesh, D, sources, stimes)
    t_solve = time.perf_counter() - t2
    times = act.times
    tat = float(times.max() - stimes.min())
    ctx.log(f"fibres {t_fib:.2f} s, eikonal solve {t_solve:.2f} s, total activation {tat:.1f} ms")

    def region_mean(label):
        nodes = np.unique(heart.tets[heart.region == label])
        return float(times[nodes].mean())

    vtu = write_mesh(
        ctx.path("activation.vtu"),
        heart.points,
        {"tetra": heart.tets},
        point_data={
            "activation": times,
            **heart.point_data(),
            "phi_epi": fib.coordinates.phi_epi,
            "apicobasal_laplace": fib.coordinates.apicobasal,
        },
        cell_data={
            "fibers": fib.fibers,
            "sheets": fib.sheets,
            "region": heart.region,
            "fast_layer": fast.astype(np.uint8),
        },
    )
    results = {
        "mesh": size,
        "n_points": heart.n_points,
        "n_tets": heart.n_tets,
        "v_fiber_mm_per_ms": V_FIBER,
        "v_cross_mm_per_ms": V_CROSS,
        "v_endo_layer_mm_per_ms": V_ENDO,
        "sites": {name: {"node": int(s), "time_ms": t} for (name, *_, t), s in zip(SITES, sources)},
        "total_activation_time_ms": tat,
        "latest_point_mm": heart.points[int(np.argmax(times))],
        "mean_activation_ms": {
            "lv_free_wall": region_mean(REGION_LV),
            "septum": region_mean(REGION_SEPTUM),
            "rv_free_wall": region_mean(REGION_RV),
            "epicardium": float(times[heart.epi].mean()),
            "endocardium": float(times[endo].mean()),
        },
        "time_fibers_s": t_fib,
        "time_solve_s": t_solve,
        "time_total_s": time.perf_counter() - t0,
        "files": [vtu.name],
    }
    if ctx.plots:
        png = _picture(ctx.path("activation.png"), heart, times, sources, tat)
        results["files"].append(png.name)
        png = _fiber_picture(ctx.path("fibers.png"), heart, fib)
        results["files"].append(png.name)
    return results


if __name__ == "__main__":
    scenario_main(run, __doc__)
