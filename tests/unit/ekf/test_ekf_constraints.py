"""State constraints of the planner: exact Jacobians, feasible plans, infeasible starts."""

import warnings

import numpy as np
import pytest

from physim.ekf import (
    BeaconDistance,
    Beacons,
    InfeasiblePlanWarning,
    KeepOut,
    Unicycle,
    plan_active_sensing,
)
from physim.ekf import _kernels as K
from physim.ekf.filter import _trajectory
from physim.ekf.planning import _constraint_dicts
from physim.errors import InvalidInputError, InvalidTypeError
from physim.optim import check_gradient

MODEL = Unicycle(0.2)
BEACONS = Beacons([[1.0, 2.0], [3.0, -2.0], [5.0, 1.5]], 0.1, 0.05)
X0 = np.zeros(3)
P0 = np.diag([1.0, 1.0, 0.1])
M = np.diag([0.05**2, 0.02**2])
Q0 = 1e-6 * np.eye(3)
N = 15
GOAL = np.array([4.5, 0.0])
U0 = np.tile([GOAL[0] / (N * 0.2), 0.0], (N, 1))
BOUNDS = ([0.0, -1.0], [2.5, 1.0])


def test_trajectory_sensitivity_matches_finite_differences():
    rng = np.random.default_rng(0)
    U = U0 + 0.2 * rng.standard_normal(U0.shape)
    X, F, G = _trajectory(MODEL, X0, U)
    S = np.empty((N + 1, 3, N, 2))
    K.trajectory_sensitivity(F, G, S)
    h = 1e-6
    for j in range(N):
        for a in range(2):
            E = np.zeros_like(U)
            E[j, a] = h
            fd = (_trajectory(MODEL, X0, U + E)[0] - _trajectory(MODEL, X0, U - E)[0]) / (2 * h)
            np.testing.assert_allclose(S[:, :, j, a], fd, rtol=1e-6, atol=1e-8)
    # causality: x_k does not depend on u_j for j >= k
    for k in range(N + 1):
        assert not S[k, :, k:].any()


@pytest.mark.parametrize(
    "cons, radius",
    [([KeepOut([[2.0, 0.5], [3.0, -0.4]], [0.5, 0.3])], None), ([BeaconDistance(0.8)], None), ([], 0.4)],
    ids=["keep-out", "beacon-distance", "goal-region"],
)
def test_constraint_jacobians_taylor(cons, radius):
    dicts = _constraint_dicts(MODEL, BEACONS, X0, (N, 2), GOAL, radius, False, cons)
    (c,) = dicts
    rng = np.random.default_rng(1)
    z = (U0 + 0.2 * rng.standard_normal(U0.shape)).reshape(-1)
    w = rng.standard_normal(c["fun"](z).shape)

    def fun(v):
        return float(w @ c["fun"](v)), c["jac"](v).T @ w

    chk = check_gradient(fun, z, seed=2)
    assert chk.ok, str(chk)


def test_constraint_values_are_signed_distances_near_the_circle():
    con = KeepOut([[1.0, 1.0]], 0.5)
    X = np.array([[1.5, 1.0, 0.0], [1.0, 1.51, 0.0], [1.0, 1.2, 0.0]])
    v = con.values(X, None)[:, 0]
    assert v[0] == pytest.approx(0.0, abs=1e-15)
    assert v[1] == pytest.approx(0.01, rel=0.02) and v[2] < 0
    assert con.violation(X, None) == pytest.approx(0.3)
    assert BeaconDistance(0.5).circles(BEACONS)[0].shape == (3, 2)


def test_plan_respects_keep_out_and_beacon_distance():
    free = plan_active_sensing(MODEL, BEACONS, X0, P0, U0, M, Q0, bounds=BOUNDS, goal=GOAL, maxiter=100)
    # the unconstrained plan passes close to the beacons; constrain it
    d_free = np.min(np.linalg.norm(free.trajectory[1:, None, :2] - BEACONS.positions[None], axis=2))
    assert d_free < 1.3
    assert np.linalg.norm(free.trajectory[1:, :2] - [3.4, 0.6], axis=1).min() < 0.3
    cons = [BeaconDistance(1.3), KeepOut([[3.4, 0.6]], 0.3)]
    plan = plan_active_sensing(MODEL, BEACONS, X0, P0, U0, M, Q0, bounds=BOUNDS, goal=GOAL, maxiter=200,
                               constraints=cons)  # fmt: skip
    assert plan.feasible and plan.max_constraint_violation <= 1e-6, plan.constraint_violations
    X = plan.trajectory[1:, :2]
    d = np.linalg.norm(X[:, None] - BEACONS.positions[None], axis=2)
    assert d.min() >= 1.3 - 1e-6
    dk = np.linalg.norm(X - [3.4, 0.6], axis=1).min()
    assert 0.3 - 1e-6 <= dk < 0.3 + 1e-3  # the keep-out circle is active
    assert plan.goal_error < 1e-6 and plan.cost < plan.initial_cost
    assert set(plan.constraint_violations) == {"bounds", "goal", "beacon distance", "keep-out circle"}


def test_goal_region():
    plan = plan_active_sensing(MODEL, BEACONS, X0, P0, U0, M, Q0, bounds=BOUNDS, goal=GOAL, goal_radius=0.5,
                               maxiter=100)  # fmt: skip
    assert plan.feasible
    assert plan.goal_error <= 0.5 + 1e-6
    point = plan_active_sensing(MODEL, BEACONS, X0, P0, U0, M, Q0, bounds=BOUNDS, goal=GOAL, maxiter=100)
    assert plan.cost <= point.cost * (1 + 1e-6)  # a region is a relaxation of the point


def test_infeasible_starts_and_goals_are_errors():
    with pytest.raises(InvalidInputError, match=r"the start x0 .* violates keep-out circle 0"):
        plan_active_sensing(
            MODEL, BEACONS, X0, P0, U0, M, Q0, goal=GOAL, constraints=KeepOut([[0.1, 0.0]], 0.3)
        )
    with pytest.raises(InvalidInputError, match=r"the goal .* violates keep-out circle 1"):
        plan_active_sensing(MODEL, BEACONS, X0, P0, U0, M, Q0, goal=GOAL,
                            constraints=KeepOut([[2.0, 2.0], [4.4, 0.1]], 0.3))  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"the start x0 .* violates beacon distance 0"):
        plan_active_sensing(MODEL, BEACONS, np.array([0.9, 1.8, 0.0]), P0, U0, M, Q0, goal=GOAL,
                            constraints=BeaconDistance(0.5))  # fmt: skip
    with pytest.raises(InvalidInputError, match="slsqp"):
        plan_active_sensing(
            MODEL, BEACONS, X0, P0, U0, M, Q0, constraints=BeaconDistance(0.5), method="lbfgs"
        )
    with pytest.raises(InvalidTypeError, match="state constraints"):
        plan_active_sensing(MODEL, BEACONS, X0, P0, U0, M, Q0, constraints=[{"type": "ineq"}])
    with pytest.raises(InvalidInputError, match="goal_radius needs a goal"):
        plan_active_sensing(MODEL, BEACONS, X0, P0, U0, M, Q0, goal_radius=0.3)
    with pytest.raises(InvalidInputError, match="radii must be > 0"):
        KeepOut([[0.0, 0.0]], 0.0)


def test_an_unreachable_goal_is_reported_not_silent():
    # 15 steps of 0.2 s at most 0.5 m/s reach 1.5 m, the goal is 4.5 m away
    with pytest.warns(InfeasiblePlanWarning, match="goal constraint"):
        plan = plan_active_sensing(MODEL, BEACONS, X0, P0, U0, M, Q0, bounds=([0.0, -1.0], [0.5, 1.0]),
                                   goal=GOAL, maxiter=50)  # fmt: skip
    assert not plan.feasible
    assert plan.max_constraint_violation == pytest.approx(plan.constraint_violations["goal"])
    assert plan.max_constraint_violation > 2.9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok = plan_active_sensing(MODEL, BEACONS, X0, P0, U0, M, Q0, bounds=BOUNDS, goal=GOAL, maxiter=100)
    assert ok.feasible
