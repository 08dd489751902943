"""Pseudo-ECG from activation times, with its adjoint, and ECG losses.

Model
-----
Transmembrane potential (mV) of node ``a`` with activation time ``phi_a`` (ms)::

    V_a(t) = V_rest + (V_peak - V_rest) * [s((t - phi_a) / h_up) - s((t - phi_a - APD_a) / h_down)]

where ``s`` is a C-infinity sigmoid that is exactly 0 for ``u <= -1`` and exactly
1 for ``u >= 1`` (``s(u) = logistic(2u / (1 - u^2))`` in between; its central slope
equals that of ``(1 + tanh(u)) / 2``). The upstroke thus lasts ``2 h_up`` ms and the
repolarisation ``2 h_down`` ms; the second term is dropped when repolarisation is
off (QRS only).

Pseudo-ECG in an infinite homogeneous volume conductor (Plonsey)::

    phi_e(t) = -1 / (4 pi sigma_bath) * integral_heart (G grad V_m) . grad_x (1 / |x - x_e|) dx

with ``G`` the intracellular conductivity tensor per element (S/m), ``sigma_bath``
the conductivity of the surrounding medium (S/m), lengths in mm and potentials in
mV, so ``phi_e`` is in mV. On P1 tetrahedra ``grad V_m`` is constant per element
and linear in nodal values, so ``phi_e(t) = sum_a W[a, e] (V_a(t) - V_rest)`` with
weights ``W[a, e] = -1/(4 pi sigma_bath) sum_{k ∋ a} L_ek . (G_k grad N_a^k)``,
``L_ek = integral_k grad_x (1/|x - x_e|) dx`` (4-point degree-2 quadrature; the
electrodes are outside the heart so the integrand is smooth). Because
``sum_a grad N_a^k = 0``, ``V_rest`` drops out exactly. Leads are fixed linear
combinations of electrode potentials (e.g. lead I = LA - RA, V1 = V1 - Wilson
central terminal).

Cost: node ``a`` changes only inside the windows ``|t - phi_a| < h_up`` and
``|t - phi_a - APD_a| < h_down``; after a window it is constant, which is added as
one step increment followed by a cumulative sum over samples. A 12-lead ECG thus
costs ``O(n_points * n_electrodes * (2 h_up + 2 h_down) / dt + n_samples * n_electrodes)``.

Adjoint
-------
With cotangent ``lam_e(t_j) = dL/dphi_e(t_j)`` (from the lead cotangent by the
transposed lead matrix)::

    dL/dphi_a = sum_j sum_e lam_e(t_j) W[a, e] dV_a(t_j)/dphi_a
              = -A sum_j (sum_e lam_e(t_j) W[a, e]) [s'(u_up)/h_up - s'(u_dn)/h_down]

(only window samples contribute), and with ``mu[a, e] = sum_j lam_e(t_j) (V_a(t_j) - V_rest)``
(window sums plus a suffix sum of ``lam`` for the constant part)::

    dL/dG_k = -1/(4 pi sigma_bath) sum_e L_ek (sum_{a in k} grad N_a^k mu[a, e])^T.

Both cost one pass like the forward.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numba
import numpy as np
from numpy.typing import ArrayLike

from physim._result import Result
from physim._validate import (
    as_bool,
    as_float_array,
    as_index_array,
    as_int,
    as_scalar,
    check_memory,
    check_result,
    check_shape,
)
from physim.errors import InvalidInputError, MeshError, ShapeError

from . import _ecg_kernels as K

if TYPE_CHECKING:
    from ..eikonal import TetMesh
    from .heart import BiventricularMesh

__all__ = [
    "ActionPotential",
    "LeadSystem",
    "LeadField",
    "ECG",
    "ECGGradient",
    "standard_12_lead",
    "intracellular_conductivity",
    "intracellular_conductivity_vjp",
    "lead_field",
    "simulate_ecg",
    "adjoint",
    "lead_mse_loss",
    "correlation_loss",
    "shifted_correlation_loss",
    "lead_correlations",
    "STANDARD_LEADS",
]

#: default intracellular conductivities (S/m) along and across fibres (Roth 1997)
SIGMA_FIBER = 0.17
SIGMA_CROSS = 0.019
#: default distance of the limb electrodes from the heart centre, in heart radii
#: (roughly the shoulders and the lower left abdomen, where Mason-Likar torso electrodes sit)
LIMB_DISTANCE_RADII = 3.0
#: default conductivity of the surrounding medium (S/m)
SIGMA_BATH = 0.2

#: work (products per call) above which kernels run in parallel; below it the
#: cost of starting threads dominates
PARALLEL_WORK = 4_000_000

STANDARD_ELECTRODES = ("RA", "LA", "LL", "V1", "V2", "V3", "V4", "V5", "V6")
STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ActionPotential(Result):
    """Shape of the transmembrane potential as a function of activation time.

    Parameters
    ----------
    v_rest : float
        Resting potential (mV), default -85.
    v_peak : float
        Plateau potential (mV), default 20; must exceed ``v_rest``.
    upstroke_ms : float
        Duration of the depolarisation from ``v_rest`` to ``v_peak`` (ms), default 4.
    repolarization : bool
        Include repolarisation (gives T-waves), default True.
    apd_ms : float or ndarray, shape (n_points,)
        Action potential duration (ms) from activation to the middle of the
        repolarisation, default 250. Per-node values make T-waves upright.
    repolarization_ms : float
        Duration of the repolarisation (ms), default 60.
    """

    v_rest: float = -85.0
    v_peak: float = 20.0
    upstroke_ms: float = 4.0
    repolarization: bool = True
    apd_ms: float | np.ndarray = 250.0
    repolarization_ms: float = 60.0

    def __post_init__(self):
        vr = as_scalar("v_rest", self.v_rest)
        vp = as_scalar("v_peak", self.v_peak)
        if vp <= vr:
            raise InvalidInputError(f"v_peak ({vp}) must be greater than v_rest ({vr})")
        as_scalar("upstroke_ms", self.upstroke_ms, positive=True)
        as_scalar("repolarization_ms", self.repolarization_ms, positive=True)
        apd = as_float_array("apd_ms", self.apd_ms, finite=False)
        if np.ndim(self.apd_ms) == 0:
            apd = apd.reshape(())
        if apd.ndim > 1:
            raise ShapeError(f"apd_ms must be a scalar or shape (n_points,), got {apd.shape}")
        if not np.all(np.isfinite(apd)) or np.any(apd <= 0):
            raise InvalidInputError("apd_ms must be finite and > 0")
        object.__setattr__(self, "apd_ms", float(apd) if apd.ndim == 0 else apd)
        object.__setattr__(self, "repolarization", as_bool("repolarization", self.repolarization))
        super().__post_init__()

    @property
    def amplitude(self) -> float:
        """``v_peak - v_rest`` (mV)."""
        return float(self.v_peak - self.v_rest)

    def apd_array(self, n_points: int) -> np.ndarray:
        """APD per node, shape (n_points,) float64."""
        apd = np.asarray(self.apd_ms, dtype=np.float64)
        if apd.ndim == 0:
            return np.full(n_points, float(apd))
        if apd.shape != (n_points,):
            raise ShapeError(f"apd_ms must have shape ({n_points},), got {apd.shape}")
        return np.ascontiguousarray(apd)

    def potential(self, activation_times: ArrayLike, t: ArrayLike) -> np.ndarray:
        """V_m (mV) at nodes and times, shape (n_points, n_t); slow, for inspection."""
        phi = np.asarray(activation_times, dtype=float)
        t = np.atleast_1d(np.asarray(t, dtype=float))
        h_up = 0.5 * self.upstroke_ms
        u = (t[None, :] - phi[:, None]) / h_up
        s = np.vectorize(K.ramp)(np.where(np.isfinite(u), u, -2.0))
        if self.repolarization:
            apd = self.apd_array(phi.shape[0])
            h_dn = 0.5 * self.repolarization_ms
            u2 = (t[None, :] - phi[:, None] - apd[:, None]) / h_dn
            s = s - np.vectorize(K.ramp)(np.where(np.isfinite(u2), u2, -2.0))
        return self.v_rest + self.amplitude * s


# --------------------------------------------------------------------------- electrodes


@dataclass(frozen=True, eq=False)
class LeadSystem(Result):
    """Electrode positions and the leads formed from them.

    Parameters
    ----------
    electrodes : ndarray, shape (n_electrodes, 3)
        Positions (mm).
    electrode_names : tuple of str
    matrix : ndarray, shape (n_leads, n_electrodes)
        Lead ``l`` = ``sum_e matrix[l, e] * phi_e``.
    lead_names : tuple of str
    """

    electrodes: np.ndarray
    electrode_names: tuple
    matrix: np.ndarray
    lead_names: tuple

    @classmethod
    def from_arrays(cls, electrodes: ArrayLike, electrode_names: Sequence[str] | None = None, leads: ArrayLike | None = None, lead_names: Sequence[str] | None = None) -> LeadSystem:
        """Build and validate a lead system.

        ``leads`` is ``None`` (one unipolar lead per electrode), a numeric
        ndarray (n_leads, n_electrodes), or a sequence of ``(positive, negative)``
        pairs of electrode names or indices (``negative`` may be ``None``).
        """
        x = as_float_array("electrodes", electrodes, shape=(None, 3))
        ne = x.shape[0]
        if ne == 0:
            raise ShapeError("electrodes must contain at least one position, got shape (0, 3)")
        names = tuple(electrode_names) if electrode_names is not None else tuple(f"E{i}" for i in range(ne))
        if len(names) != ne:
            raise ShapeError(f"electrode_names has {len(names)} names for {ne} electrodes")
        if leads is None:
            M = np.eye(ne)
        elif isinstance(leads, np.ndarray) and leads.dtype.kind in "biuf":
            M = as_float_array("leads", leads, shape=(None, ne))
        else:
            M = np.zeros((len(leads), ne))
            for li, pair in enumerate(leads):
                if isinstance(pair, str) or len(pair) != 2:
                    raise ShapeError(f"leads[{li}] must be a (positive, negative) pair, got {pair!r}")
                M[li, _electrode_index(pair[0], names, f"leads[{li}][0]")] += 1.0
                if pair[1] is not None:
                    M[li, _electrode_index(pair[1], names, f"leads[{li}][1]")] -= 1.0
        if M.shape[0] == 0:
            raise ShapeError("leads must define at least one lead")
        lnames = tuple(lead_names) if lead_names is not None else tuple(f"L{i}" for i in range(M.shape[0]))
        if len(lnames) != M.shape[0]:
            raise ShapeError(f"lead_names has {len(lnames)} names for {M.shape[0]} leads")
        return cls(x, names, np.ascontiguousarray(M), lnames)

    @property
    def n_leads(self) -> int:
        return int(self.matrix.shape[0])


def _electrode_index(v, names, what) -> int:
    if isinstance(v, str):
        if v not in names:
            raise InvalidInputError(f"{what}: unknown electrode {v!r}; known: {list(names)}")
        return names.index(v)
    i = int(v)
    if not 0 <= i < len(names):
        raise InvalidInputError(f"{what}: electrode index {i} outside [0, {len(names)})")
    return i


def _mesh_arrays(mesh) -> tuple[np.ndarray, np.ndarray]:
    from physim.eikonal.mesh import TetMesh

    validated = isinstance(mesh, TetMesh)
    if hasattr(mesh, "points") and (hasattr(mesh, "tets") or hasattr(mesh, "cells")):
        pts = mesh.points
        tets = mesh.tets if hasattr(mesh, "tets") else mesh.cells
    elif isinstance(mesh, (tuple, list)) and len(mesh) == 2:
        pts, tets = mesh
    else:
        raise InvalidInputError(
            f"mesh must be a TetMesh (with .points and .tets) or a (points, tets) pair, got {type(mesh).__name__}"
        )
    pts = as_float_array("mesh.points", pts, shape=(None, 3))
    tets = as_index_array("mesh.tets", tets, upper=pts.shape[0], shape=(None, 4))
    if tets.shape[0] == 0:
        raise MeshError("the mesh has no tetrahedra")
    if not validated:  # a TetMesh has been checked when it was built
        _check_tets(pts, tets)
    return pts, tets


def _check_tets(pts: np.ndarray, tets: np.ndarray) -> None:
    """MeshError naming the first degenerate (flat or repeated-vertex) tetrahedron."""
    from physim.eikonal.mesh import DEGENERATE_RTOL, TetMesh

    vol, longest = TetMesh._measure(pts[tets])
    bad = ~(np.abs(vol) > DEGENERATE_RTOL * longest**3)
    if bad.any():
        e = int(np.argmax(bad))
        raise MeshError(
            f"tetrahedron {e} (vertices {tets[e].tolist()}) is degenerate: volume {vol[e]:.3g} mm^3 "
            f"({int(bad.sum())} degenerate element(s))"
        )


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    n = np.linalg.norm(v)
    if not np.isfinite(n) or n == 0:
        raise InvalidInputError(f"direction {v} must be non-zero and finite")
    return v / n


def standard_12_lead(
    mesh: TetMesh | BiventricularMesh | tuple[ArrayLike, ArrayLike],
    *,
    center: ArrayLike | None = None,
    apex_direction: ArrayLike | None = None,
    rv_direction: ArrayLike | None = None,
    chest_margin: float = 20.0,
    limb_distance: float | None = None,
) -> LeadSystem:
    """A standard 12-lead layout around a heart mesh.

    The heart frame is the long axis ``u`` (base to apex) and the LV-to-RV
    direction ``r`` (orthogonalised to ``u``); both are estimated by principal
    axes of the nodes when not given (sign: towards the extreme farther from the
    centroid, i.e. the apex, resp. the thin-walled RV side), or taken from the
    surface tags of a :class:`~physim.cardiac.heart.BiventricularMesh` (base
    centroid to apex node; LV to RV endocardial centroids). The body frame puts
    the long axis 60° below the horizontal in the frontal plane (a normal
    electrical axis): left ``l = u/2 - (√3/2) r``, superior ``s = -(√3/2) u - r/2``,
    anterior ``a = l × s``. Limb electrodes RA, LA, LL sit in the frontal plane
    where torso electrodes (Mason-Likar) record them: RA and LA at the right and
    left shoulder, 30° above the horizontal, LL below the heart, all at
    ``limb_distance`` from the centre (default 3 × heart radius, about 190 mm for
    the default heart); V1–V6 lie on an arc around the anterior-left chest at the
    heart radius plus ``chest_margin`` mm, from right of the sternum (V1) to the
    left mid-axillary line (V6). Leads: I, II, III, aVR, aVL, aVF (augmented
    leads against the mean of the other two limb electrodes) and V1–V6 against
    the Wilson central terminal (RA + LA + LL) / 3.

    Amplitudes: in the infinite homogeneous medium of :func:`lead_field` the
    potential of the heart's dipole falls off as 1/r², so leads between distant
    electrodes are small. For the default 65k heart (landmark activation, QRS
    peak-to-peak) the model gives about 0.1-0.2 mV in the limb leads (II: 0.22)
    and 0.07-0.56 mV in V1-V6, against clinical values of about 0.5-1.5 mV and
    1-2 mV: there is no torso (whose insulating surface raises body-surface
    potentials), the heart is small, and the cardiac sources are idealised.
    Limb electrodes 10 heart radii away (an earlier default) gave 0.004-0.02 mV.
    Fits that use :func:`correlation_loss` do not depend on the amplitudes.

    Parameters
    ----------
    mesh : TetMesh or (points, tets)
    center : array_like (3,), optional
        Heart centre (mm); default the node centroid.
    apex_direction, rv_direction : array_like (3,), optional
        Heart axes; default estimated from the geometry.
    chest_margin : float
        Distance (mm) between the farthest heart node and the precordial arc.
    limb_distance : float, optional
        Distance (mm) of the limb electrodes from the centre (default 3 × the
        largest node distance from the centre, at least 1.5 × the precordial radius).

    Returns
    -------
    LeadSystem
        9 electrodes (RA, LA, LL, V1..V6) and 12 leads (:data:`STANDARD_LEADS`).
    """
    pts, _ = _mesh_arrays(mesh)
    masks = getattr(mesh, "masks", None)
    if isinstance(masks, Mapping) and {"base", "lv_endo", "rv_endo"} <= set(masks) and hasattr(mesh, "apex"):
        # a tagged biventricular mesh: axes from its surfaces
        if apex_direction is None:
            apex_direction = pts[int(mesh.apex)] - pts[np.asarray(masks["base"], bool)].mean(axis=0)
        if rv_direction is None:
            rv_direction = pts[np.asarray(masks["rv_endo"], bool)].mean(axis=0) - pts[
                np.asarray(masks["lv_endo"], bool)
            ].mean(axis=0)
    c = pts.mean(axis=0) if center is None else as_float_array("center", center, shape=(3,))
    X = pts - c
    _, _, vt = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)

    def oriented(axis):
        p = X @ axis
        return axis if p.max() >= -p.min() else -axis

    u = oriented(vt[0]) if apex_direction is None else _unit(apex_direction)
    if rv_direction is None:
        cand = vt[1] - (vt[1] @ u) * u
        r = oriented(_unit(cand))
    else:
        r = _unit(np.asarray(rv_direction, dtype=float) - (np.asarray(rv_direction, dtype=float) @ u) * u)
    h = math.sqrt(3.0) / 2.0
    left = 0.5 * u - h * r
    sup = -h * u - 0.5 * r
    ant = np.cross(left, sup)
    radius = float(np.linalg.norm(X, axis=1).max())
    as_scalar("chest_margin", chest_margin, positive=True)
    R = radius + chest_margin
    if limb_distance is None:
        D = max(LIMB_DISTANCE_RADII * radius, 1.5 * R)
    else:
        D = as_scalar("limb_distance", limb_distance, positive=True)
    if D <= R:
        raise InvalidInputError(f"limb_distance ({D}) must exceed the precordial radius ({R:.3g} mm)")
    ra = c + D * _unit(-h * left + 0.5 * sup)
    la = c + D * _unit(h * left + 0.5 * sup)
    ll = c - D * sup
    angles = np.deg2rad([-25.0, 5.0, 30.0, 50.0, 70.0, 90.0])
    heights = np.array([0.15, 0.15, 0.0, -0.1, -0.1, -0.1])
    prec = []
    for ang, z in zip(angles, heights):
        d = math.cos(ang) * ant + math.sin(ang) * left
        prec.append(c + R * d + z * R * sup)
    E = np.vstack([ra, la, ll, np.array(prec)])
    M = np.zeros((12, 9))
    RA, LA, LL = 0, 1, 2
    M[0, [LA, RA]] = [1, -1]
    M[1, [LL, RA]] = [1, -1]
    M[2, [LL, LA]] = [1, -1]
    M[3, [RA, LA, LL]] = [1, -0.5, -0.5]
    M[4, [LA, RA, LL]] = [1, -0.5, -0.5]
    M[5, [LL, RA, LA]] = [1, -0.5, -0.5]
    for i in range(6):
        M[6 + i, 3 + i] = 1.0
        M[6 + i, [RA, LA, LL]] = -1.0 / 3.0
    return LeadSystem(np.ascontiguousarray(E), STANDARD_ELECTRODES, M, STANDARD_LEADS)


# --------------------------------------------------------------------------- conductivity


def intracellular_conductivity(fibers: ArrayLike, sigma_fiber: float = SIGMA_FIBER, sigma_cross: float = SIGMA_CROSS) -> np.ndarray:
    """Transversely isotropic intracellular conductivity per element.

    ``G_k = sigma_cross I + (sigma_fiber - sigma_cross) f_k f_k^T``.

    Parameters
    ----------
    fibers : ndarray, shape (n_tets, 3)
        Fibre directions (normalised here).
    sigma_fiber, sigma_cross : float or ndarray, shape (n_tets,)
        Conductivities (S/m), > 0.

    Returns
    -------
    ndarray, shape (n_tets, 3, 3), float64 (S/m)
    """
    f = as_float_array("fibers", fibers, shape=(None, 3))
    n = np.linalg.norm(f, axis=1)
    if np.any(n == 0):
        raise InvalidInputError(f"fibers[{int(np.argmin(n))}] has zero length")
    f = f / n[:, None]
    sig = []
    for name, v in (("sigma_fiber", sigma_fiber), ("sigma_cross", sigma_cross)):
        a = as_float_array(name, v)
        if a.shape not in ((), (1,), (f.shape[0],)):
            raise ShapeError(f"{name} must be a scalar or have shape ({f.shape[0]},), got {a.shape}")
        a = np.broadcast_to(a.reshape(-1) if a.ndim else a, (f.shape[0],))
        if np.any(a <= 0):
            raise InvalidInputError(f"{name} must be > 0; entry {int(np.argmin(a))} is {a.min()}")
        sig.append(a)
    sl, st = sig
    G = st[:, None, None] * np.eye(3) + (sl - st)[:, None, None] * f[:, :, None] * f[:, None, :]
    check_result("intracellular_conductivity", "sigma_fiber or sigma_cross too large", conductivity=G)
    return G


def intracellular_conductivity_vjp(fibers: ArrayLike, d_G: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of a loss w.r.t. ``sigma_fiber`` and ``sigma_cross`` per element.

    Parameters
    ----------
    fibers : ndarray, shape (n_tets, 3)
    d_G : ndarray, shape (n_tets, 3, 3)
        Gradient w.r.t. the conductivity tensors.

    Returns
    -------
    d_sigma_fiber, d_sigma_cross : ndarray, shape (n_tets,)
        Sum them for a global (scalar) conductivity.
    """
    f = as_float_array("fibers", fibers, shape=(None, 3))
    f = f / np.linalg.norm(f, axis=1)[:, None]
    dG = as_float_array("d_G", d_G, shape=(f.shape[0], 3, 3))
    ff = np.einsum("ki,kij,kj->k", f, dG, f)
    tr = np.einsum("kii->k", dG)
    return ff, tr - ff


def _conductivity_array(conductivity, n_tets: int) -> np.ndarray:
    if conductivity is None:
        raise InvalidInputError(
            "conductivity is required: a scalar (isotropic, S/m), an array (n_tets,) or tensors (n_tets, 3, 3); "
            "see intracellular_conductivity(fibers)"
        )
    if np.ndim(conductivity) == 0:
        g = as_scalar("conductivity", conductivity, positive=True)
        return np.ascontiguousarray(np.broadcast_to(g * np.eye(3), (n_tets, 3, 3)))
    G = as_float_array("conductivity", conductivity)
    if G.ndim == 1:
        check_shape("conductivity", G, (n_tets,))
        if np.any(G <= 0):
            raise InvalidInputError(f"conductivity must be > 0; entry {int(np.argmin(G))} is {G.min()}")
        return np.ascontiguousarray(G[:, None, None] * np.eye(3))
    check_shape("conductivity", G, (n_tets, 3, 3))
    from physim._validate import check_spd

    check_spd("conductivity", G)
    return G


# --------------------------------------------------------------------------- lead field


@dataclass(frozen=True, eq=False)
class LeadField(Result):
    """Precomputed pseudo-ECG weights.

    Attributes
    ----------
    weights : ndarray, shape (n_points, n_electrodes)
        Electrode potential (mV) per mV of transmembrane potential at each node.
    leads : LeadSystem
    points : ndarray (n_points, 3); tets : ndarray (n_tets, 4)
    conductivity : ndarray, shape (n_tets, 3, 3)
        Intracellular conductivity used (S/m).
    scale : float
        ``1 / (4 pi sigma_bath)``.
    quadrature : int
        Points of the element quadrature (1 or 4).
    """

    weights: np.ndarray
    leads: LeadSystem
    points: np.ndarray
    tets: np.ndarray
    conductivity: np.ndarray
    scale: float
    quadrature: int

    @property
    def n_points(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_leads(self) -> int:
        return self.leads.n_leads


def _containing_elements(pts, tets, queries, tol=1e-12) -> np.ndarray:
    """Index of an element containing each query point, or -1 (numpy: only
    elements whose bounding box holds the point are tested)."""
    res = np.full(queries.shape[0], -1, dtype=np.int64)
    if tets.shape[0] == 0:
        return res
    P = pts[tets]  # (nt, 4, 3)
    lo, hi = P.min(axis=1), P.max(axis=1)
    for q, x in enumerate(queries):
        cand = np.nonzero(np.all((lo <= x) & (x <= hi), axis=1))[0]
        if cand.size == 0:
            continue
        J = (P[cand, 1:] - P[cand, :1]).transpose(0, 2, 1)  # columns are edges
        lam = np.linalg.solve(J, (x - P[cand, 0])[:, :, None])[:, :, 0]
        bary = np.concatenate([1.0 - lam.sum(axis=1, keepdims=True), lam], axis=1)
        hit = np.nonzero(np.all(bary >= -tol, axis=1))[0]
        if hit.size:
            res[q] = cand[hit[0]]
    return res


def lead_field(
    mesh: TetMesh | BiventricularMesh | tuple[ArrayLike, ArrayLike],
    electrodes: LeadSystem | ArrayLike,
    conductivity: ArrayLike,
    *,
    leads: ArrayLike | None = None,
    electrode_names: Sequence[str] | None = None,
    lead_names: Sequence[str] | None = None,
    sigma_bath: float = SIGMA_BATH,
    quadrature: int = 4,
    min_distance: float | None = None,
) -> LeadField:
    """Precompute the pseudo-ECG weights per (node, electrode).

    Parameters
    ----------
    mesh : TetMesh or (points, tets)
        Heart mesh (mm).
    electrodes : LeadSystem or array_like, shape (n_electrodes, 3)
        Electrode positions (mm), outside the heart. With an array, ``leads``,
        ``electrode_names`` and ``lead_names`` build the :class:`LeadSystem`.
    conductivity : float, ndarray (n_tets,) or ndarray (n_tets, 3, 3)
        Intracellular conductivity (S/m); see :func:`intracellular_conductivity`.
    sigma_bath : float
        Conductivity of the surrounding medium (S/m).
    quadrature : {4, 1}
        Quadrature points per element for the lead vectors.
    min_distance : float, optional
        Electrodes closer than this to a mesh node are rejected (the quadrature
        would be inaccurate); default: the longest element edge.

    Returns
    -------
    LeadField

    Raises
    ------
    InvalidInputError
        An electrode lies inside an element or within ``min_distance`` of a node.
    """
    pts, tets = _mesh_arrays(mesh)
    system = (
        electrodes
        if isinstance(electrodes, LeadSystem)
        else LeadSystem.from_arrays(electrodes, electrode_names, leads, lead_names)
    )
    G = _conductivity_array(conductivity, tets.shape[0])
    sb = as_scalar("sigma_bath", sigma_bath, positive=True)
    quadrature = as_int("quadrature", quadrature)
    if quadrature not in (1, 4):
        raise InvalidInputError(f"quadrature must be 1 or 4, got {quadrature!r}")
    E = system.electrodes
    check_memory(
        f"a lead field of {tets.shape[0]} tetrahedra and {E.shape[0]} electrodes",
        8.0 * E.shape[0] * (4 * tets.shape[0] + pts.shape[0]),
    )
    inside = _containing_elements(pts, tets, E)
    if np.any(inside >= 0):
        i = int(np.nonzero(inside >= 0)[0][0])
        raise InvalidInputError(
            f"electrode {system.electrode_names[i]!r} at {E[i].tolist()} lies inside the heart "
            f"(element {int(inside[i])}); electrodes must be outside the mesh"
        )
    if min_distance is None:
        e = pts[tets[:, [1, 2, 3, 2, 3, 3]]] - pts[tets[:, [0, 0, 0, 1, 1, 2]]]
        min_distance = float(np.sqrt((e * e).sum(axis=2)).max()) if tets.shape[0] else 0.0
    else:
        min_distance = as_scalar("min_distance", min_distance, nonnegative=True)
    from scipy.spatial import cKDTree

    used = np.unique(tets)
    d, j = cKDTree(pts[used]).query(E)
    bad = np.nonzero(d < min_distance)[0]
    if bad.size:
        i = int(bad[0])
        raise InvalidInputError(
            f"electrode {system.electrode_names[i]!r} at {E[i].tolist()} is {d[i]:.3g} mm from node "
            f"{int(used[j[i]])}, closer than min_distance={min_distance:.3g} mm (inside or on the heart?)"
        )
    scale = 1.0 / (4.0 * math.pi * sb)
    ew = np.empty((tets.shape[0], 4, E.shape[0]))
    nthreads = max(1, int(numba.get_num_threads()))
    if tets.shape[0] * E.shape[0] * quadrature >= PARALLEL_WORK and nthreads > 1:
        K.element_weights_parallel(pts, tets, G, E, scale, int(quadrature), ew, nthreads)
    else:
        K.element_weights_serial(pts, tets, G, E, scale, int(quadrature), ew)
    W = K.scatter_weights(tets, ew, pts.shape[0])
    check_result(
        "lead_field",
        f"sigma_bath={sb:g} S/m, largest |conductivity| {np.max(np.abs(G), initial=0.0):g} S/m",
        weights=W,
    )
    return LeadField(W, system, pts, tets, G, scale, int(quadrature))


# --------------------------------------------------------------------------- forward / adjoint


@dataclass(frozen=True, eq=False)
class ECG(Result):
    """A simulated ECG and what its adjoint needs.

    Attributes
    ----------
    signals : ndarray, shape (n_leads, n_samples)
        Lead voltages (mV).
    electrode_potentials : ndarray, shape (n_electrodes, n_samples)
        Unipolar electrode potentials (mV).
    t : ndarray, shape (n_samples,)
        Sample times (ms).
    activation_times : ndarray, shape (n_points,)
    lead_field : LeadField
    model : ActionPotential
    """

    signals: np.ndarray
    electrode_potentials: np.ndarray
    t: np.ndarray
    activation_times: np.ndarray
    lead_field: LeadField
    model: ActionPotential
    _apd: np.ndarray = field(repr=False)

    @property
    def lead_names(self) -> tuple:
        return self.leads_system.lead_names

    @property
    def leads_system(self) -> LeadSystem:
        return self.lead_field.leads

    @property
    def dt(self) -> float:
        return float(self.t[1] - self.t[0]) if self.t.size > 1 else 1.0


@dataclass(frozen=True)
class ECGGradient(Result):
    """Gradients of a loss through :func:`simulate_ecg`.

    Attributes
    ----------
    times : ndarray, shape (n_points,)
        d loss / d activation times (1/ms units of the loss).
    conductivity : ndarray, shape (n_tets, 3, 3) or None
        d loss / d intracellular conductivity tensors (None unless requested).
    """

    times: np.ndarray
    conductivity: np.ndarray | None = None


def _plan(lf: LeadField, model: ActionPotential, dt: float) -> tuple[bool, int]:
    win = model.upstroke_ms + (model.repolarization_ms if model.repolarization else 0.0)
    work = lf.weights.shape[0] * lf.weights.shape[1] * (win / dt + 2.0)
    nthreads = max(1, int(numba.get_num_threads()))
    parallel = work >= PARALLEL_WORK and nthreads > 1
    return parallel, (nthreads if parallel else 1)


def simulate_ecg(
    lead_field: LeadField,
    activation_times: ArrayLike,
    *,
    model: ActionPotential | None = None,
    n_samples: int = 500,
    dt: float = 1.0,
    t0: float = 0.0,
) -> ECG:
    """Pseudo-ECG of an activation map.

    Parameters
    ----------
    lead_field : LeadField
        From :func:`lead_field`.
    activation_times : ndarray, shape (n_points,), or an Activation (``.times``)
        Activation times (ms); ``inf`` marks unreached nodes (they stay at rest).
    model : ActionPotential, optional
        Transmembrane potential shape (defaults: :class:`ActionPotential`).
    n_samples : int
        Number of samples.
    dt : float
        Sampling interval (ms).
    t0 : float
        Time of the first sample (ms).

    Returns
    -------
    ECG
        ``signals`` (n_leads, n_samples) in mV.
    """
    if not isinstance(lead_field, LeadField):
        raise InvalidInputError(
            f"lead_field must be a LeadField (see lead_field()), got {type(lead_field).__name__}"
        )
    model = ActionPotential() if model is None else model
    if not isinstance(model, ActionPotential):
        raise InvalidInputError(f"model must be an ActionPotential, got {type(model).__name__}")
    phi = getattr(activation_times, "times", activation_times)
    phi = as_float_array("activation_times", phi, shape=(lead_field.n_points,), finite=False)
    if np.any(np.isnan(phi)) or np.any(phi == -np.inf):
        i = int(np.nonzero(np.isnan(phi) | (phi == -np.inf))[0][0])
        raise InvalidInputError(
            f"activation_times[{i}] is {phi[i]}; only finite values or +inf (unreached) allowed"
        )
    n_samples = as_int("n_samples", n_samples, lower=1)
    dt = as_scalar("dt", dt, positive=True)
    t0 = as_scalar("t0", t0)
    if not np.isfinite(t0 + dt * n_samples):
        raise InvalidInputError(f"t0 + dt * n_samples = {t0} + {dt} * {n_samples} overflows float64")
    t_far = max(abs(t0), abs(t0 + dt * n_samples))
    if n_samples > 1 and not (t_far + dt) - t_far > 0.5 * dt:
        raise InvalidInputError(
            f"t0={t0:g} ms is too large for dt={dt:g} ms: consecutive sample times are equal in float64"
        )
    apd = model.apd_array(phi.shape[0])
    W = lead_field.weights
    parallel, nchunk = _plan(lead_field, model, dt)
    ne = W.shape[1]
    check_memory(
        f"simulate_ecg with n_samples={n_samples} and {ne} electrodes",
        8.0 * n_samples * ne * (2 * nchunk + 3) + 8.0 * n_samples * lead_field.n_leads,
    )
    win = np.zeros((nchunk, n_samples, ne))
    stp = np.zeros((nchunk, n_samples + 1, ne))
    kern = K.ecg_forward_parallel if parallel else K.ecg_forward_serial
    kern(
        W,
        phi,
        apd,
        model.amplitude,
        0.5 * model.upstroke_ms,
        0.5 * model.repolarization_ms,
        bool(model.repolarization),
        t0,
        dt,
        n_samples,
        win,
        stp,
    )
    pot = win.sum(axis=0) + np.cumsum(stp.sum(axis=0), axis=0)[:n_samples]
    elec = np.ascontiguousarray(pot.T)
    signals = lead_field.leads.matrix @ elec
    t = t0 + dt * np.arange(n_samples)
    return ECG(signals, elec, t, phi, lead_field, model, apd)


def adjoint(ecg: ECG, d_loss_d_signals: ArrayLike, *, conductivity: bool = False) -> ECGGradient:
    """Vector-Jacobian product of :func:`simulate_ecg`.

    Parameters
    ----------
    ecg : ECG
        Result of :func:`simulate_ecg`.
    d_loss_d_signals : ndarray, shape (n_leads, n_samples)
        Gradient of the loss w.r.t. ``ecg.signals``.
    conductivity : bool
        Also return the gradient w.r.t. the conductivity tensors (one extra
        pass over the elements).

    Returns
    -------
    ECGGradient
    """
    if not isinstance(ecg, ECG):
        raise InvalidInputError(f"ecg must be the ECG returned by simulate_ecg, got {type(ecg).__name__}")
    lam = as_float_array("d_loss_d_signals", d_loss_d_signals, shape=ecg.signals.shape)
    conductivity = as_bool("conductivity", conductivity)
    lf = ecg.lead_field
    m = ecg.model
    lam_e = np.ascontiguousarray((lf.leads.matrix.T @ lam).T)  # (n_samples, n_electrodes)
    ns, ne = lam_e.shape
    suffix = np.zeros((ns + 1, ne))
    suffix[:ns] = np.cumsum(lam_e[::-1], axis=0)[::-1]
    dphi = np.zeros(lf.n_points)
    mu = np.zeros((lf.n_points if conductivity else 0, ne))
    parallel, nchunk = _plan(lf, m, ecg.dt)
    kern = K.ecg_adjoint_parallel if parallel else K.ecg_adjoint_serial
    kern(
        lf.weights,
        ecg.activation_times,
        ecg._apd,
        m.amplitude,
        0.5 * m.upstroke_ms,
        0.5 * m.repolarization_ms,
        bool(m.repolarization),
        float(ecg.t[0]),
        ecg.dt,
        ns,
        lam_e,
        suffix,
        dphi,
        mu,
        bool(conductivity),
        nchunk,
    )
    dG = None
    if conductivity:
        dG = K.conductivity_gradient(lf.points, lf.tets, lf.leads.electrodes, lf.scale, lf.quadrature, mu)
    return ECGGradient(dphi, dG)


# --------------------------------------------------------------------------- losses


def _pair(ecg, target) -> tuple[np.ndarray, np.ndarray]:
    x = ecg.signals if isinstance(ecg, ECG) else ecg
    x = as_float_array("ecg", x)
    y = as_float_array("target", target)
    if x.ndim != 2:
        raise ShapeError(f"ecg must have shape (n_leads, n_samples), got {x.shape}")
    check_shape("target", y, x.shape)
    if x.shape[1] < 2:
        raise ShapeError(f"ECG losses need at least 2 samples per lead, got shape {x.shape}")
    return x, y


def lead_mse_loss(ecg: ECG | ArrayLike, target: ArrayLike, *, normalize: bool = True) -> tuple[float, np.ndarray]:
    """Mean squared error per lead, summed over leads.

    ``L = sum_l w_l mean_j (x_lj - y_lj)^2`` with ``w_l = 1 / var(y_l)`` when
    ``normalize`` (each lead counts equally whatever its amplitude; leads with
    zero variance get ``w_l = 1``), else ``w_l = 1``.

    Parameters
    ----------
    ecg : ECG or ndarray, shape (n_leads, n_samples)
    target : ndarray, shape (n_leads, n_samples)
        Measured ECG (mV); must be finite.

    Returns
    -------
    value : float
    grad : ndarray, shape (n_leads, n_samples)
        d L / d ecg.
    """
    normalize = as_bool("normalize", normalize)
    x, y = _pair(ecg, target)
    ns = x.shape[1]
    w = np.ones(x.shape[0])
    if normalize:
        v = y.var(axis=1)
        w = np.where(v > 0, 1.0 / np.where(v > 0, v, 1.0), 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        r = x - y
        value = float(np.sum(w[:, None] * r * r) / ns)
        grad = (2.0 / ns) * w[:, None] * r
    check_result("lead_mse_loss", _amplitudes(x, y), value=value, grad=grad)
    return value, grad


def _amplitudes(x, y) -> str:
    """Largest |ecg| and |target|, for overflow messages."""
    return f"largest |ecg| {np.max(np.abs(x), initial=0.0):g}, largest |target| {np.max(np.abs(y), initial=0.0):g}"


def lead_correlations(ecg: ECG | ArrayLike, target: ArrayLike) -> np.ndarray:
    """Pearson correlation per lead, shape (n_leads,) (NaN for a constant lead)."""
    x, y = _pair(ecg, target)
    xc = x - x.mean(axis=1, keepdims=True)
    yc = y - y.mean(axis=1, keepdims=True)
    nx = np.sqrt((xc * xc).sum(axis=1))
    ny = np.sqrt((yc * yc).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (xc * yc).sum(axis=1) / (nx * ny)


def correlation_loss(ecg: ECG | ArrayLike, target: ArrayLike, *, eps: float = 1e-12) -> tuple[float, np.ndarray]:
    """Amplitude-insensitive loss ``L = mean_l (1 - rho_l)``, rho_l the Pearson
    correlation of lead ``l`` with the target.

    Invariant to scaling and offset of each simulated lead. ``eps`` (mV^2)
    regularises the norms so that a flat lead has a finite gradient.

    Returns
    -------
    value : float
    grad : ndarray, shape (n_leads, n_samples)
    """
    eps = as_scalar("eps", eps, positive=True)
    x, y = _pair(ecg, target)
    nl = x.shape[0]
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        xc = x - x.mean(axis=1, keepdims=True)
        yc = y - y.mean(axis=1, keepdims=True)
        nx = np.sqrt((xc * xc).sum(axis=1) + eps)
        ny = np.sqrt((yc * yc).sum(axis=1) + eps)
        rho = (xc * yc).sum(axis=1) / (nx * ny)
        # d rho / d x = yc / (nx ny) - rho xc / nx^2   (already centred)
        g = yc / (nx * ny)[:, None] - (rho / (nx * nx))[:, None] * xc
        g = g - g.mean(axis=1, keepdims=True)
        value, grad = float(np.mean(1.0 - rho)), -g / nl
    check_result(
        "correlation_loss",
        f"eps={eps:g}, {_amplitudes(x, y)}",
        **{"the norm of a lead of ecg": nx, "the norm of a lead of target": ny, "value": value, "grad": grad},
    )
    return value, grad


def shifted_correlation_loss(
    ecg: ECG | ArrayLike,
    target: ArrayLike,
    *,
    max_shift_ms: float = 10.0,
    dt: float | None = None,
    temperature: float = 1e-3,
    eps: float = 1e-12,
) -> tuple[float, np.ndarray]:
    """Correlation loss after the best small time shift (smooth minimum over shifts).

    For every integer shift ``s`` of ``|s| dt <= max_shift_ms`` the simulated
    ECG delayed by ``s`` samples is compared with the target on their overlap,
    ``L_s = mean_l (1 - rho_l(s))`` with :func:`correlation_loss` (one shift for
    all leads: an unknown onset of the recording). The loss is the soft minimum::

        L = -tau log( mean_s exp(-L_s / tau) ),   dL/dx = sum_s pi_s dL_s/dx,
        pi = softmax(-L_s / tau),

    which lies in ``[min_s L_s, min_s L_s + tau log(n_shifts)]`` and tends to
    ``min_s L_s`` as ``tau -> 0``.

    Parameters
    ----------
    ecg : ECG or ndarray, shape (n_leads, n_samples)
    target : ndarray, shape (n_leads, n_samples)
    max_shift_ms : float
        Largest shift tried (ms), >= 0.
    dt : float, optional
        Sampling interval (ms); default that of ``ecg`` (an :class:`ECG`) or 1 ms.
    temperature : float
        ``tau`` (units of the loss), > 0.
    eps : float
        As for :func:`correlation_loss`.

    Returns
    -------
    value : float
    grad : ndarray, shape (n_leads, n_samples)
    """
    x, y = _pair(ecg, target)
    if dt is None:
        dt = ecg.dt if isinstance(ecg, ECG) else 1.0
    dt = as_scalar("dt", dt, positive=True)
    tau = as_scalar("temperature", temperature, positive=True)
    smax = int(math.floor(as_scalar("max_shift_ms", max_shift_ms, nonnegative=True) / dt + 1e-9))
    n = x.shape[1]
    if n - smax < 2:
        raise ShapeError(f"max_shift_ms={max_shift_ms} leaves fewer than 2 overlapping samples of {n}")
    shifts = np.arange(-smax, smax + 1)
    vals = np.empty(shifts.size)
    grads = np.zeros((shifts.size,) + x.shape)
    for i, s in enumerate(shifts):
        # x delayed by s samples: x[j - s] against y[j]
        xs = slice(0, n - s) if s >= 0 else slice(-s, n)
        ys = slice(s, n) if s >= 0 else slice(0, n + s)
        vals[i], grads[i][:, xs] = correlation_loss(x[:, xs], y[:, ys], eps=eps)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        z = -vals / tau
        zmax = float(z.max())
        w = np.exp(z - zmax)
        value = -tau * (zmax + math.log(float(w.mean())))
        pi = w / w.sum()
        grad = np.tensordot(pi, grads, axes=1)
    check_result("shifted_correlation_loss", f"temperature={tau:g}", value=value, grad=grad)
    return float(value), grad
