"""Pseudo-ECG adjoint against finite differences (Taylor tests)."""

from __future__ import annotations

import numpy as np
import pytest
from test_ecg_forward import box_mesh, random_spd

from physim.cardiac import ecg as E
from physim.optim import check_gradient


@pytest.fixture(scope="module")
def problem():
    pts, tets = box_mesh(3, jitter=0.15, seed=2)
    rng = np.random.default_rng(10)
    G = random_spd(rng, len(tets))
    system = E.standard_12_lead((pts, tets))
    lf = E.lead_field((pts, tets), system, G)
    phi = 3.0 * np.linalg.norm(pts - pts[0], axis=1) + rng.uniform(0, 2, len(pts))
    return pts, tets, G, system, lf, phi


MODELS = {
    "qrs": E.ActionPotential(upstroke_ms=4.0, repolarization=False),
    "qrst": E.ActionPotential(upstroke_ms=3.0, apd_ms=60.0, repolarization_ms=30.0),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("loss", ["mse", "corr"])
def test_gradient_wrt_activation_times(problem, name, loss):
    *_, lf, phi = problem
    model = MODELS[name]
    rng = np.random.default_rng(11)
    target = E.simulate_ecg(
        lf, phi + rng.normal(0, 3.0, phi.shape), model=model, n_samples=150, dt=0.8
    ).signals
    lossf = E.lead_mse_loss if loss == "mse" else E.correlation_loss

    def fun(p):
        ecg = E.simulate_ecg(lf, p, model=model, n_samples=150, dt=0.8)
        v, g = lossf(ecg, target)
        return v, E.adjoint(ecg, g).times

    chk = check_gradient(fun, phi, h0=0.5)
    assert chk.ok, chk
    assert abs(chk.rate - 2.0) < 0.3


def test_gradient_wrt_conductivity(problem):
    pts, tets, G, system, lf, phi = problem
    model = MODELS["qrst"]
    rng = np.random.default_rng(12)
    target = rng.standard_normal((12, 120)) * 0.01

    def fun(Gx):
        lfx = E.lead_field((pts, tets), system, Gx)
        ecg = E.simulate_ecg(lfx, phi, model=model, n_samples=120)
        v, g = E.lead_mse_loss(ecg, target, normalize=False)
        return v, E.adjoint(ecg, g, conductivity=True).conductivity

    d = rng.standard_normal(G.shape)
    d = d + d.transpose(0, 2, 1)
    chk = check_gradient(fun, G, direction=d, h0=1e-3)
    assert chk.ok, chk


def test_gradient_wrt_sigma_through_fibers(problem):
    pts, tets, G, system, lf, phi = problem
    rng = np.random.default_rng(13)
    fibers = rng.standard_normal((len(tets), 3))
    target = rng.standard_normal((12, 100)) * 0.01

    def fun(s):
        Gx = E.intracellular_conductivity(fibers, s[0], s[1])
        ecg = E.simulate_ecg(E.lead_field((pts, tets), system, Gx), phi, n_samples=100)
        v, g = E.lead_mse_loss(ecg, target, normalize=False)
        dG = E.adjoint(ecg, g, conductivity=True).conductivity
        dl, dt = E.intracellular_conductivity_vjp(fibers, dG)
        return v, np.array([dl.sum(), dt.sum()])

    chk = check_gradient(fun, np.array([0.17, 0.02]), h0=1e-3)
    assert chk.ok, chk


def test_unreached_nodes_have_zero_gradient(problem):
    *_, lf, phi = problem
    p = phi.copy()
    p[:5] = np.inf
    ecg = E.simulate_ecg(lf, p, n_samples=80)
    g = E.adjoint(ecg, np.ones_like(ecg.signals)).times
    assert np.all(g[:5] == 0.0) and np.all(np.isfinite(g))
