"""Adjoint gradients checked by Taylor tests (rate 2) and full finite differences."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import importlib  # noqa: E402

from lattice_reference import paper_network, random_network  # noqa: E402

from physim.errors import InvalidInputError, InvalidTypeError, ShapeError  # noqa: E402
from physim.lattice import adjoint, classifier_loss, mse_loss, solve  # noqa: E402
from physim.optim import check_gradient  # noqa: E402


def make_problem(d, batch, seed, nonlinear):
    rng = np.random.default_rng(seed)
    net = random_network(rng, d)
    k = rng.uniform(50, 200, net.n_bonds)
    shape = (batch, net.n_nodes, d) if batch else (net.n_nodes, d)
    f = (2.0 if nonlinear else 1.0) * rng.standard_normal(shape)  # nonlinear: finite rotations
    w = rng.standard_normal(shape)  # loss L = w . u + |u|^2
    l0 = net.lengths * (1 + 0.01 * rng.standard_normal(net.n_bonds))
    return net, k, f, w, l0


def loss(u, w):
    return float(np.sum(w * u) + np.sum(u * u)), w + 2 * u


CASES = [(d, b, nl) for d in (2, 3) for b in (0, 3) for nl in (False, True)]


@pytest.mark.parametrize("d, batch, nonlinear", CASES)
def test_stiffness_gradient_taylor(d, batch, nonlinear):
    net, k, f, w, l0 = make_problem(d, batch, 100 + d + batch, nonlinear)

    def fun(kk):
        eq = solve(net, kk, f, nonlinear=nonlinear, rest_length=l0)
        val, g = loss(eq.displacements, w)
        return val, adjoint(eq, g).stiffness

    chk = check_gradient(fun, k, seed=d)
    assert chk.ok, chk


@pytest.mark.parametrize("d, batch, nonlinear", CASES)
def test_rest_length_gradient_taylor(d, batch, nonlinear):
    net, k, f, w, l0 = make_problem(d, batch, 200 + d + batch, nonlinear)

    def fun(ll):
        eq = solve(net, k, f, nonlinear=nonlinear, rest_length=ll)
        val, g = loss(eq.displacements, w)
        return val, adjoint(eq, g).rest_length

    chk = check_gradient(fun, l0, seed=d, h0=1e-3)
    assert chk.ok, chk


@pytest.mark.parametrize("nonlinear", [False, True])
def test_force_gradient_taylor(nonlinear):
    net, k, f, w, l0 = make_problem(2, 2, 300, nonlinear)

    def fun(ff):
        eq = solve(net, k, ff.reshape(f.shape), nonlinear=nonlinear)
        val, g = loss(eq.displacements, w)
        return val, adjoint(eq, g).forces.ravel()

    chk = check_gradient(fun, f.ravel(), seed=1, h0=0.1)
    assert chk.ok, chk


@pytest.mark.parametrize("nonlinear", [False, True])
def test_full_finite_difference_jacobian_tiny_problem(nonlinear):
    net, k, f, w, l0 = make_problem(2, 0, 400, nonlinear)

    def value(kk, ll):
        return loss(solve(net, kk, f, nonlinear=nonlinear, rest_length=ll).displacements, w)[0]

    eq = solve(net, k, f, nonlinear=nonlinear, rest_length=l0)
    grad = adjoint(eq, loss(eq.displacements, w)[1])
    for i in range(net.n_bonds):
        hk, hl = 1e-4 * k[i], 1e-6
        e = np.zeros(net.n_bonds)
        e[i] = 1.0
        fd_k = (value(k + hk * e, l0) - value(k - hk * e, l0)) / (2 * hk)
        fd_l = (value(k, l0 + hl * e) - value(k, l0 - hl * e)) / (2 * hl)
        scale_k = np.abs(grad.stiffness).max()
        scale_l = np.abs(grad.rest_length).max()
        assert abs(grad.stiffness[i] - fd_k) < 1e-6 * scale_k, (i, grad.stiffness[i], fd_k)
        assert abs(grad.rest_length[i] - fd_l) < 1e-6 * scale_l, (i, grad.rest_length[i], fd_l)


def test_in_situ_rule_on_the_paper_network():
    # dL/dk_i = e_i(forward) * e_i(adjoint), the adjoint state being the network's
    # response to the load -dL/du at the outputs (Li & Mao 2024)
    net = paper_network()
    k = np.linspace(110, 160, 28)
    f = np.zeros((14, 2))
    f[10, 1] = -0.049
    eq = solve(net, k, f)
    outputs = [[12, 1], [13, 1]]
    _, g = mse_loss(eq.displacements, outputs, [-6.253e-4, -4.8e-4])
    e_adj = solve(net, k, -g).elongations
    np.testing.assert_allclose(adjoint(eq, g).stiffness, eq.elongations * e_adj, rtol=1e-12)


@pytest.mark.parametrize("nonlinear", [False, True])
def test_per_sample_gradients_sum_to_batch_gradient(nonlinear):
    net, k, f, w, l0 = make_problem(3, 3, 500, nonlinear)
    eq = solve(net, k, f, nonlinear=nonlinear)
    _, g = loss(eq.displacements, w)
    tot = adjoint(eq, g)
    per = adjoint(eq, g, per_sample=True)
    assert per.stiffness.shape == (3, net.n_bonds) and tot.stiffness.shape == (net.n_bonds,)
    np.testing.assert_allclose(per.stiffness.sum(0), tot.stiffness, rtol=1e-12)
    np.testing.assert_allclose(per.rest_length.sum(0), tot.rest_length, rtol=1e-12)
    for b in range(3):
        one = solve(net, k, f[b], nonlinear=nonlinear)
        np.testing.assert_allclose(
            adjoint(one, g[b]).stiffness,
            per.stiffness[b],
            rtol=1e-8,
            atol=1e-12 * np.abs(per.stiffness).max(),
        )


@pytest.mark.parametrize("nonlinear", [False, True])
def test_adjoint_reuses_the_forward_factorisation(monkeypatch, nonlinear):
    net, k, f, w, _ = make_problem(2, 4, 600, nonlinear)
    eq = solve(net, k, f, nonlinear=nonlinear)
    solve_mod = importlib.import_module("physim.lattice.solve")  # the module, not the function
    calls = []
    real = solve_mod._factorize  # SuperLU or, for small networks, dense Cholesky
    monkeypatch.setattr(solve_mod, "_factorize", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    adjoint(eq, loss(eq.displacements, w)[1])
    assert calls == []
    solve(net, k, f, nonlinear=False)
    assert len(calls) == 1  # one factorisation for the whole batch of 4


def test_adjoint_validation():
    net, k, f, w, _ = make_problem(2, 0, 700, False)
    eq = solve(net, k, f)
    with pytest.raises(ShapeError, match="shape of the displacements"):
        adjoint(eq, np.zeros((2, net.n_nodes, 2)))
    with pytest.raises(InvalidTypeError, match="Equilibrium"):
        adjoint(f, w)


@pytest.mark.parametrize("batched", [False, True])
def test_loss_gradients_taylor(batched):
    rng = np.random.default_rng(8)
    shape = (4, 14, 2) if batched else (14, 2)
    u = 1e-3 * rng.standard_normal(shape)
    outputs = np.array([[5, 0], [6, 0], [7, 0]])
    target = rng.standard_normal((4, 3) if batched else 3)
    labels = rng.integers(0, 3, 4) if batched else 1

    def f_mse(x):
        v, g = mse_loss(x.reshape(shape), outputs, target, scale=1e3)
        return v, g.ravel()

    def f_ce(x):
        v, g = classifier_loss(x.reshape(shape), outputs, labels)
        return v, g.ravel()

    for fn in (f_mse, f_ce):
        chk = check_gradient(fn, u.ravel(), h0=1e-5)
        assert chk.ok, (fn.__name__, chk)


def test_classifier_loss_value_and_probabilities():
    u = np.zeros((3, 2))
    u[:, 0] = [1.0, -3.0, 0.0]
    v, _ = classifier_loss(u, [[0, 0], [1, 0], [2, 0]], 1)
    assert v == pytest.approx(-np.log(0.75))


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda u: mse_loss(u, [[14, 0]], [0.0]), InvalidInputError, "names node 14"),
        (lambda u: mse_loss(u, [[3, 2]], [0.0]), InvalidInputError, "names axis 2"),
        (lambda u: mse_loss(u, [[3, 0]], [0.0, 1.0]), ShapeError, "target must have shape"),
        (lambda u: mse_loss(u, [3, 0], [0.0]), ShapeError, "outputs must have shape"),
        (lambda u: classifier_loss(u, [[3, 0], [4, 0]], 2), InvalidInputError, "index 2"),
        (lambda u: classifier_loss(u[None].repeat(3, 0), [[3, 0], [4, 0]], [0, 1]), ShapeError, "labels"),
        (lambda u: mse_loss(u[0], [[3, 0]], [0.0]), ShapeError, r"u must have shape"),
    ],
)
def test_loss_validation(call, exc, match):
    with pytest.raises(exc, match=match):
        call(np.zeros((14, 2)))
