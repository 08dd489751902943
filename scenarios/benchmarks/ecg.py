"""Benchmark: 12-lead pseudo-ECG (500 samples) and its gradient on the biventricular meshes, and a full twin fit.

For the 10k, 65k and large (~450k tets) biventricular meshes (--quick: 10k
only) with rule-based fibres and an activation map from five endocardial
sites, times (minimum over repeats):

* lead-field precomputation (weights per node and electrode; once per mesh);
* ECG forward (9 electrodes, 12 leads, 500 samples at 1 ms, QRS + T);
* ECG gradient w.r.t. activation times, and w.r.t. times + conductivities;
* a dense reference: the same ECG as ``W^T V(t)`` with V evaluated at every
  node and sample (numpy), giving the speed-up of the windowed kernel;
* the eikonal forward solve and adjoint on the same mesh, for scale.

Then one full ECG fit (``twin_ecg_fit``: velocities + 120 candidate sites on
the 65k mesh; --quick: 10k mesh, 40 sites, 30 iterations) is timed.
Ratios are measured in the same run (the machine may be shared).
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

import numpy as np

from physim.cardiac import ecg as E
from physim.cardiac.fibers import rule_based
from physim.cardiac.heart import LANDMARKS, load_biventricular
from physim.eikonal import adjoint as eik_adjoint
from physim.eikonal import conduction_tensor, solve
from physim.scenario import ScenarioContext, best_time, scenario_main

N_SAMPLES, DT = 500, 1.0
SITES = tuple(point for point, _ in LANDMARKS.values())


_best = functools.partial(best_time, repeat=5, budget_s=4.0)


def _ramp(u):
    out = (u >= 1.0).astype(float)
    inside = np.abs(u) < 1.0
    ui = u[inside]
    with np.errstate(over="ignore"):
        out[inside] = 1.0 / (1.0 + np.exp(-2.0 * ui / (1.0 - ui * ui)))
    return out


def dense_ecg(lf, phi, ap, chunk=50):
    """Reference: V_m at every node and sample, then a dense product (numpy)."""
    amp = ap.amplitude
    apd = ap.apd_array(phi.shape[0])
    fin = np.isfinite(phi)
    out = np.zeros((lf.weights.shape[1], N_SAMPLES))
    for j0 in range(0, N_SAMPLES, chunk):
        t = DT * np.arange(j0, min(j0 + chunk, N_SAMPLES))
        u = (t[None, :] - phi[fin, None]) / (0.5 * ap.upstroke_ms)
        V = _ramp(u)
        if ap.repolarization:
            V -= _ramp((t[None, :] - phi[fin, None] - apd[fin, None]) / (0.5 * ap.repolarization_ms))
        out[:, j0 : j0 + t.size] = amp * (lf.weights[fin].T @ V)
    return lf.leads.matrix @ out


def bench_mesh(ctx, size):
    heart = load_biventricular(size)
    fib = rule_based(heart).fibers
    mesh = heart.tet_mesh()
    endo = heart.lv_endo | heart.rv_endo
    src = np.array([heart.nearest_node(p, endo) for p in SITES])
    D = conduction_tensor(fib, 0.6, 0.3)
    t_solve, act = _best(lambda: solve(mesh, D, src, np.array([0.0, 2.0, 4.0, 8.0, 5.0])), repeat=3)
    t_eik_adj, _ = _best(lambda: eik_adjoint(act, np.ones(heart.n_points)), repeat=3)
    system = E.standard_12_lead(heart)
    G = E.intracellular_conductivity(fib)
    E.lead_field(heart, system, G)  # compile
    t_lf, lf = _best(lambda: E.lead_field(heart, system, G), repeat=3)
    ap = E.ActionPotential(apd_ms=270.0 - 30.0 * np.clip(heart.transmural, 0, 1))
    phi = act.times
    sim = lambda: E.simulate_ecg(lf, phi, model=ap, n_samples=N_SAMPLES, dt=DT)  # noqa: E731
    sim()
    t_fwd, ecg = _best(sim)
    lam = np.random.default_rng(0).standard_normal(ecg.signals.shape)
    E.adjoint(ecg, lam, conductivity=True)
    t_adj, _ = _best(lambda: E.adjoint(ecg, lam))
    t_adj_G, _ = _best(lambda: E.adjoint(ecg, lam, conductivity=True))
    t_dense, ref = _best(lambda: dense_ecg(lf, phi, ap), repeat=2)
    err = float(np.abs(ref - ecg.signals).max() / np.abs(ref).max())
    row = {
        "mesh": size,
        "n_tets": heart.n_tets,
        "n_points": heart.n_points,
        "lead_field_s": t_lf,
        "ecg_forward_s": t_fwd,
        "ecg_grad_times_s": t_adj,
        "ecg_grad_times_conductivity_s": t_adj_G,
        "ecg_plus_grad_s": t_fwd + t_adj,
        "dense_reference_s": t_dense,
        "speedup_vs_dense": t_dense / t_fwd,
        "dense_rel_diff": err,
        "eikonal_solve_s": t_solve,
        "eikonal_adjoint_s": t_eik_adj,
        "ecg_plus_grad_over_eikonal_solve": (t_fwd + t_adj) / t_solve,
    }
    ctx.log(
        f"{size}: {heart.n_tets} tets  ECG {t_fwd * 1e3:.1f} ms  grad {t_adj * 1e3:.1f} ms "
        f"(+G {t_adj_G * 1e3:.1f} ms)  lead field {t_lf:.2f} s  dense {t_dense:.2f} s "
        f"(x{t_dense / t_fwd:.0f})  eikonal {t_solve:.2f} s + adj {t_eik_adj:.2f} s"
    )
    return row


def bench_fit(ctx):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import twin_ecg_fit

    sub = ScenarioContext(
        name="twin_ecg_fit", quick=ctx.quick, out=ctx.out / "twin_ecg_fit", plots=False, seed=ctx.seed
    )
    sub.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    res = twin_ecg_fit.run(sub)
    wall = time.perf_counter() - t0
    keys = (
        "mesh",
        "n_tets",
        "n_candidate_sites",
        "iterations",
        "evaluations",
        "fit_time_s",
        "activation_error_mean_ms",
        "activation_error_max_ms",
        "ecg_correlation_min",
    )
    out = {k: res[k] for k in keys}
    out["wall_time_s"] = wall
    out["fit_time_per_evaluation_s"] = res["fit_time_s"] / max(res["evaluations"], 1)
    return out


def run(ctx: ScenarioContext) -> dict:
    sizes = ["10k"] if ctx.quick else ["10k", "65k", "large"]
    rows = [bench_mesh(ctx, s) for s in sizes]
    fit = bench_fit(ctx)
    ctx.log(f"full fit: {fit}")
    lines = [
        "| mesh | tets | ECG (ms) | grad times (ms) | ECG + grad (ms) | + grad G (ms) | lead field (s) "
        "| dense ref (s) | speed-up | eikonal solve (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mesh']} | {r['n_tets']} | {r['ecg_forward_s'] * 1e3:.1f} | {r['ecg_grad_times_s'] * 1e3:.1f} "
            f"| {r['ecg_plus_grad_s'] * 1e3:.1f} | {r['ecg_grad_times_conductivity_s'] * 1e3:.1f} "
            f"| {r['lead_field_s']:.2f} | {r['dense_reference_s']:.2f} | {r['speedup_vs_dense']:.0f}x "
            f"| {r['eikonal_solve_s']:.2f} |"
        )
    table = "\n".join(lines)
    print(table)
    return {"meshes": rows, "fit": fit, "table_markdown": table, "n_samples": N_SAMPLES, "n_leads": 12}


if __name__ == "__main__":
    scenario_main(run, __doc__)
