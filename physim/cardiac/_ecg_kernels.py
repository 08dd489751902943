"""Numba kernels of the pseudo-ECG (see :mod:`physim.cardiac.ecg` for the model).

Kernels assume validated, contiguous float64/int64 input. Layouts:

* ``weights`` (n_points, n_electrodes): potential at electrode ``e`` per mV of
  transmembrane potential at node ``a``;
* signals and their cotangents (n_samples, n_electrodes) so that the inner loop
  over electrodes is contiguous.

The transmembrane potential of node ``a`` is
``V_rest + amp * (ramp((t - phi_a) / h_up) - ramp((t - phi_a - apd_a) / h_dn))``
with the C-infinity ramp ``ramp(u) = logistic(2u / (1 - u^2))`` on (-1, 1),
exactly 0 for u <= -1 and exactly 1 for u >= 1. A node therefore varies only in
a window of samples around its activation (and repolarisation) time; after the
window it is a constant step, which the kernels accumulate as one increment per
node followed by a cumulative sum over samples.
"""

from __future__ import annotations

import math

import numpy as np

from physim._jit import njit, prange

# 4-point degree-2 quadrature on the reference tetrahedron (barycentric a, b, b, b)
_QA = 0.5854101966249685
_QB = 0.1381966011250105


@njit
def ramp(u):
    """Smooth step: 0 for u <= -1, 1 for u >= 1, logistic(2u/(1-u^2)) between."""
    if u <= -1.0:
        return 0.0
    if u >= 1.0:
        return 1.0
    g = 2.0 * u / (1.0 - u * u)
    if g >= 0.0:
        return 1.0 / (1.0 + math.exp(-g))
    e = math.exp(g)
    return e / (1.0 + e)


@njit
def dramp(u):
    """Derivative of :func:`ramp`."""
    if u <= -1.0 or u >= 1.0:
        return 0.0
    uu = u * u
    s = ramp(u)
    ss = s * (1.0 - s)
    if ss == 0.0:
        return 0.0
    d = 1.0 - uu
    return ss * 2.0 * (1.0 + uu) / (d * d)


@njit
def _window(tc, h, t0, dt, ns):
    """Sample range [jlo, jhi) where ramp((t_j - tc)/h) is not constant; jhi is
    also the first sample where it equals 1 (clipped to [0, ns])."""
    flo = (tc - h - t0) / dt
    fhi = (tc + h - t0) / dt
    if flo > ns:
        return ns, ns
    if fhi < 0.0:
        return 0, 0
    jlo = int(math.ceil(flo)) if flo > 0.0 else 0
    jhi = int(math.ceil(fhi)) if fhi < ns else ns
    if jlo > ns:
        jlo = ns
    if jhi < jlo:
        jhi = jlo
    return jlo, jhi


@njit
def _acc_forward(win, stp, W, a, tc, scale, h, t0, dt, ns):
    ne = W.shape[1]
    jlo, jhi = _window(tc, h, t0, dt, ns)
    for j in range(jlo, jhi):
        v = scale * ramp((t0 + j * dt - tc) / h)
        if v != 0.0:
            for e in range(ne):
                win[j, e] += v * W[a, e]
    if jhi < ns:
        for e in range(ne):
            stp[jhi, e] += scale * W[a, e]


@njit
def _forward_range(W, phi, apd, amp, h_up, h_dn, repol, t0, dt, ns, lo, hi, win, stp):
    for a in range(lo, hi):
        p = phi[a]
        if not (p < np.inf):
            continue
        _acc_forward(win, stp, W, a, p, amp, h_up, t0, dt, ns)
        if repol:
            _acc_forward(win, stp, W, a, p + apd[a], -amp, h_dn, t0, dt, ns)


@njit(parallel=True)
def ecg_forward_parallel(W, phi, apd, amp, h_up, h_dn, repol, t0, dt, ns, win, stp):
    """Window contributions ``win`` (nchunk, ns, n_electrodes) and step increments
    ``stp`` (nchunk, ns + 1, n_electrodes), zero-initialised, one chunk of nodes per
    thread. The potentials are ``win.sum(0) + cumsum(stp.sum(0))[:ns]``.

    Non-finite activation times (unreached nodes, ``inf``) stay at rest.
    """
    n = W.shape[0]
    nchunk = win.shape[0]
    for c in prange(nchunk):
        _forward_range(
            W,
            phi,
            apd,
            amp,
            h_up,
            h_dn,
            repol,
            t0,
            dt,
            ns,
            c * n // nchunk,
            (c + 1) * n // nchunk,
            win[c],
            stp[c],
        )


@njit
def ecg_forward_serial(W, phi, apd, amp, h_up, h_dn, repol, t0, dt, ns, win, stp):
    """Serial version of :func:`ecg_forward_parallel` (``nchunk`` = 1)."""
    _forward_range(W, phi, apd, amp, h_up, h_dn, repol, t0, dt, ns, 0, W.shape[0], win[0], stp[0])


@njit
def _acc_adjoint(lam, suffix, W, a, tc, scale, h, t0, dt, ns, mu, want_mu):
    """Returns d(sum_j,e lam[j,e] * ECG_e(j)) / d tc for one ramp of node a and
    adds sum_j lam[j, e] * (scale * ramp) to mu[a, e]."""
    ne = W.shape[1]
    jlo, jhi = _window(tc, h, t0, dt, ns)
    g = 0.0
    for j in range(jlo, jhi):
        u = (t0 + j * dt - tc) / h
        d = dramp(u)
        if d != 0.0:
            lw = 0.0
            for e in range(ne):
                lw += lam[j, e] * W[a, e]
            g -= scale * d / h * lw
        if want_mu:
            r = scale * ramp(u)
            if r != 0.0:
                for e in range(ne):
                    mu[a, e] += r * lam[j, e]
    if want_mu and jhi < ns:
        for e in range(ne):
            mu[a, e] += scale * suffix[jhi, e]
    return g


@njit
def _adjoint_range(W, phi, apd, amp, h_up, h_dn, repol, t0, dt, ns, lam, suffix, lo, hi, dphi, mu, want_mu):
    for a in range(lo, hi):
        p = phi[a]
        if not (p < np.inf):
            continue
        g = _acc_adjoint(lam, suffix, W, a, p, amp, h_up, t0, dt, ns, mu, want_mu)
        if repol:
            g += _acc_adjoint(lam, suffix, W, a, p + apd[a], -amp, h_dn, t0, dt, ns, mu, want_mu)
        dphi[a] = g


@njit(parallel=True)
def ecg_adjoint_parallel(
    W, phi, apd, amp, h_up, h_dn, repol, t0, dt, ns, lam, suffix, dphi, mu, want_mu, nchunk
):
    """Vector-Jacobian product of the forward kernels.

    Parameters
    ----------
    lam : (ns, n_electrodes) cotangent of the electrode potentials.
    suffix : (ns + 1, n_electrodes) suffix sums ``sum_{i >= j} lam[i]`` (last row 0).
    dphi : (n_points,) zeros; receives the gradient w.r.t. activation times.
    mu : (n_points, n_electrodes) zeros (used only if ``want_mu``); receives
        ``sum_j lam[j, e] (V_a(t_j) - V_rest)``, the cotangent of the weights.
    """
    n = W.shape[0]
    for c in prange(nchunk):
        _adjoint_range(
            W,
            phi,
            apd,
            amp,
            h_up,
            h_dn,
            repol,
            t0,
            dt,
            ns,
            lam,
            suffix,
            c * n // nchunk,
            (c + 1) * n // nchunk,
            dphi,
            mu,
            want_mu,
        )


@njit
def ecg_adjoint_serial(
    W, phi, apd, amp, h_up, h_dn, repol, t0, dt, ns, lam, suffix, dphi, mu, want_mu, nchunk
):
    """Serial version of :func:`ecg_adjoint_parallel`."""
    _adjoint_range(
        W, phi, apd, amp, h_up, h_dn, repol, t0, dt, ns, lam, suffix, 0, W.shape[0], dphi, mu, want_mu
    )


@njit
def _grads(points, tets, k, gr):
    """P1 shape-function gradients of tet k into gr (4, 3); returns the volume.

    Rows 1..3 are the rows of the inverse Jacobian (Cramer's rule with cross
    products of the edge vectors), row 0 makes the gradients sum to zero.
    """
    p0 = points[tets[k, 0]]
    p1 = points[tets[k, 1]]
    p2 = points[tets[k, 2]]
    p3 = points[tets[k, 3]]
    ax, ay, az = p1[0] - p0[0], p1[1] - p0[1], p1[2] - p0[2]
    bx, by, bz = p2[0] - p0[0], p2[1] - p0[1], p2[2] - p0[2]
    cx, cy, cz = p3[0] - p0[0], p3[1] - p0[1], p3[2] - p0[2]
    # b x c, c x a, a x b
    gr[1, 0], gr[1, 1], gr[1, 2] = by * cz - bz * cy, bz * cx - bx * cz, bx * cy - by * cx
    gr[2, 0], gr[2, 1], gr[2, 2] = cy * az - cz * ay, cz * ax - cx * az, cx * ay - cy * ax
    gr[3, 0], gr[3, 1], gr[3, 2] = ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx
    det = ax * gr[1, 0] + ay * gr[1, 1] + az * gr[1, 2]
    for d in range(3):
        gr[1, d] /= det
        gr[2, d] /= det
        gr[3, d] /= det
        gr[0, d] = -(gr[1, d] + gr[2, d] + gr[3, d])
    return abs(det) / 6.0


@njit
def _lead_vector(points, tets, k, vol, x, nq, out):
    """out (3,) = integral over tet k of grad_x (1 / |x - x_e|) with nq = 1 or 4 points."""
    out[0] = 0.0
    out[1] = 0.0
    out[2] = 0.0
    nqp = 1 if nq == 1 else 4
    w = vol / nqp
    for q in range(nqp):
        c0 = 0.0
        c1 = 0.0
        c2 = 0.0
        for m in range(4):
            if nq == 1:
                wgt = 0.25
            else:
                wgt = _QA if m == q else _QB
            p = points[tets[k, m]]
            c0 += wgt * p[0]
            c1 += wgt * p[1]
            c2 += wgt * p[2]
        r0 = c0 - x[0]
        r1 = c1 - x[1]
        r2 = c2 - x[2]
        rn = math.sqrt(r0 * r0 + r1 * r1 + r2 * r2)
        f = -w / (rn * rn * rn)
        out[0] += f * r0
        out[1] += f * r1
        out[2] += f * r2


@njit
def _element_weights_range(points, tets, G, electrodes, scale, nq, lo, hi, out):
    ne = electrodes.shape[0]
    gr = np.empty((4, 3))
    L = np.empty(3)
    for k in range(lo, hi):
        vol = _grads(points, tets, k, gr)
        for e in range(ne):
            _lead_vector(points, tets, k, vol, electrodes[e], nq, L)
            # GL = G_k^T L (G symmetric in practice, but use the exact transpose)
            gl0 = G[k, 0, 0] * L[0] + G[k, 1, 0] * L[1] + G[k, 2, 0] * L[2]
            gl1 = G[k, 0, 1] * L[0] + G[k, 1, 1] * L[1] + G[k, 2, 1] * L[2]
            gl2 = G[k, 0, 2] * L[0] + G[k, 1, 2] * L[1] + G[k, 2, 2] * L[2]
            for a in range(4):
                out[k, a, e] = -scale * (gl0 * gr[a, 0] + gl1 * gr[a, 1] + gl2 * gr[a, 2])


@njit
def element_weights_serial(points, tets, G, electrodes, scale, nq, out):
    """Per-element weights into ``out`` (n_tets, 4, n_electrodes):
    ``-scale * L_ek . (G_k grad N_a)`` with ``L_ek`` from :func:`_lead_vector`."""
    _element_weights_range(points, tets, G, electrodes, scale, nq, 0, tets.shape[0], out)


@njit(parallel=True)
def element_weights_parallel(points, tets, G, electrodes, scale, nq, out, nchunk):
    """Parallel version of :func:`element_weights_serial` (chunks of elements)."""
    nt = tets.shape[0]
    for c in prange(nchunk):
        _element_weights_range(
            points, tets, G, electrodes, scale, nq, c * nt // nchunk, (c + 1) * nt // nchunk, out
        )


@njit
def scatter_weights(tets, ew, n_points):
    """Assemble per-element weights into per-node weights (n_points, n_electrodes)."""
    nt = tets.shape[0]
    ne = ew.shape[2]
    W = np.zeros((n_points, ne))
    for k in range(nt):
        for a in range(4):
            i = tets[k, a]
            for e in range(ne):
                W[i, e] += ew[k, a, e]
    return W


@njit(parallel=True)
def conductivity_gradient(points, tets, electrodes, scale, nq, mu):
    """d loss / d G_k (n_tets, 3, 3) = -scale * sum_e L_ek (sum_a grad N_a mu[a, e])^T."""
    nt = tets.shape[0]
    ne = electrodes.shape[0]
    out = np.zeros((nt, 3, 3))
    for k in prange(nt):
        gr = np.empty((4, 3))
        L = np.empty(3)
        vol = _grads(points, tets, k, gr)
        for e in range(ne):
            _lead_vector(points, tets, k, vol, electrodes[e], nq, L)
            q0 = 0.0
            q1 = 0.0
            q2 = 0.0
            for a in range(4):
                m = mu[tets[k, a], e]
                q0 += gr[a, 0] * m
                q1 += gr[a, 1] * m
                q2 += gr[a, 2] * m
            for i in range(3):
                out[k, i, 0] -= scale * L[i] * q0
                out[k, i, 1] -= scale * L[i] * q1
                out[k, i, 2] -= scale * L[i] * q2
    return out
