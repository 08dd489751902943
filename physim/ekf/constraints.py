"""State constraints for active-sensing plans: keep-out circles and a minimum distance to beacons.

A state constraint asks ``c_j(x_k) ≥ 0`` at every planned state k = 1..N
(the start x_0 is given). The built-in ones are circles the planar position
p = x[:2] must stay out of, written as the smooth function

    c(p) = (‖p - o‖² - r²) / (2 r)        (m; ≈ ‖p - o‖ - r near the circle)

whose gradient (p - o)/r is exact and defined everywhere, so SLSQP gets exact
constraint Jacobians. Those come from the forward sensitivities of the
nominal trajectory, ∂x_k/∂U (one pass, O(N² n² n_u); see
:func:`physim.ekf._kernels.trajectory_sensitivity`), which suits horizons up
to a few hundred steps.

The violation of a plan is reported in metres: max over k, j of
max(0, r_j - ‖p_k - o_j‖).

Write your own by subclassing :class:`StateConstraint` and implementing
``values`` and ``jacobian`` (and optionally ``violation``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from .._validate import as_float_array, as_scalar
from ..errors import InvalidInputError, InvalidTypeError, ShapeError

if TYPE_CHECKING:
    from .sensors import MeasurementModel

__all__ = ["StateConstraint", "KeepOut", "BeaconDistance"]


class StateConstraint:
    """Smooth inequality constraints ``c(x) ≥ 0`` on every planned state.

    Subclasses implement :meth:`values` and :meth:`jacobian`; ``sensor`` is
    the plan's measurement model (some constraints read beacon positions).
    """

    name = "state constraint"

    def values(self, X: np.ndarray, sensor: MeasurementModel) -> np.ndarray:
        """Constraint values (K, q) at states X (K, n); feasible where ≥ 0."""
        raise NotImplementedError

    def jacobian(self, X: np.ndarray, sensor: MeasurementModel) -> np.ndarray:
        """∂c/∂x (K, q, n) at states X (K, n)."""
        raise NotImplementedError

    def violation(self, X: np.ndarray, sensor: MeasurementModel) -> float:
        """Largest violation at states X (K, n) (0 when feasible), in the units of ``values``."""
        return float(max(0.0, -float(np.min(self.values(X, sensor), initial=0.0))))

    def inflated(self, margin: float) -> StateConstraint:
        """The constraint tightened by ``margin`` (m) (a back-off for planning under noise); default: itself."""
        return self


class _Circles(StateConstraint):
    """The position must stay outside circles (centres (q, 2), radii (q,))."""

    def circles(self, sensor) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def values(self, X: np.ndarray, sensor: MeasurementModel) -> np.ndarray:
        C, r = self.circles(sensor)
        d = X[:, None, :2] - C[None]
        return (np.sum(d * d, axis=2) - r * r) / (2.0 * r)

    def jacobian(self, X: np.ndarray, sensor: MeasurementModel) -> np.ndarray:
        C, r = self.circles(sensor)
        J = np.zeros((X.shape[0], C.shape[0], X.shape[1]))
        J[:, :, :2] = (X[:, None, :2] - C[None]) / r[:, None]
        return J

    def distances(self, X: np.ndarray, sensor: MeasurementModel) -> np.ndarray:
        """Signed distance (K, q) of each position to each circle (m; < 0 inside)."""
        C, r = self.circles(sensor)
        return np.linalg.norm(X[:, None, :2] - C[None], axis=2) - r

    def violation(self, X: np.ndarray, sensor: MeasurementModel) -> float:
        return float(max(0.0, -float(np.min(self.distances(X, sensor), initial=0.0))))

    def check_point(self, what: str, p: ArrayLike, sensor: MeasurementModel) -> None:
        """Raise InvalidInputError if the position ``p`` (2,) violates a circle."""
        C, r = self.circles(sensor)
        d = np.linalg.norm(np.asarray(p, dtype=float)[:2] - C, axis=1) - r
        j = int(np.argmin(d))
        if d[j] < 0:
            raise InvalidInputError(
                f"{what} at {np.asarray(p, dtype=float)[:2].tolist()} violates {self.name} {j} "
                f"(centre {C[j].tolist()}, radius {r[j]:g} m) by {-d[j]:.3g} m; no plan from/to there can be feasible"
            )


#: lengths (m) outside [_MIN_LENGTH, _MAX_LENGTH] make the constraint values (d² - r²) / 2r overflow
_MIN_LENGTH, _MAX_LENGTH = 1e-100, 1e100


def _check_extent(name: str, a: np.ndarray, lower: float) -> None:
    a = a.reshape(-1)
    bad = np.nonzero((a < lower) | (a > _MAX_LENGTH))[0]
    if bad.size:
        i = int(bad[0])
        raise InvalidInputError(
            f"{name} entry {i} has magnitude {a[i]:g} m, outside [{lower:g}, {_MAX_LENGTH:g}] m "
            "where constraint values stay representable"
        )


class KeepOut(_Circles):
    """Circular obstacles the robot must keep out of.

    Parameters
    ----------
    centers : array_like, shape (q, 2)
        Obstacle centres in m.
    radii : float or array_like, shape (q,)
        Radii in m (> 0), e.g. the obstacle radius plus the robot's radius and a margin.
    """

    name = "keep-out circle"

    def __init__(self, centers: ArrayLike, radii: ArrayLike) -> None:
        C = as_float_array("centers", centers, (None, 2), copy=True)
        if C.shape[0] == 0:
            raise InvalidInputError("centers must hold at least one circle, got shape (0, 2)")
        r = as_float_array("radii", radii)
        if r.shape not in ((), (1,), (C.shape[0],)):
            raise ShapeError(f"radii must be a scalar or have shape ({C.shape[0]},), got {r.shape}")
        r = np.broadcast_to(r.reshape(-1) if r.ndim else r, (C.shape[0],)).copy()
        if not np.all(r > 0):
            raise InvalidInputError(f"radii must be > 0, got {r.tolist()}")
        _check_extent("centers", np.abs(C), 0.0)
        _check_extent("radii", r, _MIN_LENGTH)
        C.setflags(write=False)
        r.setflags(write=False)
        self.centers, self.radii = C, r

    def circles(self, sensor: MeasurementModel) -> tuple[np.ndarray, np.ndarray]:
        return self.centers, self.radii

    def inflated(self, margin: float) -> KeepOut:
        return self if margin == 0 else KeepOut(self.centers, self.radii + margin)

    def __repr__(self) -> str:
        return f"KeepOut(n={self.centers.shape[0]})"


class BeaconDistance(_Circles):
    """A minimum distance (m) to every beacon of the plan's sensor (which needs ``.positions``).

    Parameters
    ----------
    distance : float
        Minimum distance in m (> 0).
    """

    name = "beacon distance"

    def __init__(self, distance: float) -> None:
        self.distance = as_scalar("distance", distance, positive=True)
        _check_extent("distance", np.array([self.distance]), _MIN_LENGTH)

    def circles(self, sensor: MeasurementModel) -> tuple[np.ndarray, np.ndarray]:
        B = getattr(sensor, "positions", None)
        if B is None:
            raise InvalidTypeError(
                f"BeaconDistance needs a sensor with beacon .positions, got {type(sensor).__name__}"
            )
        B = np.asarray(B, dtype=float)
        return B, np.full(B.shape[0], self.distance)

    def inflated(self, margin: float) -> BeaconDistance:
        return self if margin == 0 else BeaconDistance(self.distance + margin)

    def __repr__(self) -> str:
        return f"BeaconDistance({self.distance:g})"


def as_constraints(constraints) -> tuple[StateConstraint, ...]:
    """Validate a sequence of state constraints."""
    if constraints is None:
        return ()
    if isinstance(constraints, StateConstraint):
        constraints = (constraints,)
    out = tuple(constraints)
    for c in out:
        if not isinstance(c, StateConstraint):
            raise InvalidTypeError(
                f"constraints must be physim.ekf state constraints (KeepOut, BeaconDistance, ...), got {type(c).__name__}"
            )
    return out
