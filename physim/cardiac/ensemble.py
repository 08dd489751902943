"""Digital-twin ensembles: independent fits from random starts, with their spread and its calibration.

:func:`fit_ensemble` runs ``n_members`` fits of one :class:`~physim.cardiac.twin.TwinModel`
to one objective (e.g. :func:`~physim.cardiac.objectives.multimodal_objective`),
each from its own random start (velocities and site times drawn from
:class:`StartDistribution` with the member's seed), on
:func:`physim.distributed.run_sweep` (an embedded Dask cluster by default, any
scheduler address, or ``"serial"``). The model and the objective travel once to
each worker; each member is one task, written to ``store`` as it finishes, so an
interrupted ensemble resumes where it stopped.

The :class:`TwinEnsemble` it returns holds every member (parameters, loss,
activation map, ECG, correlation per lead) and the per-node mean, median and
standard deviation of the activation over members, uniform or weighted by the
members' losses (``weighting="loss"``: ``w_m ∝ exp(-(L_m - min L) / T)``, a
tempered posterior weight). :meth:`TwinEnsemble.calibration` scores the spread
against a known truth (synthetic studies): the fraction of nodes whose true time
lies within 1 and 2 standard deviations of the mean, and the error of the mean.

Members are reproducible: member ``m`` of seed ``s`` draws its start from
``numpy.random.default_rng([s, m])`` and runs with ``threads`` Numba threads
(default 1), so the serial scheduler, the embedded cluster and a remote cluster
give identical members.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from physim._result import Result, readonly
from physim._validate import as_float_array, as_scalar
from physim.errors import InvalidInputError

from .objectives import ECGTerm, MultimodalObjective

if TYPE_CHECKING:
    from .heart import BiventricularMesh
    from .twin import TwinModel

__all__ = [
    "StartDistribution",
    "EnsembleMember",
    "Calibration",
    "TwinEnsemble",
    "fit_ensemble",
    "ensemble_statistics",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------- starts


@dataclass(frozen=True)
class StartDistribution:
    """How a member's start is drawn (uniformly, independently per parameter).

    Attributes
    ----------
    velocity : sequence of (low, high), optional
        Range per velocity parameter of the model (mm/ms, or a ratio for
        :class:`~physim.cardiac.twin.AnisotropicVelocities`); default the
        model's bounds.
    site_times : (float, float)
        Range of the start time of every candidate site (ms), clipped to the
        site bounds (default 0-60 ms: every candidate starts early enough to
        fire somewhere and the fit decides which stay).
    site_fraction : float
        Fraction of candidates drawn in ``site_times``; the others start at
        ``t_max`` (dormant). Default 1.
    """

    velocity: tuple | None = None
    site_times: tuple = (0.0, 60.0)
    site_fraction: float = 1.0

    def __post_init__(self):
        lo, hi = (float(v) for v in self.site_times)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
            raise InvalidInputError(f"site_times must be a finite (low, high) pair, got {self.site_times}")
        object.__setattr__(self, "site_times", (lo, hi))
        f = as_scalar("site_fraction", self.site_fraction)
        if not 0 < f <= 1:
            raise InvalidInputError(f"site_fraction must be in (0, 1], got {f}")
        if self.velocity is not None:
            v = tuple((float(a), float(b)) for a, b in self.velocity)
            if any(not (0 < a <= b) for a, b in v):
                raise InvalidInputError(f"velocity ranges must be 0 < low <= high, got {v}")
            object.__setattr__(self, "velocity", v)

    def draw(self, model: TwinModel, rng: np.random.Generator) -> np.ndarray:
        """A start ``x0`` (n_params,) for ``model``, strictly inside its bounds."""
        lo, hi = np.asarray(model.lower, float), np.asarray(model.upper, float)
        nv = model.n_velocity
        if self.velocity is None:
            vr = list(zip(lo[:nv], hi[:nv]))
        else:
            if len(self.velocity) != nv:
                raise InvalidInputError(
                    f"velocity has {len(self.velocity)} ranges for {nv} velocity parameters"
                )
            vr = self.velocity
        pv = np.array([rng.uniform(a, b) for a, b in vr])
        ns = model.n_params - nv
        ps = rng.uniform(*self.site_times, ns)
        if self.site_fraction < 1:
            dormant = rng.random(ns) >= self.site_fraction
            ps[dormant] = hi[nv:][dormant]
        return _strictly_inside(model, np.concatenate([pv, ps]))


def _strictly_inside(model: TwinModel, x: np.ndarray) -> np.ndarray:
    """``x`` (one start or one per row) clipped a millionth of each range inside the model's bounds."""
    lo, hi = np.asarray(model.lower, float), np.asarray(model.upper, float)
    span = hi - lo
    return np.clip(x, lo + 1e-6 * span, hi - 1e-6 * span)


# --------------------------------------------------------------------------- members


@dataclass(frozen=True, eq=False)
class EnsembleMember(Result):
    """One fit of an ensemble.

    Attributes
    ----------
    index : int
        Member number.
    seed : int
        Ensemble seed (the start came from ``default_rng([seed, index])``).
    x0, x : ndarray (n_params,)
        Start and fitted parameters.
    loss : float
        Objective at ``x`` (data terms + priors).
    values : dict
        Unweighted data terms and the prior at ``x`` (``{"ecg": ..., "prior": ...}``).
    times : ndarray (n_points,)
        Activation map at ``x`` (ms).
    ecg : ndarray (n_leads, n_samples) or None
        Simulated ECG at ``x`` (mV), if the objective has an ECG term.
    ecg_correlation : ndarray (n_leads,) or None
        Correlation of ``ecg`` with the target per lead.
    n_firing : int
        Candidate sites that initiate activation at ``x`` (-1 if not candidate sites).
    nit, nfev : int
        L-BFGS iterations and evaluations.
    message : str
        Optimiser message.
    wall_time_s : float
        Time of the fit (s).
    """

    index: int
    seed: int
    x0: np.ndarray
    x: np.ndarray
    loss: float
    values: dict
    times: np.ndarray
    ecg: np.ndarray | None
    ecg_correlation: np.ndarray | None
    n_firing: int
    nit: int
    nfev: int
    message: str
    wall_time_s: float


def _fit_member(task: dict, shared) -> EnsembleMember:
    """Run one member (module-level so that Dask workers can import it)."""
    import numba

    from physim.optim import minimize, transformed

    from .ecg import lead_correlations
    from .twin import CandidateSites

    model, objective, start = shared["model"], shared["objective"], shared["start"]
    threads = int(task["threads"])
    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        t0 = time.perf_counter()
        rng = np.random.default_rng([int(task["seed"]), int(task["member"])])
        if isinstance(start, np.ndarray):  # explicit starts, one row per member
            x0 = start[int(task["member"])].copy()
        else:
            x0 = start(model, rng) if callable(start) else start.draw(model, rng)
        tr = model.transform()
        res = minimize(
            transformed(objective, tr),
            tr.inverse(x0),
            method="lbfgs",
            maxiter=int(task["maxiter"]),
            tol=float(task["tol"]),
        )
        z = res.x if np.isfinite(res.fun) else res.best_x
        x = tr.forward(z)
        loss, _ = objective(x)
        st = objective.last_state
        term = objective.ecg_term
        ecg = corr = None
        if term is not None:
            ecg = objective.last_ecg.signals
            corr = lead_correlations(ecg, term.target)
        nf = -1
        if isinstance(model.sites, CandidateSites):
            nf = int(model.sites.firing(x[model.n_velocity :], st.times).sum())
        return EnsembleMember(
            index=int(task["member"]),
            seed=int(task["seed"]),
            x0=x0,
            x=x,
            loss=float(loss),
            values=dict(objective.last_values),
            times=np.asarray(st.times, dtype=float),
            ecg=ecg,
            ecg_correlation=corr,
            n_firing=nf,
            nit=int(res.nit),
            nfev=int(res.nfev),
            message=str(res.message),
            wall_time_s=time.perf_counter() - t0,
        )
    finally:
        numba.set_num_threads(old)


# --------------------------------------------------------------------------- statistics


def _weighted_median(values: np.ndarray, w: np.ndarray) -> np.ndarray:
    order = np.argsort(values, axis=0)
    v = np.take_along_axis(values, order, axis=0)
    cw = np.cumsum(w[order], axis=0)
    k = np.argmax(cw >= 0.5 * cw[-1:], axis=0)
    return v[k, np.arange(values.shape[1])]


def ensemble_statistics(maps: ArrayLike, weights: ArrayLike | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, median and standard deviation over members, per column.

    Parameters
    ----------
    maps : array_like, shape (n_members, n)
    weights : array_like, shape (n_members,), optional
        Non-negative member weights (normalised here); default uniform.

    Returns
    -------
    mean, median, std : ndarray (n,)
        ``std`` is the unbiased weighted standard deviation
        ``sqrt(sum w (x - mean)^2 / (1 - sum w^2))`` (the sample standard
        deviation for uniform weights; 0 for a single member).
    """
    X = as_float_array("maps", maps)
    if X.ndim != 2 or X.shape[0] == 0:
        raise InvalidInputError(f"maps must have shape (n_members, n), got {X.shape}")
    m = X.shape[0]
    w = np.full(m, 1.0 / m) if weights is None else as_float_array("weights", weights, shape=(m,))
    if np.any(w < 0) or w.sum() <= 0:
        raise InvalidInputError("weights must be >= 0 with a positive sum")
    w = w / w.sum()
    mean = w @ X
    denom = 1.0 - float(np.sum(w * w))
    var = (w @ (X - mean) ** 2) / denom if denom > 1e-12 else np.zeros(X.shape[1])
    return mean, _weighted_median(X, w), np.sqrt(np.maximum(var, 0.0))


@dataclass(frozen=True, eq=False)
class Calibration(Result):
    """How well an ensemble's spread predicts its actual error (:meth:`TwinEnsemble.calibration`).

    Attributes
    ----------
    coverage_1sigma, coverage_2sigma : float
        Fraction of nodes with ``|mean - truth| <= k * sigma`` (a calibrated
        Gaussian prediction gives 0.683 and 0.954).
    error_mean_ms : float
        Mean over nodes of ``|mean - truth|`` (ms).
    error_max_ms : float
    sigma_mean_ms : float
        Mean predicted standard deviation (ms), inflation included.
    rms_z : float
        ``sqrt(mean((mean - truth)^2 / sigma^2))`` over nodes with sigma > 0
        (1 when calibrated; > 1: over-confident).
    inflation : float
        Factor applied to the ensemble standard deviation.
    n_nodes : int
    """

    coverage_1sigma: float
    coverage_2sigma: float
    error_mean_ms: float
    error_max_ms: float
    sigma_mean_ms: float
    rms_z: float
    inflation: float
    n_nodes: int

    def as_dict(self, prefix: str = "") -> dict:
        return {prefix + f.name: getattr(self, f.name) for f in self.__dataclass_fields__.values()}


def calibration_of(mean, std, true_times, *, inflation: float = 1.0) -> Calibration:
    """:class:`Calibration` of a prediction ``mean +- inflation * std`` against ``true_times``."""
    mu = as_float_array("mean", mean, shape=(None,))
    sd = as_float_array("std", std, shape=mu.shape) * as_scalar("inflation", inflation, positive=True)
    t = as_float_array("true_times", true_times, shape=mu.shape)
    e = np.abs(mu - t)
    pos = sd > 0
    rz = float(np.sqrt(np.mean((e[pos] / sd[pos]) ** 2))) if pos.any() else float("inf")
    return Calibration(
        coverage_1sigma=float(np.mean(e <= sd)),
        coverage_2sigma=float(np.mean(e <= 2 * sd)),
        error_mean_ms=float(e.mean()),
        error_max_ms=float(e.max()),
        sigma_mean_ms=float(sd.mean()),
        rms_z=rz,
        inflation=float(inflation),
        n_nodes=int(mu.size),
    )


@dataclass(frozen=True, eq=False)
class TwinEnsemble(Result):
    """An ensemble of twin fits and its statistics.

    Attributes
    ----------
    members : tuple of EnsembleMember
        Successful members, by index.
    weights : ndarray (n_members,)
        Normalised member weights used for the statistics.
    weighting : str
        How ``weights`` were set: ``"uniform"`` or
        ``"loss (T = ...)"`` for ``w ∝ exp(-(L - min L) / T)``.
    mean, median, std : ndarray (n_points,)
        Activation statistics over members (ms).
    inflation : float
        Factor applied to ``std`` in :meth:`calibration`, :attr:`sigma` and the
        outputs (1 = the raw spread).
    ecg_mean, ecg_std : ndarray (n_leads, n_samples) or None
        Member-averaged ECG and its spread (mV).
    target_ecg : ndarray or None
        The ECG the members were fitted to.
    lead_names : tuple of str
    failed : dict
        Member index -> traceback of members that raised.
    n_workers : int
    wall_time_s : float
    from_store : int
        Members read from the store (finished by an earlier call).
    """

    members: tuple
    weights: np.ndarray
    weighting: str
    mean: np.ndarray
    median: np.ndarray
    std: np.ndarray
    inflation: float
    ecg_mean: np.ndarray | None
    ecg_std: np.ndarray | None
    target_ecg: np.ndarray | None
    lead_names: tuple
    failed: dict
    n_workers: int
    wall_time_s: float
    from_store: int

    @property
    def n_members(self) -> int:
        return len(self.members)

    @property
    def sigma(self) -> np.ndarray:
        """Predicted standard deviation per node, ``inflation * std`` (ms)."""
        return self.inflation * self.std

    @property
    def losses(self) -> np.ndarray:
        return np.array([m.loss for m in self.members])

    @property
    def maps(self) -> np.ndarray:
        """Member activation maps, shape (n_members, n_points) (ms)."""
        return np.stack([m.times for m in self.members])

    @property
    def best(self) -> EnsembleMember:
        """The member with the lowest loss."""
        return self.members[int(np.argmin(self.losses))]

    @property
    def ecg_correlation(self) -> np.ndarray | None:
        """Correlation of the member-averaged ECG with the target per lead."""
        if self.ecg_mean is None or self.target_ecg is None:
            return None
        from .ecg import lead_correlations

        return lead_correlations(self.ecg_mean, self.target_ecg)

    def reweighted(self, weighting: str = "uniform", *, temperature: float | None = None, inflation: float | None = None) -> TwinEnsemble:
        """The same members with other weights (and/or inflation): see :func:`fit_ensemble`."""
        return _assemble(
            self.members,
            self.target_ecg,
            self.lead_names,
            weighting,
            temperature,
            self.inflation if inflation is None else inflation,
            self.failed,
            self.n_workers,
            self.wall_time_s,
            self.from_store,
        )

    def calibration(self, true_times: ArrayLike | None, *, inflation: float | None = None) -> Calibration:
        """Coverage of the truth by ``mean +- k sigma`` and the error of the mean.

        Parameters
        ----------
        true_times : array_like (n_points,)
            The true activation map (ms), known in synthetic studies.
        inflation : float, optional
            Override :attr:`inflation`.

        Returns
        -------
        Calibration
        """
        return calibration_of(
            self.mean, self.std, true_times, inflation=self.inflation if inflation is None else inflation
        )

    def write_vtu(self, path: str | os.PathLike, heart: BiventricularMesh, *, true_times: ArrayLike | None = None, members: bool = True) -> Path:
        """Mesh with ``activation_mean``, ``_median``, ``_std`` (inflated), per-member
        maps (``member_XX``) and, with ``true_times``, ``activation_true``,
        ``activation_error`` (mean - truth) and ``z_score``.
        """
        from physim.io import write_mesh

        pd = {
            "activation_mean": self.mean,
            "activation_median": self.median,
            "activation_std": self.sigma,
        }
        if true_times is not None:
            t = as_float_array("true_times", true_times, shape=self.mean.shape)
            pd["activation_true"] = t
            pd["activation_error"] = self.mean - t
            with np.errstate(divide="ignore", invalid="ignore"):
                pd["z_score"] = np.where(self.sigma > 0, (self.mean - t) / self.sigma, 0.0)
        if members:
            for m in self.members:
                pd[f"member_{m.index:02d}"] = m.times
        if hasattr(heart, "point_data"):
            pd.update(heart.point_data())
        cells = {"tetra": np.asarray(heart.tets)}
        cd = {"region": np.asarray(heart.region)} if hasattr(heart, "region") else None
        return write_mesh(path, np.asarray(heart.points), cells, point_data=pd, cell_data=cd)

    def write_ecg_csv(self, path: str | os.PathLike, *, dt: float = 1.0, t0: float = 0.0) -> Path:
        """ECGs as CSV: ``time (ms)``, then per lead ``<lead> target (mV)``, ``<lead> mean (mV)``,
        ``<lead> std (mV)`` and ``<lead> member <k> (mV)`` for each member."""
        from physim.viz import write_csv

        if self.ecg_mean is None:
            raise InvalidInputError("this ensemble has no ECG (its objective has no ECG term)")
        n = self.ecg_mean.shape[1]
        cols = {"time (ms)": t0 + dt * np.arange(n)}
        for i, name in enumerate(self.lead_names):
            if self.target_ecg is not None:
                cols[f"{name} target (mV)"] = self.target_ecg[i]
            cols[f"{name} mean (mV)"] = self.ecg_mean[i]
            cols[f"{name} std (mV)"] = self.ecg_std[i]
            for m in self.members:
                cols[f"{name} member {m.index:02d} (mV)"] = m.ecg[i]
        return write_csv(path, cols)


def _weights(losses: np.ndarray, weighting: str, temperature):
    if weighting == "uniform":
        return np.full(losses.size, 1.0 / losses.size), "uniform"
    if weighting == "loss":
        T = as_scalar("temperature", temperature, positive=True) if temperature is not None else None
        if T is None:
            d = losses - losses.min()
            T = float(np.median(d)) if np.median(d) > 0 else 1.0
        w = np.exp(-(losses - losses.min()) / T)
        return w / w.sum(), f"loss (w ∝ exp(-(L - min L) / T), T = {T:.4g})"
    raise InvalidInputError(f"weighting must be 'uniform' or 'loss', got {weighting!r}")


def _assemble(
    members, target, lead_names, weighting, temperature, inflation, failed, n_workers, wall, from_store
):
    members = tuple(sorted(members, key=lambda m: m.index))
    if not members:
        raise InvalidInputError(
            "no ensemble member succeeded: " + "; ".join(str(v)[-300:] for v in failed.values())
        )
    losses = np.array([m.loss for m in members])
    w, desc = _weights(losses, weighting, temperature)
    mean, med, std = ensemble_statistics(np.stack([m.times for m in members]), w)
    ecg_mean = ecg_std = None
    if members[0].ecg is not None:
        E = np.stack([m.ecg for m in members])
        flat_mean, _, flat_std = ensemble_statistics(E.reshape(len(members), -1), w)
        ecg_mean, ecg_std = flat_mean.reshape(E.shape[1:]), flat_std.reshape(E.shape[1:])
    return TwinEnsemble(
        members=members,
        weights=w,
        weighting=desc,
        mean=mean,
        median=med,
        std=std,
        inflation=as_scalar("inflation", inflation, positive=True),
        ecg_mean=ecg_mean,
        ecg_std=ecg_std,
        target_ecg=target,
        lead_names=tuple(lead_names),
        failed=dict(failed),
        n_workers=int(n_workers),
        wall_time_s=float(wall),
        from_store=int(from_store),
    )


def _problem_key(model, objective) -> str:
    """A stable digest of what the members fit (so a store is never reused for another problem)."""
    from physim.distributed import task_key

    parts = {
        "points": np.asarray(model.mesh.points),
        "tets": np.asarray(model.mesh.tets),
        "fibers": np.asarray(model.fibers),
        "lower": np.asarray(model.lower),
        "upper": np.asarray(model.upper),
        "velocity": type(model.velocity).__name__,
        "sites": type(model.sites).__name__,
        "site_nodes": np.asarray(getattr(model.sites, "nodes", [])),
        "sparsity": float(getattr(model.sites, "sparsity", 0.0)),
        "count_prior": repr(getattr(model.sites, "count_prior", None)),
        "velocity_prior": repr(getattr(model.velocity, "prior", None)),
        "weights": np.asarray(objective.weights),
        "init_radius": float(model.init_radius),
        "tol": model.tol,
    }
    for i, t in enumerate(objective.terms):
        if isinstance(t, ECGTerm):
            parts[f"term{i}"] = {
                "target": np.asarray(t.target),
                "lead_weights": np.asarray(t.lead_field.weights),
                "lead_matrix": np.asarray(t.lead_field.leads.matrix),
                "ap": repr(t.action_potential),
                "apd": np.asarray(t.action_potential.apd_ms, dtype=float),
                "loss": t.loss_name,
                "options": repr(sorted(t.loss_options.items())),
                "dt": t.dt,
                "t0": t.t0,
            }
        else:
            parts[f"term{i}"] = {
                k: np.asarray(v) if isinstance(v, np.ndarray) else repr(v) for k, v in vars(t).items()
            }
    return task_key(parts)


def fit_ensemble(
    model: TwinModel,
    objective: MultimodalObjective,
    *,
    n_members: int = 16,
    seed: int = 0,
    scheduler: Any = None,
    workers: int | None = None,
    store: str | os.PathLike | None = None,
    maxiter: int = 200,
    tol: float = 1e-12,
    start: StartDistribution | Callable | TwinEnsemble | ArrayLike | None = None,
    weighting: str = "uniform",
    temperature: float | None = None,
    inflation: float = 1.0,
    threads: int = 1,
    progress: bool = False,
    retries: int = 1,
) -> TwinEnsemble:
    """Fit ``n_members`` twins from independent random starts and collect their statistics.

    Parameters
    ----------
    model : TwinModel
    objective : MultimodalObjective
        From :func:`~physim.cardiac.objectives.multimodal_objective`,
        :func:`~physim.cardiac.objectives.ecg_objective` or
        :func:`~physim.cardiac.objectives.activation_objective` on ``model``.
    n_members : int
        Number of fits (default 16).
    seed : int
        Ensemble seed: member ``m`` starts from ``default_rng([seed, m])``.
    scheduler, workers, store, progress, retries
        As for :func:`physim.distributed.run_sweep`: ``None`` = an embedded
        ``LocalCluster`` with ``workers`` processes, an address or scheduler
        file, a ``distributed.Client``, or ``"serial"``; ``store`` is a
        directory where every finished member is kept (a rerun fits only the
        missing ones).
    maxiter, tol : int, float
        L-BFGS iterations and tolerance per member (in the variables of
        ``model.transform()``).
    start : StartDistribution, callable, TwinEnsemble or array_like, optional
        How starts are drawn; a callable is ``start(model, rng) -> x0``
        (picklable). Default :class:`StartDistribution()`. An array of shape
        ``(n_members, n_params)`` gives every member's start explicitly
        (clipped strictly inside the bounds), and a :class:`TwinEnsemble`
        starts each member from the parameters of the corresponding member
        of that ensemble: a fit continued with more data.
    weighting : {"uniform", "loss"}
        Member weights of the statistics: equal, or ``exp(-(L_m - min L) / T)``
        (``T = temperature``; default the median loss excess over the best member).
    temperature : float, optional
    inflation : float
        Factor on the ensemble standard deviation (1 = the raw spread); choose
        it on studies other than the one evaluated.
    threads : int
        Numba threads per member (default 1: members are the parallel unit and
        results do not depend on the scheduler).

    Returns
    -------
    TwinEnsemble
    """
    from physim.distributed import run_sweep, task_key

    if not isinstance(objective, MultimodalObjective):
        raise InvalidInputError(
            f"objective must be a MultimodalObjective (multimodal_objective, ecg_objective, ...), "
            f"got {type(objective).__name__}"
        )
    if objective.model is not model:
        raise InvalidInputError("objective was built for another model")
    n_members = int(n_members)
    if n_members < 1:
        raise InvalidInputError(f"n_members must be >= 1, got {n_members}")
    if int(maxiter) < 0:
        raise InvalidInputError(f"maxiter must be >= 0, got {maxiter}")
    if int(threads) < 1:
        raise InvalidInputError(f"threads must be >= 1, got {threads}")
    start = StartDistribution() if start is None else start
    if isinstance(start, TwinEnsemble):
        start = np.array([m.x for m in start.members])
    if not (isinstance(start, StartDistribution) or callable(start)):
        try:
            rows = np.array(start, dtype=float)
        except (TypeError, ValueError):
            raise InvalidInputError(
                "start must be a StartDistribution, a callable, a TwinEnsemble or an array of starts, "
                f"got {type(start).__name__}"
            ) from None
        if rows.shape != (n_members, model.n_params):
            raise InvalidInputError(
                f"explicit starts must have shape (n_members, n_params) = ({n_members}, {model.n_params}), "
                f"got {rows.shape}"
            )
        if not np.all(np.isfinite(rows)):
            raise InvalidInputError("explicit starts must be finite")
        start = _strictly_inside(model, rows)
    _weights(np.zeros(1), weighting, temperature)  # validate early
    key = _problem_key(model, objective)
    if isinstance(start, StartDistribution):
        start_key = repr(start)
    elif isinstance(start, np.ndarray):
        start_key = "rows:" + task_key(start)
    else:
        start_key = getattr(start, "__qualname__", "start")
    tasks = [
        {
            "member": m,
            "seed": int(seed),
            "maxiter": int(maxiter),
            "tol": float(tol),
            "threads": int(threads),
            "start": start_key,
            "problem": key,
        }
        for m in range(n_members)
    ]
    shared = {"model": model, "objective": objective, "start": start}
    res = run_sweep(
        _fit_member,
        tasks,
        scheduler=scheduler,
        workers=workers,
        store=store,
        progress=progress,
        retries=retries,
        shared=shared,
    )
    members = [r for r in res.results if r is not None]
    if res.interrupted and not members:
        # Ctrl-C before any member finished: an interruption, not a failure of the members
        raise KeyboardInterrupt("ensemble interrupted before any member finished")
    for i, tb in res.failed.items():
        logger.warning("ensemble member %d failed:\n%s", i, tb)
    term = objective.ecg_term
    target = None if term is None else readonly(term.target)
    names = () if term is None else term.lead_field.leads.lead_names
    return _assemble(
        members,
        target,
        names,
        weighting,
        temperature,
        inflation,
        res.failed,
        res.n_workers,
        res.wall_time_s,
        res.from_store,
    )
