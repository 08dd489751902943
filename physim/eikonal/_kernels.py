"""Numba kernels of the eikonal solver (private; inputs are validated by the callers).

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

from .._jit import njit

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


@njit
def d2_grad_to_D(edge_vectors, D, g):
    """dL/dD_e = -Σ_k g[e,k] w_k w_kᵀ with w_k = D_e⁻¹ v_k (the vjp of element_metrics)."""
    m, ne, dim = edge_vectors.shape
    out = np.zeros((m, dim, dim))
    L = np.zeros((3, 3))
    y = np.zeros(3)
    w = np.zeros(3)
    for e in range(m):
        factored = False
        for k in range(ne):
            gk = g[e, k]
            if gk == 0.0:
                continue
            if not factored:
                _chol(D[e], dim, L, 0.0)
                factored = True
            for i in range(dim):
                t = edge_vectors[e, k, i]
                for j in range(i):
                    t -= L[i, j] * y[j]
                y[i] = t / L[i, i]
            for i in range(dim - 1, -1, -1):
                t = y[i]
                for j in range(i + 1, dim):
                    t -= L[j, i] * w[j]
                w[i] = t / L[i, i]
            for i in range(dim):
                for j in range(dim):
                    out[e, i, j] -= gk * w[i] * w[j]
    return out


@njit
def metric_heights(d2, pair):
    """h[e, a]: metric distance from vertex a to the opposite face (tets) / edge (triangles).

    From Gram determinants of the squared metric edge lengths:
    tets ``h_a² = det G₃ / det G₂(opposite face)``, triangles ``h_a² = det G₂ / d(opposite edge)``.
    Every local update of vertex a is ≥ (min upwind time) + h[e, a].
    """
    m = d2.shape[0]
    nv = pair.shape[0]
    h = np.empty((m, nv))
    for e in range(m):
        if nv == 4:
            # Gram of the edges from vertex 0
            d01 = d2[e, pair[0, 1]]
            d02 = d2[e, pair[0, 2]]
            d03 = d2[e, pair[0, 3]]
            d12 = d2[e, pair[1, 2]]
            d13 = d2[e, pair[1, 3]]
            d23 = d2[e, pair[2, 3]]
            g12 = 0.5 * (d01 + d02 - d12)
            g13 = 0.5 * (d01 + d03 - d13)
            g23 = 0.5 * (d02 + d03 - d23)
            det3 = (
                d01 * (d02 * d03 - g23 * g23) - g12 * (g12 * d03 - g23 * g13) + g13 * (g12 * g23 - d02 * g13)
            )
            det3 = max(det3, 0.0)
            for a in range(4):
                j0 = 0 + (a <= 0)
                j1 = 1 + (a <= 1)
                j2 = 2 + (a <= 2)
                p = d2[e, pair[j0, j1]]
                q = d2[e, pair[j0, j2]]
                r = d2[e, pair[j1, j2]]
                # 4·area² of the face from its squared edge lengths (Heron, Gram form)
                gpq = 0.5 * (p + q - r)
                det2 = p * q - gpq * gpq
                h[e, a] = np.sqrt(det3 / det2) if det2 > 0.0 else 0.0
        else:
            d01 = d2[e, pair[0, 1]]
            d02 = d2[e, pair[0, 2]]
            d12 = d2[e, pair[1, 2]]
            g = 0.5 * (d01 + d02 - d12)
            det2 = max(d01 * d02 - g * g, 0.0)
            h[e, 0] = np.sqrt(det2 / d12)
            h[e, 1] = np.sqrt(det2 / d02)
            h[e, 2] = np.sqrt(det2 / d01)
    return h


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


@njit
def _sort3(a, b, c):
    if a > b:
        a, b = b, a
    if b > c:
        b, c = c, b
    if a > b:
        a, b = b, a
    return a, b, c


@njit
def element_update_through(phi, cells, d2, pair, e, a, c):
    """Local update of local vertex ``a`` of element ``e`` restricted to the
    candidates whose support contains local vertex ``c`` (whose time just changed).

    The other candidates were evaluated when their own support vertices last
    changed, so the fast iterative method only needs these. Supports are
    handled in increasing local index order, as in :func:`support_update`.
    Returns (value, code) like :func:`element_update`.
    """
    nv = cells.shape[1]
    tc = phi[cells[e, c]]
    dac = d2[e, pair[a, c]]
    best = tc + np.sqrt(dac)
    code = (1 << c) | (a << 4)
    if nv == 4:
        # the two vertices other than a and c
        k0 = -1
        k1 = -1
        for j in range(4):
            if j != a and j != c:
                if k0 < 0:
                    k0 = j
                else:
                    k1 = j
        t0 = phi[cells[e, k0]]
        t1 = phi[cells[e, k1]]
        f0 = t0 < INF
        f1 = t1 < INF
        if f0 and f1:
            j0, j1, j2 = _sort3(c, k0, k1)
            u0 = phi[cells[e, j0]]
            u1 = phi[cells[e, j1]]
            u2 = phi[cells[e, j2]]
            da0 = d2[e, pair[a, j0]]
            da1 = d2[e, pair[a, j1]]
            da2 = d2[e, pair[a, j2]]
            mu, l0, l1, l2, s, ok = upd3(
                u0,
                u1,
                u2,
                da0,
                0.5 * (da0 + da1 - d2[e, pair[j0, j1]]),
                0.5 * (da0 + da2 - d2[e, pair[j0, j2]]),
                da1,
                0.5 * (da1 + da2 - d2[e, pair[j1, j2]]),
                da2,
            )
            if ok:
                return mu, (1 << j0) | (1 << j1) | (1 << j2) | (a << 4)
        if f0:
            if c < k0:
                best, code = _face(best, code, tc, t0, dac, d2[e, pair[a, k0]], d2[e, pair[c, k0]], c, k0, a)
            else:
                best, code = _face(best, code, t0, tc, d2[e, pair[a, k0]], dac, d2[e, pair[c, k0]], k0, c, a)
        if f1:
            if c < k1:
                best, code = _face(best, code, tc, t1, dac, d2[e, pair[a, k1]], d2[e, pair[c, k1]], c, k1, a)
            else:
                best, code = _face(best, code, t1, tc, d2[e, pair[a, k1]], dac, d2[e, pair[c, k1]], k1, c, a)
    else:
        k0 = 3 - a - c
        t0 = phi[cells[e, k0]]
        if t0 < INF:
            if c < k0:
                best, code = _face(best, code, tc, t0, dac, d2[e, pair[a, k0]], d2[e, pair[c, k0]], c, k0, a)
            else:
                best, code = _face(best, code, t0, tc, d2[e, pair[a, k0]], dac, d2[e, pair[c, k0]], k0, c, a)
    return best, code


# ----------------------------------------------------------------------------------
# fast iterative method
# ----------------------------------------------------------------------------------
@njit
def _sift_up(heap, pos, phi, k):
    v = heap[k]
    key = phi[v]
    while k > 0:
        parent = (k - 1) >> 1
        u = heap[parent]
        if phi[u] <= key:
            break
        heap[k] = u
        pos[u] = k
        k = parent
    heap[k] = v
    pos[v] = k


@njit
def _sift_down(heap, pos, phi, k, size):
    v = heap[k]
    key = phi[v]
    while True:
        c = 2 * k + 1
        if c >= size:
            break
        if c + 1 < size and phi[heap[c + 1]] < phi[heap[c]]:
            c += 1
        u = heap[c]
        if phi[u] >= key:
            break
        heap[k] = u
        pos[u] = k
        k = c
    heap[k] = v
    pos[v] = k


@njit
def fim(phi, rec_elem, rec_code, cells, d2, hgt, pair, ptr, ncells, nlocal, tol, max_visits, ordered):
    """Fast iterative method with an active list, in place.

    ``phi`` holds the initial values (sources, inf elsewhere); ``rec_elem`` /
    ``rec_code`` receive the records (-1 for source-initialised nodes).
    Processing an active node updates every other vertex of its incident
    elements through the local-update candidates whose support contains the
    node (the only ones its new value enters; the others were evaluated when
    their own support last changed); each vertex whose
    value drops by more than ``tol`` (or is reached for the first time) joins
    the active list. The list is a FIFO queue (``ordered=False``, the classic
    FIM sweep) or a binary heap keyed on the current time (``ordered=True``),
    which visits nodes roughly in arrival order and so re-activates far fewer.
    Both stop at the same discrete fixed point. Every local update of vertex
    ``b`` is at least (smallest other time in the element) + ``hgt[e, b]``
    (its metric distance to the opposite face), so targets already at or
    below that bound are skipped without evaluating the update.

    Returns the number of active-list visits (negative if ``max_visits`` was hit).
    """
    n = phi.shape[0]
    nv = cells.shape[1]
    queue = np.empty(n, dtype=np.int64)
    pos = np.full(n, -1, dtype=np.int64)  # heap position, or 0 = "in FIFO"
    head = 0
    count = 0
    for i in range(n):
        if phi[i] < INF:
            if ordered:
                queue[count] = i
                pos[i] = count
                count += 1
                _sift_up(queue, pos, phi, count - 1)
            else:
                queue[count] = i
                pos[i] = 0
                count += 1
    visits = 0
    while count > 0:
        if ordered:
            i = queue[0]
            count -= 1
            pos[i] = -1
            if count > 0:
                queue[0] = queue[count]
                pos[queue[0]] = 0
                _sift_down(queue, pos, phi, 0, count)
        else:
            i = queue[head]
            head += 1
            if head == n:
                head = 0
            count -= 1
            pos[i] = -1
        visits += 1
        if visits > max_visits:
            return -visits
        for p in range(ptr[i], ptr[i + 1]):
            e = ncells[p]
            ai = nlocal[p]
            # the two smallest times among the element's vertices
            m1 = INF
            m2 = INF
            for b in range(nv):
                tb = phi[cells[e, b]]
                if tb < m1:
                    m2 = m1
                    m1 = tb
                elif tb < m2:
                    m2 = tb
            for b in range(nv):
                if b == ai:
                    continue
                v = cells[e, b]
                old = phi[v]
                # smallest time among the other vertices of e
                tmin = m2 if old == m1 else m1
                bound = tmin + hgt[e, b]
                if old <= bound - 1e-15 * abs(bound):
                    continue
                val, code = element_update_through(phi, cells, d2, pair, e, b, ai)
                if val < old:
                    phi[v] = val
                    rec_elem[v] = e
                    rec_code[v] = code
                    if ordered:
                        if pos[v] >= 0:
                            _sift_up(queue, pos, phi, pos[v])
                        elif old - val > tol:
                            queue[count] = v
                            pos[v] = count
                            count += 1
                            _sift_up(queue, pos, phi, count - 1)
                    elif pos[v] < 0 and old - val > tol:
                        queue[(head + count) % n] = v
                        pos[v] = 0
                        count += 1
                    # the element's minimum times change with phi[v]
                    m1 = INF
                    m2 = INF
                    for c in range(nv):
                        tc = phi[cells[e, c]]
                        if tc < m1:
                            m2 = m1
                            m1 = tc
                        elif tc < m2:
                            m2 = tc
    return visits


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
def _adjoint_node(i, li, phi, rec_elem, rec_code, cells, d2, pair, lam, g, propagate):
    """Push the adjoint ``li`` of node i through its recorded local update (envelope theorem).

    Adds to dL/dd2 of the element, and (if ``propagate``) to the adjoint of the upwind nodes.
    """
    e = rec_elem[i]
    if e < 0 or li == 0.0:
        return
    code = rec_code[i]
    a = code >> 4
    mu, s, n, o0, o1, o2, l0, l1, l2 = support_update(phi, cells, d2, pair, e, code)
    c = li / (2.0 * s)
    g[e, pair[a, o0]] += c * l0
    if propagate:
        lam[cells[e, o0]] += li * l0
    if n >= 2:
        g[e, pair[a, o1]] += c * l1
        g[e, pair[o0, o1]] -= c * l0 * l1
        if propagate:
            lam[cells[e, o1]] += li * l1
    if n == 3:
        g[e, pair[a, o2]] += c * l2
        g[e, pair[o0, o2]] -= c * l0 * l2
        g[e, pair[o1, o2]] -= c * l1 * l2
        if propagate:
            lam[cells[e, o2]] += li * l2


@njit
def _upwind_node(rec_elem, rec_code, cells, i, k):
    """k-th upwind node (support vertex) of node i's record, or -1."""
    e = rec_elem[i]
    if e < 0:
        return -1
    mask = rec_code[i] & 15
    c = 0
    for j in range(cells.shape[1]):
        if mask & (1 << j):
            if c == k:
                return cells[e, j]
            c += 1
    return -1


@njit
def upwind_components(phi, rec_elem, rec_code, cells):
    """Strongly connected components of the recorded upwind graph (Tarjan, iterative).

    Edges run from a node to its support vertices. Components are emitted
    upstream first (every component after all components it depends on).
    Returns (order (n_reached,), comp_ptr (n_comp + 1,)): the nodes of
    component c are ``order[comp_ptr[c]:comp_ptr[c + 1]]``.
    """
    n = phi.shape[0]
    index = np.full(n, -1, dtype=np.int64)
    low = np.zeros(n, dtype=np.int64)
    onstack = np.zeros(n, dtype=np.bool_)
    sstack = np.empty(n, dtype=np.int64)
    sp = 0
    cstack = np.empty(n, dtype=np.int64)
    cedge = np.empty(n, dtype=np.int64)
    order = np.empty(n, dtype=np.int64)
    comp_ptr = np.zeros(n + 1, dtype=np.int64)
    n_out = 0
    n_comp = 0
    counter = 0
    for r in range(n):
        if index[r] >= 0 or not phi[r] < INF:
            continue
        cp = 0
        cstack[0] = r
        cedge[0] = 0
        index[r] = counter
        low[r] = counter
        counter += 1
        sstack[sp] = r
        sp += 1
        onstack[r] = True
        cp = 1
        while cp > 0:
            v = cstack[cp - 1]
            k = cedge[cp - 1]
            w = _upwind_node(rec_elem, rec_code, cells, v, k) if k < 3 else -1
            if w >= 0:
                cedge[cp - 1] = k + 1
                if index[w] < 0:
                    index[w] = counter
                    low[w] = counter
                    counter += 1
                    sstack[sp] = w
                    sp += 1
                    onstack[w] = True
                    cstack[cp] = w
                    cedge[cp] = 0
                    cp += 1
                elif onstack[w]:
                    if index[w] < low[v]:
                        low[v] = index[w]
                continue
            # all edges of v done
            cp -= 1
            if cp > 0:
                u = cstack[cp - 1]
                if low[v] < low[u]:
                    low[u] = low[v]
            if low[v] == index[v]:
                while True:
                    sp -= 1
                    x = sstack[sp]
                    onstack[x] = False
                    order[n_out] = x
                    n_out += 1
                    if x == v:
                        break
                n_comp += 1
                comp_ptr[n_comp] = n_out
    return order[:n_out], comp_ptr[: n_comp + 1]


@njit
def adjoint_sweep(phi, rec_elem, rec_code, cells, d2, pair, lam):
    """Reverse sweep through the recorded upwind graph, in place on ``lam``.

    ``lam`` enters as dL/dphi and leaves as the adjoint variable of every node
    (its total derivative, including the paths through downstream nodes).
    Components of the upwind graph are visited downstream first (reverse of
    :func:`upwind_components`), which is decreasing arrival time wherever the
    updates are causal. A component with several nodes (a cycle of
    non-causal updates) solves its small coupled system
    ``(I − J_CCᵀ) λ_C = b_C`` exactly before pushing to its upwind nodes.

    Returns (g_d2 (m, ne) = dL/dd2, n_cyclic nodes, largest component size).
    """
    m = cells.shape[0]
    ne = d2.shape[1]
    g = np.zeros((m, ne))
    order, comp_ptr = upwind_components(phi, rec_elem, rec_code, cells)
    n_comp = comp_ptr.shape[0] - 1
    n_cyclic = 0
    largest = 1 if order.shape[0] > 0 else 0
    for c in range(n_comp - 1, -1, -1):
        a0 = comp_ptr[c]
        a1 = comp_ptr[c + 1]
        k = a1 - a0
        if k == 1:
            i = order[a0]
            _adjoint_node(i, lam[i], phi, rec_elem, rec_code, cells, d2, pair, lam, g, True)
            continue
        n_cyclic += k
        if k > largest:
            largest = k
        members = order[a0:a1]
        # local positions of the members
        A = np.eye(k)
        for r in range(k):
            i = members[r]
            e = rec_elem[i]
            if e < 0:
                continue
            mu, s, ns, o0, o1, o2, l0, l1, l2 = support_update(phi, cells, d2, pair, e, rec_code[i])
            for q in range(ns):
                oj = o0 if q == 0 else (o1 if q == 1 else o2)
                lj = l0 if q == 0 else (l1 if q == 1 else l2)
                v = cells[e, oj]
                for r2 in range(k):
                    if members[r2] == v:
                        A[r2, r] -= lj  # (I - Jᵀ)[v, i] = -∂φ_i/∂φ_v
        b = np.empty(k)
        for r in range(k):
            b[r] = lam[members[r]]
        x = np.linalg.solve(A, b)
        for r in range(k):
            lam[members[r]] = x[r]
        # push to upwind nodes outside the component, and to the element metrics
        for r in range(k):
            i = members[r]
            e = rec_elem[i]
            if e < 0 or x[r] == 0.0:
                continue
            li = x[r]
            code = rec_code[i]
            a = code >> 4
            mu, s, ns, o0, o1, o2, l0, l1, l2 = support_update(phi, cells, d2, pair, e, code)
            cc = li / (2.0 * s)
            for q in range(ns):
                oj = o0 if q == 0 else (o1 if q == 1 else o2)
                lj = l0 if q == 0 else (l1 if q == 1 else l2)
                v = cells[e, oj]
                inside = False
                for r2 in range(k):
                    if members[r2] == v:
                        inside = True
                if not inside:
                    lam[v] += li * lj
                g[e, pair[a, oj]] += cc * lj
                for q2 in range(q + 1, ns):
                    ok2 = o0 if q2 == 0 else (o1 if q2 == 1 else o2)
                    lk = l0 if q2 == 0 else (l1 if q2 == 1 else l2)
                    g[e, pair[oj, ok2]] -= cc * lj * lk
    return g, n_cyclic, largest
