"""The real ``physim`` executable in a subprocess: interrupts, errors, help, verbosity, views."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

EXE = Path(sys.executable).with_name("physim")
PHYSIM = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "physim"]

SLOW_FIT = '''"""A fit that takes long enough to be interrupted."""
import time
from pathlib import Path

import numpy as np

from physim.optim import minimize
from physim.scenario import scenario_main


def run(ctx):
    marker = Path(ctx.out) / "started"

    def fun(x):
        marker.touch()
        time.sleep(0.02)
        return float(x @ x), 2 * x

    res = minimize(fun, np.full(3, 5.0), method="adam", lr=1e-3, maxiter=100000)
    ctx.log(f"fit stopped: {res.message}")
    (Path(ctx.out) / "picture.png").write_bytes(b"png")
    return {"optimizer_message": res.message, "iterations": res.nit}


if __name__ == "__main__":
    scenario_main(run, __doc__)
'''

SLOW_LOOP = '''"""Sleeps outside any fit."""
import time
from pathlib import Path

from physim.scenario import scenario_main


def run(ctx):
    (Path(ctx.out) / "started").touch()
    time.sleep(120)
    return {"done": True}


if __name__ == "__main__":
    scenario_main(run, __doc__)
'''

HELLO = '''"""Say hello and write results.

A second paragraph of long research notes that --help does not show.
"""
from physim.scenario import scenario_main


def run(ctx):
    ctx.log("hello quick=%s" % ctx.quick)
    return {"quick_flag": ctx.quick}


if __name__ == "__main__":
    scenario_main(run, __doc__)
'''

FIT = '''"""A quick fit with a progress bar."""
import numpy as np

from physim.optim import minimize
from physim.scenario import scenario_main


def run(ctx):
    res = minimize(lambda x: (float(x @ x), 2 * x), np.full(4, 3.0), method="adam", lr=1e-2, maxiter=400)
    return {"nit": res.nit}


if __name__ == "__main__":
    scenario_main(run, __doc__)
'''

JIT = '''"""Compiles one Numba function."""
from physim._jit import njit
from physim.scenario import scenario_main


@njit
def _twice(x):
    return 2.0 * x


def run(ctx):
    return {"value": _twice(1.5)}


if __name__ == "__main__":
    scenario_main(run, __doc__)
'''


CHATTY = '''"""Logs at three levels through the library's loggers."""
import logging

from physim.scenario import scenario_main


def run(ctx):
    log = logging.getLogger("physim.chatty")
    log.debug("debug detail")
    ctx.log("progress line")
    log.warning("a warning")
    return {}


if __name__ == "__main__":
    scenario_main(run, __doc__)
'''


@pytest.fixture
def scen(tmp_path, monkeypatch):
    d = tmp_path / "scen"
    d.mkdir()
    for name, text in (("slow_fit", SLOW_FIT), ("slow_loop", SLOW_LOOP), ("hello", HELLO), ("fit", FIT)):
        (d / f"{name}.py").write_text(text)
    monkeypatch.setenv("PHYSIM_SCENARIOS", str(d))
    monkeypatch.setenv("PHYSIM_OFFSCREEN", "1")
    monkeypatch.chdir(tmp_path)
    return d


def physim(*args, **kw):
    return subprocess.run([*PHYSIM, *args], capture_output=True, text=True, timeout=300, **kw)


def _wait_for(path: Path, proc, timeout=120.0):
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.05)


def _interrupt(args, marker: Path):
    proc = subprocess.Popen([*PHYSIM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(marker, proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)  # to physim only, as `kill -INT` or `timeout -s INT` would
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_ctrl_c_during_run_keeps_partial_results(scen, tmp_path):
    out = tmp_path / "o"
    rc, _, err = _interrupt(["run", "slow_fit", "--out", str(out)], out / "started")
    assert rc == 130, err
    assert "Traceback" not in err
    assert f"partial results in {out}/" in err
    res = json.loads((out / "results.json").read_text())
    assert res["interrupted"] is True and res["optimizer_message"] == "interrupted"
    assert res["iterations"] > 0
    assert (out / "picture.png").exists()  # the scenario went on to write its outputs


def test_ctrl_c_during_demo_stops_cleanly(scen, tmp_path):
    for name in ("slow_fit", "fit"):
        (scen / f"{name}.py").unlink()
    (scen / "zzz.py").write_text(HELLO)  # after slow_loop in the demo's (alphabetical) order
    root = tmp_path / "demo"
    rc, out, err = _interrupt(["demo", "--out", str(root), "--no-plots"], root / "slow_loop" / "started")
    assert rc == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "demo interrupted during slow_loop" in err
    assert json.loads((root / "slow_loop" / "results.json").read_text())["interrupted"] is True
    assert (root / "hello" / "results.json").exists()  # finished before the interrupt
    assert not (root / "zzz").exists()  # the demo stopped at the interrupt


def test_version_and_python_m(scen):
    from physim import __version__

    r = physim("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"physim {__version__}"
    r = subprocess.run([sys.executable, "-m", "physim", "list"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "hello" in r.stdout


def test_close_match_suggestion(monkeypatch):
    monkeypatch.delenv("PHYSIM_SCENARIOS", raising=False)
    r = physim("run", "mnn_behavior")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "did you mean mnn_behaviour" in r.stderr and r.stderr.count("\n") == 1


def test_run_help_is_short_and_describe_is_long(monkeypatch):
    monkeypatch.delenv("PHYSIM_SCENARIOS", raising=False)
    r = physim("run", "twin_ecg_fit", "--help")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) < 40, r.stdout
    assert "--quick" in r.stdout and "--mesh" in r.stdout and "physim describe twin_ecg_fit" in r.stdout
    assert "Active-set" not in r.stdout
    d = physim("describe", "twin_ecg_fit")
    assert d.returncode == 0 and "Active-set schemes" in d.stdout and len(d.stdout.splitlines()) > 60


def test_list_with_a_non_utf8_script(scen):
    (scen / "latin.py").write_bytes(b'"""Caf\xe9 scenario."""\n')
    (scen / "declared.py").write_bytes(b'# -*- coding: latin-1 -*-\n"""Caf\xe9 declared."""\n')
    r = physim("list")
    assert r.returncode == 0 and "Traceback" not in r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("latin"))
    assert "unreadable script" in line
    assert "Café declared." in r.stdout  # a coding declaration is honoured
    assert "hello" in r.stdout


def test_unwritable_out_is_one_line(scen, tmp_path):
    r = physim("run", "hello", "--out", "/dev/null/x")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "cannot write to the output directory /dev/null/x" in r.stderr
    # the script itself says the same
    r = subprocess.run(
        [sys.executable, str(scen / "hello.py"), "--out", "/dev/null/x"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    r = physim("demo", "--out", "/dev/null/x")
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1


def test_quiet_and_verbose(scen, tmp_path):
    r = physim("run", "hello", "--out", str(tmp_path / "a"))
    assert r.returncode == 0 and "[hello] hello quick=False" in r.stderr
    r = physim("-q", "run", "hello", "--out", str(tmp_path / "b"))
    assert r.returncode == 0 and r.stderr == ""
    r = physim("run", "-q", "hello", "--out", str(tmp_path / "c"))
    assert r.returncode == 0 and r.stderr == ""
    assert json.loads((tmp_path / "c" / "results.json").read_text())["quick_flag"] is False


def test_verbosity_levels_reach_the_library_loggers(scen, tmp_path):
    (scen / "chatty.py").write_text(CHATTY)
    r = physim("run", "chatty", "--out", str(tmp_path / "a"))
    assert r.returncode == 0, r.stderr
    assert "progress line" in r.stderr and "a warning" in r.stderr and "debug detail" not in r.stderr
    r = physim("-v", "run", "chatty", "--out", str(tmp_path / "b"))
    assert r.returncode == 0 and "debug detail" in r.stderr and "progress line" in r.stderr
    r = physim("run", "chatty", "-q", "--out", str(tmp_path / "c"))
    assert r.returncode == 0 and "a warning" in r.stderr
    assert "progress line" not in r.stderr and "debug detail" not in r.stderr
    assert r.stdout == ""


def test_importing_physim_prints_nothing():
    mods = "physim, physim.lattice, physim.eikonal, physim.cardiac, physim.ekf, physim.optim"
    mods += ", physim.distributed, physim.viz, physim.io, physim.scenario, physim.cli"
    r = subprocess.run([sys.executable, "-c", f"import {mods}"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", (r.stdout, r.stderr)


def test_progress_bar_to_a_pipe_updates_a_few_times(scen, tmp_path):
    r = physim("run", "fit", "--out", str(tmp_path / "f"))
    assert r.returncode == 0, r.stderr
    bar = [
        seg
        for seg in r.stderr.replace("\n", "\r").split("\r")
        if "it/s" in seg or "s/it" in seg or "400/400" in seg
    ]
    assert 1 <= len(bar) <= 8, r.stderr  # 400 iterations, a handful of updates
    assert "best=" in r.stderr and "400/400" in r.stderr
    r = physim("-q", "run", "fit", "--out", str(tmp_path / "g"))
    assert r.returncode == 0 and "400/400" not in r.stderr
    # the script itself, with -q: no bar either
    env = {k: v for k, v in os.environ.items() if k != "PHYSIM_LOG_LEVEL"}
    r = subprocess.run(
        [sys.executable, str(scen / "fit.py"), "-q", "--out", str(tmp_path / "h")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_first_compilation_is_announced_once(scen, tmp_path):
    (scen / "jit.py").write_text(JIT)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    first = physim("run", "jit", "--out", str(tmp_path / "j1"), env=env)
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("compiling Numba kernels") == 1
    assert "Numba compilation took" in first.stderr
    second = physim("run", "jit", "--out", str(tmp_path / "j2"), env=env)
    assert second.returncode == 0 and "compiling Numba" not in second.stderr
    assert "Numba compilation took" not in second.stderr  # loaded from the cache


def test_view_html_and_errors(tmp_path, monkeypatch):
    from physim.io import write_mesh

    monkeypatch.setenv("PHYSIM_OFFSCREEN", "1")
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]], dtype=float)
    tets = np.array([[0, 1, 2, 3], [1, 2, 3, 4]])
    d = tmp_path / "run"
    write_mesh(d / "model.vtu", pts, {"tetra": tets}, point_data={"activation": pts[:, 0]})
    r = physim("view", str(d), "--html", str(tmp_path / "v.html"))
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "v.html").read_text()
    assert '"name": "activation"' in text
    r = physim("view", str(d / "model.vtu"))  # no display here
    assert r.returncode == 2 and "--html" in r.stderr and "Traceback" not in r.stderr
    r = physim("view", str(tmp_path / "missing"), "--html", str(tmp_path / "w.html"))
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr
