"""Benchmark: eikonal forward solve and adjoint on the biventricular meshes, vs fim-python.

On the 10k, 65k and large (≥ 400k tets) biventricular meshes (--quick: 10k
only) with rule-based fibres (v_fiber 0.6, v_cross 0.24 mm/ms) and five
endocardial initiation sites, times (best of a few repeats):

* physim forward solve (``solve``, default tol and tol=1e-6 ms) and adjoint (``adjoint``), their ratio,
  active-list visits per node, nodes on non-causal cycles;
* the scaling exponent of both with mesh size (log-log slope);
* fim-python's CPU solver (active list, float64) on the same inputs when it is
  installed, with its maximum difference from physim — only on meshes up to
  ``PHYSIM_BENCH_FIM_MAX_TETS`` tets (default 20 000, because fim-python's
  CPU solver needs minutes there; --quick: a 1.3k-tet box); on larger meshes
  the speed-up is bounded from below by fim-python's time on the largest mesh
  it was run on;
* the convergence order of a point source with and without the exact
  initialisation radius (2D and 3D box meshes, anisotropic D).

Ratios are measured in the same run (the machine may be shared).
"""

from __future__ import annotations

import functools
import os
import time
import warnings

import numpy as np

from physim.cardiac.fibers import rule_based
from physim.cardiac.heart import LANDMARKS, load_biventricular
from physim.eikonal import adjoint, box_tet_mesh, conduction_tensor, solve, square_tri_mesh
from physim.scenario import ScenarioContext, best_time, scenario_main

V_FIBER, V_CROSS = 0.6, 0.24
SITES = tuple(point for point, _ in LANDMARKS.values())
SITE_TIMES = np.array([0.0, 2.0, 4.0, 8.0, 5.0])


_best = functools.partial(best_time, repeat=3, budget_s=20.0)


def _fim_python(points, cells, D, src, times):
    try:
        import fimpy
    except ImportError:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        solver = fimpy.create_fim_solver(
            points, cells, D, device="cpu", use_active_list=True, precision=np.float64
        )
        phi = solver.comp_fim(src, times)
        return time.perf_counter() - t0, np.asarray(phi)


def bench_heart(ctx, size, fim_max_tets):
    t0 = time.perf_counter()
    heart = load_biventricular(size)
    fib = rule_based(heart).fibers
    mesh = heart.tet_mesh()
    t_setup = time.perf_counter() - t0
    endo = heart.lv_endo | heart.rv_endo
    src = np.array([heart.nearest_node(p, endo) for p in SITES])
    D = conduction_tensor(fib, V_FIBER, V_CROSS)
    solve(mesh, D, src, SITE_TIMES)  # warm-up (compilation is cached on disk)
    t_fwd, act = _best(lambda: solve(mesh, D, src, SITE_TIMES))
    t_fast, act_fast = _best(lambda: solve(mesh, D, src, SITE_TIMES, tol=1e-6))
    w = np.random.default_rng(0).standard_normal(mesh.n_points)
    adjoint(act, w)
    t_adj, grad = _best(lambda: adjoint(act, w))
    row = {
        "mesh": size,
        "n_tets": mesh.n_cells,
        "n_points": mesh.n_points,
        "setup_s": t_setup,
        "forward_s": t_fwd,
        "adjoint_s": t_adj,
        "adjoint_over_forward": t_adj / t_fwd,
        "forward_tol1e-6_s": t_fast,
        "tol1e-6_max_change_ms": float(np.max(np.abs(act_fast.times - act.times))),
        "visits_per_node": act.visits / mesh.n_points,
        "nodes_on_cycles": grad.n_cyclic,
        "total_activation_ms": act.total_activation_time,
    }
    if mesh.n_cells <= fim_max_tets:
        t_fim, phi = _fim_python(mesh.points, mesh.cells, D, src, SITE_TIMES)
        if t_fim is not None:
            row.update(
                fim_python_s=t_fim,
                speedup_vs_fim_python=t_fim / t_fwd,
                max_abs_diff_fim_python_ms=float(np.max(np.abs(phi - act.times))),
            )
    msg = (
        f"{size}: {mesh.n_cells} tets  forward {t_fwd:.3f} s  adjoint {t_adj:.3f} s "
        f"(x{t_adj / t_fwd:.2f})  visits/node {row['visits_per_node']:.2f}"
    )
    if "fim_python_s" in row:
        msg += (
            f"  fim-python {row['fim_python_s']:.1f} s (physim x{row['speedup_vs_fim_python']:.0f} faster, "
            f"max diff {row['max_abs_diff_fim_python_ms']:.1e} ms)"
        )
    ctx.log(msg)
    return row


def bench_box_vs_fim(ctx):
    """--quick comparison with fim-python on a small box mesh with random fibres."""
    mesh = box_tet_mesh(6, size=20.0, jitter=0.2, seed=1)
    rng = np.random.default_rng(ctx.seed)
    D = conduction_tensor(rng.standard_normal((mesh.n_cells, 3)), V_FIBER, V_CROSS)
    src = np.array([0, mesh.n_points // 2])
    st = np.array([0.0, 3.0])
    solve(mesh, D, src, st)
    t_fwd, act = _best(lambda: solve(mesh, D, src, st), repeat=5)
    t_fim, phi = _fim_python(mesh.points, mesh.cells, D, src, st)
    row = {"mesh": "box6", "n_tets": mesh.n_cells, "forward_s": t_fwd}
    if t_fim is None:
        ctx.log("fim-python not installed: no comparison")
        return row
    row.update(
        fim_python_s=t_fim,
        speedup_vs_fim_python=t_fim / t_fwd,
        max_abs_diff_fim_python_ms=float(np.max(np.abs(phi - act.times))),
    )
    ctx.log(
        f"box {mesh.n_cells} tets: physim {t_fwd * 1e3:.2f} ms, fim-python {t_fim:.2f} s "
        f"(x{t_fim / t_fwd:.0f}), max diff {row['max_abs_diff_fim_python_ms']:.1e} ms"
    )
    return row


def convergence(ctx):
    """Max error of a node point source against sqrt(xᵀD⁻¹x), with and without init_radius."""
    th = 0.5
    R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    cases = {
        "2d": (
            R @ np.diag([1.0, 0.16]) @ R.T,
            [16, 32, 64] if ctx.quick else [16, 32, 64, 128, 256],
            lambda n: square_tri_mesh(n, 2.0, origin=-1.0),
            0.4,
        ),
        "3d": (
            np.diag([1.0, 0.3, 0.5]),
            [6, 12] if ctx.quick else [6, 12, 24],
            lambda n: box_tet_mesh(n, 2.0, origin=-1.0),
            0.4,
        ),
    }
    out = {}
    for name, (D, ns, make, radius) in cases.items():
        res = {}
        for r in (0.0, radius):
            errs, hs = [], []
            for n in ns:
                mesh = make(n)
                c = int(np.argmin((mesh.points**2).sum(1)))
                act = solve(mesh, D, [c], init_radius=r)
                x = mesh.points
                exact = np.sqrt(np.einsum("ij,ij->i", x, np.linalg.solve(D, x.T).T))
                errs.append(float(np.max(np.abs(act.times - exact))))
                hs.append(2.0 / n)
            errs = np.array(errs)
            orders = np.log(errs[:-1] / errs[1:]) / np.log(np.array(hs[:-1]) / np.array(hs[1:]))
            res[f"radius_{r}"] = {"h": hs, "max_error": errs.tolist(), "orders": orders.tolist()}
            ctx.log(
                f"point source {name} init_radius={r}: max errors {np.array2string(errs, precision=4)}, "
                f"orders {np.array2string(orders, precision=2)}"
            )
        out[name] = res
    return out


def _slope(rows, key):
    if len(rows) < 2:
        return None
    n = np.array([r["n_tets"] for r in rows], float)
    t = np.array([r[key] for r in rows], float)
    return float(np.polyfit(np.log(n), np.log(t), 1)[0])


def run(ctx: ScenarioContext) -> dict:
    fim_max = int(os.environ.get("PHYSIM_BENCH_FIM_MAX_TETS", "20000"))
    sizes = ["10k"] if ctx.quick else ["10k", "65k", "large"]
    rows = [bench_heart(ctx, s, 0 if ctx.quick else fim_max) for s in sizes]
    box = bench_box_vs_fim(ctx) if ctx.quick else None
    result = {
        "meshes": rows,
        "forward_scaling_exponent": _slope(rows, "forward_s"),
        "adjoint_scaling_exponent": _slope(rows, "adjoint_s"),
        "convergence": convergence(ctx),
    }
    if box is not None:
        result["box_vs_fim_python"] = box
    fim_rows = [r for r in rows if "fim_python_s" in r]
    if fim_rows:
        if len(fim_rows) > 1:
            result["fim_python_scaling_exponent"] = _slope(fim_rows, "fim_python_s")
        # fim-python is not run on the largest meshes (minutes to hours there); its time on a
        # larger mesh is at least its time on the largest one it ran on: a lower bound
        big = max(fim_rows, key=lambda r: r["n_tets"])
        for r in rows:
            if "fim_python_s" not in r and r["n_tets"] > big["n_tets"]:
                r["speedup_vs_fim_python_lower_bound"] = big["fim_python_s"] / r["forward_s"]
    ctx.log(
        "| mesh | tets | forward (s) | forward, tol=1e-6 (s) | adjoint (s) | adjoint/forward "
        "| fim-python (s) | speed-up vs fim-python | max diff (ms) |"
    )
    ctx.log("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "fim_python_s" in r:
            fim = (
                f"{r['fim_python_s']:.1f} | x{r['speedup_vs_fim_python']:.0f} | "
                f"{r['max_abs_diff_fim_python_ms']:.1e}"
            )
        elif "speedup_vs_fim_python_lower_bound" in r:
            fim = f"not run | >= x{r['speedup_vs_fim_python_lower_bound']:.0f} (bound) | –"
        else:
            fim = "– | – | –"
        ctx.log(
            f"| {r['mesh']} | {r['n_tets']} | {r['forward_s']:.3f} | {r['forward_tol1e-6_s']:.3f} | "
            f"{r['adjoint_s']:.3f} | {r['adjoint_over_forward']:.2f} | {fim} |"
        )
    if result["forward_scaling_exponent"] is not None:
        ctx.log(
            f"scaling exponents (time ~ n_tets^k): forward {result['forward_scaling_exponent']:.2f}, "
            f"adjoint {result['adjoint_scaling_exponent']:.2f}"
        )
    if ctx.plots and len(rows) > 1:
        from physim.viz import figure, save_figure

        fig, ax = figure()
        n = [r["n_tets"] for r in rows]
        ax.loglog(n, [r["forward_s"] for r in rows], "o-", label="physim forward")
        ax.loglog(n, [r["adjoint_s"] for r in rows], "s-", label="physim adjoint")
        if fim_rows:
            ax.loglog(
                [r["n_tets"] for r in fim_rows],
                [r["fim_python_s"] for r in fim_rows],
                "^-",
                label="fim-python (CPU)",
            )
        ax.set_xlabel("tetrahedra")
        ax.set_ylabel("time (s)")
        ax.set_title("eikonal solve on biventricular meshes")
        ax.legend()
        save_figure(fig, ctx.path("eikonal_scaling.png"))
    return result


if __name__ == "__main__":
    scenario_main(run, __doc__)
