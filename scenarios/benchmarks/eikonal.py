"""Benchmark: eikonal forward and adjoint vs fim-python at equal threads, with every target of issue 14.

Meshes (``--meshes``, default ``10k,65k,large,cube``; ``--quick``: ``10k,cube``
with a small cube; ``--mesh PATH`` adds any mesh file readable by
:func:`physim.io.read_mesh`, e.g. a user's own heart): the biventricular
hearts with rule-based fibres and a jittered cube with random fibres, at
v_fiber 0.6 / v_cross 0.24 mm/ms, with one source and with five.

Per mesh and source set, in the same run (the machine may be shared, ratios
are what counts):

* physim's forward ``solve`` with 1 thread and with all cores
  (``numba.set_num_threads``; start with ``NUMBA_NUM_THREADS`` pinned), best of
  a few repeats, its 2-thread / 1-thread speed-up and that the multi-threaded
  result equals the 1-thread one;
* fim-python's CPU solver (active list, float64, solver set-up included) in a
  subprocess with ``OMP_NUM_THREADS=1`` and with ``OMP_NUM_THREADS`` = all
  cores (OpenMP threads are fixed when it loads), bounded by ``--fim-timeout``
  seconds; its maximum difference from physim relative to the total time;
* the label-setting floor: scipy's Dijkstra on the mesh's edge graph (graph
  search only, graph built beforehand);
* physim's adjoint and the adjoint / forward ratio;
* at fibre / cross ratios 1, 2, 5, 10, 20 (v_cross 0.1 mm/ms, one source)
  forward and adjoint times and the ratio-10 / ratio-20 time over the ratio-2
  time.

The targets of issue 14 are printed at the end, each MET or NOT MET with the
numbers (``--scale`` adds the 3·10⁶-tet cube with time and peak memory).
Measure on an idle machine through the CPU queue, e.g.
``NUMBA_NUM_THREADS=2 python scenarios/benchmarks/eikonal.py``.
"""

from __future__ import annotations

import functools
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
from pathlib import Path

import numba
import numpy as np

from physim.cardiac.fibers import rule_based
from physim.cardiac.heart import LANDMARKS, load_biventricular
from physim.eikonal import adjoint, box_tet_mesh, conduction_tensor, solve, square_tri_mesh
from physim.scenario import ScenarioContext, best_time, scenario_main

V_FIBER, V_CROSS = 0.6, 0.24
SITES = tuple(point for point, _ in LANDMARKS.values())
SITE_TIMES = np.array([0.0, 2.0, 4.0, 8.0, 5.0])
RATIOS = (1, 2, 5, 10, 20)
V_CROSS_ANISO = 0.1

_best = functools.partial(best_time, repeat=3, budget_s=20.0)

_FIM_WORKER = textwrap.dedent(
    """
    import sys, time, warnings
    import numpy as np
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import fimpy
        d = np.load(sys.argv[1])
        t0 = time.perf_counter()
        solver = fimpy.create_fim_solver(
            d["points"], d["cells"], d["D"], device="cpu", use_active_list=True, precision=np.float64
        )
        phi = solver.comp_fim(d["src"], d["times"])
        t = time.perf_counter() - t0
    np.savez(sys.argv[2], phi=np.asarray(phi), t=t)
    """
)


def _fim_available() -> bool:
    try:
        import importlib.util

        return importlib.util.find_spec("fimpy") is not None
    except Exception:
        return False


def _fim_python(points, cells, D, src, times, threads, timeout):
    """fim-python's CPU solve in a subprocess with OMP_NUM_THREADS pinned: (seconds, phi) or (None, reason)."""
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inp, points=points, cells=cells, D=D, src=np.asarray(src), times=np.asarray(times, float))
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _FIM_WORKER, str(inp), str(out)],
                env=env,
                timeout=timeout,
                capture_output=True,
                text=True,
            )
        except subprocess.TimeoutExpired:
            return None, f"over {timeout:.0f} s"
        if proc.returncode != 0 or not out.exists():
            return (
                None,
                f"failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}",
            )
        d = np.load(out)
        return float(d["t"]), np.array(d["phi"])


def _edges(cells):
    nv = cells.shape[1]
    pairs = [(i, j) for i in range(nv) for j in range(i + 1, nv)]
    e = np.concatenate([cells[:, [i, j]] for i, j in pairs])
    e.sort(axis=1)
    return np.unique(e, axis=0)


def _dijkstra_floor(mesh, src):
    """Time of scipy's Dijkstra (multi-source) on the edge graph, graph built beforehand."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import dijkstra

    e = _edges(mesh.cells)
    w = np.linalg.norm(mesh.points[e[:, 0]] - mesh.points[e[:, 1]], axis=1) / V_FIBER
    n = mesh.n_points
    g = sp.csr_matrix((np.r_[w, w], (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), shape=(n, n))
    t, _ = _best(lambda: dijkstra(g, directed=False, indices=np.asarray(src), min_only=True), repeat=5)
    return t


def _extra_memory_mb(f):
    """(result of f(), peak MB that f allocated through numpy above what was allocated before).

    Measured with tracemalloc (numpy registers its array allocations there); the few small
    arrays that compiled kernels allocate internally are not counted.
    """
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = f()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if started:
            tracemalloc.stop()
    return out, (peak - base) / 2**20


def _with_threads(k, f):
    old = numba.get_num_threads()
    numba.set_num_threads(k)
    try:
        return f()
    finally:
        numba.set_num_threads(old)


def _heart_case(size):
    """(name, mesh, fibres, one-source, five sources) of a biventricular mesh (named size or path)."""
    heart = load_biventricular(size)
    fib = rule_based(heart).fibers
    mesh = heart.tet_mesh()
    endo = heart.lv_endo | heart.rv_endo
    five = np.array([heart.nearest_node(p, endo) for p in SITES])
    return mesh, fib, five[:1], five


def _generic_case(path, seed):
    """Any mesh file: a tagged biventricular mesh gets rule-based fibres, another one random fibres."""
    try:
        return _heart_case(path)
    except Exception:
        from physim.eikonal import from_meshio
        from physim.io import read_mesh

        mesh = from_meshio(read_mesh(path), drop_degenerate=True)
        return _random_case(mesh, seed)


def _random_case(mesh, seed):
    rng = np.random.default_rng(seed)
    fib = rng.standard_normal((mesh.n_cells, mesh.points.shape[1]))
    five = np.sort(rng.choice(mesh.n_points, 5, replace=False))
    one = np.array([int(np.argmin((mesh.points**2).sum(1)))])  # the lower corner
    return mesh, fib, one, five


def _cube(n, seed):
    return _random_case(box_tet_mesh(n, size=40.0 * n / 24, jitter=0.2, seed=seed), seed)


def bench_case(ctx, name, case, n_all, fim_timeout, aniso):
    mesh, fib, one, five = case
    D = conduction_tensor(fib, V_FIBER, V_CROSS)
    rows = []
    for label, src in (("1 source", one), ("5 sources", five)):
        st = SITE_TIMES[: len(src)]
        f = lambda: solve(mesh, D, src, st)  # noqa: E731
        _with_threads(1, f)  # warm-up (compilation is cached on disk)
        t1, act1 = _with_threads(1, lambda: _best(f))
        tn, actn = _with_threads(n_all, lambda: _best(f))
        t2, act2 = (tn, actn) if n_all == 2 else _with_threads(min(2, n_all), lambda: _best(f))
        w = np.random.default_rng(0).standard_normal(mesh.n_points)
        adjoint(actn, w)
        t_adj, grad = _with_threads(n_all, lambda: _best(lambda: adjoint(actn, w)))
        total = act1.total_activation_time
        row = {
            "mesh": name,
            "sources": len(src),
            "n_tets": mesh.n_cells,
            "n_points": mesh.n_points,
            "forward_1thread_s": t1,
            "forward_allcores_s": tn,
            "forward_2threads_s": t2,
            "threads_all": n_all,
            "speedup_2_vs_1_threads": t1 / t2,
            "threaded_max_diff_ms": float(
                max(np.max(np.abs(actn.times - act1.times)), np.max(np.abs(act2.times - act1.times)))
            ),
            "adjoint_s": t_adj,
            "adjoint_over_forward": t_adj / tn,
            "visits_per_node": act1.visits / mesh.n_points,
            "nodes_on_cycles": grad.n_cyclic,
            "total_activation_ms": total,
            "dijkstra_s": _dijkstra_floor(mesh, src),
        }
        row["forward_over_dijkstra"] = tn / row["dijkstra_s"]
        for tag, k in (("1thread", 1), ("allcores", n_all)):
            if fim_timeout > 0 and _fim_available():
                t_fim, phi = _fim_python(mesh.points, mesh.cells, D, src, st, k, fim_timeout)
            else:
                t_fim, phi = None, "not installed" if fim_timeout > 0 else "not run"
            if t_fim is None:
                row[f"fim_python_{tag}"] = phi
                continue
            row[f"fim_python_{tag}_s"] = t_fim
            row[f"speedup_vs_fim_python_{tag}"] = t_fim / (t1 if k == 1 else tn)
            diff = float(np.max(np.abs(phi - act1.times)))
            row["max_abs_diff_fim_python_ms"] = diff
            row["max_rel_diff_fim_python"] = diff / total
        ctx.log(
            f"{name} {label}: {mesh.n_cells} tets  physim 1 thread {t1 * 1e3:.1f} ms, {n_all} threads "
            f"{tn * 1e3:.1f} ms (x{t1 / t2:.2f} with 2), adjoint {t_adj * 1e3:.1f} ms, Dijkstra "
            f"{row['dijkstra_s'] * 1e3:.1f} ms, fim-python 1 thread "
            f"{_fmt_s(row, 'fim_python_1thread')}, {n_all} threads {_fmt_s(row, 'fim_python_allcores')}"
        )
        rows.append(row)
    arows = []
    if aniso:
        src = one
        w = np.random.default_rng(0).standard_normal(mesh.n_points)
        for r in RATIOS:
            Dr = conduction_tensor(fib, V_CROSS_ANISO * r, V_CROSS_ANISO)
            f = lambda: solve(mesh, Dr, src)  # noqa: E731
            t_f, act = _with_threads(n_all, lambda: _best(f))
            t_a, _ = _with_threads(n_all, lambda: _best(lambda: adjoint(act, w)))
            _, mem_a = _with_threads(n_all, lambda: _extra_memory_mb(lambda: adjoint(act, w)))
            _, mem_f = _with_threads(n_all, lambda: _extra_memory_mb(f))
            arows.append(
                {"mesh": name, "ratio": r, "forward_s": t_f, "adjoint_s": t_a, "visits_per_node": act.visits / mesh.n_points,
                 "forward_extra_MB": mem_f, "adjoint_extra_MB": mem_a}
            )  # fmt: skip
            ctx.log(f"{name} ratio {r}: forward {t_f * 1e3:.1f} ms ({mem_f:.0f} MB), adjoint {t_a * 1e3:.1f} ms "
                    f"({mem_a:.0f} MB), visits/node {act.visits / mesh.n_points:.2f}")  # fmt: skip
        t_r2 = next(a["forward_s"] for a in arows if a["ratio"] == 2)
        for a in arows:
            a["forward_over_ratio2"] = a["forward_s"] / t_r2
    return rows, arows


def _fmt_s(row, key):
    if f"{key}_s" in row:
        return f"{row[f'{key}_s']:.2f} s"
    return str(row.get(key, "–"))


def bench_scale(ctx, n_all):
    """The 3·10⁶-tet jittered cube (n = 80: 3 072 000 tets): time and peak memory."""
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    mesh, fib, one, _ = _cube(80, 3)
    D = conduction_tensor(fib, V_FIBER, V_CROSS)
    del fib
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t, act = _with_threads(n_all, lambda: best_time(lambda: solve(mesh, D, one), repeat=2, budget_s=1.0))
    rss2 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del act
    _, extra = _with_threads(n_all, lambda: _extra_memory_mb(lambda: solve(mesh, D, one)))
    mesh_mb = sum(a.nbytes for a in (mesh.points, mesh.cells, D)) / 2**20
    row = {
        "n_tets": mesh.n_cells,
        "n_points": mesh.n_points,
        "forward_s": t,
        "peak_rss_MB": rss2,
        "peak_rss_before_solve_MB": rss1,
        "rss_at_start_MB": rss0,
        "mesh_and_D_MB": mesh_mb,
        "solve_extra_MB": extra,
        "bytes_per_tet_solve": extra * 2**20 / mesh.n_cells,
    }
    ctx.log(
        f"scale: {mesh.n_cells} tets forward {t:.2f} s, peak RSS {rss2:.0f} MB (mesh + D {mesh_mb:.0f} MB; "
        f"the solve allocates {extra:.0f} MB at its peak, {row['bytes_per_tet_solve']:.0f} B/tet)"
    )
    return row


def _target(ctx, out, name, ok, detail):
    if ok is None:
        status = "NOT MEASURED"
    else:
        status = "MET" if ok else "NOT MET"
    out.append({"target": name, "status": status, "detail": detail})
    ctx.log(f"[{status}] {name}: {detail}")


def targets(ctx, rows, arows, scale):
    out = []
    for tag, what in (("1thread", "1 thread vs OMP_NUM_THREADS=1"), ("allcores", "all cores vs all cores")):
        have = [r for r in rows if f"speedup_vs_fim_python_{tag}" in r]
        missing = [f"{r['mesh']}/{r['sources']}" for r in rows if f"speedup_vs_fim_python_{tag}" not in r]
        detail = ", ".join(
            f"{r['mesh']}/{r['sources']}src x{r[f'speedup_vs_fim_python_{tag}']:.0f}" for r in have
        )
        if missing:
            detail += f"; fim-python not measured on {', '.join(missing)}"
        ok = all(r[f"speedup_vs_fim_python_{tag}"] >= 100 for r in have) if have else None
        _target(ctx, out, f">= 100x fim-python, {what}", ok if not missing or ok is False else None, detail)
    big = [r for r in rows if r["mesh"] in ("65k", "large") and r["sources"] == 1]
    _target(
        ctx,
        out,
        "within 8x of the Dijkstra floor (all cores, 65k and large, 1 source)",
        all(r["forward_over_dijkstra"] <= 8 for r in big) if big else None,
        ", ".join(
            f"{r['mesh']} x{r['forward_over_dijkstra']:.1f} ({r['forward_allcores_s'] * 1e3:.1f} vs {r['dijkstra_s'] * 1e3:.1f} ms)"
            for r in big
        ),
    )
    big = [r for r in rows if r["mesh"] in ("65k", "large")]
    _target(
        ctx,
        out,
        "2 threads >= 1.6x faster than 1 (65k and large)",
        all(r["speedup_2_vs_1_threads"] >= 1.6 for r in big) if big else None,
        ", ".join(f"{r['mesh']}/{r['sources']}src x{r['speedup_2_vs_1_threads']:.2f}" for r in big),
    )
    _target(
        ctx,
        out,
        "multi-threaded result = 1-thread result (<= tol 1e-8 ms)",
        all(r["threaded_max_diff_ms"] <= 1e-8 for r in rows),
        f"max diff {max(r['threaded_max_diff_ms'] for r in rows):.1e} ms",
    )
    have = [r for r in rows if "max_rel_diff_fim_python" in r]
    _target(
        ctx,
        out,
        "max difference from fim-python <= 1e-6 of the total time",
        all(r["max_rel_diff_fim_python"] <= 1e-6 for r in have) if have else None,
        ", ".join(f"{r['mesh']}/{r['sources']}src {r['max_rel_diff_fim_python']:.1e}" for r in have),
    )
    _target(
        ctx,
        out,
        "adjoint <= 0.2x forward (all cores)",
        all(r["adjoint_over_forward"] <= 0.2 for r in rows),
        ", ".join(f"{r['mesh']}/{r['sources']}src {r['adjoint_over_forward']:.2f}" for r in rows),
    )
    if arows:
        hi = [a for a in arows if a["ratio"] in (10, 20)]
        _target(
            ctx,
            out,
            "forward at anisotropy 10 and 20 within 5x of ratio 2",
            all(a["forward_over_ratio2"] <= 5 for a in hi),
            ", ".join(f"{a['mesh']} r{a['ratio']} x{a['forward_over_ratio2']:.2f}" for a in hi),
        )
        _target(
            ctx,
            out,
            "adjoint no slower than the forward at every ratio",
            all(a["adjoint_s"] <= a["forward_s"] for a in arows),
            f"max adjoint/forward {max(a['adjoint_s'] / a['forward_s'] for a in arows):.2f}",
        )
        h65 = [a for a in arows if a["mesh"] == "65k"]
        _target(
            ctx,
            out,
            "adjoint memory <= 300 MB extra on the 65k heart at every ratio",
            all(a["adjoint_extra_MB"] <= 300 for a in h65) if h65 else None,
            ", ".join(f"r{a['ratio']} {a['adjoint_extra_MB']:.0f} MB" for a in h65) or "65k not in this run",
        )
    if scale is not None:
        _target(
            ctx,
            out,
            "3e6-tet mesh solves (time, peak memory)",
            True,
            f"{scale['n_tets']} tets {scale['forward_s']:.2f} s, peak RSS {scale['peak_rss_MB']:.0f} MB, "
            f"solve {scale['solve_extra_MB']:.0f} MB ({scale['bytes_per_tet_solve']:.0f} B/tet)",
        )
    else:
        _target(ctx, out, "3e6-tet mesh solves (time, peak memory)", None, "run with --scale")
    return out


def _table(ctx, rows, tag, title):
    k = "1" if tag == "1thread" else str(rows[0]["threads_all"])
    ctx.log(f"{title}")
    ctx.log(
        f"| mesh | tets | sources | physim, {k} thread(s) (ms) | fim-python, OMP_NUM_THREADS={k} (s) | speed-up | Dijkstra (ms) |"
    )
    ctx.log("|---|---|---|---|---|---|---|")
    for r in rows:
        t = r["forward_1thread_s"] if tag == "1thread" else r["forward_allcores_s"]
        if f"fim_python_{tag}_s" in r:
            fim = f"{r[f'fim_python_{tag}_s']:.2f} | x{r[f'speedup_vs_fim_python_{tag}']:.0f}"
        else:
            fim = f"{r.get(f'fim_python_{tag}', '–')} | –"
        ctx.log(
            f"| {r['mesh']} | {r['n_tets']} | {r['sources']} | {t * 1e3:.1f} | {fim} | {r['dijkstra_s'] * 1e3:.1f} |"
        )


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


def add_arguments(parser):
    parser.add_argument(
        "--meshes", default=None, help="comma-separated: 10k, 65k, large, cube (default all four)"
    )
    parser.add_argument(
        "--mesh", action="append", default=[], metavar="PATH", help="also benchmark this mesh file"
    )
    parser.add_argument(
        "--fim-timeout", type=float, default=300.0, help="seconds per fim-python run (0: skip it)"
    )
    parser.add_argument("--no-aniso", action="store_true", help="skip the fibre/cross ratio sweep")
    parser.add_argument(
        "--no-convergence", action="store_true", help="skip the point-source convergence study"
    )
    parser.add_argument("--scale", action="store_true", help="also solve the 3e6-tet cube")


def run(ctx: ScenarioContext) -> dict:
    ex = ctx.extra
    n_all = numba.config.NUMBA_NUM_THREADS
    names = (ex.get("meshes") or ("10k,cube" if ctx.quick else "10k,65k,large,cube")).split(",")
    ctx.log(f"threads: 1 and {n_all} (NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'unset')})")
    rows, arows = [], []
    cases = [(n, None) for n in names if n] + [(p, p) for p in ex.get("mesh", [])]
    for name, path in cases:
        if path is not None:
            case = _generic_case(path, ctx.seed)
            name = Path(path).name
        elif name == "cube":
            case = _cube(8 if ctx.quick else 22, ctx.seed)
        else:
            case = _heart_case(name)
        r, a = bench_case(
            ctx, name, case, n_all, ex.get("fim_timeout", 300.0), not ex.get("no_aniso") and not ctx.quick
        )
        rows += r
        arows += a
    scale = bench_scale(ctx, n_all) if ex.get("scale") else None
    result = {"threads_all": n_all, "meshes": rows, "anisotropy": arows}
    if scale is not None:
        result["scale"] = scale
    _table(ctx, rows, "1thread", "Equal threads: 1 thread")
    _table(ctx, rows, "allcores", f"Equal threads: all cores ({n_all})")
    if arows:
        ctx.log(
            "| mesh | v_fiber / v_cross | forward (ms) | / ratio 2 | adjoint (ms) | visits/node | adjoint memory (MB) |"
        )
        ctx.log("|---|---|---|---|---|---|---|")
        for a in arows:
            ctx.log(
                f"| {a['mesh']} | {a['ratio']} | {a['forward_s'] * 1e3:.1f} | {a['forward_over_ratio2']:.2f} | "
                f"{a['adjoint_s'] * 1e3:.1f} | {a['visits_per_node']:.2f} | {a['adjoint_extra_MB']:.0f} |"
            )
    result["targets"] = targets(ctx, rows, arows, scale)
    if not ex.get("no_convergence"):
        result["convergence"] = convergence(ctx)
    return result


if __name__ == "__main__":
    scenario_main(run, __doc__, add_arguments=add_arguments)
