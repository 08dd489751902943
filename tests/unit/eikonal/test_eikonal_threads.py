"""Multi-threaded forward: the batched propagation reaches the fixed point of the one-node-at-a-time
method (batches of one) and of the slow reference, and its result does not depend on the number of
threads."""

import importlib

import numba
import numpy as np
import pytest
from eikonal_reference import solve_ref

from physim.eikonal import adjoint, box_tet_mesh, conduction_tensor, solve, square_tri_mesh

solve_mod = importlib.import_module("physim.eikonal.solve")


def _fibres(mesh, seed):
    return np.random.default_rng(seed).standard_normal((mesh.n_cells, mesh.dim))


def _solve(batch, threads, *args, **kw):
    """solve() with batches of at most ``batch`` nodes (None: the default) on ``threads`` threads."""
    old = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        with pytest.MonkeyPatch.context() as mp:
            if batch is not None:
                mp.setattr(solve_mod, "_BATCH", batch)
            return solve(*args, **kw)
    finally:
        numba.set_num_threads(old)


@pytest.mark.parametrize("ratio", [1, 2.5, 10, 20])
@pytest.mark.parametrize("seed", [0, 1])
def test_batched_equals_serial_kernel_on_random_tet_meshes(ratio, seed):
    mesh = box_tet_mesh(6, size=10.0, jitter=0.25, seed=seed)
    D = conduction_tensor(_fibres(mesh, seed), 0.1 * ratio, 0.1)
    src = np.random.default_rng(seed).choice(mesh.n_points, 3, replace=False)
    st = [0.0, 1.5, 4.0]
    serial = _solve(1, 1, mesh, D, src, st, tol=0.0)
    batched = _solve(None, 1, mesh, D, src, st, tol=0.0)
    scale = float(serial.times.max())
    assert np.max(np.abs(batched.times - serial.times)) <= 1e-12 * scale


@pytest.mark.parametrize("batch", [1, 3, 256])
@pytest.mark.parametrize("band", [0.0, 0.1, 10.0])
def test_batched_any_batch_and_band_matches_the_reference(monkeypatch, batch, band):
    """Whatever the batch size and band (even batches of causally dependent nodes), the fixed point
    is the slow reference relaxation's."""
    mesh = box_tet_mesh((3, 3, 2), size=3.0, jitter=0.2, seed=7)
    D = conduction_tensor(_fibres(mesh, 7), 1.0, 0.25)
    monkeypatch.setattr(solve_mod, "_BATCH", batch)
    monkeypatch.setattr(solve_mod, "_BAND", band)
    act = _solve(None, 2, mesh, D, [0, 5], [0.0, 0.3], tol=0.0)
    init = np.full(mesh.n_points, np.inf)
    init[[0, 5]] = [0.0, 0.3]
    ref = solve_ref(mesh.points, mesh.cells, D, init)
    assert np.max(np.abs(act.times - ref)) <= 1e-10 * float(ref.max())


def test_batched_result_is_independent_of_the_thread_count():
    """The default solve gives the same bits with 1 and 2 threads (also through the adjoint)."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2")
    mesh = box_tet_mesh(8, size=12.0, jitter=0.25, seed=3)
    D = conduction_tensor(_fibres(mesh, 3), 0.6, 0.24)
    one = _solve(None, 1, mesh, D, [0, 100], [0.0, 2.0])
    two = _solve(None, 2, mesh, D, [0, 100], [0.0, 2.0])
    again = _solve(None, 2, mesh, D, [0, 100], [0.0, 2.0])
    assert np.array_equal(one.times, two.times) and np.array_equal(two.times, again.times)
    assert np.array_equal(one.upwind_element, two.upwind_element)
    w = np.random.default_rng(0).standard_normal(mesh.n_points)
    assert np.array_equal(adjoint(one, w).D, adjoint(two, w).D)


def test_batched_triangles_equal_serial():
    mesh = square_tri_mesh(16, size=8.0, jitter=0.2, seed=2)
    D = conduction_tensor(_fibres(mesh, 2), 0.8, 0.2)
    serial = _solve(1, 1, mesh, D, [0], tol=0.0)
    batched = _solve(None, 2, mesh, D, [0], tol=0.0)
    assert np.max(np.abs(batched.times - serial.times)) <= 1e-12 * float(serial.times.max())
