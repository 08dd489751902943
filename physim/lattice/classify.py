"""Classification with a mechanical neural network (Li & Mao 2024).

A sample's features become downward forces on input nodes, proportional to
the raw measurements: ``F_j = -force_scale * x_j / max(x_j)`` (the paper:
``force_scale = 0.005 kg * 9.8 m/s^2``, features divided by their maximum
over the data set); the class scores are the magnitudes of chosen output
displacements, ``p_j = |u_j| / sum_l |u_l|``, trained with cross-entropy and
read out as ``argmax_j |u_j|``.

:func:`train_classifier` trains the bond stiffnesses by minibatch Adam
through the in situ adjoint (or a physical learning rule of :mod:`.rules`),
the widths bounded by the exact-derivative sigmoid transform, from several
starts ("restarts"); it keeps the start with the highest training accuracy
(ties: the lowest training loss), so no test data is used to choose. Its
defaults are the recipe measured by the ``mnn_iris`` and ``mnn_iris_tuning``
scenarios on the paper's 14-node network: step size 1.0 on a cosine
schedule, 30 epochs of batches of 16, 16 starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from .._result import Result, readonly
from .._validate import as_float_array, as_index_array, as_scalar
from ..errors import InvalidInputError, InvalidTypeError, ShapeError
from ..optim import Transform
from .learning import (
    PAPER,
    stiffness_from_width,
    stiffness_transform,
    train_adam,
    weight_force,
)
from .losses import class_probabilities, classifier_loss, predict_class
from .network import SpringNetwork
from .rules import RuleObjective, class_targets
from .solve import solve

__all__ = [
    "PAPER_FORCE_SCALE",
    "feature_forces",
    "train_classifier",
    "ClassifierResult",
    "confusion_matrix",
]

#: Largest input force of the paper's encoding (N): a 5 g weight.
PAPER_FORCE_SCALE = weight_force(5.0)


def _check_network(network) -> None:
    if not isinstance(network, SpringNetwork):
        raise InvalidTypeError(f"network must be a SpringNetwork, got {type(network).__name__}")


def _check_io(network: SpringNetwork, inputs, outputs) -> tuple[np.ndarray, np.ndarray]:
    inp = as_index_array("inputs", inputs, upper=network.n_nodes, shape=(None,))
    if inp.size == 0:
        raise ShapeError("inputs must name at least one node, got shape (0,)")
    out = as_index_array("outputs", outputs, shape=(None, 2))
    if out.shape[0] < 2:
        raise ShapeError(
            f"outputs must name at least two (node, axis) pairs (one per class), got {out.shape}"
        )
    as_index_array("outputs[:, 0]", out[:, 0], upper=network.n_nodes)
    as_index_array("outputs[:, 1]", out[:, 1], upper=network.dim)
    pinned = network.fixed_dofs[out[:, 0], out[:, 1]]
    if pinned.any():
        i = int(np.argmax(pinned))
        raise InvalidInputError(f"outputs[{i}] = {out[i].tolist()} is a pinned dof (its displacement is 0)")
    return inp, out


def _check_features(features, n_inputs: int) -> np.ndarray:
    x = as_float_array("features", features)
    if x.ndim != 2 or x.shape[1] != n_inputs:
        raise ShapeError(
            f"features must have shape (N, {n_inputs}) (one column per input node), got {x.shape}"
        )
    if x.shape[0] == 0:
        raise ShapeError("features must hold at least one sample, got shape (0, ...)")
    return x


def feature_forces(
    network: SpringNetwork,
    features: ArrayLike,
    inputs: ArrayLike,
    *,
    force_scale: float = PAPER_FORCE_SCALE,
    feature_max: ArrayLike | None = None,
) -> np.ndarray:
    """Encode features as nodal forces: ``F[s, inputs[j], 1] = -force_scale * x[s, j] / feature_max[j]``.

    Parameters
    ----------
    network : SpringNetwork
        2D or 3D network; forces act along axis 1 (``-y``, downwards).
    features : array_like, float, shape (N, f)
        One row per sample, one column per input node.
    inputs : array_like of int, shape (f,)
        Node receiving each feature's force.
    force_scale : float
        Force (N) of a feature equal to its maximum; the paper's 5 g weight,
        0.049 N, by default.
    feature_max : array_like, shape (f,), optional
        Divisor of each feature (default the column maxima of ``features``);
        pass the maxima over the whole data set to reproduce the paper.

    Returns
    -------
    ndarray, float64, shape (N, n, d)
        Forces (N).
    """
    _check_network(network)
    inp = as_index_array("inputs", inputs, upper=network.n_nodes, shape=(None,))
    x = _check_features(features, inp.size)
    xmax = _feature_max(x, feature_max)
    scale = as_scalar("force_scale", force_scale, positive=True)
    f = np.zeros((x.shape[0], network.n_nodes, network.dim))
    np.add.at(f, (slice(None), inp, 1), -scale * x / xmax)
    return f


def _feature_max(x: np.ndarray, feature_max) -> np.ndarray:
    if feature_max is None:
        xmax = x.max(axis=0)
    else:
        xmax = as_float_array("feature_max", feature_max)
        if xmax.shape != (x.shape[1],):
            raise ShapeError(f"feature_max must have shape ({x.shape[1]},), got {xmax.shape}")
    if np.any(xmax <= 0):
        j = int(np.argmax(xmax <= 0))
        raise InvalidInputError(
            f"feature_max[{j}] = {xmax[j]} must be > 0 (forces are proportional to feature / feature_max)"
        )
    return np.array(xmax, dtype=float)


def confusion_matrix(labels: ArrayLike, predicted: ArrayLike, n_classes: int) -> np.ndarray:
    """Counts ``C[i, j]`` of samples of true class ``i`` predicted as ``j``, int64 (k, k)."""
    y = as_index_array("labels", np.atleast_1d(labels), upper=n_classes)
    p = as_index_array("predicted", np.atleast_1d(predicted), upper=n_classes)
    if y.shape != p.shape:
        raise ShapeError(f"labels and predicted must have the same shape, got {y.shape} and {p.shape}")
    c = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(c, (y, p), 1)
    return c


@dataclass(frozen=True, repr=False)
class ClassifierResult(Result):
    """A trained mechanical classifier: stiffnesses, encoding and training record.

    Attributes
    ----------
    network : SpringNetwork
    stiffness : ndarray, float64 (m,)
        Trained bond stiffnesses (N/m), read-only.
    inputs : ndarray, int64 (f,)
        Input node of each feature.
    outputs : ndarray, int64 (k, 2)
        (node, axis) output of each class.
    feature_max : ndarray, float64 (f,)
        Feature divisors of the encoding.
    force_scale : float
        Force (N) of a feature at its maximum.
    history : dict of str to read-only ndarray
        Of the kept start: ``loss`` (epochs,) mean minibatch cross-entropy per
        epoch; ``train_accuracy`` (epochs,) on the training set after each
        epoch; ``stiffness`` (epochs, m) after each epoch (N/m). Of every
        start: ``restart_loss`` (R,) final full-batch training loss,
        ``restart_train_accuracy`` (R,), ``restart_seconds`` (R,).
    best_restart : int
        Index of the kept start.
    n_solves : int
        Physical equilibrium states measured in training, all starts together:
        two per sample of each batch (free and adjoint states for the in situ
        rule, free and clamped or nudged states for the physical rules).
    message : str
        The optimiser's message for the kept start.
    """

    network: SpringNetwork
    stiffness: np.ndarray
    inputs: np.ndarray
    outputs: np.ndarray
    feature_max: np.ndarray
    force_scale: float
    history: dict = field(default_factory=dict)
    best_restart: int = 0
    n_solves: int = 0
    message: str = ""

    def __repr__(self) -> str:
        acc = self.history.get("train_accuracy")
        last = f", train_accuracy={acc[-1]:.3f}" if acc is not None and len(acc) else ""
        return (
            f"ClassifierResult(n_bonds={self.stiffness.size}, n_classes={self.outputs.shape[0]}, "
            f"epochs={len(self.history.get('loss', ()))}, restarts={len(self.history.get('restart_loss', ()))}, "
            f"best_restart={self.best_restart}{last})"
        )

    @property
    def n_classes(self) -> int:
        """Number of classes ``k``."""
        return int(self.outputs.shape[0])

    def forces(self, features: ArrayLike) -> np.ndarray:
        """The encoded load cases (N, n, d) (N) of ``features`` (N, f)."""
        return feature_forces(
            self.network, features, self.inputs, force_scale=self.force_scale, feature_max=self.feature_max
        )

    def displacements(self, features: ArrayLike, stiffness: ArrayLike | None = None) -> np.ndarray:
        """Equilibrium displacements (N, n, d) (m) for ``features``."""
        k = self.stiffness if stiffness is None else stiffness
        return solve(self.network, k, self.forces(features)).displacements

    def probabilities(self, features: ArrayLike) -> np.ndarray:
        """Class probabilities ``|u_j| / sum |u|``, float64 (N, k)."""
        return class_probabilities(self.displacements(features), self.outputs)

    def predict(self, features: ArrayLike) -> np.ndarray:
        """Predicted class ``argmax_j |u_j|`` of each sample, int64 (N,)."""
        return np.atleast_1d(predict_class(self.displacements(features), self.outputs)).astype(np.int64)

    def accuracy(self, features: ArrayLike, labels: ArrayLike) -> float:
        """Fraction of samples whose predicted class equals ``labels`` (int (N,), in [0, k))."""
        pred = self.predict(features)
        y = as_index_array("labels", np.atleast_1d(labels), upper=self.n_classes)
        if y.shape != pred.shape:
            raise ShapeError(f"labels must have shape {pred.shape}, got {y.shape}")
        return float(np.mean(pred == y))

    def confusion_matrix(self, features: ArrayLike, labels: ArrayLike) -> np.ndarray:
        """Confusion matrix (k, k) int64 of ``features`` against ``labels`` (rows: true class)."""
        return confusion_matrix(labels, self.predict(features), self.n_classes)

    def accuracy_history(self, features: ArrayLike, labels: ArrayLike) -> np.ndarray:
        """Accuracy on ``features``/``labels`` after each epoch of the kept start, float64 (epochs,)."""
        f = self.forces(features)
        y = as_index_array("labels", np.atleast_1d(labels), upper=self.n_classes)
        if y.shape != (f.shape[0],):
            raise ShapeError(f"labels must have shape ({f.shape[0]},), got {y.shape}")
        out = [
            float(np.mean(predict_class(solve(self.network, k, f).displacements, self.outputs) == y))
            for k in self.history["stiffness"]
        ]
        return readonly(np.array(out))


def _seed(seed: int, restart: int) -> int:
    """An int seed for start ``restart`` of a run seeded ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([int(seed), int(restart)]).generate_state(1)[0])


def train_classifier(
    network: SpringNetwork,
    features: ArrayLike,
    labels: ArrayLike,
    inputs: ArrayLike,
    outputs: ArrayLike,
    *,
    force_scale: float = PAPER_FORCE_SCALE,
    feature_max: ArrayLike | None = None,
    epochs: int = 30,
    batch_size: int = 16,
    lr: float | None = None,
    lr_schedule: str | Callable[[int, int], float] | None = "cosine",
    restarts: int = 16,
    init_spread: float = 1.0,
    stiffness0: ArrayLike | None = None,
    transform: Transform | None = None,
    seed: int = 0,
    rule: str = "in_situ",
    nudge: float = 0.1,
    start_margin: float = 0.02,
    callback: Callable | None = None,
) -> ClassifierResult:
    """Train a mechanical network to classify samples from their features.

    Parameters
    ----------
    network : SpringNetwork
    features : array_like, float, shape (N, f)
        Training samples (their raw measurements, e.g. cm); encoded by
        :func:`feature_forces`.
    labels : array_like of int, shape (N,)
        Class of each sample, in [0, k).
    inputs : array_like of int, shape (f,)
        Input node of each feature (its force is downward, along -y).
    outputs : array_like of int, shape (k, 2)
        (node, axis) output dof of each class.
    force_scale : float
        Force (N) of a feature at its maximum (default 0.049 N, the paper's 5 g).
    feature_max : array_like, shape (f,), optional
        Feature divisors (default the maxima of ``features``); the paper uses
        the maxima over the whole data set.
    epochs : int
        Passes over the training set per start.
    batch_size : int
        Minibatch size.
    lr : float, optional
        Adam step size in the sigmoid variables (default 1.0).
    lr_schedule : {"cosine", "constant"} or callable
        Step-size schedule over each start (see :func:`physim.optim.minimize`).
    restarts : int
        Number of starts: the first from ``stiffness0``, the others from
        ``transform.inverse(stiffness0)`` plus independent normal perturbations
        of standard deviation ``init_spread``. The start with the highest
        training accuracy is kept (ties: lowest training loss).
    init_spread : float
        Spread of the perturbed starts in sigmoid variables.
    stiffness0 : array_like, shape (m,), optional
        First start (N/m); default every bar 2 mm wide (137.5 N/m, the paper).
    transform : physim.optim.Transform, optional
        Map from optimisation variables to stiffness; default
        :func:`stiffness_transform` (widths in [1.5, 2.5] mm), whose
        derivative enters the gradient exactly.
    seed : int
        Seed of the starts and of the batch shuffling.
    rule : {"in_situ", "coupled_learning", "equilibrium_propagation"}
        How the training direction is measured: the exact in situ adjoint
        gradient, or one of the physical learning rules of
        :mod:`physim.lattice.rules` (coupled learning clamps the outputs a
        fraction ``nudge`` of the way to :func:`~physim.lattice.class_targets`;
        equilibrium propagation nudges with forces of at most ``nudge`` times
        the largest input force).
    nudge : float
        The rules' nudge (ignored by ``"in_situ"``).
    start_margin : float
        With a bounded transform, ``stiffness0`` is first pulled this fraction
        of the stiffness range inside the bounds, so that retraining a network
        whose bonds sit at a bound does not start where the sigmoid is flat.
    callback : callable, optional
        ``callback(restart, epoch, intermediate_result)`` after each epoch;
        raise ``StopIteration`` to end that start.

    Returns
    -------
    ClassifierResult

    Raises
    ------
    ShapeError, InvalidInputError, InvalidTypeError
        Bad shapes, indices, labels or hyper-parameters.

    Notes
    -----
    Ctrl-C ends the current start at its best iterate (see
    :func:`physim.optim.minimize`) and skips the remaining starts; the result
    is the best of the starts run, and ``message`` says so.
    """
    _check_network(network)
    inp, out = _check_io(network, inputs, outputs)
    x = _check_features(features, inp.size)
    k = out.shape[0]
    y = as_index_array("labels", np.atleast_1d(labels), upper=k)
    if y.shape != (x.shape[0],):
        raise ShapeError(f"labels must have shape ({x.shape[0]},), got {y.shape}")
    xmax = _feature_max(x, feature_max)
    scale = as_scalar("force_scale", force_scale, positive=True)
    epochs, batch_size, restarts = int(epochs), int(batch_size), int(restarts)
    if epochs < 1 or batch_size < 1 or restarts < 1:
        raise InvalidInputError(
            f"epochs, batch_size and restarts must be >= 1, got {epochs}, {batch_size}, {restarts}"
        )
    lr = 1.0 if lr is None else as_scalar("lr", lr, positive=True)
    spread = as_scalar("init_spread", init_spread, nonnegative=True)
    t = stiffness_transform() if transform is None else transform
    if stiffness0 is None:
        k0 = np.full(network.n_bonds, float(stiffness_from_width(PAPER["width0"])))
    else:
        k0 = as_float_array("stiffness0", stiffness0)
        if k0.shape != (network.n_bonds,):
            raise ShapeError(f"stiffness0 must have shape ({network.n_bonds},), got {k0.shape}")
    margin = as_scalar("start_margin", start_margin, nonnegative=True)
    if hasattr(t, "lower") and hasattr(t, "upper"):
        lo_b, hi_b = np.asarray(t.lower, dtype=float), np.asarray(t.upper, dtype=float)
        k0 = np.clip(k0, lo_b + margin * (hi_b - lo_b), hi_b - margin * (hi_b - lo_b))
    z_base = np.asarray(t.inverse(k0), dtype=float)
    if not np.all(np.isfinite(z_base)):
        raise InvalidInputError("stiffness0 must lie strictly inside the transform's stiffness range")

    forces = feature_forces(network, x, inp, force_scale=scale, feature_max=xmax)
    obj = RuleObjective(
        network,
        forces,
        lambda u, idx: classifier_loss(u, out, y[idx]),
        t,
        rule=rule,
        nudge=nudge,
        outputs=out,
        targets=(lambda u_out, idx: class_targets(u_out, y[idx])) if rule == "coupled_learning" else None,
    )
    runs = []
    for r in range(restarts):
        t0 = time.perf_counter()
        rng = np.random.default_rng(_seed(seed, r))
        z0 = z_base if r == 0 else z_base + spread * rng.standard_normal(z_base.size)
        snaps = []

        def cb(res, r=r, snaps=snaps):
            snaps.append(t.forward(res.x))
            if callback is not None:
                callback(r, len(snaps), res)

        res = train_adam(
            obj,
            z0,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=_seed(seed, r),
            lr_schedule=lr_schedule,
            callback=cb,
        )
        kr = res.stiffness
        eq = solve(network, kr, forces)
        loss = classifier_loss(eq.displacements, out, y)[0]
        acc = float(np.mean(predict_class(eq.displacements, out) == y))
        runs.append(
            {
                "stiffness": kr,
                "loss": loss,
                "accuracy": acc,
                "history": [h["fun"] for h in res.history],
                "snapshots": np.array(snaps).reshape(len(snaps), network.n_bonds),
                "message": res.message,
                "epochs_done": len(snaps),
                "seconds": time.perf_counter() - t0,
            }
        )
        if getattr(res, "stop_reason", None) == "interrupted":
            break  # Ctrl-C: keep what is finished, start no further run
    best = max(range(len(runs)), key=lambda i: (runs[i]["accuracy"], -runs[i]["loss"]))
    b = runs[best]
    train_acc = [
        float(np.mean(predict_class(solve(network, kk, forces).displacements, out) == y))
        for kk in b["snapshots"]
    ]
    history = {
        "loss": readonly(b["history"]),
        "train_accuracy": readonly(train_acc),
        "stiffness": readonly(b["snapshots"]),
        "restart_loss": readonly([q["loss"] for q in runs]),
        "restart_train_accuracy": readonly([q["accuracy"] for q in runs]),
        "restart_seconds": readonly([q["seconds"] for q in runs]),
    }
    return ClassifierResult(
        network=network,
        stiffness=readonly(b["stiffness"]),
        inputs=readonly(inp),
        outputs=readonly(out),
        feature_max=readonly(xmax),
        force_scale=scale,
        history=history,
        best_restart=int(best),
        n_solves=int(obj.n_solves),
        message=str(b["message"])
        + ("" if len(runs) == restarts else f" (interrupted after {len(runs)} of {restarts} starts)"),
    )
