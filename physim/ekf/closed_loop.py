"""Receding-horizon (closed-loop) active sensing.

A robot does not fly an open-loop plan. :class:`ActiveSensingController`
runs the loop a robotics user runs:

1. at replan time t, plan over the next H_t = min(H, N - t) steps from the
   EKF's current estimate (x̂_t, P_t) (the planner of
   :func:`physim.ekf.plan_active_sensing`, with its cost, bounds and state
   constraints), warm-started from the previous plan shifted by k steps
   (padded by repeating its last control); if that plan ends infeasible, the
   planner starts again from the mission's initial plan over the same steps;
2. execute the first k controls: the true robot moves with noisy odometry,
   the sensor measures it, the EKF predicts with the commanded controls and
   updates with the measurements it actually got;
3. t ← t + k, replan.

Infeasible starts: the EKF estimate can jump into a keep-out or beacon
clearance circle after a measurement update, and then no plan from it can
satisfy that constraint. The planner then starts from the estimate's
position projected radially onto the boundary of the circles (tightened by
``margin``); the distance moved is recorded for every replan
(``ClosedLoopResult.start_projection_m``). A plan that still ends infeasible
falls back to the best feasible point the optimizer met. When the goal
region cannot be reached from the estimate in the steps left (the estimate
jumped), the plan gets as close as the other constraints allow and the goal
region of that replan is widened to that distance (recorded,
``ClosedLoopResult.goal_widening_m``). A plan that misses only the goal is
first brought as close to the goal as the other constraints allow (from the
warm start and from the mission's initial plan); when that reaches the goal
region the covariance objective is optimised from it and no other fallback
start runs, otherwise they all run and the region is widened to the closest
approach of all of them. So every returned plan satisfies its
constraints unless no point satisfying the bounds, keep-out and clearance
constraints was found at all, which is reported (``plan_violation`` and an
:class:`InfeasiblePlanWarning`).

Goal handling: when the horizon reaches the end of the mission (t + H_t = N)
the plan has the goal as given (point, region or penalty). Before that, the
plan must end where the goal is still reachable: ‖p_{t+H_t} - goal‖ ≤
reach_speed · dt · (N - t - H_t), a smooth region constraint (``reach_speed``
in m/s, below the speed bound so that the robot keeps some freedom).
``horizon=None`` plans to the end of the mission every time (shrinking horizon).

:meth:`ActiveSensingController.run` simulates whole missions (Monte-Carlo
runs) with the same noise draws as :func:`physim.ekf.run_filter` for the same
seed, so open-loop and closed-loop strategies can be compared on common
random numbers. The planning time of every replan is measured; its ratio to
the time between replans (k · dt) must stay well below 1 for the loop to run
in real time.

Units: m, s, rad.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from .._validate import as_float_array, as_rng, as_scalar
from ..errors import InvalidInputError
from .constraints import _Circles, as_constraints
from .filter import FilterResult, _draw_noise, _segment, _sqrt_psd, _validate
from .planning import InfeasiblePlanWarning, _bounds, _plan, _violations

if TYPE_CHECKING:
    from .constraints import StateConstraint
    from .costs import CovarianceCost
    from .models import MotionModel
    from .planning import Plan
    from .sensors import MeasurementModel

__all__ = ["ActiveSensingController", "ClosedLoopResult"]


@dataclass(frozen=True, eq=False)
class ClosedLoopResult(FilterResult):
    """Monte-Carlo runs of the receding-horizon loop (the fields of :class:`FilterResult`, plus the plans).

    Attributes
    ----------
    controls : ndarray (R, N, n_u)
        Controls actually commanded.
    replan_steps : ndarray (n_p,) of int
        Step t of each replan (the same in every run).
    plan_time_s : ndarray (R, n_p)
        Wall-clock planning time of every replan, s.
    plan_iterations : ndarray (R, n_p) of int
        Optimizer iterations of every replan.
    plan_violation : ndarray (R, n_p)
        Largest constraint violation of every returned plan (m or control units).
    plan_success : ndarray (R, n_p) of bool
        Whether the optimizer reported success.
    start_projection_m : ndarray (R, n_p)
        Distance (m) the estimate's position was moved to plan from outside
        every keep-out and clearance circle (0 when the estimate was outside).
    goal_widening_m : ndarray (R, n_p)
        How much (m) the goal region of each replan was widened because the
        goal could not be reached from the estimate in the steps left (0 when
        it was not; see :meth:`ActiveSensingController.plan_with_relaxation`).
        ``plan_violation`` is measured against the widened region.
    control_period_s : float
        Time between replans, k · dt, in s.
    interrupted : bool
        The runs were stopped by Ctrl-C; the result holds the completed runs.
    """

    controls: np.ndarray = None
    replan_steps: np.ndarray = None
    plan_time_s: np.ndarray = None
    plan_iterations: np.ndarray = None
    plan_violation: np.ndarray = None
    plan_success: np.ndarray = None
    start_projection_m: np.ndarray = None
    goal_widening_m: np.ndarray = None
    control_period_s: float = np.nan
    interrupted: bool = False

    @property
    def replan_time_ratio(self) -> float:
        """Mean planning time per replan divided by the time between replans."""
        return float(np.mean(self.plan_time_s) / self.control_period_s)

    @property
    def max_constraint_violation(self) -> float:
        """Largest constraint violation over every plan made."""
        return float(np.max(self.plan_violation, initial=0.0))

    def __repr__(self) -> str:
        R, N = self.controls.shape[:2]
        return (
            f"ClosedLoopResult(runs={R}, steps={N}, replans={self.replan_steps.size}, "
            f"final_rmse={self.final_rmse:.4g} m, replan_time_ratio={self.replan_time_ratio:.3g}, "
            f"max_constraint_violation={self.max_constraint_violation:.2g})"
        )


def _positive_int(name, v, allow_none=False):
    if v is None and allow_none:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise InvalidInputError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


class ActiveSensingController:
    """Receding-horizon active sensing with the real EKF in the loop.

    Parameters
    ----------
    model, beacons, M, Q0
        As in :func:`physim.ekf.covariance_rollout`.
    horizon : int or None
        Planning horizon H in steps; ``None`` plans to the end of the mission.
    execute : int
        Controls k executed before replanning (1 ≤ k ≤ H).
    cost, bounds, goal, goal_mode, goal_radius, goal_weight, smooth_weight, constraints, method, tol
        As in :func:`physim.ekf.plan_active_sensing` (the cost is evaluated on
        each horizon's covariances).
    reach_speed : float, optional
        Speed in m/s that defines the goal-reachability region of horizons
        that end before the mission does (needed when ``horizon`` is set and
        a goal is given).
    dt : float, optional
        Time step in s; defaults to ``model.dt``.
    maxiter : int
        Optimizer iterations per replan.
    margin : float
        Back-off (m) added to keep-out radii and beacon distances when
        planning, so that the true robot, which deviates from the plan by
        its estimation error and odometry noise, stays out of the regions
        themselves. Plan violations are reported against the constraints as
        given.
    joseph : bool
        Joseph-form EKF update.
    constraint_tol : float
        Violation above which a plan counts as infeasible.
    time_budget : float, optional
        Planning time (s) per replan. The optimizer stops at the first
        iteration that ends after it and the replan returns the best feasible
        plan met so far (the shifted previous plan counts when it is still
        feasible). Feasibility comes before time: when no feasible plan has
        been met by then, the fallbacks of :meth:`plan` still run, each with
        this budget of its own, and so does the goal widening, so such a
        replan can take a few budgets (``ClosedLoopResult.plan_time_s``
        records every replan's time). With a budget, which iterate a replan
        stops at depends on the machine's speed, so runs are not bit-for-bit
        repeatable. ``None`` (default): only ``maxiter`` bounds a replan.
    """

    def __init__(
        self,
        model: MotionModel,
        beacons: MeasurementModel,
        M: ArrayLike,
        Q0: ArrayLike,
        *,
        horizon: int | None = None,
        execute: int = 1,
        cost: CovarianceCost | None = None,
        bounds: tuple[ArrayLike, ArrayLike] | None = None,
        goal: ArrayLike | None = None,
        goal_mode: str = "constraint",
        goal_radius: float | None = None,
        goal_weight: float = 100.0,
        smooth_weight: float = 0.0,
        constraints: Sequence[StateConstraint] | None = None,
        reach_speed: float | None = None,
        dt: float | None = None,
        method: str | None = None,
        maxiter: int = 50,
        tol: float | None = None,
        margin: float = 0.0,
        joseph: bool = True,
        constraint_tol: float = 1e-6,
        time_budget: float | None = None,
    ) -> None:
        n, nu = model.n_state, model.n_control
        # validates model and sensor types and the noise matrices (x0/P0/U are placeholders)
        _validate(model, beacons, np.zeros(n), np.eye(n), np.zeros((1, nu)), M, Q0)
        self.model, self.beacons = model, beacons
        self.M = as_float_array("M", M, (nu, nu), copy=True)
        self.Q0 = as_float_array("Q0", Q0, (n, n), copy=True)
        self.horizon = _positive_int("horizon", horizon, allow_none=True)
        self.execute = _positive_int("execute", execute)
        if self.horizon is not None and self.execute > self.horizon:
            raise InvalidInputError(f"execute = {self.execute} must not exceed horizon = {self.horizon}")
        if dt is None:
            dt = getattr(model, "dt", None)
            if dt is None:
                raise InvalidInputError(f"give dt (s): {type(model).__name__} has no dt attribute")
        self.dt = as_scalar("dt", dt, positive=True)
        self.reach_speed = (
            None if reach_speed is None else as_scalar("reach_speed", reach_speed, positive=True)
        )
        self.goal = None if goal is None else as_float_array("goal", goal, (2,), copy=True)
        if self.goal is not None and self.horizon is not None and self.reach_speed is None:
            raise InvalidInputError(
                "a horizon shorter than the mission with a goal needs reach_speed (m/s): the speed that "
                "defines where the goal is still reachable at the end of each horizon"
            )
        self.margin = as_scalar("margin", margin, nonnegative=True)
        self.constraints = as_constraints(constraints)
        self.bounds = _bounds(bounds, nu)
        self.plan_options = dict(
            cost=cost, bounds=bounds, goal_mode=goal_mode, goal_radius=goal_radius, goal_weight=goal_weight,
            smooth_weight=smooth_weight, constraints=[c.inflated(self.margin) for c in self.constraints],
            method=method, maxiter=maxiter, tol=tol, constraint_tol=constraint_tol,
        )  # fmt: skip
        self.joseph = bool(joseph)
        self.time_budget = (
            None if time_budget is None else as_scalar("time_budget", time_budget, positive=True)
        )

    @property
    def control_period_s(self) -> float:
        """Time between replans, k · dt (s)."""
        return self.execute * self.dt

    def _options(self, Ht: int, steps_left: int) -> dict:
        opts = dict(self.plan_options)
        if self.goal is not None and Ht < steps_left:
            opts.update(goal_mode="constraint", goal_radius=self.reach_speed * self.dt * (steps_left - Ht))
        elif self.goal is None:
            opts.update(goal_radius=None)
        return opts

    def violation(self, plan: Plan, steps_left: int, goal_radius: float | None = None) -> float:
        """Largest violation of a plan made at ``steps_left`` steps before the end, against the constraints as given.

        ``goal_radius`` (m) replaces the goal radius of that replan (a goal
        region widened by :meth:`plan_with_relaxation`; ``numpy.inf`` leaves
        the goal out).
        """
        opts = self._options(plan.controls.shape[0], steps_left)
        radius = opts["goal_radius"] if goal_radius is None else goal_radius
        eq = self.goal is not None and opts["goal_mode"] == "constraint" and radius is None
        v = _violations(plan.controls, plan.trajectory, self.beacons, self.bounds, self.goal, radius, eq,
                        self.constraints)  # fmt: skip
        return max(v.values(), default=0.0)

    def project_start(self, x: ArrayLike) -> tuple[np.ndarray, float]:
        """The state ``x`` with its position moved radially out of every (margin-tightened) circle constraint.

        Returns the projected state and the distance moved (m). Other state
        constraints are left as they are; circles that enclose a region
        together may leave the position inside one (then the plan reports it).
        """
        x = np.array(x, dtype=float)
        circles = [c for c in self.plan_options["constraints"] if isinstance(c, _Circles)]
        if not circles:
            return x, 0.0
        C = np.concatenate([c.circles(self.beacons)[0] for c in circles])
        r = np.concatenate([c.circles(self.beacons)[1] for c in circles])
        p0 = x[:2].copy()
        p = p0.copy()
        for _ in range(4 * C.shape[0]):
            d = p - C
            dist = np.linalg.norm(d, axis=1)
            j = int(np.argmin(dist - r))
            if dist[j] >= r[j]:
                break
            u = d[j] / dist[j] if dist[j] > 0 else np.array([1.0, 0.0])
            # onto the circle, a hair outside so that rounding keeps it there
            p = C[j] + u * r[j] * (1.0 + 1e-9)
        x[:2] = p
        return x, float(np.linalg.norm(p - p0))

    def plan(
        self, x: ArrayLike, P: ArrayLike, controls_warm: ArrayLike, steps_left: int,
        controls_alt: ArrayLike | None = None, deadline: float | None = None,
    ) -> Plan:  # fmt: skip
        """One plan of ``len(controls_warm)`` steps from the estimate (x (n,), P (n, n)).

        ``steps_left`` is the number of steps to the end of the mission (≥ the
        horizon). When the plan from ``controls_warm`` ends infeasible, the
        planner starts again from ``controls_alt`` (e.g. the rest of the
        mission's initial plan), then falls back to ``controls_warm`` itself;
        the feasible candidate of lowest cost wins; with none, the planner
        starts from the slowest controls the bounds allow (nearest zero),
        with the margin's back-off and then without it, else the least
        violation wins.
        ``deadline`` (a ``time.perf_counter()`` value, see ``time_budget``)
        stops the optimizer; past it, the alternatives are first only
        evaluated, and when none of them is feasible the fallbacks run, each
        with ``time_budget`` of its own (unbounded when it is ``None``).
        Returns a :class:`physim.ekf.Plan` (no warning: the violation is in
        ``Plan.max_constraint_violation``, against the constraints tightened
        by ``margin``; :meth:`violation` gives it against the constraints as
        given).
        """
        return self._plan_chain(x, P, controls_warm, steps_left, controls_alt, deadline, goal_exit=False)

    def _plan_chain(self, x, P, controls_warm, steps_left, controls_alt, deadline, goal_exit):
        """:meth:`plan`; ``goal_exit``: return the first plan at once when it misses only the goal (region)."""
        Ht = np.shape(controls_warm)[0]
        opts = self._options(Ht, steps_left)
        goal = self.goal

        def solve(U, **over):
            kw = {"deadline": deadline, **opts, **over}
            return _plan(self.model, self.beacons, x, P, U, self.M, self.Q0, goal=goal, callback=None,
                         progress=False, strict=False, warn=False, **kw)  # fmt: skip

        def late():
            return deadline is not None and time.perf_counter() > deadline

        def ok(c):  # the margin is a planning back-off: a plan is accepted on the constraints as given
            return self.violation(c, steps_left) <= self.plan_options["constraint_tol"]

        plan = solve(controls_warm)  # Ctrl-C inside the optimizer raises KeyboardInterrupt here
        if ok(plan):
            return plan
        if (
            goal_exit
            and goal is not None
            and self.violation(plan, steps_left, goal_radius=np.inf) <= self.plan_options["constraint_tol"]
        ):
            return plan  # only the goal is missed: the caller checks whether it can be reached at all
        # still infeasible after the planner's own feasibility restoration (a local method can be
        # trapped, e.g. heading away from the goal): start again from the alternative, and keep the
        # shifted previous plan itself as the last resort
        candidates = [plan]
        warm_as_is = None  # the shifted previous plan itself, evaluated once
        if late():
            # out of time: evaluate the alternatives as they are, and optimise only if none is feasible
            warm_as_is = solve(controls_warm, maxiter=0, restore_feasibility=False)
            quick = [warm_as_is]
            if controls_alt is not None:
                quick.append(solve(controls_alt, maxiter=0, restore_feasibility=False))
            feasible = [c for c in quick if ok(c)]
            if feasible:
                return min(feasible, key=lambda c: c.cost)
            candidates += quick
        # each fallback optimisation gets a budget of its own (it still returns the best feasible
        # point it met, and restores feasibility when it met none)
        window = self.time_budget if deadline is not None else None

        def fallback(U, **over):
            return solve(U, deadline=None if window is None else time.perf_counter() + window, **over)

        if controls_alt is not None:
            candidates.append(fallback(controls_alt))
        if not ok(candidates[-1]) and warm_as_is is None:
            candidates.append(solve(controls_warm, maxiter=0, restore_feasibility=False))
        feasible = [c for c in candidates if ok(c)]
        if feasible:
            return min(feasible, key=lambda c: c.cost)
        # the slowest plan the bounds allow (controls nearest zero: for a unicycle the lowest speed,
        # no turn) as a start, with the margin's back-off and then on the constraints as given (the
        # back-off itself can leave no feasible plan: an estimate on a tightened circle, heading in,
        # cannot turn away at once)
        nu = self.model.n_control
        lo, hi = self.bounds if self.bounds is not None else (np.full(nu, -np.inf), np.full(nu, np.inf))
        slow = np.ascontiguousarray(np.tile(np.clip(0.0, lo, hi), (Ht, 1)))
        for over in ({}, {"constraints": list(self.constraints)}) if self.margin > 0 else ({},):
            c = fallback(slow, **over)
            if ok(c):
                return c
            candidates.append(c)
        return min(candidates, key=lambda c: self.violation(c, steps_left))

    def plan_with_relaxation(
        self, x: ArrayLike, P: ArrayLike, controls_warm: ArrayLike, steps_left: int,
        controls_alt: ArrayLike | None = None, deadline: float | None = None,
    ) -> tuple[Plan, float | None]:  # fmt: skip
        """:meth:`plan`, widening the goal region when no plan reaches it.

        After a measurement update the estimate can be where the goal (or the
        region from which it stays reachable) cannot be reached in the steps
        left, with the speed and turn-rate bounds and the state constraints.
        Then the planner gets as close to the goal as those constraints allow
        (the goal as a penalty), and plans again from there with the goal
        region widened to that distance: that start satisfies every
        constraint, so the plan returned does too.

        ``deadline`` applies to :meth:`plan`; when the plan made with it and
        the widening still violate a constraint, everything runs again
        without the deadline (feasibility before time).

        When the plan from ``controls_warm`` misses only the goal, the closest
        approach to it (from ``controls_warm``, then from ``controls_alt``) is
        computed before the fallback starts of :meth:`plan` run: if it
        reaches the goal region, the covariance objective is optimised from
        it (a feasible start); if not, the fallback starts of :meth:`plan`
        run as well, and the region is widened to the closest approach of
        all of them.

        Returns ``(plan, goal_radius)``: the goal radius (m) the plan was made
        with when it was widened, else ``None``.
        """
        out = self._plan_relaxed(x, P, controls_warm, steps_left, controls_alt, deadline)
        if (
            deadline is not None
            and self.violation(out[0], steps_left, goal_radius=out[1]) > self.plan_options["constraint_tol"]
        ):
            out = self._plan_relaxed(x, P, controls_warm, steps_left, controls_alt, None)
        return out

    def _plan_relaxed(
        self, x: ArrayLike, P: ArrayLike, controls_warm: ArrayLike, steps_left: int,
        controls_alt: ArrayLike | None, deadline: float | None,
    ) -> tuple[Plan, float | None]:  # fmt: skip
        tol = self.plan_options["constraint_tol"]
        # a plan that misses only the goal comes back from the warm start at once: whether the goal can
        # be reached is checked first (cheap: a few iterations), before the fallback starts
        plan = self._plan_chain(x, P, controls_warm, steps_left, controls_alt, deadline, goal_exit=True)
        if self.goal is None or self.violation(plan, steps_left) <= tol:
            return plan, None
        Ht = np.shape(controls_warm)[0]
        opts = self._options(Ht, steps_left)

        def solve(U, **over):
            kw = {**opts, **over}
            return _plan(self.model, self.beacons, x, P, U, self.M, self.Q0, goal=self.goal, callback=None,
                         progress=False, strict=False, warn=False, **kw)  # fmt: skip

        def nearest(U):  # as close to the goal as the other constraints allow
            return solve(U, goal_mode="penalty", goal_radius=None, goal_weight=1e4)

        def others_met(p):  # the bounds and state constraints as given, whatever the goal
            return self.violation(p, steps_left, goal_radius=np.inf) <= tol

        near = None  # closest approach meeting every constraint but the goal
        if others_met(plan):
            near = nearest(plan.controls)
            if self.violation(near, steps_left) > tol and controls_alt is not None:
                # the warm start may be trapped (e.g. heading away from the goal): the alternative too
                alt = nearest(controls_alt)
                if others_met(alt) and (alt.goal_error < near.goal_error or not others_met(near)):
                    near = alt
            if self.violation(near, steps_left) <= tol:
                # the goal is within reach: the covariance objective from that feasible start (the plan
                # returned is the best feasible point met, at worst that start)
                polished = solve(near.controls, deadline=deadline)
                return (polished if self.violation(polished, steps_left) <= tol else near), None
            # the closest approach found misses the goal: the fallback starts of plan() may still find a
            # way (a local method can be trapped); the region is widened only to the closest approach of
            # all of them
            plan = self._plan_chain(x, P, controls_warm, steps_left, controls_alt, deadline, goal_exit=False)
            if self.violation(plan, steps_left) <= tol:
                return plan, None
            if not others_met(near):
                near = None
        if near is None or others_met(plan):
            cand = nearest(plan.controls)
            if near is None:
                if not others_met(cand):
                    return plan, None  # they cannot be met from here either: the plan is reported infeasible
                if self.violation(cand, steps_left) <= tol:
                    return cand, None  # the goal was within reach after all
                near = cand
            elif others_met(cand) and cand.goal_error < near.goal_error:
                if self.violation(cand, steps_left) <= tol:
                    return cand, None
                near = cand
        return self._widen(near, steps_left, solve)

    def _widen(self, near, steps_left, solve):
        """Plan again from ``near`` (every constraint but the goal met) with the goal region widened to reach it."""
        tol = self.plan_options["constraint_tol"]
        radius = near.goal_error * (1.0 + 1e-9) + 1e-9
        widened = solve(near.controls, goal_mode="constraint", goal_radius=radius)
        if self.violation(widened, steps_left, goal_radius=radius) <= tol:
            return widened, radius
        return near, radius  # within the widened region by construction

    def run(
        self, x0: ArrayLike, P0: ArrayLike, controls0: ArrayLike, *, n_runs: int = 1, seed: int | None = None
    ) -> ClosedLoopResult:
        """Simulate ``n_runs`` missions of N = len(controls0) steps in closed loop.

        Parameters
        ----------
        x0, P0 : array_like
            Initial estimate and covariance; each run's true start is drawn from N(x0, P0).
        controls0 : array_like, shape (N, n_u)
            The mission's initial plan (e.g. the straight line to the goal): its
            length is the mission's, and its first H controls warm-start the first plan.
        n_runs : int
            Monte-Carlo runs R.
        seed : int, numpy.random.SeedSequence or Generator, optional
            Noise of the simulation; the same seed gives the same noise as
            :func:`physim.ekf.run_filter`.

        Returns
        -------
        ClosedLoopResult
            Ctrl-C returns the runs completed so far (``interrupted=True``).

        Before the first run one untimed plan is made (its result unused), so
        that the first replan's time does not include loading the compiled
        kernels, which the first call in a process does.
        """
        m_, s_ = self.model, self.beacons
        x0, P0, U0, M, Q0 = _validate(m_, s_, x0, P0, controls0, self.M, self.Q0)
        n_runs = _positive_int("n_runs", n_runs)
        N, n, nu, m = U0.shape[0], m_.n_state, m_.n_control, s_.n_meas
        e0, eu, eq, ez = _draw_noise(as_rng("seed", seed), n_runs, N, n, nu, m)
        L0 = np.ascontiguousarray(np.linalg.cholesky(P0))
        Lm, Lq = _sqrt_psd(M), _sqrt_psd(Q0)
        steps = []
        t = 0
        while t < N:
            steps.append(t)
            Ht = N - t if self.horizon is None else min(self.horizon, N - t)
            t += min(self.execute, Ht)
        n_p = len(steps)
        Xt = np.empty((n_runs, N + 1, n))
        Xh = np.empty_like(Xt)
        Ph = np.empty((n_runs, N + 1, n, n))
        Z = np.empty((n_runs, N, m))
        Ua = np.empty((n_runs, N, nu))
        times = np.empty((n_runs, n_p))
        nits = np.zeros((n_runs, n_p), dtype=np.int64)
        viol = np.empty((n_runs, n_p))
        proj = np.zeros((n_runs, n_p))
        widen = np.zeros((n_runs, n_p))
        ok = np.zeros((n_runs, n_p), dtype=bool)
        done = 0
        interrupted = False
        # one untimed plan first: the first call in a process loads the compiled kernels (a few tenths
        # of a second), which is not planning time; its result is not used
        H0 = N if self.horizon is None else min(self.horizon, N)
        self.plan(x0, P0, np.ascontiguousarray(U0[:H0]), N, deadline=time.perf_counter())
        try:
            for r in range(n_runs):
                xt, xh, P = x0 + L0 @ e0[r], x0.copy(), P0.copy()
                Xt[r, 0], Xh[r, 0], Ph[r, 0] = xt, xh, P
                prev, shift = U0, 0
                for i, t in enumerate(steps):
                    Ht = N - t if self.horizon is None else min(self.horizon, N - t)
                    warm = prev[shift:] if i else U0
                    if warm.shape[0] < Ht:
                        warm = np.concatenate([warm, np.repeat(warm[-1:], Ht - warm.shape[0], axis=0)])
                    warm = np.ascontiguousarray(warm[:Ht])
                    alt = np.ascontiguousarray(U0[t : t + Ht])
                    t0 = time.perf_counter()
                    xs, proj[r, i] = self.project_start(xh)
                    deadline = None if self.time_budget is None else t0 + self.time_budget
                    plan, radius = self.plan_with_relaxation(
                        xs, P, warm, N - t, controls_alt=alt if i else None, deadline=deadline
                    )
                    times[r, i] = time.perf_counter() - t0
                    nits[r, i] = plan.result.nit
                    viol[r, i] = self.violation(plan, N - t, goal_radius=radius)
                    if radius is not None:
                        widen[r, i] = radius - (self._options(Ht, N - t)["goal_radius"] or 0.0)
                    ok[r, i] = bool(plan.result.success)
                    k = min(self.execute, Ht)
                    U = np.ascontiguousarray(plan.controls[:k])
                    seg = _segment(m_, s_, xt, xh, P, U, M, Q0, Lm, Lq, eu[r, t : t + k], eq[r, t : t + k],
                                   ez[r, t : t + k], self.joseph)  # fmt: skip
                    Xt[r, t : t + k + 1], Xh[r, t : t + k + 1], Ph[r, t : t + k + 1] = seg[0], seg[1], seg[2]
                    Z[r, t : t + k] = seg[3]
                    Ua[r, t : t + k] = U
                    xt, xh, P = seg[0][-1], seg[1][-1].copy(), seg[2][-1].copy()
                    prev, shift = plan.controls, k
                done = r + 1
        except KeyboardInterrupt:
            if done == 0:
                raise
            interrupted = True
        sl = slice(0, done)
        bad = viol[sl] > self.plan_options["constraint_tol"]
        if bad.any():
            warnings.warn(
                f"{int(bad.sum())} of {bad.size} plans violated their constraints (by up to "
                f"{float(viol[sl].max()):.3g}); see ClosedLoopResult.plan_violation",
                InfeasiblePlanWarning,
                stacklevel=2,
            )
        return ClosedLoopResult(
            truth=Xt[sl], estimates=Xh[sl], covariances=Ph[sl], measurements=Z[sl], controls=Ua[sl],
            replan_steps=np.array(steps), plan_time_s=times[sl], plan_iterations=nits[sl],
            plan_violation=viol[sl], plan_success=ok[sl], start_projection_m=proj[sl],
            goal_widening_m=widen[sl], control_period_s=self.control_period_s,
            interrupted=interrupted,
        )  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"ActiveSensingController(horizon={self.horizon}, execute={self.execute}, dt={self.dt}, "
            f"time_budget={self.time_budget}, "
            f"goal={None if self.goal is None else self.goal.tolist()})"
        )
