"""Slow, obvious dense reference implementations of the lattice kernels (tests only)."""

from __future__ import annotations

import numpy as np

from physim.lattice import SpringNetwork, triangular_lattice


def paper_network():
    return triangular_lattice((5, 4, 3, 2), 16e-3, fixed=[0, 4])


def random_network(rng, d, n_side=3):
    """A jittered, rigid lattice in 2D (triangulated) or 3D (cube cells with all diagonals)."""
    if d == 2:
        net = triangular_lattice([n_side + 1] * (n_side + 1), 1.0)
        pts = net.points + 0.1 * rng.standard_normal(net.points.shape)
        return SpringNetwork(pts, net.bonds, np.arange(n_side + 1))
    g = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3).astype(float)
    bonds = [[i, j] for i in range(len(g)) for j in range(i + 1, len(g)) if np.max(np.abs(g[i] - g[j])) == 1]
    pts = g + 0.1 * rng.standard_normal(g.shape)
    return SpringNetwork(pts, bonds, np.flatnonzero(g[:, 2] == 0))


def dense_compatibility(points, bonds):
    """C (m, n*d) built bond by bond with Python loops."""
    n, d = points.shape
    C = np.zeros((len(bonds), n * d))
    for i, (a, b) in enumerate(bonds):
        v = points[b] - points[a]
        nv = v / np.sqrt(sum(x * x for x in v))
        for c in range(d):
            C[i, a * d + c] -= nv[c]
            C[i, b * d + c] += nv[c]
    return C


def dense_stiffness(points, bonds, k, fixed_mask):
    """Free-dof K = C^T diag(k) C (dense) and the free dof list."""
    C = dense_compatibility(points, bonds)
    K = C.T @ np.diag(k) @ C
    free = [i for i in range(points.size) if not fixed_mask.ravel()[i]]
    return K[np.ix_(free, free)], free, C


def dense_linear_solve(points, bonds, k, fixed_mask, forces, rest_length=None):
    """Displacements (n, d) and elongations (m,) by a dense solve."""
    K, free, C = dense_stiffness(points, bonds, k, fixed_mask)
    lg = np.array([np.linalg.norm(points[b] - points[a]) for a, b in bonds])
    l0 = lg if rest_length is None else rest_length
    rhs = forces.ravel()[free] + (C.T @ (k * (l0 - lg)))[free]
    u = np.zeros(points.size)
    u[free] = np.linalg.solve(K, rhs)
    e = C @ u + lg - l0
    return u.reshape(points.shape), e


def nonlinear_residual(points, bonds, k, l0, fixed_mask, forces, u):
    """Free-dof residual of the geometrically exact springs, by loops."""
    n, d = points.shape
    r = -forces.astype(float).copy()
    x = points + u
    for i, (a, b) in enumerate(bonds):
        v = x[b] - x[a]
        ell = np.sqrt(np.dot(v, v))
        t = k[i] * (ell - l0[i])
        r[b] += t * v / ell
        r[a] -= t * v / ell
    return r.ravel()[~fixed_mask.ravel()]


def nonlinear_energy(points, bonds, k, l0, forces, u):
    x = points + u
    ell = np.linalg.norm(x[bonds[:, 1]] - x[bonds[:, 0]], axis=1)
    return 0.5 * np.sum(k * (ell - l0) ** 2) - np.sum(forces * u)
