"""Numba kernels of the spring-lattice solver.

Kernels assume validated, contiguous float64/int64 input (see
:mod:`physim.lattice.solve`). Notation: ``n`` nodes, ``m`` bonds, ``d`` = 2 or
3; a bond ``i`` joins nodes ``a = bonds[i, 0]`` and ``b = bonds[i, 1]``; its
element dofs are ``[a*d .. a*d+d-1, b*d .. b*d+d-1]`` and its element
stiffness matrix, for a unit direction ``n`` and coefficients ``(s, g)``, is::

    B = s n n^T + g (I - n n^T),     K_e = [[B, -B], [-B, B]]

with ``s = k, g = 0`` for the linear spring and ``s = k, g = t / l`` (tension
over current length) for the geometrically exact spring's tangent.
"""

from __future__ import annotations

import numpy as np

from .._jit import njit


@njit
def element_rows_cols(bonds, free_index, d):
    """Free-dof row/column of every element-matrix entry (-1 where pinned).

    Returns two int64 arrays of length ``m * (2d)^2`` ordered bond by bond,
    entry ``(p, q)`` at ``p * 2d + q``.
    """
    m = bonds.shape[0]
    nd = 2 * d
    rows = np.empty(m * nd * nd, dtype=np.int64)
    cols = np.empty(m * nd * nd, dtype=np.int64)
    dofs = np.empty(nd, dtype=np.int64)
    for i in range(m):
        for c in range(d):
            dofs[c] = free_index[bonds[i, 0] * d + c]
            dofs[d + c] = free_index[bonds[i, 1] * d + c]
        base = i * nd * nd
        for p in range(nd):
            for q in range(nd):
                rows[base + p * nd + q] = dofs[p]
                cols[base + p * nd + q] = dofs[q]
    return rows, cols


@njit
def assemble(directions, s_coef, g_coef, entry_map, nnz):
    """CSC data array of ``K = sum_i K_e(i)`` on the cached sparsity pattern.

    Parameters
    ----------
    directions : float64 (m, d)
        Unit bond directions (reference for the linear model, current for the tangent).
    s_coef, g_coef : float64 (m,)
        Axial and transverse coefficients of each element block (N/m).
    entry_map : int64 (m, (2d)^2)
        Position of each element entry in the data array, -1 if pinned.
    nnz : int
        Length of the data array.
    """
    m, d = directions.shape
    nd = 2 * d
    data = np.zeros(nnz)
    blk = np.empty((d, d))
    for i in range(m):
        s = s_coef[i]
        g = g_coef[i]
        for al in range(d):
            for be in range(d):
                nn = directions[i, al] * directions[i, be]
                blk[al, be] = s * nn + g * ((1.0 if al == be else 0.0) - nn)
        for p in range(nd):
            sp = -1.0 if p < d else 1.0
            for q in range(nd):
                pos = entry_map[i, p * nd + q]
                if pos >= 0:
                    sq = -1.0 if q < d else 1.0
                    data[pos] += sp * sq * blk[p % d, q % d]
    return data


@njit
def project_batch(bonds, directions, u):
    """Elongations ``e[b, i] = n_i . (u[b, bonds[i,1]] - u[b, bonds[i,0]])``.

    ``directions`` float64 (m, d); ``u`` float64 (B, n, d); returns (B, m).
    Serial on purpose: the loop is memory-bound and takes about a millisecond
    for 10^5 bonds, less than waking a thread pool on a loaded machine.
    """
    nb = u.shape[0]
    m, d = directions.shape
    e = np.empty((nb, m))
    for i in range(m):
        a = bonds[i, 0]
        b = bonds[i, 1]
        for s in range(nb):
            acc = 0.0
            for c in range(d):
                acc += directions[i, c] * (u[s, b, c] - u[s, a, c])
            e[s, i] = acc
    return e


@njit
def internal_forces(bonds, directions, tensions, n_nodes):
    """Nodal forces ``C^T t`` of bond tensions, float64 (n, d).

    A bond in tension ``t`` pulls node ``a`` towards ``b`` and vice versa:
    ``f[a] -= t n`` and ``f[b] += t n`` (serial scatter-add).
    """
    m, d = directions.shape
    f = np.zeros((n_nodes, d))
    for i in range(m):
        a = bonds[i, 0]
        b = bonds[i, 1]
        for c in range(d):
            v = tensions[i] * directions[i, c]
            f[a, c] -= v
            f[b, c] += v
    return f


@njit
def current_geometry(points, bonds, u):
    """Current lengths (m,) and unit directions (m, d) of the bonds at ``points + u``."""
    m = bonds.shape[0]
    d = points.shape[1]
    lengths = np.empty(m)
    dirs = np.empty((m, d))
    for i in range(m):
        a = bonds[i, 0]
        b = bonds[i, 1]
        acc = 0.0
        for c in range(d):
            v = points[b, c] + u[b, c] - points[a, c] - u[a, c]
            dirs[i, c] = v
            acc += v * v
        ell = np.sqrt(acc)
        lengths[i] = ell
        inv = 1.0 / ell if ell > 0.0 else 0.0
        for c in range(d):
            dirs[i, c] *= inv
    return lengths, dirs
