"""Shared set-up, fitting loop and pictures of the digital-twin scenarios
(``twin_activation_fit`` and ``twin_ecg_fit``): a synthetic study with a known ground truth."""

from __future__ import annotations

import time

import numpy as np

from physim.cardiac import ecg as E
from physim.cardiac import twin as T
from physim.cardiac.fibers import rule_based
from physim.cardiac.heart import LANDMARKS, load_biventricular
from physim.io import write_mesh
from physim.optim import minimize, transformed

#: ground-truth velocities (mm/ms) and the initial guess of the fits
V_TRUE = (0.6, 0.3)
V_START = (1.0, 0.6)
#: initial time of every candidate site (ms) and the upper bound of site times
T_START = 20.0
T_MIN, T_MAX = -10.0, 150.0

#: ground-truth initiation sites: (name, target point in mm, surface tag, time in ms)
TRUE_SITES = tuple(
    (name, *LANDMARKS[name], t)
    for name, t in (("LV septum", 0.0), ("LV anterior", 2.0), ("LV posterior", 4.0), ("LV apex", 8.0),
                    ("RV free wall", 5.0))
)  # fmt: skip

#: ECG sampling: 500 samples at 1 ms
N_SAMPLES, DT = 500, 1.0


def farthest_point_sample(points, candidates, k, seed=0):
    """k well-spread nodes among ``candidates`` (greedy farthest-point sampling)."""
    rng = np.random.default_rng(seed)
    cand = np.asarray(candidates)
    chosen = [int(rng.integers(cand.size))]
    d = np.linalg.norm(points[cand] - points[cand[chosen[0]]], axis=1)
    for _ in range(k - 1):
        j = int(np.argmax(d))
        chosen.append(j)
        d = np.minimum(d, np.linalg.norm(points[cand] - points[cand[j]], axis=1))
    return cand[np.array(chosen)]


class Setup:
    """Heart, fibres, lead field, ground truth and the model to fit."""

    def __init__(self, ctx, n_candidates):
        self.size = ctx.extra.get("mesh") or ("10k" if ctx.quick else "65k")
        self.heart = load_biventricular(self.size)
        h = self.heart
        self.fibers = rule_based(h).fibers
        self.mesh = h.tet_mesh()
        endo = (h.lv_endo | h.rv_endo) & ~h.base
        self.endo_nodes = np.nonzero(endo)[0]
        # candidate sites: well-spread endocardial nodes (not on the base)
        self.candidates = np.sort(
            farthest_point_sample(h.points, self.endo_nodes, n_candidates, seed=ctx.seed)
        )
        # the model to fit: global velocities + one time per candidate site
        self.model = T.TwinModel(
            self.mesh,
            self.fibers,
            T.GlobalVelocities(h.n_tets),
            T.CandidateSites(self.candidates, T_MIN, T_MAX),
        )
        # ground truth: one parameter set of that model -- five candidates near the named
        # anatomical positions fire at 0-8 ms, every other candidate is dormant (T_MAX)
        cand_pts = h.points[self.candidates]
        self.true_index = np.array(
            [int(np.argmin(np.linalg.norm(cand_pts - np.asarray(p), axis=1))) for _, p, _, _ in TRUE_SITES]
        )
        self.true_nodes = self.candidates[self.true_index]
        self.true_times = np.array([t for *_, t in TRUE_SITES])
        self.x_true = np.r_[V_TRUE, np.full(self.candidates.size, T_MAX)]
        self.x_true[2 + self.true_index] = self.true_times
        self.true_times_map = self.model.forward(self.x_true).times
        self.x0 = np.r_[V_START, np.full(self.candidates.size, T_START)]
        # ECG: standard 12 leads, transmural APD gradient (shorter at the epicardium)
        self.system = E.standard_12_lead(h)
        self.lead_field = E.lead_field(h, self.system, E.intracellular_conductivity(self.fibers))
        self.ap = E.ActionPotential(apd_ms=270.0 - 30.0 * np.clip(h.transmural, 0, 1))
        self.true_ecg = self.ecg(self.true_times_map)

    def ecg(self, times):
        return E.simulate_ecg(self.lead_field, times, model=self.ap, n_samples=N_SAMPLES, dt=DT).signals


def add_arguments(parser):
    """``--mesh`` overrides the mesh (default 65k; 10k with --quick)."""
    parser.add_argument(
        "--mesh",
        choices=["10k", "65k", "large"],
        default=None,
        help="biventricular mesh (default 65k, 10k with --quick)",
    )


def fit(ctx, setup, fun, maxiter):
    """L-BFGS in the unconstrained variables of the model's Bounded transform."""
    t = setup.model.transform()
    fz = transformed(fun, t)
    t0 = time.perf_counter()
    res = minimize(fz, t.inverse(setup.x0), method="lbfgs", maxiter=maxiter, tol=1e-12)
    fit_time = time.perf_counter() - t0
    ctx.log(
        f"fit: {res.nit} iterations, {res.nfev} evaluations, loss {res.fun:.4g}, {fit_time:.1f} s ({res.message})"
    )
    return t.forward(res.x), res, fit_time


def summarise(setup, x_fit, res, fit_time, target_ecg):
    """The figures reported by both scenarios."""
    st = setup.model.forward(x_fit)
    fitted = st.times
    err = np.abs(fitted - setup.true_times_map)
    fitted_ecg = setup.ecg(fitted)
    corr_target = E.lead_correlations(fitted_ecg, target_ecg)
    corr_truth = E.lead_correlations(fitted_ecg, setup.true_ecg)
    site_t = x_fit[2:]
    fired = np.abs(fitted[setup.candidates] - site_t) < 1e-9
    names = setup.system.lead_names
    hist = [h["fun"] for h in res.history]
    return (
        {
            "mesh": setup.size,
            "n_tets": setup.heart.n_tets,
            "n_points": setup.heart.n_points,
            "n_candidate_sites": int(setup.candidates.size),
            "activation_error_mean_ms": float(err.mean()),
            "activation_error_max_ms": float(err.max()),
            "activation_error_p95_ms": float(np.percentile(err, 95)),
            "total_activation_time_true_ms": float(setup.true_times_map.max()),
            "total_activation_time_fitted_ms": float(fitted.max()),
            "ecg_correlation_min": float(np.min(corr_target)),
            "ecg_correlation_per_lead": dict(zip(names, corr_target.tolist())),
            "ecg_correlation_min_vs_noise_free": float(np.min(corr_truth)),
            "parameters": {
                "v_fiber_mm_per_ms": {"true": V_TRUE[0], "initial": V_START[0], "fitted": float(x_fit[0])},
                "v_cross_mm_per_ms": {"true": V_TRUE[1], "initial": V_START[1], "fitted": float(x_fit[1])},
                "true_sites": {
                    n: {"node": int(i), "time_ms": float(t)}
                    for (n, *_), i, t in zip(TRUE_SITES, setup.true_nodes, setup.true_times)
                },
                "fitted_sites_firing": int(fired.sum()),
                "fitted_site_time_range_ms": [float(site_t.min()), float(site_t.max())],
            },
            "iterations": int(res.nit),
            "evaluations": int(res.nfev),
            "final_loss": float(res.fun),
            "loss_history": hist,
            "fit_time_s": float(fit_time),
            "optimizer_message": str(res.message),
        },
        fitted,
        fitted_ecg,
        err,
    )


def write_outputs(
    ctx, setup, fitted, err, fitted_ecg, target_ecg, history, x_fit, title, loss_title, reference_loss=None
):
    """``fitted_model.vtu`` and, with plots on, the pictures; ``reference_loss``
    (e.g. the loss of the true parameters) is drawn as a horizontal line."""
    files = []
    h = setup.heart
    site_time = np.full(h.n_points, np.nan)
    site_time[setup.candidates] = x_fit[2:]
    vtu = write_mesh(
        ctx.path("fitted_model.vtu"),
        h.points,
        {"tetra": h.tets},
        point_data={
            "activation_true": setup.true_times_map,
            "activation_fitted": fitted,
            "activation_error": fitted - setup.true_times_map,
            "candidate_site_time": site_time,
            **h.point_data(),
        },
        cell_data={"fibers": setup.fibers, "region": h.region},
    )
    files.append(vtu.name)
    if not ctx.plots:
        return files
    files.append(activation_picture(ctx.path("activation_true_vs_fitted.png"), setup, fitted, err).name)
    files.append(ecg_picture(ctx.path("ecg_target_vs_fitted.png"), setup, target_ecg, fitted_ecg, title).name)
    from physim.viz import write_view_html

    page = write_view_html(
        ctx.path("view.html"),
        h,
        {
            "true activation (ms)": setup.true_times_map,
            "fitted activation (ms)": fitted,
            "abs. activation error (ms)": err,
            "region (0 LV, 1 septum, 2 RV)": h.region,
        },
        title=f"{ctx.name}: true vs fitted activation",
        cmaps={
            "true activation (ms)": "turbo_r",
            "fitted activation (ms)": "turbo_r",
            "abs. activation error (ms)": "magma_r",
        },
    )
    files.append(page.name)
    from physim.viz import plot_curves

    curves = {"loss": history}
    if reference_loss is not None:
        curves["loss of the true parameters"] = ([0, max(len(history) - 1, 1)], [reference_loss] * 2)
    files.append(
        plot_curves(
            curves,
            ctx.path("loss.png"),
            xlabel="L-BFGS iteration",
            ylabel="loss",
            title=loss_title,
            logy=True,
        ).name
    )
    return files


def activation_picture(path, setup, fitted, err):
    import pyvista as pv

    from physim.viz import plotter, save_scene

    h = setup.heart
    cells = np.hstack([np.full((h.n_tets, 1), 4), h.tets]).ravel()
    grid = pv.UnstructuredGrid(cells, np.full(h.n_tets, pv.CellType.TETRA), h.points)
    grid.point_data["true"] = setup.true_times_map
    grid.point_data["fitted"] = fitted
    grid.point_data["error"] = err
    surf = grid.extract_surface(algorithm="dataset_surface")
    tmax = float(np.ceil(max(setup.true_times_map.max(), fitted.max()) / 10.0) * 10.0)
    levels = np.arange(10.0, tmax, 10.0)
    cam = [(170.0, 190.0, 10.0), (10.0, 0.0, -30.0), (0.0, 0.0, 1.0)]
    pl = plotter(window_size=(1800, 650), shape=(1, 3), border=False)
    bar = {
        "color": "black",
        "n_labels": 5,
        "fmt": "%.0f",
        "vertical": False,
        "position_x": 0.2,
        "position_y": 0.04,
        "width": 0.6,
        "height": 0.08,
        "title_font_size": 14,
        "label_font_size": 12,
    }
    for col, (name, label, cmap, clim) in enumerate(
        [
            ("true", "true activation (ms)", "turbo_r", (0.0, tmax)),
            ("fitted", "fitted activation (ms)", "turbo_r", (0.0, tmax)),
            ("error", "abs. error (ms)", "magma_r", (0.0, max(float(np.ceil(err.max())), 1.0))),
        ]
    ):
        pl.subplot(0, col)
        pl.add_mesh(
            surf.copy(),
            scalars=name,
            cmap=cmap,
            clim=clim,
            smooth_shading=True,
            scalar_bar_args={**bar, "title": label},
        )
        if name != "error":
            iso = surf.contour(isosurfaces=levels, scalars=name)
            if iso.n_points:
                pl.add_mesh(iso, color="black", line_width=2)
        text = {
            "true": "ground truth, isochrones 10 ms",
            "fitted": "fitted model, isochrones 10 ms",
            "error": f"error: mean {err.mean():.1f} ms, max {err.max():.1f} ms",
        }[name]
        pl.add_text(text, color="black", font_size=11)
        pl.camera_position = cam
    return save_scene(pl, path)


def ecg_picture(path, setup, target, fitted, title):
    from physim.viz import figure, save_figure

    names = setup.system.lead_names
    t = np.arange(target.shape[1]) * DT
    corr = E.lead_correlations(fitted, target)
    fig, axes = figure(3, 4, figsize=(14, 7.5), sharex=True)
    for i, ax in enumerate(axes.ravel()):
        ax.plot(t, target[i], color="0.3", lw=1.0, label="target")
        ax.plot(t, fitted[i], color="tab:red", lw=1.2, label="fitted")
        ax.set_title(f"{names[i]}  (r = {corr[i]:.3f})", fontsize=10)
        ax.grid(alpha=0.3)
        if i >= 8:
            ax.set_xlabel("time (ms)")
        if i % 4 == 0:
            ax.set_ylabel("mV")
    axes[0, 0].legend(fontsize=8, loc="upper right")
    fig.suptitle(title)
    data = {"time (ms)": t}
    for i, n in enumerate(names):
        data[f"{n} target (mV)"] = target[i]
        data[f"{n} fitted (mV)"] = fitted[i]
    return save_figure(fig, path, data=data)  # the signals as CSV next to the picture
