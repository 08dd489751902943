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
with the 3x3 algebra in scalar locals; the generic kernels serve every other
size and are the reference the specialised ones are tested against.
"""

from __future__ import annotations

import math

import numpy as np

from .._jit import njit

MODEL_UNICYCLE = 0
MODEL_BICYCLE = 1

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
def model_rollout(kind, mp, x0, U, X, F, G):
    """Nominal trajectory X (N+1, 3) and Jacobians F (N, 3, 3), G (N, 3, 2)."""
    for i in range(x0.shape[0]):
        X[0, i] = x0[i]
    for k in range(U.shape[0]):
        model_step(kind, mp, X[k], U[k], X[k + 1], F[k], G[k])


@njit
def model_adjoint(kind, mp, X, U, F, G, Fb, Gb, Xb, x0b, Ub):
    """Reverse sweep of the nominal trajectory.

    ``Xb`` (N+1, n) holds the direct cotangents of the states (measurement
    Jacobians, user terms); ``Fb``/``Gb`` those of the model Jacobians. Writes
    ``x0b`` (n,) and ``Ub`` (N, n_u).
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
# Same mathematics as cov_forward / cov_adjoint, written with scalar locals
# (symmetric 3x3 matrices as six numbers) so that the whole step stays in
# registers; m (measurements) remains a run-time loop. The gain comes from m
# scalar updates instead of an m x m Cholesky factorisation: R is diagonal, so
# the measurements are independent and processing them one at a time,
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
def cov_forward_3x2(F, G, H, Rd, P0, M, Q0, joseph, P, Pm, Kg):
    """:func:`cov_forward` for n = 3 states and n_u = 2 controls (same arguments and return).

    Returns the index of the first step where a scalar innovation variance
    ``s`` is not positive, or -1. (The caller may confirm a failure with the
    generic kernel, whose test is the Cholesky factorisation of S.)
    """
    N = F.shape[0]
    m = H.shape[1]
    for i in range(3):
        for j in range(3):
            P[0, i, j] = 0.5 * (P0[i, j] + P0[j, i])
    m00 = M[0, 0]
    m01 = 0.5 * (M[0, 1] + M[1, 0])
    m11 = M[1, 1]
    q00 = Q0[0, 0]
    q11 = Q0[1, 1]
    q22 = Q0[2, 2]
    q01 = 0.5 * (Q0[0, 1] + Q0[1, 0])
    q02 = 0.5 * (Q0[0, 2] + Q0[2, 0])
    q12 = 0.5 * (Q0[1, 2] + Q0[2, 1])
    for k in range(N):
        Fk, Gk, Pk, Pmk, Hk, Rk, Kk, Pn = F[k], G[k], P[k], Pm[k], H[k], Rd[k], Kg[k], P[k + 1]
        f00, f01, f02 = Fk[0, 0], Fk[0, 1], Fk[0, 2]
        f10, f11, f12 = Fk[1, 0], Fk[1, 1], Fk[1, 2]
        f20, f21, f22 = Fk[2, 0], Fk[2, 1], Fk[2, 2]
        x00, x01, x02 = Pk[0, 0], Pk[0, 1], Pk[0, 2]
        x11, x12, x22 = Pk[1, 1], Pk[1, 2], Pk[2, 2]
        # T = F P (P symmetric)
        t00 = f00 * x00 + f01 * x01 + f02 * x02
        t01 = f00 * x01 + f01 * x11 + f02 * x12
        t02 = f00 * x02 + f01 * x12 + f02 * x22
        t10 = f10 * x00 + f11 * x01 + f12 * x02
        t11 = f10 * x01 + f11 * x11 + f12 * x12
        t12 = f10 * x02 + f11 * x12 + f12 * x22
        t20 = f20 * x00 + f21 * x01 + f22 * x02
        t21 = f20 * x01 + f21 * x11 + f22 * x12
        t22 = f20 * x02 + f21 * x12 + f22 * x22
        # G M
        g00, g01, g10, g11, g20, g21 = Gk[0, 0], Gk[0, 1], Gk[1, 0], Gk[1, 1], Gk[2, 0], Gk[2, 1]
        a0 = g00 * m00 + g01 * m01
        b0 = g00 * m01 + g01 * m11
        a1 = g10 * m00 + g11 * m01
        b1 = g10 * m01 + g11 * m11
        a2 = g20 * m00 + g21 * m01
        b2 = g20 * m01 + g21 * m11
        # P⁻ = T Fᵀ + (G M) Gᵀ + Q0, upper triangle
        p00 = t00 * f00 + t01 * f01 + t02 * f02 + a0 * g00 + b0 * g01 + q00
        p01 = t00 * f10 + t01 * f11 + t02 * f12 + a0 * g10 + b0 * g11 + q01
        p02 = t00 * f20 + t01 * f21 + t02 * f22 + a0 * g20 + b0 * g21 + q02
        p11 = t10 * f10 + t11 * f11 + t12 * f12 + a1 * g10 + b1 * g11 + q11
        p12 = t10 * f20 + t11 * f21 + t12 * f22 + a1 * g20 + b1 * g21 + q12
        p22 = t20 * f20 + t21 * f21 + t22 * f22 + a2 * g20 + b2 * g21 + q22
        _store_sym3(Pmk, p00, p01, p02, p11, p12, p22)
        # posterior by m scalar updates (only used to form the gain)
        c00, c01, c02, c11, c12, c22 = p00, p01, p02, p11, p12, p22
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
        # K = P⁺ Hᵀ R⁻¹, A = I - K H and K R Kᵀ
        e00, e01, e02, e10, e11, e12, e20, e21, e22 = 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0
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
            e00 -= k0 * h0
            e01 -= k0 * h1
            e02 -= k0 * h2
            e10 -= k1 * h0
            e11 -= k1 * h1
            e12 -= k1 * h2
            e20 -= k2 * h0
            e21 -= k2 * h1
            e22 -= k2 * h2
            r00 += k0 * ra * k0
            r01 += k0 * ra * k1
            r02 += k0 * ra * k2
            r11 += k1 * ra * k1
            r12 += k1 * ra * k2
            r22 += k2 * ra * k2
        # U = A P⁻
        u00 = e00 * p00 + e01 * p01 + e02 * p02
        u01 = e00 * p01 + e01 * p11 + e02 * p12
        u02 = e00 * p02 + e01 * p12 + e02 * p22
        u10 = e10 * p00 + e11 * p01 + e12 * p02
        u11 = e10 * p01 + e11 * p11 + e12 * p12
        u12 = e10 * p02 + e11 * p12 + e12 * p22
        u20 = e20 * p00 + e21 * p01 + e22 * p02
        u21 = e20 * p01 + e21 * p11 + e22 * p12
        u22 = e20 * p02 + e21 * p12 + e22 * p22
        if joseph:  # sym(U Aᵀ) + K R Kᵀ
            c00 = u00 * e00 + u01 * e01 + u02 * e02 + r00
            c01 = 0.5 * (u00 * e10 + u01 * e11 + u02 * e12 + u10 * e00 + u11 * e01 + u12 * e02) + r01
            c02 = 0.5 * (u00 * e20 + u01 * e21 + u02 * e22 + u20 * e00 + u21 * e01 + u22 * e02) + r02
            c11 = u10 * e10 + u11 * e11 + u12 * e12 + r11
            c12 = 0.5 * (u10 * e20 + u11 * e21 + u12 * e22 + u20 * e10 + u21 * e11 + u22 * e12) + r12
            c22 = u20 * e20 + u21 * e21 + u22 * e22 + r22
        else:  # sym(U)
            c00 = u00
            c01 = 0.5 * (u01 + u10)
            c02 = 0.5 * (u02 + u20)
            c11 = u11
            c12 = 0.5 * (u12 + u21)
            c22 = u22
        _store_sym3(Pn, c00, c01, c02, c11, c12, c22)
    return -1


@njit
def _store_sym3(A, a00, a01, a02, a11, a12, a22):
    A[0, 0] = a00
    A[0, 1] = a01
    A[0, 2] = a02
    A[1, 0] = a01
    A[1, 1] = a11
    A[1, 2] = a12
    A[2, 0] = a02
    A[2, 1] = a12
    A[2, 2] = a22


@njit
def cov_adjoint_3x2(F, G, H, Kg, Pm, P, M, Pbar, Fb, Gb, Hb, Rb, P0b, Mb, Q0b):
    """:func:`cov_adjoint` for n = 3 states and n_u = 2 controls (same arguments, same formulas)."""
    N = F.shape[0]
    m = H.shape[1]
    m00, m01, m10, m11 = M[0, 0], M[0, 1], M[1, 0], M[1, 1]
    B = Pbar[N]
    b00 = B[0, 0]
    b11 = B[1, 1]
    b22 = B[2, 2]
    b01 = 0.5 * (B[0, 1] + B[1, 0])
    b02 = 0.5 * (B[0, 2] + B[2, 0])
    b12 = 0.5 * (B[1, 2] + B[2, 1])
    qb00, qb01, qb02, qb11, qb12, qb22 = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
    mb00, mb01, mb11 = 0.0, 0.0, 0.0
    for k in range(N - 1, -1, -1):
        Kk, Hk, Pmk, Fk, Gk, Pk, Hbk, Rbk = Kg[k], H[k], Pm[k], F[k], G[k], P[k], Hb[k], Rb[k]
        # update: A = I - K H
        e00, e01, e02, e10, e11, e12, e20, e21, e22 = 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0
        for a in range(m):
            h0, h1, h2 = Hk[a, 0], Hk[a, 1], Hk[a, 2]
            k0, k1, k2 = Kk[0, a], Kk[1, a], Kk[2, a]
            e00 -= k0 * h0
            e01 -= k0 * h1
            e02 -= k0 * h2
            e10 -= k1 * h0
            e11 -= k1 * h1
            e12 -= k1 * h2
            e20 -= k2 * h0
            e21 -= k2 * h1
            e22 -= k2 * h2
        # T = P̄ A, P̄⁻ = sym(Aᵀ T)
        t00 = b00 * e00 + b01 * e10 + b02 * e20
        t01 = b00 * e01 + b01 * e11 + b02 * e21
        t02 = b00 * e02 + b01 * e12 + b02 * e22
        t10 = b01 * e00 + b11 * e10 + b12 * e20
        t11 = b01 * e01 + b11 * e11 + b12 * e21
        t12 = b01 * e02 + b11 * e12 + b12 * e22
        t20 = b02 * e00 + b12 * e10 + b22 * e20
        t21 = b02 * e01 + b12 * e11 + b22 * e21
        t22 = b02 * e02 + b12 * e12 + b22 * e22
        c00 = e00 * t00 + e10 * t10 + e20 * t20
        c01 = 0.5 * (e00 * t01 + e10 * t11 + e20 * t21 + e01 * t00 + e11 * t10 + e21 * t20)
        c02 = 0.5 * (e00 * t02 + e10 * t12 + e20 * t22 + e02 * t00 + e12 * t10 + e22 * t20)
        c11 = e01 * t01 + e11 * t11 + e21 * t21
        c12 = 0.5 * (e01 * t02 + e11 * t12 + e21 * t22 + e02 * t01 + e12 * t11 + e22 * t21)
        c22 = e02 * t02 + e12 * t12 + e22 * t22
        # W = A P⁻; R̄ = diag(Kᵀ P̄ K), H̄ = -2 Kᵀ P̄ W
        p00, p01, p02 = Pmk[0, 0], Pmk[0, 1], Pmk[0, 2]
        p11, p12, p22 = Pmk[1, 1], Pmk[1, 2], Pmk[2, 2]
        w00 = e00 * p00 + e01 * p01 + e02 * p02
        w01 = e00 * p01 + e01 * p11 + e02 * p12
        w02 = e00 * p02 + e01 * p12 + e02 * p22
        w10 = e10 * p00 + e11 * p01 + e12 * p02
        w11 = e10 * p01 + e11 * p11 + e12 * p12
        w12 = e10 * p02 + e11 * p12 + e12 * p22
        w20 = e20 * p00 + e21 * p01 + e22 * p02
        w21 = e20 * p01 + e21 * p11 + e22 * p12
        w22 = e20 * p02 + e21 * p12 + e22 * p22
        for a in range(m):
            k0, k1, k2 = Kk[0, a], Kk[1, a], Kk[2, a]
            v0 = k0 * b00 + k1 * b01 + k2 * b02
            v1 = k0 * b01 + k1 * b11 + k2 * b12
            v2 = k0 * b02 + k1 * b12 + k2 * b22
            Rbk[a] = v0 * k0 + v1 * k1 + v2 * k2
            Hbk[a, 0] = -2.0 * (v0 * w00 + v1 * w10 + v2 * w20)
            Hbk[a, 1] = -2.0 * (v0 * w01 + v1 * w11 + v2 * w21)
            Hbk[a, 2] = -2.0 * (v0 * w02 + v1 * w12 + v2 * w22)
        # predict: Q̄0 += P̄⁻
        qb00 += c00
        qb01 += c01
        qb02 += c02
        qb11 += c11
        qb12 += c12
        qb22 += c22
        # T = P̄⁻ F, F̄ = 2 T P
        f00, f01, f02 = Fk[0, 0], Fk[0, 1], Fk[0, 2]
        f10, f11, f12 = Fk[1, 0], Fk[1, 1], Fk[1, 2]
        f20, f21, f22 = Fk[2, 0], Fk[2, 1], Fk[2, 2]
        t00 = c00 * f00 + c01 * f10 + c02 * f20
        t01 = c00 * f01 + c01 * f11 + c02 * f21
        t02 = c00 * f02 + c01 * f12 + c02 * f22
        t10 = c01 * f00 + c11 * f10 + c12 * f20
        t11 = c01 * f01 + c11 * f11 + c12 * f21
        t12 = c01 * f02 + c11 * f12 + c12 * f22
        t20 = c02 * f00 + c12 * f10 + c22 * f20
        t21 = c02 * f01 + c12 * f11 + c22 * f21
        t22 = c02 * f02 + c12 * f12 + c22 * f22
        x00, x01, x02 = Pk[0, 0], Pk[0, 1], Pk[0, 2]
        x11, x12, x22 = Pk[1, 1], Pk[1, 2], Pk[2, 2]
        Fbk = Fb[k]
        Fbk[0, 0] = 2.0 * (t00 * x00 + t01 * x01 + t02 * x02)
        Fbk[0, 1] = 2.0 * (t00 * x01 + t01 * x11 + t02 * x12)
        Fbk[0, 2] = 2.0 * (t00 * x02 + t01 * x12 + t02 * x22)
        Fbk[1, 0] = 2.0 * (t10 * x00 + t11 * x01 + t12 * x02)
        Fbk[1, 1] = 2.0 * (t10 * x01 + t11 * x11 + t12 * x12)
        Fbk[1, 2] = 2.0 * (t10 * x02 + t11 * x12 + t12 * x22)
        Fbk[2, 0] = 2.0 * (t20 * x00 + t21 * x01 + t22 * x02)
        Fbk[2, 1] = 2.0 * (t20 * x01 + t21 * x11 + t22 * x12)
        Fbk[2, 2] = 2.0 * (t20 * x02 + t21 * x12 + t22 * x22)
        # S = P̄⁻ G, Ḡ = 2 S M, M̄ += Gᵀ S
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
        # P̄_k = sym(Fᵀ T) + sym(∂J/∂P_k)
        B = Pbar[k]
        b00 = f00 * t00 + f10 * t10 + f20 * t20 + B[0, 0]
        b01 = 0.5 * (
            f00 * t01 + f10 * t11 + f20 * t21 + f01 * t00 + f11 * t10 + f21 * t20 + B[0, 1] + B[1, 0]
        )
        b02 = 0.5 * (
            f00 * t02 + f10 * t12 + f20 * t22 + f02 * t00 + f12 * t10 + f22 * t20 + B[0, 2] + B[2, 0]
        )
        b11 = f01 * t01 + f11 * t11 + f21 * t21 + B[1, 1]
        b12 = 0.5 * (
            f01 * t02 + f11 * t12 + f21 * t22 + f02 * t01 + f12 * t11 + f22 * t21 + B[1, 2] + B[2, 1]
        )
        b22 = f02 * t02 + f12 * t12 + f22 * t22 + B[2, 2]
    _store_sym3(P0b, b00, b01, b02, b11, b12, b22)
    Q0b[0, 0] += qb00
    Q0b[0, 1] += qb01
    Q0b[0, 2] += qb02
    Q0b[1, 0] += qb01
    Q0b[1, 1] += qb11
    Q0b[1, 2] += qb12
    Q0b[2, 0] += qb02
    Q0b[2, 1] += qb12
    Q0b[2, 2] += qb22
    Mb[0, 0] += mb00
    Mb[0, 1] += mb01
    Mb[1, 0] += mb01
    Mb[1, 1] += mb11


# ---------------------------------------------------------------------------
# the actual EKF on simulated noisy data (Monte-Carlo runs)
# ---------------------------------------------------------------------------


@njit
def ekf_monte_carlo(kind, mp, B, sp, x0, P0, U, M, Q0, L0, Lm, Lq, e0, eu, eq, ez, joseph, Xt, Xh, Ph, Z):
    """Simulate truth + measurements and run the EKF, for each of R runs.

    Truth: x_t,0 = x0 + L0 e0, x_t,k+1 = f(x_t,k, u_k + Lm eu_k) + Lq eq_k,
    z_k+1 = h(x_t,k+1) + σ(x_t,k+1) ⊙ ez_k (bearings wrapped). Filter: starts
    at (x0, P0), predicts with the commanded controls, updates with z using
    wrapped bearing innovations (Joseph form or standard). Writes Xt, Xh
    (R, N+1, n), Ph (R, N+1, n, n), Z (R, N, m). Returns -1, or the flat index
    r * N + k of the first step whose innovation covariance failed.
    """
    R = e0.shape[0]
    N = U.shape[0]
    n = x0.shape[0]
    nu = U.shape[1]
    m = ez.shape[2]
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
    for r in range(R):
        for i in range(n):
            acc = x0[i]
            for l in range(n):
                acc += L0[i, l] * e0[r, l]
            Xt[r, 0, i] = acc
            Xh[r, 0, i] = x0[i]
        for i in range(n):
            for j in range(n):
                Ph[r, 0, i, j] = P0[i, j]
        for k in range(N):
            # truth
            for i in range(nu):
                acc = U[k, i]
                for l in range(nu):
                    acc += Lm[i, l] * eu[r, k, l]
                ut[i] = acc
            model_step(kind, mp, Xt[r, k], ut, xn, Ft, Gt)
            for i in range(n):
                acc = xn[i]
                for l in range(n):
                    acc += Lq[i, l] * eq[r, k, l]
                Xt[r, k + 1, i] = acc
            meas_eval(Xt[r, k + 1], B, sp, Z[r, k])
            meas_noise_std(Xt[r, k + 1], B, sp, sd)
            for a in range(m):
                Z[r, k, a] += sd[a] * ez[r, k, a]
            if use_b:
                for j in range(B.shape[0]):
                    a = j * per + per - 1
                    Z[r, k, a] = wrap(Z[r, k, a])
            # filter: predict
            model_step(kind, mp, Xh[r, k], U[k], xn, F, G)
            predict_cov(F, G, Ph[r, k], M, Q0, T, GM, Pm)
            # update at the predicted state
            meas_jac(xn, B, sp, H, Rd)
            if not kalman_update(Pm, H, Rd, joseph, Ph[r, k + 1], Kg, PHt, S, A, T):
                return r * N + k
            meas_eval(xn, B, sp, zh)
            for a in range(m):
                zh[a] = Z[r, k, a] - zh[a]
            if use_b:
                for j in range(B.shape[0]):
                    a = j * per + per - 1
                    zh[a] = wrap(zh[a])
            for i in range(n):
                acc = xn[i]
                for a in range(m):
                    acc += Kg[i, a] * zh[a]
                Xh[r, k + 1, i] = acc
    return -1
