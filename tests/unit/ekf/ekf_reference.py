"""Slow, obvious numpy reference of the EKF covariance recursion (complex-step capable).

Written independently of the kernels: plain formulas, standard-form update
P = P⁻ - K S Kᵀ with K from ``np.linalg.solve``, no symmetrisation tricks
beyond a final average. Every operation accepts complex inputs (transposes,
not conjugates), so ``Im J(θ + i h e) / h`` gives exact directional derivatives.
"""

import numpy as np

UNICYCLE, BICYCLE = 0, 1


def step(kind, dt, L, x, u):
    """f(x, u), F, G for the built-in models."""
    c, s = np.cos(x[2]), np.sin(x[2])
    v, w = u[0], u[1]
    if kind == UNICYCLE:
        dth = dt * w
        g2 = [0.0 * v, dt + 0.0 * v]
    else:
        dth = dt * v * np.tan(w) / L
        g2 = [dt * np.tan(w) / L, dt * v / (L * np.cos(w) ** 2)]
    xn = np.array([x[0] + dt * v * c, x[1] + dt * v * s, x[2] + dth])
    F = np.array([[1, 0, -dt * v * s], [0, 1, dt * v * c], [0, 0, 1]], dtype=xn.dtype)
    G = np.array([[dt * c, 0 * c], [dt * s, 0 * s], g2], dtype=xn.dtype)
    return xn, F, G


def meas(x, B, range_std, bearing_std, slope):
    """h(x) (unwrapped bearings), H, Rd for range/bearing beacons."""
    z, H, Rd = [], [], []
    for b in B:
        dx, dy = b[0] - x[0], b[1] - x[1]
        r2 = dx * dx + dy * dy
        r = np.sqrt(r2)
        if range_std is not None:
            z.append(r)
            H.append([-dx / r, -dy / r, 0 * r])
            Rd.append((range_std + slope * r) ** 2)
        if bearing_std is not None:
            z.append(np.arctan2(np.real(dy), np.real(dx)) - x[2])
            H.append([dy / r2, -dx / r2, -1 + 0 * r])
            Rd.append(bearing_std**2 + 0 * r)
    return np.array(z), np.array(H), np.array(Rd)


def rollout(kind, dt, L, x0, P0, U, M, Q0, B, range_std, bearing_std=None, slope=0.0):
    """Nominal states and posterior covariances (list of (n, n)), standard-form update."""
    x = np.asarray(x0)
    P = np.asarray(P0)
    Ps, Xs = [P], [x]
    for u in U:
        x, F, G = step(kind, dt, L, x, u)
        Pm = F @ P @ F.T + G @ M @ G.T + Q0
        _, H, Rd = meas(x, B, range_std, bearing_std, slope)
        S = H @ Pm @ H.T + np.diag(Rd)
        K = np.linalg.solve(S, H @ Pm).T
        P = Pm - K @ S @ K.T
        P = 0.5 * (P + P.T)
        Ps.append(P)
        Xs.append(x)
    return np.array(Xs), np.array(Ps)


def kalman_filter(A, B, C, Q, R, x0, P0, U, Z):
    """Textbook linear Kalman filter x⁺ = A x + B u + w, z = C x + v."""
    x, P = x0.copy(), P0.copy()
    xs, Ps = [x], [P]
    for u, z in zip(U, Z):
        x = A @ x + B @ u
        P = A @ P @ A.T + Q
        S = C @ P @ C.T + R
        K = np.linalg.solve(S, C @ P).T
        x = x + K @ (z - C @ x)
        P = (np.eye(len(x)) - K @ C) @ P
        xs.append(x)
        Ps.append(0.5 * (P + P.T))
    return np.array(xs), np.array(Ps)


def random_spd(rng, n, scale):
    A = rng.standard_normal((n, n))
    return scale * (A @ A.T / n + 0.5 * np.eye(n))


def random_problem(rng, kind=UNICYCLE, N=6, n_beacons=3, range_std=0.2, bearing_std=0.05, slope=0.05):
    """A small random instance with beacons away from the trajectory."""
    dt, L = 0.3, 0.8
    x0 = np.array([0.1 * rng.standard_normal(), 0.1 * rng.standard_normal(), rng.uniform(-0.5, 0.5)])
    U = np.column_stack([rng.uniform(0.5, 1.5, N), rng.uniform(-0.4, 0.4, N)])
    X, _ = rollout(kind, dt, L, x0, np.eye(3), U, np.eye(2), np.eye(3), np.array([[100.0, 100.0]]), 1.0)
    B = []
    while len(B) < n_beacons:
        b = rng.uniform([-2.0, -3.0], [2.0 + 1.5 * N * dt, 3.0])
        if np.min(np.linalg.norm(X[:, :2] - b, axis=1)) > 0.7:
            B.append(b)
    return dict(
        kind=kind, dt=dt, L=L, x0=x0, P0=random_spd(rng, 3, 0.3), U=U,
        M=random_spd(rng, 2, 0.02), Q0=random_spd(rng, 3, 1e-3), B=np.array(B),
        range_std=range_std, bearing_std=bearing_std, slope=slope,
    )  # fmt: skip


def library_objects(p):
    """(model, beacons) of the library for a problem dict."""
    from physim.ekf import Beacons, Bicycle, Unicycle

    model = Unicycle(p["dt"]) if p["kind"] == UNICYCLE else Bicycle(p["dt"], p["L"])
    rs = p["range_std"]
    beacons = Beacons(p["B"], rs, p["bearing_std"], range_slope=p["slope"] if rs is not None else 0.0)
    return model, beacons
