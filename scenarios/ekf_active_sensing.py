"""EKF active sensing: plan unicycle trajectories that minimise localisation uncertainty.

Reproduces the setting of Benhamou, Bonnabel & Chapdelaine (2024), "Backpropagation-
based analytical derivatives of EKF covariance for active sensing": a unicycle
(dt = 0.1 s) localised by an EKF from range (σ = 0.1 m) and bearing (σ = 0.02 rad)
measurements to three beacons, P0 = diag(1, 1, 0.1), odometry noise
M = diag(0.05², 0.02²), Q0 = 1e-6 I. Starting from the straight-line plan to a
goal, the controls are optimised with gradients from the analytical adjoint of
the covariance recursion (physim.ekf.adjoint) and physim.optim.minimize:

* N = 50 (5 s): trace of the final covariance, final position as an equality
  constraint (SLSQP), control bounds;
* N = 1000 (100 s): mean trace of the covariance over the horizon, goal
  penalty and smoothness penalty (L-BFGS-B, 2000 variables).

Then the actual EKF is run on simulated noisy data along the initial and the
optimised plans (Monte-Carlo, in chunks with independent seeds) to check that
the optimised plan really localises better. Reports the covariance costs before/after, the Monte-Carlo
position RMSE, the filter's NEES, iterations and time; results.json holds
trace_initial, trace_optimized, rmse_initial, rmse_optimized (N = 50, final
step). Pictures: trajectories with covariance ellipses and beacons, cost over
iterations, covariance trace and RMSE along the horizon.
"""

from __future__ import annotations

import time

import numpy as np

from physim.ekf import (
    Beacons,
    FinalTrace,
    HorizonSum,
    Unicycle,
    compare_strategies,
    covariance_rollout,
    plan_active_sensing,
)
from physim.scenario import ScenarioContext, scenario_main

DT = 0.1
P0 = np.diag([1.0, 1.0, 0.1])
M = np.diag([0.05**2, 0.02**2])
Q0 = 1e-6 * np.eye(3)
BEACONS = np.array([[1.0, 3.0], [4.0, 3.5], [7.0, 3.0]])
X0 = np.zeros(3)
BOUNDS = ([0.0, -1.5], [3.0, 1.5])


def _straight(goal, N):
    """Straight-line plan from X0 (heading 0) to ``goal`` on the x axis."""
    return np.tile([goal[0] / (N * DT), 0.0], (N, 1))


def _case(ctx, name, N, goal, cost, n_runs, **plan_kw):
    model = Unicycle(DT)
    beacons = Beacons(BEACONS, range_std=0.1, bearing_std=0.02)
    U0 = _straight(goal, N)
    t0 = time.perf_counter()
    plan = plan_active_sensing(model, beacons, X0, P0, U0, M, Q0, cost=cost, goal=goal, **plan_kw)
    t_plan = time.perf_counter() - t0
    r0 = covariance_rollout(model, beacons, X0, P0, U0, M, Q0)
    out = {"N": N, "iterations": int(plan.result.nit), "evaluations": int(plan.result.nfev),
           "optimizer_message": str(plan.result.message), "time_s": t_plan,
           "goal_error_m": plan.goal_error}  # fmt: skip
    out["cost_initial"], out["cost_optimized"] = plan.initial_cost, plan.cost
    out["cost_reduction_percent"] = 100.0 * (1.0 - plan.cost / plan.initial_cost)
    out["trace_final_initial"] = float(np.trace(r0.P[-1]))
    out["trace_final_optimized"] = float(np.trace(plan.covariances[-1]))
    out["mean_trace_initial"] = float(np.mean(np.trace(r0.P[1:], axis1=1, axis2=2)))
    out["mean_trace_optimized"] = float(np.mean(np.trace(plan.covariances[1:], axis1=1, axis2=2)))
    t0 = time.perf_counter()
    # Monte-Carlo runs in chunks with independent seeds (the same numbers with any number of workers)
    mc = compare_strategies(
        {"initial": U0, "optimized": plan.controls}, model, beacons, X0, P0, U0, M, Q0, n_runs=n_runs,
        seed=ctx.seed + 1, chunk_size=100, workers=ctx.workers, scheduler=ctx.scheduler,
    ).results  # fmt: skip
    for label, fr in mc.items():
        out[f"mc_final_rmse_{label}"] = fr.final_rmse
        out[f"mc_mean_rmse_{label}"] = fr.rmse
        out[f"mc_mean_nees_{label}"] = float(fr.mean_nees[1:].mean())
        out[f"predicted_final_position_std_{label}"] = float(
            np.sqrt(np.trace((r0.P if label == "initial" else plan.covariances)[-1][:2, :2]))
        )
    out["mc_runs"] = n_runs
    out["mc_time_s"] = time.perf_counter() - t0
    ctx.log(
        f"N={N}: cost {plan.initial_cost:.4g} -> {plan.cost:.4g} "
        f"(-{out['cost_reduction_percent']:.1f}%), {plan.result.nit} it, {t_plan:.1f} s; "
        f"MC final RMSE {out['mc_final_rmse_initial']:.4f} -> {out['mc_final_rmse_optimized']:.4f} m, "
        f"mean RMSE {out['mc_mean_rmse_initial']:.4f} -> {out['mc_mean_rmse_optimized']:.4f} m"
    )
    if ctx.plots:
        _plot_case(ctx, name, N, goal, r0, plan, mc)
    return out


def _ellipse(ax, mean, cov, scale, **kw):
    w, V = np.linalg.eigh(cov)
    t = np.linspace(0, 2 * np.pi, 60)
    pts = (V @ (np.sqrt(np.maximum(w, 0))[:, None] * np.array([np.cos(t), np.sin(t)]))) * scale
    ax.plot(mean[0] + pts[0], mean[1] + pts[1], lw=1.0, **kw)


def _plot_case(ctx, name, N, goal, r0, plan, mc):
    from physim import viz

    n_runs = mc["initial"].truth.shape[0]
    # trajectories with 3σ position ellipses (magnified) and beacons
    fig, ax = viz.figure(figsize=(10, 5))
    every = max(N // 10, 1)
    mag = 10.0
    data = {}
    for X, P, color, label in (
        (r0.states, r0.P, "tab:blue", "straight-line plan"),
        (plan.trajectory, plan.covariances, "tab:red", "optimised plan"),
    ):
        ax.plot(X[:, 0], X[:, 1], color=color, lw=2, label=label)
        for k in range(every, N + 1, every):
            _ellipse(ax, X[k, :2], P[k][:2, :2], 3.0 * mag, color=color)
        key = label.split()[0]
        data[f"{key} x [m]"], data[f"{key} y [m]"] = X[:, 0], X[:, 1]
        data[f"{key} position std [m]"] = np.sqrt(np.trace(P[:, :2, :2], axis1=1, axis2=2))
    ax.plot([], [], color="0.4", lw=1.0, label=f"3σ position ellipses ×{mag:g}")
    ax.plot(BEACONS[:, 0], BEACONS[:, 1], "k^", ms=10, label="beacons")
    ax.plot(*X0[:2], "ko", ms=8, mfc="w", label="start")
    ax.plot(*goal, "k*", ms=12, label="goal")
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_title(
        f"N = {N} steps ({N * DT:g} s): nominal trajectories, ellipses every {every} steps; "
        f"cost {plan.initial_cost:.3g} → {plan.cost:.3g} in {plan.result.nit} iterations",
        fontsize=10,
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.grid(alpha=0.3)
    data["step"] = np.arange(N + 1)
    viz.save_figure(fig, ctx.path(f"trajectories_{name}.png"), data=data)

    # cost over iterations + uncertainty along the horizon
    fig, axs = viz.figure(1, 2, figsize=(12, 4.3))
    axs[0].semilogy(plan.cost_history, "o-", ms=3, color="tab:red", label="optimised plan")
    axs[0].axhline(plan.initial_cost, color="tab:blue", ls="--", lw=1, label="straight-line plan")
    axs[0].set_xlabel("iteration")
    axs[0].set_ylabel("covariance cost [m²]")
    axs[0].set_title(f"N = {N}: covariance cost over iterations", fontsize=10)
    axs[0].legend(fontsize=8)
    axs[0].grid(alpha=0.3, which="both")
    viz.integer_ticks(axs[0])
    t = np.arange(N + 1) * DT
    data = {"time [s]": t}
    for label, P, color in (("straight", r0.P, "tab:blue"), ("optimised", plan.covariances, "tab:red")):
        sd = np.sqrt(np.trace(P[:, :2, :2], axis1=1, axis2=2))
        axs[1].semilogy(t, sd, color=color, label=f"{label}: EKF predicted σ_pos")
        key = "initial" if label == "straight" else "optimized"
        axs[1].semilogy(t, mc[key].position_rmse, "--", color=color, label=f"{label}: Monte-Carlo RMSE")
        data[f"{label} predicted std [m]"], data[f"{label} MC RMSE [m]"] = sd, mc[key].position_rmse
    axs[1].set_xlabel("time [s]")
    axs[1].set_ylabel("position error [m]")
    axs[1].set_title(f"position uncertainty along the horizon ({n_runs} Monte-Carlo runs)", fontsize=10)
    axs[1].legend(fontsize=8)
    axs[1].grid(alpha=0.3, which="both")
    viz.save_figure(fig, ctx.path(f"cost_{name}.png"), data=data)
    viz.write_csv(ctx.path(f"cost_history_{name}.csv"), {"iteration": np.arange(plan.cost_history.size),
                  "covariance cost [m²]": plan.cost_history, "objective": plan.objective_history})  # fmt: skip


def run(ctx: ScenarioContext) -> dict:
    # the plans take about a second: quick mode optimises them fully and only runs fewer Monte-Carlo runs
    short = _case(
        ctx, "N50", 50, np.array([5.0, 0.0]), FinalTrace(), n_runs=200 if ctx.quick else 2000,
        bounds=BOUNDS, goal_mode="constraint", maxiter=300,
    )  # fmt: skip
    long = _case(
        ctx, "N1000", 1000, np.array([10.0, 0.0]), HorizonSum(FinalTrace(), mean=True),
        n_runs=20 if ctx.quick else 300, bounds=([0.0, -1.0], [1.0, 1.0]), goal_mode="penalty",
        goal_weight=100.0, smooth_weight=1.0, maxiter=200,
    )  # fmt: skip
    return {
        "trace_initial": short["trace_final_initial"],
        "trace_optimized": short["trace_final_optimized"],
        "rmse_initial": short["mc_final_rmse_initial"],
        "rmse_optimized": short["mc_final_rmse_optimized"],
        "N50": short,
        "N1000": long,
    }


if __name__ == "__main__":
    scenario_main(run, __doc__)
