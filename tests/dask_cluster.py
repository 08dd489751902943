"""A Dask cluster started with Dask's own command line (``dask scheduler`` / ``dask worker``), for tests.

Every process is started here and stopped by its pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

#: directories the worker processes need on PYTHONPATH (task modules of the tests)
TASK_DIRS = [Path(__file__).resolve().parent / "unit" / "distributed"]


def worker_env() -> dict:
    """Environment of worker processes: the tests' task modules on PYTHONPATH, one Numba thread."""
    path = os.pathsep.join(p for p in (*map(str, TASK_DIRS), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "NUMBA_NUM_THREADS": "1"}


def _dask_exe() -> str:
    exe = Path(sys.executable).with_name("dask")
    return str(exe) if exe.exists() else (shutil.which("dask") or "dask")


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop a process started here, by its pid: SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)


class CLICluster:
    """``dask scheduler --scheduler-file F`` and ``n`` × ``dask worker --scheduler-file F``."""

    def __init__(self, directory: Path, n_workers: int = 2, start_workers: bool = True):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.scheduler_file = self.dir / "scheduler.json"
        self.workers: list[subprocess.Popen] = []
        self._logs = []
        self.scheduler = self._spawn(
            "scheduler",
            ["scheduler", "--scheduler-file", str(self.scheduler_file), "--host", "127.0.0.1"]
            + ["--port", "0", "--no-dashboard"],
        )
        t0 = time.monotonic()
        while not self.scheduler_file.exists():
            if self.scheduler.poll() is not None or time.monotonic() - t0 > 60:
                self.close()
                raise RuntimeError(f"dask scheduler did not start; log:\n{self.log('scheduler')}")
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written in one go; let it land
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        if start_workers:
            for i in range(n_workers):
                self.add_worker(f"w{i}")
            self.wait_for_workers(n_workers)

    def _spawn(self, name, args):
        log = open(self.dir / f"{name}.log", "wb")  # noqa: SIM115 - closed in close()
        self._logs.append(log)
        return subprocess.Popen([_dask_exe(), *args], stdout=log, stderr=subprocess.STDOUT, env=worker_env())

    def add_worker(self, name: str) -> subprocess.Popen:
        p = self._spawn(
            name,
            ["worker", "--scheduler-file", str(self.scheduler_file), "--nthreads", "1", "--no-nanny"]
            + ["--no-dashboard", "--host", "127.0.0.1", "--name", name, "--death-timeout", "60"],
        )
        self.workers.append(p)
        return p

    def wait_for_workers(self, n: int, timeout: float = 90.0) -> None:
        from distributed import Client

        with Client(scheduler_file=str(self.scheduler_file), timeout=30, set_as_default=False) as c:
            c.wait_for_workers(n, timeout=timeout)

    def log(self, name: str) -> str:
        p = self.dir / f"{name}.log"
        return p.read_text(errors="replace")[-4000:] if p.exists() else ""

    def close(self) -> None:
        for w in self.workers:
            stop(w)
        stop(self.scheduler)
        for log in self._logs:
            log.close()
