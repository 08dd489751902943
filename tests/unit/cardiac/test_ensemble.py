"""Twin ensembles: statistics, calibration, reproducibility across schedulers, store and resume."""

from __future__ import annotations

import numpy as np
import pytest

from physim.cardiac import ecg as E
from physim.cardiac import twin as T
from physim.cardiac.ensemble import (
    StartDistribution,
    TwinEnsemble,
    calibration_of,
    ensemble_statistics,
    fit_ensemble,
)
from physim.cardiac.objectives import activation_term, ecg_term, multimodal_objective
from physim.eikonal import box_tet_mesh
from physim.errors import InvalidInputError


@pytest.fixture(scope="module")
def problem():
    mesh = box_tet_mesh(4, size=10.0, jitter=0.2, seed=1)
    rng = np.random.default_rng(0)
    fib = rng.standard_normal((mesh.n_cells, 3))
    lf = E.lead_field(mesh, E.standard_12_lead(mesh), E.intracellular_conductivity(fib))
    model = T.TwinModel(
        mesh, fib, T.GlobalVelocities(mesh.n_cells), T.CandidateSites([0, 20, 60, 100], -5.0, 40.0)
    )
    x_true = np.array([0.6, 0.3, 0.0, 3.0, 40.0, 40.0])
    tt = model.forward(x_true).times
    target = E.simulate_ecg(lf, tt, n_samples=80).signals
    nodes = np.array([5, 30, 70])
    fun = multimodal_objective(
        model, ecg_term(lf, target), activation_term(nodes, tt[nodes]), weights=[1.0, 1e-3]
    )
    return model, fun, tt


START = StartDistribution(velocity=((0.4, 0.9), (0.2, 0.5)), site_times=(0.0, 20.0))


# --------------------------------------------------------------------------- statistics


def test_ensemble_statistics_against_numpy():
    rng = np.random.default_rng(2)
    X = rng.normal(10, 3, (7, 50))
    mean, med, std = ensemble_statistics(X)
    np.testing.assert_allclose(mean, X.mean(0), rtol=1e-13)
    np.testing.assert_allclose(med, np.sort(X, axis=0)[3], rtol=0)
    np.testing.assert_allclose(std, X.std(0, ddof=1), rtol=1e-12)
    # integer weights = repeated members (weighted mean; median of the repeated sample)
    w = np.array([1, 2, 1, 3, 1, 1, 1], dtype=float)
    rep = np.repeat(X, w.astype(int), axis=0)
    m2, med2, _ = ensemble_statistics(X, w)
    np.testing.assert_allclose(m2, rep.mean(0), rtol=1e-13)
    np.testing.assert_allclose(med2, np.sort(rep, axis=0)[(rep.shape[0] - 1) // 2], rtol=0)
    # one member: zero spread
    assert np.all(ensemble_statistics(X[:1])[2] == 0.0)
    with pytest.raises(InvalidInputError, match="weights"):
        ensemble_statistics(X, -w)


def test_calibration_on_a_constructed_case():
    """Truth = mean + k * sigma with known k per node: the coverage fractions are known exactly."""
    n = 1000
    sigma = np.linspace(1.0, 5.0, n)
    mean = np.full(n, 50.0)
    k = np.repeat([0.5, 1.5, 2.5, 0.9], n // 4)  # 25 % each
    truth = mean + k * sigma * np.where(np.arange(n) % 2, 1.0, -1.0)
    cal = calibration_of(mean, sigma, truth)
    assert cal.coverage_1sigma == pytest.approx(0.5)  # k = 0.5 and 0.9
    assert cal.coverage_2sigma == pytest.approx(0.75)  # and k = 1.5
    assert cal.error_mean_ms == pytest.approx(np.mean(k * sigma))
    assert cal.sigma_mean_ms == pytest.approx(3.0)
    assert cal.rms_z == pytest.approx(np.sqrt(np.mean(k**2)))
    # inflating the spread by 2: k/2 -> 0.25, 0.75, 1.25, 0.45
    cal2 = calibration_of(mean, sigma, truth, inflation=2.0)
    assert cal2.coverage_1sigma == pytest.approx(0.75)
    assert cal2.coverage_2sigma == pytest.approx(1.0)
    assert cal2.sigma_mean_ms == pytest.approx(6.0)
    assert cal2.rms_z == pytest.approx(cal.rms_z / 2)


def test_start_distribution(problem):
    model, _, _ = problem
    rng = np.random.default_rng(0)
    x = START.draw(model, rng)
    assert 0.4 <= x[0] <= 0.9 and 0.2 <= x[1] <= 0.5
    assert np.all((x[2:] >= 0.0) & (x[2:] <= 20.0))
    assert np.all(x > model.lower) and np.all(x < model.upper)
    sparse = StartDistribution(site_times=(0.0, 5.0), site_fraction=0.5).draw(model, np.random.default_rng(1))
    assert np.all((sparse[2:] <= 5.0) | (sparse[2:] >= 39.9))
    with pytest.raises(InvalidInputError, match="site_fraction"):
        StartDistribution(site_fraction=0.0)
    with pytest.raises(InvalidInputError, match="ranges"):
        StartDistribution(velocity=((0.5, 0.4),))


# --------------------------------------------------------------------------- fits


def test_serial_and_embedded_cluster_give_identical_members(problem, tmp_path):
    model, fun, tt = problem
    kw = dict(n_members=3, seed=7, maxiter=8, start=START)
    a = fit_ensemble(model, fun, scheduler="serial", **kw)
    b = fit_ensemble(model, fun, workers=2, **kw)
    assert isinstance(a, TwinEnsemble) and a.n_members == b.n_members == 3
    assert b.n_workers == 2
    for ma, mb in zip(a.members, b.members):
        assert ma.index == mb.index
        np.testing.assert_array_equal(ma.x0, mb.x0)
        np.testing.assert_array_equal(ma.x, mb.x)
        np.testing.assert_array_equal(ma.times, mb.times)
        assert ma.loss == mb.loss
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.std, b.std)
    # members differ from each other (independent starts) and are reported fully
    assert not np.array_equal(a.members[0].x0, a.members[1].x0)
    m = a.members[0]
    assert m.ecg.shape == (12, 80) and m.ecg_correlation.shape == (12,)
    assert set(m.values) == {"ecg", "activation", "prior"} and m.nit <= 8
    assert a.ecg_mean.shape == (12, 80) and a.ecg_std.shape == (12, 80)
    # statistics are those of the member maps
    np.testing.assert_allclose(a.mean, a.maps.mean(0), rtol=1e-13)
    np.testing.assert_allclose(a.std, a.maps.std(0, ddof=1), rtol=1e-12)
    cal = a.calibration(tt)
    assert cal.error_mean_ms == pytest.approx(np.mean(np.abs(a.mean - tt)))
    lw = a.reweighted("loss", temperature=1e-3)
    assert lw.weights.argmax() == np.argmin(a.losses) and "T = 0.001" in lw.weighting
    # outputs
    vtu = a.write_vtu(tmp_path / "ens.vtu", model.mesh, true_times=tt)
    import meshio

    mm = meshio.read(vtu)
    for k in (
        "activation_mean",
        "activation_std",
        "activation_true",
        "activation_error",
        "z_score",
        "member_00",
    ):
        assert k in mm.point_data
    csv = a.write_ecg_csv(tmp_path / "ecg.csv")
    head = csv.read_text().splitlines()[0].split(",")
    assert head[0] == "time (ms)" and "I target (mV)" in head and "V6 std (mV)" in head
    assert "II member 02 (mV)" in head


def test_store_and_resume(problem, tmp_path):
    model, fun, _ = problem
    store = tmp_path / "members"
    kw = dict(seed=3, maxiter=5, start=START, scheduler="serial", store=store)
    first = fit_ensemble(model, fun, n_members=2, **kw)
    assert first.from_store == 0
    more = fit_ensemble(model, fun, n_members=3, **kw)
    assert more.from_store == 2 and more.n_members == 3
    for a, b in zip(first.members, more.members):
        np.testing.assert_array_equal(a.x, b.x)
    again = fit_ensemble(model, fun, n_members=3, **kw)
    assert again.from_store == 3
    np.testing.assert_array_equal(again.mean, more.mean)
    # another problem (other data) does not reuse the members
    other = multimodal_objective(model, ecg_term(fun.terms[0].lead_field, fun.terms[0].target * 1.1))
    fresh = fit_ensemble(model, other, n_members=2, **kw)
    assert fresh.from_store == 0


def test_fit_ensemble_bad_input(problem):
    model, fun, _ = problem
    with pytest.raises(InvalidInputError, match="n_members"):
        fit_ensemble(model, fun, n_members=0, scheduler="serial")
    with pytest.raises(InvalidInputError, match="MultimodalObjective"):
        fit_ensemble(model, lambda x: (0.0, x), scheduler="serial")
    with pytest.raises(InvalidInputError, match="weighting"):
        fit_ensemble(model, fun, weighting="best", scheduler="serial")
    other = T.TwinModel(
        model.mesh, model.fibers, T.GlobalVelocities(model.mesh.n_cells), T.CandidateSites([0, 1])
    )
    with pytest.raises(InvalidInputError, match="another model"):
        fit_ensemble(other, fun, scheduler="serial")


def test_explicit_starts_and_continuing_an_ensemble(problem):
    """start= an array gives each member's start; start= a TwinEnsemble continues its members."""
    model, fun, _ = problem
    kw = dict(seed=4, maxiter=1, scheduler="serial")
    rows = np.array([[0.5, 0.25, 1.0, 2.0, 30.0, 35.0], [0.7, 0.35, 4.0, 0.5, 39.0, 10.0]])
    a = fit_ensemble(model, fun, n_members=2, start=rows, **kw)
    for m, r in zip(a.members, rows):
        np.testing.assert_allclose(m.x0, r, rtol=1e-12)
    moved = fit_ensemble(model, fun, n_members=2, start=rows, seed=4, maxiter=5, scheduler="serial")
    cont = fit_ensemble(model, fun, n_members=2, start=moved, **kw)
    for m, prev in zip(cont.members, moved.members):
        lo, hi = np.asarray(model.lower), np.asarray(model.upper)
        np.testing.assert_allclose(m.x0, np.clip(prev.x, lo + 1e-6 * (hi - lo), hi - 1e-6 * (hi - lo)))
    with pytest.raises(InvalidInputError, match=r"\(n_members, n_params\)"):
        fit_ensemble(model, fun, n_members=3, start=rows, **kw)
    with pytest.raises(InvalidInputError, match="finite"):
        fit_ensemble(model, fun, n_members=2, start=np.where(rows > 30, np.nan, rows), **kw)


def test_interrupted_before_any_member_is_an_interruption(problem, monkeypatch):
    """Ctrl-C before any member finished re-raises KeyboardInterrupt (not 'no member succeeded')."""
    import types

    import physim.distributed as PD

    model, fun, _ = problem

    def interrupted_sweep(fn, tasks, **kw):
        return types.SimpleNamespace(results=[None] * len(tasks), failed={}, interrupted=True, n_workers=1,
                                     wall_time_s=0.0, from_store=0)  # fmt: skip

    monkeypatch.setattr(PD, "run_sweep", interrupted_sweep)
    with pytest.raises(KeyboardInterrupt):
        fit_ensemble(model, fun, n_members=2, start=START, scheduler="serial")
