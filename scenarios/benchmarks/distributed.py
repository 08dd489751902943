"""Benchmark: run_sweep on Dask vs a serial loop -- speed-up, overhead per task, shipping a lead field.

Work: 16 short digital-twin fits on the 10k heart (a multi-start: velocities
and 40 candidate site times from 16 random starts, 30 L-BFGS iterations on the
ECG correlation loss each; --quick: 4 fits of 5 iterations), the model, lead
field and target ECG sent once per worker (``shared=``). Measured in one run:

* the serial loop in this process, with Numba's default threads and with one
  thread;
* ``run_sweep`` on a running ``LocalCluster`` of 1 and of 2 worker processes
  (one thread each, kernels already loaded: what a long-lived cluster sees),
  and end to end with the embedded cluster (start-up and shut-down included);
* the overhead per task: a sweep of trivial tasks (``fn(x) = x``) on the
  running 2-worker cluster, without and with a store;
* the time to send the 65k heart's lead field (and the whole twin model) to a
  worker, against shipping it inside every task.

Prints the speed-ups with 2 workers against the serial loop (target >= 1.8x
on 2 cores), the overhead per task (target <= 50 ms) and the transfer times.
"""

from __future__ import annotations

import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

# this script is named like the Dask package it measures: keep its own directory off the
# import path, or `import distributed` would find the script
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from physim.scenario import ScenarioContext, scenario_main  # noqa: E402

N_CANDIDATES = 40
SPEEDUP_TARGET, OVERHEAD_TARGET_MS = 1.8, 50.0


def twin_setup(size):
    """Model, lead field and a target ECG on the ``size`` heart (five endocardial sites firing)."""
    from physim.cardiac import (
        CandidateSites,
        GlobalVelocities,
        TwinModel,
        intracellular_conductivity,
        lead_field,
        load_biventricular,
        rule_based,
        simulate_ecg,
        standard_12_lead,
    )
    from physim.cardiac.heart import LANDMARKS

    heart = load_biventricular(size)
    fibers = rule_based(heart).fibers
    endo = np.nonzero((heart.lv_endo | heart.rv_endo) & ~heart.base)[0]
    truth = [heart.nearest_node(*LANDMARKS[name]) for name in LANDMARKS]
    cand = np.unique(np.r_[endo[:: max(1, endo.size // N_CANDIDATES)][: N_CANDIDATES - len(truth)], truth])
    model = TwinModel(heart, fibers, GlobalVelocities(heart.n_tets), CandidateSites(cand, -10.0, 150.0))
    leads = lead_field(heart, standard_12_lead(heart), intracellular_conductivity(fibers))
    x_true = np.r_[0.6, 0.3, np.full(cand.size, 150.0)]
    x_true[2 + np.searchsorted(cand, truth)] = [0.0, 2.0, 4.0, 8.0, 5.0]
    target = simulate_ecg(leads, model.forward(x_true).times).signals
    return {"model": model, "lead_field": leads, "target": target}


def fit(task, shared):
    """One twin fit from the random start ``task['seed']`` (L-BFGS, ``task['maxiter']`` iterations)."""
    import numba

    from physim.cardiac import ecg_objective
    from physim.optim import minimize, transformed

    if task.get("numba_threads"):
        numba.set_num_threads(task["numba_threads"])
    model = shared["model"]
    rng = np.random.default_rng(task["seed"])
    vf = rng.uniform(0.3, 1.2)
    x0 = np.r_[vf, vf * rng.uniform(0.3, 0.8), rng.uniform(0.0, 60.0, model.n_params - 2)]
    t = model.transform()
    fun = transformed(ecg_objective(model, shared["lead_field"], shared["target"]), t)
    res = minimize(fun, t.inverse(x0), method="lbfgs", maxiter=task["maxiter"], tol=1e-14)
    return {"loss": float(res.fun), "nit": int(res.nit), "nfev": int(res.nfev), "x": t.forward(res.x)}


def identity(x):
    return x


def lead_field_rows(task, lf):
    return int(lf.weights.shape[0])


def model_rows(task, shared):
    return int(shared["model"].mesh.n_points)


def _numba_threads():
    import numba

    return numba.get_num_threads()


def local_cluster(n):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        dashboard_address="127.0.0.1:0",
        env={"NUMBA_NUM_THREADS": "1"},
    )
    return cluster, Client(cluster, set_as_default=False)


def _same(a, b):
    return all(np.array_equal(r["x"], s["x"]) and r["loss"] == s["loss"] for r, s in zip(a, b))


def run(ctx: ScenarioContext) -> dict:
    import numba

    from physim.distributed import run_sweep

    n_tasks, maxiter = (4, 5) if ctx.quick else (16, 30)
    cores = len(os.sched_getaffinity(0))
    shared = twin_setup("10k")
    tasks = [{"seed": s, "maxiter": maxiter} for s in range(n_tasks)]
    one_thread = [{**t, "numba_threads": 1} for t in tasks]
    fit({"seed": 99, "maxiter": 2}, shared)  # kernels loaded in this process

    t0 = time.perf_counter()
    serial = [fit(t, shared) for t in tasks]
    t_serial = time.perf_counter() - t0
    threads = numba.get_num_threads()
    t0 = time.perf_counter()
    serial_1 = [fit(t, shared) for t in one_thread]
    t_serial_1 = time.perf_counter() - t0
    numba.set_num_threads(threads)
    same_threads = _same(serial, serial_1)
    ctx.log(f"serial loop: {t_serial:.2f} s ({threads} Numba threads), {t_serial_1:.2f} s (1 thread)")

    rows, walls, same = [], {}, {}
    overhead = {}
    for n in (1, 2):
        cluster, client = local_cluster(n)
        try:
            worker_threads = set(client.run(_numba_threads).values())
            client.run(fit, {"seed": 99, "maxiter": 2}, shared)  # each worker loads the kernels once
            res = run_sweep(fit, one_thread, scheduler=client, shared=shared).check()
            walls[n] = res.wall_time_s
            same[n] = _same(res.results, serial_1)
            rows.append((n, res.wall_time_s, res.shared_transfer_s, float(np.nansum(res.task_time_s))))
            ctx.log(
                f"{n} worker(s) (Numba threads per worker process: {sorted(worker_threads)}): "
                f"{res.wall_time_s:.2f} s, results identical to the serial loop: {same[n]}"
            )
            if n == 2:
                n_trivial = 40 if ctx.quick else 400
                for label, store in (("no store", None), ("store", tempfile.mkdtemp(prefix="physim-bench-"))):
                    triv = run_sweep(identity, list(range(n_trivial)), scheduler=client, store=store).check()
                    overhead[label] = triv.wall_time_s / n_trivial
                    ctx.log(
                        f"{n_trivial} trivial tasks ({label}): {triv.wall_time_s:.2f} s, "
                        f"{1e3 * overhead[label]:.2f} ms per task"
                    )
        finally:
            client.close()
            cluster.close()

    t0 = time.perf_counter()
    emb = run_sweep(fit, tasks, workers=2, shared=shared).check()
    t_embedded = time.perf_counter() - t0
    same["embedded"] = _same(emb.results, serial_1)
    t0 = time.perf_counter()
    run_sweep(identity, [0, 1], workers=2).check()
    t_startup = time.perf_counter() - t0
    ctx.log(
        f"embedded 2-worker cluster end to end: {t_embedded:.2f} s (start + close of a cluster: {t_startup:.2f} s)"
    )

    # shipping the 65k heart's lead field (and the twin model) to a worker
    big = twin_setup("65k")
    lf = big["lead_field"]
    lf_mb = len(pickle.dumps(lf, protocol=5)) / 2**20
    model_mb = len(pickle.dumps(big, protocol=5)) / 2**20
    t0 = time.perf_counter()
    pickle.loads(pickle.dumps(big, protocol=5))
    t_roundtrip = time.perf_counter() - t0
    cluster, client = local_cluster(1)
    try:
        ship_lf = min(
            run_sweep(lead_field_rows, [0], scheduler=client, shared=lf).shared_transfer_s for _ in range(3)
        )
        ship_all = min(
            run_sweep(model_rows, [0], scheduler=client, shared=big).shared_transfer_s for _ in range(3)
        )
        k = 8 if ctx.quick else 16
        per_task = run_sweep(
            _rows_in_task, [{"i": i, "lf": lf} for i in range(k)], scheduler=client
        ).wall_time_s
        once = run_sweep(lead_field_rows, list(range(k)), scheduler=client, shared=lf).wall_time_s
    finally:
        client.close()
        cluster.close()
    ctx.log(
        f"65k lead field ({lf_mb:.1f} MiB): sent to a worker in {1e3 * ship_lf:.0f} ms; model + lead field + "
        f"target ({model_mb:.1f} MiB) in {1e3 * ship_all:.0f} ms (pickle + unpickle here: {1e3 * t_roundtrip:.0f} ms); "
        f"{k} tasks carrying the lead field each: {per_task:.2f} s vs sent once: {once:.2f} s"
    )

    speedup = t_serial / walls[2]
    speedup_1 = t_serial_1 / walls[2]
    per_task_ms = 1e3 * overhead["no store"]
    print()
    print(
        f"| run ({n_tasks} twin fits, 10k heart, {maxiter} L-BFGS iterations) | wall [s] | speed-up vs serial loop |"
    )
    print("|---|---:|---:|")
    print(f"| serial loop, {threads} Numba threads | {t_serial:.2f} | 1.00 |")
    print(f"| serial loop, 1 Numba thread | {t_serial_1:.2f} | {t_serial / t_serial_1:.2f} |")
    for n, wall, _, _ in rows:
        print(
            f"| run_sweep, running cluster, {n} worker(s) | {wall:.2f} | {t_serial / wall:.2f} "
            f"({t_serial_1 / wall:.2f} vs 1 thread) |"
        )
    print(
        f"| run_sweep, embedded 2-worker cluster end to end | {t_embedded:.2f} | {t_serial / t_embedded:.2f} |"
    )
    print()
    ok_speed = speedup >= SPEEDUP_TARGET
    ok_overhead = per_task_ms <= OVERHEAD_TARGET_MS
    print(
        f"speed-up with 2 workers on {cores} cores: {speedup:.2f}x vs the serial loop ({speedup_1:.2f}x vs 1 thread); "
        f"target >= {SPEEDUP_TARGET}x: {'met' if ok_speed else 'NOT met'}"
    )
    print(
        f"overhead per task: {per_task_ms:.2f} ms ({1e3 * overhead['store']:.2f} ms with a store); "
        f"target <= {OVERHEAD_TARGET_MS:.0f} ms: {'met' if ok_overhead else 'NOT met'}"
    )
    print(f"65k lead field to a worker: {1e3 * ship_lf:.0f} ms ({lf_mb:.1f} MiB)")
    print(
        f"results identical to the serial loop (1 thread): {same}; serial loop {threads} vs 1 thread: {same_threads}"
    )
    return {
        "n_tasks": n_tasks,
        "maxiter": maxiter,
        "cores": cores,
        "numba_threads_serial": threads,
        "serial_loop_s": t_serial,
        "serial_loop_1_thread_s": t_serial_1,
        "sweep_1_worker_s": walls[1],
        "sweep_2_workers_s": walls[2],
        "embedded_2_workers_end_to_end_s": t_embedded,
        "embedded_cluster_start_and_close_s": t_startup,
        "speedup_2_workers": speedup,
        "speedup_2_workers_vs_1_thread": speedup_1,
        "speedup_target": SPEEDUP_TARGET,
        "speedup_target_met": ok_speed,
        "overhead_per_task_ms": per_task_ms,
        "overhead_per_task_with_store_ms": 1e3 * overhead["store"],
        "overhead_target_ms": OVERHEAD_TARGET_MS,
        "overhead_target_met": ok_overhead,
        "lead_field_65k_mib": lf_mb,
        "lead_field_65k_transfer_s": ship_lf,
        "twin_model_65k_mib": model_mb,
        "twin_model_65k_transfer_s": ship_all,
        "lead_field_in_every_task_s": per_task,
        "lead_field_sent_once_s": once,
        "identical_to_serial": same,
        "serial_identical_across_thread_counts": same_threads,
    }


def _rows_in_task(task):
    return int(task["lf"].weights.shape[0])


if __name__ == "__main__":
    scenario_main(run, __doc__)
