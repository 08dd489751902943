"""twin_ensemble through ``physim run`` against a Dask scheduler and workers the user started."""

import json
import os
import subprocess
import sys

from dask_cluster import CLICluster


def _physim_run(out, *extra):
    env = {**os.environ, "PHYSIM_OFFSCREEN": "1", "MPLBACKEND": "Agg"}
    env.pop("PHYSIM_SCHEDULER", None)
    cmd = [sys.executable, "-m", "physim", "run", "twin_ensemble", "--quick", "--no-plots", "--members", "2",
           "--maxiter", "3", "--out", str(out), *extra]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, f"twin_ensemble failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return json.loads((out / "results.json").read_text())


def test_twin_ensemble_on_a_user_started_scheduler_equals_the_serial_run(tmp_path):
    serial = _physim_run(tmp_path / "serial", "--scheduler", "serial")
    cluster = CLICluster(tmp_path / "cluster", n_workers=2)
    try:
        remote = _physim_run(tmp_path / "remote", "--scheduler", cluster.address)
    finally:
        cluster.close()
    assert serial["n_workers"] == 1 and remote["n_workers"] == 2
    for prefix in ("", "points_"):
        assert remote[prefix + "n_members"] == 2 and remote[prefix + "n_failed"] == 0
        for key in ("member_loss", "member_activation_error_mean_ms", "ensemble_activation_error_mean_ms"):
            assert serial[prefix + key] == remote[prefix + key], prefix + key
