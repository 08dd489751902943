"""Benchmark: value + gradient of an EKF covariance cost, physim's adjoint vs PyTorch, JAX and finite differences.

Cost J = tr(P_N) of the EKF covariance recursion (unicycle, dt = 0.1 s, three
range + bearing beacons, Joseph update) as a function of the controls
(N, 2), for N = 100, 1000, 10000 (--quick: 100, 1000). Timed, in one run:

* physim forward (``covariance_rollout``) and value + gradient
  (``covariance_rollout`` + ``adjoint``);
* PyTorch autograd (CPU, float64) of the same recursion written step by step
  as a PyTorch user would: eager, and with the step compiled by
  ``torch.compile`` (compile time reported separately) when it works here;
* ``jax.jit(jax.value_and_grad(J))`` of the same recursion with ``lax.scan``
  (x64; compile time reported separately);
* central finite differences over all 2N controls: 4N forward rollouts
  (time = 4N x the forward time; accuracy checked on 20 columns);
* the per-step cost of rollout + adjoint for a unicycle written by a user
  as a compiled model (``CompiledMotionModel``) and as a numpy model, against
  the built-in one (N = 1000).

Threads are pinned equally on every side: OMP_NUM_THREADS, MKL_NUM_THREADS,
OPENBLAS_NUM_THREADS, NUMBA_NUM_THREADS, XLA's intra-op threads
(``XLA_FLAGS``) and ``torch.set_num_threads``. These are read when the
libraries start, so the benchmark runs itself in a fresh process for each
setting: 1 thread and all cores (``--threads T`` runs one setting). Times are
the minimum over repeats; ratios are measured in the same process (the
machine may be shared). Values and gradients of all implementations are
checked against each other. Targets at N = 1000: physim ≥ 30x PyTorch eager
and ≥ 10x jitted JAX, printed as met / not met.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from physim.ekf import (
    Beacons,
    CompiledMotionModel,
    FinalTrace,
    MotionModel,
    Unicycle,
    adjoint,
    covariance_rollout,
)
from physim.scenario import ScenarioContext, best_time, scenario_main

DT = 0.1
BEACONS = np.array([[2.0, 3.0], [5.0, -2.0], [8.0, 1.0]])
P0 = np.diag([1.0, 1.0, 0.1])
M = np.diag([0.05**2, 0.02**2])
Q0 = 1e-6 * np.eye(3)
RANGE_STD, BEARING_STD = 0.1, 0.02
TARGET_TORCH, TARGET_JAX = 30.0, 10.0


def _controls(N):
    k = np.arange(N)
    return np.column_stack([0.05 + 0.01 * np.sin(0.01 * k), 0.01 + 0.005 * np.cos(0.013 * k)])


def _best(f, repeat, budget_s=3.0):
    """Minimum wall time of ``f()`` over up to ``repeat`` calls (stops after ``budget_s``)."""
    return best_time(f, repeat, budget_s)[0]


# ---------------------------------------------------------------------------
# the same recursion in JAX and PyTorch
# ---------------------------------------------------------------------------


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


def _torch_step():
    """One EKF step in PyTorch (float64), written as a PyTorch user would."""
    import torch

    f64 = torch.float64
    B = torch.tensor(BEACONS, dtype=f64)
    Mt, Q0t = torch.tensor(M, dtype=f64), torch.tensor(Q0, dtype=f64)
    nb = B.shape[0]
    Rd = torch.tensor([RANGE_STD**2, BEARING_STD**2] * nb, dtype=f64)
    I3 = torch.eye(3, dtype=f64)
    zeros_col = torch.zeros((nb, 1), dtype=f64)
    ones = torch.ones(nb, dtype=f64)

    def step(x, P, u):
        c, s = torch.cos(x[2]), torch.sin(x[2])
        zero, one = torch.zeros_like(c), torch.ones_like(c)
        F = torch.stack([torch.stack([one, zero, -DT * u[0] * s]), torch.stack([zero, one, DT * u[0] * c]),
                         torch.stack([zero, zero, one])])  # fmt: skip
        G = torch.stack(
            [torch.stack([DT * c, zero]), torch.stack([DT * s, zero]), torch.stack([zero, zero + DT])]
        )
        x = x + DT * torch.stack([u[0] * c, u[0] * s, u[1]])
        Pm = F @ P @ F.T + G @ Mt @ G.T + Q0t
        d = x[:2] - B
        r2 = (d * d).sum(1)
        r = torch.sqrt(r2)
        Hr = torch.cat([d / r[:, None], zeros_col], 1)
        Hb = torch.stack([-d[:, 1] / r2, d[:, 0] / r2, -ones], 1)
        H = torch.stack([Hr, Hb], 1).reshape(2 * nb, 3)
        S = H @ Pm @ H.T + torch.diag(Rd)
        L = torch.linalg.cholesky(S)
        K = torch.cholesky_solve(H @ Pm, L).T
        A = I3 - K @ H
        P = A @ Pm @ A.T + (K * Rd) @ K.T
        return x, 0.5 * (P + P.T)

    return step


def _torch_value_and_grad(step):
    import torch

    P0t = torch.tensor(P0, dtype=torch.float64)

    def run(U):
        Ut = torch.tensor(U, dtype=torch.float64, requires_grad=True)
        x, P = torch.zeros(3, dtype=torch.float64), P0t
        for k in range(Ut.shape[0]):
            x, P = step(x, P, Ut[k])
        v = torch.trace(P)
        v.backward()
        return float(v.detach()), Ut.grad.numpy()

    return run


# ---------------------------------------------------------------------------
# a user-written unicycle: compiled functions, and numpy
# ---------------------------------------------------------------------------


class UserUnicycle(CompiledMotionModel):
    """The unicycle as a user writes it in the compiled form."""

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


class NumpyUnicycle(MotionModel):
    """The unicycle as a user writes it with numpy."""

    n_state = 3
    n_control = 2

    def __init__(self, dt):
        self.dt = dt

    def step(self, x, u):
        return np.array([x[0] + self.dt * u[0] * np.cos(x[2]), x[1] + self.dt * u[0] * np.sin(x[2]),
                         x[2] + self.dt * u[1]])  # fmt: skip

    def jacobians(self, x, u):
        c, s, dt, v = np.cos(x[2]), np.sin(x[2]), self.dt, u[0]
        return (np.array([[1, 0, -dt * v * s], [0, 1, dt * v * c], [0, 0, 1.0]]),
                np.array([[dt * c, 0], [dt * s, 0], [0, dt]]))  # fmt: skip

    def jacobians_vjp(self, x, u, Fb, Gb):
        c, s, dt, v = np.cos(x[2]), np.sin(x[2]), self.dt, u[0]
        xb = np.zeros(3)
        xb[2] = -Fb[0, 2] * dt * v * c - Fb[1, 2] * dt * v * s - Gb[0, 0] * dt * s + Gb[1, 0] * dt * c
        return xb, np.array([-Fb[0, 2] * dt * s + Fb[1, 2] * dt * c, 0.0])


# ---------------------------------------------------------------------------
# one thread setting (a child process)
# ---------------------------------------------------------------------------


def _measure(ctx: ScenarioContext, threads: int) -> dict:
    beacons = Beacons(BEACONS, RANGE_STD, BEARING_STD)
    model = Unicycle(DT)
    x0 = np.zeros(3)
    cost = FinalTrace()
    sizes = [100, 1000] if ctx.quick else [100, 1000, 10000]
    out = {"threads": threads, "env": {k: os.environ.get(k) for k in _PIN_VARS}, "rows": []}
    t0 = time.perf_counter()
    adjoint(covariance_rollout(model, beacons, x0, P0, _controls(5), M, Q0), cost)
    out["physim_first_call_s"] = time.perf_counter() - t0
    jax_vg = _jax_value_and_grad()
    try:
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)
        out["torch_version"] = torch.__version__
        out["torch_threads"] = torch.get_num_threads()
        torch_step = _torch_step()
        torch_eager = _torch_value_and_grad(torch_step)
    except ImportError:
        torch = torch_eager = None
        ctx.log("PyTorch not installed: skipping the PyTorch comparison (pip install torch)")
    torch_compiled, out["torch_compile"] = None, "not run"
    if torch is not None and not ctx.extra.get("no_torch_compile"):
        try:
            t0 = time.perf_counter()
            fn = _torch_value_and_grad(torch.compile(torch_step, dynamic=False))
            fn(_controls(100))  # compiles the forward and backward graphs of one step
            out["torch_compile_s"] = time.perf_counter() - t0
            torch_compiled, out["torch_compile"] = fn, "ok"
        except Exception as exc:  # torch.compile needs a working C++ tool chain; report why it did not run
            out["torch_compile"] = f"failed: {type(exc).__name__}: {str(exc)[:300]}"
    if jax_vg is not None:
        import jax

        out["jax_version"] = jax.__version__
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
        row["fd_ms_estimated"] = 1e3 * t_fd
        row["fd_over_physim"] = t_fd / t_vg
        row["fd_max_rel_diff"] = float(np.max(np.abs(fd - g.reshape(-1)[cols])) / np.max(np.abs(g)))
        for name, fn, reps, budget in (("jax", jax_vg, rep, 3.0), ("torch_eager", torch_eager, 3, 20.0),
                                       ("torch_compile", torch_compiled, 3, 20.0)):  # fmt: skip
            if fn is None:
                continue
            t0 = time.perf_counter()
            vo, go = fn(U)
            first = time.perf_counter() - t0
            row[f"{name}_first_call_s"] = first
            if name == "jax":  # the first call compiles
                t_o = _best(lambda U=U, fn=fn: fn(U), reps, budget)
            else:  # nothing to compile any more: the first call counts, slow ones are not repeated
                t_o = (
                    first if first > budget else min(first, _best(lambda U=U, fn=fn: fn(U), reps - 1, budget))
                )
            row[f"{name}_value_grad_ms"] = 1e3 * t_o
            row[f"{name}_over_physim"] = t_o / t_vg
            row[f"{name}_value_rel_diff"] = abs(vo - v) / abs(v)
            row[f"{name}_grad_max_rel_diff"] = float(np.max(np.abs(go - g)) / np.max(np.abs(g)))
        out["rows"].append(row)
        ctx.log(
            f"threads={threads} N={N}: "
            + ", ".join(f"{k} {v:.3g}" for k, v in row.items() if k.endswith("_ms"))
        )
    # per-step cost of user-written models (rollout + adjoint)
    N = 1000
    U = _controls(N)
    per_step = {}
    for label, m in (("built-in Unicycle", model), ("user CompiledMotionModel", UserUnicycle(dt=DT)),
                     ("user numpy MotionModel", NumpyUnicycle(DT))):  # fmt: skip
        adjoint(covariance_rollout(m, beacons, x0, P0, U[:5], M, Q0), cost)  # compile / warm

        def vg(m=m):
            return adjoint(covariance_rollout(m, beacons, x0, P0, U, M, Q0), cost)

        per_step[label] = 1e6 * _best(vg, 50 if "numpy" not in label else 3, 3.0) / N
    ref = adjoint(covariance_rollout(model, beacons, x0, P0, U, M, Q0), cost)
    mine = adjoint(covariance_rollout(UserUnicycle(dt=DT), beacons, x0, P0, U, M, Q0), cost)
    out["per_step_us"] = per_step
    out["user_compiled_grad_max_rel_diff"] = float(
        np.max(np.abs(mine.controls - ref.controls)) / np.max(np.abs(ref.controls))
    )
    return out


# ---------------------------------------------------------------------------
# the whole benchmark: one child process per thread setting, then the tables
# ---------------------------------------------------------------------------

_PIN_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "XLA_FLAGS")


def _pinned_env(threads: int) -> dict:
    env = dict(os.environ)
    for k in _PIN_VARS[:4]:
        env[k] = str(threads)
    env["XLA_FLAGS"] = (
        f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} intra_op_parallelism_threads={threads}"
    )
    return env


def _table(res: dict) -> str:
    head = ("| N | physim value+grad [ms] | grad/forward | PyTorch eager [ms] | PyTorch eager/physim | "
            "torch.compile [ms] | torch.compile/physim | JAX jit [ms] | JAX/physim | FD/physim |")  # fmt: skip
    lines = [head, "|" + "---|" * 10]

    def cell(r, name):
        if f"{name}_value_grad_ms" not in r:
            return "–", "–"
        return f"{r[f'{name}_value_grad_ms']:.2f}", f"{r[f'{name}_over_physim']:.1f}×"

    for r in res["rows"]:
        te, tc, jx = cell(r, "torch_eager"), cell(r, "torch_compile"), cell(r, "jax")
        lines.append(
            f"| {r['N']} | {r['physim_value_grad_ms']:.2f} | {r['grad_over_forward']:.2f} | {te[0]} | {te[1]} | "
            f"{tc[0]} | {tc[1]} | {jx[0]} | {jx[1]} | {r['fd_over_physim']:.0f}× |"
        )
    return "\n".join(lines)


def run(ctx: ScenarioContext) -> dict:
    threads = ctx.extra.get("threads")
    if threads is not None:
        return _measure(ctx, int(threads))
    settings = sorted({1, os.cpu_count() or 1})
    out = {
        "settings": {},
        "targets": {"torch_eager_over_physim_N1000": TARGET_TORCH, "jax_over_physim_N1000": TARGET_JAX},
    }
    for T in settings:
        sub = ctx.out / f"threads_{T}"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--threads",
            str(T),
            "--out",
            str(sub),
            "--no-plots",
        ]
        if ctx.quick:
            cmd.append("--quick")
        if ctx.extra.get("no_torch_compile"):
            cmd.append("--no-torch-compile")
        ctx.log(f"measuring with {T} thread(s) in a fresh process")
        subprocess.run(cmd, env=_pinned_env(T), check=True)
        out["settings"][str(T)] = json.loads((sub / "results.json").read_text())
    summary = []
    for T, res in out["settings"].items():
        table = _table(res)
        res["table_markdown"] = table
        print(f"\n{T} thread(s) on every side ({res['env']}):\n{table}")
        print(
            f"torch.compile: {res.get('torch_compile')}"
            + (f", compile {res['torch_compile_s']:.0f} s" if "torch_compile_s" in res else "")
        )
        r1000 = next((r for r in res["rows"] if r["N"] == 1000), None)
        for key, target, label in (
            ("torch_eager_over_physim", TARGET_TORCH, "PyTorch eager"),
            ("jax_over_physim", TARGET_JAX, "jitted JAX"),
        ):
            if r1000 is not None and key in r1000:
                met = r1000[key] >= target
                line = f"target at N = 1000, {T} thread(s): physim ≥ {target:g}× {label}: {r1000[key]:.1f}× — {'met' if met else 'NOT met'}"
                print(line)
                summary.append(line)
                res[f"{key}_N1000_met"] = met
        ps = res["per_step_us"]
        base = ps["built-in Unicycle"]
        print(
            "per-step cost of rollout + adjoint, N = 1000: "
            + "; ".join(f"{k} {v:.3f} µs ({v / base:.2f}×)" for k, v in ps.items())
        )
    out["summary"] = summary
    return out


def _add_arguments(p):
    p.add_argument(
        "--threads", type=int, default=None, help="measure one thread setting (default: 1 and all cores)"
    )
    p.add_argument(
        "--no-torch-compile", action="store_true", help="skip torch.compile (its compilation takes minutes)"
    )


if __name__ == "__main__":
    scenario_main(run, __doc__, add_arguments=_add_arguments)
