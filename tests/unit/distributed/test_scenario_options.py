"""--workers / --scheduler: parsed by every scenario, forwarded by `physim run`."""

from __future__ import annotations

import json

import pytest

from physim import cli
from physim.scenario import scenario_main


def _run(ctx):
    return {"workers": ctx.workers, "scheduler": ctx.scheduler, "extra": sorted(ctx.extra)}


def test_scenario_context_exposes_workers_and_scheduler(tmp_path):
    res = scenario_main(
        _run, "doc", ["--out", str(tmp_path), "--no-plots", "--workers", "3", "--scheduler", "tcp://h:8786"]
    )
    assert res["workers"] == 3 and res["scheduler"] == "tcp://h:8786" and res["extra"] == []
    res = scenario_main(_run, "doc", ["--out", str(tmp_path), "--no-plots"])
    assert res["workers"] is None and res["scheduler"] is None


@pytest.mark.parametrize("bad", ["0", "-2", "two"])
def test_scenario_rejects_bad_worker_counts(tmp_path, bad, capsys):
    with pytest.raises(SystemExit) as e:
        scenario_main(_run, "doc", ["--out", str(tmp_path), "--workers", bad])
    assert e.value.code == 2 and "must be a positive integer" in capsys.readouterr().err


@pytest.fixture
def echo_scenario(tmp_path, monkeypatch):
    d = tmp_path / "scen"
    d.mkdir()
    (d / "echo.py").write_text(
        '"""Report the distribution options."""\n'
        "from physim.scenario import scenario_main\n"
        "def run(ctx):\n"
        "    return {'workers': ctx.workers, 'scheduler': ctx.scheduler}\n"
        "if __name__ == '__main__':\n"
        "    scenario_main(run, __doc__)\n"
    )
    monkeypatch.setenv("PHYSIM_SCENARIOS", str(d))
    return d


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "echo", "--workers", "2", "--scheduler", "serial"],
        ["run", "--workers", "2", "--scheduler", "serial", "echo"],
    ],
)
def test_physim_run_forwards_workers_and_scheduler(echo_scenario, tmp_path, argv):
    out = tmp_path / "o"
    assert cli.main([*argv, "--out", str(out), "--no-plots"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["workers"] == 2 and res["scheduler"] == "serial"
