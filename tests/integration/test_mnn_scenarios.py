"""Mechanical-network scenarios: what their results promise, and the same numbers on 2 workers."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dask_cluster import CLICluster
from scenario_cli import physim_run

SCEN = Path(__file__).resolve().parents[2] / "scenarios"


def _run(name, out, *extra):
    env = {**os.environ, "PHYSIM_OFFSCREEN": "1", "MPLBACKEND": "Agg"}
    env.pop("PHYSIM_SCHEDULER", None)
    r = subprocess.run(
        [sys.executable, str(SCEN / f"{name}.py"), "--quick", "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert r.returncode == 0, f"{name} failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return json.loads((out / "results.json").read_text())


def _physim_run(name, out, *extra):
    """The same through the installed command line: ``python -m physim run NAME ...``."""
    return physim_run(name, out, *extra)


def test_mnn_iris_serial_two_workers_and_own_scheduler_agree(tmp_path):
    serial = _run("mnn_iris", tmp_path / "serial", "--no-plots")
    workers = _run("mnn_iris", tmp_path / "workers", "--no-plots", "--workers", "2")
    # a scheduler and two workers the user started with Dask's own command line
    cluster = CLICluster(tmp_path / "cluster", n_workers=2)
    try:
        remote = _physim_run("mnn_iris", tmp_path / "remote", "--no-plots", "--scheduler", cluster.address)
    finally:
        cluster.close()
    assert serial["sweep"]["n_workers"] == 1 and serial["sweep"]["scheduler"] == "serial"
    assert workers["sweep"]["n_workers"] == 2 and workers["sweep"]["scheduler"] == "embedded"
    assert remote["sweep"]["n_workers"] == 2 and remote["sweep"]["scheduler"] == cluster.address
    for other in (workers, remote):
        for key in ("per_seed", "paper_recipe_per_seed", "confusion_matrix_test"):
            assert serial[key] == other[key], key
        assert serial["train_accuracy_mean"] == other["train_accuracy_mean"]
        assert serial["test_accuracy_mean"] == other["test_accuracy_mean"]
    assert len(serial["per_seed"]) == 2 and serial["network"].startswith("paper_network()")
    assert np.sum(serial["confusion_matrix_test"]) == 2 * 45
    text = (tmp_path / "serial" / "lattice_trained.stl").read_text()
    assert text.startswith("solid") and text.count("facet normal") > 500


def test_mnn_learning_rules_quick(tmp_path):
    r = _run("mnn_learning_rules", tmp_path, "--no-plots")
    nudges = r["nudges"]
    assert nudges == sorted(nudges, reverse=True)  # decreasing, the smallest last
    ep, cl = np.array(r["equilibrium_propagation_cosine"]), np.array(r["coupled_learning_cosine"])
    assert ep.shape == cl.shape == (len(nudges),)
    assert ep[-1] > 1 - 1e-6 and ep[0] < ep[-1]
    err = np.array(r["equilibrium_propagation_relative_error"])
    assert np.all(np.diff(err) < 0) and err[-1] < 1e-3
    assert r["equilibrium_propagation_observed_rate"] == pytest.approx(1.0, abs=0.1)
    assert np.array(r["coupled_learning_cosine_to_its_limit"])[-1] > 1 - 1e-6
    assert set(r["iris_test_accuracy_by_rule"]) == {"in_situ", "coupled_learning", "equilibrium_propagation"}
