"""Conduction tensors from fibre directions and velocities, with their vjp.

The eikonal solver uses the fim-python convention ``sqrt(∇φᵀ D ∇φ) = 1``, so
``D`` is a "squared velocity" tensor (mm²/ms²): a wave travelling along the unit
direction ``u`` has speed ``sqrt(uᵀ D u)`` when ``u`` is an eigenvector of
``D``. For cardiac tissue with fibre direction ``f`` (and optionally a sheet
direction ``s``)::

    transversely isotropic:  D = v_c² I + (v_f² − v_c²) f̂ f̂ᵀ
    orthotropic:             D = v_n² I + (v_f² − v_n²) f̂ f̂ᵀ + (v_c² − v_n²) ŝ ŝᵀ

with ``f̂ = f / |f|`` and ``ŝ`` the normalised part of ``s`` orthogonal to
``f̂`` (Gram–Schmidt), so inputs need not be exactly unit or orthogonal and the
vjp includes the normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .._result import Result
from .._validate import as_float_array, check_positive
from ..errors import InvalidInputError, InvalidTypeError, ShapeError

__all__ = ["conduction_tensor", "conduction_tensor_vjp", "ConductionGradient"]


@dataclass(frozen=True, eq=False)
class ConductionGradient(Result):
    """Vector-Jacobian product of :func:`conduction_tensor`.

    Attributes
    ----------
    fibers : ndarray, same shape as the ``fibers`` argument
        dL/dfibers (loss units per unit of direction component; includes the
        normalisation, so it is orthogonal to each fibre).
    v_fiber, v_cross : float or ndarray (n_elements,)
        dL/dv, same shape as the corresponding argument (loss units per mm/ms).
    v_normal : float or ndarray (n_elements,) or None
        dL/dv_normal, None when ``v_normal`` was not given.
    """

    fibers: np.ndarray
    v_fiber: float | np.ndarray
    v_cross: float | np.ndarray
    v_normal: float | np.ndarray | None


def _prep(fibers, v_fiber, v_cross, v_normal):
    f = as_float_array("fibers", fibers)
    single = f.ndim == 1
    if f.ndim == 1:
        f = f[None]
    if f.ndim == 2:
        if f.shape[1] not in (2, 3):
            raise ShapeError(
                f"fibers must have shape (n_elements, 2 or 3) or (n_elements, 2, 3), got {f.shape}"
            )
        sheets = None
        fib = f
    elif f.ndim == 3:
        if f.shape[1:] != (2, 3):
            raise ShapeError(f"fibers with sheets must have shape (n_elements, 2, 3), got {f.shape}")
        fib = f[:, 0]
        sheets = f[:, 1]
    else:
        raise ShapeError(f"fibers must have shape (n_elements, dim) or (n_elements, 2, 3), got {f.shape}")
    m = fib.shape[0]
    nf = np.linalg.norm(fib, axis=1)
    bad = np.nonzero(nf <= 1e-12)[0]
    if bad.size:
        raise InvalidInputError(f"fibers[{int(bad[0])}] has zero length ({bad.size} zero fibre(s))")

    def vel(name, v):
        if v is None:
            if name != "v_normal":
                raise InvalidTypeError(f"{name} must be a velocity (mm/ms), got None")
            return None, True
        scalar = np.ndim(v) == 0
        a = as_float_array(name, v)
        if scalar:
            check_positive(name, a.reshape(1))
            return np.full(m, float(a.reshape(-1)[0])), True
        if a.shape != (m,):
            raise ShapeError(f"{name} must be a scalar or have shape ({m},), got {a.shape}")
        check_positive(name, a)
        return a, False

    def vel_checked(name, v):
        out = vel(name, v)
        a = out[0]
        with np.errstate(over="ignore"):
            over = a is not None and not np.all(np.isfinite(a * a))
        if over:
            raise InvalidInputError(
                f"{name} up to {float(np.max(a)):.3g} mm/ms: its square overflows float64"
            )
        return out

    vf, sf = vel_checked("v_fiber", v_fiber)
    vc, sc = vel_checked("v_cross", v_cross)
    vn, sn = vel_checked("v_normal", v_normal)
    if sheets is None and vn is not None:
        raise InvalidInputError(
            "v_normal needs sheet directions: pass fibers of shape (n_elements, 2, 3) = (fibre, sheet)"
        )
    ns = None
    if sheets is not None:
        if vn is None:
            vn, sn = vc, sc
        s_t = sheets - np.einsum("ij,ij->i", sheets, fib / nf[:, None])[:, None] * (fib / nf[:, None])
        ns = np.linalg.norm(s_t, axis=1)
        bad = np.nonzero(ns <= 1e-12 * np.maximum(np.linalg.norm(sheets, axis=1), 1e-300))[0]
        if bad.size:
            raise InvalidInputError(f"sheet direction {int(bad[0])} is parallel to its fibre (or zero)")
    return f, fib, sheets, nf, ns, (vf, sf), (vc, sc), (vn, sn), single


def conduction_tensor(fibers: ArrayLike, v_fiber: ArrayLike, v_cross: ArrayLike, v_normal: ArrayLike | None = None) -> np.ndarray:
    """Per-element conduction tensors ``D`` (squared velocities, mm²/ms²).

    Parameters
    ----------
    fibers : array_like, shape (n_elements, dim) or (n_elements, 2, 3), float
        Fibre directions (dim 2 or 3; need not be unit), or stacked
        (fibre, sheet) directions for orthotropic tensors.
    v_fiber : float or array_like (n_elements,)
        Conduction velocity along the fibres, mm/ms (= m/s).
    v_cross : float or array_like (n_elements,)
        Velocity across the fibres (within the sheet when sheets are given), mm/ms.
    v_normal : float or array_like (n_elements,), optional
        Velocity along the sheet normal (needs sheets; default ``v_cross``), mm/ms.

    Returns
    -------
    D : ndarray, shape (n_elements, dim, dim), float64
        Symmetric positive definite tensors for :func:`physim.eikonal.solve`.
    """
    f, fib, sheets, nf, ns, (vf, _), (vc, _), (vn, _), _ = _prep(fibers, v_fiber, v_cross, v_normal)
    fh = fib / nf[:, None]
    dim = fib.shape[1]
    eye = np.eye(dim)[None]
    ff = fh[:, :, None] * fh[:, None, :]
    if sheets is None:
        return vc[:, None, None] ** 2 * eye + (vf**2 - vc**2)[:, None, None] * ff
    sh = (sheets - np.einsum("ij,ij->i", sheets, fh)[:, None] * fh) / ns[:, None]
    ss = sh[:, :, None] * sh[:, None, :]
    return (
        vn[:, None, None] ** 2 * eye
        + (vf**2 - vn**2)[:, None, None] * ff
        + (vc**2 - vn**2)[:, None, None] * ss
    )


def conduction_tensor_vjp(fibers: ArrayLike, v_fiber: ArrayLike, v_cross: ArrayLike, v_normal: ArrayLike | None, dD: ArrayLike) -> ConductionGradient:
    """Pull a cotangent ``dD = dL/dD`` back to fibres and velocities.

    Parameters
    ----------
    fibers, v_fiber, v_cross, v_normal
        As for :func:`conduction_tensor` (``v_normal`` may be None).
    dD : array_like, shape (n_elements, dim, dim)
        dL/dD, e.g. ``adjoint(...).D``.

    Returns
    -------
    ConductionGradient
        Gradients shaped like the inputs (scalar velocities get the summed gradient).
    """
    f, fib, sheets, nf, ns, (vf, sf), (vc, sc), (vn, sn), single = _prep(fibers, v_fiber, v_cross, v_normal)
    m, dim = fib.shape
    G = as_float_array("dD", dD, shape=(m, dim, dim))
    S = G + G.transpose(0, 2, 1)
    fh = fib / nf[:, None]
    Gff = np.einsum("eij,ei,ej->e", G, fh, fh)
    trG = np.einsum("eii->e", G)

    def proj_back(gbar, u, norm):
        # u = w/|w| : dL/dw = (I - u uᵀ) ḡ / |w|
        return (gbar - np.einsum("ij,ij->i", gbar, u)[:, None] * u) / norm[:, None]

    if sheets is None:
        d_vf = 2 * vf * Gff
        d_vc = 2 * vc * (trG - Gff)
        g_fh = (vf**2 - vc**2)[:, None] * np.einsum("eij,ej->ei", S, fh)
        d_f = proj_back(g_fh, fh, nf)
        d_fibers = d_f
        d_vn = None
    else:
        proj = np.einsum("ij,ij->i", sheets, fh)
        s_t = sheets - proj[:, None] * fh
        sh = s_t / ns[:, None]
        Gss = np.einsum("eij,ei,ej->e", G, sh, sh)
        d_vf = 2 * vf * Gff
        d_vc = 2 * vc * Gss
        d_vn = 2 * vn * (trG - Gff - Gss)
        g_fh = (vf**2 - vn**2)[:, None] * np.einsum("eij,ej->ei", S, fh)
        g_sh = (vc**2 - vn**2)[:, None] * np.einsum("eij,ej->ei", S, sh)
        g_st = proj_back(g_sh, sh, ns)
        d_s = g_st - fh * np.einsum("ij,ij->i", fh, g_st)[:, None]
        g_fh = g_fh - proj[:, None] * g_st - np.einsum("ij,ij->i", fh, g_st)[:, None] * sheets
        d_f = proj_back(g_fh, fh, nf)
        d_fibers = np.stack([d_f, d_s], axis=1)
        if v_normal is None:  # v_normal defaulted to v_cross
            d_vc = d_vc + d_vn
            d_vn = None
    if single:
        d_fibers = d_fibers[0]

    def shape_v(d, scalar):
        if d is None:
            return None
        return float(d.sum()) if scalar else d

    return ConductionGradient(
        fibers=d_fibers,
        v_fiber=shape_v(d_vf, sf),
        v_cross=shape_v(d_vc, sc),
        v_normal=shape_v(d_vn, sn) if v_normal is not None else None,
    )
