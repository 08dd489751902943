"""Test-suite configuration shared by every solver's tests."""

import os

# never open a window: pyvista off-screen, matplotlib Agg
os.environ.setdefault("PHYSIM_OFFSCREEN", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.fixture
def rng():
    """A seeded random generator (different streams per test via the seed fixture are not needed)."""
    import numpy as np

    return np.random.default_rng(20241130)
