"""Monte-Carlo comparison of active-sensing strategies, in independent chunks that can fan out.

:func:`compare_strategies` runs every strategy (an open-loop control sequence
or a closed-loop :class:`~physim.ekf.ActiveSensingController`) on the same
simulated missions: run i of every strategy sees the same true start, odometry,
process and measurement noise (common random numbers), so differences between
strategies are measured with paired statistics.

The runs are split into chunks of ``chunk_size`` runs; chunk c draws its noise
from child c of ``numpy.random.SeedSequence(seed)``. Chunks are independent
tasks (:func:`run_chunk` is a picklable function of one task), so they can be
handed to :func:`physim.distributed.run_sweep` (``workers=`` / ``scheduler=``)
and the result does not depend on how many workers ran them, nor on their order.

Statistics (:func:`summarize`): position RMSE at the final step and averaged
over steps 1..N with 95 % confidence intervals (normal approximation on the
mean squared error over runs, mapped through the square root), the EKF's NEES
(mean, and the fraction of steps whose run-averaged NEES lies in the two-sided
95 % χ² band of a consistent filter), the fraction of runs whose true final
position lies within ``goal_tolerance`` of the goal (Wilson interval), the
fraction of runs whose true path entered a state constraint, and for
closed-loop strategies the planning time per replan against the time between
replans and the largest constraint violation of every plan made.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from .._validate import as_float_array
from ..errors import InvalidInputError, InvalidTypeError
from .closed_loop import ActiveSensingController, ClosedLoopResult
from .constraints import as_constraints
from .filter import FilterResult, _validate, run_filter

if TYPE_CHECKING:
    from .constraints import StateConstraint
    from .models import MotionModel
    from .sensors import MeasurementModel

__all__ = [
    "compare_strategies",
    "run_chunk",
    "summarize",
    "paired_difference",
    "position_rmse_ci",
    "StrategyComparison",
]


@dataclass(frozen=True, eq=False)
class StrategyComparison:
    """Results of :func:`compare_strategies`.

    Attributes
    ----------
    results : dict
        Strategy name → :class:`~physim.ekf.FilterResult` (open loop) or
        :class:`~physim.ekf.ClosedLoopResult`, runs in seed order.
    n_runs : int
    chunk_size : int
    seed : int
    """

    results: dict
    n_runs: int
    chunk_size: int
    seed: int


def _chunks(n_runs: int, chunk_size: int, seed: int):
    n_chunks = -(-n_runs // chunk_size)
    children = np.random.SeedSequence(seed).spawn(n_chunks)
    return [(c, min(chunk_size, n_runs - c * chunk_size), children[c]) for c in range(n_chunks)]


def run_chunk(task: dict, shared: dict | None = None) -> dict:
    """Run one chunk: every strategy on the chunk's runs (a picklable function of one task).

    ``task`` holds ``n_runs`` (runs in this chunk) and ``seed`` (a
    SeedSequence or int); the set-up common to all chunks, ``strategies``
    (name → controls (N, n_u) or controller), ``model``, ``beacons``, ``x0``,
    ``P0``, ``controls0``, ``M``, ``Q0`` and ``joseph``, is in ``shared`` (sent
    once per worker) or in ``task`` itself. Returns name → result for those runs.
    """
    task = {**(shared or {}), **task}
    out = {}
    for name, strategy in task["strategies"].items():
        seed = task["seed"]
        if isinstance(strategy, ActiveSensingController):
            out[name] = strategy.run(
                task["x0"], task["P0"], task["controls0"], n_runs=task["n_runs"], seed=seed
            )
        else:
            out[name] = run_filter(task["model"], task["beacons"], task["x0"], task["P0"], strategy, task["M"],
                                   task["Q0"], n_runs=task["n_runs"], seed=seed, joseph=task["joseph"])  # fmt: skip
    return out


def _concat(parts: list):
    first = parts[0]
    common = {f: np.concatenate([getattr(p, f) for p in parts]) for f in ("truth", "estimates", "covariances",
                                                                          "measurements")}  # fmt: skip
    if isinstance(first, ClosedLoopResult):
        extra = {f: np.concatenate([getattr(p, f) for p in parts])
                 for f in ("controls", "plan_time_s", "plan_iterations", "plan_violation", "plan_success",
                           "start_projection_m", "goal_widening_m")}  # fmt: skip
        return ClosedLoopResult(**common, **extra, replan_steps=first.replan_steps,
                                control_period_s=first.control_period_s,
                                interrupted=any(p.interrupted for p in parts))  # fmt: skip
    return FilterResult(**common)


def compare_strategies(
    strategies: dict,
    model: MotionModel,
    beacons: MeasurementModel,
    x0: ArrayLike,
    P0: ArrayLike,
    controls0: ArrayLike,
    M: ArrayLike,
    Q0: ArrayLike,
    *,
    n_runs: int,
    seed: int = 0,
    chunk_size: int = 25,
    joseph: bool = True,
    workers: int | None = None,
    scheduler: Any = None,
    store: str | os.PathLike | None = None,
    progress: bool = False,
) -> StrategyComparison:
    """Monte-Carlo runs of several strategies on common random numbers.

    Parameters
    ----------
    strategies : dict
        Name → open-loop controls (N, n_u) or an :class:`~physim.ekf.ActiveSensingController`.
    model, beacons, x0, P0, M, Q0
        As in :func:`physim.ekf.run_filter`.
    controls0 : array_like, shape (N, n_u)
        The mission's initial plan (its length N; warm start of the controllers).
    n_runs : int
        Runs per strategy.
    seed : int
        Root seed; chunk c uses child c of ``SeedSequence(seed)``.
    chunk_size : int
        Runs per chunk (the unit of work handed to a worker).
    joseph : bool
        Joseph-form EKF update (open-loop strategies; controllers use their own setting).
    workers, scheduler
        ``None`` for both (and no ``$PHYSIM_SCHEDULER``) runs the chunks in
        this process; otherwise they are handed to
        :func:`physim.distributed.run_sweep` (a local cluster of ``workers``
        processes, or a scheduler address / client, or ``"serial"``).
    store : path, optional
        :func:`physim.distributed.run_sweep` store: finished chunks are kept,
        and a second call with the same store runs only the missing ones.
    progress : bool
        Progress bar over chunks (distributed runs).

    Returns
    -------
    StrategyComparison
    """
    if not isinstance(strategies, dict) or not strategies:
        raise InvalidInputError("strategies must be a non-empty dict of name -> controls or controller")
    x0, P0, U0, M, Q0 = _validate(model, beacons, x0, P0, controls0, M, Q0)
    N, nu = U0.shape
    strat = {}
    for name, s in strategies.items():
        if isinstance(s, ActiveSensingController):
            strat[name] = s
        else:
            strat[name] = as_float_array(f"strategies[{name!r}]", s, (N, nu), copy=True)
    if isinstance(n_runs, bool) or not isinstance(n_runs, (int, np.integer)) or n_runs < 1:
        raise InvalidInputError(f"n_runs must be a positive integer, got {n_runs!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise InvalidInputError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    base = dict(strategies=strat, model=model, beacons=beacons, x0=x0, P0=P0, controls0=U0, M=M, Q0=Q0,
                joseph=bool(joseph))  # fmt: skip
    tasks = [
        {"chunk": c, "n_runs": n, "seed": ss} for c, n, ss in _chunks(int(n_runs), int(chunk_size), int(seed))
    ]
    if workers is None and scheduler is None and store is None and not os.environ.get("PHYSIM_SCHEDULER"):
        parts = [run_chunk(t, base) for t in tasks]
    else:
        from ..distributed import run_sweep

        sweep = run_sweep(run_chunk, tasks, scheduler=scheduler, workers=workers, store=store, progress=progress,
                          shared=base)  # fmt: skip
        if sweep.failed:
            i, err = next(iter(sweep.failed.items()))
            raise RuntimeError(f"{len(sweep.failed)} Monte-Carlo chunk(s) failed; chunk {i}:\n{err}")
        parts = sweep.results
    results = {name: _concat([p[name] for p in parts]) for name in strat}
    return StrategyComparison(results=results, n_runs=int(n_runs), chunk_size=int(chunk_size), seed=int(seed))


# ---------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------

_Z95 = float(stats.norm.ppf(0.975))


def _rmse_ci(sq: np.ndarray) -> tuple[float, list[float]]:
    """RMSE and its 95 % CI from per-run squared errors (R,)."""
    R = sq.size
    mse = float(np.mean(sq))
    half = _Z95 * float(np.std(sq, ddof=1)) / np.sqrt(R) if R > 1 else np.nan
    return float(np.sqrt(mse)), [float(np.sqrt(max(mse - half, 0.0))), float(np.sqrt(mse + half))]


def _wilson(k: int, n: int) -> list[float]:
    p = k / n
    d = 1 + _Z95**2 / n
    c = (p + _Z95**2 / (2 * n)) / d
    h = _Z95 * np.sqrt(p * (1 - p) / n + _Z95**2 / (4 * n * n)) / d
    return [float(max(c - h, 0.0)), float(min(c + h, 1.0))]


def _pos_sq(result: FilterResult) -> np.ndarray:
    e = result.errors[..., :2]
    return np.sum(e * e, axis=2)  # (R, N+1)


def position_rmse_ci(result: FilterResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Position RMSE over the runs at every step with its 95 % CI: (rmse, lower, upper), each (N+1,) in m."""
    sq = _pos_sq(result)
    R = sq.shape[0]
    mse = sq.mean(axis=0)
    half = _Z95 * sq.std(axis=0, ddof=1) / np.sqrt(R) if R > 1 else np.full(mse.shape, np.nan)
    return np.sqrt(mse), np.sqrt(np.maximum(mse - half, 0.0)), np.sqrt(mse + half)


def summarize(result: FilterResult, *, goal: ArrayLike | None = None, goal_tolerance: float = 0.25, constraints: Sequence[StateConstraint] | None = None,
              beacons: MeasurementModel | None = None, path_tolerance: float = 0.01) -> dict:  # fmt: skip
    """Statistics of one strategy's Monte-Carlo runs (see the module docstring).

    Parameters
    ----------
    result : FilterResult or ClosedLoopResult
    goal : array_like (2,), optional
        Goal position (m) for the goal-reached fraction.
    goal_tolerance : float
        Radius (m) within which the true final position counts as at the goal.
    constraints : sequence of StateConstraint, optional
        Checked on the true paths (``beacons`` is the sensor they read): the
        fraction of runs whose true path violates one by more than
        ``path_tolerance`` (m), and the largest and mean depth of violation.

    Returns
    -------
    dict
        ``n_runs``, ``rmse_final`` and ``rmse_final_ci95``, ``rmse_mean`` and
        ``rmse_mean_ci95`` (m), ``nees_mean``, ``nees_in_band_fraction``,
        ``goal_reached_fraction`` (+ ``_ci95``), ``true_path_violation_fraction``
        (+ ``_max_m``, ``_mean_m``),
        and for closed-loop results ``plan_time_mean_s``, ``plan_time_p95_s``,
        ``plan_time_max_s``, ``control_period_s``, ``replan_time_ratio``,
        ``replan_time_ratio_p95``, ``max_constraint_violation``,
        ``infeasible_plans``, ``plans``, ``projected_starts`` (replans whose
        start was projected out of a circle constraint), ``start_projection_max_m``,
        ``widened_goals`` (replans whose goal region was widened) and ``goal_widening_max_m``.
    """
    if not isinstance(result, FilterResult):
        raise InvalidTypeError(f"result must be a FilterResult, got {type(result).__name__}")
    sq = _pos_sq(result)
    R, n = sq.shape[0], result.truth.shape[2]
    out = {"n_runs": int(R)}
    out["rmse_final"], out["rmse_final_ci95"] = _rmse_ci(sq[:, -1])
    out["rmse_mean"], out["rmse_mean_ci95"] = _rmse_ci(sq[:, 1:].mean(axis=1))
    anees = result.mean_nees[1:]
    lo, hi = stats.chi2.ppf([0.025, 0.975], n * R) / R
    out["nees_mean"] = float(anees.mean())
    out["nees_band_95"] = [float(lo), float(hi)]
    out["nees_in_band_fraction"] = float(np.mean((anees >= lo) & (anees <= hi)))
    if goal is not None:
        goal = as_float_array("goal", goal, (2,))
        d = np.linalg.norm(result.truth[:, -1, :2] - goal, axis=1)
        k = int(np.sum(d <= goal_tolerance))
        out["goal_reached_fraction"] = k / R
        out["goal_reached_fraction_ci95"] = _wilson(k, R)
        out["goal_distance_mean_m"] = float(d.mean())
    cons = as_constraints(constraints)
    if cons:
        depth = np.zeros(R)
        for c in cons:
            for r in range(R):
                depth[r] = max(depth[r], c.violation(result.truth[r, 1:], beacons))
        out["true_path_violation_fraction"] = float(np.mean(depth > path_tolerance))
        out["true_path_violation_max_m"] = float(depth.max())
        out["true_path_violation_mean_m"] = float(depth.mean())
    if isinstance(result, ClosedLoopResult):
        t = result.plan_time_s
        out.update(
            plans=int(t.size),
            plan_time_mean_s=float(t.mean()),
            plan_time_p95_s=float(np.percentile(t, 95)),
            plan_time_max_s=float(t.max()),
            control_period_s=float(result.control_period_s),
            replan_time_ratio=float(t.mean() / result.control_period_s),
            replan_time_ratio_p95=float(np.percentile(t, 95) / result.control_period_s),
            max_constraint_violation=result.max_constraint_violation,
            infeasible_plans=int(np.sum(result.plan_violation > 1e-6)),
            projected_starts=int(np.sum(result.start_projection_m > 0)),
            start_projection_max_m=float(np.max(result.start_projection_m, initial=0.0)),
            widened_goals=int(np.sum(result.goal_widening_m > 0)),
            goal_widening_max_m=float(np.max(result.goal_widening_m, initial=0.0)),
            plan_iterations_mean=float(result.plan_iterations.mean()),
        )
    return out


def paired_difference(a: FilterResult, b: FilterResult, *, final: bool = True) -> dict:
    """Paired comparison of the position MSE of two strategies run on common random numbers.

    Returns ``mse_a``, ``mse_b`` (m²), ``mse_difference`` (a - b) with its 95 %
    CI, and ``p_value`` (two-sided paired t-test), over the final step
    (``final=True``) or the time average over steps 1..N.
    """
    sa, sb = _pos_sq(a), _pos_sq(b)
    if sa.shape != sb.shape:
        raise InvalidInputError(f"results must hold the same runs and steps, got {sa.shape} and {sb.shape}")
    xa, xb = (sa[:, -1], sb[:, -1]) if final else (sa[:, 1:].mean(axis=1), sb[:, 1:].mean(axis=1))
    d = xa - xb
    R = d.size
    half = _Z95 * float(np.std(d, ddof=1)) / np.sqrt(R) if R > 1 else np.nan
    p = float(stats.ttest_rel(xa, xb).pvalue) if R > 1 else np.nan
    return {
        "mse_a": float(xa.mean()),
        "mse_b": float(xb.mean()),
        "mse_difference": float(d.mean()),
        "mse_difference_ci95": [float(d.mean() - half), float(d.mean() + half)],
        "p_value": p,
    }
