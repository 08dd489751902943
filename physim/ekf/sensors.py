"""Measurement models: range and bearing to known planar beacons.

A measurement model gives, at a robot state ``x`` (n,), the noise-free
measurement ``h(x)`` (m,), its Jacobian ``H = ∂h/∂x`` (m, n) and the
(diagonal) noise variances ``R(x)`` (m,), and for the adjoint the
vector-Jacobian product of ``H`` and ``R`` with respect to the state (and its
own parameters). All methods are batched over states (first axis).

Writing your own sensor
-----------------------
Subclass :class:`MeasurementModel` and implement ``n_meas``, ``angular``,
``measure``, ``jacobians`` and ``jacobians_vjp`` with numpy (the built-in
:class:`Beacons` is the example). ``jacobians_vjp`` returns the state
cotangents and a dict of parameter gradients (may be empty). For compiled
speed subclass :class:`physim.ekf.CompiledMeasurementModel` instead; check
either with :func:`physim.ekf.check_model`.

Units: positions in m, ranges in m, bearings in rad (wrapped to [-π, π)).
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._validate import as_float_array, as_scalar
from ..errors import InvalidInputError
from . import _kernels as K

__all__ = ["MeasurementModel", "Beacons"]


class MeasurementModel(abc.ABC):
    """Interface of a measurement model ``z = h(x) + v``, ``v ~ N(0, diag R(x))``."""

    @property
    @abc.abstractmethod
    def n_meas(self) -> int:
        """Measurement dimension m."""

    @property
    @abc.abstractmethod
    def angular(self) -> np.ndarray:
        """Boolean mask (m,): which components are angles (innovations are wrapped)."""

    @abc.abstractmethod
    def measure(self, X: np.ndarray) -> np.ndarray:
        """Noise-free measurements (K, m) at states X (K, n)."""

    @abc.abstractmethod
    def jacobians(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(H (K, m, n), R (K, m))``: Jacobians and noise variances at states X (K, n)."""

    @abc.abstractmethod
    def jacobians_vjp(self, X: np.ndarray, H_bar: np.ndarray, R_bar: np.ndarray) -> tuple[np.ndarray, dict]:
        """Gradients of ``Σ_k ⟨H̄_k, H(X_k)⟩ + ⟨R̄_k, R(X_k)⟩``.

        Returns the state cotangents (K, n) and a dict of parameter gradients.
        """

    def noise_std(self, X: np.ndarray) -> np.ndarray:
        """Noise standard deviations (K, m) at states X (K, n)."""
        return np.sqrt(self.jacobians(X)[1])

    def check_states(self, X: np.ndarray) -> None:
        """Raise :class:`InvalidInputError` where the measurement is singular at X (K, n)."""
        return None


class Beacons(MeasurementModel):
    """Range and/or bearing measurements to known beacons.

    For each beacon ``b_j`` (in order) the measurement vector holds the range
    ``r_j = ‖b_j - p‖`` (if ``range_std`` is given) then the bearing
    ``β_j = atan2(b_j,y - p_y, b_j,x - p_x) - θ`` wrapped to [-π, π) (if
    ``bearing_std`` is given), where ``p = x[:2]`` and ``θ = x[2]``.

    Parameters
    ----------
    positions : array_like, shape (n_b, 2)
        Beacon positions in m.
    range_std : float or None
        Range noise standard deviation σ₀ in m (> 0); ``None`` (default) = no
        ranges, e.g. ``Beacons(pos, bearing_std=0.02)`` is bearing-only.
    bearing_std : float or None
        Bearing noise standard deviation in rad (> 0); ``None`` = no bearings.
    range_slope : float
        Range-dependent noise: σ_r(r) = σ₀ + range_slope · r (dimensionless,
        ≥ 0; 0 = constant noise). Smooth in r, so everything stays differentiable.
    """

    def __init__(self, positions: ArrayLike, range_std: float | None = None, bearing_std: float | None = None, range_slope: float = 0.0) -> None:
        pos = as_float_array("positions", positions, (None, 2), copy=True)
        if pos.shape[0] == 0:
            raise InvalidInputError("positions must hold at least one beacon, got shape (0, 2)")
        if range_std is None and bearing_std is None:
            raise InvalidInputError("give range_std, bearing_std or both (got neither)")
        self.range_std = None if range_std is None else as_scalar("range_std", range_std, positive=True)
        self.bearing_std = (
            None if bearing_std is None else as_scalar("bearing_std", bearing_std, positive=True)
        )
        self.range_slope = as_scalar("range_slope", range_slope, nonnegative=True)
        if self.range_std is None and self.range_slope != 0.0:
            raise InvalidInputError(
                f"range_slope = {self.range_slope} needs range measurements (range_std), got range_std=None"
            )
        pos.setflags(write=False)
        self.positions = pos

    # -- helpers for the kernels ------------------------------------------------
    def _params(self) -> np.ndarray:
        return np.array(
            [
                float(self.range_std is not None),
                float(self.bearing_std is not None),
                self.range_std or 0.0,
                self.bearing_std or 0.0,
                self.range_slope,
            ]
        )

    @property
    def n_beacons(self) -> int:
        """Number of beacons n_b."""
        return self.positions.shape[0]

    @property
    def per_beacon(self) -> int:
        """Measurements per beacon (1 or 2)."""
        return int(self.range_std is not None) + int(self.bearing_std is not None)

    @property
    def n_meas(self) -> int:
        return self.n_beacons * self.per_beacon

    @property
    def angular(self) -> np.ndarray:
        mask = np.zeros((self.n_beacons, self.per_beacon), dtype=bool)
        if self.bearing_std is not None:
            mask[:, -1] = True
        return mask.reshape(-1)

    def with_positions(self, positions: ArrayLike) -> Beacons:
        """Copy with other beacon positions (n_b, 2)."""
        return Beacons(positions, self.range_std, self.bearing_std, self.range_slope)

    def param_dict(self) -> dict:
        """Differentiable parameters by the names :func:`physim.ekf.adjoint` uses for their gradients."""
        out = {"beacons": self.positions.copy()}
        if self.range_std is not None:
            out["range_std"] = self.range_std
            out["range_slope"] = self.range_slope
        if self.bearing_std is not None:
            out["bearing_std"] = self.bearing_std
        return out

    def with_params(self, **changes: Any) -> Beacons:
        """A copy with some parameters (names of :meth:`param_dict`) replaced."""
        p = {**self.param_dict(), **changes}
        return Beacons(p["beacons"], p.get("range_std"), p.get("bearing_std"), p.get("range_slope", 0.0))

    def _states(self, X) -> np.ndarray:
        X = as_float_array("X", X, (None, None))
        need = 3 if self.bearing_std is not None else 2
        if X.shape[1] < need:
            raise InvalidInputError(
                f"beacon measurements need states with at least {need} components "
                f"(x, y{', heading' if need == 3 else ''}), got {X.shape[1]}"
            )
        return X

    def measure(self, X: np.ndarray) -> np.ndarray:
        X = self._states(X)
        Z = np.empty((X.shape[0], self.n_meas))
        B, sp = self.positions, self._params()
        for k in range(X.shape[0]):
            K.meas_eval(X[k], B, sp, Z[k])
        return Z

    def noise_std(self, X: np.ndarray) -> np.ndarray:
        X = self._states(X)
        sd = np.empty((X.shape[0], self.n_meas))
        B, sp = self.positions, self._params()
        for k in range(X.shape[0]):
            K.meas_noise_std(X[k], B, sp, sd[k])
        return sd

    def jacobians(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = self._states(X)
        H = np.empty((X.shape[0], self.n_meas, X.shape[1]))
        Rd = np.empty((X.shape[0], self.n_meas))
        K.meas_jac_batch(X, self.positions, self._params(), H, Rd)
        return H, Rd

    def jacobians_vjp(self, X: np.ndarray, H_bar: np.ndarray, R_bar: np.ndarray) -> tuple[np.ndarray, dict]:
        X = self._states(X)
        Kn, n = X.shape
        H_bar = as_float_array("H_bar", H_bar, (Kn, self.n_meas, n))
        R_bar = as_float_array("R_bar", R_bar, (Kn, self.n_meas))
        Xb = np.empty_like(X)
        Bb = np.zeros_like(self.positions)
        spb = np.zeros(3)
        K.meas_vjp_batch(X, self.positions, self._params(), H_bar, R_bar, Xb, Bb, spb)
        return Xb, self._param_grads(Bb, spb)

    def _param_grads(self, Bb, spb) -> dict:
        return {
            "beacons": Bb,
            "range_std": float(spb[0]) if self.range_std is not None else None,
            "bearing_std": float(spb[1]) if self.bearing_std is not None else None,
            "range_slope": float(spb[2]) if self.range_std is not None else None,
        }

    def check_states(self, X: np.ndarray, *, min_distance: float = 1e-6) -> None:
        """Raise :class:`InvalidInputError` if a beacon is within ``min_distance`` m of a state.

        Range and bearing Jacobians are singular when the robot sits on a beacon.
        ``X`` (K, n) are the measured states (steps 1..N of a rollout).
        """
        X = np.ascontiguousarray(X, dtype=np.float64)
        k, j, d = K.nearest_beacon(X, self.positions)
        if not d > min_distance:
            raise InvalidInputError(
                f"beacon {j} at {self.positions[j].tolist()} is {d:.3g} m from the robot at "
                f"step {k + 1} (position {X[k, :2].tolist()}); range/bearing Jacobians are singular there"
            )

    def __repr__(self) -> str:
        return (
            f"Beacons(n_beacons={self.n_beacons}, range_std={self.range_std}, "
            f"bearing_std={self.bearing_std}, range_slope={self.range_slope})"
        )
