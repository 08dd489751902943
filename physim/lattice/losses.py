"""Losses on output displacements, returning ``(value, d_value_d_u)``.

Outputs are given as ``(node, axis)`` pairs, an int array of shape (k, 2):
``outputs = [[12, 1], [13, 1]]`` reads the vertical (y) displacement of
nodes 12 and 13. Every loss accepts displacements of shape (n, d) or a batch
(B, n, d) and returns the gradient with the same shape, ready for
:func:`physim.lattice.adjoint`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from .._validate import as_float_array, as_index_array, as_scalar, check_result
from ..errors import InvalidInputError, ShapeError

__all__ = ["output_values", "mse_loss", "classifier_loss", "class_probabilities", "predict_class"]


def _outputs(outputs, u: np.ndarray) -> np.ndarray:
    n, d = u.shape[-2:]
    o = as_index_array("outputs", outputs, shape=(None, 2))
    if o.shape[0] == 0:
        raise ShapeError("outputs must name at least one (node, axis) pair, got shape (0, 2)")
    if np.any((o[:, 0] < 0) | (o[:, 0] >= n)):
        i = int(np.argmax((o[:, 0] < 0) | (o[:, 0] >= n)))
        raise InvalidInputError(f"outputs[{i}] names node {int(o[i, 0])}, outside [0, {n})")
    if np.any((o[:, 1] < 0) | (o[:, 1] >= d)):
        i = int(np.argmax((o[:, 1] < 0) | (o[:, 1] >= d)))
        raise InvalidInputError(f"outputs[{i}] names axis {int(o[i, 1])}, outside [0, {d})")
    return o


def _disp(u) -> tuple[np.ndarray, bool]:
    a = as_float_array("u", u)
    if a.ndim == 2:
        return a[None], False
    if a.ndim == 3:
        return a, True
    raise ShapeError(f"u must have shape (n, d) or (B, n, d), got {a.shape}")


def output_values(u: ArrayLike, outputs: ArrayLike) -> np.ndarray:
    """Displacements at the outputs: float64 (k,) or (B, k) (m)."""
    ub, batched = _disp(u)
    o = _outputs(outputs, ub)
    v = ub[:, o[:, 0], o[:, 1]]
    return v if batched else v[0]


def mse_loss(u: ArrayLike, outputs: ArrayLike, target: ArrayLike, *, scale: float = 1.0) -> tuple[float, np.ndarray]:
    """Mean squared error of the output displacements against a target.

    Parameters
    ----------
    u : array_like, shape (n, d) or (B, n, d)
        Displacements (m).
    outputs : array_like of int, shape (k, 2)
        (node, axis) pairs.
    target : array_like, shape (k,) or (B, k)
        Target displacements, compared with ``scale * u`` (m when ``scale=1``);
        (k,) is broadcast over a batch.
    scale : float
        Unit conversion applied to ``u`` first (``1e3``: millimetres), which keeps
        the loss and its gradient O(1) for optimisers with absolute tolerances.

    Returns
    -------
    value : float
        ``mean over batch and outputs of (scale u_out - target)^2``.
    grad : ndarray, float64, shape of ``u``
        d value / d u.
    """
    ub, batched = _disp(u)
    o = _outputs(outputs, ub)
    nb, k = ub.shape[0], o.shape[0]
    t = as_float_array("target", target)
    if t.shape == (k,):
        t = np.broadcast_to(t, (nb, k))
    elif t.shape != (nb, k) or (not batched and t.ndim != 1):
        raise ShapeError(f"target must have shape ({k},) or ({nb}, {k}), got {t.shape}")
    scale = as_scalar("scale", scale, positive=True)
    r = scale * ub[:, o[:, 0], o[:, 1]] - t
    with np.errstate(over="ignore", invalid="ignore"):
        value = float(np.mean(r * r))
        grad = np.zeros_like(ub)
        np.add.at(grad, (slice(None), o[:, 0], o[:, 1]), 2.0 * scale * r / r.size)
    check_result(
        "mse_loss",
        f"scale={scale:g}, largest |target| {np.max(np.abs(t), initial=0.0):g}, largest |u| {np.max(np.abs(ub), initial=0.0):g}",
        value=value,
        grad=grad,
    )
    return value, (grad if batched else grad[0])


def class_probabilities(u: ArrayLike, outputs: ArrayLike) -> np.ndarray:
    """Class probabilities ``p_j = |u_j| / sum_l |u_l|`` over the outputs, (k,) or (B, k)."""
    v = np.abs(output_values(u, outputs))
    s = v.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s > 0, v / np.where(s > 0, s, 1.0), 1.0 / v.shape[-1])


def predict_class(u: ArrayLike, outputs: ArrayLike) -> np.ndarray | int:
    """Predicted class ``argmax_j |u_j|``: int or int64 (B,)."""
    v = np.abs(output_values(u, outputs))
    p = np.argmax(v, axis=-1)
    return int(p) if np.ndim(p) == 0 else p.astype(np.int64)


def classifier_loss(u: ArrayLike, outputs: ArrayLike, labels: ArrayLike, *, eps: float = 1e-30) -> tuple[float, np.ndarray]:
    """Cross-entropy of the displacement-magnitude classifier (Li & Mao 2024).

    ``p_j = |u_j| / sum_l |u_l|`` over the k output dofs, loss
    ``-log p_c`` for the true class ``c``, averaged over the batch.

    Parameters
    ----------
    u : array_like, shape (n, d) or (B, n, d)
        Displacements (m).
    outputs : array_like of int, shape (k, 2)
        (node, axis) pair of each class's output.
    labels : int or array_like of int, shape (B,)
        True class of each sample, in [0, k).
    eps : float
        Floor on ``|u_c|`` so a vanishing output gives a large, finite loss.

    Returns
    -------
    value : float
        Mean cross-entropy (nats).
    grad : ndarray, float64, shape of ``u``
        ``d value/d u_j = sign(u_j) (1/S - [j = c]/|u_c|) / B`` with ``S = sum |u|``.
    """
    eps = as_scalar("eps", eps, positive=True)
    ub, batched = _disp(u)
    o = _outputs(outputs, ub)
    nb, k = ub.shape[0], o.shape[0]
    lab = as_index_array("labels", np.atleast_1d(labels), upper=k)
    if lab.shape != (nb,):
        raise ShapeError(f"labels must have shape ({nb},), got {lab.shape}")
    v = ub[:, o[:, 0], o[:, 1]]
    a = np.abs(v)
    s = a.sum(axis=1)
    ac = np.maximum(a[np.arange(nb), lab], eps)
    s = np.maximum(s, eps)
    value = float(np.mean(np.log(s) - np.log(ac)))
    dv = np.sign(v) / s[:, None]
    dv[np.arange(nb), lab] -= np.sign(v[np.arange(nb), lab]) / ac
    dv /= nb
    grad = np.zeros_like(ub)
    np.add.at(grad, (slice(None), o[:, 0], o[:, 1]), dv)
    return value, (grad if batched else grad[0])
