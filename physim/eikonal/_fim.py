"""Numba kernels of the forward eikonal solve (private; inputs are validated by the callers).

Per element, once per ``D``
---------------------------
:func:`element_geometry` stores, for every element ``e``, the squared metric
edge lengths ``d2[e, k] = v_kᵀ D_e⁻¹ v_k`` (edge ``k`` in ``TET_EDGES`` /
``TRI_EDGES`` order) and the entries of ``K_e = ∇Nᵀ D_e ∇N``, the matrix of
the P1 basis gradients in the metric (symmetric, rows summing to zero):
``kmat[e, :4]`` its diagonal and ``kmat[e, 4 + pair(i, j)]`` its off-diagonal
entries for tets; for triangles only the diagonal ``kmat[e, :3]``.
``1 / sqrt(K_bb)`` is the metric distance of vertex ``b`` to the opposite face.

Local update in the K form
--------------------------
The time ``φ`` linear on element ``e`` with ``φ_b = T`` and the other vertices
at their times ``t_j`` has ``|∇φ|²_D = tᵀ K t``, so the full-support update of
``b`` is the larger root of ``K_bb T² + 2 T Σ_j K_bj t_j + Σ_jk K_jk t_j t_k = 1``
(times shifted by a reference time to avoid cancellation). Its characteristic
enters the element through the opposite face exactly when ``(K t)_j ≤ 0`` for
every other vertex ``j``; the barycentric weights of the foot point are then
``λ_j = −(K t)_j / (K t)_b`` (the envelope derivatives ``∂T/∂t_j``) and
``s = T − Σ λ_j t_j`` is the metric length of the characteristic. This is the
same update as the Lagrange/Cholesky form of :mod:`physim.eikonal._kernels`
(the minimum of ``Σ λ_j t_j + |x_b − Σ λ_j x_j|_{D⁻¹}`` over the simplex) at a
fraction of its cost. Faces (two upwind vertices ``j, k``) use its closed form
from the three squared lengths: with ``δ = t_k − t_j``, ``g = (d_bj + d_bk −
d_jk)/2`` and ``det = d_bj d_bk − g²``::

    T = t_j + ((d_bj − g) δ + sqrt(det (d_jk − δ²))) / d_jk,

feasible when ``d_jk > δ²``, ``(d_bk − g)(T − t_j) + g δ ≥ 0`` and
``(d_bj − g)(T − t_j) − d_bj δ ≥ 0`` (the two unnormalised weights). Edges:
``t_j + sqrt(d_bj)``. When the full candidate is feasible it is the minimum
over the closed simplex (the objective is convex), so faces are skipped.

Records
-------
Every improvement of node ``v`` records the element and the code
``mask | (b << 4)`` (bit ``j`` of ``mask``: local vertex ``j`` is upwind
support, ``b`` the node's own local index).
"""

from __future__ import annotations

import numpy as np

from .._jit import njit, prange

INF = np.inf

#: skip a target whose time is already within this relative margin of its lower bound
_BOUND_MARGIN = 1.0 - 1e-12


@njit
def tet_pair(i, j):
    """Index of the tet edge joining local vertices i != j (``TET_EDGES`` order)."""
    lo = min(i, j)
    hi = max(i, j)
    return lo + hi - 1 + (lo > 0)


@njit
def tri_pair(i, j):
    """Index of the triangle edge joining local vertices i != j (``TRI_EDGES`` order)."""
    return i + j - 1


# ----------------------------------------------------------------------------------
# per-element precomputation
# ----------------------------------------------------------------------------------
@njit
def _chol_d2(D, e, dim, points, cells, edges, out, rtol):
    """Squared metric lengths of the element's edges into out[e]; False if D_e is not SPD."""
    scale = 0.0
    for i in range(dim):
        for j in range(dim):
            scale = max(scale, abs(D[e, i, j]))
    for i in range(dim):
        for j in range(i):
            if abs(D[e, i, j] - D[e, j, i]) > 1e-10 * scale:
                return False
    floor = rtol * scale
    l00 = D[e, 0, 0]
    if not l00 > floor:
        return False
    l00 = np.sqrt(l00)
    l10 = D[e, 1, 0] / l00
    q = D[e, 1, 1] - l10 * l10
    if not q > floor:
        return False
    l11 = np.sqrt(q)
    l20 = 0.0
    l21 = 0.0
    l22 = 1.0
    if dim == 3:
        l20 = D[e, 2, 0] / l00
        l21 = (D[e, 2, 1] - l20 * l10) / l11
        q = D[e, 2, 2] - l20 * l20 - l21 * l21
        if not q > floor:
            return False
        l22 = np.sqrt(q)
    for k in range(edges.shape[0]):
        a = cells[e, edges[k, 0]]
        b = cells[e, edges[k, 1]]
        z0 = (points[b, 0] - points[a, 0]) / l00
        z1 = (points[b, 1] - points[a, 1] - l10 * z0) / l11
        acc = z0 * z0 + z1 * z1
        if dim == 3:
            z2 = (points[b, 2] - points[a, 2] - l20 * z0 - l21 * z1) / l22
            acc += z2 * z2
        out[e, k] = acc
    return True


@njit(inline="always")
def _tet_geometry(D, e, points, cells, kmat, d2, rtol):
    """kmat[e] (∇Nᵀ D_e ∇N) and d2[e] of a tetrahedron; False if D_e is not SPD."""
    d00 = D[e, 0, 0]
    d10 = D[e, 1, 0]
    d20 = D[e, 2, 0]
    d11 = D[e, 1, 1]
    d21 = D[e, 2, 1]
    d22 = D[e, 2, 2]
    d01 = D[e, 0, 1]
    d02 = D[e, 0, 2]
    d12 = D[e, 1, 2]
    scale = max(abs(d00), abs(d11), abs(d22), abs(d10), abs(d20), abs(d21), abs(d01), abs(d02), abs(d12))
    sym = 1e-10 * scale
    if abs(d10 - d01) > sym or abs(d20 - d02) > sym or abs(d21 - d12) > sym:
        return False
    floor = rtol * scale
    if not d00 > floor:
        return False
    l00 = np.sqrt(d00)
    l10 = d10 / l00
    l20 = d20 / l00
    q = d11 - l10 * l10
    if not q > floor:
        return False
    l11 = np.sqrt(q)
    l21 = (d21 - l20 * l10) / l11
    q = d22 - l20 * l20 - l21 * l21
    if not q > floor:
        return False
    l22 = np.sqrt(q)
    p0 = cells[e, 0]
    p1 = cells[e, 1]
    p2 = cells[e, 2]
    p3 = cells[e, 3]
    x0 = points[p0, 0]
    y0 = points[p0, 1]
    z0 = points[p0, 2]
    a0 = points[p1, 0] - x0
    a1 = points[p1, 1] - y0
    a2 = points[p1, 2] - z0
    b0 = points[p2, 0] - x0
    b1 = points[p2, 1] - y0
    b2 = points[p2, 2] - z0
    c0 = points[p3, 0] - x0
    c1 = points[p3, 1] - y0
    c2 = points[p3, 2] - z0
    # squared metric lengths of the edges (TET_EDGES order) by forward substitution
    for k in range(6):
        if k == 0:
            v0, v1, v2 = a0, a1, a2
        elif k == 1:
            v0, v1, v2 = b0, b1, b2
        elif k == 2:
            v0, v1, v2 = c0, c1, c2
        elif k == 3:
            v0, v1, v2 = b0 - a0, b1 - a1, b2 - a2
        elif k == 4:
            v0, v1, v2 = c0 - a0, c1 - a1, c2 - a2
        else:
            v0, v1, v2 = c0 - b0, c1 - b1, c2 - b2
        z0_ = v0 / l00
        z1_ = (v1 - l10 * z0_) / l11
        z2_ = (v2 - l20 * z0_ - l21 * z1_) / l22
        d2[e, k] = z0_ * z0_ + z1_ * z1_ + z2_ * z2_
    # gradients of the barycentric coordinates 1..3: rows of E⁻¹ (E = [a b c]) by cofactors
    n10 = b1 * c2 - b2 * c1
    n11 = b2 * c0 - b0 * c2
    n12 = b0 * c1 - b1 * c0
    n20 = c1 * a2 - c2 * a1
    n21 = c2 * a0 - c0 * a2
    n22 = c0 * a1 - c1 * a0
    n30 = a1 * b2 - a2 * b1
    n31 = a2 * b0 - a0 * b2
    n32 = a0 * b1 - a1 * b0
    inv = 1.0 / (a0 * n10 + a1 * n11 + a2 * n12)
    n10 *= inv
    n11 *= inv
    n12 *= inv
    n20 *= inv
    n21 *= inv
    n22 *= inv
    n30 *= inv
    n31 *= inv
    n32 *= inv
    m10 = d00 * n10 + d10 * n11 + d20 * n12
    m11 = d10 * n10 + d11 * n11 + d21 * n12
    m12 = d20 * n10 + d21 * n11 + d22 * n12
    m20 = d00 * n20 + d10 * n21 + d20 * n22
    m21 = d10 * n20 + d11 * n21 + d21 * n22
    m22 = d20 * n20 + d21 * n21 + d22 * n22
    m30 = d00 * n30 + d10 * n31 + d20 * n32
    m31 = d10 * n30 + d11 * n31 + d21 * n32
    m32 = d20 * n30 + d21 * n31 + d22 * n32
    k11 = n10 * m10 + n11 * m11 + n12 * m12
    k22 = n20 * m20 + n21 * m21 + n22 * m22
    k33 = n30 * m30 + n31 * m31 + n32 * m32
    k12 = n10 * m20 + n11 * m21 + n12 * m22
    k13 = n10 * m30 + n11 * m31 + n12 * m32
    k23 = n20 * m30 + n21 * m31 + n22 * m32
    k01 = -(k11 + k12 + k13)
    k02 = -(k12 + k22 + k23)
    k03 = -(k13 + k23 + k33)
    kmat[e, 0] = -(k01 + k02 + k03)
    kmat[e, 1] = k11
    kmat[e, 2] = k22
    kmat[e, 3] = k33
    kmat[e, 4] = k01
    kmat[e, 5] = k02
    kmat[e, 6] = k03
    kmat[e, 7] = k12
    kmat[e, 8] = k13
    kmat[e, 9] = k23
    return True


@njit(parallel=True)
def element_geometry(points, cells, D, edges, kmat, d2, rtol):
    """Fill ``kmat`` and ``d2`` for every element (see the module notes), in parallel.

    ``kmat`` is (m, 10) for tets and (m, 3) for triangles; ``d2`` is (m, n_edges).
    Returns a (m,) uint8 array flagging the elements whose ``D`` is not
    symmetric (relative 1e-10) or whose Cholesky pivots are not > ``rtol·max|D_e|``
    (1), whose ``d2`` overflows (2: ``D`` too small for the mesh) or whose
    ``kmat`` overflows (3: ``D`` too large).
    """
    m, nv = cells.shape
    dim = points.shape[1]
    bad = np.zeros(m, dtype=np.uint8)
    for e in prange(m):
        if nv == 4:
            if not _tet_geometry(D, e, points, cells, kmat, d2, rtol):
                bad[e] = 1
        elif not _chol_d2(D, e, dim, points, cells, edges, d2, rtol):
            bad[e] = 1
        else:
            d01 = d2[e, 0]
            d02 = d2[e, 1]
            d12 = d2[e, 2]
            g = 0.5 * (d01 + d02 - d12)
            det = d01 * d02 - g * g  # (2 · metric area)²
            kmat[e, 0] = d12 / det
            kmat[e, 1] = d02 / det
            kmat[e, 2] = d01 / det
        if bad[e] == 0:
            for k in range(d2.shape[1]):
                if not np.isfinite(d2[e, k]):
                    bad[e] = 2
            if bad[e] == 0:
                for k in range(kmat.shape[1]):
                    if not np.isfinite(kmat[e, k]):
                        bad[e] = 3
    return bad


# ----------------------------------------------------------------------------------
# local updates
# ----------------------------------------------------------------------------------
@njit(inline="always")
def face_update(dbj, dbk, djk, tj, tk):
    """Face update of a target from upwind vertices j, k: (value, feasible)."""
    dl = tk - tj
    r = djk - dl * dl
    if not r > 0.0:
        return INF, False
    g = 0.5 * (dbj + dbk - djk)
    det = dbj * dbk - g * g
    if not det > 0.0:
        return INF, False
    T = ((dbj - g) * dl + np.sqrt(det * r)) / djk
    if (dbk - g) * T + g * dl >= 0.0 and (dbj - g) * T - dbj * dl >= 0.0:
        return tj + T, True
    return INF, False


@njit(inline="always")
def tet_full(kmat, e, b, c, k0, k1, tc, t0, t1):
    """Full-support update of local vertex b from c, k0, k1 (shift by tc).

    Returns (T relative to tc, disc root q = (K t)_b, w_c, w_0, w_1, feasible);
    the unnormalised weights are ``−K_jb T − w_j``.
    """
    u0 = t0 - tc
    u1 = t1 - tc
    kc0 = kmat[e, 4 + tet_pair(c, k0)]
    kc1 = kmat[e, 4 + tet_pair(c, k1)]
    k01 = kmat[e, 4 + tet_pair(k0, k1)]
    wc = kc0 * u0 + kc1 * u1
    w0 = kmat[e, k0] * u0 + k01 * u1
    w1 = k01 * u0 + kmat[e, k1] * u1
    q = u0 * w0 + u1 * w1
    p = -(wc + w0 + w1)
    al = kmat[e, b]
    disc = p * p - al * (q - 1.0)
    if not disc > 0.0:
        return INF, 0.0, wc, w0, w1, False
    sq = np.sqrt(disc)
    T = (sq - p) / al
    ok = (
        -kmat[e, 4 + tet_pair(b, c)] * T >= wc
        and -kmat[e, 4 + tet_pair(b, k0)] * T >= w0
        and -kmat[e, 4 + tet_pair(b, k1)] * T >= w1
    )
    return T, sq, wc, w0, w1, ok


@njit(inline="always")
def tet_through(kmat, d2, e, b, c, k0, k1, tc, t0, t1):
    """Smallest update of local vertex b of tet e among the candidates whose support
    contains local vertex c (whose time just changed). Returns (value, code)."""
    best = tc + np.sqrt(d2[e, tet_pair(b, c)])
    code = (1 << c) | (b << 4)
    f0 = t0 < INF
    f1 = t1 < INF
    if f0 and f1:
        T, sq, wc, w0, w1, ok = tet_full(kmat, e, b, c, k0, k1, tc, t0, t1)
        if ok:
            return tc + T, (15 ^ (1 << b)) | (b << 4)
    dbc = d2[e, tet_pair(b, c)]
    if f0:
        v, ok = face_update(dbc, d2[e, tet_pair(b, k0)], d2[e, tet_pair(c, k0)], tc, t0)
        if ok and v < best:
            best = v
            code = (1 << c) | (1 << k0) | (b << 4)
    if f1:
        v, ok = face_update(dbc, d2[e, tet_pair(b, k1)], d2[e, tet_pair(c, k1)], tc, t1)
        if ok and v < best:
            best = v
            code = (1 << c) | (1 << k1) | (b << 4)
    return best, code


@njit(inline="always")
def tri_through(d2, e, b, c, tc, tk):
    """Triangle counterpart of :func:`tet_through` (k = the third vertex)."""
    k = 3 - b - c
    best = tc + np.sqrt(d2[e, tri_pair(b, c)])
    code = (1 << c) | (b << 4)
    if tk < INF:
        v, ok = face_update(d2[e, tri_pair(b, c)], d2[e, tri_pair(b, k)], d2[e, tri_pair(c, k)], tc, tk)
        if ok and v < best:
            return v, (1 << c) | (1 << k) | (b << 4)
    return best, code


@njit
def element_update(kmat, d2, cells, phi, e, b):
    """Minimum local update of local vertex b of element e over every candidate
    whose support vertices are reached (tet, faces, edges). Returns (value, code)."""
    nv = cells.shape[1]
    best = INF
    code = -1
    for c in range(nv):
        if c == b:
            continue
        tc = phi[cells[e, c]]
        if not tc < INF:
            continue
        if nv == 4:
            k0 = 0
            while k0 == b or k0 == c:
                k0 += 1
            k1 = 6 - b - c - k0
            v, cd = tet_through(kmat, d2, e, b, c, k0, k1, tc, phi[cells[e, k0]], phi[cells[e, k1]])
        else:
            v, cd = tri_through(d2, e, b, c, tc, phi[cells[e, 3 - b - c]])
        if v < best:
            best = v
            code = cd
    return best, code


# ----------------------------------------------------------------------------------
# active list
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
def _push(queue, pos, phi, count, head, v, ordered):
    n = queue.shape[0]
    if ordered:
        queue[count] = v
        pos[v] = count
        _sift_up(queue, pos, phi, count)
    else:
        queue[(head + count) % n] = v
        pos[v] = 0
    return count + 1


# ----------------------------------------------------------------------------------
# fast iterative method
# ----------------------------------------------------------------------------------
@njit
def activate(phi, queue, pos, state, nodes, ordered):
    """Add ``nodes`` (those not yet active, with finite times) to the active list."""
    count = state[0]
    head = state[1]
    for i in nodes:
        if pos[i] < 0 and phi[i] < INF:
            count = _push(queue, pos, phi, count, head, i, ordered)
    state[0] = count


def _make_propose(nv):
    """The read-only half of a visit: proposals of one node for its elements' other vertices."""

    @njit(inline="always")
    def propose(i, phi, cells, kmat, d2, ptr, inc, tt, vv, out_v, out_val, out_e, out_code, base):
        """Evaluate the updates through node ``i`` as :func:`propagate` does, without writing ``phi``.

        Every improvement of a target over its time (as seen by this visit,
        including improvements found earlier in the same element) is written to
        ``out_*[base + k]``; returns the number ``k`` written.
        """
        ti = phi[i]
        k = 0
        for p in range(ptr[i], ptr[i + 1]):
            x = inc[p]
            e = x >> 2
            a = x & 3
            m1 = INF
            m2 = INF
            for j in range(nv):
                v = cells[e, j]
                vv[j] = v
                tj = phi[v]
                tt[j] = tj
                if tj < m1:
                    m2 = m1
                    m1 = tj
                elif tj < m2:
                    m2 = tj
            for bb in range(1, nv):
                if nv == 4:
                    b = (a + bb) & 3
                else:
                    b = a + bb
                    if b >= 3:
                        b -= 3
                old = tt[b]
                d = old - (m2 if old == m1 else m1)
                if not (d > 0.0 and d * d * kmat[e, b] > _BOUND_MARGIN):
                    continue
                if nv == 4:
                    k0 = 0
                    while k0 == a or k0 == b:
                        k0 += 1
                    k1 = 6 - a - b - k0
                    val, code = tet_through(kmat, d2, e, b, a, k0, k1, ti, tt[k0], tt[k1])
                else:
                    val, code = tri_through(d2, e, b, a, ti, tt[3 - a - b])
                if not val < old:
                    continue
                tt[b] = val
                out_v[base + k] = vv[b]
                out_val[base + k] = val
                out_e[base + k] = e
                out_code[base + k] = code
                k += 1
                m1 = INF
                m2 = INF
                for j in range(nv):
                    tj = tt[j]
                    if tj < m1:
                        m2 = m1
                        m1 = tj
                    elif tj < m2:
                        m2 = tj
        return k

    return propose


#: the read-only visit for tetrahedra and triangles (module globals, so that the propagation
#: kernels that call them stay cacheable)
_propose_tet = _make_propose(4)
_propose_tri = _make_propose(3)


@njit(inline="always")
def _apply(
    v,
    val,
    e,
    code,
    phi,
    rec_elem,
    rec_code,
    queue,
    pos,
    cnt,
    pending,
    count,
    head,
    npend,
    tol,
    cap,
    big,
    ordered,
):
    """Apply one proposal (node ``v`` at time ``val`` from element ``e``) if it improves ``v``:
    record it, and re-activate ``v`` (or leave the drop pending, see :func:`propagate`).
    Returns the new (count, npend)."""
    old = phi[v]
    if not val < old:
        return count, npend
    phi[v] = val
    rec_elem[v] = e
    rec_code[v] = code
    if pos[v] >= 0:
        if ordered:
            _sift_up(queue, pos, phi, pos[v])
    else:
        drop = old - val
        if drop > tol:
            if cnt[v] < cap or drop > big:
                count = _push(queue, pos, phi, count, head, v, ordered)
            else:
                if pending[v] == 0.0:
                    npend += 1
                pending[v] += drop
    return count, npend


def _make_propagate(nv):
    """The propagation kernel specialised to ``nv`` vertices per element (a compile-time constant)."""

    @njit(parallel=True)
    def propagate(
        phi,
        rec_elem,
        rec_code,
        cells,
        kmat,
        d2,
        ptr,
        inc,
        queue,
        pos,
        state,
        tol,
        ordered,
        cap,
        big,
        cnt,
        pending,
        visited,
        max_visits,
        band,
        batch,
        bnodes,
        bbase,
        bcount,
        out_v,
        out_val,
        out_e,
        out_code,
        nthreads,
    ):
        """Fast iterative method on the active list, in place.

        Processing an active node updates every other vertex of its incident
        elements through the candidates whose support contains the node (the
        others were evaluated when their own support last changed). A vertex
        whose time drops by more than ``tol`` joins the active list: a FIFO queue
        (``ordered=False``, the classic sweep) or a binary heap on the current
        time (``ordered=True``: close to arrival order, far fewer re-visits).
        Targets already at or below ``(smallest other time) + 1/sqrt(K_bb)`` (a
        lower bound of all their updates in the element) are skipped.

        Nodes are visited in batches: each step pops up to ``batch`` nodes (from
        the heap: those whose time is within ``band`` of the smallest; ``band``
        well below an element's travel time keeps them causally independent),
        evaluates their visits in parallel on ``nthreads`` threads against the
        times at the start of the step (:func:`_make_propose`, read-only), then
        applies the proposals serially in pop order (:func:`_apply`). The
        batches, and so the result, do not depend on the number of threads;
        ``batch = 1`` is the one-node-at-a-time method. ``bnodes``, ``bbase``,
        ``bcount`` (batch,) and ``out_*`` (batch * max node degree * (nv - 1),)
        are workspaces.

        The active list (``queue``, ``pos``: position or -1, ``state`` =
        [count, head, n_visited, n_pending]) persists between calls. Nodes visited
        for the first time since ``cnt`` was reset are appended to ``visited``.

        Bounded work: a node already visited ``cap`` times (``cnt``) is
        re-activated only for drops above ``big``; smaller drops are accumulated
        in ``pending`` instead (slowly converging cycles of non-causal updates;
        the caller resolves them by evaluating the recorded policy,
        :func:`physim.eikonal._graph.evaluate_policy`).

        ``inc[p] = element * 4 + local index`` is the node -> element incidence in
        CSR form (``ptr``). Returns the number of visits, negative once
        ``max_visits`` is exceeded.
        """
        n = phi.shape[0]
        count = state[0]
        head = state[1]
        nvis = state[2]
        npend = state[3]
        visits = 0
        while count > 0:
            t0 = phi[queue[0]] if ordered else 0.0
            nb = 0
            total = 0
            while count > 0 and nb < batch:
                if ordered:
                    i = queue[0]
                    if phi[i] > t0 + band:
                        break
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
                if cnt[i] == 0:
                    visited[nvis] = i
                    nvis += 1
                cnt[i] += 1
                pending[i] = 0.0
                bnodes[nb] = i
                bbase[nb] = total
                total += (ptr[i + 1] - ptr[i]) * (nv - 1)
                nb += 1
            if visits > max_visits:
                state[0] = count
                state[1] = head
                state[2] = nvis
                state[3] = npend
                return -visits
            nchunks = min(nthreads, nb)
            for c in prange(nchunks):
                tt = np.empty(nv)
                vv = np.empty(nv, dtype=np.int64)
                for kk in range(c, nb, nchunks):
                    if nv == 4:
                        bcount[kk] = _propose_tet(bnodes[kk], phi, cells, kmat, d2, ptr, inc, tt, vv,
                                                  out_v, out_val, out_e, out_code, bbase[kk])  # fmt: skip
                    else:
                        bcount[kk] = _propose_tri(bnodes[kk], phi, cells, kmat, d2, ptr, inc, tt, vv,
                                                  out_v, out_val, out_e, out_code, bbase[kk])  # fmt: skip
            for kk in range(nb):
                b0 = bbase[kk]
                for r in range(b0, b0 + bcount[kk]):
                    count, npend = _apply(out_v[r], out_val[r], out_e[r], out_code[r], phi, rec_elem, rec_code,
                                          queue, pos, cnt, pending, count, head, npend, tol, cap, big, ordered)  # fmt: skip
        state[0] = count
        state[1] = head
        state[2] = nvis
        state[3] = npend
        return visits

    return propagate


#: propagation kernels for tetrahedra and triangles (see ``propagate`` in :func:`_make_propagate`)
propagate_tet = _make_propagate(4)
propagate_tri = _make_propagate(3)
