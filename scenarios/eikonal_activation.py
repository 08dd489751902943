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
(isochrones on the heart: anterior and posterior epicardium and a long-axis
cut), ``fibers.png`` (fibre directions on the epicardium and endocardium),
``view.html`` (interactive 3D view: rotate, zoom, choose the field) and reports the
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


#: camera directions (position, focal point, view up), mm: anterior (RV in front-left), posterior, long-axis cut
ANTERIOR = [(170.0, 190.0, 10.0), (10.0, 0.0, -30.0), (0.0, 0.0, 1.0)]
POSTERIOR = [(-150.0, -210.0, 10.0), (10.0, 0.0, -30.0), (0.0, 0.0, 1.0)]
CUT = [(40.0, -240.0, 40.0), (10.0, 0.0, -32.0), (0.0, 0.0, 1.0)]


def _picture(path, heart, times, sources, tat):
    """Isochrones on the epicardium (anterior and posterior) and on a long-axis cut."""
    from physim.viz import Marker, Panel, as_grid, mesh_panels, nice_limits

    grid = as_grid(heart)
    grid.point_data["activation"] = times
    cut = grid.clip(normal=(0.0, -1.0, 0.0), origin=(0.0, 0.0, 0.0))
    clim = nice_limits(0.0, float(times.max()), 6)[:2]
    common = dict(scalars="activation", label="activation time (ms)", cmap="turbo_r", clim=clim, isolines=12)
    sites = Marker(heart.points[sources], "initiation sites", "white", 16)
    panels = [
        Panel(grid, title="epicardium, anterior (RV front-left)", camera=ANTERIOR, **common),
        Panel(grid, title="epicardium, posterior", camera=POSTERIOR, **common),
        Panel(cut, title="long-axis cut (posterior half)", camera=CUT, markers=[sites], **common),
    ]
    return mesh_panels(path, panels, suptitle=f"sinus-like activation: total activation {tat:.1f} ms")


def _fiber_picture(path, heart, fib):
    """Fibre directions as short segments, coloured by helix angle, on the epicardium and endocardium."""
    import pyvista as pv

    from physim.viz import Panel, as_grid, mesh_panels

    cen = heart.points[heart.tets].mean(axis=1)
    endo = heart.lv_endo | heart.rv_endo
    on_epi = heart.epi[heart.tets].sum(axis=1) >= 3
    on_endo = endo[heart.tets].sum(axis=1) >= 3
    grid = as_grid(heart)
    posterior_half = grid.clip(normal=(0.0, -1.0, 0.0), origin=(0.0, 0.0, 0.0))
    views = [
        (on_epi, heart.epi, grid, "epicardial fibres (anterior)", ANTERIOR),
        (on_endo & (cen[:, 1] < 0), endo, posterior_half, "endocardial fibres (posterior half, cut)", CUT),
    ]
    panels = []
    for sel, surf_nodes, surface, title, cam in views:
        idx = np.nonzero(sel)[0]
        vol = np.abs(np.linalg.det(heart.points[heart.tets[idx, 1:]] - heart.points[heart.tets[idx, :1]]))
        half = 0.45 * np.cbrt(6.0 * np.median(vol))
        # each segment sits on its tet's boundary face, lifted a little off the surface so that
        # the surface does not hide it
        on = surf_nodes[heart.tets[idx]]
        face = (heart.points[heart.tets[idx]] * on[..., None]).sum(axis=1) / on.sum(axis=1, keepdims=True)
        mid = face + 0.3 * (face - cen[idx])
        pts = np.concatenate([mid - half * fib.fibers[idx], mid + half * fib.fibers[idx]])
        n = len(idx)
        lines = np.hstack([np.full((n, 1), 2), np.arange(n)[:, None], np.arange(n, 2 * n)[:, None]])
        poly = pv.PolyData(pts, lines=lines.ravel())
        poly.point_data["helix"] = np.concatenate([fib.helix[idx]] * 2)
        panels.append(
            Panel(
                surface,
                scalars="helix",
                lines=poly,
                title=title,
                label="helix angle (deg)",
                cmap="coolwarm",
                clim=(-60.0, 60.0),
                camera=cam,
                color="whitesmoke",
            )
        )
    return mesh_panels(
        path, panels, suptitle="rule-based fibres: helix angle +60 deg (endo) to -60 deg (epi)"
    )


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
        from physim.viz import write_view_html

        page = write_view_html(
            ctx.path("view.html"),
            heart,
            {
                "activation time (ms)": times,
                "helix angle (deg)": fib.helix,
                "region (0 LV, 1 septum, 2 RV)": heart.region,
                "fast endocardial layer": fast.astype(float),
            },
            title="eikonal_activation: sinus-like activation of the biventricular heart",
            cmaps={"activation time (ms)": "turbo_r", "helix angle (deg)": "coolwarm"},
        )
        results["files"].append(page.name)
    return results


if __name__ == "__main__":
    scenario_main(run, __doc__)
