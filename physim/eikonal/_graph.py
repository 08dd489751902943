"""Numba kernels on the recorded upwind graph (private): components, policy evaluation, adjoint.

Every reached node ``i`` that took its time from a local update has a record:
element ``e``, support vertices ``j`` with weights ``λ_ij ≥ 0`` (``Σ_j λ_ij = 1``)
and length ``s_i > 0``. Written as a matrix, ``Λ`` has at most three entries per
row (tets; two for triangles). Source-initialised nodes have empty rows.

* Forward (policy evaluation, a Newton step of the fixed point
  ``φ = min(init, min_e U_e(φ))``): ``y = Λ y + s`` (``y = init`` on source
  nodes). Because each record is a feasible control, the solution is an
  upper bound of the discrete solution, and it is below the current times
  (they satisfy ``φ ≥ Λ φ + s``).
* Adjoint: ``(I − Λ)ᵀ λ̄ = g`` (``λ̄`` the total derivative of the loss w.r.t.
  every time).

Both are solved component by component of the graph (Tarjan's strongly
connected components, upstream first): a single node is one multiply-add
per support vertex; a cyclic component (non-causal updates) is solved by
Gauss–Seidel sweeps in arrival-time order, which touch only its rows
(memory linear in its size). ``I − Λ_CC`` is a nonsingular M-matrix (``Λ_CC``
substochastic, the component drains into its upwind), so the sweeps
converge; the adjoint sweeps run to round-off, and a component that
converges too slowly is handed back to the caller for a sparse direct solve.
"""

from __future__ import annotations

import numpy as np

from .._jit import njit

INF = np.inf

#: relative change below which the Gauss–Seidel sweeps of a component count as converged
GS_RTOL = 1e-15


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
    nodes = np.flatnonzero(phi < INF)
    local = np.full(n, -1, dtype=np.int64)
    for r in range(nodes.shape[0]):
        local[nodes[r]] = r
    return subset_components(nodes, local, rec_elem, rec_code, cells)


@njit
def subset_components(nodes, local, rec_elem, rec_code, cells):
    """:func:`upwind_components` of the subgraph on ``nodes`` (``local[v]``: v's index
    in ``nodes``, -1 outside; edges to outside nodes are ignored)."""
    k = nodes.shape[0]
    index = np.full(k, -1, dtype=np.int64)
    low = np.zeros(k, dtype=np.int64)
    onstack = np.zeros(k, dtype=np.bool_)
    sstack = np.empty(k, dtype=np.int64)
    sp = 0
    cstack = np.empty(k, dtype=np.int64)
    cedge = np.empty(k, dtype=np.int64)
    order = np.empty(k, dtype=np.int64)
    comp_ptr = np.zeros(k + 1, dtype=np.int64)
    n_out = 0
    n_comp = 0
    counter = 0
    for r in range(k):
        if index[r] >= 0:
            continue
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
            q = cedge[cp - 1]
            w = -1
            while q < 3:
                u = _upwind_node(rec_elem, rec_code, cells, nodes[v], q)
                q += 1
                if u < 0:
                    q = 3
                    break
                if local[u] >= 0:
                    w = local[u]
                    break
            cedge[cp - 1] = q
            if w >= 0:
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
                    order[n_out] = nodes[x]
                    n_out += 1
                    if x == v:
                        break
                n_comp += 1
                comp_ptr[n_comp] = n_out
    return order[:n_out], comp_ptr[: n_comp + 1]


@njit
def _sorted_by_time(order, a0, a1, phi, descending):
    members = order[a0:a1].copy()
    keys = np.empty(a1 - a0)
    for r in range(a1 - a0):
        keys[r] = -phi[members[r]] if descending else phi[members[r]]
    return members[np.argsort(keys, kind="mergesort")]


@njit
def evaluate_policy(
    phi, init, rec_elem, rec_code, cells, d2, pair, nodes, local, w, s, max_sweeps, tol, changed
):
    """Policy evaluation ``y = Λ y + s`` on ``nodes`` (``y = init`` at source nodes), in place on ``phi``.

    A Newton step of the discrete fixed point restricted to ``nodes`` (the
    times of other nodes are held fixed). ``w`` (n, nv) and ``s`` (n,) hold the
    weights and lengths of the records at the current times, clipped to
    feasible controls (:func:`physim.eikonal._kernels.node_weights`, called
    by the caller). ``phi`` enters as a
    super-solution and leaves as ``min(phi, y)``, still a super-solution and
    still above the discrete solution. Cyclic components get Gauss–Seidel
    sweeps until they change by less than ``tol / 10`` or at most
    ``max_sweeps`` (enough for a Newton step; the caller re-checks the fixed point). ``local`` is an (n,) workspace of -1 (restored
    on return). The nodes whose time decreased by more than ``tol`` are
    written to ``changed``; returns their number.
    """
    nv = cells.shape[1]
    k = nodes.shape[0]
    for r in range(k):
        local[nodes[r]] = r
    order, comp_ptr = subset_components(nodes, local, rec_elem, rec_code, cells)
    for r in range(k):
        local[nodes[r]] = -1
    before = np.empty(k)
    for r in range(k):
        before[r] = phi[order[r]]
    n_comp = comp_ptr.shape[0] - 1
    for c in range(n_comp):
        a0 = comp_ptr[c]
        a1 = comp_ptr[c + 1]
        if a1 - a0 == 1:
            i = order[a0]
            e = rec_elem[i]
            if e < 0:
                y = init[i]
            else:
                y = s[i]
                for j in range(nv):
                    wj = w[i, j]
                    if wj != 0.0:
                        y += wj * phi[cells[e, j]]
            if y < phi[i]:
                phi[i] = y
            continue
        members = _sorted_by_time(order, a0, a1, phi, False)
        for _ in range(max_sweeps):
            biggest = 0.0
            scale = 0.0
            for r in range(a1 - a0):
                i = members[r]
                e = rec_elem[i]
                y = s[i]
                for j in range(nv):
                    wj = w[i, j]
                    if wj != 0.0:
                        y += wj * phi[cells[e, j]]
                old = phi[i]
                scale = max(scale, abs(old))
                if y < old:
                    phi[i] = y
                    biggest = max(biggest, old - y)
            if biggest <= max(0.1 * tol, GS_RTOL * scale):
                break
    nc = 0
    for r in range(k):
        if before[r] - phi[order[r]] > tol:
            changed[nc] = order[r]
            nc += 1
    return nc


@njit
def adjoint_sweep(order, comp_ptr, phi, rec_elem, rec_code, cells, w, s, pair, lam, g, c_start, max_sweeps):
    """Reverse sweep ``(I − Λ)ᵀ λ̄ = dL/dφ`` through the upwind graph, in place.

    ``lam`` enters as dL/dφ (plus pushes already made) and leaves as the
    adjoint variable λ̄ of every node; ``g`` (n_cells, n_edges) accumulates
    dL/dd2: ``∂U/∂d_bj = λ_j/(2s)``, ``∂U/∂d_jk = −λ_j λ_k/(2s)``. Components
    (``order``, ``comp_ptr`` from :func:`upwind_components`) are visited
    downstream first from component ``c_start`` (use ``n_comp − 1``); a cyclic component is solved by push Gauss–Seidel sweeps
    in decreasing arrival time to round-off. Returns
    ``(c_fail, n_cyclic, largest)``: ``c_fail`` is the component whose sweeps
    did not converge within ``max_sweeps`` (its nodes hold the right-hand side
    ``b_C``; the caller solves it and resumes with :func:`push_component`), or -1.
    """
    nv = cells.shape[1]
    n_cyclic = 0
    largest = 1 if order.shape[0] > 0 else 0
    slot = np.full(phi.shape[0], -1, dtype=np.int64)
    for c in range(c_start, -1, -1):
        a0 = comp_ptr[c]
        a1 = comp_ptr[c + 1]
        k = a1 - a0
        if k == 1:
            i = order[a0]
            _push_node(i, lam[i], rec_elem, rec_code, cells, w, s, pair, lam, g, slot, True)
            continue
        n_cyclic += k
        largest = max(largest, k)
        members = _sorted_by_time(order, a0, a1, phi, True)
        for r in range(k):
            slot[members[r]] = r
        # push Gauss–Seidel on x = b + Λ_CCᵀ x: residual r, solution x
        x = np.zeros(k)
        res = np.empty(k)
        for r in range(k):
            res[r] = lam[members[r]]
        converged = False
        for _ in range(max_sweeps):
            moved = 0.0
            size = 0.0
            for r in range(k):
                d = res[r]
                if d == 0.0:
                    continue
                res[r] = 0.0
                x[r] += d
                moved += abs(d)
                i = members[r]
                e = rec_elem[i]
                if e < 0:
                    continue
                for j in range(nv):
                    wj = w[i, j]
                    if wj != 0.0:
                        q = slot[cells[e, j]]
                        if q >= 0:
                            res[q] += wj * d
            for r in range(k):
                size += abs(x[r])
            if moved <= GS_RTOL * size:
                converged = True
                break
        if not converged:
            for r in range(k):
                slot[members[r]] = -1
            return c, n_cyclic, largest
        for r in range(k):
            lam[members[r]] = x[r] + res[r]
        for r in range(k):
            i = members[r]
            _push_node(i, lam[i], rec_elem, rec_code, cells, w, s, pair, lam, g, slot, False)
        for r in range(k):
            slot[members[r]] = -1
    return -1, n_cyclic, largest


@njit
def push_component(members, rec_elem, rec_code, cells, w, s, pair, lam, g, n):
    """Push a solved component's adjoints to its upwind nodes outside it and to dL/dd2."""
    slot = np.full(n, -1, dtype=np.int64)
    for r in range(members.shape[0]):
        slot[members[r]] = r
    for r in range(members.shape[0]):
        i = members[r]
        _push_node(i, lam[i], rec_elem, rec_code, cells, w, s, pair, lam, g, slot, False)


@njit
def component_matrix(members, rec_elem, cells, w, n):
    """COO entries of ``I − Λ_CC`` for the component ``members`` (local numbering)."""
    k = members.shape[0]
    nv = cells.shape[1]
    slot = np.full(n, -1, dtype=np.int64)
    for r in range(k):
        slot[members[r]] = r
    rows = np.empty(k * (nv + 1), dtype=np.int64)
    cols = np.empty(k * (nv + 1), dtype=np.int64)
    vals = np.empty(k * (nv + 1))
    q = 0
    for r in range(k):
        rows[q] = r
        cols[q] = r
        vals[q] = 1.0
        q += 1
        i = members[r]
        e = rec_elem[i]
        if e < 0:
            continue
        for j in range(nv):
            wj = w[i, j]
            if wj != 0.0:
                t = slot[cells[e, j]]
                if t >= 0:
                    rows[q] = r
                    cols[q] = t
                    vals[q] = -wj
                    q += 1
    return rows[:q], cols[:q], vals[:q]


@njit
def _push_node(i, li, rec_elem, rec_code, cells, w, s, pair, lam, g, slot, all_upwind):
    """λ̄_i through node i's record: to dL/dd2 of its element, and (to upwind nodes
    outside the current component, or all of them when ``all_upwind``) λ̄_j += λ̄_i λ_j."""
    e = rec_elem[i]
    if e < 0 or li == 0.0:
        return
    nv = cells.shape[1]
    b = rec_code[i] >> 4
    cc = li / (2.0 * s[i])
    for j in range(nv):
        wj = w[i, j]
        if wj == 0.0:
            continue
        v = cells[e, j]
        if all_upwind or slot[v] < 0:
            lam[v] += li * wj
        g[e, pair[b, j]] += cc * wj
        for k in range(j + 1, nv):
            wk = w[i, k]
            if wk != 0.0:
                g[e, pair[j, k]] -= cc * wj * wk
