"""EKF active sensing in closed loop: receding-horizon planning vs the open-loop plan vs the straight line.

The setting of ekf_active_sensing (Benhamou, Bonnabel & Chapdelaine 2024): a
unicycle (dt = 0.1 s) localised by an EKF from range (σ = 0.1 m) and bearing
(σ = 0.02 rad) measurements to three beacons, P0 = diag(1, 1, 0.1),
odometry noise M = diag(0.05², 0.02²), Q0 = 1e-6 I, a 5 s mission from (0, 0)
to the goal (5, 0). Added, as a robot would have them: speed in [0.1, 3] m/s
and turn rate within ±1.5 rad/s, a keep-out circle (centre (4.6, 1.8),
radius 0.4 m) on the way the open-loop plan takes, and at least 0.5 m to every
beacon. Three strategies fly the same simulated missions (common random
numbers: the same true start, odometry, process and measurement noise):

* straight: the straight line to the goal, open loop;
* open loop: the plan optimised once from (x0, P0) (final covariance trace,
  end within 5 cm of the goal, the constraints above; SLSQP), flown open loop;
* receding: plan over H = 20 steps (2 s) from the EKF's current estimate
  (trace of the covariance at the horizon's end, the same constraints planned
  with a 5 cm back-off, the goal within reach at 2 m/s until the horizon
  reaches the end, then within 5 cm of the goal), execute k = 5 controls
  (0.5 s), update the EKF with the measurements actually received, replan
  warm-started from the shifted plan. ``--time-budget S`` gives each replan
  a planning time budget (default 0: none, only the iteration cap): SLSQP
  stops at the first iteration that ends after it and the best feasible
  plan met is flown; feasibility comes before the budget. With a budget,
  results depend on the machine's speed (which iterate the deadline falls
  on).

Reports over the Monte-Carlo runs (500 in full mode, split into chunks of 25
with independent seeds, fanned out with physim.distributed; ``--store DIR``
keeps finished chunks so that an interrupted run resumes): final and
time-averaged position RMSE with 95 % CIs, paired differences between
strategies, NEES consistency, goal reached (true final position within
0.25 m), how often true paths entered a constraint, planning time per replan
against the 0.5 s between replans, and the largest constraint violation over
every plan made (with how many replans started from an estimate inside a
constraint circle and were projected out of it, and how many could not reach
their goal region from the estimate and widened it). results.json: n_runs,
rmse_final_{straight,open_loop,receding} and rmse_mean_* (with _ci95),
max_constraint_violation, replan_time_ratio, and per-strategy details.
Pictures: trajectories with covariance ellipses for the three strategies,
RMSE over time with confidence bands, NEES, planning times (each with its
data as CSV).
"""

from __future__ import annotations

import time

import numpy as np

from physim.ekf import (
    ActiveSensingController,
    BeaconDistance,
    Beacons,
    FinalTrace,
    KeepOut,
    Unicycle,
    compare_strategies,
    paired_difference,
    plan_active_sensing,
    position_rmse_ci,
    summarize,
)
from physim.scenario import ScenarioContext, scenario_main

DT = 0.1
N = 50
P0 = np.diag([1.0, 1.0, 0.1])
M = np.diag([0.05**2, 0.02**2])
Q0 = 1e-6 * np.eye(3)
BEACONS = np.array([[1.0, 3.0], [4.0, 3.5], [7.0, 3.0]])
X0 = np.zeros(3)
GOAL = np.array([5.0, 0.0])
BOUNDS = ([0.1, -1.5], [3.0, 1.5])
KEEP_OUT = KeepOut([[4.6, 1.8]], 0.4)
CLEARANCE = BeaconDistance(0.5)
CONSTRAINTS = [KEEP_OUT, CLEARANCE]
HORIZON, EXECUTE, REACH_SPEED, REPLAN_ITERATIONS, MARGIN = 20, 5, 2.0, 30, 0.05
GOAL_RADIUS, GOAL_TOLERANCE = 0.05, 0.25
TIME_BUDGET = 0.0  # s of planning per replan; 0: none (see the README for a measured 0.1 s budget)
LABELS = {"straight": "straight line", "open_loop": "open-loop plan", "receding": "receding horizon"}
COLORS = {"straight": "tab:blue", "open_loop": "tab:orange", "receding": "tab:green"}


def _verdict(diff: dict, what: str) -> str:
    lo, hi = diff["mse_difference_ci95"]
    if hi < 0:
        return f"receding horizon localises better than {what} (MSE difference CI {lo:.2e} to {hi:.2e} m², p = {diff['p_value']:.2g})"
    if lo > 0:
        return f"receding horizon localises worse than {what} (MSE difference CI {lo:.2e} to {hi:.2e} m², p = {diff['p_value']:.2g})"
    return f"no significant difference from {what} (MSE difference CI {lo:.2e} to {hi:.2e} m², p = {diff['p_value']:.2g})"


def run(ctx: ScenarioContext) -> dict:
    model = Unicycle(DT)
    beacons = Beacons(BEACONS, range_std=0.1, bearing_std=0.02)
    straight = np.tile([GOAL[0] / (N * DT), 0.0], (N, 1))
    n_runs = 6 if ctx.quick else 500
    budget = ctx.extra.get("time_budget", TIME_BUDGET) or None  # 0: no budget
    chunk = 3 if ctx.quick else 25

    t0 = time.perf_counter()
    open_loop = plan_active_sensing(model, beacons, X0, P0, straight, M, Q0, cost=FinalTrace(), bounds=BOUNDS,
                                    goal=GOAL, goal_radius=GOAL_RADIUS, constraints=CONSTRAINTS, maxiter=300)  # fmt: skip
    ctx.log(f"open-loop plan: {open_loop}, {time.perf_counter() - t0:.1f} s, {open_loop.result.message}")
    controller = ActiveSensingController(
        model, beacons, M, Q0, horizon=HORIZON, execute=EXECUTE, cost=FinalTrace(), bounds=BOUNDS, goal=GOAL,
        goal_radius=GOAL_RADIUS, constraints=CONSTRAINTS, reach_speed=REACH_SPEED, maxiter=REPLAN_ITERATIONS,
        margin=MARGIN, time_budget=budget,
    )  # fmt: skip
    strategies = {"straight": straight, "open_loop": open_loop.controls, "receding": controller}
    t0 = time.perf_counter()
    cmp = compare_strategies(
        strategies, model, beacons, X0, P0, straight, M, Q0, n_runs=n_runs, seed=ctx.seed, chunk_size=chunk,
        workers=ctx.workers, scheduler=ctx.scheduler, store=ctx.extra.get("store"),
    )  # fmt: skip
    mc_time = time.perf_counter() - t0
    stats = {
        name: summarize(
            res, goal=GOAL, goal_tolerance=GOAL_TOLERANCE, constraints=CONSTRAINTS, beacons=beacons
        )
        for name, res in cmp.results.items()
    }
    rh = stats["receding"]
    diffs = {
        f"receding_vs_{b}_{w}": paired_difference(
            cmp.results["receding"], cmp.results[b], final=(w == "final")
        )
        for b in ("open_loop", "straight")
        for w in ("final", "mean")
    }
    out = {"n_runs": n_runs, "monte_carlo_time_s": mc_time}
    for name, s in stats.items():
        for key in ("rmse_final", "rmse_mean"):
            out[f"{key}_{name}"] = s[key]
            out[f"{key}_{name}_ci95"] = s[f"{key}_ci95"]
        out[f"nees_mean_{name}"] = s["nees_mean"]
        out[f"goal_reached_{name}"] = s["goal_reached_fraction"]
    out["max_constraint_violation"] = max(open_loop.max_constraint_violation, rh["max_constraint_violation"])
    out["max_constraint_violation_open_loop_plan"] = open_loop.max_constraint_violation
    out["max_constraint_violation_receding_plans"] = rh["max_constraint_violation"]
    out["infeasible_plans_receding"] = rh["infeasible_plans"]
    out["projected_starts_receding"] = rh["projected_starts"]
    out["start_projection_max_m"] = rh["start_projection_max_m"]
    out["widened_goals_receding"] = rh["widened_goals"]
    out["goal_widening_max_m"] = rh["goal_widening_max_m"]
    out["replan_time_ratio"] = rh["replan_time_ratio"]
    out["replan_time_ratio_p95"] = rh["replan_time_ratio_p95"]
    out["plan_time_mean_s"] = rh["plan_time_mean_s"]
    out["plan_time_p95_s"] = rh["plan_time_p95_s"]
    out["plan_time_max_s"] = rh["plan_time_max_s"]
    out["replan_time_ratio_max"] = rh["plan_time_max_s"] / rh["control_period_s"]
    out["time_budget_s"] = budget
    out["replans_over_budget"] = (
        None if budget is None else int(np.sum(cmp.results["receding"].plan_time_s > budget))
    )
    out["control_period_s"] = rh["control_period_s"]
    out["open_loop_plan"] = {
        "cost_initial": open_loop.initial_cost, "cost": open_loop.cost, "iterations": int(open_loop.result.nit),
        "message": str(open_loop.result.message), "time_s": open_loop.time_s,
        "constraint_violations": open_loop.constraint_violations,
    }  # fmt: skip
    out["strategies"] = stats
    out["paired_differences"] = diffs
    out["conclusion"] = {
        "final_vs_open_loop": _verdict(
            diffs["receding_vs_open_loop_final"], "the open-loop plan at the final step"
        ),
        "final_vs_straight": _verdict(
            diffs["receding_vs_straight_final"], "the straight line at the final step"
        ),
        "mean_vs_open_loop": _verdict(
            diffs["receding_vs_open_loop_mean"], "the open-loop plan over the mission"
        ),
        "mean_vs_straight": _verdict(
            diffs["receding_vs_straight_mean"], "the straight line over the mission"
        ),
    }
    out["config"] = {
        "dt": DT, "N": N, "horizon": HORIZON, "execute": EXECUTE, "reach_speed": REACH_SPEED,
        "replan_iterations": REPLAN_ITERATIONS, "time_budget_s": budget, "margin": MARGIN, "goal_radius": GOAL_RADIUS, "bounds": BOUNDS, "keep_out_centers": KEEP_OUT.centers,
        "keep_out_radii": KEEP_OUT.radii, "beacon_distance": CLEARANCE.distance, "goal": GOAL,
        "goal_tolerance": GOAL_TOLERANCE, "chunk_size": chunk, "seed": ctx.seed,
    }  # fmt: skip
    budget_text = (
        "no time budget" if budget is None
        else f"budget {1e3 * budget:.0f} ms, exceeded by {out['replans_over_budget']} of {rh['plans']} replans"
    )  # fmt: skip
    for name in strategies:
        s = stats[name]
        lo, hi = s["rmse_final_ci95"]
        ctx.log(
            f"{LABELS[name]:>16}: final RMSE {s['rmse_final']:.4f} m [{lo:.4f}, {hi:.4f}], mean RMSE "
            f"{s['rmse_mean']:.4f} m, NEES {s['nees_mean']:.2f}, goal reached {100 * s['goal_reached_fraction']:.0f} %"
        )
    ctx.log(
        f"{n_runs} runs in {mc_time:.1f} s; planning {1e3 * rh['plan_time_mean_s']:.0f} ms per replan "
        f"(ratio {rh['replan_time_ratio']:.3f} of the {rh['control_period_s']:.1f} s between replans; 95th "
        f"percentile {1e3 * rh['plan_time_p95_s']:.0f} ms, slowest {1e3 * rh['plan_time_max_s']:.0f} ms, ratio "
        f"{out['replan_time_ratio_max']:.3f}; {budget_text}), max "
        f"constraint violation over every plan {out['max_constraint_violation']:.2g} ({rh['infeasible_plans']} of "
        f"{rh['plans']} plans infeasible; {rh['projected_starts']} starts projected out of a constraint circle, "
        f"by up to {rh['start_projection_max_m']:.3f} m; {rh['widened_goals']} goal regions widened, by up to "
        f"{rh['goal_widening_max_m']:.3f} m)"
    )
    for v in out["conclusion"].values():
        ctx.log(v)
    if ctx.plots:
        _plots(ctx, cmp, stats, open_loop, beacons)
    return out


def _ellipse(cov, scale):
    w, V = np.linalg.eigh(cov)
    t = np.linspace(0, 2 * np.pi, 60)
    return (V @ (np.sqrt(np.maximum(w, 0))[:, None] * np.array([np.cos(t), np.sin(t)]))) * scale


def _plots(ctx, cmp, stats, open_loop, beacons):
    from physim import viz

    R = cmp.n_runs
    t = np.arange(N + 1) * DT
    # trajectories: true paths of some runs, run 0's estimate with 3σ ellipses
    fig, axs = viz.figure(1, 3, figsize=(15, 5.2), sharex=True, sharey=True)
    mag, every, shown = 10.0, 5, min(R, 25)
    data = {}
    for ax, (name, res) in zip(axs, cmp.results.items()):
        for r in range(shown):
            ax.plot(res.truth[r, :, 0], res.truth[r, :, 1], color=COLORS[name], lw=0.6, alpha=0.35,
                    label="true paths" if r == 0 else None)  # fmt: skip
        ax.plot(
            res.estimates[0, :, 0], res.estimates[0, :, 1], color="k", lw=1.5, label="run 0: EKF estimate"
        )
        for k in range(every, N + 1, every):
            e = _ellipse(res.covariances[0, k, :2, :2], 3.0 * mag)
            ax.plot(res.estimates[0, k, 0] + e[0], res.estimates[0, k, 1] + e[1], color="k", lw=0.8,
                    label=f"3σ ellipse ×{mag:g}" if k == every else None)  # fmt: skip
        if name == "open_loop":
            ax.plot(open_loop.trajectory[:, 0], open_loop.trajectory[:, 1], "--", color="tab:red", lw=1.2,
                    label="nominal plan")  # fmt: skip
        c = KEEP_OUT.centers[0]
        circ = np.linspace(0, 2 * np.pi, 100)
        ax.fill(c[0] + KEEP_OUT.radii[0] * np.cos(circ), c[1] + KEEP_OUT.radii[0] * np.sin(circ), color="0.6",
                alpha=0.6, label="keep-out")  # fmt: skip
        for j, b in enumerate(BEACONS):
            ax.plot(b[0] + CLEARANCE.distance * np.cos(circ), b[1] + CLEARANCE.distance * np.sin(circ), ":",
                    color="0.3", lw=0.8, label="0.5 m beacon clearance" if j == 0 else None)  # fmt: skip
        ax.plot(BEACONS[:, 0], BEACONS[:, 1], "k^", ms=9, label="beacons")
        ax.plot(*X0[:2], "ko", ms=7, mfc="w", label="start (estimate)")
        ax.plot(*GOAL, "k*", ms=13, label="goal")
        s = stats[name]
        ax.set_title(f"{LABELS[name]}: final RMSE {100 * s['rmse_final']:.2f} cm, goal reached "
                     f"{100 * s['goal_reached_fraction']:.0f} %", fontsize=10)  # fmt: skip
        ax.set_aspect("equal")
        ax.set_xlabel("x [m]")
        ax.grid(alpha=0.3)
        data[f"{name} run0 truth"] = res.truth[0, :, :2]
        data[f"{name} run0 estimate"] = res.estimates[0, :, :2]
        data[f"{name} run0 position std [m]"] = np.sqrt(
            np.trace(res.covariances[0, :, :2, :2], axis1=1, axis2=2)
        )
    axs[0].set_ylabel("y [m]")
    axs[-1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.suptitle(f"{R} Monte-Carlo runs (true paths of {shown} shown); ellipses every {every} steps of run 0")
    data["time [s]"] = t
    viz.save_figure(fig, ctx.path("trajectories.png"), data=data)

    # position RMSE over time with 95 % confidence bands
    fig, ax = viz.figure(figsize=(8, 4.5))
    data = {"time [s]": t}
    bands = {name: position_rmse_ci(res) for name, res in cmp.results.items()}
    # a lower bound of 0 (few runs) cannot be drawn on the log axis: such bands run to the
    # bottom of the axis, which is set by the curves, not by the clipped bounds
    floor = 0.5 * min(float(np.min(b[0][b[0] > 0])) for b in bands.values())
    for name, (rmse, lo, hi) in bands.items():
        ax.semilogy(t, rmse, color=COLORS[name], label=LABELS[name])
        ax.fill_between(t, np.maximum(lo, floor), hi, color=COLORS[name], alpha=0.2)
        data[f"{name} rmse [m]"], data[f"{name} ci95 low [m]"], data[f"{name} ci95 high [m]"] = rmse, lo, hi
    ax.set_ylim(bottom=floor)
    for tr in cmp.results["receding"].replan_steps[1:] * DT:
        ax.axvline(tr, color="0.8", lw=0.6, zorder=0)
    ax.set_xlabel("time [s]")
    ax.set_ylabel("position RMSE [m]")
    ax.set_title(f"position RMSE over {R} runs, 95 % confidence bands (grey lines: replans)\n"
                 "bands that reach the bottom edge have a lower bound of 0", fontsize=10)
    ax.legend()
    ax.grid(alpha=0.3, which="both")
    viz.save_figure(fig, ctx.path("rmse.png"), data=data)

    # NEES: run-averaged, with the 95 % band of a consistent filter
    fig, ax = viz.figure(figsize=(8, 4.5))
    data = {"time [s]": t[1:]}
    for name, res in cmp.results.items():
        ax.semilogy(t[1:], res.mean_nees[1:], color=COLORS[name], label=LABELS[name])
        data[f"{name} mean NEES"] = res.mean_nees[1:]
    lo, hi = stats["receding"]["nees_band_95"]
    ax.axhspan(lo, hi, color="0.85", label="95 % band, consistent filter")
    ax.axhline(3.0, color="k", ls="--", lw=1, label="n = 3")
    ax.set_xlabel("time [s]")
    ax.set_ylabel("NEES averaged over runs [-]")
    ax.set_title(f"filter consistency over {R} runs", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    data["band low"], data["band high"] = [lo], [hi]
    viz.save_figure(fig, ctx.path("nees.png"), data=data)

    # planning time per replan against the time between replans
    rh = cmp.results["receding"]
    fig, ax = viz.figure(figsize=(7, 4))
    times_ms = 1e3 * rh.plan_time_s.reshape(-1)
    ax.hist(times_ms, bins=40, color=COLORS["receding"])
    ax.axvline(
        1e3 * rh.control_period_s,
        color="k",
        ls="--",
        label=f"time between replans ({rh.control_period_s:g} s)",
    )
    ax.axvline(times_ms.mean(), color="tab:red", label=f"mean {times_ms.mean():.0f} ms")
    ax.set_xlabel("planning time per replan [ms]")
    ax.set_ylabel("replans")
    ax.set_title(f"{times_ms.size} replans ({R} runs × {rh.replan_steps.size})", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    viz.integer_ticks(ax, "y")
    viz.save_figure(fig, ctx.path("plan_time.png"), data={"planning time [ms]": times_ms})


def _add_arguments(parser):
    parser.add_argument(
        "--store", default=None, help="directory keeping finished Monte-Carlo chunks (a second run resumes)"
    )
    parser.add_argument(
        "--time-budget", type=float, default=TIME_BUDGET,
        help=f"planning time per replan in s (default {TIME_BUDGET}; 0: none, only the iteration cap)",
    )  # fmt: skip


if __name__ == "__main__":
    scenario_main(run, __doc__, add_arguments=_add_arguments)
