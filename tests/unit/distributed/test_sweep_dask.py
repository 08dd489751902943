"""run_sweep on Dask: the embedded LocalCluster, a cluster started with Dask's command line
(``dask scheduler`` + two ``dask worker`` processes), faults (a worker or the client killed
mid-sweep), version checks, shared inputs sent once per worker, the Numba cache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import sweep_tasks as T
from dask_cluster import CLICluster, stop, worker_env

import physim.distributed as PD
from physim.distributed import run_sweep, task_key
from physim.errors import ClusterError, InvalidInputError


def _wait_until(cond, timeout=60.0, what="condition"):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of ours counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][0] != "Z"
    except OSError:
        return False


# --------------------------------------------------------------------------- embedded cluster


def test_embedded_cluster_matches_serial_and_sends_shared_once(tmp_path, capsys):
    rows = np.random.default_rng(0).normal(size=(12, 50_000))
    serial = run_sweep(T.row_sum, range(12), scheduler="serial", shared=T.Counted(rows, tmp_path), retries=0)
    assert set(serial.failed) == {7}
    shared = T.Counted(rows, tmp_path)
    res = run_sweep(T.row_sum, range(12), workers=2, shared=shared, retries=0, progress=True)
    assert res.n_workers == 2
    assert res.results == serial.results  # bitwise: same function, same inputs
    assert set(res.failed) == {7}
    assert "row_sum" in res.failed[7] and "ValueError: task 7 raises on purpose" in res.failed[7]
    # the shared input was unpickled once in each worker process that received it, never per task
    loads = T.loads_per_process(tmp_path)
    assert 1 <= len(loads) <= 2 and set(loads.values()) == {1}, loads
    assert os.getpid() not in loads
    assert res.shared_transfer_s > 0
    assert "12/12" in capsys.readouterr().err  # the progress bar


def test_embedded_workers_load_numba_kernels_from_the_disk_cache():
    T.numba_probe(0)  # compiled (or loaded) here: the on-disk cache now holds the kernels
    res = run_sweep(T.numba_probe, range(4), workers=2).check()
    for r in res.results:
        assert r["misses"] == 0 and r["hits"] > 0, r  # loaded, not recompiled
        assert r["tmax"] == res.results[0]["tmax"]
    assert os.getpid() not in {r["pid"] for r in res.results}


# --------------------------------------------------------------------------- command-line cluster


def test_cli_cluster_same_results_as_serial(cli_cluster, monkeypatch):
    from distributed import Client

    serial = run_sweep(T.fail_on_five, range(10), scheduler="serial", retries=0)
    runs = {
        "scheduler file": run_sweep(T.fail_on_five, range(10), scheduler=str(cli_cluster.scheduler_file)),
        "address": run_sweep(T.fail_on_five, range(10), scheduler=cli_cluster.address, workers=2),
    }
    with Client(cli_cluster.address, set_as_default=False) as client:
        runs["client"] = run_sweep(T.fail_on_five, range(10), scheduler=client)
        assert client.status == "running"  # a Client given is used as is, not closed
    monkeypatch.setenv("PHYSIM_SCHEDULER", cli_cluster.address)
    runs["environment"] = run_sweep(T.fail_on_five, range(10))
    for how, res in runs.items():
        assert res.results == serial.results, how
        assert set(res.failed) == {5} and "task 5 is bad on purpose" in res.failed[5], how
        assert res.n_workers == 2, how


def test_cli_cluster_dask_retries(cli_cluster, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ok = run_sweep(
        T.flaky, [{"i": i, "dir": str(tmp_path / "a")} for i in range(4)], scheduler=cli_cluster.address
    )
    assert ok.results == (0, 1, 2, 3) and not ok.failed  # first attempt raised, Dask ran it again
    bad = run_sweep(
        T.flaky,
        [{"i": i, "dir": str(tmp_path / "b")} for i in range(4)],
        scheduler=cli_cluster.address,
        retries=0,
    )
    assert set(bad.failed) == {0, 1, 2, 3} and "transient failure of task 2" in bad.failed[2]


def test_cli_cluster_refuses_another_physim_version(cli_cluster, monkeypatch):
    monkeypatch.setattr(PD, "__version__", "9.9.9")  # this client now claims another version
    with pytest.raises(ClusterError, match=r"2 of 2 Dask worker\(s\) do not run physim 9\.9\.9.*physim 0"):
        run_sweep(T.square, range(4), scheduler=cli_cluster.address)
    # a worker that joins after the first check is refused by the check every task makes
    monkeypatch.setattr(PD, "_check_versions", lambda client: None)
    with pytest.raises(ClusterError, match="client runs physim 9.9.9; install the same physim version"):
        run_sweep(T.square, range(4), scheduler=cli_cluster.address)


def test_unpicklable_task_and_result(cli_cluster):
    lock = threading.Lock()
    with pytest.raises(InvalidInputError, match="task 1 cannot be pickled"):
        run_sweep(T.square, [1, lock], scheduler=cli_cluster.address)
    res = run_sweep(T.lock_for_one, [0, 1, 2], scheduler=cli_cluster.address, retries=0)
    assert res.results == (0, None, 2) and "result of fn (lock) cannot be pickled" in res.failed[1]


def test_unreachable_scheduler(monkeypatch):
    monkeypatch.setattr(PD, "CONNECT_TIMEOUT_S", 1.0)
    with pytest.raises(ClusterError, match="cannot connect to the Dask scheduler at 'tcp://127.0.0.1:9'"):
        run_sweep(T.square, [1], scheduler="tcp://127.0.0.1:9")


def test_scheduler_without_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(PD, "WORKER_TIMEOUT_S", 1.0)
    c = CLICluster(tmp_path, start_workers=False)
    try:
        with pytest.raises(ClusterError, match=r"0 worker\(s\) connected .* 1 needed"):
            run_sweep(T.square, [1], scheduler=str(c.scheduler_file))
    finally:
        c.close()


# --------------------------------------------------------------------------- faults


def test_worker_killed_mid_sweep_every_task_completes_once(tmp_path):
    calls, store = tmp_path / "calls", tmp_path / "store"
    calls.mkdir()
    tasks = [{"i": i, "dir": str(calls), "sleep": 0.4} for i in range(16)]
    c = CLICluster(tmp_path / "cluster", n_workers=2)
    victim = c.workers[1]
    killed = {}

    def kill_when_busy():
        # both workers have run tasks and some results are stored: kill -9 the second worker
        _wait_until(
            lambda: victim.pid in T.call_pids(calls) and len(list(store.glob("*/*.pkl"))) >= 3,
            what="the second worker to be busy",
        )
        killed["calls_before"] = len(T.calls(calls))
        os.kill(victim.pid, signal.SIGKILL)
        killed["at"] = time.monotonic()

    try:
        killer = threading.Thread(target=kill_when_busy, daemon=True)
        killer.start()
        res = run_sweep(T.record, tasks, scheduler=str(c.scheduler_file), store=store)
        killer.join(5)
        assert "at" in killed, "the worker was not killed during the sweep"
        assert victim.wait(10) == -signal.SIGKILL
        assert res.n_done == 16 and not res.failed
        assert [r["square"] for r in res.results] == [i * i for i in range(16)]
        # no task duplicated in the store: one file per task, one index entry per task
        assert sorted(p.name for p in store.glob("*/*.pkl")) == sorted(f"{task_key(t)}.pkl" for t in tasks)
        index = json.loads((store / "index.json").read_text())
        assert sorted(e["index"] for e in index["tasks"]) == list(range(16))
        assert {e["status"] for e in index["tasks"]} == {"done"}
        assert all(T.calls(calls, i) for i in range(16))
        assert c.workers[0].poll() is None  # the other worker carried on
    finally:
        c.close()


_CLIENT_SCRIPT = """
import json, sys
import sweep_tasks as T
from physim.distributed import run_sweep

if __name__ == "__main__":
    calls, store = sys.argv[1], sys.argv[2]
    tasks = [{"i": i, "dir": calls, "sleep": 0.3} for i in range(16)]
    res = run_sweep(T.record, tasks, workers=2, store=store)
    print(json.dumps({"interrupted": res.interrupted, "n_done": res.n_done}), flush=True)
"""


_COMPILE_SCRIPT = """
import json, sys
import numba  # imported by the main module: a spawned worker imports it before its environment is set
import sweep_tasks as T
from physim.distributed import run_sweep

if __name__ == "__main__":
    res = run_sweep(T.compile_parallel, list(range(4)), workers=2)
    print(json.dumps({"results": res.results, "failed": {str(k): str(v) for k, v in res.failed.items()}}))
"""


def test_embedded_workers_compile_new_kernels_when_the_main_module_imported_numba(tmp_path):
    """A spawned worker imports the main module (and Numba, with the parent's 2 threads) before its
    NUMBA_NUM_THREADS=1 is applied; compiling a kernel after the first task started Numba's thread
    pool used to fail every task ("Cannot set NUMBA_NUM_THREADS to a different value")."""
    script = tmp_path / "compile_client.py"
    script.write_text(_COMPILE_SCRIPT)
    env = {**worker_env(), "NUMBA_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300,
                         cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    rep = json.loads(out.stdout.strip().splitlines()[-1])
    assert rep["failed"] == {}, rep["failed"]
    assert [r["sum"] for r in rep["results"]] == [10.0 * i for i in range(4)]
    assert all(r["threads"] == 1 for r in rep["results"])


def _start_client(tmp_path):
    calls, store = tmp_path / "calls", tmp_path / "store"
    calls.mkdir()
    script = tmp_path / "client.py"
    script.write_text(_CLIENT_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(calls), str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=worker_env(),
    )
    return proc, calls, store


def _reap_workers(calls, timeout=30.0):
    """The embedded cluster's worker processes of a killed client exit on their own."""
    pids = T.call_pids(calls)
    t0 = time.monotonic()
    while any(_pid_alive(p) for p in pids) and time.monotonic() - t0 < timeout:
        time.sleep(0.2)
    alive = [p for p in pids if _pid_alive(p)]
    for p in alive:  # started (indirectly) by this test: stop them by pid
        os.kill(p, signal.SIGKILL)
    return alive


def test_client_killed_mid_sweep_rerun_runs_only_missing_tasks(tmp_path, cli_cluster):
    proc, calls, store = _start_client(tmp_path)
    try:
        _wait_until(lambda: len(list(store.glob("*/*.pkl"))) >= 4, timeout=120, what="4 stored results")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    stored = {p.name for p in store.glob("*/*.pkl")}
    assert 4 <= len(stored) < 16, len(stored)
    assert not _reap_workers(calls), "worker processes outlived their killed client"
    before = {p.name for p in T.calls(calls)}
    tasks = [{"i": i, "dir": str(calls), "sleep": 0.3} for i in range(16)]
    res = run_sweep(T.record, tasks, scheduler=cli_cluster.address, store=store)
    new = {p.name for p in T.calls(calls)} - before
    assert res.from_store == len(stored) and res.n_done == 16 and not res.failed
    assert len(new) == 16 - len(stored)  # only the missing tasks ran, each once
    done_before = {i for i, t in enumerate(tasks) if f"{task_key(t)}.pkl" in stored}
    assert {int(n.split("-")[1]) for n in new} == set(range(16)) - done_before
    assert [r["square"] for r in res.results] == [i * i for i in range(16)]


def test_ctrl_c_returns_finished_tasks_and_closes_the_cluster(tmp_path):
    proc, calls, store = _start_client(tmp_path)
    try:
        _wait_until(lambda: len(list(store.glob("*/*.pkl"))) >= 3, timeout=120, what="3 stored results")
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        stop(proc)
    assert proc.returncode == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["interrupted"] is True and 3 <= summary["n_done"] < 16
    assert "sweep interrupted" in err
    assert summary["n_done"] == len(list(store.glob("*/*.pkl")))
    assert not _reap_workers(calls, timeout=20), "the embedded cluster was not closed"
