"""Rule-based myocardial fibres from Laplace coordinates (P1 finite elements).

Coordinates
-----------
Four harmonic fields are computed with linear (P1) finite elements on the
tetrahedral mesh (one sparse stiffness matrix, scipy sparse solves):

* ``phi_epi``: 0 on the LV and RV endocardium, 1 on the epicardium
  (transmural depth in the free walls);
* ``phi_lv``: 1 on the LV endocardium, 0 on the RV endocardium and epicardium;
* ``phi_rv``: 1 on the RV endocardium, 0 on the LV endocardium and epicardium;
* ``psi_ab``: 0 at the apex node, 1 on the base (apico-basal coordinate).

The first three share their Dirichlet nodes, so one factorisation serves all
of them, and ``phi_epi + phi_lv + phi_rv = 1`` identically. The septal
coordinate ``s = phi_rv / (phi_lv + phi_rv)`` runs from 0 on the LV side to
1 on the RV side of the septum (and is ~0 in the LV, ~1 in the RV free wall).

Fibres (a simplification of Bayer et al., Ann. Biomed. Eng. 2012)
-----------------------------------------------------------------
Per element, with gradients of the P1 fields:

* longitudinal axis ``e_l = grad psi_ab / |.|`` (apex to base);
* endocardial transmural axis ``a_endo = (1 - s) n_lv + s n_rv`` with
  ``n_lv = -grad phi_lv / |.|`` (away from the LV cavity) and
  ``n_rv = grad phi_rv / |.|`` (towards the RV cavity), carrying the septal
  helix angle ``alpha_s = alpha_endo (1 - 2 s)``; it is flipped (with the
  sign of its angle, an equivalent fibre) to agree with
  ``n_epi = grad phi_epi / |.|``;
* blended axis ``a = (1 - e) a_endo + e n_epi`` and helix angle
  ``alpha = (1 - e) alpha_s' + e alpha_epi`` with ``e = phi_epi``;
* frame: transmural ``e_t = a`` made orthogonal to ``e_l``, circumferential
  ``e_c = e_l x e_t`` (so ``(e_c, e_l, e_t)`` is right-handed), fibre
  ``f = cos(alpha) e_c + sin(alpha) e_l`` -- a rotation of ``e_c`` by
  ``alpha`` about the transmural axis; sheet ``e_t``; sheet-normal ``f x e_t``.

In the LV free wall this gives ``alpha`` linear in depth from ``alpha_endo``
(endocardium) to ``alpha_epi`` (epicardium); the RV free wall is the same
with respect to its own outward axis; across the septum the angle turns from
``alpha_endo`` (LV side) through 0 to ``-alpha_endo`` with respect to the
LV-to-RV axis, which is ``+alpha_endo`` with respect to the RV's outward axis,
so the field is continuous at both endocardia. Angles are in degrees.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from numpy.typing import ArrayLike
from scipy.sparse.csgraph import connected_components

from .._result import Result
from .._validate import as_float_array, as_index_array, as_scalar
from ..errors import ConvergenceError, InvalidInputError, InvalidTypeError, MeshError, SingularSystemError

if TYPE_CHECKING:
    from ..eikonal import TetMesh
    from .heart import BiventricularMesh

__all__ = [
    "FiberField",
    "LaplaceCoordinates",
    "p1_gradients",
    "stiffness_matrix",
    "solve_laplace",
    "laplace_coordinates",
    "rule_based",
    "helix_angles",
]

#: above this many unknowns the Laplace problems use preconditioned CG instead of SuperLU
DIRECT_LIMIT = 5_000


@dataclass(frozen=True)
class LaplaceCoordinates(Result):
    """Nodal harmonic coordinates, each float64 of shape (n_points,) and dimensionless.

    Attributes
    ----------
    phi_epi, phi_lv, phi_rv : ndarray
        Transmural fields (see module docstring); ``phi_epi + phi_lv + phi_rv = 1``.
    septal : ndarray
        ``phi_rv / (phi_lv + phi_rv)`` (0 on the LV side, 1 on the RV side; 0.5 on the epicardium).
    apicobasal : ndarray
        ``psi_ab``: 0 at the apex, 1 on the base.
    apex : int
        The apex node used.
    """

    phi_epi: np.ndarray
    phi_lv: np.ndarray
    phi_rv: np.ndarray
    septal: np.ndarray
    apicobasal: np.ndarray
    apex: int


@dataclass(frozen=True)
class FiberField(Result):
    """Per-element fibre frame from :func:`rule_based`.

    Attributes
    ----------
    fibers, sheets, normals : ndarray, float64, shape (n_tets, 3)
        Orthonormal fibre, sheet (transmural) and sheet-normal directions.
    helix : ndarray, float64, shape (n_tets,)
        Helix angle (degrees) prescribed in each element, w.r.t. its own frame.
    transmural : ndarray, float64, shape (n_tets,)
        ``phi_epi`` averaged over each element's nodes.
    coordinates : LaplaceCoordinates
        The nodal Laplace fields the frame was built from.
    """

    fibers: np.ndarray
    sheets: np.ndarray
    normals: np.ndarray
    helix: np.ndarray
    transmural: np.ndarray
    coordinates: LaplaceCoordinates


# ----------------------------------------------------------------------------------------------
# P1 finite elements


def _mesh_arrays(mesh, tets=None) -> tuple[np.ndarray, np.ndarray]:
    """(points, tets) from a mesh object with ``.points``/``.tets`` or from arrays."""
    if tets is None:
        if not (hasattr(mesh, "points") and hasattr(mesh, "tets")):
            raise InvalidTypeError(
                "pass a mesh with .points and .tets (TetMesh, BiventricularMesh) or points and tets arrays; "
                f"got {type(mesh).__name__} without tets"
            )
        points, tets = mesh.points, mesh.tets
    else:
        points = mesh.points if hasattr(mesh, "points") else mesh
    pts = as_float_array("points", points, shape=(None, 3))
    t = as_index_array("tets", tets, upper=pts.shape[0], shape=(None, 4))
    if t.shape[0] == 0:
        raise MeshError("tets is empty: a mesh needs at least one tetrahedron")
    return pts, t


def p1_gradients(points: ArrayLike, tets: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of the P1 hat functions and volumes of tetrahedra.

    Parameters
    ----------
    points : ndarray, float64, shape (n_points, 3)
        Coordinates (mm).
    tets : ndarray, int64, shape (n_tets, 4)

    Returns
    -------
    grads : ndarray, float64, shape (n_tets, 4, 3)
        ``grads[e, k]`` is the (constant) gradient of the hat function of local
        vertex ``k`` in element ``e`` (1/mm).
    volumes : ndarray, float64, shape (n_tets,)
        Unsigned volumes (mm^3).

    Raises
    ------
    MeshError
        If an element is degenerate (zero volume).
    """
    p = points[tets]
    c1, c2, c3 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], p[:, 3] - p[:, 0]
    # rows of the inverse Jacobian from cross products: (J^-1)_k = (c_i x c_j) / det
    r1, r2, r3 = np.cross(c2, c3), np.cross(c3, c1), np.cross(c1, c2)
    det = np.einsum("ij,ij->i", c1, r1)
    scale = np.max(np.linalg.norm(np.stack([c1, c2, c3], 1), axis=2), axis=1) ** 3
    bad = np.abs(det) <= 1e-12 * scale
    if bad.any():
        e = int(np.argmax(bad))
        raise MeshError(
            f"tetrahedron {e} (vertices {tets[e].tolist()}) is degenerate: volume {det[e] / 6:.3g}"
        )
    g = np.stack([r1, r2, r3], axis=1) / det[:, None, None]
    grads = np.concatenate([-g.sum(axis=1, keepdims=True), g], axis=1)
    return grads, np.abs(det) / 6.0


def stiffness_matrix(points: ArrayLike, tets: ArrayLike) -> sp.csr_matrix:
    """Assemble the P1 stiffness matrix ``K_ij = sum_e |e| grad(l_i) . grad(l_j)``.

    Parameters
    ----------
    points : array_like, float, shape (n_points, 3)
    tets : array_like, int, shape (n_tets, 4)

    Returns
    -------
    scipy.sparse.csr_matrix, float64, shape (n_points, n_points)
        Symmetric positive semi-definite (units mm).
    """
    pts, t = _mesh_arrays(points, tets)
    grads, vol = p1_gradients(pts, t)
    ke = np.einsum("e,eid,ejd->eij", vol, grads, grads)
    rows = np.repeat(t, 4, axis=1).ravel()
    cols = np.tile(t, (1, 4)).ravel()
    n = pts.shape[0]
    return sp.coo_matrix((ke.ravel(), (rows, cols)), shape=(n, n)).tocsr()


def _as_node_set(name: str, x, n: int) -> np.ndarray:
    """Node indices from a boolean mask (n,) or an index array."""
    a = np.asarray(x)
    if a.dtype == bool:
        if a.shape != (n,):
            raise InvalidInputError(f"{name} as a mask must have shape ({n},), got {a.shape}")
        return np.nonzero(a)[0].astype(np.int64)
    idx = as_index_array(name, a, upper=n)
    if idx.ndim != 1:
        raise InvalidInputError(f"{name} must be a 1-D index array or a boolean mask, got shape {idx.shape}")
    return np.unique(idx)


def solve_laplace(points: ArrayLike, tets: ArrayLike, nodes: ArrayLike, values: ArrayLike, *, K: sp.spmatrix | None = None, rtol: float = 1e-10, x0: ArrayLike | None = None) -> np.ndarray:
    """Solve ``-div(grad u) = 0`` with P1 elements, ``u[nodes] = values``, natural BC elsewhere.

    Parameters
    ----------
    points : array_like, float, shape (n_points, 3)
    tets : array_like, int, shape (n_tets, 4)
    nodes : array_like, int, shape (k,)
        Dirichlet nodes (distinct).
    values : array_like, float, shape (k,) or (k, r)
        Dirichlet values; several columns solve several problems with one factorisation.
    K : scipy.sparse matrix, optional
        The stiffness matrix, if already assembled.
    rtol : float
        Relative residual tolerance of the iterative solver used above
        ``DIRECT_LIMIT`` unknowns (below it SuperLU is used).
    x0 : array_like, float, shape (n_points,) or (n_points, r), optional
        Initial guess for the iterative solver (ignored by the direct one).

    Returns
    -------
    ndarray, float64, shape (n_points,) or (n_points, r)

    Raises
    ------
    MeshError
        If a point belongs to no tetrahedron.
    SingularSystemError
        If a connected part of the mesh has no Dirichlet node.
    ConvergenceError
        If the iterative solver does not reach ``rtol``.
    """
    pts, t = _mesh_arrays(points, tets)
    n = pts.shape[0]
    idx = as_index_array("nodes", nodes, upper=n, shape=(None,))
    vals = as_float_array("values", values, shape=None)
    if vals.shape[:1] != idx.shape:
        raise InvalidInputError(
            f"values must have {idx.shape[0]} rows (one per node), got shape {vals.shape}"
        )
    if idx.size == 0:
        raise InvalidInputError("nodes is empty: the Laplace problem needs Dirichlet nodes")
    if np.unique(idx).size != idx.size:
        raise InvalidInputError("nodes contains repeated indices")
    used = np.zeros(n, dtype=bool)
    used[t.ravel()] = True
    if not used.all():
        i = int(np.argmin(used))
        raise MeshError(f"{int((~used).sum())} point(s) belong to no tetrahedron (first: {i})")
    if K is None:
        K = stiffness_matrix(pts, t)
    K = sp.csr_matrix(K)
    ncomp, lab = connected_components(K, directed=False)
    if ncomp > 1:
        has = np.zeros(ncomp, dtype=bool)
        has[lab[idx]] = True
        if not has.all():
            c = int(np.argmin(has))
            raise SingularSystemError(
                f"mesh part {c} ({int((lab == c).sum())} points, e.g. point {int(np.argmax(lab == c))}) "
                "has no Dirichlet node: its Laplace solution is undetermined"
            )
    squeeze = vals.ndim == 1
    V = vals.reshape(len(idx), -1)
    fixed = np.zeros(n, dtype=bool)
    fixed[idx] = True
    free = np.nonzero(~fixed)[0]
    U = np.zeros((n, V.shape[1]))
    U[idx] = V
    if free.size:
        Kff = K[free][:, free]
        rhs = -(K[free][:, idx] @ V)
        if free.size <= DIRECT_LIMIT:
            lu = spla.splu(Kff.tocsc())
            U[free] = lu.solve(rhs)
        else:
            X0 = None
            if x0 is not None:
                X0 = as_float_array("x0", x0).reshape(n, -1)
                if X0.shape[1] != V.shape[1]:
                    raise InvalidInputError(f"x0 must have shape ({n},) or ({n}, {V.shape[1]})")
            dinv = 1.0 / Kff.diagonal()
            M = spla.LinearOperator(Kff.shape, matvec=lambda x: dinv * x)
            for j in range(V.shape[1]):
                b = rhs[:, j]
                guess = None if X0 is None else X0[free, j]
                x, info = spla.cg(Kff, b, x0=guess, rtol=rtol, atol=0.0, maxiter=20 * free.size, M=M)
                res = np.linalg.norm(Kff @ x - b) / max(np.linalg.norm(b), np.finfo(float).tiny)
                if info != 0 or not res <= 10 * rtol:
                    raise ConvergenceError(f"CG did not converge for column {j}: relative residual {res:.3g}")
                U[free, j] = x
    return U[:, 0] if squeeze else U


# ----------------------------------------------------------------------------------------------
# coordinates and fibres


def _default_apex(points: np.ndarray, epi: np.ndarray, base: np.ndarray) -> int:
    """Epicardial node farthest from the best-fit plane of the base nodes."""
    bp = points[base]
    c = bp.mean(axis=0)
    normal = np.linalg.svd(bp - c, full_matrices=False)[2][-1]
    dist = np.abs((points[epi] - c) @ normal)
    return int(epi[int(np.argmax(dist))])


def _tags_from(mesh, name, value):
    if value is not None:
        return value
    masks = getattr(mesh, "masks", None)
    if isinstance(masks, dict) and name in masks:
        return masks[name]
    raise InvalidInputError(f"{name} is required (a boolean mask over the points or node indices)")


def laplace_coordinates(
    mesh: TetMesh | BiventricularMesh | ArrayLike, tets: ArrayLike | None = None, *, lv_endo: ArrayLike | None = None, rv_endo: ArrayLike | None = None, epi: ArrayLike | None = None, base: ArrayLike | None = None, apex: ArrayLike | None = None
) -> LaplaceCoordinates:
    """Transmural, septal and apico-basal coordinates from P1 Laplace problems.

    Parameters
    ----------
    mesh : TetMesh, BiventricularMesh or array_like (n_points, 3)
        A mesh with ``.points``/``.tets``, or the points (then ``tets`` is required).
        Surface tags default to ``mesh.masks`` when the mesh carries them.
    tets : array_like, int, shape (n_tets, 4), optional
    lv_endo, rv_endo, epi, base : array_like
        Boolean masks (n_points,) or node indices of the tagged surfaces.
        ``rv_endo`` may be empty (LV-only geometry).
    apex : int, optional
        Apex node; default ``mesh.apex`` if present, else the epicardial node
        farthest from the plane of the base.

    Returns
    -------
    LaplaceCoordinates
    """
    pts, t = _mesh_arrays(mesh, tets)
    n = pts.shape[0]
    lv = _as_node_set("lv_endo", _tags_from(mesh, "lv_endo", lv_endo), n)
    rv = _as_node_set("rv_endo", _tags_from(mesh, "rv_endo", rv_endo), n)
    ep = _as_node_set("epi", _tags_from(mesh, "epi", epi), n)
    bs = _as_node_set("base", _tags_from(mesh, "base", base), n)
    for name, s in (("lv_endo", lv), ("epi", ep), ("base", bs)):
        if s.size == 0:
            raise InvalidInputError(f"{name} is empty")
    for (na, a), (nb, b) in (
        (("lv_endo", lv), ("rv_endo", rv)),
        (("lv_endo", lv), ("epi", ep)),
        (("rv_endo", rv), ("epi", ep)),
    ):
        common = np.intersect1d(a, b)
        if common.size:
            raise InvalidInputError(
                f"{na} and {nb} share {common.size} node(s) (first: {int(common[0])}); "
                "the transmural Laplace problems need disjoint Dirichlet sets"
            )
    if apex is None:
        apex = getattr(mesh, "apex", None)
    if apex is None:
        apex = _default_apex(pts, ep, bs)
    else:
        a = as_index_array("apex", np.reshape(apex, -1), upper=n)
        if a.shape != (1,):
            raise InvalidInputError(f"apex must be one node index, got {np.shape(apex)}")
        apex = int(a[0])
    if np.isin(apex, bs):
        raise InvalidInputError(f"apex node {apex} lies on the base")
    K = stiffness_matrix(pts, t)
    nodes = np.concatenate([lv, rv, ep])
    vals = np.zeros((nodes.size, 2))
    vals[: lv.size, 0] = 1.0  # phi_lv
    vals[lv.size : lv.size + rv.size, 1] = 1.0  # phi_rv
    U = solve_laplace(pts, t, nodes, vals, K=K)
    phi_lv, phi_rv = U[:, 0], U[:, 1]
    phi_epi = 1.0 - phi_lv - phi_rv
    ab_nodes = np.concatenate([[apex], bs])
    ab_vals = np.concatenate([[0.0], np.ones(bs.size)])
    # initial guess for the iterative solver: normalised height above the apex
    axis = pts[bs].mean(axis=0) - pts[apex]
    guess = np.clip((pts - pts[apex]) @ axis / max(axis @ axis, 1e-300), 0.0, 1.0)
    psi = solve_laplace(pts, t, ab_nodes, ab_vals, K=K, x0=guess)
    den = phi_lv + phi_rv
    septal = np.where(den > 1e-12, phi_rv / np.where(den > 1e-12, den, 1.0), 0.5)
    return LaplaceCoordinates(
        phi_epi=phi_epi,
        phi_lv=phi_lv,
        phi_rv=phi_rv,
        septal=np.clip(septal, 0.0, 1.0),
        apicobasal=psi,
        apex=apex,
    )


def _unit(v: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    nrm = np.linalg.norm(v, axis=-1, keepdims=True)
    small = nrm[..., 0] <= 1e-12
    out = v / np.where(nrm > 0, nrm, 1.0)
    if small.any():
        out[small] = fallback[small] if fallback.ndim == 2 else fallback
    return out


def _any_perpendicular(u: np.ndarray) -> np.ndarray:
    trial = np.where(np.abs(u[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0, 1.0, 0]]))
    p = trial - np.einsum("ij,ij->i", trial, u)[:, None] * u
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def rule_based(
    mesh: TetMesh | BiventricularMesh | ArrayLike,
    tets: ArrayLike | None = None,
    *,
    lv_endo: ArrayLike | None = None,
    rv_endo: ArrayLike | None = None,
    epi: ArrayLike | None = None,
    base: ArrayLike | None = None,
    apex: ArrayLike | None = None,
    alpha_endo: float = 60.0,
    alpha_epi: float = -60.0,
    coordinates: LaplaceCoordinates | None = None,
) -> FiberField:
    """Rule-based fibre, sheet and sheet-normal directions per tetrahedron.

    Helix angle rotating from ``alpha_endo`` (endocardium) to ``alpha_epi``
    (epicardium) around the transmural axis; see the module docstring for the
    construction and sign conventions.

    Parameters
    ----------
    mesh : TetMesh, BiventricularMesh or array_like (n_points, 3)
        A mesh with ``.points``/``.tets`` (tags default to ``mesh.masks``), or points.
    tets : array_like, int, shape (n_tets, 4), optional
        Required when ``mesh`` is a points array.
    lv_endo, rv_endo, epi, base : array_like, optional
        Boolean masks (n_points,) or node indices of the tagged surfaces.
    apex : int, optional
        Apex node (default: ``mesh.apex`` or the epicardial node farthest from the base plane).
    alpha_endo, alpha_epi : float
        Helix angles in degrees, in [-90, 90].
    coordinates : LaplaceCoordinates, optional
        Precomputed coordinates (skips the Laplace solves).

    Returns
    -------
    FiberField
    """
    a_endo = as_scalar("alpha_endo", alpha_endo)
    a_epi = as_scalar("alpha_epi", alpha_epi)
    for name, v in (("alpha_endo", a_endo), ("alpha_epi", a_epi)):
        if abs(v) > 90:
            raise InvalidInputError(f"{name} must be in [-90, 90] degrees, got {v}")
    pts, t = _mesh_arrays(mesh, tets)
    if coordinates is None:
        coordinates = laplace_coordinates(
            mesh if tets is None else pts,
            t if tets is not None else None,
            lv_endo=lv_endo,
            rv_endo=rv_endo,
            epi=epi,
            base=base,
            apex=apex,
        )
    elif coordinates.phi_epi.shape != (pts.shape[0],):
        raise InvalidInputError(
            f"coordinates are for {coordinates.phi_epi.shape[0]} points, the mesh has {pts.shape[0]}"
        )
    co = coordinates
    grads, _ = p1_gradients(pts, t)

    def grad(u):
        return np.einsum("ek,ekd->ed", u[t], grads)

    long_axis = pts[t].mean(axis=1).mean(axis=0) - pts[co.apex]
    long_axis = long_axis / max(np.linalg.norm(long_axis), 1e-300)
    e_l = _unit(grad(co.apicobasal), long_axis)
    n_epi = _unit(grad(co.phi_epi), np.zeros(3))
    n_lv = _unit(-grad(co.phi_lv), n_epi)
    n_rv = _unit(grad(co.phi_rv), -n_epi)
    e = co.phi_epi[t].mean(axis=1)
    den = (co.phi_lv + co.phi_rv)[t].mean(axis=1)
    s = np.where(den > 1e-12, co.phi_rv[t].mean(axis=1) / np.where(den > 1e-12, den, 1.0), 0.5)
    s = np.clip(s, 0.0, 1.0)
    alpha_s = a_endo * (1.0 - 2.0 * s)
    a_en = _unit((1.0 - s)[:, None] * n_lv + s[:, None] * n_rv, n_epi)
    flip = np.where(np.einsum("ij,ij->i", a_en, n_epi) < 0.0, -1.0, 1.0)
    a_en = a_en * flip[:, None]
    alpha_s = alpha_s * flip
    axis = _unit((1.0 - e)[:, None] * a_en + e[:, None] * n_epi, a_en)
    alpha = (1.0 - e) * alpha_s + e * a_epi
    e_t = axis - np.einsum("ij,ij->i", axis, e_l)[:, None] * e_l
    e_t = _unit(e_t, _any_perpendicular(e_l))
    e_c = np.cross(e_l, e_t)
    ar = np.radians(alpha)[:, None]
    f = np.cos(ar) * e_c + np.sin(ar) * e_l
    f /= np.linalg.norm(f, axis=1, keepdims=True)
    nrm = np.cross(f, e_t)
    if not np.all(np.isfinite(f)):  # pragma: no cover - guarded by the fallbacks above
        warnings.warn("non-finite fibre directions were produced", RuntimeWarning, stacklevel=2)
    return FiberField(fibers=f, sheets=e_t, normals=nrm, helix=alpha, transmural=e, coordinates=co)


def helix_angles(fibers: ArrayLike, longitudinal: ArrayLike, transmural: ArrayLike) -> np.ndarray:
    """Helix angle (degrees, in (-90, 90]) of fibres in a given local frame.

    ``e_t`` is ``transmural`` made orthogonal to ``longitudinal``; ``e_c = e_l x e_t``;
    the angle is ``atan((f . e_l) / (f . e_c))``, independent of the sign of ``f``.

    Parameters
    ----------
    fibers, longitudinal, transmural : array_like, float, shape (m, 3)

    Returns
    -------
    ndarray, float64, shape (m,)
    """
    f = as_float_array("fibers", fibers, shape=(None, 3))
    el = as_float_array("longitudinal", longitudinal, shape=f.shape)
    et = as_float_array("transmural", transmural, shape=f.shape)
    el = el / np.linalg.norm(el, axis=1, keepdims=True)
    et = et - np.einsum("ij,ij->i", et, el)[:, None] * el
    et = et / np.linalg.norm(et, axis=1, keepdims=True)
    ec = np.cross(el, et)
    ang = np.degrees(np.arctan2(np.einsum("ij,ij->i", f, el), np.einsum("ij,ij->i", f, ec)))
    ang = np.where(ang > 90, ang - 180, ang)
    return np.where(ang <= -90, ang + 180, ang)
