"""Objectives of twin fits: data terms (ECG, activation times) combined into one callable.

A data term maps the activation map ``phi`` (ms) of a :class:`~physim.cardiac.twin.TwinModel`
to a value and its gradient ``dL/dphi``; :func:`multimodal_objective` solves the
eikonal equation once per evaluation, sums the weighted terms and the model's
priors, and pulls the summed cotangent back through one eikonal adjoint::

    L(x) = sum_i w_i L_i(phi_x) + R(x),   dL/dx = backward(sum_i w_i dL_i/dphi) + dR/dx.

:func:`ecg_objective` and :func:`activation_objective` are the one-term cases.
Every returned objective is a picklable callable ``fun(x) -> (value, grad)`` for
:func:`physim.optim.minimize`, so it can be shipped to the workers of
:func:`physim.cardiac.ensemble.fit_ensemble`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from physim._result import readonly
from physim._validate import as_float_array, as_index_array, as_scalar
from physim.errors import InvalidInputError, ShapeError

from . import ecg as _ecg

if TYPE_CHECKING:
    from .ecg import ECG, ActionPotential, LeadField
    from .twin import TwinModel

__all__ = [
    "DataTerm",
    "ECGTerm",
    "ActivationTerm",
    "MultimodalObjective",
    "ecg_term",
    "activation_term",
    "multimodal_objective",
    "ecg_objective",
    "activation_objective",
    "ECG_LOSSES",
]

#: ECG losses by name: ``loss(ecg, target) -> (value, d value / d signals)``
ECG_LOSSES: dict[str, Callable] = {
    "correlation": _ecg.correlation_loss,
    "mse": _ecg.lead_mse_loss,
    "shifted_correlation": _ecg.shifted_correlation_loss,
}


class DataTerm:
    """Interface of a data term: ``evaluate(times) -> (value, d value / d times, info)``.

    ``name`` labels the term in :attr:`MultimodalObjective.last_values`.
    """

    name = "data"

    def evaluate(self, times: np.ndarray) -> tuple[float, np.ndarray, ECG | None]:  # pragma: no cover - interface
        raise NotImplementedError

    def check(self, model: TwinModel) -> None:
        """Raise if the term does not fit ``model``'s mesh."""


class ECGTerm(DataTerm):
    """Misfit between the pseudo-ECG of the activation map and a measured ECG.

    Built by :func:`ecg_term`; ``info`` of :meth:`evaluate` is the simulated
    :class:`~physim.cardiac.ecg.ECG`.
    """

    name = "ecg"

    def __init__(self, lead_field: LeadField, target: np.ndarray, loss: Callable, loss_name: str, action_potential: ActionPotential | None, dt: float, t0: float, loss_options: dict) -> None:
        self.lead_field = lead_field
        self.target = target
        self.loss = loss
        self.loss_name = loss_name
        self.action_potential = action_potential
        self.dt = dt
        self.t0 = t0
        self.loss_options = dict(loss_options)

    def simulate(self, times: np.ndarray) -> ECG:
        """The simulated :class:`~physim.cardiac.ecg.ECG` of an activation map."""
        return _ecg.simulate_ecg(
            self.lead_field,
            times,
            model=self.action_potential,
            n_samples=self.target.shape[1],
            dt=self.dt,
            t0=self.t0,
        )

    def evaluate(self, times: np.ndarray) -> tuple[float, np.ndarray, ECG | None]:
        e = self.simulate(times)
        val, g = self.loss(e, self.target, **self.loss_options)
        return float(val), _ecg.adjoint(e, g).times, e

    def check(self, model: TwinModel) -> None:
        if self.lead_field.n_points != model.mesh.n_points:
            raise ShapeError(
                f"lead_field has {self.lead_field.n_points} points but the model mesh has {model.mesh.n_points}"
            )


class ActivationTerm(DataTerm):
    """Weighted squared misfit to activation times measured at nodes (electro-anatomical map).

    ``L = sum_i w_i (phi(node_i) - t_i)^2`` (ms², with the default ``w_i = 1/n``
    the mean squared error). Built by :func:`activation_term`.
    """

    name = "activation"

    def __init__(self, nodes: np.ndarray, times: np.ndarray, weights: np.ndarray) -> None:
        self.nodes = nodes
        self.times = times
        self.weights = weights

    def evaluate(self, times: np.ndarray) -> tuple[float, np.ndarray, ECG | None]:
        r = times[self.nodes] - self.times
        val = float(np.sum(self.weights * r * r))
        d = np.zeros(times.shape[0])
        np.add.at(d, self.nodes, 2.0 * self.weights * r)
        return val, d, None

    def check(self, model: TwinModel) -> None:
        if self.nodes.size and int(self.nodes.max()) >= model.mesh.n_points:
            raise InvalidInputError(
                f"activation nodes reach index {int(self.nodes.max())} but the mesh has {model.mesh.n_points} points"
            )


def ecg_term(
    lead_field: LeadField,
    target: ArrayLike,
    *,
    loss: str | Callable = "correlation",
    action_potential: ActionPotential | None = None,
    dt: float = 1.0,
    t0: float = 0.0,
    **loss_options: Any,
) -> ECGTerm:
    """An ECG data term.

    Parameters
    ----------
    lead_field : LeadField
        From :func:`physim.cardiac.ecg.lead_field` on the model's mesh.
    target : array_like, shape (n_leads, n_samples)
        Measured ECG (mV), finite, sampled every ``dt`` ms from ``t0``.
    loss : {"correlation", "mse", "shifted_correlation"} or callable
        :func:`~physim.cardiac.ecg.correlation_loss` (amplitude-insensitive),
        :func:`~physim.cardiac.ecg.lead_mse_loss` (normalised per lead),
        :func:`~physim.cardiac.ecg.shifted_correlation_loss` (tolerant to a small
        time shift), or any ``loss(ecg, target) -> (value, grad)``.
    action_potential : ActionPotential, optional
    dt, t0 : float
        Sampling interval and first sample time (ms).
    **loss_options
        Keyword arguments of the loss (e.g. ``max_shift_ms``).

    Returns
    -------
    ECGTerm
    """
    if not isinstance(lead_field, _ecg.LeadField):
        raise InvalidInputError(f"lead_field must be a LeadField, got {type(lead_field).__name__}")
    y = as_float_array("target", target)
    if y.ndim != 2 or y.shape[0] != lead_field.n_leads:
        raise ShapeError(f"target must have shape ({lead_field.n_leads}, n_samples), got {y.shape}")
    if callable(loss):
        fn, name = loss, getattr(loss, "__name__", "custom")
    elif loss in ECG_LOSSES:
        fn, name = ECG_LOSSES[loss], loss
    else:
        raise InvalidInputError(f"loss must be one of {sorted(ECG_LOSSES)} or a callable, got {loss!r}")
    ap = _ecg.ActionPotential() if action_potential is None else action_potential
    if not isinstance(ap, _ecg.ActionPotential):
        raise InvalidInputError(f"action_potential must be an ActionPotential, got {type(ap).__name__}")
    return ECGTerm(
        lead_field,
        readonly(y),
        fn,
        name,
        ap,
        as_scalar("dt", dt, positive=True),
        as_scalar("t0", t0),
        loss_options,
    )


def activation_term(nodes: ArrayLike, times: ArrayLike, *, weights: ArrayLike | None = None, noise_ms: float | None = None) -> ActivationTerm:
    """An activation-time data term (e.g. 5-20 points of an electro-anatomical map).

    Parameters
    ----------
    nodes : int array_like, shape (n,)
        Measured mesh nodes.
    times : array_like, shape (n,)
        Measured activation times (ms), finite.
    weights : array_like, shape (n,), optional
        Per-point weights (1/ms²); default ``1/n`` (mean squared error, ms²).
    noise_ms : float, optional
        Measurement noise (ms); if given (and ``weights`` is not), the term is
        ``0.5 * sum_i ((phi_i - t_i) / noise_ms)^2``, the negative log-likelihood
        of Gaussian noise.

    Returns
    -------
    ActivationTerm
    """
    nodes = as_index_array("nodes", nodes, shape=(None,))
    if nodes.size == 0:
        raise ShapeError("nodes must contain at least one measurement")
    t = as_float_array("times", times, shape=(nodes.size,))
    if weights is not None:
        w = as_float_array("weights", weights, shape=(nodes.size,))
        if np.any(w < 0):
            raise InvalidInputError("weights must be >= 0")
    elif noise_ms is not None:
        s = as_scalar("noise_ms", noise_ms, positive=True)
        w = np.full(nodes.size, 0.5 / (s * s))
    else:
        w = np.full(nodes.size, 1.0 / nodes.size)
    return ActivationTerm(readonly(nodes), readonly(t), readonly(w))


class MultimodalObjective:
    """``fun(x) -> (value, grad)``: weighted data terms plus the model's priors.

    Attributes
    ----------
    model : TwinModel
    terms : tuple of DataTerm
    weights : ndarray (n_terms,)
    last_state : TwinState or None
        Forward state of the last evaluation.
    last_values : dict
        Unweighted value of each term (by ``term.name``) and ``"prior"`` at the
        last evaluation.
    last_ecg : ECG or None
        The simulated ECG of the last evaluation (first ECG term).
    n_calls : int
    """

    def __init__(self, model: TwinModel, terms: Sequence[DataTerm], weights: ArrayLike) -> None:
        self.model = model
        self.terms = tuple(terms)
        self.weights = weights
        self.last_state = None
        self.last_values: dict = {}
        self.last_ecg = None
        self.n_calls = 0

    @property
    def ecg_term(self) -> ECGTerm | None:
        """The first ECG term, if any."""
        return next((t for t in self.terms if isinstance(t, ECGTerm)), None)

    def __call__(self, x: ArrayLike) -> tuple[float, np.ndarray]:
        x = as_float_array("x", x, shape=(self.model.n_params,))
        self.n_calls += 1
        st = self.model.forward(x)
        self.last_state = st
        total = 0.0
        d_times = np.zeros(self.model.mesh.n_points)
        values = {}
        last_ecg = None
        for term, w in zip(self.terms, self.weights):
            val, d, info = term.evaluate(st.times)
            values[term.name] = val
            total += w * val
            d_times += w * d
            if last_ecg is None and isinstance(term, ECGTerm):
                last_ecg = info
        grad = self.model.backward(st, d_times)
        rv, rg = self.model.regularization(x)
        values["prior"] = float(rv)
        self.last_values = values
        self.last_ecg = last_ecg
        return float(total + rv), grad + rg

    def __getstate__(self):
        # the last evaluation's state is large and not needed elsewhere (e.g. on a worker)
        d = dict(self.__dict__)
        d.update(last_state=None, last_ecg=None, last_values={})
        return d

    def __repr__(self) -> str:
        parts = ", ".join(f"{w:g} * {t.name}" for t, w in zip(self.terms, self.weights))
        return f"MultimodalObjective({parts} + prior; {self.model.n_params} parameters)"


def multimodal_objective(model: TwinModel, *terms: DataTerm, weights: ArrayLike | None = None) -> MultimodalObjective:
    """One objective from several data terms: ``L(x) = sum_i w_i L_i(phi_x) + R(x)``.

    One eikonal solve and one adjoint per evaluation whatever the number of terms.

    Parameters
    ----------
    model : TwinModel
    *terms : DataTerm
        E.g. :func:`ecg_term` and :func:`activation_term`.
    weights : array_like, shape (n_terms,), optional
        Non-negative weights (default 1 each).

    Returns
    -------
    MultimodalObjective
        ``fun(x) -> (value, grad)``.

    Examples
    --------
    >>> fun = multimodal_objective(model, ecg_term(lf, ecg), activation_term(nodes, t), weights=[1.0, 1e-3])
    """
    from .twin import TwinModel

    if not isinstance(model, TwinModel):
        raise InvalidInputError(f"model must be a TwinModel, got {type(model).__name__}")
    if not terms:
        raise InvalidInputError("give at least one data term")
    for i, t in enumerate(terms):
        if not isinstance(t, DataTerm):
            raise InvalidInputError(f"terms[{i}] must be a DataTerm, got {type(t).__name__}")
        t.check(model)
    if weights is None:
        w = np.ones(len(terms))
    else:
        w = as_float_array("weights", weights, shape=(len(terms),))
        if np.any(w < 0):
            raise InvalidInputError(f"weights must be >= 0, got {w.tolist()}")
    return MultimodalObjective(model, terms, readonly(w))


def ecg_objective(
    model: TwinModel,
    lead_field: LeadField,
    target: ArrayLike,
    *,
    loss: str | Callable = "correlation",
    action_potential: ActionPotential | None = None,
    dt: float = 1.0,
    t0: float = 0.0,
    **loss_options: Any,
) -> MultimodalObjective:
    """Fit to a measured ECG: ``L(x) = loss(ECG(phi_x), target) + R(x)``.

    Parameters
    ----------
    model : TwinModel
    lead_field, target, loss, action_potential, dt, t0, **loss_options
        As for :func:`ecg_term`.

    Returns
    -------
    MultimodalObjective
        ``fun(x) -> (value, grad)``; ``fun.last_ecg`` holds the last simulated ECG.
    """
    term = ecg_term(
        lead_field, target, loss=loss, action_potential=action_potential, dt=dt, t0=t0, **loss_options
    )
    return multimodal_objective(model, term)


def activation_objective(model: TwinModel, nodes: ArrayLike, times: ArrayLike, *, weights: ArrayLike | None = None) -> MultimodalObjective:
    """Least squares fit to measured activation times (e.g. electro-anatomical mapping).

    ``L(x) = sum_i w_i (phi_x(node_i) - t_i)^2 + R(x)`` with ``w_i = 1/n`` by
    default (mean squared error, ms²) and ``R`` the velocity and site models' penalties.

    Parameters
    ----------
    model : TwinModel
    nodes : int array_like, shape (n,)
        Measured nodes.
    times : array_like, shape (n,)
        Measured activation times (ms), finite.
    weights : array_like, shape (n,), optional

    Returns
    -------
    MultimodalObjective
        ``fun(x) -> (value, grad)``; ``fun.last_state`` holds the last forward state.
    """
    nodes = as_index_array("nodes", nodes, upper=model.mesh.n_points, shape=(None,))
    return multimodal_objective(model, activation_term(nodes, times, weights=weights))
