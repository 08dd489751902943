"""physim.eikonal is a general solver: importing it must not pull in the cardiac application."""

import subprocess
import sys


def test_eikonal_imports_nothing_cardiac():
    code = (
        "import sys, physim.eikonal; print(sorted(m for m in sys.modules if m.startswith('physim.cardiac')))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]", r.stdout
