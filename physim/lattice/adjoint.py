r"""Adjoint (reverse-mode) gradients of spring-network equilibria.

Linear model
------------
Equilibrium on the free dofs is ``K(k) u = f + C^T diag(k)(l0 - lg)`` with
``K = C^T diag(k) C``; the elastic elongation is ``e = C u + lg - l0``. For a
loss ``L(u)`` with ``g = dL/du``, differentiate the equilibrium:
``K du = -(dK) u + d(rhs)``. Introduce the adjoint field ``lam`` with

    K lam = g          (the same, symmetric, K: the forward factorisation is reused)

so that ``dL = g . du = lam . (d(rhs) - (dK) u)``. With
``dK/dk_i = c_i c_i^T`` (``c_i`` the i-th row of C) and
``d(rhs)/dk_i = c_i (l0 - lg)_i``, ``d(rhs)/d(l0_i) = k_i c_i``::

    dL/dk_i  = -(c_i . lam) (c_i . u + lg_i - l0_i) = -e_i(lam) e_i
    dL/dl0_i =  k_i (c_i . lam)                     =  k_i e_i(lam)
    dL/df    =  lam

where ``e_i(lam) = c_i . lam`` is the elongation of bond i under the adjoint
field. This is the in situ rule of Li & Mao (2024): apply the adjoint load
``-g`` at the outputs, measure the elongations ``e_adj = -e(lam)`` of the same
network, and ``dL/dk_i = e_i(forward) * e_i(adjoint)``.

Nonlinear model
---------------
The residual is ``R(u; k, l0) = sum_i t_i dl_i/du - f`` with
``t_i = k_i (l_i(u) - l0_i)`` and ``dl_i/du = c_i(u)`` (current unit
direction, with signs). At equilibrium ``R = 0``, so
``dL/dtheta = -lam . dR/dtheta`` with the tangent adjoint ``K_T(u*) lam = g``
(``K_T`` symmetric, factorised once at the converged state by the forward
solve). ``dR/dk_i = (l_i - l0_i) c_i(u)`` and ``dR/dl0_i = -k_i c_i(u)`` give
the same formulas as above with ``e_i = l_i - l0_i`` and
``e_i(lam) = c_i(u*) . lam`` measured along the deformed bonds.

Batches
-------
For ``B`` load cases the loss cotangent has shape (B, n, d); the linear
adjoint solves all ``B`` right-hand sides with the single forward
factorisation, the nonlinear one uses each sample's tangent factorisation.
Gradients are summed over the batch, or returned per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .._result import Result
from .._validate import as_float_array
from ..errors import InvalidTypeError, ShapeError
from . import _kernels
from .solve import Equilibrium, _scatter_free

__all__ = ["LatticeGradient", "adjoint"]


@dataclass(frozen=True)
class LatticeGradient(Result):
    """Gradient of a loss with respect to the network parameters.

    Attributes
    ----------
    stiffness : ndarray, float64 (m,) or (B, m)
        dL/dk (loss units per N/m); (B, m) when ``per_sample=True``.
    rest_length : ndarray, float64 (m,) or (B, m)
        dL/dl0 (loss units per m).
    forces : ndarray, float64 (n, d) or (B, n, d)
        dL/df per load case (loss units per N); zero on pinned dofs. This is
        the adjoint displacement field ``lam``.
    adjoint_elongations : ndarray, float64 (m,) or (B, m)
        ``e(lam)``; the in situ adjoint elongations are ``-e(lam)``.
    """

    stiffness: np.ndarray
    rest_length: np.ndarray
    forces: np.ndarray
    adjoint_elongations: np.ndarray


def adjoint(equilibrium: Equilibrium, d_loss_d_u: ArrayLike, *, per_sample: bool = False) -> LatticeGradient:
    """Vector-Jacobian product of :func:`~physim.lattice.solve` (no re-solve, no refactorisation).

    Parameters
    ----------
    equilibrium : Equilibrium
        Result of :func:`physim.lattice.solve`.
    d_loss_d_u : array_like, shape of ``equilibrium.displacements``
        ``dL/du`` (loss units per m), (n, d) or (B, n, d); entries on pinned
        dofs are ignored (those displacements are fixed at zero).
    per_sample : bool
        For a batch, return per-sample gradients (B, m) instead of their sum.

    Returns
    -------
    LatticeGradient

    Raises
    ------
    ShapeError
        ``d_loss_d_u`` does not match the displacements' shape.
    """
    if not isinstance(equilibrium, Equilibrium):
        raise InvalidTypeError(f"equilibrium must be an Equilibrium, got {type(equilibrium).__name__}")
    eq = equilibrium
    g = as_float_array("d_loss_d_u", d_loss_d_u)
    if g.shape != eq.displacements.shape:
        raise ShapeError(
            f"d_loss_d_u must have the shape of the displacements {eq.displacements.shape}, got {g.shape}"
        )
    net = eq.network
    batched = eq.batched
    gb = g if batched else g[None]
    e = eq.elongations if batched else eq.elongations[None]
    nb = gb.shape[0]
    free = net.free_dofs
    gf = gb.reshape(nb, -1)[:, free]
    if not eq.nonlinear:
        fac = eq._factors[0]
        lf = fac.solve(np.ascontiguousarray(gf.T)).T.reshape(nb, fac.n) if fac.n else np.zeros((nb, 0))
        lam = _scatter_free(net, lf)
        ea = _kernels.project_batch(net.bonds, np.ascontiguousarray(eq._directions), lam)
    else:
        lam = np.zeros((nb, net.n_nodes, net.dim))
        ea = np.empty((nb, net.n_bonds))
        for s in range(nb):
            fac = eq._factors[s]
            lam[s] = _scatter_free(net, fac.solve(gf[s])[None, :])[0]
            ea[s] = _kernels.project_batch(net.bonds, eq._directions[s], lam[s : s + 1])[0]
    dk = -ea * e
    dl0 = eq.stiffness[None, :] * ea
    if not per_sample or not batched:
        dk_out, dl0_out = dk.sum(axis=0), dl0.sum(axis=0)
    else:
        dk_out, dl0_out = dk, dl0
    if not batched:
        lam, ea = lam[0], ea[0]
    return LatticeGradient(stiffness=dk_out, rest_length=dl0_out, forces=lam, adjoint_elongations=ea)
