"""Concurrency: every solver called from several threads at once gives the serial result.

Each solver runs in its own process (threads_worker.py), so a crash of compiled code under
concurrent calls fails the test instead of killing the test run. The eikonal and ECG
kernels that use Numba's parallel regions are also run on the workqueue threading layer
(Numba's fallback where neither TBB nor OpenMP is installed), which aborts the process when
two threads enter parallel regions at once unless physim serialises them.
(Concurrent ``write_mesh`` to one path: test_io_reliability.py.)
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("threads_worker.py")


@pytest.mark.parametrize(
    "solver, layer",
    [
        ("lattice", "default"),
        ("eikonal", "default"),
        ("eikonal", "workqueue"),
        ("ecg", "default"),
        ("ecg", "workqueue"),
        ("ekf", "default"),
    ],
)
def test_solver_called_from_several_threads_gives_the_serial_result(solver, layer, tmp_path):
    env = {**os.environ, "PYTHONFAULTHANDLER": "1", "NUMBA_THREADING_LAYER": layer, "NUMBA_NUM_THREADS": "2"}
    out = subprocess.run(
        [sys.executable, str(WORKER), solver],
        capture_output=True,
        text=True,
        timeout=400,
        cwd=tmp_path,
        env=env,
    )
    assert out.returncode == 0 and out.stdout.startswith(f"OK {solver}"), (
        f"exit status {out.returncode}\n{out.stdout[-2000:]}\n--- stderr ---\n{out.stderr[-3000:]}"
    )
    if layer == "workqueue" and solver in ("eikonal", "ecg"):
        assert "numba layer workqueue" in out.stdout  # the parallel kernels ran on that layer
