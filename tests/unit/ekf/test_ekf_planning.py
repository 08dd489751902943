"""Active-sensing planner: objective gradient, bounds, goal constraint and penalty."""

import numpy as np
import pytest

from physim.ekf import (
    Beacons,
    Bicycle,
    FinalTrace,
    HorizonSum,
    PositionTrace,
    Unicycle,
    covariance_rollout,
    plan_active_sensing,
)
from physim.ekf.planning import _objective
from physim.errors import InvalidInputError
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


@pytest.mark.parametrize("cost", [FinalTrace(), HorizonSum(PositionTrace())], ids=["trace", "sum"])
def test_objective_gradient_taylor(cost):
    c0 = cost.value(covariance_rollout(MODEL, BEACONS, X0, P0, U0, M, Q0).P)
    fun = _objective(MODEL, BEACONS, X0, P0, M, Q0, (N, 2), cost, c0, GOAL, 3.0, 0.7)
    z = U0.reshape(-1) + 0.1 * np.random.default_rng(0).standard_normal(2 * N)
    chk = check_gradient(fun, z)
    assert chk.ok, str(chk)


def test_plan_with_goal_constraint_and_bounds():
    lo, hi = np.array([0.0, -1.0]), np.array([2.5, 1.0])
    plan = plan_active_sensing(MODEL, BEACONS, X0, P0, U0, M, Q0, bounds=(lo, hi), goal=GOAL, maxiter=100)
    assert plan.result.success, plan.result.message
    assert plan.cost < 0.95 * plan.initial_cost
    assert plan.goal_error < 1e-6
    assert np.all(plan.controls >= lo - 1e-9) and np.all(plan.controls <= hi + 1e-9)
    assert plan.cost_history[0] == pytest.approx(plan.initial_cost)
    assert plan.cost_history.shape == (plan.result.nit + 1,)
    assert plan.covariances.shape == (N + 1, 3, 3) and plan.trajectory.shape == (N + 1, 3)
    # the plan's covariances are those of a fresh rollout of its controls
    r = covariance_rollout(MODEL, BEACONS, X0, P0, plan.controls, M, Q0)
    np.testing.assert_allclose(r.P, plan.covariances, rtol=1e-12)
    assert plan.cost == pytest.approx(np.trace(r.P[-1]))


def test_plan_with_penalty_and_smoothness():
    rough = plan_active_sensing(MODEL, BEACONS, X0, P0, U0, M, Q0, goal=GOAL, goal_mode="penalty",
                                goal_weight=50.0, maxiter=50)  # fmt: skip
    smooth = plan_active_sensing(MODEL, BEACONS, X0, P0, U0, M, Q0, goal=GOAL, goal_mode="penalty",
                                 goal_weight=50.0, smooth_weight=10.0, maxiter=50)  # fmt: skip
    assert rough.cost < rough.initial_cost and smooth.cost < smooth.initial_cost
    assert rough.goal_error < 0.2
    tv = lambda p: np.sum(np.diff(p.controls, axis=0) ** 2)  # noqa: E731
    assert tv(smooth) < tv(rough)


def test_plan_rejects_bad_options():
    with pytest.raises(InvalidInputError, match="goal_mode"):
        plan_active_sensing(MODEL, BEACONS, X0, P0, U0, M, Q0, goal=GOAL, goal_mode="soft")
    with pytest.raises(InvalidInputError, match="slsqp"):
        plan_active_sensing(MODEL, BEACONS, X0, P0, U0, M, Q0, goal=GOAL, method="lbfgs")
    with pytest.raises(InvalidInputError, match="steering"):
        plan_active_sensing(Bicycle(0.2, 1.0), BEACONS, X0, P0, U0, M, Q0, bounds=([0, -2.0], [2, 2.0]))
    with pytest.raises(InvalidInputError, match="lower"):
        plan_active_sensing(MODEL, BEACONS, X0, P0, U0, M, Q0, bounds=([1.0, 0.0], [0.0, 1.0]))


def test_plan_bicycle_with_steering_bounds():
    model = Bicycle(0.2, 1.0)
    plan = plan_active_sensing(model, BEACONS, X0, P0, U0, M, Q0, bounds=([0.0, -0.6], [2.5, 0.6]), goal=GOAL,
                               maxiter=100)  # fmt: skip
    assert plan.cost < plan.initial_cost
    assert plan.goal_error < 1e-6
    assert np.all(np.abs(plan.controls[:, 1]) <= 0.6 + 1e-9)
