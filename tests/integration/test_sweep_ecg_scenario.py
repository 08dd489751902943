"""`physim run sweep_ecg_sensitivity` gives the same numbers in-process, on an embedded
cluster (--workers 2) and on a cluster started with Dask's command line (--scheduler)."""

from __future__ import annotations

import numpy as np
from dask_cluster import CLICluster
from scenario_cli import physim_run

KEYS = ("ecg_correlation_per_lead", "ecg_correlation_min", "total_activation_ms")


def _physim_run(out, *options):
    return physim_run("sweep_ecg_sensitivity", out, "--no-plots", *options)


def test_same_numbers_serial_workers_and_scheduler(tmp_path):
    serial = _physim_run(tmp_path / "serial", "--scheduler", "serial")
    embedded = _physim_run(tmp_path / "workers", "--workers", "2")
    cluster = CLICluster(tmp_path / "cluster", n_workers=2)
    try:
        remote = _physim_run(tmp_path / "remote", "--scheduler", cluster.address)
    finally:
        cluster.close()
    assert serial["sweep"]["n_workers"] == 1
    assert embedded["sweep"]["n_workers"] == 2 and remote["sweep"]["n_workers"] == 2
    assert remote["sweep"]["scheduler"] == cluster.address
    for res in (serial, embedded, remote):
        assert res["sweep"]["n_failed"] == 0 and res["sweep"]["n_tasks"] == 28
        # the reference lies on the grid: its self-correlation is 1 up to rounding
        assert abs(res["min_correlation_at_reference"] - 1.0) <= 1e-12
    for key in KEYS:
        a = np.array(serial[key], dtype=float)
        assert np.isfinite(a).all(), key
        for other in (embedded, remote):
            np.testing.assert_array_equal(np.array(other[key], dtype=float), a, err_msg=key)
    assert serial["ranges"] == embedded["ranges"] == remote["ranges"]
    assert embedded["sweep"]["shared_transfer_s"] > 0 and remote["sweep"]["shared_transfer_s"] > 0
