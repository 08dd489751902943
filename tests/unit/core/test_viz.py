import csv

import numpy as np
import pytest

from physim import viz


def test_plot_curves_writes_png_and_csv(tmp_path):
    p = viz.plot_curves(
        {"train": [3, 2, 1.5, 1.2], "test": ([0, 2], [3.5, 1.4])},
        tmp_path / "c.png",
        logy=True,
        references={"paper": 1.1},
        right={"accuracy": [0.2, 0.5, 0.7, 0.9]},
        right_ylabel="accuracy",
    )
    assert p.exists() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.reader(open(tmp_path / "c.csv")))
    assert rows[0] == ["train x", "train", "test x", "test", "paper", "accuracy x", "accuracy"]
    assert [float(v) for v in rows[1][:2]] == [0.0, 3.0]
    assert rows[2][2:4] == ["2.0", "1.4"] and rows[3][2] == ""  # the shorter curve is padded
    assert float(rows[4][6]) == 0.9


def test_plot_curves_integer_iteration_ticks(tmp_path, monkeypatch):
    seen = {}
    real = viz.save_figure

    def spy(fig, path, **kw):
        ax = fig.axes[0]
        seen["ticks"] = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        seen["legend"] = [t.get_text() for t in ax.get_legend().get_texts()]
        return real(fig, path, **kw)

    monkeypatch.setattr(viz, "save_figure", spy)
    viz.plot_curves({"seed 0": [3, 2, 1], "seed 1": [2, 1.5, 1]}, tmp_path / "c.png")
    assert seen["ticks"] and all(float(t).is_integer() for t in seen["ticks"])
    assert seen["legend"] == ["seed 0", "seed 1"]


@pytest.mark.parametrize(
    "lo,hi", [(0, 61.8), (0.0, 0.0371), (-60, 60), (13, 52), (1e-9, 3e-9), (5.0, 5.0), (-3.2, -0.1)]
)
def test_nice_ticks_are_round_and_cover_the_range(lo, hi):
    t = viz.nice_ticks(lo, hi, 5)
    step = t[1] - t[0]
    assert t[0] <= lo and t[-1] >= hi and 3 <= len(t) <= 11
    mantissa = step / 10 ** np.floor(np.log10(step))
    assert any(np.isclose(mantissa, m) for m in (1, 2, 2.5, 5))
    assert np.allclose(t / step, np.round(t / step))  # multiples of the step
    assert np.allclose(np.diff(t), step)


def test_nice_limits_example():
    assert viz.nice_limits(0, 61.8, 6) == (0.0, 70.0, 10.0)
    assert viz.nice_limits(-58, 59, 5)[:2] == (-60.0, 60.0)


def test_scalar_bar_args_labels_on_round_values():
    a = viz.scalar_bar_args("activation time (ms)", (0.0, 70.0))
    # labels equally spaced over the range land on multiples of 10 (or 20)
    step = 70.0 / (a["n_labels"] - 1)
    assert step in (10.0, 20.0, 35.0, 70.0) and a["fmt"] == "%.0f"


def test_write_csv_columns_and_matrices(tmp_path):
    p = viz.write_csv(tmp_path / "d.csv", {"t": [0.0, 1.0], "V": np.array([[1.0, 2.0], [3.0, np.nan]])})
    rows = list(csv.reader(open(p)))
    assert rows == [["t", "V[0]", "V[1]"], ["0.0", "1.0", "2.0"], ["1.0", "3.0", "nan"]]


def test_save_figure_writes_data(tmp_path):
    fig, ax = viz.figure()
    ax.plot([0, 1], [1, 2])
    viz.save_figure(fig, tmp_path / "f.png", data={"x": [0, 1], "y": [1, 2]})
    assert (tmp_path / "f.png").exists() and (tmp_path / "f.csv").read_text().startswith("x,y")


def _box():
    import pyvista as pv

    return pv.ImageData(dimensions=(6, 6, 6), spacing=(2.0, 2.0, 2.0)).cast_to_unstructured_grid()


def test_offscreen_mesh_picture(tmp_path):
    grid = _box()
    field = grid.points[:, 0] + grid.points[:, 1]
    p = viz.plot_mesh_field(grid, field, tmp_path / "m.png", title="activation (ms)", isolines=3)
    from PIL import Image

    img = np.asarray(Image.open(p).convert("RGB")).astype(float)
    assert img.shape[0] > 300 and img.shape[1] > 300
    assert img.std() > 5  # not a blank picture
    # the colormap's colours are in the picture (the mesh is coloured, not grey)
    sat = img.max(axis=2) - img.min(axis=2)
    assert (sat > 80).mean() > 0.02


def test_mesh_panels_one_colorbar_per_panel(tmp_path, monkeypatch):
    grid = _box()
    grid.point_data["a"] = grid.points[:, 0]
    grid.cell_data["b"] = np.arange(grid.n_cells, dtype=float) * 1e-3
    seen = {}
    real = viz.save_figure

    def spy(fig, path, **kw):
        seen["colorbars"] = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
        seen["labels"] = [ax.get_xlabel() for ax in seen["colorbars"]]
        seen["ticks"] = [list(ax.get_xticks()) for ax in seen["colorbars"]]
        seen["titles"] = [ax.get_title() for ax in fig.axes if ax.get_title()]
        return real(fig, path, **kw)

    monkeypatch.setattr(viz, "save_figure", spy)
    marker = viz.Marker([[0.0, 0.0, 10.0]], "source", "white")
    viz.mesh_panels(
        tmp_path / "p.png",
        [
            viz.Panel(grid, "a", title="left", label="time (ms)", isolines=4, markers=[marker]),
            viz.Panel(grid, "b", title="right", label="index (1)", cmap="magma"),
        ],
    )
    assert len(seen["colorbars"]) == 2 and seen["labels"] == ["time (ms)", "index (1)"]
    assert seen["titles"] == ["left", "right"]
    for ticks in seen["ticks"]:
        step = np.diff(ticks)
        assert np.allclose(step, step[0])
        mant = step[0] / 10 ** np.floor(np.log10(step[0]))
        assert any(np.isclose(mant, m) for m in (1, 2, 2.5, 5))


def test_as_grid_from_physim_mesh():
    from physim.eikonal import box_tet_mesh

    m = box_tet_mesh(2, size=1.0)
    g = viz.as_grid(m)
    assert g.n_points == m.n_points and g.n_cells == m.n_cells


def test_view_html_is_standalone(tmp_path):
    grid = _box()
    grid.point_data["activation"] = grid.points[:, 2]
    grid.cell_data["region"] = np.arange(grid.n_cells) % 3
    grid.point_data["fibers"] = np.tile([1.0, 0.0, 0.0], (grid.n_points, 1))
    p = viz.write_view_html(tmp_path / "v.html", grid, title="box </script> test")
    text = p.read_text()
    assert text.startswith("<!doctype html>") and "OfflineLocalView" in text
    assert "</script> test" not in text  # the title cannot close the script element
    for name in ("activation", "region", "|fibers|"):
        assert f'"name": "{name}"' in text
    import re

    # nothing is fetched from the network: no http(s) URL in a src/href or the favicon template
    assert not re.search(r"(src|href)=[\"']https?://", text)
    assert "favicon-${t}" not in text


def test_headless_flag(monkeypatch):
    monkeypatch.setenv("PHYSIM_OFFSCREEN", "1")
    assert viz.headless()


def test_interactive_view_switches_fields():
    grid = _box()
    grid.point_data["a"] = grid.points[:, 0]
    grid.cell_data["b"] = np.arange(grid.n_cells, dtype=float)
    view = viz.InteractiveView({"one": grid, "two": grid.copy()}, off_screen=True)
    assert view.names == ["one: a", "one: b", "two: a", "two: b"]
    actor = view.plotter.actors["physim-field"]
    assert actor.mapper.GetArrayName() == "f0"
    view.show(view.current + 1)
    assert view.current == 1 and view.plotter.actors["physim-field"].mapper.GetArrayName() == "f1"
    view.show(-1)
    assert view.current == 3
    view.plotter.close()


def test_read_view_meshes(tmp_path):
    from physim.io import write_mesh

    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    write_mesh(tmp_path / "a.vtu", pts, {"tetra": np.array([[0, 1, 2, 3]])}, point_data={"t": pts[:, 0]})
    meshes = viz.read_view_meshes(tmp_path)
    assert list(meshes) == ["a.vtu"] and "t" in meshes["a.vtu"].point_data
    with pytest.raises(FileNotFoundError):
        viz.read_view_meshes(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        viz.read_view_meshes(tmp_path / "empty")
