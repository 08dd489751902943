"""Site-count prior, shift-tolerant ECG loss and multimodal objectives: values and Taylor tests."""

from __future__ import annotations

import numpy as np
import pytest

from physim.cardiac import ecg as E
from physim.cardiac import twin as T
from physim.cardiac.objectives import (
    activation_term,
    ecg_objective,
    ecg_term,
    multimodal_objective,
)
from physim.cardiac.priors import SiteCountPrior
from physim.eikonal import box_tet_mesh
from physim.errors import InvalidInputError, ShapeError
from physim.optim import check_gradient


@pytest.fixture(scope="module")
def setup():
    mesh = box_tet_mesh(4, size=10.0, jitter=0.2, seed=1)
    rng = np.random.default_rng(0)
    fib = rng.standard_normal((mesh.n_cells, 3))
    lf = E.lead_field(mesh, E.standard_12_lead(mesh), E.intracellular_conductivity(fib))
    return mesh, fib, lf


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# --------------------------------------------------------------------------- count prior


def test_count_prior_value_against_formula():
    cp = SiteCountPrior(center=3.0, width=1.5, weight=0.7, onset_ms=20.0, softness_ms=4.0)
    t = np.array([0.0, 5.0, 19.0, 40.0, 150.0])
    n = float(np.sum(_sigmoid((20.0 - t) / 4.0)))
    assert cp.count(t)[0] == pytest.approx(n, rel=1e-14)
    assert cp(t)[0] == pytest.approx(0.7 * 0.5 * ((n - 3.0) / 1.5) ** 2, rel=1e-14)
    # far-dormant sites do not count, early ones count one each
    assert cp.count(np.full(7, 500.0))[0] < 1e-30
    assert cp.count(np.full(7, -500.0))[0] == pytest.approx(7.0)
    # zero weight: no penalty
    assert SiteCountPrior(weight=0.0)(t)[0] == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_count_prior_taylor(seed):
    rng = np.random.default_rng(seed)
    cp = SiteCountPrior(center=4.0, width=2.0, weight=1.3, onset_ms=15.0, softness_ms=3.0)
    t = rng.uniform(0.0, 40.0, 12)
    chk = check_gradient(cp, t, seed=seed)
    assert chk.ok, chk
    chk = check_gradient(lambda p: cp.count(p), t, seed=seed)
    assert chk.ok, chk


def test_count_prior_in_candidate_sites_and_full_objective(setup):
    mesh, fib, lf = setup
    cp = SiteCountPrior(center=2.0, width=1.0, weight=0.05, onset_ms=5.0, softness_ms=2.0)
    cs = T.CandidateSites([0, 20, 60, 100], -10.0, 150.0, sparsity=0.2, count_prior=cp)
    t = np.array([0.0, 3.0, 7.0, 40.0])
    val, g = cs.regularization(t)
    span = 160.0
    assert val == pytest.approx(0.2 * np.mean((150.0 - t) / span) + cp(t)[0], rel=1e-13)
    np.testing.assert_allclose(g, -0.2 / (4 * span) + cp(t)[1], rtol=1e-13)
    m = T.TwinModel(mesh, fib, T.GlobalVelocities(mesh.n_cells), cs)
    target = E.simulate_ecg(
        lf, m.forward(np.array([0.6, 0.3, 0.0, 3.0, 5.0, 7.0])).times, n_samples=120
    ).signals
    fun = ecg_objective(m, lf, target)
    for seed in range(2):
        chk = check_gradient(fun, np.array([0.8, 0.35, 1.0, 2.0, 4.0, 6.0]), seed=seed)
        assert chk.ok, chk
    fun(np.array([0.8, 0.35, 1.0, 2.0, 4.0, 6.0]))
    assert fun.last_values["prior"] == pytest.approx(cs.regularization(np.array([1.0, 2.0, 4.0, 6.0]))[0])


def test_count_prior_bad_input():
    with pytest.raises(InvalidInputError, match="width"):
        SiteCountPrior(width=0.0)
    with pytest.raises(InvalidInputError, match="softness_ms"):
        SiteCountPrior(softness_ms=-1.0)
    with pytest.raises(InvalidInputError, match="count_prior"):
        T.CandidateSites([0, 1], count_prior=3.0)


# --------------------------------------------------------------------------- shift-tolerant loss


def _signals(rng, n=160):
    t = np.arange(n, dtype=float)
    base = np.stack(
        [np.exp(-((t - 60 - 4 * i) ** 2) / 60) - 0.4 * np.exp(-((t - 100) ** 2) / 90) for i in range(4)]
    )
    return base + 0.02 * rng.standard_normal(base.shape)


def test_shifted_correlation_finds_the_shift():
    rng = np.random.default_rng(3)
    y = _signals(rng)
    x = np.roll(y, 5, axis=1)  # the simulation is 5 samples late
    plain, _ = E.correlation_loss(x, y)
    v, _ = E.shifted_correlation_loss(x, y, max_shift_ms=8.0, temperature=1e-9)
    # the hard minimum over shifts: shift -5 aligns x with y (edges excepted)
    best = E.correlation_loss(x[:, 5:], y[:, :-5])[0]
    assert v == pytest.approx(best, abs=1e-9 * np.log(17) + 1e-12)
    assert v < 0.1 * plain
    # bounds of the soft minimum
    vs = []
    for s in range(-8, 9):
        xs = slice(0, 160 - s) if s >= 0 else slice(-s, 160)
        ys = slice(s, 160) if s >= 0 else slice(0, 160 + s)
        vs.append(E.correlation_loss(x[:, xs], y[:, ys])[0])
    tau = 1e-2
    vt, _ = E.shifted_correlation_loss(x, y, max_shift_ms=8.0, temperature=tau)
    assert min(vs) - 1e-12 <= vt <= min(vs) + tau * np.log(len(vs)) + 1e-12
    # no shift allowed: the plain correlation loss
    v0, g0 = E.shifted_correlation_loss(x, y, max_shift_ms=0.0)
    pv, pg = E.correlation_loss(x, y)
    assert v0 == pytest.approx(pv, rel=1e-12)
    np.testing.assert_allclose(g0, pg, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("tau", [1e-3, 1e-2])
def test_shifted_correlation_taylor(tau):
    rng = np.random.default_rng(4)
    y = _signals(rng)
    x = np.roll(y, 3, axis=1) + 0.05 * rng.standard_normal(y.shape)

    def f(z):
        v, g = E.shifted_correlation_loss(z.reshape(y.shape), y, max_shift_ms=6.0, dt=1.0, temperature=tau)
        return v, g.ravel()

    chk = check_gradient(f, x.ravel())
    assert chk.ok, chk


def test_shifted_correlation_through_the_twin(setup):
    mesh, fib, lf = setup
    m = T.TwinModel(mesh, fib, T.GlobalVelocities(mesh.n_cells), T.CandidateSites([0, 20, 60, 100]))
    target = E.simulate_ecg(
        lf, m.forward(np.array([0.6, 0.3, 2.0, 3.0, 5.0, 7.0])).times, n_samples=120
    ).signals
    fun = ecg_objective(m, lf, target, loss="shifted_correlation", max_shift_ms=5.0, temperature=1e-3)
    chk = check_gradient(fun, np.array([0.8, 0.35, 1.0, 2.0, 4.0, 6.0]))
    assert chk.ok, chk
    with pytest.raises(ShapeError, match="max_shift_ms"):
        E.shifted_correlation_loss(target[:, :5], target[:, :5], max_shift_ms=10.0)


# --------------------------------------------------------------------------- multimodal


def test_multimodal_objective_is_the_weighted_sum(setup):
    mesh, fib, lf = setup
    m = T.TwinModel(
        mesh, fib, T.GlobalVelocities(mesh.n_cells), T.CandidateSites([0, 20, 60, 100], sparsity=0.1)
    )
    x_true = np.array([0.6, 0.3, 0.0, 3.0, 5.0, 7.0])
    tt = m.forward(x_true).times
    target = E.simulate_ecg(lf, tt, n_samples=120).signals
    nodes = np.array([3, 17, 40, 77, 110])
    meas = tt[nodes] + np.array([0.3, -0.2, 0.1, 0.0, -0.4])
    e_term = ecg_term(lf, target, loss="mse")
    a_term = activation_term(nodes, meas, noise_ms=0.5)
    fun = multimodal_objective(m, e_term, a_term, weights=[2.0, 0.3])
    x = np.array([0.75, 0.33, 1.0, 2.0, 4.0, 6.0])
    v, g = fun(x)
    ve, ge = multimodal_objective(m, e_term)(x)
    va, ga = multimodal_objective(m, a_term)(x)
    rv, rg = m.regularization(x)
    assert v == pytest.approx(2.0 * (ve - rv) + 0.3 * (va - rv) + rv, rel=1e-12)
    np.testing.assert_allclose(g, 2.0 * (ge - rg) + 0.3 * (ga - rg) + rg, rtol=1e-10, atol=1e-14)
    # the activation term with noise_ms is the Gaussian negative log-likelihood
    phi = m.forward(x).times
    assert fun.last_values["activation"] == pytest.approx(0.5 * np.sum(((phi[nodes] - meas) / 0.5) ** 2))
    for seed in range(2):
        chk = check_gradient(fun, x, seed=seed)
        assert chk.ok, chk


def test_multimodal_bad_input(setup):
    mesh, fib, lf = setup
    m = T.TwinModel(mesh, fib, T.GlobalVelocities(mesh.n_cells), T.CandidateSites([0]))
    term = activation_term([1, 2], [3.0, 4.0])
    with pytest.raises(InvalidInputError, match="at least one data term"):
        multimodal_objective(m)
    with pytest.raises(ShapeError, match="weights"):
        multimodal_objective(m, term, weights=[1.0, 2.0])
    with pytest.raises(InvalidInputError, match=">= 0"):
        multimodal_objective(m, term, weights=[-1.0])
    with pytest.raises(InvalidInputError, match="DataTerm"):
        multimodal_objective(m, "ecg")
    with pytest.raises(InvalidInputError, match="mesh has"):
        multimodal_objective(m, activation_term([10_000], [1.0]))
    with pytest.raises(InvalidInputError, match="loss must be"):
        ecg_term(lf, np.zeros((12, 50)), loss="dtw")
    with pytest.raises(InvalidInputError, match="noise_ms"):
        activation_term([1], [2.0], noise_ms=0.0)


def test_ecg_mse_loss_has_its_own_name():
    """physim.cardiac's ECG loss and physim.lattice's displacement loss no longer share a name."""
    import physim.cardiac as C
    import physim.lattice as L

    assert C.lead_mse_loss is E.lead_mse_loss
    assert not hasattr(C, "mse_loss") and not hasattr(E, "mse_loss")
    assert hasattr(L, "mse_loss")


def test_velocity_prior_value_gradient_and_in_the_objective(setup):
    from physim.cardiac.priors import VelocityPrior

    vp = VelocityPrior(mean=(0.6, 0.45), std=(0.05, 0.1), weight=0.3)
    p = np.array([0.7, 0.3])
    assert vp(p)[0] == pytest.approx(0.3 * 0.5 * ((0.1 / 0.05) ** 2 + (0.15 / 0.1) ** 2), rel=1e-14)
    chk = check_gradient(vp, p)
    assert chk.ok, chk
    mesh, fib, lf = setup
    m = T.TwinModel(
        mesh, fib, T.AnisotropicVelocities(mesh.n_cells, prior=vp), T.CandidateSites([0, 20, 60, 100])
    )
    target = E.simulate_ecg(
        lf, m.forward(np.array([0.6, 0.5, 0.0, 3.0, 5.0, 7.0])).times, n_samples=120
    ).signals
    fun = ecg_objective(m, lf, target)
    x = np.array([0.8, 0.4, 1.0, 2.0, 4.0, 6.0])
    chk = check_gradient(fun, x)
    assert chk.ok, chk
    fun(x)
    assert fun.last_values["prior"] == pytest.approx(vp(x[:2])[0], rel=1e-12)
    with pytest.raises(InvalidInputError, match="entries"):
        T.GlobalVelocities(10, prior=VelocityPrior(mean=(0.6,), std=(0.1,)))
    with pytest.raises(InvalidInputError, match="std"):
        VelocityPrior(mean=(0.6, 0.3), std=(0.1, 0.0))
