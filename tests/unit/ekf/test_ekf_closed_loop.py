"""Receding-horizon active sensing: identities with the open loop, constraints, chunked Monte-Carlo."""

import pickle

import numpy as np
import pytest
from scipy import stats

from physim.ekf import (
    ActiveSensingController,
    BeaconDistance,
    Beacons,
    ClosedLoopResult,
    FinalTrace,
    KeepOut,
    MotionModel,
    Unicycle,
    compare_strategies,
    paired_difference,
    plan_active_sensing,
    position_rmse_ci,
    run_chunk,
    run_filter,
    summarize,
)
from physim.ekf.montecarlo import _chunks
from physim.ekf.planning import _plan
from physim.errors import InvalidInputError

# every plan a closed loop returns must satisfy its constraints: a violation is a test failure
pytestmark = pytest.mark.filterwarnings("error::physim.ekf.InfeasiblePlanWarning")

DT = 0.2
MODEL = Unicycle(DT)
BEACONS = Beacons([[1.0, 2.0], [3.0, -2.0], [5.0, 1.5]], 0.1, 0.05)
X0 = np.zeros(3)
P0 = np.diag([0.2, 0.2, 0.02])
M = np.diag([0.05**2, 0.02**2])
Q0 = 1e-6 * np.eye(3)
N = 12
GOAL = np.array([4.0, 0.0])
U0 = np.tile([GOAL[0] / (N * DT), 0.0], (N, 1))
BOUNDS = ([0.3, -1.5], [3.0, 1.5])
CONS = [BeaconDistance(1.15), KeepOut([[2.0, 1.2]], 0.3)]


def _controller(**kw):
    opts = dict(horizon=6, execute=3, cost=FinalTrace(), bounds=BOUNDS, goal=GOAL, constraints=CONS,
                reach_speed=1.2, maxiter=40, goal_radius=0.05, margin=0.05)  # fmt: skip
    opts.update(kw)
    return ActiveSensingController(MODEL, BEACONS, M, Q0, **opts)


def test_one_plan_executed_whole_equals_the_open_loop():
    """horizon = mission, execute = mission: the loop plans once and flies it open loop."""
    ctl = _controller(horizon=None, execute=N, margin=0.0, goal_radius=None)
    res = ctl.run(X0, P0, U0, n_runs=3, seed=7)
    plan = plan_active_sensing(MODEL, BEACONS, X0, P0, U0, M, Q0, cost=FinalTrace(), bounds=BOUNDS, goal=GOAL,
                               constraints=CONS, maxiter=40)  # fmt: skip
    ol = run_filter(MODEL, BEACONS, X0, P0, plan.controls, M, Q0, n_runs=3, seed=7)
    assert res.replan_steps.tolist() == [0]
    np.testing.assert_array_equal(res.controls, np.broadcast_to(plan.controls, res.controls.shape))
    for f in ("truth", "estimates", "covariances", "measurements"):
        np.testing.assert_array_equal(getattr(res, f), getattr(ol, f))


def test_receding_horizon_loop():
    ctl = _controller()
    res = ctl.run(X0, P0, U0, n_runs=3, seed=1)
    assert isinstance(res, ClosedLoopResult)
    assert res.replan_steps.tolist() == [0, 3, 6, 9]
    assert res.controls.shape == (3, N, 2) and res.truth.shape == (3, N + 1, 3)
    assert res.plan_time_s.shape == (3, 4) and np.all(res.plan_time_s > 0)
    assert res.control_period_s == pytest.approx(3 * DT)
    assert res.replan_time_ratio == pytest.approx(res.plan_time_s.mean() / (3 * DT))
    # every plan made satisfies its constraints, the executed controls their bounds
    assert res.max_constraint_violation <= 1e-6, res.plan_violation
    assert np.all(res.controls >= np.array(BOUNDS[0]) - 1e-9) and np.all(
        res.controls <= np.array(BOUNDS[1]) + 1e-9
    )
    # the last plan ends at the goal; the measurements of its last 3 steps move the estimate a little
    assert np.all(np.linalg.norm(res.estimates[:, -1, :2] - GOAL, axis=1) < 0.1)
    assert np.all(np.linalg.norm(res.truth[:, -1, :2] - GOAL, axis=1) < 0.2)
    # the same seed gives the same noise as run_filter: same true start
    ol = run_filter(MODEL, BEACONS, X0, P0, U0, M, Q0, n_runs=3, seed=1)
    np.testing.assert_array_equal(res.truth[:, 0], ol.truth[:, 0])
    # the first replan sees the first k measurements of the same noise
    np.testing.assert_allclose(res.truth[:, 1:4], run_filter(MODEL, BEACONS, X0, P0, res.controls[0], M, Q0,
                               n_runs=3, seed=1).truth[:, 1:4], rtol=0, atol=0)  # fmt: skip
    assert "replan_time_ratio" in repr(res)


def test_controller_options_are_validated():
    with pytest.raises(InvalidInputError, match="execute = 7 must not exceed horizon = 6"):
        _controller(execute=7)
    with pytest.raises(InvalidInputError, match="reach_speed"):
        _controller(reach_speed=None)
    with pytest.raises(InvalidInputError, match="horizon must be a positive integer"):
        _controller(horizon=0)

    class NoDt(MotionModel):
        n_state, n_control = 3, 2
        step = jacobians = jacobians_vjp = None

    with pytest.raises(InvalidInputError, match="give dt"):
        ActiveSensingController(NoDt(), BEACONS, M, Q0)
    with pytest.raises(InvalidInputError, match="n_runs"):
        _controller().run(X0, P0, U0, n_runs=0)


def test_interrupt_keeps_the_completed_runs():
    class Interrupting(FinalTrace):
        calls = 0

        def value(self, P):
            Interrupting.calls += 1
            if Interrupting.calls == 400:
                raise KeyboardInterrupt
            return super().value(P)

    ctl = _controller(cost=Interrupting())
    res = ctl.run(X0, P0, U0, n_runs=50, seed=2)
    assert res.interrupted and 1 <= res.truth.shape[0] < 50
    assert res.plan_time_s.shape[0] == res.truth.shape[0]


def _strategies():
    plan = plan_active_sensing(MODEL, BEACONS, X0, P0, U0, M, Q0, bounds=BOUNDS, goal=GOAL, constraints=CONS,
                               maxiter=40)  # fmt: skip
    return {"straight": U0, "open_loop": plan.controls, "receding": _controller(maxiter=10)}


def test_chunks_are_independent_of_order_and_grouping():
    strat = _strategies()
    a = compare_strategies(strat, MODEL, BEACONS, X0, P0, U0, M, Q0, n_runs=3, seed=11, chunk_size=2)
    # the same chunk tasks run in reverse order (as workers might) give the same numbers
    shared = dict(strategies=strat, model=MODEL, beacons=BEACONS, x0=X0, P0=P0, controls0=U0, M=M, Q0=Q0,
                  joseph=True)  # fmt: skip
    tasks = [{"n_runs": n, "seed": ss} for _, n, ss in _chunks(3, 2, 11)]
    assert [t["n_runs"] for t in tasks] == [2, 1]
    parts = [
        run_chunk(pickle.loads(pickle.dumps(t)), pickle.loads(pickle.dumps(shared))) for t in reversed(tasks)
    ]
    parts = parts[::-1]
    for name in strat:
        got = np.concatenate([p[name].estimates for p in parts])
        np.testing.assert_array_equal(a.results[name].estimates, got)
    # common random numbers: every strategy starts from the same true states
    np.testing.assert_array_equal(a.results["straight"].truth[:, 0], a.results["receding"].truth[:, 0])
    # a subset of strategies sees the same runs
    b = compare_strategies(
        {"straight": U0}, MODEL, BEACONS, X0, P0, U0, M, Q0, n_runs=3, seed=11, chunk_size=2
    )
    np.testing.assert_array_equal(b.results["straight"].truth, a.results["straight"].truth)
    r = a.results["receding"]
    assert isinstance(r, ClosedLoopResult) and r.plan_time_s.shape == (3, 4)


def test_serial_equals_two_workers():
    pytest.importorskip("physim.distributed")
    strat = _strategies()
    kw = dict(n_runs=3, seed=5, chunk_size=2)
    a = compare_strategies(strat, MODEL, BEACONS, X0, P0, U0, M, Q0, **kw)
    b = compare_strategies(strat, MODEL, BEACONS, X0, P0, U0, M, Q0, workers=2, **kw)
    for name in strat:
        for f in ("truth", "estimates", "covariances"):
            np.testing.assert_array_equal(getattr(a.results[name], f), getattr(b.results[name], f))


def test_statistics_against_direct_formulas():
    res = run_filter(MODEL, BEACONS, X0, P0, U0, M, Q0, n_runs=40, seed=3)
    e = res.truth[..., :2] - res.estimates[..., :2]
    sq = np.sum(e * e, axis=2)
    s = summarize(res, goal=GOAL, goal_tolerance=0.3, constraints=CONS, beacons=BEACONS)
    assert s["rmse_final"] == pytest.approx(np.sqrt(sq[:, -1].mean()), rel=1e-12)
    assert s["rmse_final"] == pytest.approx(res.final_rmse, rel=1e-12)
    assert s["rmse_mean"] == pytest.approx(np.sqrt(sq[:, 1:].mean()), rel=1e-12)
    half = 1.959963984540054 * sq[:, -1].std(ddof=1) / np.sqrt(40)
    assert s["rmse_final_ci95"] == pytest.approx(
        [np.sqrt(sq[:, -1].mean() - half), np.sqrt(sq[:, -1].mean() + half)]
    )
    d = np.linalg.norm(res.truth[:, -1, :2] - GOAL, axis=1)
    assert s["goal_reached_fraction"] == pytest.approx(np.mean(d <= 0.3))
    lo, hi = stats.chi2.ppf([0.025, 0.975], 120) / 40
    assert s["nees_band_95"] == pytest.approx([lo, hi])
    assert s["nees_in_band_fraction"] == pytest.approx(
        np.mean((res.mean_nees[1:] >= lo) & (res.mean_nees[1:] <= hi))
    )
    rmse, lo_t, hi_t = position_rmse_ci(res)
    np.testing.assert_allclose(rmse, res.position_rmse, rtol=1e-12)
    assert np.all(lo_t <= rmse) and np.all(rmse <= hi_t)
    other = run_filter(MODEL, BEACONS, X0, P0, U0 * 1.05, M, Q0, n_runs=40, seed=3)
    pdiff = paired_difference(res, other)
    so = np.sum((other.truth[:, -1, :2] - other.estimates[:, -1, :2]) ** 2, axis=1)
    assert pdiff["mse_difference"] == pytest.approx(np.mean(sq[:, -1] - so), rel=1e-12)
    assert pdiff["p_value"] == pytest.approx(stats.ttest_rel(sq[:, -1], so).pvalue, rel=1e-10)


def test_start_inside_a_circle_is_projected_onto_its_boundary():
    ctl = _controller()  # BeaconDistance(1.15) and KeepOut r = 0.3, planned with a 0.05 m margin
    x = np.array([1.3365, 1.2731, 0.1852])  # 0.81 m from the beacon at (1, 2)
    xs, moved = ctl.project_start(x)
    d = np.linalg.norm(x[:2] - [1.0, 2.0])
    assert moved == pytest.approx(1.2 - d, rel=1e-8)
    assert np.linalg.norm(xs[:2] - [1.0, 2.0]) == pytest.approx(1.2, rel=1e-8)
    # radially outwards, the heading untouched
    np.testing.assert_allclose((xs[:2] - [1.0, 2.0]) / 1.2, (x[:2] - [1.0, 2.0]) / d, rtol=1e-8)
    assert xs[2] == x[2]
    # a start outside every circle is left alone, and so is the input array
    same, zero = ctl.project_start(X0)
    assert zero == 0.0 and np.array_equal(same, X0)
    assert x.tolist() == [1.3365, 1.2731, 0.1852]
    # no circle constraint: nothing to project
    assert _controller(constraints=None).project_start(x)[1] == 0.0


def test_plan_from_an_estimate_inside_a_constraint_is_feasible():
    """The case the loop met (an EKF update moved the estimate 0.34 m into the beacon clearance).

    From there no plan can satisfy the clearance at the first step; from the projected start the
    returned plan satisfies every constraint as given.
    """
    ctl = _controller(maxiter=10)
    x = np.array([1.33650532, 1.27308128, 0.18519004])
    P = np.diag([0.01, 0.01, 0.002])
    warm = np.array([[2.0, 0.176], [1.559, 0.166]] + [[1.109, 0.0]] * 4)
    alt = np.tile([1.667, 0.0], (6, 1))
    unprojected = ctl.plan(x, P, warm, 9, controls_alt=alt)
    assert ctl.violation(unprojected, 9) > 0.01  # infeasible without the projection
    xs, moved = ctl.project_start(x)
    assert moved > 0.3
    plan = ctl.plan(xs, P, warm, 9, controls_alt=alt)
    assert ctl.violation(plan, 9) <= 1e-6, plan.constraint_violations
    assert np.array_equal(plan.trajectory[0], xs)


def test_closed_loop_records_start_projections():
    ctl = _controller(maxiter=10)
    c, n, ss = _chunks(3, 2, 5)[0]  # the chunk whose second run meets an estimate inside the clearance
    res = ctl.run(X0, P0, U0, n_runs=n, seed=ss)
    assert res.start_projection_m.shape == res.plan_violation.shape == (2, 4)
    assert res.start_projection_m[1, 1] > 0.3 and res.start_projection_m[:, 0].max() == 0.0
    assert res.max_constraint_violation <= 1e-6, res.plan_violation
    s = summarize(res)
    assert s["projected_starts"] == int(np.sum(res.start_projection_m > 0)) >= 1
    assert s["start_projection_max_m"] == res.start_projection_m.max()
    assert s["infeasible_plans"] == 0


def test_best_feasible_iterate_is_returned_when_the_optimizer_ends_infeasible():
    """One SLSQP step from the feasible straight line leaves the goal equality: the start is returned."""
    iterates = []
    kw = dict(cost=FinalTrace(), bounds=BOUNDS, goal=GOAL, goal_mode="constraint", goal_radius=None,
              goal_weight=100.0, smooth_weight=0.0, constraints=CONS, method=None, maxiter=1, tol=None,
              constraint_tol=1e-6, callback=lambda r: iterates.append(np.array(r.x)), progress=False,
              strict=False, warn=False, restore_feasibility=False)  # fmt: skip
    plan = _plan(MODEL, BEACONS, X0, P0, U0, M, Q0, **kw)
    ctl = _controller(horizon=None, execute=N, margin=0.0, goal_radius=None)
    # the optimizer's own last iterate violates the goal constraint ...
    assert len(iterates) == 1
    last = _plan(MODEL, BEACONS, X0, P0, iterates[-1].reshape(N, 2), M, Q0, **{**kw, "maxiter": 0,
                 "callback": None})  # fmt: skip
    assert ctl.violation(last, N) > 1e-6
    # ... so the plan returned is the best feasible point met: the (feasible) start
    assert plan.feasible and plan.max_constraint_violation <= 1e-6
    np.testing.assert_array_equal(plan.controls, U0)
    assert "best feasible iterate (the start)" in plan.result.message


def test_unreachable_goal_region_is_widened_to_the_closest_reachable_distance():
    """3 steps of at most 0.6 m, heading away from a goal 3.2 m off: the 5 cm region cannot be reached."""
    ctl = _controller(maxiter=10)
    x = np.array([1.0, -1.0, np.pi])
    P = np.diag([0.01, 0.01, 0.002])
    warm = np.tile([1.0, 0.0], (3, 1))
    plain = ctl.plan(x, P, warm, 3)
    assert not plain.feasible and ctl.violation(plain, 3) > 1.0
    plan, radius = ctl.plan_with_relaxation(x, P, warm, 3)
    # no closer than the speed bound allows, no farther than simple feasible plans (slowest, full turn) get
    simple = [MODEL.step(MODEL.step(MODEL.step(x, [0.3, w]), [0.3, w]), [0.3, w]) for w in (-1.5, 0.0, 1.5)]
    best_simple = min(np.linalg.norm(p[:2] - GOAL) for p in simple)
    assert np.linalg.norm(x[:2] - GOAL) - 3 * 0.6 <= radius <= best_simple + 1e-6
    assert ctl.violation(plan, 3, goal_radius=radius) <= 1e-6
    assert np.linalg.norm(plan.trajectory[-1, :2] - GOAL) <= radius + 1e-9
    # a reachable goal is not widened
    ok, none = ctl.plan_with_relaxation(X0, P0, U0[:6], N)
    assert none is None and ctl.violation(ok, N) <= 1e-6


def test_closed_loop_records_goal_widening():
    ctl = _controller(maxiter=10)
    res = ctl.run(X0, P0, U0, n_runs=2, seed=3)
    assert res.goal_widening_m.shape == res.plan_violation.shape and np.all(res.goal_widening_m >= 0)
    s = summarize(res)
    assert s["widened_goals"] == int(np.sum(res.goal_widening_m > 0))
    assert s["goal_widening_max_m"] == res.goal_widening_m.max()


def test_estimate_on_the_tightened_clearance_heading_in_gets_a_feasible_plan():
    """A replan the ekf_receding_horizon Monte-Carlo met (chunk 6, run 2, t = 0.5 s).

    The estimate, projected onto the 0.55 m (0.5 m + margin) clearance circle of the beacon at
    (1, 3), heads 30° off the beacon; from the shifted previous plan (full speed, turning towards
    the beacon) and from the straight line SQP ends inside the circle. From the slowest controls the
    bounds allow it finds a plan outside it.
    """
    beacons = Beacons([[1.0, 3.0], [4.0, 3.5], [7.0, 3.0]], 0.1, 0.02)
    ctl = ActiveSensingController(
        Unicycle(0.1), beacons, M, Q0, horizon=20, execute=5, cost=FinalTrace(), bounds=([0.1, -1.5], [3.0, 1.5]),
        goal=[5.0, 0.0], goal_radius=0.05, constraints=[KeepOut([[4.6, 1.8]], 0.4), BeaconDistance(0.5)],
        reach_speed=2.0, maxiter=30, margin=0.05,
    )  # fmt: skip
    x = np.array([1.0311469365038453, 2.4508826455561383, 1.0973593053822184])
    P = np.array([[7.496701432600676e-05, 3.7876484800335e-05, 2.1645199833163983e-05],
                  [3.7876484800335e-05, 0.0006040521881226494, -0.00012968992501120343],
                  [2.1645199833163983e-05, -0.00012968992501120343, 8.030990795314735e-05]])  # fmt: skip
    warm = np.array([[2.4980691075917156, 1.499983622152841], [2.6326156596124597, 1.3400831610423622],
                     [2.725688501885736, 0.9087385469601024], [2.7740732737828115, 1.4297072848290235],
                     [2.773500627047845, 1.172337134836865], [2.718433055857531, 0.9536238584178155],
                     [2.6046236761886163, 0.7823745258879028], [2.4277477049565257, 0.6710281990165696],
                     [2.190227825955456, 0.6358335633495092], [1.92005786438164, 0.6938019317604595],
                     [1.710185781146051, 0.8546857796261038], [1.7689409043970117, 1.1113333664155032],
                     [2.2815008915092516, 1.4311408564046946], [2.5284175606590304, 1.4435128974686722]]
                    + [[0.1, 0.0]] * 6)  # fmt: skip
    alt = np.tile([1.0, 0.0], (20, 1))
    plan = ctl.plan(x, P, warm, 45, controls_alt=alt)
    assert ctl.violation(plan, 45) <= 1e-6, plan.constraint_violations
    assert np.array_equal(plan.trajectory[0], x)


def test_time_budget_stops_the_optimizer_and_every_plan_stays_feasible():
    """A budget already spent when the first iteration ends (1 ns): each replan stops after it.

    The plans returned are still feasible (the best feasible point met, or the fallbacks run
    without the deadline), and the loop still flies to the goal.
    """
    free = _controller().run(X0, P0, U0, n_runs=3, seed=1)
    ctl = _controller(time_budget=1e-9)
    assert "time_budget=1e-09" in repr(ctl)
    res = ctl.run(X0, P0, U0, n_runs=3, seed=1)
    assert res.max_constraint_violation <= 1e-6, res.plan_violation
    its = res.plan_iterations
    assert np.median(its) <= 1 < np.median(free.plan_iterations), (its, free.plan_iterations)
    assert np.all(np.linalg.norm(res.truth[:, -1, :2] - GOAL, axis=1) < 0.3)
    with pytest.raises(InvalidInputError, match="time_budget"):
        _controller(time_budget=0.0)
    with pytest.raises(InvalidInputError, match="time_budget"):
        _controller(time_budget=-1.0)


def test_a_spent_deadline_still_gives_feasible_plans_from_hard_starts():
    """Past the deadline: inside a constraint (projected start) and with an unreachable goal region."""
    ctl = _controller(maxiter=10)
    x = np.array([1.33650532, 1.27308128, 0.18519004])
    P = np.diag([0.01, 0.01, 0.002])
    warm = np.array([[2.0, 0.176], [1.559, 0.166]] + [[1.109, 0.0]] * 4)
    alt = np.tile([1.667, 0.0], (6, 1))
    xs, _ = ctl.project_start(x)
    plan, radius = ctl.plan_with_relaxation(xs, P, warm, 9, controls_alt=alt, deadline=0.0)
    assert ctl.violation(plan, 9, goal_radius=radius) <= 1e-6, plan.constraint_violations
    far = np.array([1.0, -1.0, np.pi])
    plan, radius = ctl.plan_with_relaxation(far, P, np.tile([1.0, 0.0], (3, 1)), 3, deadline=0.0)
    assert radius is not None and ctl.violation(plan, 3, goal_radius=radius) <= 1e-6
    # plan() alone cannot reach that goal region: the widening above is what restores feasibility
    quick = ctl.plan(far, P, np.tile([1.0, 0.0], (3, 1)), 3, deadline=0.0)
    assert ctl.violation(quick, 3) > 1.0


def test_an_unreachable_goal_is_widened_to_the_closest_approach_of_every_start(monkeypatch):
    """A warm plan that misses only an unreachable goal region: the closest approach is computed from
    the warm start and the alternative first, then the fallback starts of plan() still run (a local
    method can be trapped), and the region is widened to the closest approach of them all.

    Heading away from a goal 3.2 m off with 3 steps left: no start reaches the 5 cm region.
    """
    import physim.ekf.closed_loop as cl

    calls = []

    def counted(*a, **kw):
        calls.append(kw.get("goal_mode"))
        return _plan(*a, **kw)

    monkeypatch.setattr(cl, "_plan", counted)
    ctl = _controller(maxiter=10)
    far = np.array([1.0, -1.0, np.pi])
    P = np.diag([0.01, 0.01, 0.002])
    warm, alt = np.tile([1.0, 0.0], (3, 1)), np.tile([2.0, 0.0], (3, 1))
    plan, radius = ctl.plan_with_relaxation(far, P, warm, 3, controls_alt=alt)
    assert radius is not None and ctl.violation(plan, 3, goal_radius=radius) <= 1e-6
    # warm plan, closest approach from warm and alternative, the fallback starts, the widened plan
    assert calls.count("penalty") >= 2 and len(calls) >= 7, calls
    # the widened radius is no larger than the closest approach from the warm start alone
    opts = ctl._options(3, 3)
    near = _plan(MODEL, BEACONS, far, P, ctl.plan(far, P, warm, 3).controls, M, Q0, goal=GOAL, callback=None,
                 progress=False, strict=False, warn=False, **{**opts, "goal_mode": "penalty", "goal_radius": None,
                                                              "goal_weight": 1e4})  # fmt: skip
    assert radius <= near.goal_error * (1 + 1e-6) + 1e-6, (radius, near.goal_error)


@pytest.mark.parametrize("seed", [0, 1])
def test_last_replans_from_random_estimates_are_feasible_and_widen_only_when_the_fallbacks_fail(seed):
    """Random estimates around the goal, random headings, 3 steps left (0.6 s, at most 1.8 m).

    Every plan satisfies its constraints (with its widened region, if any), and the goal region is
    widened only where plan() with all its fallback starts finds no plan reaching it either.
    """
    rng = np.random.default_rng(seed)
    ctl = _controller(maxiter=10)
    P = np.diag([0.01, 0.01, 0.002])
    # circles of CONS with the margin; starts at least 0.2 m outside them (the first step, 0.06 m at
    # the lowest speed, cannot turn: from a circle's edge heading in, no plan is feasible at all)
    centres = np.array([[1.0, 2.0], [3.0, -2.0], [5.0, 1.5], [2.0, 1.2]])
    radii = np.array([1.2, 1.2, 1.2, 0.35])
    widened = 0
    for _ in range(8):
        x = np.array([*(GOAL + rng.uniform(-1.5, 1.5, 2)), rng.uniform(-np.pi, np.pi)])
        while np.any(np.linalg.norm(x[:2] - centres, axis=1) < radii + 0.2):
            x[:2] = GOAL + rng.uniform(-1.5, 1.5, 2)
        warm = np.tile([rng.uniform(0.3, 3.0), rng.uniform(-1.5, 1.5)], (3, 1))
        alt = np.tile([1.667, 0.0], (3, 1))
        plan, radius = ctl.plan_with_relaxation(x, P, warm, 3, controls_alt=alt)
        assert ctl.violation(plan, 3, goal_radius=radius) <= 1e-6, (x, plan.constraint_violations)
        if radius is not None:
            widened += 1
            full = ctl.plan(x, P, warm, 3, controls_alt=alt)
            assert ctl.violation(full, 3) > 1e-6, x
    assert widened > 0  # the draws include unreachable goals
