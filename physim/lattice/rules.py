r"""Physical learning rules: coupled learning and equilibrium propagation.

Both estimate the training direction from two equilibrium states of the same
network, as a physical network could measure them without a computer, and
update each bond from the change of its own energy derivative
``dE/dk_i = e_i^2 / 2`` (``e_i`` the elastic elongation). Compare with the
exact in situ gradient of :func:`physim.lattice.adjoint` (Li & Mao 2024),
which needs the adjoint load ``-dL/du`` applied to the outputs.

Coupled learning (Stern, Hexner, Rocks & Liu, PRX 11, 021045, 2021)
    Free state ``u_F`` under the inputs; clamped state ``u_C`` with the output
    dofs held at ``P u_F + eta (t - P u_F)``, a fraction ``eta`` of the way to
    the target ``t``. ``Delta k_i = -(alpha / eta) [e_i(u_C)^2 - e_i(u_F)^2] / 2``.

    Small-nudge limit (linear model). The clamp is held by reaction forces
    ``lam`` at the outputs: ``u_C = u_F + K^-1 P^T lam`` with
    ``S lam = eta d``, ``S = P K^-1 P^T`` (the compliance seen at the outputs)
    and ``d = t - P u_F``. To first order in ``eta`` the rule's gradient
    estimate is ``-e_F . e(K^-1 P^T S^-1 d)``: the exact gradient of
    ``(P u - t)^T W (P u - t) / 2`` with the weight ``W = S^-1`` held at its
    current value, not of the plain squared error ``|P u - t|^2 / 2`` (whose
    cotangent lacks ``S^-1``). The two agree when ``S`` is a multiple of the
    identity (e.g. one output); otherwise the rule descends a compliance-
    weighted error (McGinnis, Li & Mori 2026 call CL's small-nudge dynamics
    "modified"). :func:`coupled_learning_limit` returns that limit exactly.
    The error of the estimate against its limit is ``O(eta)``.

Equilibrium propagation (Scellier & Bengio, Front. Comput. Neurosci. 11, 24, 2017)
    Nudged state ``u_beta`` under the inputs plus the nudging force
    ``-beta dL/du`` at the outputs (evaluated at the free state: the error a
    physical network would measure and feed back). The estimate
    ``[e(u_beta)^2 - e(u_F)^2] / (2 beta)`` tends to the exact ``dL/dk`` for any
    differentiable loss, with error ``O(beta)``; the symmetric estimate with
    nudges ``+beta`` and ``-beta`` has error ``O(beta^2)`` (and is exact for
    the linear model, whose energy change is quadratic in the nudge).

:class:`RuleObjective` turns either rule into ``fun(z, batch) -> (loss,
gradient estimate)`` for :func:`physim.optim.minimize`, the same interface as
:class:`~physim.lattice.LatticeObjective`, so every rule trains through the
same optimiser (and :func:`physim.lattice.train_classifier` takes ``rule=``).
Each counts its physical solves: the free state plus the clamped or nudged
state(s), per sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .._result import Result, readonly
from .._validate import as_float_array, as_index_array, as_scalar
from ..errors import InvalidInputError, InvalidTypeError, ShapeError
from ..optim import Identity, Transform
from . import _kernels
from .adjoint import adjoint
from .network import SpringNetwork
from .solve import Equilibrium, _scatter_free, solve

__all__ = [
    "RULES",
    "RuleUpdate",
    "coupled_learning",
    "coupled_learning_limit",
    "equilibrium_propagation",
    "class_targets",
    "RuleObjective",
]

#: names accepted by :class:`RuleObjective` and ``train_classifier(rule=...)``
RULES = ("in_situ", "coupled_learning", "equilibrium_propagation")


@dataclass(frozen=True)
class RuleUpdate(Result):
    """What a physical learning rule measured and the update it makes.

    Attributes
    ----------
    gradient : ndarray, float64 (m,)
        The rule's estimate of ``dL/dk``, summed over the batch (loss units per N/m).
    update : ndarray, float64 (m,)
        The stiffness change ``-rate * gradient`` (N/m).
    free : Equilibrium
        The free state (inputs only).
    nudge : float
        ``eta`` (coupled learning) or ``beta`` (equilibrium propagation).
    n_solves : int
        Physical equilibrium states measured: free plus clamped/nudged, per sample.
    """

    gradient: np.ndarray
    update: np.ndarray
    free: Equilibrium
    nudge: float
    n_solves: int


def _energy_derivative(e: np.ndarray) -> np.ndarray:
    """``dE/dk_i = e_i^2 / 2`` per sample, (B, m)."""
    return 0.5 * e * e


def _batched(eq: Equilibrium):
    e = eq.elongations if eq.batched else eq.elongations[None]
    u = eq.displacements if eq.batched else eq.displacements[None]
    return u, e


def _outputs(network: SpringNetwork, outputs) -> np.ndarray:
    o = as_index_array("outputs", outputs, shape=(None, 2))
    if o.shape[0] == 0:
        raise ShapeError("outputs must name at least one (node, axis) pair, got shape (0, 2)")
    as_index_array("outputs[:, 0]", o[:, 0], upper=network.n_nodes)
    as_index_array("outputs[:, 1]", o[:, 1], upper=network.dim)
    if network.fixed_dofs[o[:, 0], o[:, 1]].any():
        i = int(np.argmax(network.fixed_dofs[o[:, 0], o[:, 1]]))
        raise InvalidInputError(f"outputs[{i}] = {o[i].tolist()} is a pinned dof and cannot be clamped")
    return o


def _targets(targets, nb: int, k: int) -> np.ndarray:
    t = as_float_array("targets", targets)
    if t.shape == (k,):
        t = np.broadcast_to(t, (nb, k))
    if t.shape != (nb, k):
        raise ShapeError(f"targets must have shape ({k},) or ({nb}, {k}), got {t.shape}")
    return t


def _output_compliance(eq: Equilibrium, o: np.ndarray):
    """``W = K^-1 P^T`` as fields (k, n, d) and ``S = P K^-1 P^T`` (k, k), from the free factorisation."""
    net = eq.network
    k = o.shape[0]
    unit = np.zeros((k, net.n_nodes * net.dim))
    unit[np.arange(k), o[:, 0] * net.dim + o[:, 1]] = 1.0
    rhs = unit[:, net.free_dofs]
    fac = eq._factors[0]
    wf = fac.solve(np.ascontiguousarray(rhs.T)).T.reshape(k, fac.n)
    W = _scatter_free(net, wf)
    S = W[:, o[:, 0], o[:, 1]].T  # S[a, b] = displacement at output a under a unit force at output b
    return W, 0.5 * (S + S.T)


def coupled_learning(
    network: SpringNetwork, stiffness: ArrayLike, forces: ArrayLike, outputs: ArrayLike, targets: ArrayLike | None, *, eta: float, rate: float = 1.0
) -> RuleUpdate:
    """Coupled-learning update of the stiffnesses for a batch of load cases (linear model).

    Parameters
    ----------
    network : SpringNetwork
    stiffness : array_like, shape (m,)
        Bond stiffnesses (N/m).
    forces : array_like, shape (n, d) or (B, n, d)
        Input forces of each sample (N).
    outputs : array_like of int, shape (k, 2)
        (node, axis) output dofs that are clamped.
    targets : array_like, shape (k,) or (B, k)
        Desired output displacements (m).
    eta : float
        Nudge: the clamp moves the outputs this fraction of the way to the target, in (0, 1].
    rate : float
        Learning rate ``alpha`` ((N/m)^2 per m^2).

    Returns
    -------
    RuleUpdate
        ``gradient = sum_samples [e_C^2 - e_F^2] / (2 eta)``; ``update = -rate * gradient``.
    """
    eta = as_scalar("eta", eta, positive=True)
    if eta > 1:
        raise InvalidInputError(f"eta must lie in (0, 1] (a fraction of the way to the target), got {eta}")
    rate = as_scalar("rate", rate, nonnegative=True)
    o = _outputs(network, outputs)
    eq = solve(network, stiffness, forces)
    u, e = _batched(eq)
    nb = u.shape[0]
    t = _targets(targets, nb, o.shape[0])
    d = t - u[:, o[:, 0], o[:, 1]]  # (B, k)
    W, S = _output_compliance(eq, o)
    lam = np.linalg.solve(S, (eta * d).T).T  # reaction forces holding the clamp, (B, k)
    du = np.einsum("bk,knd->bnd", lam, W)
    dirs = np.ascontiguousarray(eq._directions)
    e_c = e + _kernels.project_batch(network.bonds, dirs, np.ascontiguousarray(du))
    g = ((_energy_derivative(e_c) - _energy_derivative(e)) / eta).sum(axis=0)
    return RuleUpdate(gradient=g, update=-rate * g, free=eq, nudge=eta, n_solves=2 * nb)


def coupled_learning_limit(network: SpringNetwork, stiffness: ArrayLike, forces: ArrayLike, outputs: ArrayLike, targets: ArrayLike | None) -> np.ndarray:
    """The ``eta -> 0`` limit of :func:`coupled_learning`'s gradient estimate, (m,) (linear model).

    It is the exact in situ gradient (:func:`~physim.lattice.adjoint`) with
    the output cotangent ``S^-1 (P u - t)`` instead of ``P u - t``, ``S`` the
    output compliance matrix (see the module docstring).
    """
    o = _outputs(network, outputs)
    eq = solve(network, stiffness, forces)
    u, _ = _batched(eq)
    t = _targets(targets, u.shape[0], o.shape[0])
    _, S = _output_compliance(eq, o)
    r = np.linalg.solve(S, (u[:, o[:, 0], o[:, 1]] - t).T).T
    g = np.zeros_like(u)
    np.add.at(g, (slice(None), o[:, 0], o[:, 1]), r)
    return np.asarray(adjoint(eq, g if eq.batched else g[0]).stiffness)


def equilibrium_propagation(
    network: SpringNetwork,
    stiffness: ArrayLike,
    forces: ArrayLike,
    loss: Callable,
    *,
    beta: float,
    symmetric: bool = False,
    rate: float = 1.0,
    nonlinear: bool = False,
) -> RuleUpdate:
    """Equilibrium-propagation update of the stiffnesses for a batch of load cases.

    Parameters
    ----------
    network : SpringNetwork
    stiffness : array_like, shape (m,)
        Bond stiffnesses (N/m).
    forces : array_like, shape (n, d) or (B, n, d)
        Input forces (N).
    loss : callable
        ``loss(u) -> (value, dL/du)`` with ``u`` the displacements (shape of ``forces``).
    beta : float
        Nudge: the nudging force is ``-beta dL/du`` (N when ``beta`` is in N per loss-gradient unit).
    symmetric : bool
        Nudge both ways (``+beta`` and ``-beta``): error ``O(beta^2)``, one more state per sample.
    rate : float
        Learning rate: ``update = -rate * gradient``.
    nonlinear : bool
        Geometrically exact model for all states.

    Returns
    -------
    RuleUpdate
    """
    beta = as_scalar("beta", beta, positive=True)
    rate = as_scalar("rate", rate, nonnegative=True)
    if not callable(loss):
        raise InvalidTypeError("loss must be callable: loss(u) -> (value, d_value_d_u)")
    eq = solve(network, stiffness, forces, nonlinear=nonlinear)
    _, gu = loss(eq.displacements)
    gu = as_float_array("dL/du", gu)
    if gu.shape != eq.displacements.shape:
        raise ShapeError(f"loss gradient must have shape {eq.displacements.shape}, got {gu.shape}")
    f = np.asarray(eq.forces)
    _, e = _batched(eq)
    nb = e.shape[0]
    e_p = _batched(solve(network, stiffness, f - beta * gu, nonlinear=nonlinear))[1]
    if symmetric:
        e_m = _batched(solve(network, stiffness, f + beta * gu, nonlinear=nonlinear))[1]
        g = ((_energy_derivative(e_p) - _energy_derivative(e_m)) / (2 * beta)).sum(axis=0)
        n = 3 * nb
    else:
        g = ((_energy_derivative(e_p) - _energy_derivative(e)) / beta).sum(axis=0)
        n = 2 * nb
    return RuleUpdate(gradient=g, update=-rate * g, free=eq, nudge=beta, n_solves=n)


def class_targets(u_out: ArrayLike, labels: ArrayLike, *, gain: float = 1.5, shrink: float = 0.5) -> np.ndarray:
    """Coupled-learning targets for the ``|u|`` classifier: raise the true output, shrink the others.

    Parameters
    ----------
    u_out : array_like, shape (B, k)
        Output displacements of the free state (m).
    labels : array_like of int, shape (B,)
    gain, shrink : float
        The true class's target is ``gain`` times the largest output
        magnitude (with the sign of its own output); the others are
        ``shrink`` times their free values.

    Returns
    -------
    ndarray, float64 (B, k)

    Notes
    -----
    Of the targets tried on the Iris training splits of seeds 0-2 (mean
    training accuracy, 30 epochs per start): moving all the response to the
    true output (``t = sign(u_c) sum |u|``, 0 elsewhere) 0.63 with 8 starts;
    raising the true output only 0.35 with 4 starts; this one 0.87 with 4
    starts.
    """
    v = as_float_array("u_out", u_out)
    if v.ndim != 2:
        raise ShapeError(f"u_out must have shape (B, k), got {v.shape}")
    y = as_index_array("labels", np.atleast_1d(labels), upper=v.shape[1])
    if y.shape != (v.shape[0],):
        raise ShapeError(f"labels must have shape ({v.shape[0]},), got {y.shape}")
    gain = as_scalar("gain", gain, positive=True)
    shrink = as_scalar("shrink", shrink, nonnegative=True)
    t = shrink * v
    rows = np.arange(v.shape[0])
    s = np.sign(v[rows, y])
    s[s == 0] = 1.0
    t[rows, y] = s * gain * np.abs(v).max(axis=1)
    return t


class RuleObjective:
    """``fun(z, batch) -> (loss, rule's gradient estimate in z)`` for :func:`physim.optim.minimize`.

    Parameters
    ----------
    network : SpringNetwork
    forces : array_like, shape (N, n, d)
        One load case per sample.
    loss : callable
        ``loss(u, idx) -> (value, dL/du)`` as for :class:`~physim.lattice.LatticeObjective`;
        its value is reported, and equilibrium propagation nudges with its gradient.
    transform : physim.optim.Transform, optional
        Map from optimisation variables to stiffness.
    rule : {"in_situ", "coupled_learning", "equilibrium_propagation"}
        ``"in_situ"`` is the exact adjoint gradient (two states per sample).
    nudge : float
        Coupled learning: ``eta``, the fraction of the way to the targets.
        Equilibrium propagation: the largest nudging force as a fraction of
        the largest input force of the batch (``beta = nudge max|f| /
        max|dL/du|``), so the nudge is small against the inputs whatever the
        loss's units.
    outputs : array_like of int, shape (k, 2), optional
        Coupled learning: the clamped outputs.
    targets : array_like (N, k) or callable, optional
        Coupled learning: the targets of each sample, or
        ``targets(u_out, idx) -> (B, k)`` computed from the free outputs (e.g.
        :func:`class_targets`).
    symmetric : bool
        Equilibrium propagation: nudge both ways.

    Attributes
    ----------
    n_calls, n_solves : int
        Calls, and physical equilibrium states measured so far.
    """

    def __init__(
        self,
        network: SpringNetwork,
        forces: ArrayLike,
        loss: Callable,
        transform: Transform | None = None,
        *,
        rule: str = "coupled_learning",
        nudge: float = 0.1,
        outputs: ArrayLike | None = None,
        targets: ArrayLike | Callable | None = None,
        symmetric: bool = False,
    ) -> None:
        if not isinstance(network, SpringNetwork):
            raise InvalidTypeError(f"network must be a SpringNetwork, got {type(network).__name__}")
        if rule not in RULES:
            raise InvalidInputError(f"rule must be one of {RULES}, got {rule!r}")
        f = as_float_array("forces", forces)
        if f.ndim != 3 or f.shape[1:] != (network.n_nodes, network.dim):
            raise ShapeError(f"forces must have shape (N, {network.n_nodes}, {network.dim}), got {f.shape}")
        if not callable(loss):
            raise InvalidTypeError("loss must be callable: loss(u, idx) -> (value, d_value_d_u)")
        if rule == "coupled_learning":
            if outputs is None or targets is None:
                raise InvalidInputError("coupled learning needs outputs and targets")
            self.outputs = readonly(_outputs(network, outputs))
            if not callable(targets):
                targets = readonly(_targets(targets, f.shape[0], self.outputs.shape[0]))
        else:
            self.outputs = None if outputs is None else readonly(_outputs(network, outputs))
        self.network = network
        self.forces = readonly(f)
        self.loss = loss
        self.transform = transform if transform is not None else Identity()
        self.rule = rule
        self.nudge = as_scalar("nudge", nudge, positive=True)
        self.targets = targets
        self.symmetric = bool(symmetric)
        self.n_calls = 0
        self.n_solves = 0

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
        f = self.forces[idx]
        if self.rule == "in_situ":
            eq = solve(self.network, k, f)
            value, g = self.loss(eq.displacements, idx)
            grad = np.asarray(adjoint(eq, g).stiffness)
            n = 2 * idx.size
        elif self.rule == "equilibrium_propagation":
            eq = solve(self.network, k, f)
            value, g = self.loss(eq.displacements, idx)
            gmax = float(np.abs(g).max())
            beta = self.nudge * float(np.abs(f).max()) / gmax if gmax > 0 else self.nudge
            upd = equilibrium_propagation(
                self.network, k, f, lambda u: (value, g), beta=beta, symmetric=self.symmetric
            )
            grad, n = np.asarray(upd.gradient), upd.n_solves
        else:
            eq = solve(self.network, k, f)
            o = self.outputs
            u_out = eq.displacements[:, o[:, 0], o[:, 1]]
            t = self.targets(u_out, idx) if callable(self.targets) else self.targets[idx]
            upd = coupled_learning(self.network, k, f, o, t, eta=self.nudge)
            value = self.loss(upd.free.displacements, idx)[0]
            grad, n = np.asarray(upd.gradient), upd.n_solves
        self.n_calls += 1
        self.n_solves += int(n)
        return float(value), self.transform.vjp(z, grad)
