"""The worked example of docs/ekf_models.md runs as written."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[3] / "docs" / "ekf_models.md"


@pytest.mark.skipif(not DOC.exists(), reason="docs/ not present (installed package)")
def test_custom_model_guide_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 5
    namespace: dict = {"__name__": "ekf_models_doc"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{DOC.name} block {i + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "check_model(" in out and "dJ/db =" in out and "final position RMSE" in out
