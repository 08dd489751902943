"""The standalone HTML view in a real headless browser (Chromium through the DevTools protocol).

Skipped, with the reason, only when no Chromium is installed (``.ci/run`` installs
Debian's ``chromium``).
"""

import io
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from physim import viz

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from chromium import Browser, find_chromium  # noqa: E402

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium not installed (apt-get install chromium): HTML view not tested in a browser",
)


def _pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(float)


def _coloured_fraction(img: np.ndarray) -> float:
    """Fraction of strongly coloured pixels (neither white/grey background nor shading grey)."""
    sat = img.max(axis=2) - img.min(axis=2)
    return float((sat > 60).mean())


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    import pyvista as pv

    grid = pv.ImageData(dimensions=(12, 12, 12), spacing=(2.0, 2.0, 2.0)).cast_to_unstructured_grid()
    grid.point_data["activation"] = grid.points[:, 0]  # varies along x
    grid.point_data["error"] = np.zeros(grid.n_points)  # constant: one colour everywhere
    path = tmp_path_factory.mktemp("view") / "view.html"
    viz.write_view_html(
        path,
        grid,
        title="test view",
        cmaps={"activation": "turbo", "error": "Greys"},
        clims={"error": (0.0, 1.0)},
    )
    return path


# Rendering is asynchronous (WebGL through SwiftShader on the CPU): on a busy machine the
# first frame, or the frame after a field change, can take seconds to reach the screen. The
# test therefore waits for the state it checks, up to a generous deadline, instead of sleeping
# a fixed time; the checks themselves are the same whatever the wait.
WAIT_S = 120.0


def _screenshot_when(b: Browser, ok, timeout: float = WAIT_S) -> np.ndarray:
    """Screenshots until ``ok(img)`` holds or ``timeout`` passes; the last screenshot."""
    deadline = time.monotonic() + timeout
    while True:
        img = _pixels(b.screenshot())
        if ok(img) or time.monotonic() > deadline:
            return img
        b.pump(0.25)


def test_page_loads_without_errors_and_shows_the_coloured_mesh(page):
    canvas = (slice(200, None), slice(None))  # below the controls in the top-left corner
    with Browser(CHROMIUM, timeout=WAIT_S) as b:
        b.open(page.as_uri())
        assert b.wait_for("document.body && document.body.dataset.physimReady === '1'", timeout=WAIT_S), (
            f"view never became ready; errors: {b.errors()}"
        )
        img = _screenshot_when(b, lambda im: _coloured_fraction(im) > 0.05)
        assert b.errors() == []
        assert b.requests() == []  # standalone: nothing fetched from the network
        assert b.evaluate("document.getElementById('physim-field').options.length") == 2
        assert b.evaluate("document.body.dataset.physimField") == "activation"
        # the mesh, coloured by the turbo colormap: many saturated pixels in several hues
        frac = _coloured_fraction(img)
        assert frac > 0.05, f"only {frac:.3f} of the screenshot is coloured: blank canvas?"
        sat = img.max(axis=2) - img.min(axis=2) > 60
        hues = {tuple(c) for c in (img[sat] // 64).astype(int)}
        assert len(hues) >= 4, f"the mesh shows too few colours ({hues})"
        # choosing the other field (constant, grey colormap) recolours the mesh
        b.evaluate(
            "(() => { const s = document.getElementById('physim-field'); s.value = '1';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        assert b.wait_for("document.body.dataset.physimField === 'error'", timeout=WAIT_S)
        before = _coloured_fraction(img[canvas])
        img2 = _screenshot_when(b, lambda im: _coloured_fraction(im[canvas]) < 0.2 * before)
        after = _coloured_fraction(img2[canvas])
        assert after < 0.2 * before, f"mesh still coloured after choosing 'error' ({after:.3f} vs {before:.3f})"
        assert b.errors() == []
