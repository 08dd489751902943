import numpy as np

from physim import viz


def test_plot_curves_writes_png(tmp_path):
    p = viz.plot_curves(
        {"train": [3, 2, 1.5, 1.2], "test": ([0, 2], [3.5, 1.4])}, tmp_path / "c.png", logy=True
    )
    assert p.exists() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_offscreen_mesh_picture(tmp_path):
    import pyvista as pv

    grid = pv.ImageData(dimensions=(4, 4, 4)).cast_to_unstructured_grid()
    field = grid.points[:, 0] + grid.points[:, 1]
    p = viz.plot_mesh_field(grid, field, tmp_path / "m.png", title="activation (ms)", isolines=3)
    assert p.exists() and p.stat().st_size > 1000
    from PIL import Image

    img = np.asarray(Image.open(p))
    assert img.shape[0] == 768 and img.shape[1] == 1024
    assert img.std() > 5  # not a blank picture


def test_headless_flag(monkeypatch):
    monkeypatch.setenv("PHYSIM_OFFSCREEN", "1")
    assert viz.headless()
