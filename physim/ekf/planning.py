"""Active sensing: control sequences that minimise the EKF localisation uncertainty.

:func:`plan_active_sensing` minimises, over the controls U (N, n_u),

    J(U) = c(P(U)) / c(P(U₀)) + w_goal ‖p_N(U) - goal‖² + w_smooth Σ_k ‖u_{k+1} - u_k‖²

with :func:`physim.optim.minimize`, where ``c`` is a covariance cost
(:mod:`physim.ekf.costs`, final covariance trace by default) normalised by its
value at the initial plan U₀ (so tolerances and weights are scale-free), the
goal term is used in penalty mode, and gradients come from one adjoint sweep
per evaluation. In constraint mode the final position is instead an equality
constraint ``p_N(U) = goal`` handled by SLSQP (its Jacobian, two trajectory
VJPs). Control bounds are box constraints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .._result import Result
from .._validate import as_float_array, as_scalar
from ..errors import InvalidInputError, ShapeError
from .adjoint import _trajectory_adjoint, adjoint
from .costs import CovarianceCost, FinalTrace
from .filter import Rollout, _rollout, _trajectory, _validate
from .models import Bicycle

__all__ = ["Plan", "plan_active_sensing"]


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


def plan_active_sensing(
    model,
    beacons,
    x0,
    P0,
    controls0,
    M,
    Q0,
    *,
    cost: CovarianceCost | None = None,
    bounds=None,
    goal=None,
    goal_mode: str = "constraint",
    goal_weight: float = 100.0,
    smooth_weight: float = 0.0,
    method: str | None = None,
    maxiter: int = 100,
    tol: float | None = None,
    callback=None,
    progress: bool = False,
) -> Plan:
    """Optimise a control sequence to minimise a covariance cost.

    Parameters
    ----------
    model, beacons, x0, P0, M, Q0
        As in :func:`physim.ekf.covariance_rollout`.
    controls0 : array_like, shape (N, n_u)
        Initial plan (e.g. a straight line to the goal).
    cost : CovarianceCost, optional
        Covariance cost c; ``FinalTrace()`` (trace of P_N, m²) by default.
    bounds : (array_like (n_u,), array_like (n_u,)), optional
        Lower and upper bounds on every control (``None``/±inf = free).
    goal : array_like, shape (2,), optional
        Final position in m.
    goal_mode : {"constraint", "penalty"}
        Equality constraint p_N = goal (SLSQP) or penalty ``goal_weight ‖p_N - goal‖²``.
    goal_weight : float
        Penalty weight in 1/m² (the covariance term is normalised to 1 at the start).
    smooth_weight : float
        Weight of Σ_k ‖u_{k+1} - u_k‖² (in 1/(control units)²).
    method : {"lbfgs", "slsqp", "adam"}, optional
        Defaults to "slsqp" with a goal constraint, "lbfgs" otherwise.
    maxiter : int
        Maximum optimizer iterations.
    tol : float, optional
        Optimizer tolerance (see :func:`physim.optim.minimize`).
    callback : callable, optional
        Passed on to :func:`physim.optim.minimize`.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Plan
    """
    from ..optim import minimize

    x0, P0, U0, M, Q0 = _validate(model, beacons, x0, P0, controls0, M, Q0)
    cost = FinalTrace() if cost is None else cost
    if not (hasattr(cost, "value") and hasattr(cost, "gradient")):
        raise InvalidInputError("cost must be a cost object with value(P) and gradient(P)")
    N, nu, n = U0.shape[0], U0.shape[1], x0.shape[0]
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
    goal_weight = as_scalar("goal_weight", goal_weight, nonnegative=True)
    smooth_weight = as_scalar("smooth_weight", smooth_weight, nonnegative=True)
    use_constraint = goal is not None and goal_mode == "constraint"
    if method is None:
        method = "slsqp" if use_constraint else "lbfgs"
    if use_constraint and method != "slsqp":
        raise InvalidInputError(f"a goal constraint needs method='slsqp', got {method!r}")

    r0 = _rollout(model, beacons, x0, P0, U0, M, Q0, check=True)
    c0 = float(cost.value(r0.P))
    if not c0 > 0:
        raise InvalidInputError(f"the initial covariance cost must be > 0 to normalise it, got {c0}")
    seen: dict[bytes, tuple[float, float]] = {}
    penalty_goal = goal if (goal is not None and not use_constraint) else None
    fun = _objective(model, beacons, x0, P0, M, Q0, (N, nu), cost, c0, penalty_goal, goal_weight,
                     smooth_weight, seen)  # fmt: skip

    constraints = ()
    if use_constraint:

        def traj(z):
            X, F, G = _trajectory(model, x0, z.reshape(N, nu))
            return X, F, G

        def c_fun(z):
            return traj(z)[0][-1, :2] - goal

        def c_jac(z):
            U = z.reshape(N, nu)
            X, F, G = traj(z)
            zF, zG = np.zeros((N, n, n)), np.zeros((N, n, nu))
            jac = np.empty((2, N * nu))
            for i in range(2):
                Xb = np.zeros((N + 1, n))
                Xb[-1, i] = 1.0
                jac[i] = _trajectory_adjoint(model, X, U, F, G, zF, zG, Xb)[1].reshape(-1)
            return jac

        constraints = ({"type": "eq", "fun": c_fun, "jac": c_jac},)

    z0 = U0.reshape(-1).copy()
    J0 = fun(z0)[0]
    costs = [c0]
    objs = [J0]

    def cb(res):
        z = np.asarray(res.x, dtype=float)
        hit = seen.get(z.tobytes())
        if hit is None:
            f = fun(z.copy())
            hit = seen[z.tobytes()]
            del f
        costs.append(hit[0])
        objs.append(hit[1])
        if callback is not None:
            callback(res)

    zb = None if box is None else [(lo, hi) for _ in range(N) for lo, hi in zip(box[0], box[1])]
    t0 = time.perf_counter()
    res = minimize(
        fun, z0, method=method, bounds=zb, constraints=constraints, maxiter=maxiter, tol=tol,
        callback=cb, progress=progress,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    U = np.asarray(res.x, dtype=float).reshape(N, nu)
    r = _rollout(model, beacons, x0, P0, U, M, Q0, check=False)
    gerr = None if goal is None else float(np.linalg.norm(r.states[-1, :2] - goal))
    return Plan(
        controls=U, trajectory=r.states, covariances=r.P, cost=float(cost.value(r.P)), initial_cost=c0,
        cost_history=np.array(costs), objective_history=np.array(objs), goal_error=gerr, rollout=r,
        result=res, time_s=elapsed,
    )  # fmt: skip
