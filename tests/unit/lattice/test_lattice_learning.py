"""Training helpers: stiffness transform, objective gradients through physim.optim, Adam."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lattice_reference import paper_network  # noqa: E402

from physim.errors import InvalidTypeError, ShapeError  # noqa: E402
from physim.lattice import (  # noqa: E402
    PAPER,
    LatticeObjective,
    accuracy,
    classifier_loss,
    mse_loss,
    stiffness_from_width,
    stiffness_transform,
    train_adam,
    weight_force,
    width_from_stiffness,
)
from physim.optim import check_gradient  # noqa: E402


def test_paper_stiffness_range_and_transform():
    assert stiffness_from_width(1.5e-3) == pytest.approx(103.125)
    assert stiffness_from_width(2.5e-3) == pytest.approx(171.875)
    assert width_from_stiffness(137.5) == pytest.approx(2e-3)
    t = stiffness_transform()
    k = t.forward(np.array([-50.0, 0.0, 50.0]))
    assert k[0] >= 103.125 and k[2] <= 171.875 and k[1] == pytest.approx(137.5)
    assert weight_force(5.0) == pytest.approx(0.049)
    assert PAPER["youngs_modulus"] == 0.55e6


def _behaviour_objective():
    net = paper_network()
    f = np.zeros((1, 14, 2))
    f[0, 10, 1] = -weight_force(5.0)
    target = np.array([-0.6253, -0.4800])  # mm

    def loss(u, idx):
        return mse_loss(u, [[12, 1], [13, 1]], target, scale=1e3)

    return net, LatticeObjective(net, f, loss, stiffness_transform())


def test_objective_gradient_in_transformed_variables():
    _, obj = _behaviour_objective()
    z = np.random.default_rng(0).standard_normal(28)
    chk = check_gradient(obj, z, h0=1e-2)
    assert chk.ok, chk


def test_minibatch_objective_gradient_classifier():
    net = paper_network()
    rng = np.random.default_rng(1)
    n = 12
    f = np.zeros((n, 14, 2))
    f[:, [5, 6, 7, 8], 1] = -0.05 * rng.uniform(0.2, 1.0, (n, 4))
    labels = rng.integers(0, 3, n)
    outputs = [[9, 0], [10, 0], [11, 0]]

    def loss(u, idx):
        return classifier_loss(u, outputs, labels[idx])

    obj = LatticeObjective(net, f, loss, stiffness_transform())
    z = rng.standard_normal(28)
    chk = check_gradient(lambda zz: obj(zz, np.array([0, 3, 7])), z, h0=1e-2)
    assert chk.ok, chk
    acc = accuracy(net, obj.stiffness(z), f, labels, outputs)
    assert 0.0 <= acc <= 1.0


def test_adam_training_reduces_behaviour_loss_and_respects_bounds():
    _, obj = _behaviour_objective()
    z0 = np.zeros(28)
    l0 = obj(z0)[0]
    res = train_adam(obj, z0, epochs=60, lr=0.1)
    assert res.fun < 0.05 * l0
    assert np.all(res.stiffness >= 103.125) and np.all(res.stiffness <= 171.875)


def test_objective_validation():
    net = paper_network()
    with pytest.raises(ShapeError, match="forces must have shape"):
        LatticeObjective(net, np.zeros((3, 13, 2)), lambda u, i: (0.0, u))
    with pytest.raises(InvalidTypeError, match="callable"):
        LatticeObjective(net, np.zeros((3, 14, 2)), None)
