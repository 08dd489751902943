"""Numba kernels that call compiled user functions (models written as compiled functions).

A :class:`~physim.ekf.CompiledMotionModel` or
:class:`~physim.ekf.CompiledMeasurementModel` compiles its functions as
Numba ``cfunc`` s with the fixed signatures below and hands them to these
kernels as first-class function values: the kernels are compiled (and cached
on disk) once for all user models, and call the user code through a function
pointer. The calling conventions are

* motion model: ``f(x, u, p, x_next, F, G)`` writes x⁺ = f(x, u; p), F = ∂f/∂x
  and G = ∂f/∂u; ``f_vjp(x, u, p, lam, F_bar, G_bar, x_bar, u_bar, p_bar)``
  writes ∂(⟨F̄, F⟩ + ⟨Ḡ, G⟩)/∂x into x_bar, /∂u into u_bar and
  ∂(⟨λ, f⟩ + ⟨F̄, F⟩ + ⟨Ḡ, G⟩)/∂p into p_bar;
* sensor: ``h(x, q, z)`` writes z = h(x; q); ``jac(x, q, H, Rd)`` writes
  H = ∂h/∂x and the noise variances Rd; ``jac_vjp(x, q, H_bar, R_bar, x_bar, q_bar)``
  writes ∂(⟨H̄, H⟩ + ⟨R̄, Rd⟩)/∂x and /∂q.

All arrays are C-contiguous float64. Every output array is zeroed by the
kernel before each call (a user function writes only its non-zero entries),
and the kernel adds the VJP scratch outputs into its own accumulators, so user
functions never see the kernel's running sums. Built-in models and the beacon
sensor have wrappers with these conventions (:func:`builtin_functions`), so
any combination of built-in and user-compiled parts runs through the same
kernels.

A function pointer cannot carry a Python exception back to the kernel: user
functions are compiled with ``error_model="numpy"`` (a division by zero gives
inf/NaN, caught by the finiteness checks of the callers) and bounds checking
(an out-of-range index is not accessed; Numba reports the ``IndexError`` as
"unraisable", which :mod:`physim.ekf.compiled` captures and raises after the
kernel returns).
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import types as nbt

from .._jit import FASTMATH, njit
from . import _kernels as K

#: signatures of the user functions (all arrays C-contiguous float64)
_V1 = nbt.float64[::1]
_V2 = nbt.float64[:, ::1]
SIGNATURES = {
    "f": nbt.void(_V1, _V1, _V1, _V1, _V2, _V2),
    "f_vjp": nbt.void(_V1, _V1, _V1, _V1, _V2, _V2, _V1, _V1, _V1),
    "h": nbt.void(_V1, _V1, _V1),
    "jac": nbt.void(_V1, _V1, _V2, _V1),
    "jac_vjp": nbt.void(_V1, _V1, _V2, _V1, _V1, _V1),
}


def compile_user_function(fn, kind: str, *, boundscheck: bool = True, cache: bool = False):
    """Compile ``fn`` as a cfunc with the signature of ``kind`` (a key of :data:`SIGNATURES`)."""
    return numba.cfunc(
        SIGNATURES[kind], nopython=True, cache=cache, boundscheck=boundscheck, error_model="numpy",
        fastmath=set(FASTMATH),
    )(fn)  # fmt: skip


# wrappers of the built-in model (p = [dt, wheelbase, kind]) and beacon sensor
# (q = [use_range, use_bearing, range_std, bearing_std, range_slope, b_0x, b_0y, ...])


def _builtin_model_f(x, u, p, xn, F, G):
    K.model_step(int(p[2]), p, x, u, xn, F, G)


def _builtin_model_vjp(x, u, p, lam, Fb, Gb, xb, ub, pb):
    kind = int(p[2])
    K.model_jac_vjp(kind, p, x, u, Fb, Gb, xb, ub)
    K.model_param_vjp(kind, p, x, u, lam, Fb, Gb, pb)


def _beacons_h(x, q, z):
    K.meas_eval(x, q[5:].reshape((-1, 2)), q[:5], z)


def _beacons_jac(x, q, H, Rd):
    K.meas_jac(x, q[5:].reshape((-1, 2)), q[:5], H, Rd)


@functools.cache
def builtin_functions() -> dict:
    """cfuncs of the built-in model and beacon sensor (compiled on first use, cached on disk)."""
    return {
        "f": compile_user_function(_builtin_model_f, "f", boundscheck=False, cache=True),
        "f_vjp": compile_user_function(_builtin_model_vjp, "f_vjp", boundscheck=False, cache=True),
        "h": compile_user_function(_beacons_h, "h", boundscheck=False, cache=True),
        "jac": compile_user_function(_beacons_jac, "jac", boundscheck=False, cache=True),
    }


# ---------------------------------------------------------------------------
# nominal trajectory and its adjoint
# ---------------------------------------------------------------------------


@njit(inline="always")
def _zero1(a):
    for i in range(a.shape[0]):
        a[i] = 0.0


@njit(inline="always")
def _zero2(a):
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            a[i, j] = 0.0


@njit
def user_rollout(f, p, x0, U, X, F, G):
    """Nominal trajectory X (N+1, n) and Jacobians F (N, n, n), G (N, n, n_u) from ``f``."""
    for i in range(x0.shape[0]):
        X[0, i] = x0[i]
    for k in range(U.shape[0]):
        _zero1(X[k + 1])
        _zero2(F[k])
        _zero2(G[k])
        f(X[k], U[k], p, X[k + 1], F[k], G[k])


@njit
def user_adjoint(f_vjp, p, X, U, F, G, Fb, Gb, Xb, x0b, Ub, pb):
    """Costate recursion λ_k = F_kᵀ λ_{k+1} + x̃_k through a user model.

    Same arguments as :func:`physim.ekf._kernels.model_adjoint`; ``pb``
    (n_p,) accumulates ∂J/∂p.
    """
    N = U.shape[0]
    n = X.shape[1]
    nu = U.shape[1]
    lam = np.empty(n)
    for j in range(n):
        lam[j] = Xb[N, j]
    xs = np.empty(n)
    us = np.empty(nu)
    ps = np.empty(p.shape[0])
    for k in range(N - 1, -1, -1):
        _zero1(xs)
        _zero1(us)
        _zero1(ps)
        f_vjp(X[k], U[k], p, lam, Fb[k], Gb[k], xs, us, ps)
        for j in range(nu):
            acc = us[j]
            for i in range(n):
                acc += G[k, i, j] * lam[i]
            Ub[k, j] = acc
        for j in range(ps.shape[0]):
            pb[j] += ps[j]
        for j in range(n):
            acc = xs[j]
            for i in range(n):
                acc += F[k, i, j] * lam[i]
            xs[j] = acc
        for j in range(n):
            lam[j] = xs[j] + Xb[k, j]
    for j in range(n):
        x0b[j] = lam[j]


# ---------------------------------------------------------------------------
# sensors, batched over states
# ---------------------------------------------------------------------------


@njit
def user_measure(h, q, X, Z):
    """Z[k] = h(X[k]; q) for X (K, n), Z (K, m)."""
    for k in range(X.shape[0]):
        _zero1(Z[k])
        h(X[k], q, Z[k])


@njit
def user_jacobians(jac, q, X, H, Rd):
    """H[k] (m, n) and Rd[k] (m,) at each state of X (K, n)."""
    for k in range(X.shape[0]):
        _zero2(H[k])
        _zero1(Rd[k])
        jac(X[k], q, H[k], Rd[k])


@njit
def user_jacobians_vjp(jac_vjp, q, X, Hb, Rb, Xb, qb):
    """State cotangents Xb (K, n) and accumulated parameter cotangents qb (n_q,) from H̄, R̄."""
    qs = np.empty(q.shape[0])
    for k in range(X.shape[0]):
        _zero1(Xb[k])
        _zero1(qs)
        jac_vjp(X[k], q, Hb[k], Rb[k], Xb[k], qs)
        for j in range(qs.shape[0]):
            qb[j] += qs[j]


# ---------------------------------------------------------------------------
# the EKF on simulated data
# ---------------------------------------------------------------------------

#: status codes of the EKF kernels (with the step where it happened)
OK = 0
BAD_INNOVATION = 1  # innovation covariance not positive definite
BAD_NOISE = 2  # a noise variance from jac is not finite and > 0
BAD_STATE = 3  # a state from f is not finite


@njit
def user_ekf_segment(
    f, p, h, jac, q, ang, xt0, xh0, Ph0, U, M, Q0, Lm, Lq, eu, eq, ez, joseph, Xt, Xh, Ph, Z
):
    """:func:`physim.ekf._kernels.ekf_segment` through user functions.

    ``ang`` (m,) bool marks angular measurement components (wrapped to
    [-π, π)). Returns ``(status, step)``: ``(OK, -1)`` or the first failure.
    """
    N = U.shape[0]
    n = xt0.shape[0]
    nu = U.shape[1]
    m = ez.shape[1]
    F = np.empty((n, n))
    G = np.empty((n, nu))
    Ft = np.empty((n, n))
    Gt = np.empty((n, nu))
    H = np.empty((m, n))
    Rd = np.empty(m)
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
        _zero1(xn)
        _zero2(Ft)
        _zero2(Gt)
        f(Xt[k], ut, p, xn, Ft, Gt)
        for i in range(n):
            acc = xn[i]
            for l in range(n):
                acc += Lq[i, l] * eq[k, l]
            if not math.isfinite(acc):
                return BAD_STATE, k
            Xt[k + 1, i] = acc
        _zero1(Z[k])
        h(Xt[k + 1], q, Z[k])
        _zero2(H)
        _zero1(Rd)
        jac(Xt[k + 1], q, H, Rd)
        for a in range(m):
            if not (Rd[a] > 0.0 and math.isfinite(Rd[a])):
                return BAD_NOISE, k
            Z[k, a] += math.sqrt(Rd[a]) * ez[k, a]
            if ang[a]:
                Z[k, a] = K.wrap(Z[k, a])
        # filter: predict
        _zero1(xn)
        _zero2(F)
        _zero2(G)
        f(Xh[k], U[k], p, xn, F, G)
        for i in range(n):
            if not math.isfinite(xn[i]):
                return BAD_STATE, k
        K.predict_cov(F, G, Ph[k], M, Q0, T, GM, Pm)
        # update at the predicted state
        _zero2(H)
        _zero1(Rd)
        jac(xn, q, H, Rd)
        for a in range(m):
            if not (Rd[a] > 0.0 and math.isfinite(Rd[a])):
                return BAD_NOISE, k
        if not K.kalman_update(Pm, H, Rd, joseph, Ph[k + 1], Kg, PHt, S, A, T):
            return BAD_INNOVATION, k
        _zero1(zh)
        h(xn, q, zh)
        for a in range(m):
            zh[a] = Z[k, a] - zh[a]
            if ang[a]:
                zh[a] = K.wrap(zh[a])
        for i in range(n):
            acc = xn[i]
            for a in range(m):
                acc += Kg[i, a] * zh[a]
            Xh[k + 1, i] = acc
    return OK, -1


@njit
def user_ekf_monte_carlo(
    f, p, h, jac, q, ang, x0, P0, U, M, Q0, L0, Lm, Lq, e0, eu, eq, ez, joseph, Xt, Xh, Ph, Z
):
    """:func:`user_ekf_segment` for R runs from x0 + L0 e0[r]; returns ``(status, r * N + k)``."""
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
        status, k = user_ekf_segment(f, p, h, jac, q, ang, xt0, x0, P0, U, M, Q0, Lm, Lq, eu[r], eq[r],
                                     ez[r], joseph, Xt[r], Xh[r], Ph[r], Z[r])  # fmt: skip
        if status != OK:
            return status, r * N + k
    return OK, -1
