"""pyproject lists every package, and the package data a wheel needs is where the build takes it."""

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[3]


def test_every_subpackage_is_listed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "physim").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found <= listed, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"
    assert cfg["package-dir"] == {"physim.scenarios": "scenarios", "physim.meshes": "meshes"}
    assert (ROOT / "scenarios" / "__init__.py").is_file() and (ROOT / "meshes" / "__init__.py").is_file()
    data = cfg["package-data"]
    assert "py.typed" in data["physim"] and (ROOT / "physim" / "py.typed").is_file()
    for name in data["physim.meshes"]:
        assert (ROOT / "meshes" / name).is_file()


def test_installed_resources_are_found():
    from physim.cardiac.heart import mesh_path
    from physim.cli import scenario_dir

    assert mesh_path("10k").is_file() and mesh_path("65k").is_file()
    assert (scenario_dir() / "eikonal_activation.py").is_file()
