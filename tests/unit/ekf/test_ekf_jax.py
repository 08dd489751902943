"""Cross-check of the EKF adjoint against JAX reverse-mode AD (skipped without JAX)."""

import numpy as np
import pytest
from ekf_reference import BICYCLE, UNICYCLE, library_objects, random_problem

from physim.ekf import FinalLogDet, adjoint, covariance_rollout

jax = pytest.importorskip("jax")


def _jax_cost(p):
    """log det P_N of the same recursion written in jax.numpy (independent of the kernels)."""
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    dt, L, kind = p["dt"], p["L"], p["kind"]

    def J(U, B, x0):
        def step(carry, u):
            x, P = carry
            c, s = jnp.cos(x[2]), jnp.sin(x[2])
            dth = dt * u[1] if kind == UNICYCLE else dt * u[0] * jnp.tan(u[1]) / L
            g2 = (
                jnp.array([0.0, dt])
                if kind == UNICYCLE
                else jnp.array([dt * jnp.tan(u[1]) / L, dt * u[0] / (L * jnp.cos(u[1]) ** 2)])
            )
            F = jnp.array([[1.0, 0.0, -dt * u[0] * s], [0.0, 1.0, dt * u[0] * c], [0.0, 0.0, 1.0]])
            G = jnp.stack([jnp.array([dt * c, 0.0]), jnp.array([dt * s, 0.0]), g2])
            x = x + jnp.array([dt * u[0] * c, dt * u[0] * s, dth])
            Pm = F @ P @ F.T + G @ p["M"] @ G.T + p["Q0"]
            d = x[:2] - B
            r2 = jnp.sum(d * d, axis=1)
            r = jnp.sqrt(r2)
            Hr = jnp.concatenate([d / r[:, None], jnp.zeros((B.shape[0], 1))], axis=1)
            Hb = jnp.stack([-d[:, 1] / r2, d[:, 0] / r2, -jnp.ones(B.shape[0])], axis=1)
            H = jnp.stack([Hr, Hb], axis=1).reshape(-1, 3)
            Rd = jnp.stack(
                [(p["range_std"] + p["slope"] * r) ** 2, jnp.full(r.shape, p["bearing_std"] ** 2)], 1
            )
            Rd = Rd.reshape(-1)
            S = H @ Pm @ H.T + jnp.diag(Rd)
            K = jnp.linalg.solve(S, H @ Pm).T
            P = Pm - K @ S @ K.T
            return (x, 0.5 * (P + P.T)), None

        (_, P), _ = jax.lax.scan(step, (x0, jnp.asarray(p["P0"])), U)
        return jnp.linalg.slogdet(P)[1]

    return jax.jit(jax.grad(J, argnums=(0, 1, 2)))


@pytest.mark.parametrize("kind", [UNICYCLE, BICYCLE])
def test_adjoint_matches_jax(kind):
    p = random_problem(np.random.default_rng(30 + kind), kind=kind, N=6)
    model, beacons = library_objects(p)
    g = adjoint(covariance_rollout(model, beacons, p["x0"], p["P0"], p["U"], p["M"], p["Q0"]), FinalLogDet())
    gU, gB, gx = (np.asarray(a) for a in _jax_cost(p)(p["U"], p["B"], p["x0"]))
    for ours, theirs in ((g.controls, gU), (g.beacons, gB), (g.x0, gx)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-10 * np.abs(theirs).max())
