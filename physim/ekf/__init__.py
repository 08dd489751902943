"""EKF robot localisation with analytical covariance derivatives, and active sensing.

``covariance_rollout`` propagates the EKF covariances along a nominal
trajectory of a motion model observed by range/bearing beacons; ``adjoint``
differentiates any cost of those covariances with respect to the controls,
initial state and covariance, noise levels and beacon positions by one
backward sweep; ``plan_active_sensing`` optimises a control sequence to
minimise the localisation uncertainty; ``run_filter`` runs the actual EKF on
simulated data. Models and sensors are built in (``Unicycle``, ``Bicycle``,
``Beacons``), written in numpy (``MotionModel``, ``MeasurementModel``) or
as compiled functions (``CompiledMotionModel``, ``CompiledMeasurementModel``);
``check_model`` tests their hand-written derivatives. Units: m, s, rad.
"""

from .adjoint import Gradients, adjoint, trajectory_vjp
from .checks import CheckItem, ModelCheck, check_model
from .closed_loop import ActiveSensingController, ClosedLoopResult
from .compiled import CompiledMeasurementModel, CompiledMotionModel
from .constraints import BeaconDistance, KeepOut, StateConstraint
from .costs import CovarianceCost, FinalLogDet, FinalTrace, HorizonSum, PositionTrace
from .filter import FilterResult, Rollout, covariance_rollout, run_filter
from .models import Bicycle, MotionModel, Unicycle
from .montecarlo import (
    StrategyComparison,
    compare_strategies,
    paired_difference,
    position_rmse_ci,
    run_chunk,
    summarize,
)
from .planning import InfeasiblePlanWarning, Plan, plan_active_sensing
from .sensors import Beacons, MeasurementModel

__all__ = [
    "MotionModel",
    "Unicycle",
    "Bicycle",
    "MeasurementModel",
    "Beacons",
    "CompiledMotionModel",
    "CompiledMeasurementModel",
    "check_model",
    "ModelCheck",
    "CheckItem",
    "Rollout",
    "covariance_rollout",
    "FilterResult",
    "run_filter",
    "Gradients",
    "adjoint",
    "trajectory_vjp",
    "CovarianceCost",
    "FinalTrace",
    "PositionTrace",
    "FinalLogDet",
    "HorizonSum",
    "Plan",
    "plan_active_sensing",
    "InfeasiblePlanWarning",
    "ActiveSensingController",
    "ClosedLoopResult",
    "compare_strategies",
    "StrategyComparison",
    "run_chunk",
    "summarize",
    "paired_difference",
    "position_rmse_ci",
    "StateConstraint",
    "KeepOut",
    "BeaconDistance",
]
