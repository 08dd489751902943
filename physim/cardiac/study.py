"""Synthetic twin studies: a tagged heart, a ground truth drawn from a seed, and the data it makes.

A :class:`SyntheticStudy` holds everything a digital-twin experiment with a
known answer needs: the heart mesh, rule-based fibres, the 12-lead lead field,
the action-potential model, a :class:`GroundTruth` (initiation sites, their
times and the conduction velocities), the true activation map, the true and
the noisy 12-lead ECG, and noisy activation times at endocardial points (an
electro-anatomical map). Methods score fitted activation maps against the
truth. Any tagged biventricular mesh works (:func:`physim.cardiac.heart.load_biventricular`
accepts a named size or the path of a ``.vtu`` written by ``save_biventricular``).

::

    from physim.cardiac import load_biventricular
    from physim.cardiac.study import GroundTruth, SyntheticStudy

    heart = load_biventricular("65k")
    truth = GroundTruth.draw(heart, seed=0)             # sites, times, velocities from the seed
    study = SyntheticStudy(heart, truth, seed=0)        # 1 % ECG noise drawn from the seed too
    study.target_ecg                                    # (12, 500) mV, what a fit sees
    nodes, times = study.endocardial_points(10)         # noisy mapping points (ms)
    study.activation_error(fitted_times)                # |fitted - true| per node (ms)

How a truth is drawn (:meth:`GroundTruth.draw`, the same for every method
compared on it): the number of sites uniformly from :attr:`TruthPrior.n_sites`
(6-10, Camps et al.'s range of root nodes), their nodes uniformly among the
nodes of the subendocardial layer (``depth`` mm, default 2.5; Grandits et al.)
with a minimum distance between sites, their times uniformly in
:attr:`TruthPrior.time_range_ms` with the earliest at 0 ms, the fibre velocity
and the cross-fibre / fibre ratio uniformly in their ranges. The noise of the
data is drawn from the same seed through separate streams.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from physim._result import Result, readonly
from physim._validate import as_float_array, as_index_array, as_scalar
from physim.errors import InvalidInputError

from . import ecg as E
from . import twin as T
from .fibers import rule_based
from .heart import LANDMARKS, BiventricularMesh, subendocardial_nodes

if TYPE_CHECKING:
    import argparse
    import os
    from pathlib import Path

    from .twin import TwinModel

__all__ = [
    "TruthPrior",
    "GroundTruth",
    "SyntheticStudy",
    "N_SAMPLES",
    "DT",
    "NOISE_FRACTION",
    "add_mesh_argument",
    "load_heart",
]

#: ECG sampling of the studies: 500 samples at 1 ms
N_SAMPLES, DT = 500, 1.0
#: default ECG noise: Gaussian, this fraction of each lead's peak amplitude
NOISE_FRACTION = 0.01

# independent random streams derived from a study's seed
_STREAM_TRUTH, _STREAM_ECG_NOISE, _STREAM_POINTS = 12, 2, 3


@dataclass(frozen=True)
class TruthPrior:
    """How :meth:`GroundTruth.draw` draws a ground truth (uniform in each range).

    Attributes
    ----------
    n_sites : (int, int)
        Inclusive range of the number of initiation sites (default 6-10).
    time_range_ms : (float, float)
        Range of the site times (ms); the earliest site is shifted to 0 ms.
    v_fiber : (float, float)
        Range of the fibre velocity (mm/ms).
    cross_ratio : (float, float)
        Range of the cross-fibre / fibre velocity ratio.
    depth : float
        Thickness of the subendocardial layer the sites lie in (mm).
    min_separation : float
        Minimum distance between two sites (mm).
    """

    n_sites: tuple = (6, 10)
    time_range_ms: tuple = (0.0, 15.0)
    v_fiber: tuple = (0.5, 0.7)
    cross_ratio: tuple = (0.35, 0.55)
    depth: float = 2.5
    min_separation: float = 20.0

    def __post_init__(self):
        lo, hi = (int(v) for v in self.n_sites)
        if not 1 <= lo <= hi:
            raise InvalidInputError(f"TruthPrior.n_sites must be 1 <= low <= high, got {self.n_sites}")
        object.__setattr__(self, "n_sites", (lo, hi))
        for name in ("time_range_ms", "v_fiber", "cross_ratio"):
            a, b = (float(v) for v in getattr(self, name))
            if not (np.isfinite(a) and np.isfinite(b) and a <= b):
                raise InvalidInputError(f"TruthPrior.{name} must be a finite (low, high) pair, got {(a, b)}")
            object.__setattr__(self, name, (a, b))
        if self.v_fiber[0] <= 0 or self.cross_ratio[0] <= 0:
            raise InvalidInputError("TruthPrior velocities and ratios must be > 0")
        object.__setattr__(self, "depth", as_scalar("depth", self.depth, nonnegative=True))
        object.__setattr__(
            self, "min_separation", as_scalar("min_separation", self.min_separation, nonnegative=True)
        )


@dataclass(frozen=True, eq=False)
class GroundTruth(Result):
    """Initiation sites, their times and the conduction velocities of a synthetic heart.

    Attributes
    ----------
    nodes : ndarray, int64, shape (k,)
        Mesh nodes of the initiation sites.
    times : ndarray, float64, shape (k,)
        Their activation times (ms).
    v_fiber, v_cross : float
        Fibre and cross-fibre velocities (mm/ms).
    names : tuple of str
        A label per site.
    seed : int or None
        Seed it was drawn from (None for a fixed truth).
    """

    nodes: np.ndarray
    times: np.ndarray
    v_fiber: float
    v_cross: float
    names: tuple = ()
    seed: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "nodes", readonly(as_index_array("nodes", self.nodes, shape=(None,))))
        object.__setattr__(
            self, "times", readonly(as_float_array("times", self.times, shape=(self.nodes.size,)))
        )
        if self.nodes.size == 0:
            raise InvalidInputError("a ground truth needs at least one site")
        object.__setattr__(self, "v_fiber", as_scalar("v_fiber", self.v_fiber, positive=True))
        object.__setattr__(self, "v_cross", as_scalar("v_cross", self.v_cross, positive=True))
        names = tuple(self.names) or tuple(f"site {i}" for i in range(self.nodes.size))
        if len(names) != self.nodes.size:
            raise InvalidInputError(f"names has {len(names)} entries for {self.nodes.size} sites")
        object.__setattr__(self, "names", names)
        super().__post_init__()

    @property
    def n_sites(self) -> int:
        return int(self.nodes.size)

    @classmethod
    def draw(cls, heart: BiventricularMesh, seed: int, prior: TruthPrior | None = None) -> GroundTruth:
        """Draw a ground truth from ``seed`` (see the module docstring for how).

        Parameters
        ----------
        heart : BiventricularMesh
        seed : int
        prior : TruthPrior, optional

        Returns
        -------
        GroundTruth
        """
        if not isinstance(heart, BiventricularMesh):
            raise InvalidInputError(f"heart must be a BiventricularMesh, got {type(heart).__name__}")
        pr = TruthPrior() if prior is None else prior
        rng = np.random.default_rng([int(seed), _STREAM_TRUTH])
        k = int(rng.integers(pr.n_sites[0], pr.n_sites[1] + 1))
        layer = subendocardial_nodes(heart, pr.depth)
        chosen: list[int] = []
        pts = heart.points
        for n in rng.permutation(layer):
            if all(np.linalg.norm(pts[n] - pts[c]) >= pr.min_separation for c in chosen):
                chosen.append(int(n))
                if len(chosen) == k:
                    break
        if len(chosen) < k:
            raise InvalidInputError(
                f"could not place {k} sites {pr.min_separation} mm apart in the subendocardial layer"
            )
        times = rng.uniform(*pr.time_range_ms, k)
        times -= times.min()
        vf = float(rng.uniform(*pr.v_fiber))
        ratio = float(rng.uniform(*pr.cross_ratio))
        names = tuple(("RV" if heart.rv_endo[heart.nearest_node(pts[n], _endo_mask(heart))] else "LV") + f" site {i}"
                      for i, n in enumerate(chosen))  # fmt: skip
        return cls(np.array(chosen), times, vf, vf * ratio, names, int(seed))

    @classmethod
    def landmarks(cls, heart: BiventricularMesh, candidates: ArrayLike | None = None) -> GroundTruth:
        """The fixed truth of ``twin_ecg_fit`` and ``twin_activation_fit``.

        Five named endocardial sites (:data:`physim.cardiac.heart.LANDMARKS`)
        firing at 0, 2, 4, 8 and 5 ms; velocities 0.6 / 0.3 mm/ms. With
        ``candidates`` (node indices) each site snaps to the nearest candidate,
        so the truth is one parameter set of a model with those candidates.
        """
        spec = (("LV septum", 0.0), ("LV anterior", 2.0), ("LV posterior", 4.0), ("LV apex", 8.0),
                ("RV free wall", 5.0))  # fmt: skip
        if candidates is None:
            nodes = [heart.nearest_node(LANDMARKS[n][0], LANDMARKS[n][1]) for n, _ in spec]
        else:
            cand = as_index_array("candidates", candidates, upper=heart.n_points, shape=(None,))
            cp = heart.points[cand]
            nodes = [
                int(cand[np.argmin(np.linalg.norm(cp - np.asarray(LANDMARKS[n][0]), axis=1))])
                for n, _ in spec
            ]
        return cls(np.array(nodes), np.array([t for _, t in spec]), 0.6, 0.3, tuple(n for n, _ in spec), None)


def _endo_mask(heart):
    return heart.lv_endo | heart.rv_endo


@dataclass(eq=False)
class SyntheticStudy:
    """A heart, its ground truth and the data a twin fit sees.

    Parameters
    ----------
    heart : BiventricularMesh
    truth : GroundTruth
    seed : int
        Seed of the ECG noise and of :meth:`endocardial_points` (separate streams).
    noise_fraction : float
        ECG noise: Gaussian with this fraction of each lead's peak amplitude (default 0.01).
    n_samples, dt : int, float
        ECG sampling (default 500 samples at 1 ms).
    fibers : ndarray (n_tets, 3), optional
        Fibre directions; default :func:`physim.cardiac.fibers.rule_based` (+60 / -60 degrees).

    Attributes
    ----------
    heart, truth, mesh (TetMesh), fibers (n_tets, 3)
    lead_field : LeadField
        Standard 12-lead layout (:func:`physim.cardiac.ecg.standard_12_lead`).
    action_potential : ActionPotential
        Transmural APD gradient (270 ms at the endocardium to 240 ms at the
        epicardium), which makes the T-waves upright.
    true_times : ndarray (n_points,)
        True activation map (ms).
    true_ecg, target_ecg : ndarray (12, n_samples)
        Noise-free and noisy 12-lead ECG (mV).
    """

    heart: BiventricularMesh
    truth: GroundTruth
    seed: int = 0
    noise_fraction: float = NOISE_FRACTION
    n_samples: int = N_SAMPLES
    dt: float = DT
    fibers: np.ndarray | None = None
    mesh: object = field(init=False, repr=False)
    lead_field: E.LeadField = field(init=False, repr=False)
    action_potential: E.ActionPotential = field(init=False, repr=False)
    true_times: np.ndarray = field(init=False, repr=False)
    true_ecg: np.ndarray = field(init=False, repr=False)
    target_ecg: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        from physim.eikonal import conduction_tensor, solve

        h = self.heart
        if not isinstance(h, BiventricularMesh):
            raise InvalidInputError(f"heart must be a BiventricularMesh, got {type(h).__name__}")
        if not isinstance(self.truth, GroundTruth):
            raise InvalidInputError(f"truth must be a GroundTruth, got {type(self.truth).__name__}")
        if int(self.truth.nodes.max()) >= h.n_points:
            raise InvalidInputError("the truth's site nodes are not nodes of this heart")
        self.noise_fraction = as_scalar("noise_fraction", self.noise_fraction, nonnegative=True)
        self.dt = as_scalar("dt", self.dt, positive=True)
        self.fibers = readonly(
            rule_based(h).fibers if self.fibers is None else as_float_array("fibers", self.fibers)
        )
        self.mesh = h.tet_mesh()
        D = conduction_tensor(self.fibers, self.truth.v_fiber, self.truth.v_cross)
        self.true_times = readonly(solve(self.mesh, D, self.truth.nodes, self.truth.times).times)
        self.lead_field = E.lead_field(h, E.standard_12_lead(h), E.intracellular_conductivity(self.fibers))
        self.action_potential = E.ActionPotential(apd_ms=270.0 - 30.0 * np.clip(h.transmural, 0, 1))
        self.true_ecg = readonly(self.ecg(self.true_times))
        rng = np.random.default_rng([int(self.seed), _STREAM_ECG_NOISE])
        peak = np.abs(self.true_ecg).max(axis=1, keepdims=True)
        noise = self.noise_fraction * peak * rng.standard_normal(self.true_ecg.shape)
        self.target_ecg = readonly(self.true_ecg + noise)

    # ------------------------------------------------------------------ data

    def ecg(self, times: ArrayLike) -> np.ndarray:
        """12-lead ECG (mV) of an activation map, shape (12, n_samples)."""
        return E.simulate_ecg(
            self.lead_field, times, model=self.action_potential, n_samples=self.n_samples, dt=self.dt
        ).signals

    @property
    def endocardial_nodes(self) -> np.ndarray:
        """LV and RV endocardial nodes off the base (where a mapping catheter records)."""
        h = self.heart
        return np.nonzero((h.lv_endo | h.rv_endo) & ~h.base)[0]

    def endocardial_points(self, n: int, noise_ms: float = 1.0, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Noisy activation times at ``n`` random endocardial nodes (an electro-anatomical map).

        Parameters
        ----------
        n : int
            Number of points.
        noise_ms : float
            Standard deviation of the Gaussian measurement noise (ms).
        seed : int, optional
            Default: the study's seed (a separate stream from the ECG noise).

        Returns
        -------
        nodes : ndarray, int64, shape (n,), sorted
        times : ndarray, float64, shape (n,)  (ms)
        """
        endo = self.endocardial_nodes
        n = int(n)
        if not 1 <= n <= endo.size:
            raise InvalidInputError(f"n must be in [1, {endo.size}], got {n}")
        s = self.seed if seed is None else int(seed)
        rng = np.random.default_rng([s, _STREAM_POINTS])
        nodes = np.sort(rng.choice(endo, n, replace=False))
        times = self.true_times[nodes] + rng.normal(0.0, as_scalar("noise_ms", noise_ms, nonnegative=True), n)
        return nodes, times

    # ------------------------------------------------------------------ scoring

    def activation_error(self, times: ArrayLike) -> np.ndarray:
        """``|times - true_times|`` per node (ms), shape (n_points,)."""
        t = as_float_array("times", times, shape=(self.heart.n_points,))
        return np.abs(t - self.true_times)

    def fit_report(self, model: TwinModel, x: ArrayLike, target: ArrayLike | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
        """The figures of a fit of ``model`` at parameters ``x`` against the truth.

        Parameters
        ----------
        model : TwinModel
            On this study's mesh.
        x : array_like (n_params,)
            Fitted parameters.
        target : ndarray (12, n_samples), optional
            The ECG the fit saw (default :attr:`target_ecg`).

        Returns
        -------
        report : dict
            ``activation_error_mean_ms``, ``_max_ms``, ``_p95_ms``, total
            activation times, ``ecg_correlation_min`` and per lead (against
            ``target``), ``ecg_correlation_min_vs_noise_free``, the fitted
            velocities (mm/ms) and, for candidate sites, how many fire.
        times : ndarray (n_points,)
            Fitted activation map (ms).
        ecg : ndarray (12, n_samples)
            Its ECG (mV).
        """
        x = as_float_array("x", x, shape=(model.n_params,))
        tgt = (
            self.target_ecg if target is None else as_float_array("target", target, shape=self.true_ecg.shape)
        )
        st = model.forward(x)
        fitted = np.asarray(st.times)
        err = self.activation_error(fitted)
        ecg = self.ecg(fitted)
        corr = E.lead_correlations(ecg, tgt)
        corr_truth = E.lead_correlations(ecg, self.true_ecg)
        rep = {
            "activation_error_mean_ms": float(err.mean()),
            "activation_error_max_ms": float(err.max()),
            "activation_error_p95_ms": float(np.percentile(err, 95)),
            "total_activation_time_true_ms": float(self.true_times.max()),
            "total_activation_time_fitted_ms": float(fitted.max()),
            "ecg_correlation_min": float(np.min(corr)),
            "ecg_correlation_per_lead": dict(zip(self.lead_field.leads.lead_names, corr.tolist())),
            "ecg_correlation_min_vs_noise_free": float(np.min(corr_truth)),
            "v_fiber_mm_per_ms": float(np.mean(st.v_fiber)),
            "v_cross_mm_per_ms": float(np.mean(st.v_cross)),
        }
        if isinstance(model.sites, T.CandidateSites):
            ps = x[model.n_velocity :]
            rep["fitted_sites_firing"] = int(model.sites.firing(ps, fitted).sum())
            rep["fitted_site_time_range_ms"] = [float(ps.min()), float(ps.max())]
        return rep, fitted, ecg

    def write_fit_vtu(self, path: str | os.PathLike, fitted: ArrayLike, candidate_nodes: ArrayLike | None = None, candidate_times: ArrayLike | None = None) -> Path:
        """Mesh with ``activation_true``, ``activation_fitted``, ``activation_error`` (fitted -
        true), ``candidate_site_time`` (NaN off the candidates), the heart's tags, fibres and regions."""
        from physim.io import write_mesh

        h = self.heart
        fitted = as_float_array("fitted", fitted, shape=(h.n_points,))
        site_time = np.full(h.n_points, np.nan)
        if candidate_nodes is not None:
            site_time[np.asarray(candidate_nodes)] = np.asarray(candidate_times, dtype=float)
        return write_mesh(
            path,
            h.points,
            {"tetra": h.tets},
            point_data={
                "activation_true": self.true_times,
                "activation_fitted": fitted,
                "activation_error": fitted - self.true_times,
                "candidate_site_time": site_time,
                **h.point_data(),
            },
            cell_data={"fibers": self.fibers, "region": h.region},
        )

    def true_parameters(self, model: TwinModel) -> np.ndarray:
        """The truth as a parameter vector of ``model`` when it can express it exactly.

        ``model`` must have :class:`~physim.cardiac.twin.GlobalVelocities` or
        :class:`~physim.cardiac.twin.AnisotropicVelocities` and
        :class:`~physim.cardiac.twin.CandidateSites` containing every true
        site; other candidates get ``t_max`` (dormant).

        Raises
        ------
        InvalidInputError
            The model cannot represent the truth.
        """
        vm, sm = model.velocity, model.sites
        if isinstance(vm, T.GlobalVelocities):
            pv = [self.truth.v_fiber, self.truth.v_cross]
        elif isinstance(vm, T.AnisotropicVelocities):
            pv = [self.truth.v_fiber, self.truth.v_cross / self.truth.v_fiber]
        else:
            raise InvalidInputError(f"cannot express the truth with {type(vm).__name__}")
        if not isinstance(sm, T.CandidateSites):
            raise InvalidInputError(f"cannot express the truth with {type(sm).__name__}")
        pos = {int(n): i for i, n in enumerate(sm.nodes)}
        missing = [int(n) for n in self.truth.nodes if int(n) not in pos]
        if missing:
            raise InvalidInputError(f"true site nodes {missing} are not candidate sites of the model")
        ps = np.array(sm.upper, dtype=float)
        for n, t in zip(self.truth.nodes, self.truth.times):
            ps[pos[int(n)]] = t
        return np.concatenate([pv, ps])


# --------------------------------------------------------------------------- scenario options


def add_mesh_argument(parser: argparse.ArgumentParser) -> None:
    """``--mesh SIZE|PATH`` for the twin scenarios (default 65k; 10k with ``--quick``).

    ``SIZE`` is a shipped size (``10k``, ``65k``) or ``large`` (generated on
    first use); ``PATH`` is a tagged ``.vtu`` written by
    :func:`physim.cardiac.heart.save_biventricular` (e.g. your own heart).
    """
    parser.add_argument(
        "--mesh",
        default=None,
        metavar="SIZE|PATH",
        help="heart: 10k, 65k, large, or a tagged .vtu written by save_biventricular "
        "(default 65k; 10k with --quick)",
    )


def load_heart(spec: str | None, quick: bool = False) -> tuple[BiventricularMesh, str]:
    """The heart of ``--mesh`` and its label (the size name or the file name)."""
    from pathlib import Path

    from .heart import load_biventricular

    spec = spec or ("10k" if quick else "65k")
    heart = load_biventricular(spec)
    label = spec if spec in ("10k", "65k", "large") else Path(spec).name
    return heart, label
