"""Training mechanical neural networks with :mod:`physim.optim`.

The physical parameters are bond stiffnesses ``k = Y w t / a`` (Young's
modulus ``Y``, bond width ``w``, thickness ``t``, length ``a``) with the
width limited to a printable range; :func:`stiffness_transform` returns the
:class:`~physim.optim.Bounded` sigmoid map from unconstrained variables to
that stiffness range. :class:`LatticeObjective` turns a data set of load
cases and a loss of the displacements into ``fun(z[, batch]) -> (value,
grad)`` for :func:`physim.optim.minimize`, each call being one batched solve
and one adjoint solve with the same factorisation; :func:`train_adam` runs
minibatch Adam on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._result import readonly
from .._validate import as_float_array, as_index_array, as_scalar, check_result
from ..errors import InvalidInputError, InvalidTypeError, ShapeError
from ..optim import Bounded, Identity, Transform, minimize
from .adjoint import adjoint
from .losses import predict_class
from .network import SpringNetwork
from .solve import Equilibrium, solve

if TYPE_CHECKING:
    from ..optim import MinimizeResult

__all__ = [
    "PAPER",
    "stiffness_from_width",
    "width_from_stiffness",
    "stiffness_transform",
    "weight_force",
    "LatticeObjective",
    "train_adam",
    "accuracy",
    "paper_network",
    "load_iris",
    "load_penguins",
]

#: Li & Mao (2024) set-up: Young's modulus (Pa), thickness (m), bond length (m),
#: width range and initial width (m), gravity (m/s^2).
PAPER = {
    "youngs_modulus": 0.55e6,
    "thickness": 2e-3,
    "spacing": 16e-3,
    "width_min": 1.5e-3,
    "width_max": 2.5e-3,
    "width0": 2e-3,
    "gravity": 9.8,
}


def _float(name, x):
    """float for a scalar, float64 array otherwise (validated finite)."""
    a = as_float_array(name, x)
    return float(a[0]) if np.ndim(x) == 0 else a


def _material(youngs_modulus, thickness, length) -> float:
    """``Y t / a`` (N/m per m of width) from validated positive material constants."""
    y = as_scalar("youngs_modulus", youngs_modulus, positive=True)
    t = as_scalar("thickness", thickness, positive=True)
    a = as_scalar("length", length, positive=True)
    c = y * t / a
    if not 0.0 < c < np.inf:
        raise InvalidInputError(
            f"youngs_modulus * thickness / length = {y:g} * {t:g} / {a:g} is not a positive finite number"
        )
    return c


def stiffness_from_width(
    width: ArrayLike,
    youngs_modulus: float = PAPER["youngs_modulus"],
    thickness: float = PAPER["thickness"],
    length: float = PAPER["spacing"],
) -> float | NDArray[np.float64]:
    """Axial stiffness ``k = Y w t / a`` (N/m) of a bar of width ``w`` (m)."""
    w = _float("width", width)
    k = _material(youngs_modulus, thickness, length) * w
    check_result("stiffness_from_width", f"width up to {np.max(np.abs(w), initial=0.0):g} m", stiffness=k)
    return k


def width_from_stiffness(
    stiffness: ArrayLike,
    youngs_modulus: float = PAPER["youngs_modulus"],
    thickness: float = PAPER["thickness"],
    length: float = PAPER["spacing"],
) -> float | NDArray[np.float64]:
    """Inverse of :func:`stiffness_from_width`: width (m) of a bar of stiffness ``k`` (N/m)."""
    k = _float("stiffness", stiffness)
    w = k / _material(youngs_modulus, thickness, length)
    check_result("width_from_stiffness", f"stiffness up to {np.max(np.abs(k), initial=0.0):g} N/m", width=w)
    return w


def stiffness_transform(
    width_min: float = PAPER["width_min"],
    width_max: float = PAPER["width_max"],
    beta: float = 1.0,
    **material: float,
) -> Bounded:
    """Sigmoid map ``z -> k`` keeping the stiffness of a bar of width in [w_min, w_max].

    Parameters
    ----------
    width_min, width_max : float
        Width range (m); the paper's [1.5, 2.5] mm gives k in [103.125, 171.875] N/m.
    beta : float
        Sigmoid steepness.
    **material
        ``youngs_modulus``, ``thickness``, ``length`` for :func:`stiffness_from_width`.

    Returns
    -------
    physim.optim.Bounded
        ``k = k_min + (k_max - k_min) sigmoid(beta z)``.
    """
    lo = float(stiffness_from_width(width_min, **material))
    hi = float(stiffness_from_width(width_max, **material))
    return Bounded(lo, hi, beta=beta)


def weight_force(mass_g: float, gravity: float = PAPER["gravity"]) -> float:
    """Weight (N) of a hanging mass given in grams."""
    m = _float("mass_g", mass_g)
    w = m * 1e-3 * as_scalar("gravity", gravity)
    check_result("weight_force", f"mass_g up to {np.max(np.abs(m), initial=0.0):g}", weight=w)
    return w


LossFn = Callable[[np.ndarray, np.ndarray], "tuple[float, np.ndarray]"]


class LatticeObjective:
    """``fun(z, batch=None) -> (loss, dloss/dz)`` over a data set of load cases.

    Parameters
    ----------
    network : SpringNetwork
    forces : array_like, shape (N, n, d)
        One load case per sample (N).
    loss : callable
        ``loss(u, idx) -> (value, d_value_d_u)`` with ``u`` (B, n, d) the
        displacements of the samples ``idx`` (int64 (B,)); e.g. a closure over
        :func:`~physim.lattice.mse_loss` or :func:`~physim.lattice.classifier_loss`.
    transform : physim.optim.Transform, optional
        Map from optimisation variables to stiffness (default identity).
    nonlinear : bool
        Use the geometrically exact model.
    rest_length : array_like, shape (m,), optional
        Rest lengths (m).

    Attributes
    ----------
    last : Equilibrium or None
        The equilibrium of the most recent call.
    n_calls : int
        Number of calls (each = one batched solve + one adjoint).
    """

    def __init__(
        self,
        network: SpringNetwork,
        forces: ArrayLike,
        loss: LossFn,
        transform: Transform | None = None,
        *,
        nonlinear: bool = False,
        rest_length: ArrayLike | None = None,
    ) -> None:
        if not isinstance(network, SpringNetwork):
            raise InvalidTypeError(f"network must be a SpringNetwork, got {type(network).__name__}")
        f = as_float_array("forces", forces)
        if f.ndim == 2:
            f = f[None]
        if f.ndim != 3 or f.shape[1:] != (network.n_nodes, network.dim):
            raise ShapeError(f"forces must have shape (N, {network.n_nodes}, {network.dim}), got {f.shape}")
        if not callable(loss):
            raise InvalidTypeError("loss must be callable: loss(u, idx) -> (value, d_value_d_u)")
        if transform is not None and not isinstance(transform, Transform):
            raise InvalidTypeError(
                f"transform must be a physim.optim.Transform, got {type(transform).__name__}"
            )
        self.network = network
        self.forces = readonly(f)
        self.loss = loss
        self.transform = transform if transform is not None else Identity()
        self.nonlinear = bool(nonlinear)
        self.rest_length = (
            None if rest_length is None else readonly(as_float_array("rest_length", rest_length))
        )
        self.last: Equilibrium | None = None
        self.n_calls = 0

    @property
    def n_samples(self) -> int:
        """Number of load cases N."""
        return int(self.forces.shape[0])

    def stiffness(self, z: ArrayLike) -> np.ndarray:
        """Stiffness (N/m) for optimisation variables ``z``."""
        return self.transform.forward(np.asarray(z, dtype=float))

    def __call__(self, z: ArrayLike, batch: ArrayLike | None = None) -> tuple[float, np.ndarray]:
        z = np.asarray(z, dtype=float)
        idx = (
            np.arange(self.n_samples)
            if batch is None
            else as_index_array("batch", batch, upper=self.n_samples)
        )
        k = self.stiffness(z)
        eq = solve(self.network, k, self.forces[idx], nonlinear=self.nonlinear, rest_length=self.rest_length)
        value, g = self.loss(eq.displacements, idx)
        grad_k = adjoint(eq, g).stiffness
        self.last = eq
        self.n_calls += 1
        return float(value), self.transform.vjp(z, grad_k)


def train_adam(
    objective: LatticeObjective,
    z0: ArrayLike,
    *,
    epochs: int = 100,
    batch_size: int | None = None,
    lr: float = 0.05,
    seed: int = 0,
    callback: Callable | None = None,
    progress: bool = False,
    **kwargs: Any,
) -> MinimizeResult:
    """Minibatch Adam on a :class:`LatticeObjective` through :func:`physim.optim.minimize`.

    Parameters
    ----------
    objective : LatticeObjective or RuleObjective
    z0 : array_like, shape (m,)
        Initial optimisation variables (e.g. ``transform.inverse(k0)``).
    epochs : int
        Passes over the data (full-batch: Adam steps).
    batch_size : int, optional
        Minibatch size; ``None`` = full batch.
    lr : float
        Adam step size in ``z`` units.
    seed : int
        Shuffling seed.
    callback : callable, optional
        ``callback(intermediate_result)`` once per epoch.
    **kwargs
        Passed to :func:`physim.optim.minimize` (``checkpoint``, ``tol``, ...).

    Returns
    -------
    scipy.optimize.OptimizeResult
        As returned by ``minimize``, with ``stiffness`` (m,) added (N/m).
    """
    if not (callable(objective) and hasattr(objective, "n_samples") and hasattr(objective, "stiffness")):
        raise InvalidTypeError(
            f"objective must be a LatticeObjective or a RuleObjective, got {type(objective).__name__}"
        )
    epochs = int(epochs)
    if epochs < 1:
        raise InvalidInputError(f"epochs must be >= 1, got {epochs}")
    as_scalar("lr", lr, positive=True)
    if batch_size is None or int(batch_size) >= objective.n_samples:
        res = minimize(
            objective,
            z0,
            method="adam",
            maxiter=epochs,
            lr=lr,
            seed=seed,
            callback=callback,
            progress=progress,
            **kwargs,
        )
    else:
        res = minimize(
            objective,
            z0,
            method="adam",
            epochs=epochs,
            n_samples=objective.n_samples,
            batch_size=int(batch_size),
            lr=lr,
            seed=seed,
            callback=callback,
            progress=progress,
            **kwargs,
        )
    res.stiffness = objective.stiffness(res.x)
    return res


def accuracy(network: SpringNetwork, stiffness: ArrayLike, forces: ArrayLike, labels: ArrayLike, outputs: ArrayLike) -> float:
    """Fraction of load cases whose predicted class ``argmax |u_out|`` equals the label.

    Parameters
    ----------
    network : SpringNetwork
    stiffness : array_like, shape (m,)
        Bond stiffnesses (N/m).
    forces : array_like, shape (N, n, d)
        One load case per sample (N).
    labels : array_like of int, shape (N,)
    outputs : array_like of int, shape (k, 2)
        (node, axis) output of each class.
    """
    eq = solve(network, stiffness, forces)
    u = eq.displacements if eq.batched else eq.displacements[None]
    pred = np.atleast_1d(predict_class(u, outputs))
    n_classes = as_index_array("outputs", outputs, shape=(None, 2)).shape[0]
    lab = as_index_array("labels", np.atleast_1d(labels), upper=n_classes)
    if lab.shape != pred.shape:
        raise ShapeError(f"labels must have shape {pred.shape}, got {lab.shape}")
    return float(np.mean(pred == lab))


def paper_network() -> SpringNetwork:
    """The 14-node, 28-bond triangular network of Li & Mao (2024), top corners pinned.

    Rows of 5, 4, 3, 2 nodes (top to bottom), spacing 16 mm; nodes 0 and 4
    (top-row corners) are pinned. Node 10 is the middle node of the third row,
    nodes 12 and 13 the bottom row.
    """
    from .network import triangular_lattice

    return triangular_lattice((5, 4, 3, 2), PAPER["spacing"], fixed=[0, 4])


def load_iris() -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The Iris data set shipped with physim.

    Returns
    -------
    features : ndarray, float64 (150, 4)
        Sepal length, sepal width, petal length, petal width (cm).
    labels : ndarray, int64 (150,)
        0 setosa, 1 versicolor, 2 virginica.
    """
    from importlib import resources

    with resources.files("physim").joinpath("data/iris.csv").open("r") as fh:
        raw = np.loadtxt(fh, delimiter=",", skiprows=1)
    return raw[:, :4].copy(), raw[:, 4].astype(np.int64)


#: species of :func:`load_penguins`, in label order
PENGUIN_SPECIES = ("Adelie", "Chinstrap", "Gentoo")


def load_penguins() -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """The Palmer penguins data shipped with physim (Gorman, Williams & Fraser 2014; CC0).

    Rows with a missing value are dropped (333 of 344 remain).

    Returns
    -------
    features : ndarray, float64 (333, 4)
        Bill length (mm), bill depth (mm), flipper length (mm), body mass (g).
    labels : ndarray, int64 (333,)
        0 Adelie, 1 Chinstrap, 2 Gentoo (:data:`PENGUIN_SPECIES`).
    """
    import csv
    from importlib import resources

    feats, labels = [], []
    with resources.files("physim").joinpath("data/penguins.csv").open("r") as fh:
        for row in csv.DictReader(fh):
            if "NA" in row.values():
                continue
            labels.append(PENGUIN_SPECIES.index(row["species"]))
            feats.append(
                [
                    float(row[c])
                    for c in ("bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g")
                ]
            )
    return np.array(feats, dtype=np.float64), np.array(labels, dtype=np.int64)
