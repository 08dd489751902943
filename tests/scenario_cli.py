"""Run a scenario through the installed command line, as a user does, and read its results."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def physim_run(name: str, out, *extra: str) -> dict:
    """``python -m physim run NAME --quick --out OUT EXTRA...`` (off-screen, no PHYSIM_SCHEDULER); its results.json."""
    env = {**os.environ, "PHYSIM_OFFSCREEN": "1", "MPLBACKEND": "Agg"}
    env.pop("PHYSIM_SCHEDULER", None)
    cmd = [sys.executable, "-m", "physim", "run", name, "--quick", "--out", str(out), *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, f"{name} {' '.join(extra)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return json.loads((out / "results.json").read_text())
