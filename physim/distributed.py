"""Independent runs on Dask: ensembles, parameter sweeps and Monte-Carlo studies.

:func:`run_sweep` calls ``fn(task)`` once per task on the workers of a Dask
cluster (``dask.distributed``) and streams the results back as they complete.
With no set-up it starts an embedded ``LocalCluster`` (one process per core,
one thread each) and closes it at the end; given an address it runs the same
code on a real cluster. With ``store=DIR`` every finished task is written to
disk at once, so nothing finished is lost to a crash, Ctrl-C or ``kill -9``,
and calling again runs only what is missing.

Usage
-----
::

    from physim.distributed import run_sweep

    def train(task):                      # any picklable function of one task
        ...                               # e.g. one MNN training, one twin fit
        return {"accuracy": acc, "seed": task["seed"]}

    tasks = [{"seed": s, "lr": lr} for s in range(10) for lr in (0.03, 0.1)]
    res = run_sweep(train, tasks, store="runs/lr-study", progress=True)
    res.results                           # task order; None where a task failed
    res.failed                            # {task index: traceback text}

    run_sweep(train, tasks, workers=4)                         # embedded cluster, 4 processes
    run_sweep(train, tasks, scheduler="tcp://10.0.0.1:8786")   # a running Dask scheduler
    run_sweep(train, tasks, scheduler="scheduler.json")        # ... given by its scheduler file
    run_sweep(train, tasks, scheduler=client)                  # a distributed.Client, used as is
    run_sweep(train, tasks, scheduler="serial")                # in this process, without Dask

    # a large input every task reads (a mesh, a lead field) travels once per worker:
    run_sweep(ecg_of, grid, shared=lead_field)                 # calls ecg_of(task, lead_field)

In a script, call it under ``if __name__ == "__main__":``: the embedded
cluster's worker processes import the script. ``$PHYSIM_SCHEDULER`` (an
address, a scheduler file or ``serial``) is the default of ``scheduler``. On a cluster::

    dask scheduler                                   # on one machine: tcp://HOST:8786
    dask worker tcp://HOST:8786 --nthreads 1         # on each worker machine (several per machine)
    physim run sweep_ecg_sensitivity --scheduler tcp://HOST:8786

What a cluster needs
--------------------
* The same physim version on every worker as on the client: the workers are
  asked before anything is submitted, and each task checks again (workers may
  join later); a mismatch raises :class:`physim.errors.ClusterError` naming
  the worker and both versions. Dask itself warns about mismatched
  Python/Dask/cloudpickle versions.
* Workers on one machine share Numba's on-disk cache (``__pycache__`` next to
  the installed modules, or ``$NUMBA_CACHE_DIR``), so a kernel compiled once on
  a machine is loaded, not recompiled, by every later worker process there.
* The embedded cluster gives each worker process one thread, Numba's
  included (``NUMBA_NUM_THREADS=1``); start ``dask worker`` processes with
  ``--nthreads 1`` and ``NUMBA_NUM_THREADS=1`` likewise (one process per core),
  or with one process per machine and Numba's threads for parallel kernels.

Stores
------
``store=DIR`` holds one pickle file per finished task, ``<key[:2]>/<key>.pkl``
(256 subdirectories keep directories small in large studies), where
``key = task_key(task)`` is a stable hash of the task's content (dicts are
hashed independently of their key order; arrays by dtype, shape and bytes),
plus ``index.json`` (every task of the last call: index, key, status, a short
repr). Each file is written to a temporary name and renamed
(:func:`physim._atomic.atomic_write`), so a file is either complete or absent. A task that raised leaves ``<key>.failed.txt``
with its traceback and runs again on the next call. A store belongs to one
function (its name is recorded and checked): tasks must carry every parameter
that changes the result.

Failures
--------
A task that raises is recorded in :attr:`SweepResult.failed` with its
traceback and does not stop the others. ``retries`` is passed to Dask
(``Client.submit(retries=...)``), which re-runs a task whose run failed that
many times before reporting it; tasks lost with a dying worker are
rescheduled by the Dask scheduler itself (``distributed.scheduler.allowed-failures``
times, 3 by default) and only reported (``KilledWorker``) after that.
``scheduler="serial"`` retries a raising task the same way, so every backend
gives the same results.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import functools
import hashlib
import json
import logging
import os
import pickle
import re
import sys
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from ._atomic import atomic_write
from .errors import ClusterError, InvalidInputError, InvalidTypeError

if TYPE_CHECKING:
    from dask.distributed import Client

__all__ = ["run_sweep", "SweepResult", "task_key", "SERIAL", "ENV_SCHEDULER"]

logger = logging.getLogger(__name__)

#: ``scheduler=SERIAL`` runs the tasks one after the other in the calling process.
SERIAL = "serial"
#: Environment variable giving the default ``scheduler``.
ENV_SCHEDULER = "PHYSIM_SCHEDULER"
#: Seconds to wait for a connection to a scheduler.
CONNECT_TIMEOUT_S = 10.0
#: Seconds to wait for the requested number of workers (at least one) on a scheduler.
WORKER_TIMEOUT_S = 60.0
#: Pickled size of ``fn`` above which a warning suggests ``shared=`` (fn travels with every task).
FN_SIZE_WARNING_BYTES = 1 << 20

_STORE_FORMAT = 1
_INDEX = "index.json"
_INDEX_EVERY_S = 2.0
_ADDRESS = re.compile(r"^[\w.\-]+:\d+$|^\[[0-9a-fA-F:]+\]:\d+$")


# --------------------------------------------------------------------------- result


@dataclass(frozen=True, eq=False, repr=False)
class SweepResult:
    """Outcome of :func:`run_sweep`.

    Attributes
    ----------
    results : tuple, length n_tasks
        ``fn(task)`` in task order; ``None`` where the task failed (or was not
        run because the sweep was interrupted).
    failed : dict[int, str]
        Task index -> error text (the traceback of the exception the task raised).
    n_done : int
        Tasks with a result (run now or read from the store).
    n_workers : int
        Worker processes used (1 for ``"serial"``; for an external scheduler,
        the workers connected when the tasks were submitted; 0 when every
        result came from the store).
    wall_time_s : float
        Wall time of the whole call (cluster start-up and shut-down included), s.
    from_store : int
        Results read from ``store`` (finished by a previous call).
    n_tasks : int
        Number of tasks.
    task_time_s : ndarray, shape (n_tasks,), float64
        Seconds spent inside ``fn`` for each task run by this call (measured
        where it ran); NaN for tasks read from the store, failed or not run.
    shared_transfer_s : float
        Seconds to send ``shared`` to every worker (0 without ``shared`` or in
        serial mode).
    interrupted : bool
        Ctrl-C stopped the sweep; finished tasks are in ``results`` (and the store).
    store : pathlib.Path or None
        The store directory.
    status : tuple of str, length n_tasks
        ``"done"``, ``"failed"`` or ``"missing"`` (not run: interrupted) per task.
    """

    results: tuple
    failed: dict
    n_done: int
    n_workers: int
    wall_time_s: float
    from_store: int
    n_tasks: int
    task_time_s: np.ndarray
    shared_transfer_s: float = 0.0
    interrupted: bool = False
    store: Path | None = None
    status: tuple = ()

    @property
    def complete(self) -> bool:
        """Every task has a result (none failed, none missing)."""
        return self.n_done == self.n_tasks

    @property
    def missing(self) -> tuple:
        """Indices of tasks that neither finished nor failed (an interrupted sweep)."""
        return tuple(i for i, s in enumerate(self.status) if s == "missing")

    def check(self) -> SweepResult:
        """Return ``self`` if every task finished, else raise naming the failed/missing tasks.

        Raises
        ------
        RuntimeError
            Some task failed (the first traceback is included) or was not run.
        """
        if self.failed:
            i = min(self.failed)
            raise RuntimeError(
                f"{len(self.failed)} of {self.n_tasks} sweep tasks failed (indices "
                f"{sorted(self.failed)[:10]}{' ...' if len(self.failed) > 10 else ''}); task {i}:\n"
                f"{self.failed[i]}"
            )
        if not self.complete:
            raise RuntimeError(
                f"sweep interrupted: {self.n_tasks - self.n_done} of {self.n_tasks} tasks not run"
            )
        return self

    def __repr__(self) -> str:
        extra = ", interrupted" if self.interrupted else ""
        return (
            f"SweepResult({self.n_done}/{self.n_tasks} done, {len(self.failed)} failed, "
            f"{self.from_store} from store, {self.n_workers} worker(s), {self.wall_time_s:.2f} s{extra})"
        )


# --------------------------------------------------------------------------- task keys


def task_key(task: Any) -> str:
    """Stable hash of a task's content (32 hex digits), the name of its store file.

    Equal tasks get equal keys in every process and session: dicts are hashed
    independent of their insertion order, numbers by type and exact value
    (``1`` and ``1.0`` differ), arrays by dtype, shape and bytes, dataclasses by
    class name and fields. Other objects are hashed by their class name and
    pickle, which is stable for objects whose pickle is deterministic.

    Parameters
    ----------
    task : object
        A task (dict of parameters, tuple, number, string, array, dataclass...).

    Returns
    -------
    str
        32 lowercase hexadecimal digits.
    """
    h = hashlib.sha256()
    _feed(h, task)
    return h.hexdigest()[:32]


def _tag(h, code: bytes, payload: bytes = b"") -> None:
    h.update(code + str(len(payload)).encode() + b":" + payload)


def _sub_digest(obj) -> bytes:
    h = hashlib.sha256()
    _feed(h, obj)
    return h.digest()


def _qualname(obj) -> str:
    t = obj if isinstance(obj, type) else type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def _feed(h, obj) -> None:
    if obj is None:
        _tag(h, b"N")
    elif isinstance(obj, (bool, np.bool_)):
        _tag(h, b"B", b"1" if obj else b"0")
    elif isinstance(obj, (int, np.integer)):
        _tag(h, b"i", str(int(obj)).encode())
    elif isinstance(obj, (float, np.floating)):
        _tag(h, b"f", float(obj).hex().encode())
    elif isinstance(obj, (complex, np.complexfloating)):
        _tag(h, b"c", (complex(obj).real.hex() + "," + complex(obj).imag.hex()).encode())
    elif isinstance(obj, str):
        _tag(h, b"s", obj.encode("utf-8", "surrogatepass"))
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        _tag(h, b"b", bytes(obj))
    elif isinstance(obj, enum.Enum):
        _tag(h, b"e", f"{_qualname(obj)}.{obj.name}".encode())
    elif isinstance(obj, PurePath):
        _tag(h, b"p", str(obj).encode("utf-8", "surrogatepass"))
    elif isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            _tag(h, b"A", repr(obj.shape).encode())
            for v in obj.ravel():
                _feed(h, v)
        else:
            _tag(h, b"a", f"{obj.dtype.str}{obj.shape}".encode())
            h.update(np.ascontiguousarray(obj).tobytes())
    elif isinstance(obj, (list, tuple)):
        _tag(h, b"l" if isinstance(obj, list) else b"t", str(len(obj)).encode())
        for v in obj:
            _feed(h, v)
    elif isinstance(obj, Mapping):
        items = sorted((_sub_digest(k), _sub_digest(v)) for k, v in obj.items())
        _tag(h, b"d", str(len(items)).encode())
        for k, v in items:
            h.update(k + v)
    elif isinstance(obj, Set):
        items = sorted(_sub_digest(v) for v in obj)
        _tag(h, b"S", str(len(items)).encode())
        for v in items:
            h.update(v)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        _tag(h, b"D", _qualname(obj).encode())
        for f in dataclasses.fields(obj):
            _feed(h, f.name)
            _feed(h, getattr(obj, f.name))
    elif isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__"):
        name = obj.__qualname__ if isinstance(obj, type) else f"{obj.__module__}.{obj.__qualname__}"
        _tag(h, b"F", name.encode())
    else:
        try:
            data = pickle.dumps(obj, protocol=4)
        except Exception as exc:
            raise InvalidInputError(
                f"cannot hash a task of type {_qualname(obj)} for the store (it does not pickle: {exc})"
            ) from None
        _tag(h, b"P", _qualname(obj).encode() + b"|" + data)


def _fn_name(fn) -> str:
    f, wrapped = fn, 0
    while isinstance(f, functools.partial):
        f, wrapped = f.func, wrapped + 1
    name = getattr(f, "__qualname__", None) or type(f).__qualname__
    return "partial(" * wrapped + name + ")" * wrapped


# --------------------------------------------------------------------------- store


def _atomic_write(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


class _Store:
    """One pickle file per finished task (``<key[:2]>/<key>.pkl``) plus ``index.json``."""

    def __init__(self, path, function: str):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise InvalidInputError(f"store must be a directory, got the file {self.path}")
        self.path.mkdir(parents=True, exist_ok=True)
        self.function = function
        self._last_index = 0.0
        old = self._read_index()
        if old is not None:
            if old.get("function") not in (None, function):
                raise InvalidInputError(
                    f"store {self.path} holds results of function {old.get('function')!r}, not {function!r}; "
                    "use another store directory"
                )
            if old.get("physim_version") != __version__:
                warnings.warn(
                    f"store {self.path} was written by physim {old.get('physim_version')}; this is "
                    f"physim {__version__}: its results are reused as they are",
                    stacklevel=3,
                )

    def _read_index(self) -> dict | None:
        p = self.path / _INDEX
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return None

    def result_path(self, key: str) -> Path:
        return self.path / key[:2] / f"{key}.pkl"

    def failure_path(self, key: str) -> Path:
        return self.path / key[:2] / f"{key}.failed.txt"

    def load(self, key: str):
        """``(True, result)`` if the store holds the task, else ``(False, None)``."""
        p = self.result_path(key)
        if not p.exists():
            return False, None
        try:
            with open(p, "rb") as fh:
                payload = pickle.load(fh)
            if payload.get("key") != key:
                raise ValueError(f"it holds key {payload.get('key')!r}")
            result = pickle.loads(payload["result"])
        except Exception as exc:
            warnings.warn(f"store entry {p} cannot be read ({exc}); the task runs again", stacklevel=3)
            return False, None
        return True, result

    def save(self, key: str, index: int, data: bytes, seconds: float) -> None:
        """Write a task's pickled result ``data`` (bytes) atomically."""
        payload = {
            "format": _STORE_FORMAT,
            "key": key,
            "index": index,
            "result": data,
            "seconds": seconds,
            "physim_version": __version__,
        }
        _atomic_write(self.result_path(key), pickle.dumps(payload, protocol=5))
        with contextlib.suppress(FileNotFoundError):
            self.failure_path(key).unlink()

    def save_failure(self, key: str, text: str) -> None:
        _atomic_write(self.failure_path(key), text.encode("utf-8", "replace"))

    def write_index(self, keys, status, reprs, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_index < _INDEX_EVERY_S:
            return
        self._last_index = now
        index = {
            "format": _STORE_FORMAT,
            "physim_version": __version__,
            "function": self.function,
            "n_tasks": len(keys),
            "counts": {s: int(sum(1 for x in status if x == s)) for s in ("done", "failed", "pending")},
            "tasks": [
                {"index": i, "key": k, "status": s, "task": r}
                for i, (k, s, r) in enumerate(zip(keys, status, reprs))
            ],
        }
        _atomic_write(self.path / _INDEX, (json.dumps(index, indent=1) + "\n").encode())


def _short_repr(obj, limit: int = 200) -> str:
    try:
        r = repr(obj)
    except Exception:
        r = f"<{_qualname(obj)}>"
    return r if len(r) <= limit else r[: limit - 3] + "..."


# --------------------------------------------------------------------------- bookkeeping


class _Collector:
    """Receives finished and failed tasks as they arrive: results, store, progress bar."""

    def __init__(self, tasks, store: _Store | None, progress: bool):
        n = len(tasks)
        self.results = [None] * n
        self.failed: dict[int, str] = {}
        self.task_time = np.full(n, np.nan)
        self.status = ["pending"] * n
        self.store = store
        self.keys = [task_key(t) for t in tasks] if store is not None else None
        self.reprs = [_short_repr(t) for t in tasks] if store is not None else None
        self.from_store = 0
        if store is not None:
            for i, k in enumerate(self.keys):
                ok, value = store.load(k)
                if ok:
                    self.results[i] = value
                    self.status[i] = "done"
                    self.from_store += 1
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=n, initial=self.from_store, desc="sweep", unit="task", leave=True)
        self.n_workers = 1
        self.transfer_s = 0.0

    @property
    def todo(self) -> list[int]:
        return [i for i, s in enumerate(self.status) if s != "done"]

    def done(self, i: int, value, seconds: float, data: bytes | None = None) -> None:
        """Task ``i`` finished with ``value`` (``data``: its pickle, if already made)."""
        if self.store is not None and data is None:
            try:
                data = _dumps(value)
            except Exception as exc:
                self.fail(
                    i,
                    f"the result of task {i} ({type(value).__name__}) cannot be pickled for the store: {exc}",
                )
                return
        self.results[i] = value
        self.task_time[i] = seconds
        self.status[i] = "done"
        self.failed.pop(i, None)
        if self.store is not None:
            self.store.save(self.keys[i], i, data, seconds)
            self.store.write_index(self.keys, self.status, self.reprs)
        if self.bar is not None:
            self.bar.update(1)

    def fail(self, i: int, text: str) -> None:
        self.failed[i] = text
        self.status[i] = "failed"
        logger.warning("sweep task %d failed: %s", i, text.strip().splitlines()[-1] if text.strip() else text)
        if self.store is not None:
            self.store.save_failure(self.keys[i], text)
            self.store.write_index(self.keys, self.status, self.reprs)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.store is not None:
            self.store.write_index(self.keys, self.status, self.reprs, force=True)
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------- workers


class _VersionMismatch(ClusterError):
    """Raised on a worker whose physim version differs from the client's."""


def _worker_version() -> str:
    return __version__


def _dumps(obj) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(obj, protocol=5)


#: shared inputs unpickled in this (worker) process: token -> object; the latest few runs only
_SHARED: dict[str, object] = {}
_SHARED_KEEP = 2
_SHARED_LOCK = threading.Lock()


def _shared_object(token: str, blob):
    """The shared input of run ``token``, unpickled once per process from ``blob``.

    Unpickling an in-band pickle allocates fresh (aligned) arrays: arrays that
    Dask deserialises out of band can sit at unaligned offsets of a network
    frame, which changes numpy's summation loops (last-bit differences against
    a serial run) and gives Numba kernels another array type to compile.
    """
    with _SHARED_LOCK:
        if token not in _SHARED:
            _SHARED[token] = pickle.loads(blob)
            while len(_SHARED) > _SHARED_KEEP:
                _SHARED.pop(next(iter(_SHARED)))
        return _SHARED[token]


def _forget_shared(token: str) -> None:
    with _SHARED_LOCK:
        _SHARED.pop(token, None)


def _execute(task, *, fn, version, shared=None, with_shared=False, shared_token=None, numba_threads=None):
    """What each Dask task runs on its worker: version check, ``fn``, pickled result.

    The result is pickled here so that a result (or exception) that cannot be
    pickled fails this task with a clear message instead of stalling the transfer.
    ``numba_threads`` (embedded cluster: 1) caps Numba's threads for this task:
    the worker process may have imported Numba before its environment was set.
    """
    if version != __version__:
        raise _VersionMismatch(
            f"a worker runs physim {__version__} but the client runs physim {version}; "
            "install the same physim version on every worker"
        )
    _align_numba_threads()
    if numba_threads is not None:
        import numba

        numba.set_num_threads(min(numba_threads, numba.config.NUMBA_NUM_THREADS))
    if with_shared:
        shared = _shared_object(shared_token, shared)
    t0 = time.perf_counter()
    try:
        out = fn(task, shared) if with_shared else fn(task)
    except Exception as exc:
        try:
            _dumps(exc)
        except Exception:
            raise RuntimeError(
                f"the task raised an exception that cannot be pickled:\n{traceback.format_exc()}"
            ) from None
        raise
    seconds = time.perf_counter() - t0
    try:
        data = _dumps(out)
    except Exception as exc:
        raise InvalidInputError(f"the result of fn ({type(out).__name__}) cannot be pickled: {exc}") from None
    return data, seconds


def _align_numba_threads() -> None:
    """Make Numba's thread-count setting agree with this worker's ``NUMBA_NUM_THREADS``.

    A spawned worker imports the parent's main module, and with it Numba, before
    its environment (``NUMBA_NUM_THREADS=1`` on the embedded cluster) is applied;
    Numba then holds the default count while the environment says otherwise, and
    once its thread pool runs, every later compilation (a kernel not yet in the
    cache) fails with "Cannot set NUMBA_NUM_THREADS to a different value". Before
    the pool starts the environment's value is adopted; after, the environment is
    set to the pool's size (``numba.set_num_threads`` still caps each task).
    """
    value = os.environ.get("NUMBA_NUM_THREADS")
    if value is None or "numba" not in sys.modules:
        return  # Numba reads the environment when it is first imported
    from numba.core import config

    try:
        if int(value) == config.NUMBA_NUM_THREADS:
            return
    except ValueError:
        return  # Numba reports a malformed value itself
    try:
        config.reload_config()
    except RuntimeError:
        os.environ["NUMBA_NUM_THREADS"] = str(config.NUMBA_NUM_THREADS)


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _resolve_scheduler(scheduler):
    """None (embedded), SERIAL, a Client, or ('file' | 'address', str)."""
    if scheduler is None:
        env = os.environ.get(ENV_SCHEDULER, "").strip()
        if not env:
            return None
        scheduler = env
    if isinstance(scheduler, os.PathLike):
        scheduler = os.fspath(scheduler)
    if isinstance(scheduler, str):
        s = scheduler.strip()
        if s == SERIAL:
            return SERIAL
        if "://" in s or _ADDRESS.match(s):
            return ("address", s)
        if os.path.isfile(s):
            return ("file", s)
        raise ClusterError(
            f"scheduler {scheduler!r} is neither 'serial', an address like 'tcp://host:8786' nor an "
            "existing scheduler file"
        )
    from distributed import Client

    if isinstance(scheduler, Client):
        return scheduler
    raise InvalidTypeError(
        "scheduler must be None, 'serial', an address or scheduler-file path (str), or a "
        f"distributed.Client, got {type(scheduler).__name__}"
    )


def _wait_for_workers(client, workers: int | None, where: str) -> int:
    want = workers or 1
    try:
        client.wait_for_workers(want, timeout=WORKER_TIMEOUT_S)
    except (TimeoutError, OSError) as exc:
        have = len(client.nthreads())
        raise ClusterError(
            f"{have} worker(s) connected to the Dask scheduler at {where} after {WORKER_TIMEOUT_S:.0f} s, "
            f"{want} needed (start them with `dask worker {where}`) [{type(exc).__name__}]"
        ) from None
    return len(client.nthreads())


@contextlib.contextmanager
def _connect(sched, workers: int | None):
    """Yield ``(client, n_workers)``; start/close what this call owns."""
    from distributed import Client, LocalCluster

    if isinstance(sched, Client):
        yield sched, _wait_for_workers(sched, workers, str(sched.scheduler.address))
        return
    if sched is None:
        n = workers or _default_workers()
        logger.info("starting an embedded Dask LocalCluster: %d processes, 1 thread each", n)
        with (
            LocalCluster(
                n_workers=n,
                threads_per_worker=1,
                processes=True,
                dashboard_address="127.0.0.1:0",  # HTTP routes on a free local port
                env={"NUMBA_NUM_THREADS": "1"},
            ) as cluster,
            Client(cluster, set_as_default=False) as client,
        ):
            yield client, n
        return
    kind, where = sched
    try:
        if kind == "file":
            client = Client(scheduler_file=where, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
        else:
            client = Client(where, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot connect to the Dask scheduler at {where!r}: {exc}") from None
    with client:
        yield client, _wait_for_workers(client, workers, str(client.scheduler.address))


def _check_versions(client) -> None:
    """Refuse workers whose physim version differs from this one's."""
    found = client.run(_worker_version, on_error="return")
    bad = {w: v for w, v in found.items() if v != __version__}
    if bad:
        lines = "; ".join(
            f"{w}: {'cannot run physim (' + repr(v) + ')' if isinstance(v, BaseException) else 'physim ' + str(v)}"
            for w, v in sorted(bad.items())
        )
        raise ClusterError(
            f"{len(bad)} of {len(found)} Dask worker(s) do not run physim {__version__} like this client "
            f"({lines}); install the same physim version on every worker"
        )


def _format_error(exc, tb) -> str:
    return "".join(traceback.format_exception(type(exc), exc, tb))


# --------------------------------------------------------------------------- backends


def _run_serial(fn, tasks, todo, retries, shared, with_shared, col: _Collector) -> None:
    for i in todo:
        text = ""
        for _ in range(retries + 1):
            t0 = time.perf_counter()
            try:
                out = fn(tasks[i], shared) if with_shared else fn(tasks[i])
            except Exception:
                text = traceback.format_exc()
                continue
            col.done(i, out, time.perf_counter() - t0)
            break
        else:
            col.fail(i, text)


def _run_dask(fn, tasks, todo, sched, workers, retries, shared, with_shared, col: _Collector) -> None:
    import cloudpickle
    from distributed import as_completed

    try:
        size = len(cloudpickle.dumps(fn))
    except Exception as exc:
        raise InvalidInputError(f"fn cannot be pickled for the Dask workers: {exc}") from None
    if size > FN_SIZE_WARNING_BYTES:
        warnings.warn(
            f"fn pickles to {size / 2**20:.1f} MiB and travels with every task; pass large inputs "
            "through run_sweep(..., shared=...) to send them once per worker",
            stacklevel=3,
        )
    with _connect(sched, workers) as (client, n_workers):
        col.n_workers = n_workers
        _check_versions(client)
        run = uuid.uuid4().hex[:12]
        kwargs = {"fn": fn, "version": __version__}
        if sched is None:
            kwargs["numba_threads"] = 1
        if with_shared:
            t0 = time.perf_counter()
            try:
                blob = _dumps(shared)
            except Exception as exc:
                raise InvalidInputError(f"shared cannot be pickled for the Dask workers: {exc}") from None
            [kwargs["shared"]] = client.scatter([blob], broadcast=True, hash=False)
            del blob
            col.transfer_s = time.perf_counter() - t0
            kwargs["with_shared"] = True
            kwargs["shared_token"] = run
            logger.info("shared input sent to %d worker(s) in %.3f s", n_workers, col.transfer_s)
        keys = [f"physim-sweep-{run}-{i}" for i in todo]
        try:
            futures = client.map(
                _execute, [tasks[i] for i in todo], key=keys, retries=retries, pure=False, **kwargs
            )
        except Exception as exc:
            for i in todo:
                try:
                    cloudpickle.dumps(tasks[i])
                except Exception as exc_i:
                    raise InvalidInputError(
                        f"task {i} cannot be pickled for the Dask workers: {exc_i}"
                    ) from None
            raise ClusterError(f"submitting the sweep to Dask failed: {exc}") from exc
        pending = {f.key: (i, f) for i, f in zip(todo, futures)}
        del futures
        try:
            for fut, value in as_completed(
                [f for _, f in pending.values()], with_results=True, raise_errors=False, loop=client.loop
            ):
                i, _ = pending.pop(fut.key)
                if fut.status == "finished":
                    data, seconds = value
                    data = bytes(data)
                    col.done(i, pickle.loads(data), seconds, data)
                else:
                    if isinstance(value, tuple) and len(value) == 3:
                        _, exc, tb = value
                    else:  # cancelled
                        exc, tb = value, None
                    if isinstance(exc, _VersionMismatch):
                        raise ClusterError(str(exc)) from None
                    col.fail(i, _format_error(exc, tb))
                del fut, value
        finally:
            if pending:
                client.cancel([f for _, f in pending.values()])
            pending.clear()
            if with_shared:
                kwargs.pop("shared", None)
                with contextlib.suppress(Exception):
                    client.run(_forget_shared, run, on_error="ignore")


# --------------------------------------------------------------------------- API


def run_sweep(
    fn: Callable,
    tasks: Sequence,
    *,
    scheduler: str | os.PathLike | Client | None = None,
    workers: int | None = None,
    store: str | os.PathLike | None = None,
    progress: bool = False,
    retries: int = 1,
    shared: Any = None,
) -> SweepResult:
    """Run ``fn(task)`` for every task, in parallel on Dask, streaming results into a store.

    Parameters
    ----------
    fn : callable
        ``fn(task) -> result`` (``fn(task, shared)`` when ``shared`` is given);
        picklable (module-level functions, or functions of the running script,
        which cloudpickle sends by value). Results must be picklable.
    tasks : sequence
        One entry per run: a dict of parameters or any picklable object.
    scheduler : None, str, os.PathLike or distributed.Client
        ``None``: ``$PHYSIM_SCHEDULER`` if set, else an embedded
        ``LocalCluster`` (``workers`` processes with one thread each),
        started and closed by this call. A string ``"tcp://host:8786"``
        (or ``"host:8786"``) or the path of a scheduler file connects to a
        running Dask scheduler. A ``distributed.Client`` is used as is (and
        left open). ``"serial"`` runs the tasks in this process without Dask.
    workers : int, optional
        Embedded cluster: number of worker processes (default: the number of
        cores). External scheduler: wait until this many workers are connected
        (default: at least one), for up to :data:`WORKER_TIMEOUT_S` seconds.
        Ignored by ``"serial"``.
    store : str or os.PathLike, optional
        Directory where each finished task's result is written atomically as it
        arrives (``<key[:2]>/<key>.pkl`` with ``key = task_key(task)``, plus
        ``index.json``). Tasks already in
        the store are not run again; they count in ``from_store``.
    progress : bool
        Show a tqdm progress bar (completed tasks, rate, ETA).
    retries : int
        Times Dask re-runs a task whose run failed before it is reported in
        ``failed`` (``Client.submit(retries=...)``); ``"serial"`` does the same.
        Tasks lost with a dying worker are rescheduled by Dask itself.
    shared : object, optional
        A large input every task needs (a mesh, a lead field). Pickled once,
        sent once to every worker (``Client.scatter(broadcast=True)``),
        unpickled once per worker process and passed to ``fn(task, shared)``;
        ``shared_transfer_s`` is the time to pickle and send it.

    Returns
    -------
    SweepResult
        ``results`` in task order (``None`` where failed), ``failed``
        (index -> traceback text), ``n_done``, ``n_workers``, ``wall_time_s``,
        ``from_store``.

    Raises
    ------
    InvalidTypeError, InvalidInputError
        ``fn`` not callable, ``tasks`` not a sequence, bad ``workers`` /
        ``retries``, a ``store`` that is a file or belongs to another function,
        a task or ``fn`` that cannot be pickled.
    ClusterError
        The scheduler is unreachable, no worker joined in time, or a worker
        runs another physim version.

    Notes
    -----
    Ctrl-C stops the sweep: the tasks still running are cancelled, the
    embedded cluster is closed, and the finished results are returned
    (``interrupted=True``, with a warning) and kept in the store.
    """
    t_start = time.perf_counter()
    if not callable(fn):
        raise InvalidTypeError(f"fn must be callable, got {type(fn).__name__}")
    if isinstance(tasks, (str, bytes, Mapping)) or not hasattr(tasks, "__iter__"):
        raise InvalidTypeError(
            f"tasks must be a sequence of tasks (list, tuple, ...), got {type(tasks).__name__}"
        )
    tasks = list(tasks)
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1
    ):
        raise InvalidInputError(f"workers must be a positive integer or None, got {workers!r}")
    workers = None if workers is None else int(workers)
    if isinstance(retries, bool) or not isinstance(retries, (int, np.integer)) or retries < 0:
        raise InvalidInputError(f"retries must be a non-negative integer, got {retries!r}")
    retries = int(retries)
    if store is not None and not isinstance(store, (str, os.PathLike)):
        raise InvalidTypeError(
            f"store must be a directory path (str or os.PathLike), got {type(store).__name__}"
        )
    sched = _resolve_scheduler(scheduler)
    st = _Store(store, _fn_name(fn)) if store is not None else None
    col = _Collector(tasks, st, bool(progress))
    todo = col.todo
    with_shared = shared is not None
    interrupted = False
    try:
        if todo:
            if sched == SERIAL:
                _run_serial(fn, tasks, todo, retries, shared, with_shared, col)
            else:
                _run_dask(fn, tasks, todo, sched, workers, retries, shared, with_shared, col)
    except KeyboardInterrupt:
        interrupted = True
        left = sum(1 for s in col.status if s == "pending")
        warnings.warn(
            f"sweep interrupted: {len(tasks) - left} of {len(tasks)} tasks finished"
            + (f"; run again with store={str(store)!r} to finish the rest" if st else ""),
            stacklevel=2,
        )
    finally:
        col.close()
    tt = col.task_time.copy()
    tt.setflags(write=False)
    return SweepResult(
        results=tuple(col.results),
        failed=dict(col.failed),
        n_done=sum(1 for s in col.status if s == "done"),
        n_workers=(col.n_workers if sched != SERIAL else 1) if todo else 0,
        wall_time_s=time.perf_counter() - t_start,
        from_store=col.from_store,
        n_tasks=len(tasks),
        task_time_s=tt,
        shared_transfer_s=col.transfer_s,
        interrupted=interrupted,
        store=None if st is None else st.path,
        status=tuple("missing" if s == "pending" else s for s in col.status),
    )
