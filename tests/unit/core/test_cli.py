import subprocess
import sys
from pathlib import Path

import pytest

from physim import cli


@pytest.fixture
def fake_scenarios(tmp_path, monkeypatch):
    d = tmp_path / "scen"
    (d / "benchmarks").mkdir(parents=True)
    (d / "hello.py").write_text(
        '"""Say hello and write results."""\n'
        "from physim.scenario import scenario_main\n"
        "def run(ctx):\n"
        "    ctx.log('hello quick=%s' % ctx.quick)\n"
        "    return {'quick_flag': ctx.quick, 'value': 1.5}\n"
        "if __name__ == '__main__':\n"
        "    scenario_main(run, __doc__)\n"
    )
    (d / "broken.py").write_text('"""Always fails."""\nraise SystemExit(3)\n')
    (d / "benchmarks" / "speed.py").write_text('"""A benchmark."""\nprint("bench")\n')
    (d / "_helper.py").write_text("x = 1\n")
    monkeypatch.setenv("PHYSIM_SCENARIOS", str(d))
    return d


def test_list(fake_scenarios, capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "hello" in out and "Say hello and write results." in out and "_helper" not in out
    assert "benchmarks/speed" not in out
    assert cli.main(["list", "--all"]) == 0
    assert "benchmarks/speed" in capsys.readouterr().out


def test_run_writes_results(fake_scenarios, tmp_path):
    import json

    out = tmp_path / "o"
    assert cli.main(["run", "hello", "--quick", "--out", str(out), "--no-plots"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["quick_flag"] is True and res["value"] == 1.5 and res["wall_time_s"] >= 0


def test_run_unknown_and_failing(fake_scenarios, capsys):
    assert cli.main(["run", "helo"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown scenario 'helo'" in err and "Traceback" not in err
    assert cli.main(["run", "broken"]) == 1
    assert "scenario broken failed" in capsys.readouterr().err


def test_demo_runs_every_scenario(fake_scenarios, tmp_path, capsys):
    rc = cli.main(["demo", "--out", str(tmp_path / "demo"), "--no-plots"])
    out = capsys.readouterr()
    assert rc == 1  # 'broken' fails, and demo says so
    assert (tmp_path / "demo" / "hello" / "results.json").exists()
    assert "broken" in out.err


def test_info(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert "numba threads" in out and "numba cache dir" in out


def test_console_script_user_error_has_no_traceback(fake_scenarios):
    r = subprocess.run([sys.executable, "-m", "physim.cli", "run", "nope"], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "unknown scenario" in r.stderr


def test_real_scenario_directory_is_found():
    d = cli.scenario_dir()
    assert d == Path(cli.__file__).resolve().parent.parent / "scenarios"


def test_best_time_returns_minimum_and_last_result():
    from physim.scenario import best_time

    calls = []

    def f():
        calls.append(1)
        return len(calls)

    t, out = best_time(f, repeat=4, budget_s=60.0)
    assert out == 4 and len(calls) == 4 and t >= 0.0
    calls.clear()
    t, out = best_time(f, repeat=10, budget_s=0.0)  # budget spent after the first call
    assert out == 1 and len(calls) == 1
