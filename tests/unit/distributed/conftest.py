"""Fixtures of the run_sweep tests."""

from __future__ import annotations

import pytest
from dask_cluster import CLICluster


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory):
    """A scheduler and two single-thread worker processes for the whole module."""
    c = CLICluster(tmp_path_factory.mktemp("dask-cli"), n_workers=2)
    yield c
    c.close()
