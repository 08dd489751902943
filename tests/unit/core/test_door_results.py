"""Regression tests for the holes the property-based probes (test_fuzz_api.py) found: valid
inputs whose result overflowed, unchecked seeds, material constants, lengths and step sizes,
and Adam runs without a step. Each raised an untyped error or returned inf/NaN before."""

import numpy as np
import pytest

from physim import errors


def test_lattice_losses_and_material_laws_refuse_overflow_and_bad_constants():
    import physim.lattice as L

    u = np.zeros((4, 2))
    with pytest.raises(errors.NonFiniteError, match="mse_loss.*overflow.*scale=1e\\+300"):
        L.mse_loss(u + 1.0, [[0, 0]], [0.5], scale=1e300)
    with pytest.raises(errors.NonFiniteError, match="mse_loss"):
        L.mse_loss(u, [[0, 0]], [-1e300])
    for bad in (np.nan, np.inf, None, "1", np.array([1.0, 2.0])):
        with pytest.raises(errors.PhysimError, match="youngs_modulus"):
            L.stiffness_from_width(np.full(4, 0.002), bad)
    with pytest.raises(errors.NonFiniteError, match="stiffness_from_width"):
        L.stiffness_from_width(1e300, 1e300)
    np.testing.assert_allclose(L.stiffness_from_width(0.002), 137.5)


def test_ecg_refuses_overflow_coinciding_samples_and_misshaped_conductivities():
    import physim.cardiac as C
    from physim.eikonal import box_tet_mesh

    m = box_tet_mesh(2, 10.0)
    pts, tets = np.array(m.points), np.array(m.cells)
    E = np.array([[40.0, 0, 0], [0, 40.0, 0], [0, 0, 40.0]])
    with pytest.raises(errors.NonFiniteError, match="lead_field.*sigma_bath=4.9"):
        C.lead_field((pts, tets), E, 0.2, sigma_bath=5e-324)
    lf = C.lead_field((pts, tets), E, 0.2)
    phi = np.linalg.norm(pts, axis=1)
    with pytest.raises(errors.InvalidInputError, match="t0=1e\\+300.*equal in float64"):
        C.simulate_ecg(lf, phi, n_samples=30, dt=2.0, t0=1e300)
    sig = C.simulate_ecg(lf, phi, n_samples=30).signals
    with pytest.raises(errors.NonFiniteError, match="lead_mse_loss"):
        C.lead_mse_loss(np.full_like(sig, -1e300), sig)
    with pytest.raises(errors.NonFiniteError, match="correlation_loss"):
        C.correlation_loss(np.full_like(sig, 1e300) * np.arange(30), sig)
    with pytest.raises(errors.NonFiniteError, match="shifted_correlation_loss.*temperature"):
        C.shifted_correlation_loss(sig + 1.0, sig * np.arange(30), temperature=5e-324)
    with pytest.raises(errors.ShapeError, match="sigma_fiber"):
        C.intracellular_conductivity(np.tile([1.0, 0, 0], (5, 1)), sigma_fiber=[0.1, 0.2])


def test_eikonal_velocities_whose_square_overflows_and_missing_velocities():
    import physim.eikonal as K
    from physim._validate import check_spd

    mesh = K.box_tet_mesh(2, 3.0)
    v = np.full(mesh.n_cells, 0.6)
    v[3] = 1e300
    with pytest.raises(errors.InvalidInputError, match="velocity 1e\\+300 mm/ms at element 3.*overflows"):
        K.solve(mesh, velocity=v, sources=[0])
    fib = np.tile([1.0, 0.0, 0.0], (mesh.n_cells, 1))
    with pytest.raises(errors.InvalidTypeError, match="v_cross"):
        K.conduction_tensor(fib, 0.6, None)
    with pytest.raises(errors.InvalidInputError, match="v_fiber.*square overflows"):
        K.conduction_tensor_vjp(fib, 1e300, 0.3, None, np.zeros((mesh.n_cells, 3, 3)))
    with pytest.raises(errors.NonFiniteError, match=r"D\[1\] has non-finite"):
        check_spd("D", np.stack([np.eye(3), np.full((3, 3), np.inf)]))


def test_ekf_seeds_and_keep_out_lengths_are_validated():
    import physim.ekf as F

    b = F.Beacons(np.array([[2.0, 1.0], [-1.0, 3.0]]), 0.1, 0.05)
    args = (
        F.Unicycle(0.1),
        b,
        np.zeros(3),
        np.eye(3) * 0.1,
        np.tile([1.0, 0.1], (5, 1)),
        np.eye(2) * 0.01,
        np.eye(3) * 1e-4,
    )
    for seed in (0.0, "1", -1, np.nan, 1j):
        with pytest.raises(errors.PhysimError, match="seed"):
            F.run_filter(*args, n_runs=2, seed=seed)
    a = F.run_filter(*args, n_runs=2, seed=np.random.SeedSequence(4)).estimates
    np.testing.assert_array_equal(a, F.run_filter(*args, n_runs=2, seed=np.random.SeedSequence(4)).estimates)
    with pytest.raises(errors.InvalidInputError, match="radii"):
        F.KeepOut([[5.0, 5.0]], 1e-310)
    with pytest.raises(errors.InvalidInputError, match="centers"):
        F.KeepOut([[1e300, 5.0]], 1.0)
    with pytest.raises(errors.ShapeError, match="radii"):
        F.KeepOut([[5.0, 5.0], [1.0, 1.0]], [1.0, 2.0, 3.0])


def _quad(x, batch=None):
    d = np.asarray(x) - 0.5
    with np.errstate(over="ignore"):  # the probes below overflow on purpose
        return float(d @ d), 2 * d


def test_gradient_check_and_adam_edge_cases():
    from physim.optim import check_gradient, minimize

    x = np.array([0.3, -0.2])
    with pytest.raises(errors.NonFiniteError, match="h0=1e\\+300"):
        check_gradient(_quad, x, h0=1e300)
    with pytest.raises(errors.InvalidInputError, match="h0=4.9.*too small"):
        check_gradient(_quad, x, h0=5e-324)
    assert check_gradient(_quad, x).ok
    r = minimize(_quad, x, method="adam", maxiter=0)
    assert r.nit == 0 and r.fun == _quad(x)[0]
    np.testing.assert_array_equal(r.x, x)
    r = minimize(_quad, x, method="adam", n_samples=10, batch_size=4, epochs=0)
    assert r.nit == 0 and r.fun == pytest.approx(_quad(x)[0])
    for kw in ({}, {"n_samples": 10, "batch_size": 4, "epochs": 2}):
        with pytest.raises(errors.NonFiniteError, match="before any finite iterate"):
            minimize(_quad, np.array([1e300, 0.0]), method="adam", maxiter=3, **kw)


def test_rollout_horizon_beyond_memory_is_refused():
    import physim.ekf as F

    class ManyBeacons(F.MeasurementModel):
        n_meas = 10**6
        angular = np.zeros(10**6, dtype=bool)

        def measure(self, X):  # never reached: the size is refused first
            raise AssertionError

        jacobians = jacobians_vjp = measure

    with pytest.raises(errors.ResourceLimitError, match="N=100000 steps"):
        F.covariance_rollout(
            F.Unicycle(0.1), ManyBeacons(), np.zeros(3), np.eye(3), np.ones((10**5, 2)), np.eye(2), np.eye(3)
        )
