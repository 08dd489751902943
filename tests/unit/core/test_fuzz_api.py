"""Property-based probes of every package's public API (see fuzz_api_worker.py).

Each package is probed in its own process: a segfault or a hang in compiled code ends that
process, and the test fails with the probe that caused it, instead of killing the test run.
Hypothesis is derandomized (the same probes every run) and bounded (``MAX_EXAMPLES`` per
target, small meshes and problems) to keep the suite about a minute on two cores.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("fuzz_api_worker.py")
MAX_EXAMPLES = 60


def _run(package: str, tmp_path, max_examples=MAX_EXAMPLES, timeout=400):
    env = {**os.environ, "PYTHONFAULTHANDLER": "1", "PHYSIM_OFFSCREEN": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, str(WORKER), package, str(max_examples)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,  # Hypothesis' scratch directory goes there, not into the repository
        env=env,
    )


def _last_call(stdout: str) -> str:
    calls = re.findall(r"^CALL (.*)$", stdout, re.M)
    return calls[-1] if calls else "(none)"


@pytest.mark.parametrize("package", ["lattice", "eikonal", "cardiac", "ekf", "optim", "io"])
def test_public_api_returns_finite_results_or_raises_physim_errors(package, tmp_path):
    out = _run(package, tmp_path)
    fails = [line for line in out.stdout.splitlines() if line.startswith("FAIL ")]
    assert out.returncode == 0 and not fails, (
        f"exit status {out.returncode}; last probe: {_last_call(out.stdout)}\n"
        + "\n".join(fails[:40])
        + f"\n--- stderr tail ---\n{out.stderr[-3000:]}"
    )
    assert re.search(rf"^DONE {package}: \d+ targets, 0 failures$", out.stdout, re.M)


def test_a_crash_in_a_probe_fails_the_test_and_names_the_probe(tmp_path):
    out = _run("_selftest", tmp_path, timeout=120)
    assert out.returncode != 0  # the probe process died (SIGSEGV), this process did not
    assert "Fatal Python error" in out.stderr or out.returncode < 0
    assert re.match(r"crash_on_nan: a <- poke:(nan|inf|-inf)", _last_call(out.stdout))
