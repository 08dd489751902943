"""Benchmark: value + gradient of an EKF covariance cost, physim adjoint vs JAX vs finite differences.

Cost J = tr(P_N) of the EKF covariance recursion (unicycle, dt = 0.1 s, three
range + bearing beacons, Joseph update) as a function of the controls
(N, 2), for N = 100, 1000, 10000 (--quick: 100, 1000). Timed:

* physim forward (``covariance_rollout``) and value + gradient
  (``covariance_rollout`` + ``adjoint``), and their ratio;
* ``jax.jit(jax.value_and_grad(J))`` of the same recursion written with
  ``lax.scan`` (when JAX is installed; compile time reported separately; x64);
* central finite differences over all 2N controls: 4N forward rollouts
  (time = 4N x the forward time; accuracy checked on 20 columns).

Times are the minimum over repeats, and ratios are measured in the same run
(the machine may be shared). The JAX and physim values and gradients are
checked against each other.
"""

from __future__ import annotations

import time

import numpy as np

from physim.ekf import Beacons, FinalTrace, Unicycle, adjoint, covariance_rollout
from physim.scenario import ScenarioContext, best_time, scenario_main

DT = 0.1
BEACONS = np.array([[2.0, 3.0], [5.0, -2.0], [8.0, 1.0]])
P0 = np.diag([1.0, 1.0, 0.1])
M = np.diag([0.05**2, 0.02**2])
Q0 = 1e-6 * np.eye(3)
RANGE_STD, BEARING_STD = 0.1, 0.02


def _controls(N):
    k = np.arange(N)
    return np.column_stack([0.05 + 0.01 * np.sin(0.01 * k), 0.01 + 0.005 * np.cos(0.013 * k)])


def _best(f, repeat, budget_s=3.0):
    """Minimum wall time of ``f()`` over up to ``repeat`` calls (stops after ``budget_s``)."""
    return best_time(f, repeat, budget_s)[0]


def _jax_value_and_grad():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    B = jnp.asarray(BEACONS)
    P0j, Mj, Q0j = jnp.asarray(P0), jnp.asarray(M), jnp.asarray(Q0)
    Rd = jnp.tile(jnp.array([RANGE_STD**2, BEARING_STD**2]), B.shape[0])
    nb = B.shape[0]

    def J(U):
        def step(carry, u):
            x, P = carry
            c, s = jnp.cos(x[2]), jnp.sin(x[2])
            F = jnp.array([[1.0, 0.0, -DT * u[0] * s], [0.0, 1.0, DT * u[0] * c], [0.0, 0.0, 1.0]])
            G = jnp.array([[DT * c, 0.0], [DT * s, 0.0], [0.0, DT]])
            x = x + DT * jnp.array([u[0] * c, u[0] * s, u[1]])
            Pm = F @ P @ F.T + G @ Mj @ G.T + Q0j
            d = x[:2] - B
            r2 = jnp.sum(d * d, axis=1)
            r = jnp.sqrt(r2)
            Hr = jnp.concatenate([d / r[:, None], jnp.zeros((nb, 1))], axis=1)
            Hb = jnp.stack([-d[:, 1] / r2, d[:, 0] / r2, -jnp.ones(nb)], axis=1)
            H = jnp.stack([Hr, Hb], axis=1).reshape(2 * nb, 3)
            S = H @ Pm @ H.T + jnp.diag(Rd)
            L = jnp.linalg.cholesky(S)
            K = jax.scipy.linalg.cho_solve((L, True), H @ Pm).T
            A = jnp.eye(3) - K @ H
            P = A @ Pm @ A.T + (K * Rd) @ K.T
            return (x, 0.5 * (P + P.T)), None

        (_, P), _ = jax.lax.scan(step, (jnp.zeros(3), P0j), U)
        return jnp.trace(P)

    vg = jax.jit(jax.value_and_grad(J))

    def run(U):
        v, g = vg(jnp.asarray(U))
        g.block_until_ready()
        return float(v), np.asarray(g)

    return run


def run(ctx: ScenarioContext) -> dict:
    model = Unicycle(DT)
    beacons = Beacons(BEACONS, RANGE_STD, BEARING_STD)
    x0 = np.zeros(3)
    cost = FinalTrace()
    sizes = [100, 1000] if ctx.quick else [100, 1000, 10000]
    jax_vg = _jax_value_and_grad()
    if jax_vg is None:
        ctx.log("JAX not installed: skipping the JAX comparison (pip install jax)")
    # warm the Numba cache / compile once
    t0 = time.perf_counter()
    adjoint(covariance_rollout(model, beacons, x0, P0, _controls(5), M, Q0), cost)
    out = {"physim_first_call_s": time.perf_counter() - t0, "rows": []}
    rows = []
    for N in sizes:
        U = _controls(N)
        rep = 200 if N <= 1000 else 10

        def forward(U=U):
            return covariance_rollout(model, beacons, x0, P0, U, M, Q0)

        def value_and_grad(U=U):
            g = adjoint(forward(U), cost)
            return g.value, g.controls

        t_fwd = _best(forward, rep)
        t_vg = _best(value_and_grad, rep)
        v, g = value_and_grad()
        row = {"N": N, "physim_forward_ms": 1e3 * t_fwd, "physim_value_grad_ms": 1e3 * t_vg,
               "grad_over_forward": t_vg / t_fwd}  # fmt: skip
        # finite differences: 4N forward rollouts, timed as 4N x the forward time;
        # their accuracy is checked on a subset of columns
        n_cols = min(2 * N, 20)
        cols = np.linspace(0, 2 * N - 1, n_cols).astype(int)
        h = 1e-6
        fd = np.empty(n_cols)
        for i, c in enumerate(cols):
            E = np.zeros(2 * N)
            E[c] = h
            E = E.reshape(N, 2)
            fd[i] = (np.trace(forward(U + E).P[-1]) - np.trace(forward(U - E).P[-1])) / (2 * h)
        t_fd = 4 * N * t_fwd
        gf = g.reshape(-1)[cols]
        row["fd_ms_estimated"] = 1e3 * t_fd
        row["fd_over_physim"] = t_fd / t_vg
        row["fd_max_rel_diff"] = float(np.max(np.abs(fd - gf)) / np.max(np.abs(gf)))
        if jax_vg is not None:
            t0 = time.perf_counter()
            vj, gj = jax_vg(U)
            row["jax_first_call_s"] = time.perf_counter() - t0
            t_jax = _best(lambda U=U: jax_vg(U), rep)
            row["jax_value_grad_ms"] = 1e3 * t_jax
            row["jax_over_physim"] = t_jax / t_vg
            row["jax_value_rel_diff"] = abs(vj - v) / abs(v)
            row["jax_grad_max_rel_diff"] = float(np.max(np.abs(gj - g)) / np.max(np.abs(g)))
        rows.append(row)
        ctx.log(
            f"N={N}: physim fwd {1e3 * t_fwd:.2f} ms, value+grad {1e3 * t_vg:.2f} ms "
            f"(x{t_vg / t_fwd:.2f} fwd); FD {1e3 * t_fd:.0f} ms (x{t_fd / t_vg:.0f})"
            + (
                f"; JAX {row['jax_value_grad_ms']:.2f} ms (x{row['jax_over_physim']:.1f}, "
                f"compile {row['jax_first_call_s']:.1f} s, grad diff {row['jax_grad_max_rel_diff']:.1e})"
                if jax_vg is not None
                else ""
            )
        )
    out["rows"] = rows
    header = "| N | physim forward [ms] | physim value+grad [ms] | grad/forward | JAX jit value+grad [ms] | JAX/physim | FD (est.) [ms] | FD/physim |"
    lines = [header, "|" + "---|" * 8]
    for r in rows:
        jx = (
            (f"{r['jax_value_grad_ms']:.2f}", f"{r['jax_over_physim']:.1f}×")
            if "jax_value_grad_ms" in r
            else ("–", "–")
        )
        lines.append(
            f"| {r['N']} | {r['physim_forward_ms']:.2f} | {r['physim_value_grad_ms']:.2f} | "
            f"{r['grad_over_forward']:.2f} | {jx[0]} | {jx[1]} | {r['fd_ms_estimated']:.0f} | {r['fd_over_physim']:.0f}× |"
        )
    table = "\n".join(lines)
    print(table)
    out["table_markdown"] = table
    return out


if __name__ == "__main__":
    scenario_main(run, __doc__)
