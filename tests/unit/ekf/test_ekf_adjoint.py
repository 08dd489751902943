"""Adjoint of the EKF covariance recursion: complex step, Taylor tests, identities."""

import numpy as np
import pytest
from ekf_reference import BICYCLE, UNICYCLE, library_objects, random_problem
from ekf_reference import rollout as ref_rollout

from physim.ekf import (
    Beacons,
    FinalLogDet,
    FinalTrace,
    HorizonSum,
    MotionModel,
    PositionTrace,
    Unicycle,
    adjoint,
    covariance_rollout,
    trajectory_vjp,
)
from physim.errors import ShapeError
from physim.optim import check_gradient

#: tolerances in one place
CS_RTOL = 1e-8  # adjoint vs complex step (relative to the largest gradient entry)
CS_H = 1e-30

SENSORS = [
    dict(range_std=0.2, bearing_std=0.05, slope=0.05),
    dict(range_std=0.2, bearing_std=None, slope=0.1),
    dict(range_std=None, bearing_std=0.05, slope=0.0),
]


def _sym(A):
    return 0.5 * (A + A.T)


def _rollout(p, **over):
    q = dict(p, **over)
    model, beacons = library_objects(q)
    return covariance_rollout(model, beacons, q["x0"], q["P0"], q["U"], q["M"], q["Q0"])


def _ref_J(p, W, **over):
    q = dict(p, **over)
    _, P = ref_rollout(
        q["kind"], q["dt"], q["L"], q["x0"], q["P0"], q["U"], q["M"], q["Q0"], q["B"],
        q["range_std"], q["bearing_std"], q["slope"],
    )  # fmt: skip
    return np.sum(W * P)


@pytest.mark.parametrize("kind", [UNICYCLE, BICYCLE])
@pytest.mark.parametrize("sensor", range(len(SENSORS)))
def test_adjoint_matches_complex_step(kind, sensor):
    rng = np.random.default_rng(10 * kind + sensor)
    p = random_problem(rng, kind=kind, N=5, **SENSORS[sensor])
    N = p["U"].shape[0]
    W = np.array([_sym(rng.standard_normal((3, 3))) for _ in range(N + 1)])
    g = adjoint(_rollout(p), W)
    # the library value agrees with the reference
    assert np.isclose(np.sum(W * _rollout(p).P), _ref_J(p, W), rtol=1e-10, atol=0)

    def cs(name, direction):
        val = p[name] + 1j * CS_H * direction
        return np.imag(_ref_J(p, W, **{name: val})) / CS_H

    checks = []
    for name, grad in (("U", g.controls), ("x0", g.x0), ("B", g.beacons)):
        for idx in np.ndindex(p[name].shape):
            e = np.zeros(p[name].shape)
            e[idx] = 1.0
            checks.append((f"{name}{idx}", grad[idx], cs(name, e)))
    for name, grad in (("P0", g.P0), ("M", g.M), ("Q0", g.Q0)):
        for _ in range(3):
            D = _sym(rng.standard_normal(p[name].shape))
            checks.append((name, np.sum(grad * D), cs(name, D)))
    for name, grad in (("range_std", g.range_std), ("bearing_std", g.bearing_std), ("slope", g.range_slope)):
        if p[name] is not None and not (name == "slope" and p["range_std"] is None):
            checks.append((name, grad, cs(name, 1.0)))
    scale = max(abs(c[2]) for c in checks)
    bad = [(n, a, b) for n, a, b in checks if abs(a - b) > CS_RTOL * scale]
    assert not bad, f"adjoint differs from complex step: {bad[:5]}"


def _taylor(p, group, cost):
    """check_gradient of J(group) using the library forward and adjoint."""
    x = np.array(p[group], dtype=float).reshape(-1)
    shape = np.shape(p[group])
    field = {"U": "controls", "x0": "x0", "P0": "P0", "M": "M", "Q0": "Q0", "B": "beacons"}[group]

    def fun(v):
        val = v.reshape(shape)
        if group in ("P0", "M", "Q0"):
            val = _sym(val)
        r = _rollout(p, **{group: val})
        g = adjoint(r, cost)
        return g.value, np.asarray(getattr(g, field)).reshape(-1)

    # covariances are small: keep the steps relative to them so they stay PSD
    h0 = 0.05 * float(np.abs(x).max()) if group in ("P0", "M", "Q0") else None
    return check_gradient(fun, x, seed=3, h0=h0)


@pytest.mark.parametrize("kind", [UNICYCLE, BICYCLE])
@pytest.mark.parametrize("group", ["U", "x0", "P0", "M", "Q0", "B"])
def test_adjoint_taylor(kind, group):
    rng = np.random.default_rng(7 + kind)
    p = random_problem(rng, kind=kind, N=8)
    chk = _taylor(p, group, HorizonSum(FinalTrace(np.diag([1.0, 2.0, 0.5]))))
    assert chk.ok, str(chk)


@pytest.mark.parametrize(
    "cost",
    [FinalTrace(), PositionTrace(), FinalLogDet(), HorizonSum(), HorizonSum(FinalLogDet(), mean=True)],
    ids=["trace", "position", "logdet", "sum", "mean-logdet"],
)
def test_cost_objects_taylor(cost):
    rng = np.random.default_rng(4)
    p = random_problem(rng, N=8)
    chk = _taylor(p, "U", cost)
    assert chk.ok, str(chk)


def test_noise_parameter_gradients_taylor():
    rng = np.random.default_rng(5)
    p = random_problem(rng, N=8)
    names = ["range_std", "bearing_std", "slope"]
    fields = ["range_std", "bearing_std", "range_slope"]

    def fun(v):
        r = _rollout(p, **dict(zip(names, v)))
        g = adjoint(r, FinalLogDet())
        return g.value, np.array([getattr(g, f) for f in fields])

    chk = check_gradient(fun, np.array([p[n] for n in names]), seed=1)
    assert chk.ok, str(chk)


def test_structural_zero_last_turn_rate():
    rng = np.random.default_rng(6)
    p = random_problem(rng, N=10)
    for cost in (FinalTrace(), FinalLogDet(), PositionTrace()):
        g = adjoint(_rollout(p), cost)
        assert g.controls[-1, 1] == 0.0
        assert np.all(np.abs(g.controls[:-1, 1]) > 0)
    # for the bicycle the last steering angle enters G_{N-1} = ∂f/∂u (heading row
    # dt tan δ / L, dt v sec²δ / L), hence G M Gᵀ: zero only without odometry noise
    q = random_problem(rng, kind=BICYCLE, N=10)
    g = adjoint(_rollout(q), FinalTrace())
    assert g.controls[-1, 1] != 0.0
    q["M"] = np.zeros((2, 2))
    g = adjoint(_rollout(q), FinalTrace())
    assert g.controls[-1, 1] == 0.0


def test_array_cotangents_match_cost_objects():
    rng = np.random.default_rng(8)
    p = random_problem(rng, N=6)
    r = _rollout(p)
    a = adjoint(r, FinalTrace())
    b = adjoint(r, np.eye(3))
    c = adjoint(r, np.concatenate([np.zeros((6, 3, 3)), np.eye(3)[None]]))
    assert a.value == pytest.approx(np.trace(r.P[-1]))
    assert b.value is None
    for f in ("controls", "x0", "P0", "M", "Q0", "beacons"):
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-13, atol=0)
        np.testing.assert_allclose(getattr(a, f), getattr(c, f), rtol=1e-13, atol=0)
    # a non-symmetric cotangent acts through its symmetric part
    C = rng.standard_normal((3, 3))
    np.testing.assert_allclose(adjoint(r, C).controls, adjoint(r, _sym(C)).controls, rtol=1e-12, atol=1e-18)
    with pytest.raises(ShapeError, match=r"\(3, 3\)"):
        adjoint(r, np.eye(2))


def test_state_cotangent_taylor():
    rng = np.random.default_rng(9)
    p = random_problem(rng, N=7)
    c = rng.standard_normal((8, 3))

    def fun(v):
        r = _rollout(p, U=v.reshape(7, 2))
        g = adjoint(r, FinalTrace(), d_cost_d_states=c)
        return g.value + np.sum(c * r.states), g.controls.reshape(-1)

    assert check_gradient(fun, p["U"].reshape(-1)).ok
    r = _rollout(p)
    x0b, Ub = trajectory_vjp(r, c)
    chk = check_gradient(lambda v: (np.sum(c * _rollout(p, U=v.reshape(7, 2)).states), None),
                         p["U"].reshape(-1), grad=Ub.reshape(-1))  # fmt: skip
    assert chk.ok, str(chk)


class PyUnicycle(MotionModel):
    """The unicycle written as a user model (numpy), to exercise the Python path."""

    def __init__(self, dt):
        self.dt = dt

    n_state = 3
    n_control = 2

    def step(self, x, u):
        return np.array([x[0] + self.dt * u[0] * np.cos(x[2]), x[1] + self.dt * u[0] * np.sin(x[2]),
                         x[2] + self.dt * u[1]])  # fmt: skip

    def jacobians(self, x, u):
        c, s, dt, v = np.cos(x[2]), np.sin(x[2]), self.dt, u[0]
        F = np.array([[1, 0, -dt * v * s], [0, 1, dt * v * c], [0, 0, 1.0]])
        G = np.array([[dt * c, 0], [dt * s, 0], [0, dt]])
        return F, G

    def jacobians_vjp(self, x, u, Fb, Gb):
        c, s, dt, v = np.cos(x[2]), np.sin(x[2]), self.dt, u[0]
        xb = np.zeros(3)
        xb[2] = -Fb[0, 2] * dt * v * c - Fb[1, 2] * dt * v * s - Gb[0, 0] * dt * s + Gb[1, 0] * dt * c
        ub = np.array([-Fb[0, 2] * dt * s + Fb[1, 2] * dt * c, 0.0])
        return xb, ub


def test_user_model_path_equals_builtin():
    rng = np.random.default_rng(11)
    p = random_problem(rng, N=6)
    _, beacons = library_objects(p)
    args = (p["x0"], p["P0"], p["U"], p["M"], p["Q0"])
    r1 = covariance_rollout(Unicycle(p["dt"]), beacons, *args)
    r2 = covariance_rollout(PyUnicycle(p["dt"]), beacons, *args)
    np.testing.assert_allclose(r1.P, r2.P, rtol=1e-12, atol=1e-15)
    g1, g2 = adjoint(r1, FinalLogDet()), adjoint(r2, FinalLogDet())
    for f in ("controls", "x0", "P0", "M", "Q0", "beacons"):
        np.testing.assert_allclose(getattr(g1, f), getattr(g2, f), rtol=1e-10, atol=1e-14)


def test_beacon_gradient_with_bearing_only_sensor():
    rng = np.random.default_rng(12)
    p = random_problem(rng, N=6, range_std=None, bearing_std=0.03, slope=0.0)
    chk = _taylor(p, "B", FinalTrace())
    assert chk.ok, str(chk)
    assert isinstance(library_objects(p)[1], Beacons)


def test_cost_values():
    rng = np.random.default_rng(13)
    P = _rollout(random_problem(rng, N=5)).P
    W = np.diag([1.0, 2.0, 0.5])
    assert FinalTrace().value(P) == pytest.approx(np.trace(P[-1]), rel=1e-14)
    assert FinalTrace(W).value(P) == pytest.approx(np.trace(W @ P[-1]), rel=1e-14)
    assert PositionTrace().value(P) == pytest.approx(P[-1, 0, 0] + P[-1, 1, 1], rel=1e-14)
    assert FinalLogDet().value(P) == pytest.approx(np.linalg.slogdet(P[-1])[1], rel=1e-12)
    assert HorizonSum().value(P) == pytest.approx(sum(np.trace(P[k]) for k in range(1, 6)), rel=1e-14)
    mean_ld = np.mean([np.linalg.slogdet(P[k])[1] for k in range(1, 6)])
    assert HorizonSum(FinalLogDet(), mean=True).value(P) == pytest.approx(mean_ld, rel=1e-12)
    np.testing.assert_allclose(FinalLogDet().gradient(P)[-1] @ P[-1], np.eye(3), atol=1e-10)
    assert not FinalLogDet().gradient(P)[:-1].any()


def test_read_only_inputs_reuse_the_compiled_kernels():
    from physim.ekf import _kernels as K

    rng = np.random.default_rng(14)
    p = random_problem(rng, N=5)
    for key in ("x0", "P0", "U", "M", "Q0"):
        p[key] = p[key].copy()
        p[key].setflags(write=False)
    r = _rollout(p)
    g = adjoint(r, np.broadcast_to(np.eye(3), (6, 3, 3)))  # read-only cotangent
    assert np.isfinite(g.controls).all()
    for kernel in (K.cov_forward_3x2, K.cov_adjoint_3x2, K.nearest_beacon):
        assert len(kernel.signatures) == 1, kernel


@pytest.mark.parametrize("kind", [UNICYCLE, BICYCLE])
def test_model_parameter_gradients_match_complex_step(kind):
    """∂J/∂dt (both models) and ∂J/∂wheelbase (bicycle) against the complex-step reference."""
    rng = np.random.default_rng(40 + kind)
    p = random_problem(rng, kind=kind, N=7)
    W = np.array([_sym(rng.standard_normal((3, 3))) for _ in range(8)])
    g = adjoint(_rollout(p), W)
    cs = {name: np.imag(_ref_J(p, W, **{name: p[name] + 1j * CS_H})) / CS_H for name in ("dt", "L")}
    assert g.model["dt"] == g.dt
    assert abs(g.dt - cs["dt"]) <= CS_RTOL * abs(cs["dt"])
    if kind == BICYCLE:
        assert g.model["wheelbase"] == g.wheelbase
        assert abs(g.wheelbase - cs["L"]) <= CS_RTOL * abs(cs["L"])
    else:
        assert g.wheelbase is None and set(g.model) == {"dt"}
        assert cs["L"] == 0.0


@pytest.mark.parametrize("kind", [UNICYCLE, BICYCLE])
def test_model_parameter_gradients_taylor(kind):
    rng = np.random.default_rng(50 + kind)
    p = random_problem(rng, kind=kind, N=9)
    names = ["dt"] if kind == UNICYCLE else ["dt", "L"]
    fields = ["dt"] if kind == UNICYCLE else ["dt", "wheelbase"]
    cost = HorizonSum(FinalLogDet())

    def fun(v):
        g = adjoint(_rollout(p, **dict(zip(names, v))), cost)
        return g.value, np.array([getattr(g, f) for f in fields])

    chk = check_gradient(fun, np.array([p[n] for n in names]), seed=2)
    assert chk.ok, str(chk)


def test_dt_gradient_through_a_goal_term():
    """The state cotangent (goal penalty) also reaches dt through the trajectory."""
    rng = np.random.default_rng(60)
    p = random_problem(rng, N=6)
    c = rng.standard_normal((7, 3))

    def fun(v):
        r = _rollout(p, dt=v[0])
        g = adjoint(r, FinalTrace(), d_cost_d_states=c)
        return g.value + np.sum(c * r.states), np.array([g.dt])

    chk = check_gradient(fun, np.array([p["dt"]]), seed=4)
    assert chk.ok, str(chk)
