"""train_classifier: the paper's encoding, exact reproducibility with a seed, selection and validation."""

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from lattice_reference import paper_network  # noqa: E402

from physim.errors import InvalidInputError, ShapeError  # noqa: E402
from physim.lattice import (  # noqa: E402
    PAPER_FORCE_SCALE,
    LatticeObjective,
    classifier_loss,
    confusion_matrix,
    feature_forces,
    load_iris,
    solve,
    stiffness_transform,
    train_adam,
    train_classifier,
)

INPUTS = [13, 11, 12, 9]
OUTPUTS = [[7, 0], [1, 0], [2, 0]]


def test_encoding_is_the_papers_formula():
    X, _ = load_iris()
    net = paper_network()
    F = feature_forces(net, X, INPUTS)
    assert PAPER_FORCE_SCALE == pytest.approx(0.005 * 9.8)
    for s in (0, 77, 149):
        for j, node in enumerate(INPUTS):
            assert F[s, node, 1] == pytest.approx(-(X[s, j] / X[:, j].max()) * 0.005 * 9.8, rel=1e-15)
            assert F[s, node, 0] == 0.0
    others = np.setdiff1d(np.arange(14), INPUTS)
    assert np.all(F[:, others] == 0.0)
    assert F[:, INPUTS, 1].min() >= -0.049 - 1e-15
    half = feature_forces(net, X[:10], INPUTS, feature_max=2 * X[:10].max(0), force_scale=0.1)
    np.testing.assert_allclose(half[:, INPUTS, 1], -0.05 * X[:10] / X[:10].max(0), rtol=1e-14)


def _data(n=45):
    X, y = load_iris()
    idx = np.random.default_rng(4).permutation(150)[:n]
    return X, y, idx


def test_fixed_small_run_is_exactly_reproducible_and_matches_train_adam():
    X, y, idx = _data()
    net = paper_network()
    kw = dict(feature_max=X.max(0), epochs=4, batch_size=16, lr=0.5, restarts=1, seed=3)
    a = train_classifier(net, X[idx], y[idx], INPUTS, OUTPUTS, **kw)
    b = train_classifier(net, X[idx], y[idx], INPUTS, OUTPUTS, **kw)
    np.testing.assert_array_equal(a.stiffness, b.stiffness)
    np.testing.assert_array_equal(a.history["loss"], b.history["loss"])
    # the same run written with the public building blocks
    t = stiffness_transform()
    F = feature_forces(net, X[idx], INPUTS, feature_max=X.max(0))
    obj = LatticeObjective(net, F, lambda u, i: classifier_loss(u, OUTPUTS, y[idx][i]), t)
    from physim.lattice.classify import _seed

    ref = train_adam(
        obj, np.zeros(28), epochs=4, batch_size=16, lr=0.5, seed=_seed(3, 0), lr_schedule="cosine"
    )
    np.testing.assert_allclose(a.stiffness, ref.stiffness, rtol=1e-14)
    assert a.n_solves == 2 * idx.size * 4
    assert a.history["stiffness"].shape == (4, 28) and a.history["train_accuracy"].shape == (4,)
    np.testing.assert_array_equal(a.history["stiffness"][-1], a.stiffness)
    with pytest.raises(ValueError, match="read-only"):
        a.stiffness[0] = 1.0


def test_restart_kept_by_training_accuracy_then_loss():
    X, y, idx = _data()
    net = paper_network()
    r = train_classifier(
        net, X[idx], y[idx], INPUTS, OUTPUTS, feature_max=X.max(0), epochs=3, restarts=4, seed=1
    )
    acc, loss = r.history["restart_train_accuracy"], r.history["restart_loss"]
    best = max(range(4), key=lambda i: (acc[i], -loss[i]))
    assert r.best_restart == best
    assert r.accuracy(X[idx], y[idx]) == pytest.approx(acc[best])
    assert r.history["train_accuracy"][-1] == pytest.approx(acc[best])
    # predictions, probabilities and confusion matrix agree with the equilibrium
    u = solve(net, r.stiffness, r.forces(X)).displacements
    v = np.abs(u[:, [7, 1, 2], 0])
    np.testing.assert_array_equal(r.predict(X), np.argmax(v, axis=1))
    np.testing.assert_allclose(r.probabilities(X), v / v.sum(1, keepdims=True), rtol=1e-12)
    c = r.confusion_matrix(X, y)
    assert c.sum() == 150 and np.trace(c) == round(r.accuracy(X, y) * 150)
    np.testing.assert_allclose(r.accuracy_history(X[idx], y[idx]), r.history["train_accuracy"])
    r2 = pickle.loads(pickle.dumps(r))
    np.testing.assert_array_equal(r2.predict(X), r.predict(X))
    assert "ClassifierResult(" in repr(r) and len(repr(r)) < 300


def test_confusion_matrix_counts():
    c = confusion_matrix([0, 0, 1, 2, 2], [0, 1, 1, 2, 0], 3)
    np.testing.assert_array_equal(c, [[1, 1, 0], [0, 1, 0], [1, 0, 1]])


def test_validation_messages():
    X, y, idx = _data(20)
    net = paper_network()
    with pytest.raises(ShapeError, match=r"features must have shape \(N, 4\)"):
        train_classifier(net, X[idx, :3], y[idx], INPUTS, OUTPUTS)
    with pytest.raises(InvalidInputError, match="labels"):
        train_classifier(net, X[idx], y[idx] + 5, INPUTS, OUTPUTS)
    with pytest.raises(InvalidInputError, match="pinned"):
        train_classifier(net, X[idx], y[idx], INPUTS, [[0, 0], [1, 0], [2, 0]])
    with pytest.raises(InvalidInputError, match="feature_max"):
        train_classifier(net, X[idx], y[idx], INPUTS, OUTPUTS, feature_max=[1, 1, 0, 1])
    with pytest.raises(InvalidInputError, match="restarts"):
        train_classifier(net, X[idx], y[idx], INPUTS, OUTPUTS, restarts=0)
    with pytest.raises(InvalidInputError, match="inputs"):
        train_classifier(net, X[idx], y[idx], [13, 11, 12, 99], OUTPUTS)


def test_ctrl_c_keeps_the_finished_starts():
    X, y, idx = _data()
    net = paper_network()

    def cb(restart, epoch, res):
        if restart == 1 and epoch == 2:
            raise KeyboardInterrupt

    r = train_classifier(
        net, X[idx], y[idx], INPUTS, OUTPUTS, feature_max=X.max(0), epochs=4, restarts=5, seed=2, callback=cb
    )
    assert len(r.history["restart_loss"]) == 2
    assert "interrupted after 2 of 5 starts" in r.message
    assert r.best_restart in (0, 1)
