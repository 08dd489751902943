"""run_sweep without Dask ("serial"): results, failures, retries, the store, resume, task keys."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import sweep_tasks as T

from physim.distributed import SweepResult, run_sweep, task_key
from physim.errors import ClusterError, InvalidInputError, InvalidTypeError

# --------------------------------------------------------------------------- task keys


@dataclass
class _Params:
    lr: float
    seed: int


def test_task_key_content_not_identity():
    a = {"seed": 3, "lr": 0.1, "grid": [1, 2.5, "x"], "arr": np.arange(6.0).reshape(2, 3)}
    b = {"arr": np.arange(6.0).reshape(2, 3), "grid": [1, 2.5, "x"], "lr": 0.1, "seed": 3}
    assert task_key(a) == task_key(b)  # insertion order does not matter
    assert len(task_key(a)) == 32 and int(task_key(a), 16) >= 0
    variants = [
        {**a, "seed": 4},
        {**a, "lr": float(np.nextafter(0.1, 1.0))},  # one ulp away
        {**a, "grid": [1, 2.5, "y"]},
        {**a, "grid": (1, 2.5, "x")},  # tuple vs list
        {**a, "arr": np.arange(6.0).reshape(3, 2)},  # shape
        {**a, "arr": np.arange(6).reshape(2, 3)},  # dtype
        {**a, "seed": 3.0},  # int vs float
        {**a, "seed": True},
    ]
    keys = {task_key(v) for v in variants}
    assert len(keys) == len(variants) and task_key(a) not in keys
    assert task_key(np.int64(3)) == task_key(3) and task_key(np.float64(0.5)) == task_key(0.5)
    assert task_key(_Params(0.1, 2)) == task_key(_Params(0.1, 2)) != task_key(_Params(0.1, 3))
    assert task_key({1, 2, 3}) == task_key({3, 2, 1})
    assert task_key(None) != task_key(0) != task_key("0") != task_key(b"0")


def test_task_key_same_in_another_process():
    task = {"v_f": 0.6, "v_c": 0.3, "sites": np.array([3, 17, 40]), "name": "grid"}
    code = (
        "import numpy as np; from physim.distributed import task_key; "
        "print(task_key({'name': 'grid', 'sites': np.array([3, 17, 40]), 'v_c': 0.3, 'v_f': 0.6}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == task_key(task)


# --------------------------------------------------------------------------- serial runs


def test_serial_results_in_task_order():
    res = run_sweep(T.square, [3, 1, 2, 5], scheduler="serial")
    assert isinstance(res, SweepResult)
    assert res.results == (9, 1, 4, 25)
    assert res.n_done == 4 and res.failed == {} and res.n_workers == 1 and res.from_store == 0
    assert res.complete and res.missing == () and res.status == ("done",) * 4
    assert res.task_time_s.shape == (4,) and np.all(res.task_time_s >= 0)
    assert not res.task_time_s.flags.writeable
    assert res.check() is res
    assert "4/4 done" in repr(res) and len(repr(res)) < 200


def test_serial_failure_has_traceback_others_complete():
    res = run_sweep(T.fail_on_five, range(8), scheduler="serial", retries=0)
    assert set(res.failed) == {5}
    text = res.failed[5]
    assert "Traceback (most recent call last)" in text and "fail_on_five" in text
    assert "ValueError: task 5 is bad on purpose" in text
    assert res.results == tuple(None if i == 5 else i * i for i in range(8))
    assert res.n_done == 7 and not res.complete and res.status[5] == "failed"
    with pytest.raises(RuntimeError, match="1 of 8 sweep tasks failed.*task 5"):
        res.check()


def test_serial_retries_rerun_a_failed_task(tmp_path):
    tasks = [{"i": i, "dir": str(tmp_path)} for i in range(3)]
    res = run_sweep(T.flaky, tasks, scheduler="serial", retries=1)
    assert res.results == (0, 1, 2) and not res.failed
    (tmp_path / "b").mkdir()
    tasks = [{"i": i, "dir": str(tmp_path / "b")} for i in range(3)]
    res = run_sweep(T.flaky, tasks, scheduler="serial", retries=0)
    assert set(res.failed) == {0, 1, 2} and "transient failure" in res.failed[1]


def test_serial_interrupt_returns_finished_tasks(tmp_path):
    with pytest.warns(UserWarning, match="interrupted: 3 of 6 tasks finished"):
        res = run_sweep(T.interrupt_at, range(6), scheduler="serial", store=tmp_path / "s")
    assert res.interrupted and res.results[:3] == (0, 10, 20) and res.n_done == 3
    assert res.missing == (3, 4, 5) and not res.failed
    assert len(list((tmp_path / "s").glob("*/*.pkl"))) == 3
    with pytest.raises(RuntimeError, match="interrupted: 3 of 6"):
        res.check()


def test_empty_sweep():
    res = run_sweep(T.square, [], scheduler="serial")
    assert res.results == () and res.n_done == 0 and res.complete and res.n_workers == 0


# --------------------------------------------------------------------------- store


def test_store_resume_runs_only_missing_tasks(tmp_path):
    store = tmp_path / "store"
    calls = tmp_path / "calls"
    calls.mkdir()
    tasks = [{"i": i, "dir": str(calls)} for i in range(10)]
    first = run_sweep(T.record, tasks[:6], scheduler="serial", store=store)
    assert first.n_done == 6 and len(T.calls(calls)) == 6
    # the full list: only the 4 new tasks run, the 6 others come from the store
    again = run_sweep(T.record, tasks, scheduler="serial", store=store)
    assert again.from_store == 6 and again.n_done == 10 and len(T.calls(calls)) == 10
    assert [r["square"] for r in again.results] == [i * i for i in range(10)]
    assert np.isnan(again.task_time_s[:6]).all() and np.isfinite(again.task_time_s[6:]).all()
    # a third call runs nothing
    third = run_sweep(T.record, tasks, scheduler="serial", store=store)
    assert third.from_store == 10 and len(T.calls(calls)) == 10 and third.n_workers == 0
    # one file per task named by its key, plus the index
    files = sorted(p.name for p in store.glob("*/*.pkl"))
    assert files == sorted(f"{task_key(t)}.pkl" for t in tasks)
    index = json.loads((store / "index.json").read_text())
    assert index["function"] == "record" and index["n_tasks"] == 10
    assert [e["index"] for e in index["tasks"]] == list(range(10))
    assert {e["status"] for e in index["tasks"]} == {"done"} and index["counts"]["done"] == 10
    assert [e["key"] for e in index["tasks"]] == [task_key(t) for t in tasks]
    with open(store / task_key(tasks[4])[:2] / f"{task_key(tasks[4])}.pkl", "rb") as fh:
        payload = pickle.load(fh)
    assert payload["key"] == task_key(tasks[4]) and pickle.loads(payload["result"]) == {"i": 4, "square": 16}
    assert not list(store.rglob(".*.tmp"))


def test_store_failed_task_runs_again(tmp_path):
    store = tmp_path / "s"
    tasks = [{"i": i, "dir": str(tmp_path)} for i in range(3)]
    first = run_sweep(T.flaky, tasks, scheduler="serial", retries=0, store=store)
    assert set(first.failed) == {0, 1, 2} and len(list(store.glob("*/*.failed.txt"))) == 3
    assert (
        "transient failure"
        in (store / task_key(tasks[0])[:2] / f"{task_key(tasks[0])}.failed.txt").read_text()
    )
    second = run_sweep(T.flaky, tasks, scheduler="serial", retries=0, store=store)
    assert second.results == (0, 1, 2) and second.from_store == 0
    assert not list(store.glob("*/*.failed.txt"))


def test_store_unreadable_entry_runs_again(tmp_path):
    store = tmp_path / "s"
    run_sweep(T.square, [1, 2], scheduler="serial", store=store)
    (store / task_key(2)[:2] / f"{task_key(2)}.pkl").write_bytes(b"not a pickle")
    with pytest.warns(UserWarning, match="cannot be read"):
        res = run_sweep(T.square, [1, 2], scheduler="serial", store=store)
    assert res.results == (1, 4) and res.from_store == 1


def test_store_of_another_function_is_refused(tmp_path):
    run_sweep(T.square, [1, 2], scheduler="serial", store=tmp_path / "s")
    with pytest.raises(InvalidInputError, match="holds results of function 'square', not 'fail_on_five'"):
        run_sweep(T.fail_on_five, [1, 2], scheduler="serial", store=tmp_path / "s")


def test_unpicklable_result_with_store_fails_that_task(tmp_path):
    import threading

    def lock_or_value(x):
        return threading.Lock() if x == 1 else x

    res = run_sweep(lock_or_value, [0, 1, 2], scheduler="serial", store=tmp_path / "s")
    assert res.results == (0, None, 2) and "cannot be pickled" in res.failed[1]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"fn": 3}, InvalidTypeError, "fn must be callable"),
        ({"tasks": "abc"}, InvalidTypeError, "tasks must be a sequence"),
        ({"tasks": {"a": 1}}, InvalidTypeError, "tasks must be a sequence"),
        ({"tasks": 5}, InvalidTypeError, "tasks must be a sequence"),
        ({"workers": 0}, InvalidInputError, "workers must be a positive integer"),
        ({"workers": 1.5}, InvalidInputError, "workers must be a positive integer"),
        ({"workers": True}, InvalidInputError, "workers must be a positive integer"),
        ({"retries": -1}, InvalidInputError, "retries must be a non-negative integer"),
        ({"scheduler": "no-such-file.json"}, ClusterError, "neither 'serial', an address"),
        ({"scheduler": 8786}, InvalidTypeError, "scheduler must be None"),
        ({"store": 3}, InvalidTypeError, "store must be a directory path"),
    ],
)
def test_bad_arguments_name_what_is_wrong(kwargs, err, match):
    args = {"fn": T.square, "tasks": [1, 2], "scheduler": "serial", **kwargs}
    with pytest.raises(err, match=match):
        run_sweep(args.pop("fn"), args.pop("tasks"), **args)


def test_store_that_is_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(InvalidInputError, match="store must be a directory"):
        run_sweep(T.square, [1], scheduler="serial", store=f)


def test_env_scheduler_serial(monkeypatch):
    monkeypatch.setenv("PHYSIM_SCHEDULER", "serial")
    res = run_sweep(T.square, [2, 3])
    assert res.results == (4, 9) and res.n_workers == 1


def test_scheduler_path_object(tmp_path):
    with pytest.raises(ClusterError, match="neither"):
        run_sweep(T.square, [1], scheduler=Path(tmp_path / "missing.json"))
