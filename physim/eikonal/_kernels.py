"""Numba kernels of the eikonal local update in its Lagrange/Cholesky form (private).

The adjoint re-evaluates every recorded update with these functions (the
weights λ and length s at the final times), and the tests check the fast
K form of the forward (:mod:`physim.eikonal._fim`) against them.

Conventions
-----------
Every element ``e`` carries the squared metric lengths of its edges,
``d2[e, k] = v_kᵀ D_e⁻¹ v_k`` with ``v_k`` the k-th edge vector, computed once
per solve from the mesh's precomputed edge vectors. All local updates are
expressed through them: for a target vertex ``a`` and upwind vertices ``j, k``
of the same element, the Gram matrix of ``x_a - x_j`` in the metric
``M = D⁻¹`` is ``G_jk = (d2[a,j] + d2[a,k] - d2[j,k]) / 2``.

Local update (one element, target ``a``, upwind support ``S``, |S| = 1..3)::

    U = min_{λ ≥ 0, Σλ = 1}  Σ_j λ_j t_j + sqrt(λᵀ G λ)

Stationarity (Lagrange multiplier μ) gives ``t + Gλ/s = μ 1`` with
``s = sqrt(λᵀGλ)``; multiplying by λ shows ``U = μ``. With the Cholesky
factor ``G = L Lᵀ``, ``y = L⁻¹ 1`` and ``z = L⁻¹ t``, μ solves
``|y|² μ² - 2 (y·z) μ + |z|² - 1 = 0``; the larger root is
``μ = (y·z + sqrt(disc)) / |y|²`` with ``disc = |y|² - (|y|²|z|² - (y·z)²)``,
``s = 1 / sqrt(disc)`` and ``λ = s L⁻ᵀ (μ y - z)``. The candidate is feasible
when ``disc > 0`` and every ``λ_j ≥ 0``. Because the objective is convex in λ,
the minimum over the closed simplex is the smallest feasible candidate over
all faces of the support simplex (the full tet, its triangles, its edges);
when the full candidate is feasible it is the minimum and the faces are skipped.
Times are shifted by ``t_0`` before the solve to avoid cancellation.

Record of the winning update (used by the adjoint): code ``mask | (a << 4)``
where bit ``j`` of ``mask`` marks local vertex ``j`` as part of the support.
"""

from __future__ import annotations

import numpy as np

from .._jit import njit, prange

INF = np.inf


# ----------------------------------------------------------------------------------
# per-element metric edge lengths
# ----------------------------------------------------------------------------------
@njit
def element_metrics(edge_vectors, D, rtol):
    """Squared metric edge lengths d2[e, k] = v_kᵀ D_e⁻¹ v_k (Cholesky per element).

    Also checks every ``D_e`` on the way: returns (d2 (m, ne), bad) with ``bad``
    the first element whose tensor is not symmetric (relative 1e-10) or whose
    Cholesky pivots are not > rtol·max|D_e| (-1 when all are SPD).
    """
    m, ne, dim = edge_vectors.shape
    out = np.empty((m, ne))
    L = np.zeros((3, 3))
    z = np.zeros(3)
    for e in range(m):
        scale = 0.0
        for i in range(dim):
            for j in range(dim):
                scale = max(scale, abs(D[e, i, j]))
        for i in range(dim):
            for j in range(i):
                if abs(D[e, i, j] - D[e, j, i]) > 1e-10 * scale:
                    return out, e
        if not _chol(D[e], dim, L, rtol * scale):
            return out, e
        for k in range(ne):
            acc = 0.0
            for i in range(dim):
                t = edge_vectors[e, k, i]
                for j in range(i):
                    t -= L[i, j] * z[j]
                z[i] = t / L[i, i]
                acc += z[i] * z[i]
            out[e, k] = acc
    return out, -1


@njit
def _chol(A, dim, L, floor):
    """Cholesky factor of the lower triangle of A into L; False if a pivot is ≤ floor."""
    for i in range(dim):
        for j in range(i + 1):
            s = A[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            if i == j:
                if not s > floor:
                    return False
                L[i, i] = np.sqrt(s)
            else:
                L[i, j] = s / L[j, j]
    return True


@njit(inline="always")
def _d2_grad_to_D_element(edge_vectors, D, g, e, out):
    """:func:`d2_grad_to_D` of element ``e`` in scalars: ``-M S M`` with ``M = D_e⁻¹``
    (adjugate) and ``S = Σ_k g_k v_k v_kᵀ``. A 2-D element is the 3-D case with
    ``v_k`` in the plane and ``D_e`` extended by a unit third axis (its block of
    ``-M S M`` is the 2-D answer)."""
    three = edge_vectors.shape[2] == 3
    s00 = 0.0
    s01 = 0.0
    s02 = 0.0
    s11 = 0.0
    s12 = 0.0
    s22 = 0.0
    nz = False
    for k in range(edge_vectors.shape[1]):
        gk = g[e, k]
        if gk == 0.0:
            continue
        nz = True
        v0 = edge_vectors[e, k, 0]
        v1 = edge_vectors[e, k, 1]
        v2 = edge_vectors[e, k, 2] if three else 0.0
        s00 += gk * v0 * v0
        s01 += gk * v0 * v1
        s02 += gk * v0 * v2
        s11 += gk * v1 * v1
        s12 += gk * v1 * v2
        s22 += gk * v2 * v2
    if not nz:
        return
    a = D[e, 0, 0]
    b = D[e, 1, 0]
    d = D[e, 1, 1]
    c = D[e, 2, 0] if three else 0.0
    f = D[e, 2, 1] if three else 0.0
    h = D[e, 2, 2] if three else 1.0
    c00 = d * h - f * f
    c01 = c * f - b * h
    c02 = b * f - c * d
    inv = 1.0 / (a * c00 + b * c01 + c * c02)
    m00 = c00 * inv
    m01 = c01 * inv
    m02 = c02 * inv
    m11 = (a * h - c * c) * inv
    m12 = (b * c - a * f) * inv
    m22 = (a * d - b * b) * inv
    # T = S M (rows of S times columns of M)
    t00 = s00 * m00 + s01 * m01 + s02 * m02
    t01 = s00 * m01 + s01 * m11 + s02 * m12
    t02 = s00 * m02 + s01 * m12 + s02 * m22
    t10 = s01 * m00 + s11 * m01 + s12 * m02
    t11 = s01 * m01 + s11 * m11 + s12 * m12
    t12 = s01 * m02 + s11 * m12 + s12 * m22
    t20 = s02 * m00 + s12 * m01 + s22 * m02
    t21 = s02 * m01 + s12 * m11 + s22 * m12
    t22 = s02 * m02 + s12 * m12 + s22 * m22
    r00 = m00 * t00 + m01 * t10 + m02 * t20
    r01 = m00 * t01 + m01 * t11 + m02 * t21
    r11 = m01 * t01 + m11 * t11 + m12 * t21
    out[e, 0, 0] = -r00
    out[e, 0, 1] = -r01
    out[e, 1, 0] = -r01
    out[e, 1, 1] = -r11
    if three:
        r02 = m00 * t02 + m01 * t12 + m02 * t22
        r12 = m01 * t02 + m11 * t12 + m12 * t22
        r22 = m02 * t02 + m12 * t12 + m22 * t22
        out[e, 0, 2] = -r02
        out[e, 1, 2] = -r12
        out[e, 2, 0] = -r02
        out[e, 2, 1] = -r12
        out[e, 2, 2] = -r22


@njit(parallel=True)
def d2_grad_to_D(edge_vectors, D, g):
    """dL/dD_e = -Σ_k g[e,k] w_k w_kᵀ with w_k = D_e⁻¹ v_k (the vjp of element_metrics)."""
    m, _, dim = edge_vectors.shape
    out = np.zeros((m, dim, dim))
    for e in prange(m):
        _d2_grad_to_D_element(edge_vectors, D, g, e, out)
    return out


# ----------------------------------------------------------------------------------
# local updates
# ----------------------------------------------------------------------------------
@njit
def upd1(t0, d0):
    """Edge update: t0 + |x_a - x_0|_M."""
    return t0 + np.sqrt(d0)


@njit
def upd2(t0, t1, g00, g01, g11):
    """Triangle (face) update with two upwind vertices.

    Returns (mu, lam0, lam1, s, feasible).
    """
    l00 = np.sqrt(g00)
    l10 = g01 / l00
    q = g11 - l10 * l10
    if not q > 0.0:
        return INF, 0.0, 0.0, 0.0, False
    l11 = np.sqrt(q)
    y0 = 1.0 / l00
    y1 = (1.0 - l10 * y0) / l11
    z1 = (t1 - t0) / l11  # z0 = 0 after the shift by t0
    a = y0 * y0 + y1 * y1
    b = y1 * z1
    cr = y0 * z1
    disc = a - cr * cr
    if not disc > 0.0:
        return INF, 0.0, 0.0, 0.0, False
    sq = np.sqrt(disc)
    mu = (b + sq) / a
    s = 1.0 / sq
    r0 = mu * y0
    r1 = mu * y1 - z1
    lam1 = s * r1 / l11
    lam0 = s * (r0 - l10 * (r1 / l11)) / l00
    if lam0 < 0.0 or lam1 < 0.0:
        return mu + t0, lam0, lam1, s, False
    return mu + t0, lam0, lam1, s, True


@njit
def upd3(t0, t1, t2, g00, g01, g02, g11, g12, g22):
    """Full tetrahedron update with three upwind vertices.

    Returns (mu, lam0, lam1, lam2, s, feasible).
    """
    l00 = np.sqrt(g00)
    l10 = g01 / l00
    l20 = g02 / l00
    q = g11 - l10 * l10
    if not q > 0.0:
        return INF, 0.0, 0.0, 0.0, 0.0, False
    l11 = np.sqrt(q)
    l21 = (g12 - l20 * l10) / l11
    q = g22 - l20 * l20 - l21 * l21
    if not q > 0.0:
        return INF, 0.0, 0.0, 0.0, 0.0, False
    l22 = np.sqrt(q)
    y0 = 1.0 / l00
    y1 = (1.0 - l10 * y0) / l11
    y2 = (1.0 - l20 * y0 - l21 * y1) / l22
    z1 = (t1 - t0) / l11
    z2 = ((t2 - t0) - l21 * z1) / l22
    a = y0 * y0 + y1 * y1 + y2 * y2
    b = y1 * z1 + y2 * z2
    # |y × z|² with z0 = 0
    c0 = y1 * z2 - y2 * z1
    c1 = -y0 * z2
    c2 = y0 * z1
    disc = a - (c0 * c0 + c1 * c1 + c2 * c2)
    if not disc > 0.0:
        return INF, 0.0, 0.0, 0.0, 0.0, False
    sq = np.sqrt(disc)
    mu = (b + sq) / a
    s = 1.0 / sq
    r0 = mu * y0
    r1 = mu * y1 - z1
    r2 = mu * y2 - z2
    # back substitution Lᵀ λ' = r, λ = s λ'
    p2 = r2 / l22
    p1 = (r1 - l21 * p2) / l11
    p0 = (r0 - l10 * p1 - l20 * p2) / l00
    lam0 = s * p0
    lam1 = s * p1
    lam2 = s * p2
    if lam0 < 0.0 or lam1 < 0.0 or lam2 < 0.0:
        return mu + t0, lam0, lam1, lam2, s, False
    return mu + t0, lam0, lam1, lam2, s, True


@njit
def _face(best, code, t, u, dau, dav, duv, ju, jv, a):
    g = 0.5 * (dau + dav - duv)
    mu, l0, l1, s, ok = upd2(t, u, dau, g, dav)
    if ok and mu < best:
        return mu, (1 << ju) | (1 << jv) | (a << 4)
    return best, code


@njit
def element_update(phi, cells, d2, pair, e, a):
    """Minimum local update of local vertex ``a`` of element ``e``.

    Returns (value, code) with code = support mask | (a << 4); value inf and
    code -1 when no upwind vertex has a finite time.
    """
    nv = cells.shape[1]
    # the other local vertices, in increasing order
    j0 = 0 + (a <= 0)
    j1 = 1 + (a <= 1)
    t0 = phi[cells[e, j0]]
    t1 = phi[cells[e, j1]]
    f0 = t0 < INF
    f1 = t1 < INF
    da0 = d2[e, pair[a, j0]]
    da1 = d2[e, pair[a, j1]]
    best = INF
    code = -1
    if nv == 4:
        j2 = 2 + (a <= 2)
        t2 = phi[cells[e, j2]]
        f2 = t2 < INF
        da2 = d2[e, pair[a, j2]]
        d01 = d2[e, pair[j0, j1]]
        d02 = d2[e, pair[j0, j2]]
        d12 = d2[e, pair[j1, j2]]
        if f0 and f1 and f2:
            mu, l0, l1, l2, s, ok = upd3(
                t0,
                t1,
                t2,
                da0,
                0.5 * (da0 + da1 - d01),
                0.5 * (da0 + da2 - d02),
                da1,
                0.5 * (da1 + da2 - d12),
                da2,
            )
            if ok:
                return mu, (1 << j0) | (1 << j1) | (1 << j2) | (a << 4)
        if f0 and f1:
            best, code = _face(best, code, t0, t1, da0, da1, d01, j0, j1, a)
        if f0 and f2:
            best, code = _face(best, code, t0, t2, da0, da2, d02, j0, j2, a)
        if f1 and f2:
            best, code = _face(best, code, t1, t2, da1, da2, d12, j1, j2, a)
        if f2:
            mu = t2 + np.sqrt(da2)
            if mu < best:
                best = mu
                code = (1 << j2) | (a << 4)
    else:
        if f0 and f1:
            best, code = _face(best, code, t0, t1, da0, da1, d2[e, pair[j0, j1]], j0, j1, a)
    if f0:
        mu = t0 + np.sqrt(da0)
        if mu < best:
            best = mu
            code = (1 << j0) | (a << 4)
    if f1:
        mu = t1 + np.sqrt(da1)
        if mu < best:
            best = mu
            code = (1 << j1) | (a << 4)
    return best, code


# ----------------------------------------------------------------------------------
# adjoint sweep
# ----------------------------------------------------------------------------------
@njit
def support_update(phi, cells, d2, pair, e, code):
    """Re-evaluate the recorded local update (support decoded from ``code``).

    Returns (value, s, n, o0, o1, o2, lam0, lam1, lam2): the support's local
    vertices in increasing order (unused ones -1), the weights λ and
    s = |x_a - Σ λ_j x_j|_M.
    """
    nv = cells.shape[1]
    a = code >> 4
    mask = code & 15
    o0 = -1
    o1 = -1
    o2 = -1
    n = 0
    for j in range(nv):
        if mask & (1 << j):
            if n == 0:
                o0 = j
            elif n == 1:
                o1 = j
            else:
                o2 = j
            n += 1
    if n == 1:
        d = d2[e, pair[a, o0]]
        return phi[cells[e, o0]] + np.sqrt(d), np.sqrt(d), 1, o0, o1, o2, 1.0, 0.0, 0.0
    da0 = d2[e, pair[a, o0]]
    da1 = d2[e, pair[a, o1]]
    if n == 2:
        g01 = 0.5 * (da0 + da1 - d2[e, pair[o0, o1]])
        mu, l0, l1, s, ok = upd2(phi[cells[e, o0]], phi[cells[e, o1]], da0, g01, da1)
        return mu, s, 2, o0, o1, o2, l0, l1, 0.0
    da2 = d2[e, pair[a, o2]]
    g01 = 0.5 * (da0 + da1 - d2[e, pair[o0, o1]])
    g02 = 0.5 * (da0 + da2 - d2[e, pair[o0, o2]])
    g12 = 0.5 * (da1 + da2 - d2[e, pair[o1, o2]])
    mu, l0, l1, l2, s, ok = upd3(
        phi[cells[e, o0]], phi[cells[e, o1]], phi[cells[e, o2]], da0, g01, g02, da1, g12, da2
    )
    return mu, s, 3, o0, o1, o2, l0, l1, l2


@njit
def record_weights(phi, rec_elem, rec_code, cells, d2, pair, i, w, s):
    """Weights λ (``w[i, local vertex]``) and length ``s[i]`` of node i's recorded update
    re-evaluated at the times ``phi`` (zero for nodes without a record).

    Where the recorded support is no longer feasible at ``phi`` (possible for
    intermediate times of the forward's policy evaluation) the weights are
    clipped to the simplex. ``s`` is always the exact metric length
    ``sqrt(Σ_j λ_j d_bj − Σ_{j<k} λ_j λ_k d_jk)`` for the weights, so every row
    is a feasible control: ``φ_i ≤ Σ_j λ_j φ_j + s_i`` holds at the solution.
    """
    nv = cells.shape[1]
    for j in range(nv):
        w[i, j] = 0.0
    s[i] = 0.0
    e = rec_elem[i]
    if e < 0 or not phi[i] < INF:
        return
    code = rec_code[i]
    a = code >> 4
    mu, si, ns, o0, o1, o2, l0, l1, l2 = support_update(phi, cells, d2, pair, e, code)
    if not (l0 >= 0.0 and l1 >= 0.0 and l2 >= 0.0 and l0 + l1 + l2 > 0.0):
        l0 = max(l0, 0.0) if l0 == l0 else 0.0
        l1 = max(l1, 0.0) if l1 == l1 else 0.0
        l2 = max(l2, 0.0) if l2 == l2 else 0.0
        tot = l0 + l1 + l2
        if not tot > 0.0:
            l0 = 1.0
            l1 = 0.0
            l2 = 0.0
            tot = 1.0
        l0 /= tot
        l1 /= tot
        l2 /= tot
    w[i, o0] = l0
    q = l0 * d2[e, pair[a, o0]]
    if ns >= 2:
        w[i, o1] = l1
        q += l1 * d2[e, pair[a, o1]] - l0 * l1 * d2[e, pair[o0, o1]]
    if ns == 3:
        w[i, o2] = l2
        q += l2 * d2[e, pair[a, o2]] - l0 * l2 * d2[e, pair[o0, o2]] - l1 * l2 * d2[e, pair[o1, o2]]
    s[i] = np.sqrt(max(q, 0.0))


@njit(parallel=True)
def node_weights(phi, rec_elem, rec_code, cells, d2, pair, w, s):
    """:func:`record_weights` of every node, in parallel."""
    for i in prange(phi.shape[0]):
        record_weights(phi, rec_elem, rec_code, cells, d2, pair, i, w, s)
