"""twin_ensemble through ``physim run`` against a Dask scheduler and workers the user started."""

from dask_cluster import CLICluster
from scenario_cli import physim_run


def _physim_run(out, *extra):
    return physim_run("twin_ensemble", out, "--no-plots", "--members", "2", "--maxiter", "3", *extra)


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
