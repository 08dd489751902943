"""Every scenario runs with --quick and writes what it promises."""

import json
import os
import subprocess
import sys

import pytest

from physim.cli import list_scenarios

SCENARIOS = list_scenarios()
#: scenarios with 3D results: they write an interactive view.html beside their pictures
THREE_D = {"eikonal_activation", "twin_activation_fit", "twin_ecg_fit", "twin_ensemble"}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_quick(name, tmp_path):
    out = tmp_path / name
    env = {**os.environ, "PHYSIM_OFFSCREEN": "1", "MPLBACKEND": "Agg"}
    r = subprocess.run(
        [sys.executable, str(SCENARIOS[name]), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert r.returncode == 0, f"{name} failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    results = json.loads((out / "results.json").read_text())
    assert results["quick"] is True
    assert any(out.glob("*.png")), f"{name} wrote no picture"
    if name in THREE_D:
        assert (out / "view.html").stat().st_size > 10_000, f"{name} wrote no view.html"
    if name == "ekf_receding_horizon":  # the keys the issue names, with their confidence intervals
        assert results["n_runs"] == 6
        for s in ("straight", "open_loop", "receding"):
            lo, hi = results[f"rmse_final_{s}_ci95"]
            assert 0 <= lo <= results[f"rmse_final_{s}"] <= hi
        assert results["max_constraint_violation"] <= 1e-6
        assert results["infeasible_plans_receding"] == 0
        assert 0 < results["replan_time_ratio"] < float("inf")
    if name == "ekf_active_sensing":
        # quick mode optimises the plans fully: the pictures show a real gain, with the MC count
        for case in ("N50", "N1000"):
            assert results[case]["cost_reduction_percent"] > 10, results[case]
            assert results[case]["iterations"] > 20 and results[case]["mc_runs"] >= 20
    if name.startswith("twin_"):
        assert (out / "ecg_target_vs_fitted.csv").read_text().startswith("time (ms),I target (mV)")


def test_at_least_one_scenario_exists():
    assert SCENARIOS, "no scenarios found"
