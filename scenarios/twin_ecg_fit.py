"""Cardiac digital twin: fit velocities and >=100 candidate initiation sites to a noisy 12-lead ECG.

Geodesic-BP (Grandits et al., IEEE TBME 2024) on a laptop CPU: the idealised
biventricular heart (65k mesh; 10k with ``--quick``) with rule-based fibres,
a pseudo-ECG (infinite-medium lead field, standard 12-lead layout, QRS and
T-wave from a transmural APD gradient). Ground truth: one parameter set of the
fitted model -- velocities 0.6 / 0.3 mm/ms, five candidate sites near named
endocardial positions firing at 0-8 ms and every other candidate dormant.
Data: the true 12-lead ECG (500 samples at 1 ms) plus Gaussian noise of 1 %
of each lead's peak amplitude. Fit: global velocities (0.1-2 mm/ms) and one
time per candidate endocardial site (120; 40 with ``--quick``), from
1.0 / 0.6 mm/ms and all sites at 20 ms, minimising the correlation loss
(amplitude-insensitive) with L-BFGS, gradients exact through the ECG and
eikonal adjoints.

Reports the ECG correlation per lead, the activation error over the whole
heart (mean/max, ms), true vs recovered velocities, iterations and wall time;
writes ``fitted_model.vtu``, ``activation_true_vs_fitted.png`` (anterior,
posterior and long-axis cut views, true and fitted sites marked),
``ecg_target_vs_fitted.png`` (+ CSV), ``loss.png`` and ``view.html``.

This is the single-fit baseline. Its earlier target of a mean activation
error <= 5 ms is withdrawn: it is not reachable from ECG-only data with one
best fit, for the reasons measured below -- many activation maps far from the
truth fit the 12-lead ECG about as well as the truth (every strategy below
stops at 9.4-28 ms with ECG correlations of 0.98-0.996), while the true
minimum is so narrow that a local optimiser does not find it (moving one true
site by one candidate, about 10 mm, raises the loss 8-370x). A single map
with no error bar is the wrong answer to such an ill-posed problem:
``twin_ensemble`` fits an ensemble from random starts with physiological
priors (subendocardial sites, number of firing sites) and reports how far its
mean is from the truth and whether its spread covers the error. The numbers
below were measured with the limb electrodes 10 heart radii away; they now
sit at about 3 heart radii (torso-like, see
:func:`physim.cardiac.ecg.standard_12_lead`), and the README gives this
scenario's re-measured result.

The ECG fit is limited by the optimisation, not by the data: the loss of the
true parameters against the noisy target (``loss_at_true_parameters``, a
diagnostic not used by the fit, drawn in ``loss.png``) is about 3x lower than
the loss the fit reaches, yet L-BFGS from this start settles in a minimum with
a slow fibre velocity and ~100 sites firing. A sparsity prior on the site
times (:class:`physim.cardiac.twin.CandidateSites` ``sparsity``), with L-BFGS
or with Adam followed by L-BFGS, with or without re-activating dormant sites
in between; adding the MSE loss; fewer active sites or earlier times at the
start; and rescaling the velocity variables: none brought the mean
activation error below 10.8 ms on the 10k mesh (plain fit: 15.1 ms) or
12.2 ms on the 65k mesh (plain fit: 12.7 ms), and those that recover the
velocities on one mesh do not on the other, so the plain correlation fit stays
the default.

Active-set schemes driven by the eikonal adjoint were measured as well. The
adjoint variable at a silent site's node, ``adjoint(...).times[node]``, is the
derivative of the loss w.r.t. that site's time if it fired just before the
wave arrives (it matches finite differences to 4 digits), but it ranks the true
sites poorly (25th, 64th and 84th of 102 silent candidates after a 20-site
fit on the 10k mesh). Measured (mean activation error, minimum ECG correlation):

======================================  ===============  ===============
strategy                                10k mesh         65k mesh
======================================  ===============  ===============
plain fit (the default)                 15.1 ms (0.991)  12.7 ms (0.996)
plain fit + revival (a)                 15.0 ms (0.991)  --
greedy pursuit from one site (b)        14.5-18.7 ms     --
                                        (< 0.45)
20 spread sites first + revival (c)     13.1-14.0 ms     14.2 ms (0.977)
                                        (0.96-0.98)
fixed-velocity scan, then joint (d)     13.6-14.4 ms     --
                                        (0.73-0.88)
fibre velocity + ratio v_c/v_f <= 1     12.3 ms (0.98)   12.6 ms (0.994)
ratio v_c/v_f <= 0.7 or <= 0.6          13.1-13.5 ms     --
                                        (0.978-0.989)
sites from 0 ms and/or the MSE loss     13.9-18.6 ms     --
                                        (0.87-0.993)
low-pass continuation (e)               15.8 ms (0.990)  --
time-window curriculum (f)              --               13.4 ms (0.994)
10k multi-start, refined on 65k (g)     --               11.8 ms (0.996)
soft minimum over sites, then joint     --               9.8 ms (0.995)
fit (h)
6 movable site centres (i)              15.4-19.7 ms     --
                                        (< 0.75)
======================================  ===============  ===============

(a) 4 rounds, each reviving the 5 best-scored silent sites at 2 ms before
the arrival, then 50 L-BFGS iterations; (b) each round adds the best of the
10 best-scored silent sites after finite-step tests (fired 5, 15 or 30 ms
before the arrival), velocities free or frozen; (c) L-BFGS on 20
farthest-point candidates only, then rounds reviving 5-10 sites at 2-20 ms
before the arrival; (d) site times fitted at v_f in 0.35-1.0 mm/ms with
v_c/v_f = 0.4 or 0.6, the lowest-loss velocity then refitted jointly.
(e) the simulated and target ECGs both smoothed by a Gaussian of 16, 8, 4, 2
ms, then unsmoothed (60 L-BFGS iterations per level, 200 at the end);
(f) 40 iterations on each of the first 40, 60, 90 and 130 ms of the ECG, then
300 on all of it (100 s); (g) 16 fits of the 10k model (150 iterations, two
processes; each candidate the 10k endocardial node nearest a 65k one) to the
65k target from random starts (v_f 0.2-1.5 mm/ms, v_c/v_f 0.2-1, site times
uniform in 0-60 ms), the lowest-loss one refined by 300 iterations on 65k
(207 s in all); (h) travel times from each candidate (120 single-source
solves, 11-15 s per anisotropy ratio) make the activation
``softmin_i(t_i + T_i(x) / v_f)``, which gives silent sites a gradient; at
v_c/v_f = 0.4 and 0.7 (one process each) the temperature is annealed 8, 4,
2, 1, 0 ms (80 iterations each), and the lower-loss ratio is refined on the
full model (300 iterations; 138 s in all, final loss 1.47e-3); (i) candidate
times ``softmin_k(tau_k + 0.1 ms/mm^2 |p_j - mu_k|^2)`` from 6 centres ``mu_k``
moving freely in space, with times ``tau_k`` and the velocities (6 random
starts). 10k column: ``--mesh 10k`` (120 candidates).
None reaches the 5 ms target: revived sites either fall silent again or add
ever more firing sites while the fibre velocity drifts down. On the 10k mesh
every random start of (g) ends at v_f 0.10-0.15 mm/ms but one, and the 10k
model at the true parameters scores 0.036 against the 65k ECG (ten times its
best fit's 3.4e-3), so a coarse ranking cannot point at the true basin.

The site times are stuck as well as the velocities. With the velocities held
at their true values (a diagnostic, using the travel-time maps of (h) at
v_c/v_f = 0.5), fitting only the site times from 20 ms reaches 9.4 ms (0.989)
on the 65k mesh and 8.1 ms (0.987) with the time-window curriculum; greedy
selection of up to 8 sites (every silent candidate scored at 5 times before
its arrival), 6 random sparse starts (2-7 sites firing at 0-10 ms) and site
times in a coarse-to-fine graph-Laplacian basis of the candidates do worse
(14-28 ms), and on the 10k mesh a penalty on how much earlier than the wave
from the other sites each site fires (zero for the true sites' silent
neighbours) gives 7.6-18.7 ms. The true minimum is narrow: scaling both true
velocities by 0.9 or 1.1 raises the loss from 5.2e-4 to 6-7e-2, and moving
one true site to a neighbouring candidate (~10 mm) to 4e-3-0.19, while the
65k fits above stop at 1.5e-3-2.2e-3 with 83-112 sites firing.

``--mesh large`` runs the same fit on the ~415k-tet mesh.
"""

from __future__ import annotations

import time

import numpy as np

from physim.cardiac import plots as P
from physim.cardiac import twin as T
from physim.cardiac.heart import farthest_point_sample
from physim.cardiac.objectives import ecg_objective
from physim.cardiac.study import DT, GroundTruth, SyntheticStudy, add_mesh_argument, load_heart
from physim.optim import minimize, transformed
from physim.scenario import ScenarioContext, scenario_main
from physim.viz import plot_curves

NOISE_FRACTION = 0.01
#: initial guess: velocities (mm/ms) and the time of every candidate site (ms); site-time bounds (ms)
V_START, T_START = (1.0, 0.6), 20.0
T_MIN, T_MAX = -10.0, 150.0


def run(ctx: ScenarioContext) -> dict:
    t_start = time.perf_counter()
    n_cand, maxiter = (40, 40) if ctx.quick else (120, 300)
    heart, label = load_heart(ctx.extra.get("mesh"), ctx.quick)
    # candidates: well-spread endocardial nodes; truth: five named sites snapped to candidates
    endo = np.nonzero((heart.lv_endo | heart.rv_endo) & ~heart.base)[0]
    cand = farthest_point_sample(heart.points, endo, n=n_cand, seed=ctx.seed)
    study = SyntheticStudy(heart, GroundTruth.landmarks(heart, cand), seed=ctx.seed)
    model = T.TwinModel(
        study.mesh, study.fibers, T.GlobalVelocities(heart.n_tets), T.CandidateSites(cand, T_MIN, T_MAX)
    )
    ctx.log(f"mesh {label}: {heart.n_points} points, {heart.n_tets} tets; {n_cand} candidate sites")
    rng = np.random.default_rng(ctx.seed + 2)
    peak = np.abs(study.true_ecg).max(axis=1, keepdims=True)
    target = study.true_ecg + NOISE_FRACTION * peak * rng.standard_normal(study.true_ecg.shape)
    fun = ecg_objective(
        model, study.lead_field, target, loss="correlation", action_potential=study.action_potential
    )
    tr = model.transform()
    x0 = np.r_[V_START, np.full(n_cand, T_START)]
    t0 = time.perf_counter()
    res = minimize(
        transformed(fun, tr), tr.inverse(x0), method="lbfgs", maxiter=maxiter, tol=1e-12, progress=True
    )
    fit_time = time.perf_counter() - t0
    x_fit = tr.forward(res.x)
    out, fitted, fitted_ecg = study.fit_report(model, x_fit, target)
    x_true = study.true_parameters(model)
    out.update(
        {
            "mesh": label,
            "n_tets": heart.n_tets,
            "n_points": heart.n_points,
            "n_candidate_sites": n_cand,
            "true_sites": {
                n: {"node": int(i), "time_ms": float(t)}
                for n, i, t in zip(study.truth.names, study.truth.nodes, study.truth.times)
            },  # fmt: skip
            "v_fiber_true_mm_per_ms": study.truth.v_fiber,
            "v_cross_true_mm_per_ms": study.truth.v_cross,
            "iterations": int(res.nit),
            "evaluations": int(res.nfev),
            "final_loss": float(res.fun),
            "loss_history": [h["fun"] for h in res.history],
            "fit_time_s": fit_time,
            "optimizer_message": str(res.message),
            "noise_fraction_of_peak": NOISE_FRACTION,
            "ecg_correlation_reference": "fitted ECG vs the noisy target ECG",
            # diagnostic only (not used by the fit): the optimum is at least this good
            "loss_at_true_parameters": float(fun(x_true)[0]),
        }
    )
    ctx.log(
        f"ECG corr min {out['ecg_correlation_min']:.4f}; activation error mean "
        f"{out['activation_error_mean_ms']:.2f} ms, max {out['activation_error_max_ms']:.2f} ms; "
        f"v_f {x_fit[0]:.3f} (true 0.6), v_c {x_fit[1]:.3f} (true 0.3); loss {res.fun:.3g} "
        f"(true parameters: {out['loss_at_true_parameters']:.3g})"
    )
    vtu = study.write_fit_vtu(ctx.path("fitted_model.vtu"), fitted, model.sites.nodes, x_fit[2:])
    files = [vtu.name]
    if ctx.plots:
        files += _pictures(ctx, study, model, x_fit, fitted, fitted_ecg, target, out)
    out["files"] = files
    out["wall_time_s"] = time.perf_counter() - t_start
    return out


def _pictures(ctx, study, model, x_fit, fitted, fitted_ecg, target, out):
    h = study.heart
    err = study.activation_error(fitted)
    tmax = float(np.ceil(max(study.true_times.max(), fitted.max()) / 10.0) * 10.0)
    true_m = P.site_markers(h, study.truth.nodes, "true sites", "white")
    fit_m = P.site_markers(
        h, model.sites.nodes[model.sites.firing(x_fit[2:], fitted)], "fitted firing sites", "magenta", 10
    )
    fields = [
        P.MapField(study.true_times, "truth", "activation time (ms)", clim=(0.0, tmax), isolines=P.time_levels(tmax), markers=[true_m]),
        P.MapField(fitted, "fitted", "activation time (ms)", clim=(0.0, tmax), isolines=P.time_levels(tmax), markers=[true_m, fit_m]),
        P.MapField(err, "|error|", "absolute error (ms)",
                   cmap="magma_r", clim=(0.0, float(np.ceil(max(err.max(), 1.0))))),
    ]  # fmt: skip
    from physim.viz import write_view_html

    page = write_view_html(
        ctx.path("view.html"),
        h,
        {
            "true activation (ms)": study.true_times,
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
    t = np.arange(target.shape[1]) * DT
    return [
        page.name,
        P.activation_figure(ctx.path("activation_true_vs_fitted.png"), h, fields, suptitle=f"ECG fit: activation error mean {err.mean():.1f} ms, max {err.max():.1f} ms").name,
        P.ecg_figure(ctx.path("ecg_target_vs_fitted.png"), study.lead_field.leads.lead_names, t, target, fitted_ecg,
                     target_label="noisy target", title="ECG fit: noisy target (grey) vs fitted (red)").name,
        plot_curves({"loss": out["loss_history"]}, ctx.path("loss.png"), xlabel="L-BFGS iteration",
                    ylabel="loss: mean over leads of (1 - correlation)", title="ECG fit", logy=True,
                    references={"loss of the true parameters": out["loss_at_true_parameters"]}).name,
    ]  # fmt: skip


if __name__ == "__main__":
    scenario_main(run, __doc__, add_arguments=add_mesh_argument)
