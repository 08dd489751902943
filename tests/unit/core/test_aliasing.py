"""Results and models own read-only copies: editing any input array after the call changes
nothing already computed (the result, and the adjoint computed from it)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from physim._result import Result


def _arrays(obj, depth=0):
    """name -> copy of every array field of a result (one level into nested results)."""
    out = {}
    fields = getattr(obj, "__dataclass_fields__", None) or {
        k: None for k, v in vars(obj).items() if not k.startswith("__")
    }
    for name in fields:
        v = getattr(obj, name)
        if isinstance(v, np.ndarray):
            out[name] = v.copy()
        elif isinstance(v, dict):
            out.update({f"{name}[{k}]": w.copy() for k, w in v.items() if isinstance(w, np.ndarray)})
        elif depth == 0 and isinstance(v, Result):
            out.update({f"{name}.{k}": w for k, w in _arrays(v, 1).items()})
    return out


def _same(before: dict, obj, what):
    after = _arrays(obj)
    assert after.keys() == before.keys(), what
    for k in before:
        np.testing.assert_array_equal(after[k], before[k], err_msg=f"{what}.{k} changed")


def _readonly(obj, what):
    for name in _arrays(obj, 1):
        if "." in name or "[" in name:
            continue
        arr = getattr(obj, name)
        if arr.size:
            with pytest.raises(ValueError, match="read-only"):
                arr.reshape(-1)[0] = arr.reshape(-1)[0]
            assert not arr.flags.writeable, f"{what}.{name} is writable"


def _grads_equal(a, b, what):
    for k, v in _arrays(a).items():
        np.testing.assert_array_equal(v, _arrays(b)[k], err_msg=f"adjoint {what}.{k} changed")


# --------------------------------------------------------------------------------- lattice


@pytest.mark.parametrize("nonlinear", [False, True])
def test_lattice_equilibrium_and_network_own_their_inputs(nonlinear):
    from physim.lattice import SpringNetwork, adjoint, solve, triangular_lattice

    base = triangular_lattice((4, 3, 2), fixed=[0, 3])
    points, bonds = np.array(base.points), np.array(base.bonds)
    fixed = np.array([0, 3])
    net = SpringNetwork(points, bonds, fixed)
    k = np.linspace(100.0, 160.0, net.n_bonds)
    l0 = np.array(net.lengths) * 1.01
    f = np.zeros((net.n_nodes, 2))
    f[-1, 1] = -0.5
    eq = solve(net, k, f, rest_length=l0, nonlinear=nonlinear)
    g = np.random.default_rng(0).standard_normal(eq.displacements.shape)
    grad = adjoint(eq, g)
    g_copy = g.copy()
    snap, snap_net, snap_grad = _arrays(eq), _arrays(net), _arrays(grad)
    for a in (points, k, l0, f, g):
        a *= 3.0
    bonds[:] = bonds[::-1]
    fixed[:] = [1, 2]
    _same(snap, eq, "Equilibrium")
    _same(snap_net, net, "SpringNetwork")
    _grads_equal(grad, adjoint(eq, g_copy), "LatticeGradient")
    _same(snap_grad, grad, "LatticeGradient")
    for obj in (eq, grad):
        _readonly(obj, type(obj).__name__)


def test_lattice_objective_owns_forces_and_rest_lengths():
    from physim.lattice import LatticeObjective, mse_loss, paper_network

    net = paper_network()
    forces = np.zeros((3, net.n_nodes, 2))
    forces[:, 10, 1] = [-0.01, -0.02, -0.03]
    l0 = np.array(net.lengths)
    target = np.zeros((3, 2))
    obj = LatticeObjective(
        net, forces, lambda u, idx: mse_loss(u, [[12, 1], [13, 1]], target[idx]), rest_length=l0
    )
    z = np.full(net.n_bonds, 140.0)
    before = obj(z)
    forces *= 2
    l0 *= 1.1
    after = obj(z)
    assert before[0] == after[0]
    np.testing.assert_array_equal(before[1], after[1])


# --------------------------------------------------------------------------------- eikonal


@pytest.mark.parametrize("kind", ["nodes", "points"])
def test_activation_and_mesh_own_their_inputs(kind):
    from physim.eikonal import TetMesh, adjoint, box_tet_mesh, solve

    m0 = box_tet_mesh(3, 3.0, jitter=0.1, seed=1)
    points, cells = np.array(m0.points), np.array(m0.cells)
    mesh = TetMesh(points, cells)
    rng = np.random.default_rng(2)
    D = np.tile(np.diag([0.36, 0.16, 0.16]), (mesh.n_cells, 1, 1))
    src = np.array([0, 17]) if kind == "nodes" else np.array([[0.4, 0.5, 0.6], [2.1, 2.2, 1.9]])
    times = np.array([0.0, 1.5])
    act = solve(mesh, D, src, times)
    g = rng.standard_normal(mesh.n_points)
    grad = adjoint(act, g)
    g_copy = g.copy()
    snap, snap_mesh, snap_grad = _arrays(act), _arrays(mesh), _arrays(grad)
    for a in (points, D, times, g):
        a *= 2.0
    cells[:] = cells[::-1]
    src[...] = src[::-1]
    _same(snap, act, "Activation")
    _same(snap_mesh, mesh, "TetMesh")
    _grads_equal(grad, adjoint(act, g_copy), "EikonalGradient")
    _same(snap_grad, grad, "EikonalGradient")
    _readonly(act, "Activation")
    _readonly(grad, "EikonalGradient")


# --------------------------------------------------------------------------------- cardiac


def test_lead_field_edit_of_caller_tets_cannot_crash_the_conductivity_adjoint():
    # before: the LeadField kept the caller's tets; editing them made the kernel read out of bounds (SIGSEGV)
    code = textwrap.dedent(
        """
        import numpy as np
        from physim.eikonal import box_tet_mesh
        from physim.cardiac import ecg as E
        m = box_tet_mesh(3, 10.0)
        pts, tets = np.array(m.points), np.array(m.cells)
        lf = E.lead_field((pts, tets), E.standard_12_lead((pts, tets)), 0.2)
        phi = np.linalg.norm(pts, axis=1)
        e = E.simulate_ecg(lf, phi, n_samples=50)
        lam = np.ones_like(e.signals)
        g0 = E.adjoint(e, lam, conductivity=True)
        tets[:] = 10**9
        pts *= 2.0
        phi += 5.0
        g1 = E.adjoint(e, lam, conductivity=True)
        assert np.array_equal(g0.conductivity, g1.conductivity) and np.array_equal(g0.times, g1.times)
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", (out.returncode, out.stderr[-2000:])


def test_ecg_lead_field_and_action_potential_own_their_inputs():
    from physim.cardiac import ecg as E
    from physim.eikonal import box_tet_mesh

    m = box_tet_mesh(3, 10.0, jitter=0.1, seed=3)
    pts, tets = np.array(m.points), np.array(m.cells)
    G = np.tile(np.diag([0.17, 0.02, 0.02]), (len(tets), 1, 1))
    electrodes = np.array([[40.0, 0, 0], [0, 40.0, 0], [0, 0, 40.0], [-30.0, -30.0, -30.0]])
    leads = np.array([[1.0, -1.0, 0, 0], [0, 1.0, -1.0, 0]])
    lf = E.lead_field((pts, tets), electrodes, G, leads=leads)
    apd = np.full(len(pts), 200.0)
    model = E.ActionPotential(apd_ms=apd, upstroke_ms=3.0)
    phi = 2.0 * np.linalg.norm(pts - pts[0], axis=1)
    ecg = E.simulate_ecg(lf, phi, model=model, n_samples=300)
    lam = np.random.default_rng(4).standard_normal(ecg.signals.shape)
    grad = E.adjoint(ecg, lam, conductivity=True)
    lam_copy = lam.copy()
    snaps = [(o, _arrays(o)) for o in (lf, lf.leads, model, ecg, grad)]
    for a in (pts, G, electrodes, leads, apd, phi, lam):
        a *= 1.5
    tets[:] = 0
    for o, snap in snaps:
        _same(snap, o, type(o).__name__)
    _grads_equal(grad, E.adjoint(ecg, lam_copy, conductivity=True), "ECGGradient")
    for o in (lf, lf.leads, ecg, grad):
        _readonly(o, type(o).__name__)


def test_twin_models_and_objectives_own_their_inputs():
    from physim.cardiac.twin import (
        CandidateSites,
        RegionVelocities,
        TwinModel,
        activation_objective,
    )
    from physim.eikonal import box_tet_mesh

    mesh = box_tet_mesh(3, 6.0, jitter=0.1, seed=5)
    fibers = np.tile([1.0, 0.2, 0.0], (mesh.n_cells, 1))
    labels = (np.arange(mesh.n_cells) % 2).astype(np.int64)
    nodes = np.array([0, 5, 40])
    model = TwinModel(mesh, fibers, RegionVelocities(labels), CandidateSites(nodes))
    meas = np.array([3, 20, 50, 60])
    t_meas = np.array([4.0, 6.0, 9.0, 12.0])
    w = np.full(4, 0.25)
    fun = activation_objective(model, meas, t_meas, weights=w)
    x = np.concatenate([[0.6, 0.5, 0.3, 0.25], [0.0, 2.0, 5.0]])
    before = fun(x)
    state = fun.last_state
    snap = _arrays(state)
    for a in (fibers, t_meas, w, x):
        a *= 1.3
    labels[:] = 1 - labels
    nodes[:] = [1, 2, 3]
    meas[:] = [0, 1, 2, 3]
    x0 = np.concatenate([[0.6, 0.5, 0.3, 0.25], [0.0, 2.0, 5.0]])
    after = fun(x0)
    assert before[0] == after[0]
    np.testing.assert_array_equal(before[1], after[1])
    _same(snap, state, "TwinState")


# --------------------------------------------------------------------------------- ekf


def test_rollout_plan_and_beacons_own_their_inputs():
    from physim.ekf import Beacons, FinalTrace, Unicycle, adjoint, covariance_rollout, plan_active_sensing

    pos = np.array([[2.0, 1.0], [-1.0, 3.0], [4.0, -2.0]])
    beacons = Beacons(pos, 0.1, 0.05)
    x0 = np.array([0.0, 0.0, 0.1])
    P0 = np.diag([0.1, 0.1, 0.05])
    U = np.tile([1.0, 0.1], (20, 1))
    M = np.diag([0.01, 0.005])
    Q0 = np.eye(3) * 1e-4
    W = np.diag([1.0, 1.0, 0.0])
    cost = FinalTrace(W)
    W_copy = W.copy()
    r = covariance_rollout(Unicycle(0.1), beacons, x0, P0, U, M, Q0)
    grad = adjoint(r, cost)
    plan = plan_active_sensing(Unicycle(0.1), beacons, x0, P0, U, M, Q0, maxiter=3)
    snaps = [(o, _arrays(o)) for o in (r, grad, plan, beacons)]
    for a in (pos, x0, P0, U, M, Q0, W):
        a *= 2.0
    for o, snap in snaps:
        _same(snap, o, type(o).__name__)
    _grads_equal(grad, adjoint(r, cost), "Gradients")
    _grads_equal(grad, adjoint(r, FinalTrace(W_copy)), "Gradients")
    for o in (r, grad, plan):
        _readonly(o, type(o).__name__)
    assert len(repr(plan)) < 700  # a short repr, not the optimizer's history


# --------------------------------------------------------------------------------- optim


def test_bounded_transform_owns_its_bounds():
    from physim.optim import Bounded

    lo, hi = np.array([0.0, 1.0]), np.array([1.0, 3.0])
    t = Bounded(lo, hi)
    z = np.array([0.3, -0.2])
    x = t.forward(z)
    lo += 10.0
    hi += 10.0
    np.testing.assert_array_equal(t.forward(z), x)
    assert not t.lower.flags.writeable and not t.upper.flags.writeable
