"""The eikonal solver on the biventricular hearts at every velocity ratio the twin's bounds allow
(v_f / v_c up to 20 inside 0.1-2 mm/ms): converged, bounded work, exact and cheap adjoint."""

import numpy as np
import pytest

from physim.cardiac import load_biventricular, rule_based
from physim.cardiac.heart import LANDMARKS
from physim.eikonal import adjoint, conduction_tensor, conduction_tensor_vjp, solve
from physim.optim import check_gradient

RATIOS = [1, 5, 10, 20]
_CACHE = {}


def _heart(size):
    if size not in _CACHE:
        heart = load_biventricular(size)
        endo = heart.lv_endo | heart.rv_endo
        src = np.array([heart.nearest_node(p, endo) for p, _ in LANDMARKS.values()])
        _CACHE[size] = heart.tet_mesh(), rule_based(heart).fibers, src
    return _CACHE[size]


def _velocities(ratio):
    vf = 2.0 if ratio >= 10 else 1.0  # corners of the twin's bounds
    return vf, vf / ratio


def _check(size, ratio, n_sources):
    mesh, fib, sites = _heart(size)
    vf, vc = _velocities(ratio)
    D = conduction_tensor(fib, vf, vc)
    src = sites[3:4] if n_sources == 1 else sites
    act = solve(mesh, D, src, np.arange(src.size, dtype=float))
    assert act.n_unreached == 0
    assert act.visits <= 12 * mesh.n_points  # bounded work (the plain method: > 1000 per node at 20)
    # a converged fixed point: refining once more (tol 0) moves no time by more than 1e-6 ms
    exact = solve(mesh, D, src, np.arange(src.size, dtype=float), tol=0.0)
    assert np.max(np.abs(act.times - exact.times)) <= 1e-6
    g = adjoint(act, np.random.default_rng(ratio).standard_normal(mesh.n_points))
    assert np.all(np.isfinite(g.D)) and np.all(np.isfinite(g.times))
    return mesh, fib, src


@pytest.mark.parametrize("n_sources", [1, 5])
@pytest.mark.parametrize("ratio", RATIOS)
def test_10k_heart_every_ratio(ratio, n_sources):
    _check("10k", ratio, n_sources)


@pytest.mark.slow
@pytest.mark.parametrize("size", ["65k", "large"])
@pytest.mark.parametrize("ratio", RATIOS)
def test_larger_hearts_every_ratio(size, ratio):
    _check(size, ratio, 5)


@pytest.mark.parametrize("ratio", [1.02, 20])
def test_10k_heart_velocity_gradient(ratio):
    """Taylor test of dL/d(v_f, v_c) near isotropy and at ratio 20. (Exactly at v_f = v_c the
    discrete solution has a kink: the fibre turns from the fast into the slow direction.)"""
    mesh, fib, sites = _heart("10k")
    w = np.random.default_rng(4).standard_normal(mesh.n_points)

    def f(v):
        act = solve(mesh, conduction_tensor(fib, v[0], v[1]), sites, tol=0.0)
        cg = conduction_tensor_vjp(fib, v[0], v[1], None, adjoint(act, w).D)
        return float(w @ act.times), np.array([cg.v_fiber, cg.v_cross])

    chk = check_gradient(f, np.array(_velocities(ratio)), h0=1e-4)
    assert chk.ok, chk
