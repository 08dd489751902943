"""Discrete-time motion models for planar robots.

A motion model maps a state ``x`` (n,) and a control ``u`` (n_u,) to the next
state ``x⁺ = f(x, u)`` over one time step. The EKF needs its Jacobians

* ``F = ∂f/∂x`` (n, n) and ``G = ∂f/∂u`` (n, n_u) (odometry noise on the
  controls enters the process noise as ``G M Gᵀ``),

and the adjoint pass needs the vector-Jacobian product of those Jacobians:
for cotangents ``F̄`` (n, n) and ``Ḡ`` (n, n_u) it returns

    x̄ = ∂⟨F̄, F(x, u)⟩/∂x + ∂⟨Ḡ, G(x, u)⟩/∂x   (n,)
    ū = ∂⟨F̄, F(x, u)⟩/∂u + ∂⟨Ḡ, G(x, u)⟩/∂u   (n_u,)

(``⟨A, B⟩ = Σ A_ij B_ij``), i.e. contractions of the second derivatives of
``f`` with the cotangents.

Writing your own model
----------------------
Subclass :class:`MotionModel` and implement ``n_state``, ``n_control``,
``step(x, u)``, ``jacobians(x, u)`` and ``jacobians_vjp(x, u, F_bar, G_bar)``
with numpy. The first two state components must be the planar position (m)
and, when bearing measurements are used, the third the heading (rad): the
beacon sensors read them. Such models run through a Python loop for the
model part (the covariance recursion itself stays compiled), so they are
slower than the built-in ones but produce exactly the same quantities. To run
at compiled speed, write the model as Numba-compilable functions instead
(:class:`physim.ekf.CompiledMotionModel`). Either way,
:func:`physim.ekf.check_model` compares the hand-written derivatives with
finite differences and names any that is wrong.

Built-in models (:class:`Unicycle`, :class:`Bicycle`) are also evaluated inside
the compiled kernels, dispatched on an integer ``kind`` code with a parameter
array, so all built-in models share one compiled kernel.

Units: positions in m, headings and steering angles in rad, speeds in m/s,
turn rates in rad/s, time steps in s.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from .._validate import as_float_array, as_scalar
from ..errors import InvalidInputError
from . import _kernels as K

__all__ = ["MotionModel", "Unicycle", "Bicycle"]


class MotionModel(abc.ABC):
    """Interface of a discrete-time motion model ``x⁺ = f(x, u)``.

    Subclasses implement the methods below with numpy; see the module
    docstring. The base class provides input-independent validation hooks.
    """

    #: integer code of a built-in model evaluated inside the compiled kernels
    #: (``None`` for user models, which run through the Python path).
    _kind: int | None = None
    #: names of the model parameters with gradients (built-in and compiled models)
    param_names: tuple[str, ...] = ()

    @property
    @abc.abstractmethod
    def n_state(self) -> int:
        """State dimension n (the first two components are the position in m)."""

    @property
    @abc.abstractmethod
    def n_control(self) -> int:
        """Control dimension n_u."""

    @abc.abstractmethod
    def step(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Next state ``f(x, u)``, shape (n,)."""

    @abc.abstractmethod
    def jacobians(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Jacobians ``(F, G) = (∂f/∂x (n, n), ∂f/∂u (n, n_u))`` at ``(x, u)``."""

    @abc.abstractmethod
    def jacobians_vjp(
        self, x: np.ndarray, u: np.ndarray, F_bar: np.ndarray, G_bar: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Gradients ``(x̄ (n,), ū (n_u,))`` of ``⟨F̄, F(x, u)⟩ + ⟨Ḡ, G(x, u)⟩``."""

    def check_controls(self, controls: np.ndarray) -> None:
        """Raise :class:`InvalidInputError` for controls outside the model's domain.

        ``controls`` is a validated finite float64 array (N, n_u). The default
        accepts everything.
        """
        return None

    def _params(self) -> np.ndarray:  # parameters of a built-in model for the kernels
        raise NotImplementedError


class _PlanarModel(MotionModel):
    """Shared numpy evaluation of the built-in models through the kernels' helpers."""

    @property
    def n_state(self) -> int:
        return 3

    @property
    def n_control(self) -> int:
        return 2

    def _xu(self, x, u):
        x = as_float_array("x", x, (3,))
        u = as_float_array("u", u, (2,))
        return x, u

    def step(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        x, u = self._xu(x, u)
        xn = np.empty(3)
        F = np.empty((3, 3))
        G = np.empty((3, 2))
        K.model_step(self._kind, self._params(), x, u, xn, F, G)
        return xn

    def jacobians(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, u = self._xu(x, u)
        xn = np.empty(3)
        F = np.empty((3, 3))
        G = np.empty((3, 2))
        K.model_step(self._kind, self._params(), x, u, xn, F, G)
        return F, G

    def jacobians_vjp(self, x: np.ndarray, u: np.ndarray, F_bar: np.ndarray, G_bar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, u = self._xu(x, u)
        F_bar = as_float_array("F_bar", F_bar, (3, 3))
        G_bar = as_float_array("G_bar", G_bar, (3, 2))
        xb = np.zeros(3)
        ub = np.zeros(2)
        K.model_jac_vjp(self._kind, self._params(), x, u, F_bar, G_bar, xb, ub)
        return xb, ub

    def parameter_vjp(self, x: np.ndarray, u: np.ndarray, lam: np.ndarray, F_bar: np.ndarray, G_bar: np.ndarray) -> dict:
        """∂(⟨λ, f⟩ + ⟨F̄, F⟩ + ⟨Ḡ, G⟩)/∂(parameters) at (x, u), by parameter name."""
        x, u = self._xu(x, u)
        lam = as_float_array("lam", lam, (3,))
        F_bar = as_float_array("F_bar", F_bar, (3, 3))
        G_bar = as_float_array("G_bar", G_bar, (3, 2))
        pb = np.zeros(2)
        K.model_param_vjp(self._kind, self._params(), x, u, lam, F_bar, G_bar, pb)
        return dict(zip(self.param_names, pb.tolist()))

    def param_dict(self) -> dict:
        """Parameters by name."""
        return {name: float(getattr(self, name)) for name in self.param_names}

    def with_params(self, **changes: Any) -> _PlanarModel:
        """A copy with some parameters replaced."""
        return type(self)(**{**self.param_dict(), **changes})


class Unicycle(_PlanarModel):
    """Unicycle with explicit-Euler kinematics.

    State ``(x, y, θ)`` (m, m, rad), controls ``(v, ω)`` (m/s, rad/s)::

        x⁺ = x + dt v cos θ,   y⁺ = y + dt v sin θ,   θ⁺ = θ + dt ω

    Parameters
    ----------
    dt : float
        Time step in s (> 0).
    """

    _kind = K.MODEL_UNICYCLE
    #: names of the parameters whose gradients :func:`physim.ekf.adjoint` returns
    param_names = ("dt",)

    def __init__(self, dt: float) -> None:
        self.dt = as_scalar("dt", dt, positive=True)

    def _params(self) -> np.ndarray:
        return np.array([self.dt, 1.0])

    def __repr__(self) -> str:
        return f"Unicycle(dt={self.dt!r})"


class Bicycle(_PlanarModel):
    """Kinematic bicycle (car-like robot, rear-axle reference point).

    State ``(x, y, θ)`` (m, m, rad), controls ``(v, δ)`` (m/s, steering angle
    in rad, |δ| < π/2)::

        x⁺ = x + dt v cos θ,   y⁺ = y + dt v sin θ,   θ⁺ = θ + dt v tan(δ) / L

    Parameters
    ----------
    dt : float
        Time step in s (> 0).
    wheelbase : float
        Distance L between the axles in m (> 0).
    """

    _kind = K.MODEL_BICYCLE
    #: names of the parameters whose gradients :func:`physim.ekf.adjoint` returns
    param_names = ("dt", "wheelbase")

    def __init__(self, dt: float, wheelbase: float = 1.0) -> None:
        self.dt = as_scalar("dt", dt, positive=True)
        self.wheelbase = as_scalar("wheelbase", wheelbase, positive=True)

    def _params(self) -> np.ndarray:
        return np.array([self.dt, self.wheelbase])

    def check_controls(self, controls: np.ndarray) -> None:
        bad = np.abs(controls[:, 1]) >= 0.5 * np.pi * (1.0 - 1e-6)
        if bad.any():
            i = int(np.argmax(bad))
            raise InvalidInputError(
                f"controls[{i}, 1] (steering angle) is {controls[i, 1]!r} rad; "
                "a kinematic bicycle needs |steering| < pi/2"
            )

    def __repr__(self) -> str:
        return f"Bicycle(dt={self.dt!r}, wheelbase={self.wheelbase!r})"
