"""Physical learning rules converge to their small-nudge limits at the observed rates."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lattice_reference import dense_stiffness, random_network  # noqa: E402

from physim.errors import InvalidInputError  # noqa: E402
from physim.lattice import (  # noqa: E402
    LatticeObjective,
    RuleObjective,
    adjoint,
    class_targets,
    classifier_loss,
    coupled_learning,
    coupled_learning_limit,
    equilibrium_propagation,
    mse_loss,
    solve,
)
from physim.lattice.rules import _output_compliance  # noqa: E402


def _problem(seed, nb=3):
    rng = np.random.default_rng(seed)
    net = random_network(rng, 2, 3)
    k = rng.uniform(0.5, 2.0, net.n_bonds)
    f = 0.05 * rng.standard_normal((nb, net.n_nodes, 2))
    free = np.flatnonzero(~net.fixed_dofs.any(axis=1))
    outs = np.array([[free[-1], 0], [free[-2], 1], [free[-4], 0]])
    t = 0.05 * rng.standard_normal((nb, 3))
    return net, k, f, outs, t


def _rate(nudges, errors):
    return float(np.polyfit(np.log(nudges), np.log(errors), 1)[0])


def _mse(outs, t):
    def loss(u):
        v = u[:, outs[:, 0], outs[:, 1]] - t
        g = np.zeros_like(u)
        np.add.at(g, (slice(None), outs[:, 0], outs[:, 1]), v)
        return 0.5 * float(np.sum(v * v)), g

    return loss


NUDGES = 1e-2 * 0.5 ** np.arange(5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equilibrium_propagation_converges_at_rate_one(seed):
    net, k, f, outs, t = _problem(seed)
    loss = _mse(outs, t)
    eq = solve(net, k, f)
    exact = adjoint(eq, loss(eq.displacements)[1]).stiffness
    err = [
        np.linalg.norm(equilibrium_propagation(net, k, f, loss, beta=b).gradient - exact)
        / np.linalg.norm(exact)
        for b in NUDGES
    ]
    assert err[-1] < 1e-2
    assert _rate(NUDGES, err) == pytest.approx(1.0, abs=0.1)
    # symmetric nudges: the linear model's energy change is exactly quadratic, the estimate is exact
    sym = equilibrium_propagation(net, k, f, loss, beta=0.3, symmetric=True)
    np.testing.assert_allclose(sym.gradient, exact, rtol=1e-9, atol=1e-12 * np.abs(exact).max())
    assert sym.n_solves == 9


@pytest.mark.parametrize("seed", [3, 4])
def test_equilibrium_propagation_nonlinear_rates(seed):
    net, k, f, outs, t = _problem(seed)
    # largest displacement a tenth of a bond: the geometric nonlinearity matters, no buckling
    f = f * 0.1 / np.abs(solve(net, k, f).displacements).max()
    loss = _mse(outs, t)
    eq = solve(net, k, f, nonlinear=True)
    exact = adjoint(eq, loss(eq.displacements)[1]).stiffness
    nudges = 3e-2 * 0.5 ** np.arange(5)
    one = [
        np.linalg.norm(equilibrium_propagation(net, k, f, loss, beta=b, nonlinear=True).gradient - exact)
        for b in nudges
    ]
    two = [
        np.linalg.norm(
            equilibrium_propagation(net, k, f, loss, beta=b, nonlinear=True, symmetric=True).gradient - exact
        )
        for b in nudges
    ]
    assert _rate(nudges, one) == pytest.approx(1.0, abs=0.15)
    assert _rate(nudges, two) == pytest.approx(2.0, abs=0.2)


def test_equilibrium_propagation_classifier_loss():
    net, k, f, outs, _ = _problem(5, nb=4)
    labels = np.array([0, 1, 2, 1])

    def loss(u):
        return classifier_loss(u, outs, labels)

    eq = solve(net, k, f)
    exact = adjoint(eq, loss(eq.displacements)[1]).stiffness
    err = [
        np.linalg.norm(equilibrium_propagation(net, k, f, loss, beta=b * 1e-3).gradient - exact)
        / np.linalg.norm(exact)
        for b in NUDGES
    ]
    assert _rate(NUDGES, err) == pytest.approx(1.0, abs=0.15)


def test_clamped_state_is_the_constrained_equilibrium():
    """Slow reference: solve the clamped problem by eliminating the clamped dofs densely."""
    net, k, f, outs, t = _problem(6, nb=1)
    eta = 0.4
    upd = coupled_learning(net, k, f[0], outs, t[0], eta=eta)
    u_f = solve(net, k, f[0]).displacements
    target = u_f[outs[:, 0], outs[:, 1]] + eta * (t[0] - u_f[outs[:, 0], outs[:, 1]])
    K, free, C = dense_stiffness(net.points, net.bonds, k, net.fixed_dofs)  # free dofs only
    free = np.asarray(free)
    clamp = np.array([np.flatnonzero(free == o[0] * 2 + o[1])[0] for o in outs])
    rest = np.setdiff1d(np.arange(free.size), clamp)
    rhs = f[0].ravel()[free]
    uc = np.zeros(free.size)
    uc[clamp] = target
    uc[rest] = np.linalg.solve(K[np.ix_(rest, rest)], rhs[rest] - K[np.ix_(rest, clamp)] @ target)
    u_c = np.zeros(net.n_nodes * 2)
    u_c[free] = uc
    e_c, e_f = C @ u_c, C @ u_f.ravel()
    np.testing.assert_allclose(upd.gradient, 0.5 * (e_c**2 - e_f**2) / eta, rtol=1e-9, atol=1e-15)
    assert upd.n_solves == 2
    np.testing.assert_allclose(upd.update, -upd.gradient)


@pytest.mark.parametrize("seed", [0, 7])
def test_coupled_learning_converges_to_its_limit_at_rate_one(seed):
    net, k, f, outs, t = _problem(seed)
    lim = coupled_learning_limit(net, k, f, outs, t)
    err = [
        np.linalg.norm(coupled_learning(net, k, f, outs, t, eta=e).gradient - lim) / np.linalg.norm(lim)
        for e in NUDGES
    ]
    assert err[-1] < 1e-2
    assert _rate(NUDGES, err) == pytest.approx(1.0, abs=0.1)
    # the limit is the in situ gradient with the output error weighted by S^-1
    eq = solve(net, k, f)
    _, S = _output_compliance(eq, outs)
    r = np.linalg.solve(S, (eq.displacements[:, outs[:, 0], outs[:, 1]] - t).T).T
    g = np.zeros_like(eq.displacements)
    np.add.at(g, (slice(None), outs[:, 0], outs[:, 1]), r)
    np.testing.assert_allclose(lim, adjoint(eq, g).stiffness, rtol=1e-12)


def test_coupled_learning_limit_is_the_mse_gradient_for_one_output():
    net, k, f, outs, t = _problem(8)
    o, tt = outs[:1], t[:, :1]
    eq = solve(net, k, f)
    exact = adjoint(eq, _mse(o, tt)(eq.displacements)[1]).stiffness
    lim = coupled_learning_limit(net, k, f, o, tt)
    s = float(_output_compliance(eq, o)[1][0, 0])
    np.testing.assert_allclose(lim * s, exact, rtol=1e-10)  # the same direction, scaled by 1/S


def test_rule_objective_in_situ_matches_lattice_objective():
    net, k, f, outs, t = _problem(9, nb=5)

    def loss(u, idx):
        return mse_loss(u, outs, t[idx])

    a = RuleObjective(net, f, loss, rule="in_situ")
    b = LatticeObjective(net, f, loss)
    va, ga = a(k, np.array([0, 2, 4]))
    vb, gb = b(k, np.array([0, 2, 4]))
    assert va == vb
    np.testing.assert_allclose(ga, gb, rtol=1e-14)
    assert a.n_solves == 6
    cl = RuleObjective(net, f, loss, rule="coupled_learning", nudge=1e-3, outputs=outs, targets=t)
    _, gc = cl(k, np.array([1, 3]))
    np.testing.assert_allclose(gc, coupled_learning(net, k, f[[1, 3]], outs, t[[1, 3]], eta=1e-3).gradient)
    with pytest.raises(InvalidInputError, match="rule"):
        RuleObjective(net, f, loss, rule="hebbian")
    with pytest.raises(InvalidInputError, match="targets"):
        RuleObjective(net, f, loss, rule="coupled_learning")


def test_class_targets_move_the_response_to_the_true_output():
    v = np.array([[1.0, -2.0, 0.5], [-0.3, 0.1, 0.2]])
    t = class_targets(v, [0, 0])
    np.testing.assert_allclose(t, [[3.0, -1.0, 0.25], [-0.45, 0.05, 0.1]])
    with pytest.raises(InvalidInputError, match="eta"):
        coupled_learning(*_problem(1)[:4], np.zeros(3), eta=2.0)
