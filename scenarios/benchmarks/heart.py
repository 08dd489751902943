"""Benchmark: biventricular mesh generation and rule-based fibres at each size.

For the 10k, 65k and large (≥ 400k tets) meshes (--quick: 10k and 65k) prints
points, tets, the minimum tet quality 6√2·V / l_rms³ (1 for a regular
tetrahedron), the time of ``biventricular_mesh(size)`` and of
``rule_based(mesh)`` (Laplace coordinates + fibres). Times are one run each
on whatever machine runs it; the table is written to results.json.
"""

from __future__ import annotations

import time

import numpy as np

from physim.cardiac.fibers import rule_based
from physim.cardiac.heart import biventricular_mesh, tet_volumes
from physim.scenario import ScenarioContext, scenario_main


def min_quality(points: np.ndarray, tets: np.ndarray) -> float:
    p = points[tets]
    edges = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    l2 = sum(np.sum((p[:, i] - p[:, j]) ** 2, axis=1) for i, j in edges) / 6.0
    q = 6.0 * np.sqrt(2.0) * tet_volumes(points, tets) / l2**1.5
    return float(q.min())


def run(ctx: ScenarioContext) -> dict:
    sizes = ["10k", "65k"] if ctx.quick else ["10k", "65k", "large"]
    rows = []
    print(
        f"{'size':>6} {'points':>8} {'tets':>8} {'min quality':>12} {'generate [s]':>13} {'fibres [s]':>11}"
    )
    for size in sizes:
        t0 = time.perf_counter()
        heart = biventricular_mesh(size)
        t_gen = time.perf_counter() - t0
        t0 = time.perf_counter()
        rule_based(heart)
        t_fib = time.perf_counter() - t0
        q = min_quality(heart.points, heart.tets)
        rows.append(
            {
                "size": size,
                "points": heart.n_points,
                "tets": heart.n_tets,
                "min_quality": q,
                "generate_s": t_gen,
                "fibres_s": t_fib,
            }
        )
        print(
            f"{size:>6} {heart.n_points:>8} {heart.n_tets:>8} {q:>12.3f} {t_gen:>13.2f} {t_fib:>11.2f}",
            flush=True,
        )
    if ctx.plots:
        from physim import viz

        viz.plot_curves(
            {
                "generate": ([r["tets"] for r in rows], [r["generate_s"] for r in rows]),
                "fibres": ([r["tets"] for r in rows], [r["fibres_s"] for r in rows]),
            },
            ctx.path("heart_timing.png"),
            xlabel="tets",
            ylabel="time [s]",
            logy=True,
        )
    return {"rows": rows}


if __name__ == "__main__":
    scenario_main(run, __doc__)
