"""Physiological priors on twin parameters, as penalties with exact gradients.

Each prior is a callable ``prior(p) -> (value, grad)`` on the parameters of
one twin component (the site times of :class:`~physim.cardiac.twin.CandidateSites`),
added to the data term of an objective. Values are negative log-densities up
to a constant, so they add to a loss in the same units as ``weight``.

Number of firing sites
----------------------
Camps et al. (Medical Image Analysis 2021) found 6-10 root nodes (sites where
the Purkinje network activates the myocardium) enough to reproduce a sinus
QRS, and used that range as their prior. With many candidate sites each
carrying a time ``t_k`` (ms), a site "fires" when it starts before the wave
from the others reaches it; a smooth surrogate of the number of firing sites
counts each site by how much earlier than an onset time it starts::

    n(t) = sum_k s_k,   s_k = sigmoid((onset - t_k) / softness)

(a site at ``onset`` counts one half, a dormant site near ``t_max`` about
zero). The count prior is a Gaussian on that soft count::

    R(t) = weight * 0.5 * ((n(t) - center) / width)^2,
    dR/dt_k = -weight * (n - center) / width^2 * s_k (1 - s_k) / softness.

Sites that the data do not need (zero data gradient) drift later until they
stop counting; sites the data need stay early unless the count is too high.

Conduction velocities
---------------------
:class:`VelocityPrior` is a Gaussian prior on the parameters of a velocity
model, e.g. a population range of myocardial conduction velocities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from physim._validate import as_float_array, as_scalar
from physim.errors import InvalidInputError

__all__ = ["SiteCountPrior", "VelocityPrior"]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


@dataclass(frozen=True)
class SiteCountPrior:
    """Gaussian prior on the (soft) number of firing candidate sites.

    Parameters
    ----------
    center : float
        Expected number of firing sites (default 8, the middle of Camps et
        al.'s 6-10 root nodes).
    width : float
        Standard deviation of the count (default 2 sites).
    weight : float
        Multiplier of the penalty (objective units per unit of negative
        log-density), >= 0.
    onset_ms : float
        A site starting at this time counts one half (ms, default 20).
    softness_ms : float
        Width of the sigmoid that counts a site (ms, default 5), > 0.
    """

    center: float = 8.0
    width: float = 2.0
    weight: float = 1.0
    onset_ms: float = 20.0
    softness_ms: float = 5.0

    def __post_init__(self):
        as_scalar("center", self.center, nonnegative=True)
        as_scalar("width", self.width, positive=True)
        as_scalar("weight", self.weight, nonnegative=True)
        as_scalar("onset_ms", self.onset_ms)
        as_scalar("softness_ms", self.softness_ms, positive=True)

    def count(self, times: ArrayLike) -> tuple[float, np.ndarray]:
        """Soft count ``n(t)`` and ``dn/dt`` (1/ms), shape (n_sites,)."""
        t = as_float_array("times", times, shape=(None,))
        s = _sigmoid((self.onset_ms - t) / self.softness_ms)
        return float(s.sum()), -s * (1.0 - s) / self.softness_ms

    def __call__(self, times: ArrayLike) -> tuple[float, np.ndarray]:
        """Penalty ``R(t)`` and its gradient w.r.t. the site times, shape (n_sites,)."""
        n, dn = self.count(times)
        z = (n - self.center) / self.width
        return float(self.weight * 0.5 * z * z), (self.weight * z / self.width) * dn


@dataclass(frozen=True)
class VelocityPrior:
    """Independent Gaussian prior on the parameters of a velocity model.

    ``R(p) = weight * 0.5 * sum_i ((p_i - mean_i) / std_i)^2``, gradient
    ``weight * (p - mean) / std^2``. For
    :class:`~physim.cardiac.twin.AnisotropicVelocities` the parameters are the
    fibre velocity (mm/ms) and the cross/fibre ratio; for
    :class:`~physim.cardiac.twin.GlobalVelocities` the fibre and cross-fibre
    velocities (mm/ms).

    Parameters
    ----------
    mean, std : sequence of float
        One entry per velocity parameter; ``std > 0``.
    weight : float
        Multiplier (objective units per unit of negative log-density), >= 0.
    """

    mean: tuple
    std: tuple
    weight: float = 1.0

    def __post_init__(self):
        m = as_float_array("mean", self.mean, shape=(None,))
        s = as_float_array("std", self.std, shape=(m.size,))
        if np.any(s <= 0):
            raise InvalidInputError(f"std must be > 0, got {s.tolist()}")
        object.__setattr__(self, "mean", tuple(float(v) for v in m))
        object.__setattr__(self, "std", tuple(float(v) for v in s))
        object.__setattr__(self, "weight", as_scalar("weight", self.weight, nonnegative=True))

    def __call__(self, p: np.ndarray) -> tuple[float, np.ndarray]:
        """Penalty and its gradient w.r.t. the velocity parameters ``p``."""
        p = as_float_array("p", p, shape=(len(self.mean),))
        s = np.asarray(self.std)
        z = (p - np.asarray(self.mean)) / s
        return float(self.weight * 0.5 * z @ z), self.weight * z / s
