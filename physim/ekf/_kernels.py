"""Numba kernels of the EKF covariance recursion and its adjoint.

Kernels assume validated, C-contiguous float64 input (see :mod:`physim.ekf.filter`).
Built-in motion models are dispatched on an integer ``kind`` with a parameter
array ``mp = [dt, wheelbase]``; the beacon sensor reads its configuration from
``sp = [use_range, use_bearing, range_std, bearing_std, range_slope]``. So every
kernel compiles a single signature whatever the model.

Small dense algebra (n states, m ≤ a few dozen measurements) is written as
explicit loops into preallocated scratch arrays: no allocation in the time loop.
The covariance recursion and its adjoint also come specialised to 3 states and
2 controls (``cov_forward_3x2``, ``cov_adjoint_3x2``, both built-in models),
with the 3x3 algebra on tuples kept in registers; the generic kernels serve every other
size and are the reference the specialised ones are tested against.
"""

from __future__ import annotations

import math

import numpy as np

from .._jit import njit

MODEL_UNICYCLE = 0
MODEL_BICYCLE = 1

#: (states, controls) of the specialised covariance kernels ``cov_forward_3x2`` / ``cov_adjoint_3x2``
SPECIALISED_SIZES = (3, 2)

# ---------------------------------------------------------------------------
# motion models
# ---------------------------------------------------------------------------


@njit
def model_step(kind, mp, x, u, xn, F, G):
    """x⁺ = f(x, u) into ``xn`` (3,), F = ∂f/∂x (3, 3), G = ∂f/∂u (3, 2)."""
    dt = mp[0]
    th = x[2]
    v = u[0]
    c = math.cos(th)
    s = math.sin(th)
    xn[0] = x[0] + dt * v * c
    xn[1] = x[1] + dt * v * s
    for i in range(3):
        for j in range(3):
            F[i, j] = 1.0 if i == j else 0.0
    F[0, 2] = -dt * v * s
    F[1, 2] = dt * v * c
    G[0, 0] = dt * c
    G[1, 0] = dt * s
    G[0, 1] = 0.0
    G[1, 1] = 0.0
    if kind == MODEL_UNICYCLE:
        xn[2] = th + dt * u[1]
        G[2, 0] = 0.0
        G[2, 1] = dt
    else:  # kinematic bicycle
        L = mp[1]
        t = math.tan(u[1])
        sec2 = 1.0 + t * t
        xn[2] = th + dt * v * t / L
        G[2, 0] = dt * t / L
        G[2, 1] = dt * v * sec2 / L


@njit
def model_jac_vjp(kind, mp, x, u, Fb, Gb, xb, ub):
    """Accumulate ∂(⟨F̄, F⟩ + ⟨Ḡ, G⟩)/∂x into ``xb`` and /∂u into ``ub``."""
    dt = mp[0]
    th = x[2]
    v = u[0]
    c = math.cos(th)
    s = math.sin(th)
    # F02 = -dt v s, F12 = dt v c, G00 = dt c, G10 = dt s
    xb[2] += Fb[0, 2] * (-dt * v * c) + Fb[1, 2] * (-dt * v * s) + Gb[0, 0] * (-dt * s) + Gb[1, 0] * (dt * c)
    ub[0] += Fb[0, 2] * (-dt * s) + Fb[1, 2] * (dt * c)
    if kind == MODEL_BICYCLE:
        L = mp[1]
        t = math.tan(u[1])
        sec2 = 1.0 + t * t
        # G20 = dt tan(δ)/L, G21 = dt v sec²(δ)/L
        ub[0] += Gb[2, 1] * dt * sec2 / L
        ub[1] += Gb[2, 0] * dt * sec2 / L + Gb[2, 1] * dt * v * 2.0 * sec2 * t / L


@njit
def model_param_vjp(kind, mp, x, u, lam, Fb, Gb, mpb):
    """Accumulate ∂(⟨λ, f⟩ + ⟨F̄, F⟩ + ⟨Ḡ, G⟩)/∂(dt, wheelbase) at (x, u) into ``mpb`` (2,).

    ``lam`` (3,) is the costate of the next state. Every term of f - x, F - I
    and G is proportional to dt; the bicycle's heading terms are proportional
    to 1/L.
    """
    dt = mp[0]
    th = x[2]
    v = u[0]
    c = math.cos(th)
    s = math.sin(th)
    # ∂/∂dt of f: (v c, v s, θ-rate); of F02, F12: (-v s, v c); of G00, G10: (c, s)
    acc = lam[0] * v * c + lam[1] * v * s
    acc += Fb[0, 2] * (-v * s) + Fb[1, 2] * (v * c) + Gb[0, 0] * c + Gb[1, 0] * s
    if kind == MODEL_UNICYCLE:
        acc += lam[2] * u[1] + Gb[2, 1]
    else:
        L = mp[1]
        t = math.tan(u[1])
        sec2 = 1.0 + t * t
        rate = v * t / L  # θ⁺ = θ + dt v tan(δ) / L
        g20 = t / L
        g21 = v * sec2 / L
        acc += lam[2] * rate + Gb[2, 0] * g20 + Gb[2, 1] * g21
        # every L-dependent term is ∝ 1/L: ∂/∂L = -(term)/L
        mpb[1] -= dt * (lam[2] * rate + Gb[2, 0] * g20 + Gb[2, 1] * g21) / L
    mpb[0] += acc


@njit
def model_rollout(kind, mp, x0, U, X, F, G):
    """Nominal trajectory X (N+1, 3) and Jacobians F (N, 3, 3), G (N, 3, 2)."""
    for i in range(x0.shape[0]):
        X[0, i] = x0[i]
    for k in range(U.shape[0]):
        model_step(kind, mp, X[k], U[k], X[k + 1], F[k], G[k])


@njit
def model_adjoint(kind, mp, X, U, F, G, Fb, Gb, Xb, x0b, Ub, mpb):
    """Reverse sweep of the nominal trajectory.

    ``Xb`` (N+1, n) holds the direct cotangents of the states (measurement
    Jacobians, user terms); ``Fb``/``Gb`` those of the model Jacobians. Writes
    ``x0b`` (n,) and ``Ub`` (N, n_u) and accumulates the model-parameter
    cotangents ``mpb`` (2,) = ∂J/∂(dt, wheelbase).
    """
    N = U.shape[0]
    n = X.shape[1]
    nu = U.shape[1]
    lam = np.empty(n)
    for j in range(n):
        lam[j] = Xb[N, j]
    xb = np.empty(n)
    for k in range(N - 1, -1, -1):
        for j in range(n):
            acc = 0.0
            for i in range(n):
                acc += F[k, i, j] * lam[i]
            xb[j] = acc
        for j in range(nu):
            acc = 0.0
            for i in range(n):
                acc += G[k, i, j] * lam[i]
            Ub[k, j] = acc
        model_jac_vjp(kind, mp, X[k], U[k], Fb[k], Gb[k], xb, Ub[k])
        model_param_vjp(kind, mp, X[k], U[k], lam, Fb[k], Gb[k], mpb)
        for j in range(n):
            lam[j] = xb[j] + Xb[k, j]
    for j in range(n):
        x0b[j] = lam[j]


# ---------------------------------------------------------------------------
# beacon sensor: range and/or bearing to known planar beacons
# ---------------------------------------------------------------------------


@njit
def meas_eval(x, B, sp, z):
    """Noise-free measurement z (m,) at state x; bearings in [-π, π)."""
    use_r = sp[0] != 0.0
    use_b = sp[1] != 0.0
    per = int(use_r) + int(use_b)
    for j in range(B.shape[0]):
        dx = B[j, 0] - x[0]
        dy = B[j, 1] - x[1]
        row = j * per
        if use_r:
            z[row] = math.sqrt(dx * dx + dy * dy)
            row += 1
        if use_b:
            z[row] = wrap(math.atan2(dy, dx) - x[2])


@njit
def meas_noise_std(x, B, sp, sd):
    """Measurement noise standard deviations sd (m,) at state x."""
    use_r = sp[0] != 0.0
    use_b = sp[1] != 0.0
    per = int(use_r) + int(use_b)
    for j in range(B.shape[0]):
        dx = B[j, 0] - x[0]
        dy = B[j, 1] - x[1]
        row = j * per
        if use_r:
            sd[row] = sp[2] + sp[4] * math.sqrt(dx * dx + dy * dy)
            row += 1
        if use_b:
            sd[row] = sp[3]


@njit
def wrap(a):
    """Angle wrapped to [-π, π)."""
    return a - 2.0 * math.pi * math.floor((a + math.pi) / (2.0 * math.pi))


@njit
def meas_jac(x, B, sp, H, Rd):
    """Measurement Jacobian H (m, n) and noise variances Rd (m,) at state x."""
    use_r = sp[0] != 0.0
    use_b = sp[1] != 0.0
    per = int(use_r) + int(use_b)
    n = H.shape[1]
    for j in range(B.shape[0]):
        sx = x[0] - B[j, 0]
        sy = x[1] - B[j, 1]
        r2 = sx * sx + sy * sy
        r = math.sqrt(r2)
        row = j * per
        if use_r:
            for i in range(n):
                H[row, i] = 0.0
            H[row, 0] = sx / r
            H[row, 1] = sy / r
            sd = sp[2] + sp[4] * r
            Rd[row] = sd * sd
            row += 1
        if use_b:
            for i in range(n):
                H[row, i] = 0.0
            H[row, 0] = -sy / r2
            H[row, 1] = sx / r2
            H[row, 2] = -1.0
            Rd[row] = sp[3] * sp[3]


@njit
def nearest_beacon(X, B):
    """(k, j, d): the state X[k] (K, n) and beacon B[j] (n_b, 2) closest in the plane, and their distance."""
    best = np.inf
    kb = 0
    jb = 0
    for k in range(X.shape[0]):
        for j in range(B.shape[0]):
            dx = X[k, 0] - B[j, 0]
            dy = X[k, 1] - B[j, 1]
            d2 = dx * dx + dy * dy
            if d2 < best:
                best = d2
                kb = k
                jb = j
    return kb, jb, math.sqrt(best)


@njit
def meas_jac_batch(X, B, sp, H, Rd):
    """H (K, m, n) and Rd (K, m) at each state of X (K, n)."""
    for k in range(X.shape[0]):
        meas_jac(X[k], B, sp, H[k], Rd[k])


@njit
def meas_vjp_batch(X, B, sp, Hb, Rb, Xb, Bb, spb):
    """Cotangents of the states, beacons and noise parameters from H̄, R̄.

    Writes ``Xb`` (K, n); accumulates ``Bb`` (n_b, 2) and
    ``spb = [range_std, bearing_std, range_slope]`` cotangents.
    """
    use_r = sp[0] != 0.0
    use_b = sp[1] != 0.0
    per = int(use_r) + int(use_b)
    for k in range(X.shape[0]):
        for i in range(X.shape[1]):
            Xb[k, i] = 0.0
        for j in range(B.shape[0]):
            sx = X[k, 0] - B[j, 0]
            sy = X[k, 1] - B[j, 1]
            r2 = sx * sx + sy * sy
            r = math.sqrt(r2)
            ex = sx / r
            ey = sy / r
            gx = 0.0  # cotangent of s = p - b
            gy = 0.0
            row = j * per
            if use_r:
                # H row (ex, ey): d e / d s = (I - e eᵀ) / r
                hx = Hb[k, row, 0]
                hy = Hb[k, row, 1]
                proj = hx * ex + hy * ey
                gx += (hx - proj * ex) / r
                gy += (hy - proj * ey) / r
                # Rd = (σ0 + α r)²
                sd = sp[2] + sp[4] * r
                rb = Rb[k, row]
                rbar = rb * 2.0 * sd * sp[4]
                gx += rbar * ex
                gy += rbar * ey
                spb[0] += rb * 2.0 * sd
                spb[2] += rb * 2.0 * sd * r
                row += 1
            if use_b:
                # H row (-sy/r², sx/r², -1)
                h0 = Hb[k, row, 0]
                h1 = Hb[k, row, 1]
                r4 = r2 * r2
                gx += h0 * (2.0 * sx * sy / r4) + h1 * (1.0 / r2 - 2.0 * sx * sx / r4)
                gy += h0 * (-1.0 / r2 + 2.0 * sy * sy / r4) + h1 * (-2.0 * sx * sy / r4)
                spb[1] += Rb[k, row] * 2.0 * sp[3]
            Xb[k, 0] += gx
            Xb[k, 1] += gy
            Bb[j, 0] -= gx
            Bb[j, 1] -= gy


# ---------------------------------------------------------------------------
# covariance recursion (generic in n, n_u, m)
# ---------------------------------------------------------------------------


@njit
def mm(A, B, C):
    """C = A B."""
    for i in range(A.shape[0]):
        for j in range(B.shape[1]):
            acc = 0.0
            for l in range(A.shape[1]):
                acc += A[i, l] * B[l, j]
            C[i, j] = acc


@njit
def mtm(A, B, C):
    """C = Aᵀ B."""
    for i in range(A.shape[1]):
        for j in range(B.shape[1]):
            acc = 0.0
            for l in range(A.shape[0]):
                acc += A[l, i] * B[l, j]
            C[i, j] = acc


@njit
def mmt(A, B, C):
    """C = A Bᵀ."""
    for i in range(A.shape[0]):
        for j in range(B.shape[0]):
            acc = 0.0
            for l in range(A.shape[1]):
                acc += A[i, l] * B[j, l]
            C[i, j] = acc


@njit
def sym_add(A, B, alpha, beta, C):
    """C = alpha sym(A) + beta sym(B) with sym(X) = (X + Xᵀ)/2 (C may alias A or B)."""
    n = A.shape[0]
    for i in range(n):
        for j in range(i, n):
            v = 0.5 * (alpha * (A[i, j] + A[j, i]) + beta * (B[i, j] + B[j, i]))
            C[i, j] = v
            C[j, i] = v


@njit
def i_minus_kh(K, H, A):
    """A = I - K H."""
    mm(K, H, A)
    for i in range(A.shape[0]):
        for j in range(A.shape[1]):
            A[i, j] = -A[i, j]
        A[i, i] += 1.0


@njit
def predict_cov(F, G, P, M, Q0, T, GM, Pm):
    """Pm = F P Fᵀ + G M Gᵀ + Q0 (symmetrised). T (n, n), GM (n, n_u) scratch."""
    mm(F, P, T)
    mmt(T, F, Pm)
    mm(G, M, GM)
    mmt(GM, G, T)
    sym_add(Pm, T, 1.0, 1.0, Pm)
    sym_add(Pm, Q0, 1.0, 1.0, Pm)


@njit
def kalman_update(Pm, H, Rd, joseph, P, K, PHt, S, A, T):
    """EKF covariance update with gain K (n, m); posterior into P (n, n).

    S = H Pm Hᵀ + diag(Rd) is factorised by Cholesky (S = L Lᵀ, L stored in
    the lower triangle of ``S``) and the gain rows come from two triangular
    solves (Kᵀ = S⁻¹ H Pm; no inverse is formed). Joseph form
    P = (I - K H) Pm (I - K H)ᵀ + K diag(Rd) Kᵀ, or the standard form
    P = (I - K H) Pm; both symmetrised. On exit ``A`` = I - K H and ``T`` =
    A Pm. PHt (n, m), S (m, m), A, T (n, n) are scratch. Returns False if S is
    not positive definite.
    """
    n = Pm.shape[0]
    m = H.shape[0]
    mmt(Pm, H, PHt)
    mm(H, PHt, S)
    for a in range(m):
        S[a, a] += Rd[a]
    if not cholesky_inplace(S):
        return False
    # row i of K solves L Lᵀ kᵢ = row i of Pm Hᵀ
    for i in range(n):
        for a in range(m):
            acc = PHt[i, a]
            for l in range(a):
                acc -= S[a, l] * K[i, l]
            K[i, a] = acc / S[a, a]
        for a in range(m - 1, -1, -1):
            acc = K[i, a]
            for l in range(a + 1, m):
                acc -= S[l, a] * K[i, l]
            K[i, a] = acc / S[a, a]
    i_minus_kh(K, H, A)
    mm(A, Pm, T)
    if joseph:
        mmt(T, A, P)
        for i in range(n):
            for j in range(i, n):
                kr = 0.0
                for a in range(m):
                    kr += K[i, a] * Rd[a] * K[j, a]
                v = 0.5 * (P[i, j] + P[j, i]) + kr
                P[i, j] = v
                P[j, i] = v
    else:
        sym_add(T, T, 0.5, 0.5, P)
    return True


@njit
def cholesky_inplace(S):
    """Lower Cholesky factor of the SPD matrix S in its lower triangle; False if not PD."""
    m = S.shape[0]
    for j in range(m):
        d = S[j, j]
        for l in range(j):
            d -= S[j, l] * S[j, l]
        if not d > 0.0:
            return False
        d = math.sqrt(d)
        S[j, j] = d
        for i in range(j + 1, m):
            acc = S[i, j]
            for l in range(j):
                acc -= S[i, l] * S[j, l]
            S[i, j] = acc / d
    return True


@njit
def cov_forward(F, G, H, Rd, P0, M, Q0, joseph, P, Pm, Kg):
    """Covariance recursion over N steps.

    F (N, n, n), G (N, n, n_u), H (N, m, n), Rd (N, m) are the Jacobians and
    noise variances along the nominal trajectory (H, Rd at states 1..N).
    Writes P (N+1, n, n) (P[0] = P0, P[k+1] posterior after the update at
    state k+1), Pm (N, n, n) priors and Kg (N, n, m) gains. Returns the index
    of the first step whose innovation covariance is not positive definite,
    or -1.
    """
    N = F.shape[0]
    n = F.shape[1]
    nu = G.shape[2]
    m = H.shape[1]
    sym_add(P0, P0, 0.5, 0.5, P[0])
    T = np.empty((n, n))
    GM = np.empty((n, nu))
    PHt = np.empty((n, m))
    S = np.empty((m, m))
    A = np.empty((n, n))
    for k in range(N):
        predict_cov(F[k], G[k], P[k], M, Q0, T, GM, Pm[k])
        if not kalman_update(Pm[k], H[k], Rd[k], joseph, P[k + 1], Kg[k], PHt, S, A, T):
            return k
    return -1


@njit
def cov_adjoint(F, G, H, Kg, Pm, P, M, Pbar, Fb, Gb, Hb, Rb, P0b, Mb, Q0b):
    """Reverse sweep of the covariance recursion.

    ``Pbar`` (N+1, n, n) holds ∂J/∂P_k for every step (symmetrised here).
    Writes the cotangents Fb (N, n, n), Gb (N, n, n_u), Hb (N, m, n),
    Rb (N, m), P0b (n, n) and accumulates Mb (n_u, n_u), Q0b (n, n).

    Update (optimal gain, so ∂P/∂K = 0 and K is held fixed):
    P̄⁻ = Aᵀ P̄ A, R̄ = diag(Kᵀ P̄ K), H̄ = -2 Kᵀ P̄ A P⁻ with A = I - K H.
    Predict: Q̄₀ += P̄⁻, F̄ = 2 P̄⁻ F P, Ḡ = 2 P̄⁻ G M, M̄ += Gᵀ P̄⁻ G,
    P̄_k = Fᵀ P̄⁻ F + ∂J/∂P_k.
    """
    N = F.shape[0]
    n = F.shape[1]
    nu = G.shape[2]
    m = H.shape[1]
    Pb = np.empty((n, n))
    Pmb = np.empty((n, n))
    A = np.empty((n, n))
    T = np.empty((n, n))
    T2 = np.empty((n, nu))
    Tu = np.empty((nu, nu))
    KP = np.empty((m, n))
    W = np.empty((n, n))
    sym_add(Pbar[N], Pbar[N], 0.5, 0.5, Pb)
    for k in range(N - 1, -1, -1):
        K = Kg[k]
        # update
        i_minus_kh(K, H[k], A)
        mm(Pb, A, T)
        mtm(A, T, Pmb)
        sym_add(Pmb, Pmb, 0.5, 0.5, Pmb)
        mtm(K, Pb, KP)
        for a in range(m):
            acc = 0.0
            for j in range(n):
                acc += KP[a, j] * K[j, a]
            Rb[k, a] = acc
        mm(A, Pm[k], W)
        mm(KP, W, Hb[k])
        for a in range(m):
            for j in range(n):
                Hb[k, a, j] *= -2.0
        # predict: P⁻ = F P Fᵀ + G M Gᵀ + Q0
        sym_add(Q0b, Pmb, 1.0, 1.0, Q0b)
        mm(Pmb, F[k], T)
        mm(T, P[k], Fb[k])
        mm(Pmb, G[k], T2)
        mm(T2, M, Gb[k])
        for i in range(n):
            for j in range(n):
                Fb[k, i, j] *= 2.0
            for j in range(nu):
                Gb[k, i, j] *= 2.0
        mtm(G[k], T2, Tu)
        sym_add(Mb, Tu, 1.0, 1.0, Mb)
        mtm(F[k], T, Pb)
        sym_add(Pb, Pbar[k], 1.0, 1.0, Pb)
    sym_add(Pb, Pb, 0.5, 0.5, P0b)


# ---------------------------------------------------------------------------
# specialised recursion for 3 states and 2 controls (both built-in models)
# ---------------------------------------------------------------------------
#
# Same mathematics as cov_forward / cov_adjoint, with the 3x3 algebra on
# tuples (a general matrix as its 9 entries row by row, a symmetric one as
# its upper triangle (a00, a01, a02, a11, a12, a22)) so that the whole step
# stays in registers; m (measurements) remains a run-time loop. The gain
# comes from m scalar updates instead of an m x m Cholesky factorisation: R
# is diagonal, so the measurements are independent and processing them one
# at a time,
#
#     v = P hₐᵀ,  s = hₐ v + rₐ,  P ← P - v vᵀ / s,                  a = 1..m,
#
# ends at the posterior P⁺ of the batch update; the batch gain then follows
# from the identity K = P⁻ Hᵀ S⁻¹ = P⁺ Hᵀ R⁻¹ (no inverse formed: the only
# divisions are by the scalars s and rₐ). P⁺ itself is then evaluated in the
# Joseph form (I - K H) P⁻ (I - K H)ᵀ + K R Kᵀ with that gain (or the standard
# form (I - K H) P⁻), symmetrised, exactly as the generic kernel does. The
# tests compare both kernels on random instances.


@njit
def _get3(A):
    """The 9 entries of a 3x3 array, row by row."""
    return (A[0, 0], A[0, 1], A[0, 2], A[1, 0], A[1, 1], A[1, 2], A[2, 0], A[2, 1], A[2, 2])


@njit
def _get_sym3(A):
    """Upper triangle (a00, a01, a02, a11, a12, a22) of a symmetric 3x3 array."""
    return (A[0, 0], A[0, 1], A[0, 2], A[1, 1], A[1, 2], A[2, 2])


@njit
def _sym_part3(A):
    """Upper triangle of sym(A) = (A + Aᵀ)/2 for a 3x3 array."""
    return (
        A[0, 0],
        0.5 * (A[0, 1] + A[1, 0]),
        0.5 * (A[0, 2] + A[2, 0]),
        A[1, 1],
        0.5 * (A[1, 2] + A[2, 1]),
        A[2, 2],
    )


@njit
def _put_sym3(A, s):
    """Write the symmetric matrix with upper triangle ``s`` into the 3x3 array A."""
    A[0, 0] = s[0]
    A[0, 1] = A[1, 0] = s[1]
    A[0, 2] = A[2, 0] = s[2]
    A[1, 1] = s[3]
    A[1, 2] = A[2, 1] = s[4]
    A[2, 2] = s[5]


@njit
def _put3(A, a, scale):
    """A = scale * (the 3x3 matrix with entries ``a`` row by row)."""
    A[0, 0] = scale * a[0]
    A[0, 1] = scale * a[1]
    A[0, 2] = scale * a[2]
    A[1, 0] = scale * a[3]
    A[1, 1] = scale * a[4]
    A[1, 2] = scale * a[5]
    A[2, 0] = scale * a[6]
    A[2, 1] = scale * a[7]
    A[2, 2] = scale * a[8]


@njit
def _gen_sym3(a, s):
    """A S for a general A (9-tuple) and a symmetric S (6-tuple); 9-tuple."""
    s00, s01, s02, s11, s12, s22 = s
    return (
        a[0] * s00 + a[1] * s01 + a[2] * s02,
        a[0] * s01 + a[1] * s11 + a[2] * s12,
        a[0] * s02 + a[1] * s12 + a[2] * s22,
        a[3] * s00 + a[4] * s01 + a[5] * s02,
        a[3] * s01 + a[4] * s11 + a[5] * s12,
        a[3] * s02 + a[4] * s12 + a[5] * s22,
        a[6] * s00 + a[7] * s01 + a[8] * s02,
        a[6] * s01 + a[7] * s11 + a[8] * s12,
        a[6] * s02 + a[7] * s12 + a[8] * s22,
    )


@njit
def _sym_gen3(s, a):
    """S A for a symmetric S (6-tuple) and a general A (9-tuple); 9-tuple."""
    s00, s01, s02, s11, s12, s22 = s
    return (
        s00 * a[0] + s01 * a[3] + s02 * a[6],
        s00 * a[1] + s01 * a[4] + s02 * a[7],
        s00 * a[2] + s01 * a[5] + s02 * a[8],
        s01 * a[0] + s11 * a[3] + s12 * a[6],
        s01 * a[1] + s11 * a[4] + s12 * a[7],
        s01 * a[2] + s11 * a[5] + s12 * a[8],
        s02 * a[0] + s12 * a[3] + s22 * a[6],
        s02 * a[1] + s12 * a[4] + s22 * a[7],
        s02 * a[2] + s12 * a[5] + s22 * a[8],
    )


@njit
def _sym_abt3(a, b):
    """sym(A Bᵀ) for general A, B (9-tuples); 6-tuple."""
    a00, a01, a02, a10, a11, a12, a20, a21, a22 = a
    b00, b01, b02, b10, b11, b12, b20, b21, b22 = b
    return (
        a00 * b00 + a01 * b01 + a02 * b02,
        0.5 * (a00 * b10 + a01 * b11 + a02 * b12 + a10 * b00 + a11 * b01 + a12 * b02),
        0.5 * (a00 * b20 + a01 * b21 + a02 * b22 + a20 * b00 + a21 * b01 + a22 * b02),
        a10 * b10 + a11 * b11 + a12 * b12,
        0.5 * (a10 * b20 + a11 * b21 + a12 * b22 + a20 * b10 + a21 * b11 + a22 * b12),
        a20 * b20 + a21 * b21 + a22 * b22,
    )


@njit
def _t3(a):
    """Transpose of a 9-tuple matrix."""
    return (a[0], a[3], a[6], a[1], a[4], a[7], a[2], a[5], a[8])


@njit
def _sym_atb3(a, b):
    """sym(Aᵀ B) for general A, B (9-tuples); 6-tuple."""
    return _sym_abt3(_t3(a), _t3(b))


@njit
def _add_sym3(s, t):
    return (s[0] + t[0], s[1] + t[1], s[2] + t[2], s[3] + t[3], s[4] + t[4], s[5] + t[5])


@njit(inline="always")
def _i_minus_kh3(K, H):
    """I - K H (9-tuple) for K (3, m), H (m, 3)."""
    e00, e01, e02, e10, e11, e12, e20, e21, e22 = 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0
    for a in range(H.shape[0]):
        h0, h1, h2 = H[a, 0], H[a, 1], H[a, 2]
        k0, k1, k2 = K[0, a], K[1, a], K[2, a]
        e00 -= k0 * h0
        e01 -= k0 * h1
        e02 -= k0 * h2
        e10 -= k1 * h0
        e11 -= k1 * h1
        e12 -= k1 * h2
        e20 -= k2 * h0
        e21 -= k2 * h1
        e22 -= k2 * h2
    return (e00, e01, e02, e10, e11, e12, e20, e21, e22)


@njit
def _gmgt3(g, m):
    """G M Gᵀ for G (3, 2) as a 6-tuple (rows (g0, g1)) and M symmetric (m00, m01, m11); 6-tuple."""
    a0 = g[0] * m[0] + g[1] * m[1]
    b0 = g[0] * m[1] + g[1] * m[2]
    a1 = g[2] * m[0] + g[3] * m[1]
    b1 = g[2] * m[1] + g[3] * m[2]
    a2 = g[4] * m[0] + g[5] * m[1]
    b2 = g[4] * m[1] + g[5] * m[2]
    return (
        a0 * g[0] + b0 * g[1],
        a0 * g[2] + b0 * g[3],
        a0 * g[4] + b0 * g[5],
        a1 * g[2] + b1 * g[3],
        a1 * g[4] + b1 * g[5],
        a2 * g[4] + b2 * g[5],
    )


@njit
def cov_forward_3x2(F, G, H, Rd, P0, M, Q0, joseph, P, Pm, Kg):
    """:func:`cov_forward` for n = 3 states and n_u = 2 controls (same arguments and return).

    Returns the index of the first step where a scalar innovation variance
    ``s`` is not positive, or -1. (The caller may confirm a failure with the
    generic kernel, whose test is the Cholesky factorisation of S.)
    """
    N = F.shape[0]
    m = H.shape[1]
    _put_sym3(P[0], _sym_part3(P0))
    msym = (M[0, 0], 0.5 * (M[0, 1] + M[1, 0]), M[1, 1])
    q = _sym_part3(Q0)
    for k in range(N):
        Gk, Hk, Rk, Kk = G[k], H[k], Rd[k], Kg[k]
        f = _get3(F[k])
        # P⁻ = sym(F P Fᵀ) + G M Gᵀ + Q0
        pm = _sym_abt3(_gen_sym3(f, _get_sym3(P[k])), f)
        g = (Gk[0, 0], Gk[0, 1], Gk[1, 0], Gk[1, 1], Gk[2, 0], Gk[2, 1])
        pm = _add_sym3(_add_sym3(pm, _gmgt3(g, msym)), q)
        _put_sym3(Pm[k], pm)
        # posterior by m scalar updates (only used to form the gain)
        c00, c01, c02, c11, c12, c22 = pm
        for a in range(m):
            h0, h1, h2 = Hk[a, 0], Hk[a, 1], Hk[a, 2]
            v0 = c00 * h0 + c01 * h1 + c02 * h2
            v1 = c01 * h0 + c11 * h1 + c12 * h2
            v2 = c02 * h0 + c12 * h1 + c22 * h2
            s = h0 * v0 + h1 * v1 + h2 * v2 + Rk[a]
            if not s > 0.0:
                return k
            w = 1.0 / s
            c00 -= v0 * v0 * w
            c01 -= v0 * v1 * w
            c02 -= v0 * v2 * w
            c11 -= v1 * v1 * w
            c12 -= v1 * v2 * w
            c22 -= v2 * v2 * w
        # K = P⁺ Hᵀ R⁻¹ and K R Kᵀ
        r00, r01, r02, r11, r12, r22 = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
        for a in range(m):
            h0, h1, h2 = Hk[a, 0], Hk[a, 1], Hk[a, 2]
            ra = Rk[a]
            w = 1.0 / ra
            k0 = (c00 * h0 + c01 * h1 + c02 * h2) * w
            k1 = (c01 * h0 + c11 * h1 + c12 * h2) * w
            k2 = (c02 * h0 + c12 * h1 + c22 * h2) * w
            Kk[0, a] = k0
            Kk[1, a] = k1
            Kk[2, a] = k2
            r00 += k0 * ra * k0
            r01 += k0 * ra * k1
            r02 += k0 * ra * k2
            r11 += k1 * ra * k1
            r12 += k1 * ra * k2
            r22 += k2 * ra * k2
        e = _i_minus_kh3(Kk, Hk)
        u = _gen_sym3(e, pm)  # A P⁻
        if joseph:  # sym(A P⁻ Aᵀ) + K R Kᵀ
            post = _add_sym3(_sym_abt3(u, e), (r00, r01, r02, r11, r12, r22))
        else:  # sym(A P⁻)
            post = (u[0], 0.5 * (u[1] + u[3]), 0.5 * (u[2] + u[6]), u[4], 0.5 * (u[5] + u[7]), u[8])
        _put_sym3(P[k + 1], post)
    return -1


@njit
def cov_adjoint_3x2(F, G, H, Kg, Pm, P, M, Pbar, Fb, Gb, Hb, Rb, P0b, Mb, Q0b):
    """:func:`cov_adjoint` for n = 3 states and n_u = 2 controls (same arguments, same formulas)."""
    N = F.shape[0]
    m = H.shape[1]
    m00, m01, m10, m11 = M[0, 0], M[0, 1], M[1, 0], M[1, 1]
    b = _sym_part3(Pbar[N])  # P̄ carried backwards
    qb = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    mb00, mb01, mb11 = 0.0, 0.0, 0.0
    for k in range(N - 1, -1, -1):
        Kk, Gk, Hbk, Rbk = Kg[k], G[k], Hb[k], Rb[k]
        # update: A = I - K H, P̄⁻ = sym(Aᵀ P̄ A)
        e = _i_minus_kh3(Kk, H[k])
        c = _sym_atb3(e, _sym_gen3(b, e))
        # R̄ = diag(Kᵀ P̄ K), H̄ = -2 Kᵀ P̄ (A P⁻)
        w = _gen_sym3(e, _get_sym3(Pm[k]))
        b00, b01, b02, b11, b12, b22 = b
        for a in range(m):
            k0, k1, k2 = Kk[0, a], Kk[1, a], Kk[2, a]
            v0 = k0 * b00 + k1 * b01 + k2 * b02
            v1 = k0 * b01 + k1 * b11 + k2 * b12
            v2 = k0 * b02 + k1 * b12 + k2 * b22
            Rbk[a] = v0 * k0 + v1 * k1 + v2 * k2
            Hbk[a, 0] = -2.0 * (v0 * w[0] + v1 * w[3] + v2 * w[6])
            Hbk[a, 1] = -2.0 * (v0 * w[1] + v1 * w[4] + v2 * w[7])
            Hbk[a, 2] = -2.0 * (v0 * w[2] + v1 * w[5] + v2 * w[8])
        # predict: Q̄0 += P̄⁻, F̄ = 2 P̄⁻ F P
        qb = _add_sym3(qb, c)
        f = _get3(F[k])
        t = _sym_gen3(c, f)
        fb = _gen_sym3(t, _get_sym3(P[k]))
        _put3(Fb[k], fb, 2.0)
        # S = P̄⁻ G, Ḡ = 2 S M, M̄ += Gᵀ S
        c00, c01, c02, c11, c12, c22 = c
        g00, g01, g10, g11, g20, g21 = Gk[0, 0], Gk[0, 1], Gk[1, 0], Gk[1, 1], Gk[2, 0], Gk[2, 1]
        s00 = c00 * g00 + c01 * g10 + c02 * g20
        s01 = c00 * g01 + c01 * g11 + c02 * g21
        s10 = c01 * g00 + c11 * g10 + c12 * g20
        s11 = c01 * g01 + c11 * g11 + c12 * g21
        s20 = c02 * g00 + c12 * g10 + c22 * g20
        s21 = c02 * g01 + c12 * g11 + c22 * g21
        Gbk = Gb[k]
        Gbk[0, 0] = 2.0 * (s00 * m00 + s01 * m10)
        Gbk[0, 1] = 2.0 * (s00 * m01 + s01 * m11)
        Gbk[1, 0] = 2.0 * (s10 * m00 + s11 * m10)
        Gbk[1, 1] = 2.0 * (s10 * m01 + s11 * m11)
        Gbk[2, 0] = 2.0 * (s20 * m00 + s21 * m10)
        Gbk[2, 1] = 2.0 * (s20 * m01 + s21 * m11)
        mb00 += g00 * s00 + g10 * s10 + g20 * s20
        mb01 += 0.5 * (g00 * s01 + g10 * s11 + g20 * s21 + g01 * s00 + g11 * s10 + g21 * s20)
        mb11 += g01 * s01 + g11 * s11 + g21 * s21
        # P̄_k = sym(Fᵀ P̄⁻ F) + sym(∂J/∂P_k)
        b = _add_sym3(_sym_atb3(f, t), _sym_part3(Pbar[k]))
    _put_sym3(P0b, b)
    _put_sym3(Q0b, _add_sym3(_sym_part3(Q0b), qb))
    Mb[0, 0] += mb00
    Mb[0, 1] += mb01
    Mb[1, 0] += mb01
    Mb[1, 1] += mb11


# ---------------------------------------------------------------------------
# the actual EKF on simulated noisy data (Monte-Carlo runs)
# ---------------------------------------------------------------------------


@njit
def ekf_segment(kind, mp, B, sp, xt0, xh0, Ph0, U, M, Q0, Lm, Lq, eu, eq, ez, joseph, Xt, Xh, Ph, Z):
    """Simulate truth + measurements and run the EKF over the K = len(U) steps of one run.

    Truth: x_t,0 = xt0, x_t,k+1 = f(x_t,k, u_k + Lm eu_k) + Lq eq_k,
    z_k+1 = h(x_t,k+1) + σ(x_t,k+1) ⊙ ez_k (bearings wrapped). Filter: starts
    at (xh0, Ph0), predicts with the commanded controls, updates with z using
    wrapped bearing innovations (Joseph form or standard). Writes Xt, Xh
    (K+1, n), Ph (K+1, n, n), Z (K, m). Returns -1, or the first step k whose
    innovation covariance failed.
    """
    N = U.shape[0]
    n = xt0.shape[0]
    nu = U.shape[1]
    m = ez.shape[1]
    use_r = sp[0] != 0.0
    use_b = sp[1] != 0.0
    per = int(use_r) + int(use_b)
    F = np.empty((n, n))
    G = np.empty((n, nu))
    Ft = np.empty((n, n))
    Gt = np.empty((n, nu))
    H = np.empty((m, n))
    Rd = np.empty(m)
    sd = np.empty(m)
    zh = np.empty(m)
    ut = np.empty(nu)
    xn = np.empty(n)
    Pm = np.empty((n, n))
    Kg = np.empty((n, m))
    T = np.empty((n, n))
    GM = np.empty((n, nu))
    PHt = np.empty((n, m))
    S = np.empty((m, m))
    A = np.empty((n, n))
    for i in range(n):
        Xt[0, i] = xt0[i]
        Xh[0, i] = xh0[i]
        for j in range(n):
            Ph[0, i, j] = Ph0[i, j]
    for k in range(N):
        # truth
        for i in range(nu):
            acc = U[k, i]
            for l in range(nu):
                acc += Lm[i, l] * eu[k, l]
            ut[i] = acc
        model_step(kind, mp, Xt[k], ut, xn, Ft, Gt)
        for i in range(n):
            acc = xn[i]
            for l in range(n):
                acc += Lq[i, l] * eq[k, l]
            Xt[k + 1, i] = acc
        meas_eval(Xt[k + 1], B, sp, Z[k])
        meas_noise_std(Xt[k + 1], B, sp, sd)
        for a in range(m):
            Z[k, a] += sd[a] * ez[k, a]
        if use_b:
            for j in range(B.shape[0]):
                a = j * per + per - 1
                Z[k, a] = wrap(Z[k, a])
        # filter: predict
        model_step(kind, mp, Xh[k], U[k], xn, F, G)
        predict_cov(F, G, Ph[k], M, Q0, T, GM, Pm)
        # update at the predicted state
        meas_jac(xn, B, sp, H, Rd)
        if not kalman_update(Pm, H, Rd, joseph, Ph[k + 1], Kg, PHt, S, A, T):
            return k
        meas_eval(xn, B, sp, zh)
        for a in range(m):
            zh[a] = Z[k, a] - zh[a]
        if use_b:
            for j in range(B.shape[0]):
                a = j * per + per - 1
                zh[a] = wrap(zh[a])
        for i in range(n):
            acc = xn[i]
            for a in range(m):
                acc += Kg[i, a] * zh[a]
            Xh[k + 1, i] = acc
    return -1


@njit
def ekf_monte_carlo(kind, mp, B, sp, x0, P0, U, M, Q0, L0, Lm, Lq, e0, eu, eq, ez, joseph, Xt, Xh, Ph, Z):
    """:func:`ekf_segment` for R runs from the true initial states x0 + L0 e0[r] and the estimate (x0, P0).

    Writes Xt, Xh (R, N+1, n), Ph (R, N+1, n, n), Z (R, N, m). Returns -1, or
    the flat index r * N + k of the first step whose innovation covariance failed.
    """
    R = e0.shape[0]
    N = U.shape[0]
    n = x0.shape[0]
    xt0 = np.empty(n)
    for r in range(R):
        for i in range(n):
            acc = x0[i]
            for l in range(n):
                acc += L0[i, l] * e0[r, l]
            xt0[i] = acc
        fail = ekf_segment(kind, mp, B, sp, xt0, x0, P0, U, M, Q0, Lm, Lq, eu[r], eq[r], ez[r], joseph,
                           Xt[r], Xh[r], Ph[r], Z[r])  # fmt: skip
        if fail >= 0:
            return r * N + fail
    return -1


# ---------------------------------------------------------------------------
# forward sensitivities of the nominal trajectory (constraint Jacobians)
# ---------------------------------------------------------------------------


@njit
def trajectory_sensitivity(F, G, S):
    """S[k] = ∂x_k/∂U (n, N, n_u) for k = 0..N from x_{k+1} = f(x_k, u_k).

    F (N, n, n), G (N, n, n_u); S (N+1, n, N, n_u) is written in full
    (S[k, :, j] = 0 for j ≥ k). S[k+1, :, j] = F_k S[k, :, j] for j < k and
    S[k+1, :, k] = G_k. Cost O(N² n² n_u).
    """
    N = F.shape[0]
    n = F.shape[1]
    nu = G.shape[2]
    for i in range(n):
        for j in range(N):
            for a in range(nu):
                S[0, i, j, a] = 0.0
    for k in range(N):
        for i in range(n):
            for j in range(N):
                for a in range(nu):
                    acc = 0.0
                    if j < k:
                        for l in range(n):
                            acc += F[k, i, l] * S[k, l, j, a]
                    elif j == k:
                        acc = G[k, i, a]
                    S[k + 1, i, j, a] = acc
