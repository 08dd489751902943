"""Cardiac digital twins: parametrised activation models with exact gradients.

A :class:`TwinModel` maps one flat parameter vector ``x`` to an activation map::

    x = [velocity parameters | site parameters]
      -> per-element fibre / cross-fibre velocities (v_f, v_c)       (VelocityModel)
      -> D = conduction_tensor(fibers, v_f, v_c)                       (mm²/ms²)
      -> sources, source times                                         (SiteModel)
      -> phi = solve(mesh, D, sources, source_times)                   (ms)

and pulls a cotangent ``dL/dphi`` back to ``dL/dx`` by chaining
:func:`physim.eikonal.adjoint` (to ``D``, source times and point-source
positions), :func:`physim.eikonal.conduction_tensor_vjp` (to velocities) and
each model's own vjp. Objective builders (:func:`activation_objective`,
:func:`ecg_objective`, :func:`multimodal_objective`, from
:mod:`physim.cardiac.objectives`) return ``fun(x) -> (value, grad)`` for
:func:`physim.optim.minimize`; :meth:`TwinModel.transform` gives the
:class:`physim.optim.Bounded` transform to optimise in unconstrained variables.

Initiation sites follow Geodesic-BP (Grandits et al., IEEE TBME 2024): many
candidate endocardial sites each carry an activation time; the activation map is
the minimum over sites of (time + travel time), so a site whose time is later
than the wave arriving from elsewhere changes nothing and gets a zero gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from physim._result import Result, readonly
from physim._validate import as_float_array, as_index_array, as_int, as_scalar
from physim.errors import InvalidInputError, InvalidTypeError, ShapeError

from .objectives import activation_objective, ecg_objective, multimodal_objective
from .priors import SiteCountPrior, VelocityPrior

if TYPE_CHECKING:
    from ..eikonal import EikonalGradient, TetMesh
    from ..optim import Bounded
    from .heart import BiventricularMesh

__all__ = [
    "VelocityModel",
    "GlobalVelocities",
    "AnisotropicVelocities",
    "RegionVelocities",
    "FieldVelocities",
    "SiteModel",
    "CandidateSites",
    "PointSites",
    "TwinModel",
    "TwinState",
    "activation_objective",
    "ecg_objective",
    "multimodal_objective",
    "heart_regions",
    "element_adjacency",
    "V_MIN",
    "V_MAX",
]

#: default velocity bounds (mm/ms)
V_MIN, V_MAX = 0.1, 2.0


# --------------------------------------------------------------------------- velocities


class VelocityModel:
    """Interface: parameters -> per-element fibre and cross-fibre velocities (mm/ms).

    Attributes ``n_params``, ``lower``, ``upper`` (bounds, shape (n_params,)),
    ``names`` (tuple of str).
    """

    n_params: int
    lower: np.ndarray
    upper: np.ndarray
    names: tuple

    def velocities(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        """``(v_fiber, v_cross)``, each (n_tets,) mm/ms."""
        raise NotImplementedError

    def vjp(self, p: np.ndarray, d_vf: np.ndarray, d_vc: np.ndarray) -> np.ndarray:  # pragma: no cover
        """Pull gradients w.r.t. per-element velocities back to the parameters."""
        raise NotImplementedError

    prior = None

    def regularization(self, p: np.ndarray) -> tuple[float, np.ndarray]:
        """Penalty added to objectives and its gradient: the ``prior`` if any, else zero."""
        if self.prior is None:
            return 0.0, np.zeros_like(p)
        return self.prior(p)


def _check_prior(prior, n):
    if prior is None:
        return None
    if not isinstance(prior, VelocityPrior):
        raise InvalidInputError(f"prior must be a VelocityPrior, got {type(prior).__name__}")
    if len(prior.mean) != n:
        raise InvalidInputError(f"prior has {len(prior.mean)} entries for {n} velocity parameters")
    return prior


def _bounds(n, lo, hi):
    lo = as_scalar("v_min", lo, positive=True)
    hi = as_scalar("v_max", hi, positive=True)
    if hi <= lo:
        raise InvalidInputError(f"v_max ({hi}) must exceed v_min ({lo})")
    return readonly(np.full(n, lo)), readonly(np.full(n, hi))


class GlobalVelocities(VelocityModel):
    """One fibre and one cross-fibre velocity for the whole heart: ``p = [v_f, v_c]``.

    Parameters
    ----------
    n_tets : int
    v_min, v_max : float
        Bounds (mm/ms), default 0.1 and 2.
    prior : VelocityPrior, optional
        Gaussian prior on ``(v_f, v_c)`` added to objectives.
    """

    def __init__(self, n_tets: int, v_min: float = V_MIN, v_max: float = V_MAX, *, prior: VelocityPrior | None = None) -> None:
        self.n_tets = as_int("n_tets", n_tets, lower=1)
        self.n_params = 2
        self.lower, self.upper = _bounds(2, v_min, v_max)
        self.names = ("v_fiber", "v_cross")
        self.prior = _check_prior(prior, 2)

    def velocities(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.full(self.n_tets, p[0]), np.full(self.n_tets, p[1])

    def vjp(self, p: np.ndarray, d_vf: np.ndarray, d_vc: np.ndarray) -> np.ndarray:
        return np.array([np.sum(d_vf), np.sum(d_vc)])


class AnisotropicVelocities(VelocityModel):
    """Global fibre velocity and anisotropy ratio: ``p = [v_f, r]``, ``v_c = r v_f``.

    Bounding ``r`` to ``[r_min, r_max]`` (default 0.1-1) encodes the prior that
    conduction is fastest along the fibres.

    Parameters
    ----------
    n_tets : int
    v_min, v_max : float
        Bounds of ``v_f`` (mm/ms).
    r_min, r_max : float
        Bounds of the ratio ``v_c / v_f``.
    prior : VelocityPrior, optional
        Gaussian prior on ``(v_f, r)`` added to objectives.
    """

    def __init__(
        self,
        n_tets: int,
        v_min: float = V_MIN,
        v_max: float = V_MAX,
        r_min: float = 0.1,
        r_max: float = 1.0,
        *,
        prior: VelocityPrior | None = None,
    ) -> None:
        self.n_tets = as_int("n_tets", n_tets, lower=1)
        self.n_params = 2
        lo, hi = _bounds(1, v_min, v_max)
        rl = as_scalar("r_min", r_min, positive=True)
        rh = as_scalar("r_max", r_max, positive=True)
        if rh <= rl:
            raise InvalidInputError(f"r_max ({rh}) must exceed r_min ({rl})")
        self.lower = readonly(np.array([lo[0], rl]))
        self.upper = readonly(np.array([hi[0], rh]))
        self.names = ("v_fiber", "cross_to_fiber_ratio")
        self.prior = _check_prior(prior, 2)

    def velocities(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.full(self.n_tets, p[0]), np.full(self.n_tets, p[0] * p[1])

    def vjp(self, p: np.ndarray, d_vf: np.ndarray, d_vc: np.ndarray) -> np.ndarray:
        sc = float(np.sum(d_vc))
        return np.array([np.sum(d_vf) + p[1] * sc, p[0] * sc])


class RegionVelocities(VelocityModel):
    """Fibre and cross-fibre velocity per region: ``p = [v_f(r0..), v_c(r0..)]``.

    Parameters
    ----------
    labels : int array_like, shape (n_tets,)
        Region of each element, in ``[0, n_regions)``.
    region_names : sequence of str, optional
    v_min, v_max : float
        Bounds (mm/ms).
    """

    def __init__(self, labels: ArrayLike, region_names: Sequence[str] | None = None, v_min: float = V_MIN, v_max: float = V_MAX) -> None:
        lab = np.asarray(labels)
        if lab.ndim != 1 or lab.size == 0:
            raise ShapeError(f"labels must have shape (n_tets,), got {lab.shape}")
        self.labels = readonly(as_index_array("labels", lab, upper=int(lab.max()) + 1))
        if self.labels.min() < 0:
            raise InvalidInputError("labels must be >= 0")
        self.n_regions = int(self.labels.max()) + 1
        counts = np.bincount(self.labels, minlength=self.n_regions)
        if np.any(counts == 0):
            raise InvalidInputError(f"region {int(np.argmin(counts))} has no element")
        names = (
            tuple(region_names)
            if region_names is not None
            else tuple(f"region{i}" for i in range(self.n_regions))
        )
        if len(names) != self.n_regions:
            raise ShapeError(f"region_names has {len(names)} names for {self.n_regions} regions")
        self.region_names = names
        self.n_params = 2 * self.n_regions
        self.lower, self.upper = _bounds(self.n_params, v_min, v_max)
        self.names = tuple(f"v_fiber[{n}]" for n in names) + tuple(f"v_cross[{n}]" for n in names)

    def velocities(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        R = self.n_regions
        return p[:R][self.labels], p[R:][self.labels]

    def vjp(self, p: np.ndarray, d_vf: np.ndarray, d_vc: np.ndarray) -> np.ndarray:
        R = self.n_regions
        return np.concatenate(
            [np.bincount(self.labels, d_vf, minlength=R), np.bincount(self.labels, d_vc, minlength=R)]
        )


def element_adjacency(tets: ArrayLike) -> np.ndarray:
    """Pairs of elements sharing a face, shape (n_pairs, 2) int64."""
    tets = as_index_array("tets", tets, shape=(None, 4))
    nt = tets.shape[0]
    local = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])
    f = np.sort(tets[:, local].reshape(-1, 3), axis=1)
    owner = np.repeat(np.arange(nt), 4)
    order = np.lexsort(f.T[::-1])
    fs = f[order]
    same = np.all(fs[1:] == fs[:-1], axis=1)
    i = np.nonzero(same)[0]
    return np.stack([owner[order[i]], owner[order[i + 1]]], axis=1)


class FieldVelocities(VelocityModel):
    """A velocity field with one fibre and one cross-fibre value per element.

    ``p = [v_f (n_tets), v_c (n_tets)]``, with the smoothness penalty
    ``R(p) = weight * mean over face-adjacent pairs (k, l) of
    ((v_f,k - v_f,l)^2 + (v_c,k - v_c,l)^2)`` (units of the objective per (mm/ms)^2).

    Parameters
    ----------
    tets : int array_like, shape (n_tets, 4)
    weight : float
        Regularisation weight (>= 0).
    v_min, v_max : float
        Bounds (mm/ms).
    """

    def __init__(self, tets: ArrayLike, weight: float = 1.0, v_min: float = V_MIN, v_max: float = V_MAX) -> None:
        tets = getattr(tets, "tets", tets)
        self.pairs = element_adjacency(tets)
        self.n_tets = int(np.asarray(tets).shape[0])
        self.weight = as_scalar("weight", weight, nonnegative=True)
        self.n_params = 2 * self.n_tets
        self.lower, self.upper = _bounds(self.n_params, v_min, v_max)
        self.names = ("v_fiber[k]",) * self.n_tets + ("v_cross[k]",) * self.n_tets

    def velocities(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return p[: self.n_tets], p[self.n_tets :]

    def vjp(self, p: np.ndarray, d_vf: np.ndarray, d_vc: np.ndarray) -> np.ndarray:
        return np.concatenate([d_vf, d_vc])

    def regularization(self, p: np.ndarray) -> tuple[float, np.ndarray]:
        if self.weight == 0 or self.pairs.shape[0] == 0:
            return 0.0, np.zeros_like(p)
        n = self.n_tets
        i, j = self.pairs[:, 0], self.pairs[:, 1]
        c = self.weight / self.pairs.shape[0]
        g = np.zeros_like(p)
        val = 0.0
        for off in (0, n):
            d = p[off + i] - p[off + j]
            val += c * float(d @ d)
            g[off : off + n] += 2 * c * (np.bincount(i, d, minlength=n) - np.bincount(j, d, minlength=n))
        return val, g


# --------------------------------------------------------------------------- sites


class SiteModel:
    """Interface: parameters -> eikonal sources and their times.

    Attributes ``n_params``, ``lower``, ``upper``, ``names``.
    """

    n_params: int
    lower: np.ndarray
    upper: np.ndarray
    names: tuple

    def sources(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - interface
        """``(sources, source_times)`` for :func:`physim.eikonal.solve`."""
        raise NotImplementedError

    def vjp(self, p: np.ndarray, grad: EikonalGradient) -> np.ndarray:  # pragma: no cover - interface
        """Pull an :class:`EikonalGradient` back to the parameters."""
        raise NotImplementedError

    def regularization(self, p: np.ndarray) -> tuple[float, np.ndarray]:
        """Penalty added to objectives and its gradient (zero by default)."""
        return 0.0, np.zeros_like(p)


def _time_bounds(n, t_min, t_max):
    lo = as_scalar("t_min", t_min)
    hi = as_scalar("t_max", t_max)
    if hi <= lo:
        raise InvalidInputError(f"t_max ({hi}) must exceed t_min ({lo})")
    return readonly(np.full(n, lo)), readonly(np.full(n, hi))


class CandidateSites(SiteModel):
    """Many candidate initiation nodes, each with its own activation time ``p = t (n_sites,)``.

    Parameters
    ----------
    nodes : int array_like, shape (n_sites,)
        Mesh nodes (e.g. endocardial) that may initiate activation.
    t_min, t_max : float
        Bounds of the site times (ms). A site at ``t_max`` (later than the
        activation it would receive anyway) contributes nothing.
    sparsity : float
        Weight ``lam >= 0`` of a sparsity prior favouring few early (firing)
        sites: ``R(t) = lam * mean_k (t_max - t_k) / (t_max - t_min)``, an L1
        penalty on how early each site is (0 when every site sits at ``t_max``,
        ``lam`` when every site sits at ``t_min``). Its gradient
        ``-lam / (n_sites (t_max - t_min))`` pushes every site later; a site
        stays early only where the data term pulls it there, and dormant sites
        (zero data gradient) drift to ``t_max``.
    count_prior : SiteCountPrior, optional
        Prior on the number of firing sites (:class:`physim.cardiac.priors.SiteCountPrior`),
        added to the sparsity prior.

    See Also
    --------
    CandidateSites.subendocardial : candidates in the subendocardial layer of a heart.
    """

    def __init__(
        self,
        nodes: ArrayLike,
        t_min: float = 0.0,
        t_max: float = 150.0,
        *,
        sparsity: float = 0.0,
        count_prior: SiteCountPrior | None = None,
    ) -> None:
        self.nodes = readonly(as_index_array("nodes", nodes, shape=(None,)))
        if self.nodes.size == 0:
            raise ShapeError("nodes must contain at least one candidate site")
        if np.unique(self.nodes).size != self.nodes.size:
            raise InvalidInputError("candidate site nodes must be distinct")
        self.n_params = int(self.nodes.size)
        self.lower, self.upper = _time_bounds(self.n_params, t_min, t_max)
        self.sparsity = as_scalar("sparsity", sparsity, nonnegative=True)
        if count_prior is not None and not isinstance(count_prior, SiteCountPrior):
            raise InvalidInputError(f"count_prior must be a SiteCountPrior, got {type(count_prior).__name__}")
        self.count_prior = count_prior
        self.names = tuple(f"t_site[{int(i)}]" for i in self.nodes)

    @classmethod
    def subendocardial(
        cls,
        heart: BiventricularMesh,
        depth: float = 2.5,
        *,
        spacing: float | None = None,
        n_sites: int | None = None,
        exclude_base: bool = True,
        seed: int | None = 0,
        t_min: float = 0.0,
        t_max: float = 150.0,
        sparsity: float = 0.0,
        count_prior: SiteCountPrior | None = None,
    ) -> CandidateSites:
        """Candidate sites in the subendocardial layer of a heart (Purkinje-muscle junctions).

        Parameters
        ----------
        heart : BiventricularMesh
        depth : float
            Layer depth below the LV and RV endocardium (mm), default 2.5.
        spacing : float, optional
            Density: minimum distance between candidates (mm), chosen by
            farthest-point sampling of the layer's nodes. Default: every node
            of the layer.
        n_sites : int, optional
            Density: number of candidates (farthest-point sampling).
        exclude_base : bool
            Leave out base nodes.
        seed : int
            Seed of the sampling.
        t_min, t_max, sparsity, count_prior
            As for :class:`CandidateSites`.

        Returns
        -------
        CandidateSites
        """
        from .heart import subendocardial_nodes

        nodes = subendocardial_nodes(
            heart, depth, spacing=spacing, n_sites=n_sites, exclude_base=exclude_base, seed=seed
        )
        return cls(nodes, t_min, t_max, sparsity=sparsity, count_prior=count_prior)

    def sources(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.nodes, p

    def vjp(self, p: np.ndarray, grad: EikonalGradient) -> np.ndarray:
        return np.asarray(grad.source_times, dtype=float).copy()

    def regularization(self, p: np.ndarray) -> tuple[float, np.ndarray]:
        val, g = 0.0, np.zeros_like(p, dtype=float)
        if self.sparsity != 0:
            span = float(self.upper[0] - self.lower[0])
            c = self.sparsity / (self.n_params * span)
            val += c * float(np.sum(self.upper[0] - p))
            g -= c
        if self.count_prior is not None:
            v, gc = self.count_prior(p)
            val += v
            g += gc
        return val, g

    def firing(self, p: np.ndarray, times: ArrayLike) -> np.ndarray:
        """Which sites initiate activation: ``times[node] == t`` (bool, shape (n_sites,)).

        Parameters
        ----------
        p : ndarray (n_sites,)
            Site times (ms).
        times : ndarray (n_points,)
            The activation map solved with them (ms).
        """
        return np.abs(np.asarray(times)[self.nodes] - np.asarray(p)) < 1e-9


class PointSites(SiteModel):
    """Initiation sites at continuous positions: ``p = [x_0, y_0, z_0, ..., t_0, t_1, ...]``.

    Parameters
    ----------
    n_sites : int
    box_lower, box_upper : array_like (3,)
        Bounds of the positions (mm). Positions must stay inside the mesh during
        a fit (outside points raise in :func:`physim.eikonal.solve`), so use a
        box inside the tissue or small steps.
    t_min, t_max : float
        Bounds of the site times (ms).
    """

    def __init__(self, n_sites: int, box_lower: ArrayLike, box_upper: ArrayLike, t_min: float = 0.0, t_max: float = 150.0) -> None:
        self.n_sites = as_int("n_sites", n_sites, lower=1)
        lo = as_float_array("box_lower", box_lower, shape=(3,))
        hi = as_float_array("box_upper", box_upper, shape=(3,))
        if np.any(hi <= lo):
            raise InvalidInputError(f"box_upper {hi.tolist()} must exceed box_lower {lo.tolist()}")
        tl, th = _time_bounds(self.n_sites, t_min, t_max)
        self.n_params = 4 * self.n_sites
        self.lower = readonly(np.concatenate([np.tile(lo, self.n_sites), tl]))
        self.upper = readonly(np.concatenate([np.tile(hi, self.n_sites), th]))
        self.names = tuple(f"{c}_site[{i}]" for i in range(self.n_sites) for c in "xyz") + tuple(
            f"t_site[{i}]" for i in range(self.n_sites)
        )

    def sources(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = self.n_sites
        return p[: 3 * k].reshape(k, 3), p[3 * k :]

    def vjp(self, p: np.ndarray, grad: EikonalGradient) -> np.ndarray:
        return np.concatenate([np.asarray(grad.source_points, dtype=float).ravel(), grad.source_times])


# --------------------------------------------------------------------------- model


@dataclass(frozen=True, eq=False)
class TwinState(Result):
    """Forward state of :meth:`TwinModel.forward` (everything the backward pass needs).

    Attributes
    ----------
    x : ndarray (n_params,)
    activation : physim.eikonal.Activation
    v_fiber, v_cross : ndarray (n_tets,)
        Velocities (mm/ms).
    """

    x: np.ndarray
    activation: object
    v_fiber: np.ndarray
    v_cross: np.ndarray

    @property
    def times(self) -> np.ndarray:
        return self.activation.times


class TwinModel:
    """An activation model: mesh + fibres + velocity model + site model.

    Parameters
    ----------
    mesh : TetMesh
    fibers : ndarray, shape (n_tets, 3) (or (n_tets, 2, 3) with sheets)
    velocity : VelocityModel
    sites : SiteModel
    init_radius : float
        Exact initialisation radius around sources (mm), see :func:`solve`.
    tol : float, optional
        Solver tolerance (ms); default that of :func:`physim.eikonal.solve`.
    """

    def __init__(
        self,
        mesh: TetMesh | BiventricularMesh,
        fibers: ArrayLike,
        velocity: VelocityModel,
        sites: SiteModel,
        *,
        init_radius: float = 0.0,
        tol: float | None = None,
    ) -> None:
        from physim.eikonal.mesh import TetMesh

        if not isinstance(mesh, TetMesh):
            mesh = mesh.tet_mesh() if hasattr(mesh, "tet_mesh") else mesh
        if not isinstance(mesh, TetMesh):
            raise InvalidTypeError(
                f"mesh must be a TetMesh or a BiventricularMesh, got {type(mesh).__name__}"
            )
        self.mesh = mesh
        self.fibers = readonly(as_float_array("fibers", fibers))
        if self.fibers.ndim == 2:
            nf = np.linalg.norm(self.fibers, axis=1, keepdims=True)
            self._unit_fibers = readonly(self.fibers / np.where(nf > 0, nf, 1.0))
        if self.fibers.shape[0] != mesh.n_cells:
            raise ShapeError(
                f"fibers must have {mesh.n_cells} rows (one per element), got {self.fibers.shape}"
            )
        if not isinstance(velocity, VelocityModel):
            raise InvalidInputError(f"velocity must be a VelocityModel, got {type(velocity).__name__}")
        if not isinstance(sites, SiteModel):
            raise InvalidInputError(f"sites must be a SiteModel, got {type(sites).__name__}")
        self.velocity = velocity
        self.sites = sites
        self.init_radius = as_scalar("init_radius", init_radius, nonnegative=True)
        self.tol = None if tol is None else as_scalar("tol", tol, nonnegative=True)
        self.n_velocity = velocity.n_params
        self.n_params = velocity.n_params + sites.n_params

    @property
    def lower(self) -> np.ndarray:
        return np.concatenate([self.velocity.lower, self.sites.lower])

    @property
    def upper(self) -> np.ndarray:
        return np.concatenate([self.velocity.upper, self.sites.upper])

    @property
    def names(self) -> tuple:
        return tuple(self.velocity.names) + tuple(self.sites.names)

    def transform(self, beta: float = 1.0) -> Bounded:
        """A :class:`physim.optim.Bounded` transform onto the parameter bounds."""
        from physim.optim import Bounded

        return Bounded(self.lower, self.upper, beta=beta)

    def split(self, x: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        x = as_float_array("x", x, shape=(self.n_params,))
        return x[: self.n_velocity], x[self.n_velocity :]

    def conduction(self, x: ArrayLike) -> np.ndarray:
        """Conduction tensors D (n_tets, 3, 3) for parameters ``x``."""
        from physim.eikonal.conduction import conduction_tensor

        pv, _ = self.split(x)
        vf, vc = self.velocity.velocities(pv)
        return conduction_tensor(self.fibers, vf, vc)

    def forward(self, x: ArrayLike) -> TwinState:
        """Solve the eikonal equation for parameters ``x``."""
        from physim.eikonal.conduction import conduction_tensor
        from physim.eikonal.solve import solve

        x = as_float_array("x", x, shape=(self.n_params,), copy=True)
        pv, ps = x[: self.n_velocity], x[self.n_velocity :]
        vf, vc = self.velocity.velocities(pv)
        D = conduction_tensor(self.fibers, vf, vc)
        src, st = self.sites.sources(ps)
        opts = {} if self.tol is None else {"tol": self.tol}
        act = solve(self.mesh, D, src, st, init_radius=self.init_radius, **opts)
        return TwinState(x, act, vf, vc)

    def backward(self, state: TwinState, d_times: ArrayLike) -> np.ndarray:
        """``dL/dx`` from ``dL/dphi`` (n_points,) through the eikonal adjoint."""
        from physim.eikonal.adjoint import adjoint
        from physim.eikonal.conduction import conduction_tensor_vjp

        g = adjoint(state.activation, d_times)
        pv, ps = state.x[: self.n_velocity], state.x[self.n_velocity :]
        if self.fibers.ndim == 2:
            # D = v_c^2 I + (v_f^2 - v_c^2) f f^T (unit f): only the velocity cotangents are needed
            G = np.asarray(g.D)
            gff = np.einsum("eij,ei,ej->e", G, self._unit_fibers, self._unit_fibers)
            tr = np.einsum("eii->e", G)
            d_vf, d_vc = 2.0 * state.v_fiber * gff, 2.0 * state.v_cross * (tr - gff)
        else:
            cg = conduction_tensor_vjp(self.fibers, state.v_fiber, state.v_cross, None, g.D)
            d_vf, d_vc = np.asarray(cg.v_fiber), np.asarray(cg.v_cross)
        dv = self.velocity.vjp(pv, d_vf, d_vc)
        ds = self.sites.vjp(ps, g)
        return np.concatenate([dv, ds])

    def regularization(self, x: ArrayLike) -> tuple[float, np.ndarray]:
        """Velocity-model plus site-model penalties and their gradient w.r.t. ``x``."""
        pv, ps = self.split(x)
        v, g = self.velocity.regularization(pv)
        w, h = self.sites.regularization(ps)
        return float(v + w), np.concatenate([g, h])


# --------------------------------------------------------------------------- helpers


def heart_regions(heart: BiventricularMesh, endo_layer: float = 0.0) -> tuple[np.ndarray, tuple]:
    """Element labels LV free wall / septum / RV free wall (+ fast endocardial layer).

    Parameters
    ----------
    heart : BiventricularMesh
        With ``region`` per element and the ``transmural`` coordinate per node.
    endo_layer : float
        If > 0, elements whose mean transmural coordinate is below ``endo_layer``
        (free walls; both septal surfaces for the septum) form a 4th region
        "endo" (a fast subendocardial conduction layer).

    Returns
    -------
    labels : ndarray (n_tets,) int64
    names : tuple of str
    """
    labels = np.asarray(heart.region, dtype=np.int64).copy()
    names = ("lv", "septum", "rv")
    if endo_layer > 0:
        tm = np.asarray(heart.transmural)[np.asarray(heart.tets)].mean(axis=1)
        endo = tm < endo_layer
        endo |= (labels == 1) & (tm > 1.0 - endo_layer)
        labels[endo] = 3
        names = names + ("endo",)
    return labels, names
