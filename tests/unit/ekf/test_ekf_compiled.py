"""User models written as compiled functions: equal to the built-ins, gradients, guarantees at the door."""

import math
import pickle

import numpy as np
import pytest
from ekf_reference import library_objects, random_problem
from ekf_user_models import CDrag, CRangeBeacons, CUnicycle

from physim.ekf import (
    Beacons,
    CompiledMotionModel,
    FinalLogDet,
    HorizonSum,
    PositionTrace,
    Unicycle,
    adjoint,
    check_model,
    covariance_rollout,
    run_filter,
)
from physim.errors import InvalidInputError, InvalidTypeError, NonFiniteError, ShapeError
from physim.optim import check_gradient

EQ_RTOL = 1e-12  # compiled user model vs built-in (same formulas, relative to the largest entry)
M = np.diag([0.05**2, 0.02**2])
Q0 = 1e-6 * np.eye(3)


def _close(a, b, what):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(np.abs(b).max(), np.finfo(float).tiny)
    assert np.abs(a - b).max() <= EQ_RTOL * scale, (what, np.abs(a - b).max(), scale)


def _problem(seed, N=40):
    p = random_problem(np.random.default_rng(seed), N=N)
    return p, library_objects(p)[1]


def test_user_unicycle_equals_builtin_to_1e12():
    p, beacons = _problem(1)
    args = (p["x0"], p["P0"], p["U"], p["M"], p["Q0"])
    r1 = covariance_rollout(Unicycle(p["dt"]), beacons, *args)
    r2 = covariance_rollout(CUnicycle(dt=p["dt"]), beacons, *args)
    for f in ("states", "P", "P_prior", "gains", "F", "G", "H", "R"):
        _close(getattr(r2, f), getattr(r1, f), f)
    for cost in (FinalLogDet(), HorizonSum(PositionTrace())):
        g1, g2 = adjoint(r1, cost), adjoint(r2, cost)
        for f in ("controls", "x0", "P0", "M", "Q0", "beacons", "dt"):
            _close(getattr(g2, f), getattr(g1, f), f)
        assert g2.model.keys() == {"dt"} and g2.wheelbase is None
    # the actual EKF on simulated data, same noise draws
    a = run_filter(Unicycle(p["dt"]), beacons, *args, n_runs=4, seed=3)
    b = run_filter(CUnicycle(dt=p["dt"]), beacons, *args, n_runs=4, seed=3)
    for f in ("truth", "estimates", "covariances", "measurements"):
        _close(getattr(b, f), getattr(a, f), f)


def test_user_sensor_equals_builtin_beacons():
    rng = np.random.default_rng(2)
    p = random_problem(rng, N=30, range_std=0.1, bearing_std=None, slope=0.03)
    B = p["B"]
    mine, builtin = (
        CRangeBeacons(positions=B, std=0.1, slope=0.03),
        Beacons(B, range_std=0.1, range_slope=0.03),
    )
    args = (p["x0"], p["P0"], p["U"], p["M"], p["Q0"])
    for model in (Unicycle(p["dt"]), CUnicycle(dt=p["dt"])):
        r1, r2 = covariance_rollout(model, builtin, *args), covariance_rollout(model, mine, *args)
        _close(r2.P, r1.P, "P")
        g1, g2 = adjoint(r1, FinalLogDet()), adjoint(r2, FinalLogDet())
        _close(g2.controls, g1.controls, "controls")
        _close(g2.sensor["positions"], g1.beacons, "beacons")
        _close(g2.sensor["std"], g1.range_std, "range_std")
        _close(g2.sensor["slope"], g1.range_slope, "range_slope")
        a = run_filter(model, builtin, *args, n_runs=3, seed=5)
        b = run_filter(model, mine, *args, n_runs=3, seed=5)
        _close(b.estimates, a.estimates, "estimates")
        _close(b.covariances, a.covariances, "covariances")


@pytest.mark.parametrize("group", ["U", "params", "x0"])
def test_four_state_user_model_adjoint_taylor(group):
    """A 4-state model (generic kernels) with two parameters: Taylor tests of every gradient."""
    rng = np.random.default_rng(3)
    N = 12
    U = np.column_stack([rng.uniform(-0.3, 0.3, N), rng.uniform(-0.4, 0.4, N)])
    x0 = np.array([0.0, 0.0, 0.2, 1.0])
    P0 = np.diag([0.5, 0.5, 0.05, 0.1])
    Q = 1e-4 * np.eye(4)
    sensor = CRangeBeacons(positions=[[2.0, 2.0], [3.0, -1.5], [-1.0, 1.0]], std=0.1, slope=0.02)
    cost = HorizonSum(FinalLogDet())

    def fun(v):
        dt, drag, x, Uv = 0.2, 0.3, x0, U
        if group == "U":
            Uv = v.reshape(N, 2)
        elif group == "params":
            dt, drag = v
        else:
            x = v
        g = adjoint(covariance_rollout(CDrag(dt=dt, drag=drag), sensor, x, P0, Uv, M, Q), cost)
        out = {"U": g.controls.reshape(-1), "params": np.array([g.model["dt"], g.model["drag"]]), "x0": g.x0}
        return g.value, out[group]

    v0 = {"U": U.reshape(-1), "params": np.array([0.2, 0.3]), "x0": x0}[group]
    chk = check_gradient(fun, v0, seed=1)
    assert chk.ok, str(chk)


def test_user_models_pass_check_model():
    for model in (CUnicycle(dt=0.1), CDrag(dt=0.1, drag=0.4)):
        rep = check_model(model)
        assert rep.ok, str(rep)
        assert any("parameter_vjp" in i.name for i in rep.items)
    rep = check_model(CRangeBeacons(positions=[[0.0, 1.0], [2.0, -1.0]], std=0.1, slope=0.05))
    assert rep.ok, str(rep)
    assert {"jacobians_vjp: ∂/∂positions", "jacobians_vjp: ∂/∂std", "jacobians_vjp: ∂/∂slope"} <= {
        i.name for i in rep.items
    }


def test_parameters_repr_and_pickle():
    m = CDrag(dt=0.1, drag=0.4)
    assert (m.dt, m.drag) == (0.1, 0.4)
    assert m.params.tolist() == [0.1, 0.4] and not m.params.flags.writeable
    assert repr(m) == "CDrag(dt=0.1, drag=0.4)"
    m2 = pickle.loads(pickle.dumps(m))
    assert type(m2) is CDrag and m2.params.tolist() == [0.1, 0.4]
    s = CRangeBeacons(positions=[[0.0, 1.0]], std=0.1, slope=0.0)
    assert s.n_meas == 1 and s.positions.shape == (1, 2) and not s.positions.flags.writeable
    with pytest.raises(InvalidInputError, match="missing"):
        CDrag(dt=0.1)
    with pytest.raises(InvalidInputError, match="unexpected"):
        CUnicycle(dt=0.1, wheelbase=1.0)


# -- guarantees at the door: what user functions return is checked before compiled code reads it --------


class OutOfBounds(CompiledMotionModel):
    n_state = 3
    n_control = 2

    @staticmethod
    def f(x, u, p, x_next, F, G):
        x_next[0] = x[0]
        G[0, 2] = 1.0  # G is (3, 2)

    @staticmethod
    def f_vjp(x, u, p, lam, F_bar, G_bar, x_bar, u_bar, p_bar):
        pass


class NonFinite(CompiledMotionModel):
    n_state = 3
    n_control = 2

    @staticmethod
    def f(x, u, p, x_next, F, G):
        x_next[0] = x[0] + u[0]
        x_next[1] = x[1]
        x_next[2] = math.log(u[1])  # NaN for u[1] < 0
        F[0, 0] = F[1, 1] = 1.0

    @staticmethod
    def f_vjp(x, u, p, lam, F_bar, G_bar, x_bar, u_bar, p_bar):
        pass


def test_out_of_bounds_write_is_a_shape_error():
    p, beacons = _problem(4, N=5)
    with pytest.raises(ShapeError, match=r"OutOfBounds\.f indexed outside"):
        covariance_rollout(OutOfBounds(), beacons, p["x0"], p["P0"], p["U"], M, Q0)


def test_non_finite_output_is_reported_with_its_step():
    p, beacons = _problem(5, N=6)
    U = p["U"].copy()
    U[:, 1] = np.abs(U[:, 1]) + 0.1
    U[3, 1] = -0.5
    with pytest.raises(
        NonFiniteError, match=r"NonFinite\.f \(x_next\) returned a non-finite value nan at step 3 \(entry 2\)"
    ):
        covariance_rollout(NonFinite(), beacons, p["x0"], p["P0"], U, M, Q0)


def test_bad_user_classes_are_rejected():
    with pytest.raises(InvalidTypeError, match="n_state"):

        class NoSize(CompiledMotionModel):
            n_control = 2

            @staticmethod
            def f(x, u, p, x_next, F, G):
                pass

            @staticmethod
            def f_vjp(x, u, p, lam, F_bar, G_bar, x_bar, u_bar, p_bar):
                pass

    class NotCompilable(CompiledMotionModel):
        n_state = 3
        n_control = 2

        @staticmethod
        def f(x, u, p, x_next, F, G):
            x_next[0] = {"a": object()}["a"]

        @staticmethod
        def f_vjp(x, u, p, lam, F_bar, G_bar, x_bar, u_bar, p_bar):
            pass

    with pytest.raises(InvalidTypeError, match="could not be compiled"):
        NotCompilable().step(np.zeros(3), np.zeros(2))


def test_sensor_with_non_positive_noise_is_rejected():
    class ZeroNoise(CRangeBeacons):
        @staticmethod
        def jac(x, q, H, Rd):
            H[0, 0] = 1.0  # Rd left at zero

    s = ZeroNoise(positions=[[5.0, 5.0]], std=0.1, slope=0.0)
    p, _ = _problem(6, N=4)
    with pytest.raises(InvalidInputError, match=r"ZeroNoise\.jac returned a noise variance Rd\[0\] = 0\.0"):
        covariance_rollout(Unicycle(p["dt"]), s, p["x0"], p["P0"], p["U"], M, Q0)
    with pytest.raises(InvalidInputError, match="noise variance"):
        run_filter(Unicycle(p["dt"]), s, p["x0"], p["P0"], p["U"], M, Q0, n_runs=2, seed=0)
