"""Task functions for the run_sweep tests, importable by every worker process.

External ``dask worker`` processes import this module through ``PYTHONPATH``
(tests/unit/distributed), the embedded cluster's workers inherit ``sys.path``.
Calls are counted with marker files, which every process can see.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path


def square(x):
    return x * x


def fail_on_five(x):
    if x == 5:
        raise ValueError(f"task {x} is bad on purpose")
    return x * x


def record(task):
    """Leave a marker ``call-<i>-<pid>-<uuid>`` in ``task['dir']``, sleep, return a value of ``i``."""
    d = Path(task["dir"])
    (d / f"call-{task['i']}-{os.getpid()}-{uuid.uuid4().hex}").touch()
    time.sleep(task.get("sleep", 0.0))
    return {"i": task["i"], "square": task["i"] ** 2}


def calls(directory, i=None) -> list[Path]:
    """Marker files left by :func:`record` (for task ``i``, or all)."""
    pat = "call-*" if i is None else f"call-{i}-*"
    return sorted(Path(directory).glob(pat))


def call_pids(directory) -> set[int]:
    return {int(p.name.split("-")[2]) for p in calls(directory)}


def flaky(task):
    """Raise on the first call of each task, succeed afterwards (counts via marker files)."""
    d = Path(task["dir"])
    marker = d / f"attempt-{task['i']}"
    if not marker.exists():
        marker.touch()
        raise RuntimeError(f"transient failure of task {task['i']}")
    return task["i"]


def lock_for_one(x):
    """A result that cannot be pickled for task 1."""
    import threading

    return threading.Lock() if x == 1 else x


def interrupt_at(task):
    if task == 3:
        raise KeyboardInterrupt
    return task * 10


class Counted:
    """An array holder that leaves a marker file each time it is unpickled."""

    def __init__(self, data, marker_dir):
        self.data = data
        self.marker_dir = str(marker_dir)

    def __getstate__(self):
        return {"data": self.data, "marker_dir": self.marker_dir}

    def __setstate__(self, state):
        self.__dict__.update(state)
        (Path(self.marker_dir) / f"load-{os.getpid()}-{uuid.uuid4().hex}").touch()


def loads_per_process(marker_dir) -> dict[int, int]:
    out: dict[int, int] = {}
    for p in Path(marker_dir).glob("load-*"):
        pid = int(p.name.split("-")[1])
        out[pid] = out.get(pid, 0) + 1
    return out


def row_sum(task, shared):
    """A task reading a large shared input; 7 raises."""
    if task == 7:
        raise ValueError("task 7 raises on purpose")
    return float(shared.data[task].sum()) + task


def numba_probe(_task):
    """Solve a tiny eikonal problem; return the Numba cache hits/misses of the eikonal kernels."""
    import numpy as np

    from physim.eikonal import _fim, _graph, _kernels, box_tet_mesh, conduction_tensor, solve

    mesh = box_tet_mesh(3, size=3.0)
    D = conduction_tensor(np.tile([1.0, 0.0, 0.0], (mesh.n_cells, 1)), 0.6, 0.3)
    act = solve(mesh, D, [0], [0.0])
    hits = misses = 0
    kernels = [obj for mod in (_fim, _graph, _kernels) for obj in vars(mod).values()]
    for obj in kernels:
        st = getattr(obj, "stats", None)
        if st is not None and hasattr(st, "cache_hits"):
            hits += sum(st.cache_hits.values())
            misses += sum(st.cache_misses.values())
    return {"hits": hits, "misses": misses, "pid": os.getpid(), "tmax": float(act.times.max())}


def compile_parallel(task):
    """Compile a new parallel Numba function on the worker (never cached) and run it; the worker's thread count."""
    import numba
    import numpy as np

    @numba.njit(parallel=True, cache=False)
    def total(a):
        s = 0.0
        for i in numba.prange(a.size):
            s += a[i]
        return s

    return {
        "sum": float(total(np.full(10, float(task)))),
        "threads": numba.get_num_threads(),
        "pid": os.getpid(),
    }
