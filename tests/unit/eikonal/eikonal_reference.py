"""Slow, obvious reference implementations for the eikonal solver tests.

* :func:`local_update_ref` — the local update of one target vertex from a
  support set, written as a plane-wave fit in isotropic coordinates
  (``z = L⁻¹ x`` with ``D = L Lᵀ``): find the arrival time ``T`` and unit
  direction ``n`` in the span of the support with ``t_j = T + n·(z_j − z_x)``,
  then accept it only if the ray ``z_x − s n`` (s > 0) hits the support
  simplex. Independent of the kernels' Lagrange/Cholesky formulation.
* :func:`local_update_brute` — the defining minimisation
  ``min_{λ∈Δ} Σ λ_j t_j + |x − Σ λ_j x_j|_{D⁻¹}`` by dense sampling of the
  simplex refined with scipy's bounded minimiser.
* :func:`solve_ref` — Jacobi relaxation to convergence: every sweep evaluates
  every element's update of every vertex (all faces of the support simplex)
  from the previous sweep's values and takes the minimum.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import minimize


def _iso(points, D):
    """Coordinates in which the metric D⁻¹ is the identity: z = L⁻¹ x, D = L Lᵀ."""
    L = np.linalg.cholesky(D)
    return np.linalg.solve(L, points.T).T


def local_update_ref(x, xs, ts, D):
    """Minimum local update of a target at ``x`` from support points ``xs`` (k, dim) with times ``ts``.

    Tries the full support and every sub-face (plane-wave fit) and every vertex.
    Returns inf if no candidate is valid.
    """
    xs = np.asarray(xs, float)
    ts = np.asarray(ts, float)
    z = _iso(np.vstack([xs, x[None]]), D)
    zs, zx = z[:-1], z[-1]
    best = np.inf
    k = len(ts)
    for r in range(1, k + 1):
        for S in itertools.combinations(range(k), r):
            S = list(S)
            if r == 1:
                best = min(best, ts[S[0]] + np.linalg.norm(zx - zs[S[0]]))
                continue
            # n = B c with B = [z_j - z_x]; equations Bᵀ n = t - T  ->  (BᵀB) c = t - T 1
            B = (zs[S] - zx).T  # (dim, r)
            G = B.T @ B
            u = np.linalg.solve(G, np.ones(r))
            w = np.linalg.solve(G, ts[S])
            # |n|² = (t - T1)ᵀ G⁻¹ (t - T1) = 1
            qa, qb, qc = u.sum(), w.sum(), ts[S] @ w - 1.0
            disc = qb * qb - qa * qc
            if disc < 0:
                continue
            T = (qb + np.sqrt(disc)) / qa
            c = w - T * u
            n = B @ c
            # ray back from x along -n must hit the support simplex at y = x - s n, s > 0
            # y = Σ λ_j z_j, Σ λ = 1  ->  solve [Zᵀ; 1] [λ; s] for y = z_x - s n
            Z = zs[S].T
            A = np.vstack([np.hstack([Z, n[:, None]]), np.hstack([np.ones(r), [0.0]])])
            rhs = np.concatenate([zx, [1.0]])
            sol, *_ = np.linalg.lstsq(A, rhs, rcond=None)
            lam, s = sol[:r], sol[r]
            # a ray (nearly) parallel to the support gives no intersection: then the
            # fit is not attained on the simplex (T would differ from Σλt + s)
            scale = 1.0 + np.abs(zs).max() + np.abs(zx).max()
            consistent = np.linalg.norm(A @ sol - rhs) <= 1e-9 * scale and abs(
                lam @ ts[S] + s - T
            ) <= 1e-9 * (1.0 + abs(T))
            if np.all(lam >= -1e-12) and s > 0 and consistent:
                best = min(best, T)
    return best


def local_update_brute(x, xs, ts, D, n_grid=60):
    """The defining minimisation over the simplex by sampling + local refinement."""
    xs = np.asarray(xs, float)
    ts = np.asarray(ts, float)
    k = len(ts)
    Minv = np.linalg.inv(D)  # a reference may invert; the library never does

    def f(lam_free):
        lam = np.append(lam_free, 1.0 - lam_free.sum())
        e = x - lam @ xs
        return lam @ ts + np.sqrt(e @ Minv @ e)

    if k == 1:
        return f(np.zeros(0))
    grid = [g for g in itertools.product(np.linspace(0, 1, n_grid + 1), repeat=k - 1) if sum(g) <= 1 + 1e-12]
    vals = [f(np.array(g)) for g in grid]
    g0 = np.array(grid[int(np.argmin(vals))])
    cons = [{"type": "ineq", "fun": lambda l: 1.0 - l.sum()}]
    res = minimize(
        f,
        g0,
        method="SLSQP",
        bounds=[(0, 1)] * (k - 1),
        constraints=cons,
        options={"ftol": 1e-15, "maxiter": 500},
    )
    return min(float(res.fun), float(np.min(vals)))


def solve_ref(points, cells, D, init, max_sweeps=10_000):
    """Jacobi relaxation of the discrete eikonal fixed point.

    Parameters
    ----------
    points : (n, dim); cells : (m, nv); D : (m, dim, dim); init : (n,) initial values (inf = unknown).
    """
    phi = np.array(init, dtype=float)
    nv = cells.shape[1]
    for _ in range(max_sweeps):
        new = phi.copy()
        for e, cell in enumerate(cells):
            for a in range(nv):
                others = [c for c in cell if c != cell[a]]
                fin = [c for c in others if np.isfinite(phi[c])]
                if not fin:
                    continue
                u = local_update_ref(points[cell[a]], points[fin], phi[fin], D[e])
                if u < new[cell[a]]:
                    new[cell[a]] = u
        if np.array_equal(new, phi):
            return phi
        # stop at round-off
        fin = np.isfinite(phi) & np.isfinite(new)
        if np.all(np.isfinite(new) == np.isfinite(phi)) and np.all(
            np.abs(new[fin] - phi[fin]) <= 1e-14 * (1 + np.abs(phi[fin]))
        ):
            return new
        phi = new
    raise RuntimeError("reference relaxation did not converge")
