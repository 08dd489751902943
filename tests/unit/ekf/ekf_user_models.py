"""User-written models in the compiled form, shared by the tests (each class compiles once per session)."""

import math

import numpy as np

from physim.ekf import CompiledMeasurementModel, CompiledMotionModel


class CUnicycle(CompiledMotionModel):
    """The built-in unicycle, written by a user as compiled functions."""

    n_state = 3
    n_control = 2
    param_names = ("dt",)

    @staticmethod
    def f(x, u, p, x_next, F, G):
        dt = p[0]
        c, s = math.cos(x[2]), math.sin(x[2])
        x_next[0] = x[0] + dt * u[0] * c
        x_next[1] = x[1] + dt * u[0] * s
        x_next[2] = x[2] + dt * u[1]
        F[0, 0] = F[1, 1] = F[2, 2] = 1.0
        F[0, 2] = -dt * u[0] * s
        F[1, 2] = dt * u[0] * c
        G[0, 0] = dt * c
        G[1, 0] = dt * s
        G[2, 1] = dt

    @staticmethod
    def f_vjp(x, u, p, lam, F_bar, G_bar, x_bar, u_bar, p_bar):
        dt, v = p[0], u[0]
        c, s = math.cos(x[2]), math.sin(x[2])
        x_bar[2] = (
            -F_bar[0, 2] * dt * v * c - F_bar[1, 2] * dt * v * s - G_bar[0, 0] * dt * s + G_bar[1, 0] * dt * c
        )
        u_bar[0] = -F_bar[0, 2] * dt * s + F_bar[1, 2] * dt * c
        p_bar[0] = (
            lam[0] * v * c + lam[1] * v * s + lam[2] * u[1]
            - F_bar[0, 2] * v * s + F_bar[1, 2] * v * c + G_bar[0, 0] * c + G_bar[1, 0] * s + G_bar[2, 1]
        )  # fmt: skip


class CDrag(CompiledMotionModel):
    """A 4-state unicycle with speed as a state and drag: (x, y, θ, v), controls (a, ω).

    x⁺ = x + dt v cos θ, y⁺ = y + dt v sin θ, θ⁺ = θ + dt ω, v⁺ = v + dt (a - c v|v|).
    Exercises the generic (non-3x2) kernels and two parameters.
    """

    n_state = 4
    n_control = 2
    param_names = ("dt", "drag")

    @staticmethod
    def f(x, u, p, x_next, F, G):
        dt, cd = p[0], p[1]
        c, s, v = math.cos(x[2]), math.sin(x[2]), x[3]
        x_next[0] = x[0] + dt * v * c
        x_next[1] = x[1] + dt * v * s
        x_next[2] = x[2] + dt * u[1]
        x_next[3] = v + dt * (u[0] - cd * v * abs(v))
        F[0, 0] = F[1, 1] = F[2, 2] = 1.0
        F[0, 2] = -dt * v * s
        F[1, 2] = dt * v * c
        F[0, 3] = dt * c
        F[1, 3] = dt * s
        F[3, 3] = 1.0 - 2.0 * dt * cd * abs(v)
        G[2, 1] = dt
        G[3, 0] = dt

    @staticmethod
    def f_vjp(x, u, p, lam, F_bar, G_bar, x_bar, u_bar, p_bar):
        dt, cd = p[0], p[1]
        c, s, v = math.cos(x[2]), math.sin(x[2]), x[3]
        sg = 1.0 if v >= 0 else -1.0
        x_bar[2] = (
            -F_bar[0, 2] * dt * v * c - F_bar[1, 2] * dt * v * s - F_bar[0, 3] * dt * s + F_bar[1, 3] * dt * c
        )
        x_bar[3] = -F_bar[0, 2] * dt * s + F_bar[1, 2] * dt * c - F_bar[3, 3] * 2.0 * dt * cd * sg
        p_bar[0] = (
            lam[0] * v * c + lam[1] * v * s + lam[2] * u[1] + lam[3] * (u[0] - cd * v * abs(v))
            - F_bar[0, 2] * v * s + F_bar[1, 2] * v * c + F_bar[0, 3] * c + F_bar[1, 3] * s
            - F_bar[3, 3] * 2.0 * cd * abs(v) + G_bar[2, 1] + G_bar[3, 0]
        )  # fmt: skip
        p_bar[1] = -lam[3] * dt * v * abs(v) - F_bar[3, 3] * 2.0 * dt * abs(v)


class CRangeBeacons(CompiledMeasurementModel):
    """Range-only beacons with σ = σ₀ + α r, beacon positions as an array parameter."""

    param_names = ("positions", "std", "slope")
    min_state = 2

    @property
    def n_meas(self):
        return self.positions.shape[0]

    @staticmethod
    def h(x, q, z):
        for j in range((q.shape[0] - 2) // 2):
            dx, dy = q[2 * j] - x[0], q[2 * j + 1] - x[1]
            z[j] = math.sqrt(dx * dx + dy * dy)

    @staticmethod
    def jac(x, q, H, Rd):
        nb = (q.shape[0] - 2) // 2
        s0, a = q[2 * nb], q[2 * nb + 1]
        for j in range(nb):
            sx, sy = x[0] - q[2 * j], x[1] - q[2 * j + 1]
            r = math.sqrt(sx * sx + sy * sy)
            H[j, 0] = sx / r
            H[j, 1] = sy / r
            Rd[j] = (s0 + a * r) ** 2

    @staticmethod
    def jac_vjp(x, q, H_bar, R_bar, x_bar, q_bar):
        nb = (q.shape[0] - 2) // 2
        s0, a = q[2 * nb], q[2 * nb + 1]
        for j in range(nb):
            sx, sy = x[0] - q[2 * j], x[1] - q[2 * j + 1]
            r = math.sqrt(sx * sx + sy * sy)
            ex, ey = sx / r, sy / r
            proj = H_bar[j, 0] * ex + H_bar[j, 1] * ey
            sd = s0 + a * r
            gx = (H_bar[j, 0] - proj * ex) / r + R_bar[j] * 2.0 * sd * a * ex
            gy = (H_bar[j, 1] - proj * ey) / r + R_bar[j] * 2.0 * sd * a * ey
            x_bar[0] += gx
            x_bar[1] += gy
            q_bar[2 * j] -= gx
            q_bar[2 * j + 1] -= gy
            q_bar[2 * nb] += R_bar[j] * 2.0 * sd
            q_bar[2 * nb + 1] += R_bar[j] * 2.0 * sd * r


def beacons_pair(rng, n=3):
    """(CRangeBeacons, equivalent built-in Beacons) with random positions."""
    from physim.ekf import Beacons

    B = rng.uniform([-1.0, -3.0], [6.0, 3.0], (n, 2))
    return CRangeBeacons(positions=B, std=0.1, slope=0.03), Beacons(B, range_std=0.1, range_slope=0.03)


def straight_controls(N, v=0.8, w=0.1):
    return np.column_stack([np.full(N, v), np.full(N, w)])
