"""Active sensing: control sequences that minimise the EKF localisation uncertainty.

:func:`plan_active_sensing` minimises, over the controls U (N, n_u),

    J(U) = c(P(U)) / c(P(U₀)) + w_goal ‖p_N(U) - goal‖² + w_smooth Σ_k ‖u_{k+1} - u_k‖²

with :func:`physim.optim.minimize`, where ``c`` is a covariance cost
(:mod:`physim.ekf.costs`, final covariance trace by default) normalised by its
value at the initial plan U₀ (so tolerances and weights are scale-free), the
goal term is used in penalty mode, and gradients come from one adjoint sweep
per evaluation. Constraints (SLSQP, exact Jacobians):

* control bounds (speed, turn rate, steering): box constraints;
* the goal: the equality ``p_N(U) = goal`` (Jacobian: two trajectory VJPs)
  or, with ``goal_radius``, the goal region ‖p_N - goal‖ ≤ r;
* state constraints on every planned state (:mod:`physim.ekf.constraints`):
  keep-out circles (obstacles) and a minimum distance to every beacon.

A start or goal that no plan can satisfy (inside a keep-out circle) is an
error; initial controls outside the bounds are projected onto them. When SQP
ends infeasible, the violations are minimised from there (feasibility
restoration) and SQP runs again; if no candidate is feasible, the feasible
point of lowest objective met on the way (the initial plan or an iterate) is
returned instead. Every returned :class:`Plan` reports its largest constraint
violation (``max_constraint_violation``) and warns
(:class:`InfeasiblePlanWarning`) when it exceeds ``constraint_tol`` (only
when no feasible point was met at all).
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.optimize as so
from numpy.typing import ArrayLike
from threadpoolctl import ThreadpoolController

from .._result import Result
from .._validate import as_float_array, as_scalar
from ..errors import InvalidInputError, ShapeError
from . import _kernels as K
from .adjoint import _trajectory_adjoint, adjoint
from .constraints import _Circles, as_constraints
from .costs import CovarianceCost, FinalTrace
from .filter import Rollout, _rollout, _trajectory, _validate
from .models import Bicycle

if TYPE_CHECKING:
    from .constraints import StateConstraint
    from .models import MotionModel
    from .sensors import MeasurementModel

__all__ = ["Plan", "plan_active_sensing", "InfeasiblePlanWarning"]


@functools.cache
def _blas_controller() -> ThreadpoolController:
    """The process's BLAS thread pools (inspected once: the inspection costs milliseconds)."""
    return ThreadpoolController()


class InfeasiblePlanWarning(RuntimeWarning):
    """A returned plan violates one of its constraints by more than ``constraint_tol``."""


@dataclass(frozen=True, eq=False)
class Plan(Result):
    """Result of :func:`plan_active_sensing`.

    Attributes
    ----------
    controls : ndarray (N, n_u)
        Optimised controls.
    trajectory : ndarray (N+1, n)
        Nominal trajectory under them.
    covariances : ndarray (N+1, n, n)
        EKF covariances along it.
    cost : float
        Covariance cost c(P) of the optimised plan.
    initial_cost : float
        Covariance cost of the initial plan.
    cost_history : ndarray (nit+1,)
        Covariance cost at the initial plan and after every iteration.
    objective_history : ndarray (nit+1,)
        Full normalised objective J (with penalties) at the same points.
    goal_error : float or None
        ‖p_N - goal‖ in m.
    rollout : Rollout
        Rollout of the optimised plan (for :func:`physim.ekf.adjoint`).
    result : scipy.optimize.OptimizeResult
        Optimizer result (``nit``, ``nfev``, ``success``, ``message``, ``history``).
    time_s : float
        Wall-clock time of the optimisation in s.
    max_constraint_violation : float
        Largest violation of any constraint of the plan (0 when all hold):
        bounds in control units, goal and state constraints in m.
    constraint_violations : dict
        The violation of each kind of constraint (``"bounds"``, ``"goal"``,
        ``"goal region"``, and one entry per state constraint).
    feasible : bool
        ``max_constraint_violation <= constraint_tol``.
    """

    controls: np.ndarray
    trajectory: np.ndarray
    covariances: np.ndarray
    cost: float
    initial_cost: float
    cost_history: np.ndarray
    objective_history: np.ndarray
    goal_error: float | None
    rollout: Rollout
    result: object
    time_s: float
    max_constraint_violation: float = 0.0
    constraint_violations: dict = field(default_factory=dict)
    feasible: bool = True

    def __repr__(self) -> str:
        return (
            f"Plan(N={self.controls.shape[0]}, cost={self.initial_cost:.4g} -> {self.cost:.4g}, "
            f"nit={getattr(self.result, 'nit', None)}, max_constraint_violation={self.max_constraint_violation:.2g})"
        )


def _bounds(bounds, nu):
    if bounds is None:
        return None
    if len(bounds) != 2:
        raise ShapeError("bounds must be a pair (lower, upper) of arrays of shape (n_u,)")

    def side(b, fill):
        b = np.broadcast_to(np.asarray(b, dtype=object), (nu,))
        return np.array([fill if v is None else float(v) for v in b])

    lo, hi = side(bounds[0], -np.inf), side(bounds[1], np.inf)
    if np.any(np.isnan(lo)) or np.any(np.isnan(hi)):
        raise InvalidInputError("bounds contain NaN")
    if np.any(lo > hi):
        j = int(np.argmax(lo > hi))
        raise InvalidInputError(f"bounds on control {j}: lower {lo[j]} > upper {hi[j]}")
    return lo, hi


def _objective(model, beacons, x0, P0, M, Q0, shape, cost, c0, goal, goal_weight, smooth_weight, seen=None):
    """The normalised planning objective ``fun(z) -> (J, ∂J/∂z)`` over flattened controls z.

    ``goal`` (2,) adds the penalty term (``None``: no goal term); ``seen`` (dict)
    records ``(covariance cost, J)`` per evaluated point.
    """
    N, nu = shape
    n = x0.shape[0]

    def fun(z):
        U = z.reshape(N, nu)
        r = _rollout(model, beacons, x0, P0, U, M, Q0, check=False)
        c = float(cost.value(r.P))
        J = c / c0
        Xb = None
        if goal is not None:
            e = r.states[-1, :2] - goal
            J += goal_weight * float(e @ e)
            Xb = np.zeros((N + 1, n))
            Xb[-1, :2] = 2.0 * goal_weight * e
        g = adjoint(r, cost.gradient(r.P) / c0, d_cost_d_states=Xb).controls
        if smooth_weight > 0 and N > 1:
            d = np.diff(U, axis=0)
            J += smooth_weight * float(np.sum(d * d))
            g = g.copy()
            g[:-1] -= 2.0 * smooth_weight * d
            g[1:] += 2.0 * smooth_weight * d
        if seen is not None:
            seen[z.tobytes()] = (c, J)
        return J, g.reshape(-1)

    return fun


class _Trajectory:
    """Nominal trajectory and its forward sensitivities for the last controls z (shared by constraints)."""

    def __init__(self, model, x0, shape):
        self.model, self.x0, self.shape = model, x0, shape
        self.key = self.S_key = None

    def states(self, z):
        key = z.tobytes()
        if key != self.key:
            self.X, self.F, self.G = _trajectory(self.model, self.x0, z.reshape(self.shape))
            self.key = key
        return self.X

    def sensitivity(self, z):
        """∂x_k/∂z (N+1, n, N * n_u)."""
        self.states(z)
        if self.S_key != self.key:
            N, nu = self.shape
            S = np.empty((N + 1, self.X.shape[1], N, nu))
            K.trajectory_sensitivity(self.F, self.G, S)
            self.S = S.reshape(N + 1, self.X.shape[1], N * nu)
            self.S_key = self.key
        return self.S


def _constraint_dicts(model, beacons, x0, shape, goal, goal_radius, use_goal_eq, state_cons):
    """scipy SLSQP constraint dicts for the goal (equality or region) and the state constraints."""
    N, nu = shape
    n = x0.shape[0]
    traj = _Trajectory(model, x0, shape)
    out = []
    if use_goal_eq:

        def c_fun(z):
            return traj.states(z)[-1, :2] - goal

        def c_jac(z):
            U = z.reshape(N, nu)
            X = traj.states(z)
            zF, zG = np.zeros((N, n, n)), np.zeros((N, n, nu))
            jac = np.empty((2, N * nu))
            for i in range(2):
                Xb = np.zeros((N + 1, n))
                Xb[-1, i] = 1.0
                jac[i] = _trajectory_adjoint(model, X, U, traj.F, traj.G, zF, zG, Xb)[1].reshape(-1)
            return jac

        out.append({"type": "eq", "fun": c_fun, "jac": c_jac})
    ineq_f, ineq_j = [], []
    if goal_radius is not None:
        r = goal_radius

        def g_fun(z):
            e = traj.states(z)[-1, :2] - goal
            return np.array([(r * r - e @ e) / (2.0 * r)])

        def g_jac(z):
            e = traj.states(z)[-1, :2] - goal
            return (-(e / r) @ traj.sensitivity(z)[-1, :2])[None]

        ineq_f.append(g_fun)
        ineq_j.append(g_jac)
    for con in state_cons:

        def s_fun(z, con=con):
            return con.values(traj.states(z)[1:], beacons).reshape(-1)

        def s_jac(z, con=con):
            X = traj.states(z)[1:]
            J = con.jacobian(X, beacons)  # (N, q, n)
            return np.einsum("kqi,kij->kqj", J, traj.sensitivity(z)[1:]).reshape(-1, N * nu)

        ineq_f.append(s_fun)
        ineq_j.append(s_jac)
    if ineq_f:
        out.append(
            {
                "type": "ineq",
                "fun": lambda z: np.concatenate([f(z) for f in ineq_f]),
                "jac": lambda z: np.concatenate([j(z) for j in ineq_j], axis=0),
            }
        )
    return out


def _violation_penalty(cons):
    """``fun(z) -> (Σ violations², gradient)`` over scipy constraint dicts (equalities and ≥ 0 inequalities)."""

    def fun(z):
        val, grad = 0.0, np.zeros_like(z)
        for c in cons:
            v = np.asarray(c["fun"](z), dtype=float)
            r = v if c["type"] == "eq" else np.minimum(v, 0.0)
            if r.any():
                val += float(r @ r)
                grad += 2.0 * (np.asarray(c["jac"](z)).T @ r)
        return val, grad

    return fun


def _violations(U, X, beacons, box, goal, goal_radius, use_goal_eq, state_cons) -> dict:
    """Violation of each constraint of a plan (bounds in control units, the others in m)."""
    v = {}
    if box is not None:
        lo, hi = box
        v["bounds"] = float(max(0.0, np.max(lo - U, initial=0.0), np.max(U - hi, initial=0.0)))
    if goal is not None:
        d = float(np.linalg.norm(X[-1, :2] - goal))
        if use_goal_eq:
            v["goal"] = d
        elif goal_radius is not None:
            v["goal region"] = max(0.0, d - goal_radius)
    for i, con in enumerate(state_cons):
        name = getattr(con, "name", type(con).__name__)
        key = name if name not in v else f"{name} {i}"
        v[key] = float(con.violation(X[1:], beacons))
    return v


def plan_active_sensing(
    model: MotionModel,
    beacons: MeasurementModel,
    x0: ArrayLike,
    P0: ArrayLike,
    controls0: ArrayLike,
    M: ArrayLike,
    Q0: ArrayLike,
    *,
    cost: CovarianceCost | None = None,
    bounds: tuple[ArrayLike, ArrayLike] | None = None,
    goal: ArrayLike | None = None,
    goal_mode: str = "constraint",
    goal_radius: float | None = None,
    goal_weight: float = 100.0,
    smooth_weight: float = 0.0,
    constraints: Sequence[StateConstraint] | None = None,
    method: str | None = None,
    maxiter: int = 100,
    tol: float | None = None,
    constraint_tol: float = 1e-6,
    callback: Callable | None = None,
    progress: bool = False,
) -> Plan:
    """Optimise a control sequence to minimise a covariance cost.

    Parameters
    ----------
    model, beacons, x0, P0, M, Q0
        As in :func:`physim.ekf.covariance_rollout`.
    controls0 : array_like, shape (N, n_u)
        Initial plan (e.g. a straight line to the goal); projected onto ``bounds``.
    cost : CovarianceCost, optional
        Covariance cost c; ``FinalTrace()`` (trace of P_N, m²) by default.
    bounds : (array_like (n_u,), array_like (n_u,)), optional
        Lower and upper bounds on every control (``None``/±inf = free), e.g.
        speed in [0, v_max] m/s and turn rate in [-ω_max, ω_max] rad/s.
    goal : array_like, shape (2,), optional
        Final position in m.
    goal_mode : {"constraint", "penalty"}
        Constraint on the final position (SLSQP) or penalty ``goal_weight ‖p_N - goal‖²``.
    goal_radius : float, optional
        Constraint mode: reach the goal region ‖p_N - goal‖ ≤ goal_radius (m)
        instead of the goal point.
    goal_weight : float
        Penalty weight in 1/m² (the covariance term is normalised to 1 at the start).
    smooth_weight : float
        Weight of Σ_k ‖u_{k+1} - u_k‖² (in 1/(control units)²).
    constraints : StateConstraint or sequence of StateConstraint, optional
        Constraints on every planned state, e.g. ``[KeepOut(centers, radii),
        BeaconDistance(0.5)]`` (:mod:`physim.ekf.constraints`; SLSQP).
    method : {"lbfgs", "slsqp", "adam"}, optional
        Defaults to "slsqp" with any constraint besides bounds, "lbfgs" otherwise.
    maxiter : int
        Maximum optimizer iterations.
    tol : float, optional
        Optimizer tolerance (see :func:`physim.optim.minimize`).
    constraint_tol : float
        A plan whose largest constraint violation exceeds this (m or control
        units) is reported infeasible (``Plan.feasible``) with an
        :class:`InfeasiblePlanWarning`.
    callback : callable, optional
        Passed on to :func:`physim.optim.minimize`.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Plan

    Raises
    ------
    InvalidInputError
        Bad options, or a start (or goal point) inside a keep-out circle or
        too close to a beacon.
    """
    return _plan(
        model, beacons, x0, P0, controls0, M, Q0, cost=cost, bounds=bounds, goal=goal, goal_mode=goal_mode,
        goal_radius=goal_radius, goal_weight=goal_weight, smooth_weight=smooth_weight, constraints=constraints,
        method=method, maxiter=maxiter, tol=tol, constraint_tol=constraint_tol, callback=callback,
        progress=progress, strict=True, warn=True,
    )  # fmt: skip


def _plan(
    model, beacons, x0, P0, controls0, M, Q0, *, cost, bounds, goal, goal_mode, goal_radius, goal_weight,
    smooth_weight, constraints, method, maxiter, tol, constraint_tol, callback, progress, strict, warn,
    restore_feasibility=True, deadline=None,
):  # fmt: skip
    """:func:`plan_active_sensing`; ``strict=False`` (closed loop) plans even from an infeasible start.

    ``deadline`` (a ``time.perf_counter()`` value) stops the optimizer at the
    first iteration that ends after it; then the best feasible point met is
    returned, and the feasibility restoration runs only when no feasible
    point was met (feasibility before time).
    """
    from ..optim import minimize

    x0, P0, U0, M, Q0 = _validate(model, beacons, x0, P0, controls0, M, Q0)
    cost = FinalTrace() if cost is None else cost
    if not (hasattr(cost, "value") and hasattr(cost, "gradient")):
        raise InvalidInputError("cost must be a cost object with value(P) and gradient(P)")
    N, nu = U0.shape
    box = _bounds(bounds, nu)
    if isinstance(model, Bicycle) and (box is None or max(-box[0][1], box[1][1]) >= 0.5 * np.pi):
        raise InvalidInputError(
            "planning with a Bicycle needs bounds on the steering angle inside (-pi/2, pi/2), "
            f"got {None if box is None else (box[0][1], box[1][1])}"
        )
    if box is not None:
        U0 = np.clip(U0, box[0], box[1])
    if goal is not None:
        goal = as_float_array("goal", goal, (2,))
    if goal_mode not in ("constraint", "penalty"):
        raise InvalidInputError(f"goal_mode must be 'constraint' or 'penalty', got {goal_mode!r}")
    if goal_radius is not None:
        goal_radius = as_scalar("goal_radius", goal_radius, positive=True)
        if goal is None or goal_mode != "constraint":
            raise InvalidInputError("goal_radius needs a goal in goal_mode='constraint'")
    goal_weight = as_scalar("goal_weight", goal_weight, nonnegative=True)
    smooth_weight = as_scalar("smooth_weight", smooth_weight, nonnegative=True)
    constraint_tol = as_scalar("constraint_tol", constraint_tol, nonnegative=True)
    state_cons = as_constraints(constraints)
    use_goal_eq = goal is not None and goal_mode == "constraint" and goal_radius is None
    constrained = (goal is not None and goal_mode == "constraint") or bool(state_cons)
    if method is None:
        method = "slsqp" if constrained else "lbfgs"
    if constrained and method != "slsqp":
        raise InvalidInputError(f"goal and state constraints need method='slsqp', got {method!r}")
    if strict:
        for con in state_cons:
            if isinstance(con, _Circles):
                con.check_point("the start x0", x0, beacons)
                if use_goal_eq:
                    con.check_point("the goal", goal, beacons)

    r0 = _rollout(model, beacons, x0, P0, U0, M, Q0, check=True)
    c0 = float(cost.value(r0.P))
    if not c0 > 0:
        raise InvalidInputError(f"the initial covariance cost must be > 0 to normalise it, got {c0}")
    seen: dict[bytes, tuple[float, float]] = {}
    penalty_goal = goal if (goal is not None and goal_mode == "penalty") else None
    fun = _objective(model, beacons, x0, P0, M, Q0, (N, nu), cost, c0, penalty_goal, goal_weight,
                     smooth_weight, seen)  # fmt: skip
    cons = (
        _constraint_dicts(model, beacons, x0, (N, nu), goal, goal_radius, use_goal_eq, state_cons)
        if constrained
        else ()
    )

    def violation_of(z):
        U = np.asarray(z, dtype=float).reshape(N, nu)
        X = _trajectory(model, x0, U)[0]
        viol = _violations(U, X, beacons, box, goal, goal_radius, use_goal_eq, state_cons)
        return max(viol.values(), default=0.0)

    def assess(res):
        return violation_of(res.x)

    z0 = U0.reshape(-1).copy()
    J0 = fun(z0)[0]
    costs = [c0]
    objs = [J0]
    # the feasible point of lowest objective met so far (the start and every iterate): returned when
    # the optimizer itself ends infeasible
    best = {"J": J0, "z": z0.copy(), "nit": 0} if cons and violation_of(z0) <= constraint_tol else None

    def cb(res):
        nonlocal best
        z = np.asarray(res.x, dtype=float)
        hit = seen.get(z.tobytes())
        if hit is None:
            fun(z.copy())
            hit = seen[z.tobytes()]
        costs.append(hit[0])
        objs.append(hit[1])
        if cons and (best is None or hit[1] < best["J"]) and violation_of(z) <= constraint_tol:
            best = {"J": hit[1], "z": z.copy(), "nit": len(objs) - 1}
        if callback is not None:
            callback(res)
        if deadline is not None and time.perf_counter() > deadline:
            raise StopIteration

    zb = None if box is None else [(lo, hi) for _ in range(N) for lo, hi in zip(box[0], box[1])]
    t0 = time.perf_counter()
    # the optimizer's linear algebra is tiny: threaded BLAS only adds start-up costs (up to 10x on a
    # busy machine), so it runs on one BLAS thread (process-wide for the duration of the call)

    def solve(*args, **kw):
        r = minimize(*args, **kw)
        if r.get("stop_reason", r.message) == "interrupted" and not strict:
            raise KeyboardInterrupt  # a closed loop stops as a whole
        return r

    with _blas_controller().limit(limits=1, user_api="blas"):
        res = solve(
            fun, z0, method=method, bounds=zb, constraints=cons, maxiter=maxiter, tol=tol,
            callback=cb, progress=progress,
        )  # fmt: skip
        interrupted = res.get("stop_reason", res.message) == "interrupted"
        late = deadline is not None and time.perf_counter() > deadline and best is not None
        if cons and restore_feasibility and not interrupted and not late and assess(res) > constraint_tol:
            # feasibility restoration: minimise the squared constraint violations (L-BFGS-B, smooth)
            # from where SQP stopped, then SQP again from the restored point; keep the better plan
            zf = solve(_violation_penalty(cons), res.x, method="lbfgs", bounds=zb, maxiter=200, tol=1e-14).x
            res2 = solve(fun, zf, method=method, bounds=zb, constraints=cons, maxiter=maxiter, tol=tol,
                         callback=cb)  # fmt: skip
            restored = so.OptimizeResult(
                x=zf, fun=fun(zf)[0], nit=res.nit + res2.nit, nfev=res.nfev + res2.nfev, success=False,
                message="feasibility restoration (the SQP iterations after it did not stay feasible)",
            )  # fmt: skip
            cands = [(assess(c), c) for c in (res, restored, res2)]
            ok = [c for v, c in cands if v <= constraint_tol]
            res = min(ok, key=lambda c: c.fun) if ok else min(cands, key=lambda vc: vc[0])[1]
        if cons and best is not None and not interrupted and assess(res) > constraint_tol:
            where = "the start" if best["nit"] == 0 else f"iteration {best['nit']}"
            res = so.OptimizeResult(
                x=best["z"], fun=best["J"], nit=res.nit, nfev=res.nfev, success=False,
                message=f"best feasible iterate ({where}); the optimizer ended infeasible: {res.message}",
            )  # fmt: skip
    elapsed = time.perf_counter() - t0
    U = np.asarray(res.x, dtype=float).reshape(N, nu)
    r = _rollout(model, beacons, x0, P0, U, M, Q0, check=False)
    gerr = None if goal is None else float(np.linalg.norm(r.states[-1, :2] - goal))
    viol = _violations(U, r.states, beacons, box, goal, goal_radius, use_goal_eq, state_cons)
    vmax = max(viol.values(), default=0.0)
    feasible = bool(vmax <= constraint_tol)
    if warn and not feasible:
        worst = max(viol, key=viol.get)
        warnings.warn(
            f"the returned plan violates its {worst} constraint by {vmax:.3g} (tolerance {constraint_tol:g}); "
            f"optimizer: {res.message}",
            InfeasiblePlanWarning,
            stacklevel=3,
        )
    return Plan(
        controls=U, trajectory=r.states, covariances=r.P, cost=float(cost.value(r.P)), initial_cost=c0,
        cost_history=np.array(costs), objective_history=np.array(objs), goal_error=gerr, rollout=r,
        result=res, time_s=elapsed, max_constraint_violation=float(vmax), constraint_violations=viol,
        feasible=feasible,
    )  # fmt: skip
