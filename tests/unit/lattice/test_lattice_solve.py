"""Linear and nonlinear equilibrium against dense references; floppy modes; validation."""

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))
from lattice_reference import (  # noqa: E402
    dense_linear_solve,
    dense_stiffness,
    nonlinear_residual,
    paper_network,
    random_network,
)

from physim.errors import (  # noqa: E402
    ConvergenceError,
    InvalidInputError,
    InvalidTypeError,
    NonFiniteError,
    ShapeError,
    SingularSystemError,
)
from physim.lattice import (  # noqa: E402
    SpringNetwork,
    floppy_modes,
    remove_bonds,
    solve,
    square_lattice,
    stiffness_from_width,
    stiffness_matrix,
    triangular_lattice,
    weight_force,
)


def test_untrained_paper_response_is_minus_0_5243_mm():
    net = paper_network()
    k = stiffness_from_width(2e-3)
    assert k == pytest.approx(137.5)
    f = np.zeros((14, 2))
    f[10, 1] = -weight_force(5.0)  # 5 g on the middle node of the third row
    eq = solve(net, k, f)
    np.testing.assert_allclose(eq.displacements[[12, 13], 1] * 1e3, -0.5243, atol=5e-5)
    np.testing.assert_allclose(eq.displacements[12, 0], -eq.displacements[13, 0], atol=1e-15)


@pytest.mark.parametrize("d", [2, 3])
def test_numba_assembly_equals_dense_reference(d):
    rng = np.random.default_rng(d)
    net = random_network(rng, d)
    k = rng.uniform(50, 200, net.n_bonds)
    K = stiffness_matrix(net, k).toarray()
    Kd, free, _ = dense_stiffness(net.points, net.bonds, k, net.fixed_dofs)
    np.testing.assert_allclose(K, Kd, rtol=1e-12, atol=1e-12 * np.abs(Kd).max())
    assert free == net.free_dofs.tolist()


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("prestress", [False, True])
def test_linear_solve_equals_dense_reference(d, prestress):
    rng = np.random.default_rng(10 + d)
    net = random_network(rng, d)
    k = rng.uniform(50, 200, net.n_bonds)
    f = rng.standard_normal((net.n_nodes, d))
    l0 = net.lengths * (1 + 0.01 * rng.standard_normal(net.n_bonds)) if prestress else None
    eq = solve(net, k, f, rest_length=l0)
    u_ref, e_ref = dense_linear_solve(net.points, net.bonds, k, net.fixed_dofs, f, l0)
    np.testing.assert_allclose(eq.displacements, u_ref, rtol=1e-9, atol=1e-12 * np.abs(u_ref).max())
    np.testing.assert_allclose(eq.elongations, e_ref, rtol=1e-9, atol=1e-12 * np.abs(e_ref).max())
    np.testing.assert_allclose(eq.tensions, k * e_ref, rtol=1e-9, atol=1e-10 * np.abs(k * e_ref).max())
    assert np.all(eq.displacements[net.fixed_dofs] == 0)


@pytest.mark.parametrize("nonlinear", [False, True])
def test_batched_solve_equals_loop_of_single_solves(nonlinear):
    rng = np.random.default_rng(3)
    net = random_network(rng, 2)
    k = rng.uniform(50, 200, net.n_bonds)
    F = 0.5 * rng.standard_normal((4, net.n_nodes, 2))
    eq = solve(net, k, F, nonlinear=nonlinear)
    assert eq.batched and eq.displacements.shape == F.shape and eq.elongations.shape == (4, net.n_bonds)
    for b in range(4):
        one = solve(net, k, F[b], nonlinear=nonlinear)
        np.testing.assert_allclose(eq.displacements[b], one.displacements, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(eq.tensions[b], one.tensions, rtol=1e-9, atol=1e-13)


@pytest.mark.parametrize("d", [2, 3])
def test_nonlinear_reduces_to_linear_for_tiny_loads(d):
    rng = np.random.default_rng(20 + d)
    net = random_network(rng, d)
    k = rng.uniform(50, 200, net.n_bonds)
    f = rng.standard_normal((net.n_nodes, d))
    lin = solve(net, k, f)
    for scale in (1e-3, 1e-5):
        nl = solve(net, k, scale * f, nonlinear=True)
        err = (
            np.abs(nl.displacements - scale * lin.displacements).max()
            / np.abs(scale * lin.displacements).max()
        )
        # geometric nonlinearity is O(u / a): the relative difference shrinks with the load
        assert err < 50 * scale * np.abs(lin.displacements).max()
    assert err < 1e-4


@pytest.mark.parametrize("d", [2, 3])
def test_nonlinear_equilibrium_satisfies_reference_residual(d):
    rng = np.random.default_rng(30 + d)
    net = random_network(rng, d)
    k = rng.uniform(50, 200, net.n_bonds)
    l0 = net.lengths * (1 + 0.02 * rng.standard_normal(net.n_bonds))
    f = 5.0 * rng.standard_normal((net.n_nodes, d))  # large: displacements ~ 10% of the spacing
    eq = solve(net, k, f, nonlinear=True, rest_length=l0)
    assert np.abs(eq.displacements).max() > 0.02
    r = nonlinear_residual(net.points, net.bonds, k, l0, net.fixed_dofs, f, eq.displacements)
    assert np.linalg.norm(r) < 1e-8 * np.linalg.norm(f)
    ell = np.linalg.norm(
        (net.points + eq.displacements)[net.bonds[:, 1]] - (net.points + eq.displacements)[net.bonds[:, 0]],
        axis=1,
    )
    np.testing.assert_allclose(eq.elongations, ell - l0, atol=1e-13)


def test_nonlinear_load_stepping_handles_large_rotation():
    # a two-bar truss loaded far beyond the small-displacement regime
    pts = np.array([[0.0, 0.0], [1.0, 0.3], [2.0, 0.0]])
    net = SpringNetwork(pts, [[0, 1], [1, 2]], [0, 2])
    f = np.zeros((3, 2))
    f[1, 1] = -40.0
    eq = solve(net, 100.0, f, nonlinear=True)
    r = nonlinear_residual(
        pts, net.bonds, np.full(2, 100.0), net.lengths, net.fixed_dofs, f, eq.displacements
    )
    assert np.linalg.norm(r) < 1e-8 * 40 and eq.displacements[1, 1] < -0.6  # snapped through


def test_nonlinear_convergence_error_names_residual():
    pts = np.array([[0.0, 0.0], [1.0, 0.3], [2.0, 0.0]])
    net = SpringNetwork(pts, [[0, 1], [1, 2]], [0, 2])
    f = np.zeros((3, 2))
    f[1, 1] = -40.0
    with pytest.raises(ConvergenceError, match="residual norm"):
        solve(net, 100.0, f, nonlinear=True, max_iter=1, max_bisections=0)


def test_floppy_bare_square_lattice_raises_with_count_and_nodes():
    net = square_lattice(4, 3, diagonals=False, spacing=1.0, fixed=[0, 1, 2, 3])
    with pytest.raises(SingularSystemError, match=r"has 2 floppy") as info:
        solve(net, 1.0, np.ones((12, 2)))
    # each unpinned row can slide sideways as a whole (16 free dofs, 14 bonds that act on them)
    assert info.value.n_modes == 2
    assert info.value.nodes.tolist() == list(range(4, 12))


def test_floppy_after_damage_names_the_dangling_node():
    net = paper_network()
    # node 12 keeps only its bond to node 13: it can swing about it
    cut = [i for i, (a, b) in enumerate(net.bonds) if 12 in (a, b) and 13 not in (a, b)]
    damaged = remove_bonds(net, cut)
    with pytest.raises(SingularSystemError, match=r"1 floppy .* \[12\]"):
        solve(damaged, 137.5, np.zeros((14, 2)))
    with pytest.raises(SingularSystemError, match="floppy"):
        solve(damaged, 137.5, np.zeros((14, 2)), nonlinear=True)


def test_floppy_detection_agrees_with_dense_rank_on_random_damage():
    rng = np.random.default_rng(7)
    base = triangular_lattice((5, 4, 3, 2), 1.0, fixed=[0, 4])
    n_floppy = 0
    for trial in range(40):
        cut = rng.choice(base.n_bonds, size=rng.integers(1, 6), replace=False)
        net = remove_bonds(base, cut)
        K, _, _ = dense_stiffness(net.points, net.bonds, np.ones(net.n_bonds), net.fixed_dofs)
        nullity = int(np.sum(np.linalg.eigvalsh(K) < 1e-9))
        if nullity:
            n_floppy += 1
            with pytest.raises(SingularSystemError) as info:
                solve(net, 1.0, np.ones((14, 2)))
            assert info.value.n_modes == nullity, trial
        else:
            u_ref, _ = dense_linear_solve(
                net.points, net.bonds, np.ones(net.n_bonds), net.fixed_dofs, np.ones((14, 2))
            )
            np.testing.assert_allclose(
                solve(net, 1.0, np.ones((14, 2))).displacements, u_ref, rtol=1e-8, atol=1e-10
            )
    assert 5 < n_floppy < 40  # both branches exercised


def test_floppy_modes_sparse_path_on_a_larger_lattice():
    net = square_lattice(40, 35, diagonals=True, spacing=1.0, fixed=np.arange(40))  # 2720 free dofs
    corner = net.n_nodes - 1
    cut = [i for i, (a, b) in enumerate(net.bonds) if corner in (a, b)][:-1]
    fm = floppy_modes(remove_bonds(net, cut))
    assert fm.count == 1 and fm.nodes.tolist() == [corner]
    assert floppy_modes(net).count == 0


@pytest.mark.parametrize(
    "stiffness, forces, kw, exc, match",
    [
        (np.ones(27), np.zeros((14, 2)), {}, ShapeError, r"stiffness must be a scalar or have shape \(28,\)"),
        (-1.0, np.zeros((14, 2)), {}, InvalidInputError, "stiffness must be > 0"),
        (np.r_[np.ones(27), np.nan], np.zeros((14, 2)), {}, NonFiniteError, "index 27"),
        (1.0, np.zeros((13, 2)), {}, ShapeError, r"forces must have shape \(14, 2\)"),
        (1.0, np.zeros((2, 14, 3)), {}, ShapeError, "forces"),
        (1.0, np.full((14, 2), np.inf), {}, NonFiniteError, "forces"),
        (1.0, np.zeros((14, 2)), {"rest_length": np.zeros(28)}, InvalidInputError, "rest_length"),
        (1.0, np.zeros((14, 2)), {"rest_length": np.ones(3)}, ShapeError, "rest_length"),
        (1.0, np.zeros((14, 2)), {"rtol": -1.0}, InvalidInputError, "rtol"),
        (1.0, np.zeros((14, 2), dtype=complex), {}, InvalidTypeError, "real numeric"),
    ],
)
def test_solve_validation_errors(stiffness, forces, kw, exc, match):
    with pytest.raises(exc, match=match):
        solve(paper_network(), stiffness, forces, **kw)


def test_solve_rejects_non_network():
    with pytest.raises(InvalidTypeError, match="SpringNetwork"):
        solve(np.zeros((3, 2)), 1.0, np.zeros((3, 2)))


@settings(max_examples=15, deadline=None)
@given(
    rows=st.lists(st.integers(3, 6), min_size=2, max_size=4),
    seed=st.integers(0, 2**16),
    alpha=st.floats(-3.0, 3.0, allow_nan=False),
)
def test_linear_response_is_superposable_and_stores_positive_work(rows, seed, alpha):
    # consecutive rows of a triangular patch must differ by at most one node
    for i in range(1, len(rows)):
        rows[i] = min(max(rows[i], rows[i - 1] - 1), rows[i - 1] + 1)
    rng = np.random.default_rng(seed)
    net = triangular_lattice(rows, 0.5, fixed=np.arange(rows[0]))
    k = rng.uniform(1.0, 10.0, net.n_bonds)
    f1, f2 = rng.standard_normal((2, net.n_nodes, 2))
    u = solve(net, k, np.stack([f1, f2, f1 + alpha * f2])).displacements
    np.testing.assert_allclose(u[2], u[0] + alpha * u[1], atol=1e-10 * (1 + np.abs(u).max()))
    assert np.sum(f1 * u[0]) > 0  # work of the load = 2 x stored energy > 0 on a rigid network


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_out_of_range_bond_indices_always_rejected(data):
    n = data.draw(st.integers(2, 8))
    bad = data.draw(st.one_of(st.integers(n, 100), st.integers(-100, -1)))
    pts = np.column_stack([np.arange(n, dtype=float), np.zeros(n)])
    with pytest.raises(InvalidInputError, match=f"index {bad}"):
        SpringNetwork(pts, [[0, 1], [1, bad]], [0])


@pytest.mark.parametrize("batched", [False, True])
def test_dense_and_sparse_factorisations_agree(monkeypatch, batched):
    """Small networks use dense Cholesky; the answer equals SuperLU's and the floppy check still works."""
    import importlib

    solve_mod = importlib.import_module("physim.lattice.solve")
    rng = np.random.default_rng(5)
    net = triangular_lattice((5, 4, 3, 2), 16e-3, fixed=[0, 4])
    k = rng.uniform(100, 170, net.n_bonds)
    f = 1e-2 * rng.standard_normal((3, net.n_nodes, 2) if batched else (net.n_nodes, 2))
    assert net.n_free <= solve_mod.DENSE_FACTOR_LIMIT
    eq_dense = solve(net, k, f)
    assert isinstance(eq_dense._factors[0], solve_mod._DenseFactor)
    monkeypatch.setattr(solve_mod, "DENSE_FACTOR_LIMIT", 0)
    eq_sparse = solve(net, k, f)
    assert not isinstance(eq_sparse._factors[0], solve_mod._DenseFactor)
    np.testing.assert_allclose(eq_dense.displacements, eq_sparse.displacements, rtol=1e-10, atol=1e-16)
    monkeypatch.undo()
    floppy = triangular_lattice((5, 4, 3, 2), 16e-3, fixed=[0])  # one pinned node: a rigid rotation
    with pytest.raises(SingularSystemError, match="floppy"):
        solve(floppy, k, f)
