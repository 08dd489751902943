"""Motion models and sensors written as Numba-compiled functions.

A model written with the numpy interface (:class:`~physim.ekf.MotionModel`,
:class:`~physim.ekf.MeasurementModel`) runs its Python methods at every step.
Subclassing :class:`CompiledMotionModel` or :class:`CompiledMeasurementModel`
instead, with the model written as a few plain functions that Numba can
compile (scalar arithmetic, ``math`` functions, indexing), makes the whole
rollout, adjoint and Monte-Carlo filter run compiled, at the speed of the
built-in models. The functions are compiled once per class (on first use, in
each process) and called from physim's kernels.

Motion model
------------
::

    class MyUnicycle(CompiledMotionModel):
        n_state = 3
        n_control = 2
        param_names = ("dt",)

        @staticmethod
        def f(x, u, p, x_next, F, G):
            dt = p[0]
            c, s = math.cos(x[2]), math.sin(x[2])
            x_next[0] = x[0] + dt * u[0] * c
            x_next[1] = x[1] + dt * u[0] * s
            x_next[2] = x[2] + dt * u[1]
            F[0, 0] = F[1, 1] = F[2, 2] = 1.0
            F[0, 2] = -dt * u[0] * s
            F[1, 2] = dt * u[0] * c
            G[0, 0] = dt * c
            G[1, 0] = dt * s
            G[2, 1] = dt

        @staticmethod
        def f_vjp(x, u, p, lam, F_bar, G_bar, x_bar, u_bar, p_bar):
            ...  # see below

    model = MyUnicycle(dt=0.1)

``f(x, u, p, x_next, F, G)`` writes the next state x⁺ = f(x, u; p) (n,), its
Jacobians F = ∂f/∂x (n, n) and G = ∂f/∂u (n, n_u). ``p`` (n_p,) holds the
parameters in ``param_names`` order.

``f_vjp(x, u, p, lam, F_bar, G_bar, x_bar, u_bar, p_bar)`` writes the
contractions of the second derivatives with the cotangents F̄ (n, n),
Ḡ (n, n_u)::

    x_bar = ∂(⟨F̄, F⟩ + ⟨Ḡ, G⟩)/∂x          (n,)
    u_bar = ∂(⟨F̄, F⟩ + ⟨Ḡ, G⟩)/∂u          (n_u,)
    p_bar = ∂(⟨λ, f⟩ + ⟨F̄, F⟩ + ⟨Ḡ, G⟩)/∂p  (n_p,)

(``⟨A, B⟩ = Σ A_ij B_ij``; λ = ``lam`` (n,) is the costate of the next
state: only the parameter gradient needs it, because ∂f/∂x and ∂f/∂u are
already F and G). Leave ``p_bar`` alone when ``param_names`` is empty.

Every output array arrives filled with zeros: write only the non-zero
entries (and mind the identity part of F). Indexing is bounds-checked (an
out-of-range write raises a clear :class:`~physim.errors.ShapeError` instead
of corrupting memory); set ``boundscheck = False`` on the class to trade that
for a little speed. The first two state components are the planar position
(m) when beacons are used, the third the heading (rad) for bearings.

Sensor
------
``h(x, q, z)`` writes the noise-free measurement z (m,); ``jac(x, q, H, Rd)``
writes H = ∂h/∂x (m, n) and the noise variances Rd (m,) (> 0, diagonal
noise); ``jac_vjp(x, q, H_bar, R_bar, x_bar, q_bar)`` writes
∂(⟨H̄, H⟩ + ⟨R̄, Rd⟩)/∂x (n,) and /∂q (n_q,). ``n_meas`` and ``angular`` (a
tuple of m booleans: which components are angles, wrapped to [-π, π)) are
class attributes or properties computed from the parameters.

Parameters
----------
``param_names`` lists the constructor's keyword arguments; each value is a
float or an array (e.g. beacon positions), flattened and concatenated in that
order into ``p`` / ``q``. ``adjoint`` returns their gradients under the same
names (``Gradients.model`` / ``Gradients.sensor``).

Check the hand-written derivatives with :func:`physim.ekf.check_model`
before use: it compares each of them with finite differences and names the
one that is wrong.
"""

from __future__ import annotations

import inspect
import sys
import threading
from typing import Any, TypeVar

import numba
import numpy as np

from .._validate import as_float_array
from ..errors import InvalidInputError, InvalidTypeError, NonFiniteError, ShapeError
from . import _user_kernels as UK
from .models import MotionModel
from .sensors import MeasurementModel

__all__ = ["CompiledMotionModel", "CompiledMeasurementModel"]

_RESERVED = {"params", "param_names", "n_state", "n_control", "n_meas", "angular", "boundscheck"}


class _Unraisable(threading.local):
    """Per-thread capture of the exceptions Numba reports as unraisable from user cfuncs."""

    def __init__(self):
        self.active: list | None = None


_captured = _Unraisable()
_hook_lock = threading.Lock()
_previous_hook = None


def _hook(unraisable):
    if _captured.active is not None and "numba" in repr(unraisable.object):
        _captured.active.append(unraisable.exc_value)
    elif _previous_hook is not None:
        _previous_hook(unraisable)


def _install_hook() -> None:
    global _previous_hook
    with _hook_lock:
        if sys.unraisablehook is not _hook:
            _previous_hook = sys.unraisablehook
            sys.unraisablehook = _hook


def _function(cls, name: str):
    """The cfunc of the user function ``cls.<name>``, compiled on first use."""
    key = f"_cfunc_{name}"
    got = cls.__dict__.get(key)
    if got is not None:
        return got
    fn = inspect.getattr_static(cls, name, None)
    if isinstance(fn, staticmethod):
        fn = fn.__func__
    if isinstance(fn, numba.core.registry.CPUDispatcher):
        fn = fn.py_func
    if not callable(fn):
        raise InvalidTypeError(f"{cls.__name__}.{name} must be a function (a @staticmethod), got {fn!r}")
    try:
        got = UK.compile_user_function(fn, name, boundscheck=bool(cls.boundscheck))
    except numba.core.errors.NumbaError as exc:
        raise InvalidTypeError(
            f"{cls.__name__}.{name} could not be compiled by Numba with the signature "
            f"{UK.SIGNATURES[name]}:\n{exc}"
        ) from None
    setattr(cls, key, got)
    return got


def _pack(owner: str, names: tuple[str, ...], given: dict):
    """Flatten the named parameters into one float64 array; returns (flat, layout)."""
    missing = [n for n in names if n not in given]
    extra = [n for n in given if n not in names]
    if missing or extra:
        raise InvalidInputError(
            f"{owner} takes the parameters {list(names)}; "
            + (f"missing {missing}" if missing else "")
            + ("; " if missing and extra else "")
            + (f"unexpected {extra}" if extra else "")
        )
    parts, layout, start = [], {}, 0
    for n in names:
        a = as_float_array(n, given[n], copy=True)
        parts.append(a.reshape(-1))
        layout[n] = (slice(start, start + a.size), a.shape)
        start += a.size
    flat = np.concatenate(parts) if parts else np.zeros(0)
    flat.setflags(write=False)
    return flat, layout


def _unpack(layout: dict, flat: np.ndarray) -> dict:
    out = {}
    for n, (sl, shape) in layout.items():
        v = flat[sl]
        out[n] = float(v[0]) if shape == () else v.reshape(shape).copy()
    return out


def _user_call(what: str, fn, *args):
    """Call a kernel that runs user code; raise what the user code reported as a physim error."""
    _install_hook()
    # the user functions' signatures take writable arrays: read-only inputs (result fields) are copied
    args = tuple(np.array(a) if isinstance(a, np.ndarray) and not a.flags.writeable else a for a in args)
    outer = _captured.active
    _captured.active = caught = []
    try:
        out = fn(*args)
    finally:
        _captured.active = outer
    for exc in caught:
        if isinstance(exc, IndexError):
            raise ShapeError(f"{what} indexed outside its arrays ({exc}); check the sizes it writes")
        raise InvalidInputError(f"{what} failed: {type(exc).__name__}: {exc}")
    return out


def _check_finite_out(what: str, a: np.ndarray, what_axis: str = "step") -> None:
    """Raise NonFiniteError naming the first non-finite entry of a stacked output ``a`` (K, ...)."""
    bad = ~np.isfinite(a)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        entry = f" (entry {idx[1:] if len(idx) > 2 else idx[1]})" if len(idx) > 1 else ""
        raise NonFiniteError(
            f"{what} returned a non-finite value {float(a[idx])} at {what_axis} {idx[0]}{entry}"
        )


_P = TypeVar("_P", bound="_ParamsMixin")


class _ParamsMixin:
    param_names: tuple[str, ...] = ()
    boundscheck: bool = True
    _functions: tuple[str, ...] = ()

    def _init_params(self, params: dict) -> None:
        cls = type(self)
        missing = [a for a in cls._functions if inspect.getattr_static(cls, a, None) is None]
        if missing:
            raise InvalidTypeError(f"{cls.__name__} must define the static methods {list(cls._functions)}")
        names = tuple(cls.param_names)
        bad = [n for n in names if n in _RESERVED or n.startswith("_")]
        if bad:
            raise InvalidInputError(f"{cls.__name__}.param_names must not use the reserved names {bad}")
        flat, layout = _pack(cls.__name__, names, params)
        self.params = flat
        self._p = np.array(flat)  # writable copy for the kernels (their signatures take writable arrays)
        self._layout = layout
        for n, v in _unpack(layout, flat).items():
            if isinstance(v, np.ndarray):
                v.setflags(write=False)
            object.__setattr__(self, n, v)

    def param_dict(self) -> dict:
        """Parameters by name (floats, or arrays of their given shapes)."""
        return _unpack(self._layout, self.params)

    def with_params(self: _P, **changes: Any) -> _P:
        """A copy with some parameters replaced."""
        return type(self)(**{**self.param_dict(), **changes})

    def __repr__(self) -> str:
        def fmt(v):
            return repr(v) if not isinstance(v, np.ndarray) else f"array{v.shape}"

        return (
            f"{type(self).__name__}(" + ", ".join(f"{k}={fmt(v)}" for k, v in self.param_dict().items()) + ")"
        )

    def __reduce__(self):  # pickle by parameters (the class is importable)
        return (_rebuild, (type(self), self.param_dict()))


def _rebuild(cls, params):
    return cls(**params)


class CompiledMotionModel(_ParamsMixin, MotionModel):
    """Base class of motion models written as Numba-compiled functions.

    Subclasses set the class attributes ``n_state``, ``n_control`` and
    ``param_names`` and define the static methods ``f`` and ``f_vjp`` (see
    :mod:`physim.ekf.compiled` for the conventions). Instances are built
    with the parameters as keyword arguments, ``MyModel(dt=0.1)``; they are
    available as attributes and as the flat array :attr:`params`.
    """

    _functions = ("f", "f_vjp")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if any(inspect.getattr_static(cls, a, None) is None for a in cls._functions):
            return  # an intermediate base class
        for attr in ("n_state", "n_control"):
            v = inspect.getattr_static(cls, attr, None)
            if not (isinstance(v, (int, np.integer)) and v >= 1):
                raise InvalidTypeError(
                    f"{cls.__name__}.{attr} must be a positive int class attribute, got {v!r}"
                )

    def __init__(self, **params: Any) -> None:
        self._init_params(params)

    @property
    def _f(self):
        return _function(type(self), "f")

    @property
    def _f_vjp(self):
        return _function(type(self), "f_vjp")

    # -- numpy interface (check_model, Python paths) -------------------------------
    def _xu(self, x, u):
        return (
            as_float_array("x", x, (self.n_state,), copy=True),
            as_float_array("u", u, (self.n_control,), copy=True),
        )

    def _eval(self, x, u):
        x, u = self._xu(x, u)
        n, nu = self.n_state, self.n_control
        X = np.zeros((2, n))
        X[0] = x
        F = np.zeros((1, n, n))
        G = np.zeros((1, n, nu))
        _user_call(f"{type(self).__name__}.f", UK.user_rollout, self._f, self._p, x, u[None], X, F, G)
        return X[1], F[0], G[0]

    def step(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        return self._eval(x, u)[0]

    def jacobians(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        _, F, G = self._eval(x, u)
        return F, G

    def _vjp(self, x, u, lam, F_bar, G_bar):
        x, u = self._xu(x, u)
        n, nu = self.n_state, self.n_control
        lam = as_float_array("lam", lam, (n,))
        Fb = as_float_array("F_bar", F_bar, (n, n))[None]
        Gb = as_float_array("G_bar", G_bar, (n, nu))[None]
        _, F, G = self._eval(x, u)
        Xb = np.zeros((2, n))
        Xb[1] = lam
        x0b, Ub, pb = np.empty(n), np.empty((1, nu)), np.zeros(self.params.size)
        _user_call(f"{type(self).__name__}.f_vjp", UK.user_adjoint, self._f_vjp, self._p,
                   np.stack([x, x]), u[None], F[None], G[None], Fb, Gb, Xb, x0b, Ub, pb)  # fmt: skip
        # remove the first-order terms Fᵀλ, Gᵀλ the costate recursion adds
        return x0b - F.T @ lam, Ub[0] - G.T @ lam, pb

    def jacobians_vjp(self, x: np.ndarray, u: np.ndarray, F_bar: np.ndarray, G_bar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xb, ub, _ = self._vjp(x, u, np.zeros(self.n_state), F_bar, G_bar)
        return xb, ub

    def parameter_vjp(self, x: np.ndarray, u: np.ndarray, lam: np.ndarray, F_bar: np.ndarray, G_bar: np.ndarray) -> dict:
        """∂(⟨λ, f⟩ + ⟨F̄, F⟩ + ⟨Ḡ, G⟩)/∂(parameters) at (x, u), by parameter name."""
        return _unpack(self._layout, self._vjp(x, u, lam, F_bar, G_bar)[2])

    # -- compiled paths ---------------------------------------------------------
    def _rollout_kernel(self, x0, U, X, F, G) -> None:
        _user_call(f"{type(self).__name__}.f", UK.user_rollout, self._f, self._p, x0, U, X, F, G)
        for name, a in (("x_next", X[1:]), ("F", F), ("G", G)):
            _check_finite_out(f"{type(self).__name__}.f ({name})", a)

    def _adjoint_kernel(self, X, U, F, G, Fb, Gb, Xb, x0b, Ub) -> dict:
        pb = np.zeros(self.params.size)
        _user_call(f"{type(self).__name__}.f_vjp", UK.user_adjoint, self._f_vjp, self._p,
                   X, U, F, G, Fb, Gb, Xb, x0b, Ub, pb)  # fmt: skip
        for name, a in (("u_bar", Ub), ("p_bar", pb[None]), ("x_bar", x0b[None])):
            _check_finite_out(f"{type(self).__name__}.f_vjp ({name})", a)
        return _unpack(self._layout, pb)

    def _compiled(self):
        return self._f, self._p


class CompiledMeasurementModel(_ParamsMixin, MeasurementModel):
    """Base class of sensors written as Numba-compiled functions.

    Subclasses set ``n_meas``, ``angular`` (tuple of m booleans; default: no
    angles) and ``param_names``, and define the static methods ``h``,
    ``jac`` and ``jac_vjp`` (see :mod:`physim.ekf.compiled`). Noise is
    N(0, diag Rd(x)).
    """

    _functions = ("h", "jac", "jac_vjp")
    #: smallest state dimension the sensor reads (e.g. 3 when it reads a heading)
    min_state: int = 1

    def __init__(self, **params: Any) -> None:
        cls = type(self)
        self._init_params(params)
        m = self.n_meas
        if not (isinstance(m, (int, np.integer)) and m >= 1):
            raise InvalidTypeError(f"{cls.__name__}.n_meas must be a positive int, got {m!r}")
        if inspect.getattr_static(cls, "angular") is CompiledMeasurementModel.__dict__["angular"]:
            raw = np.zeros(m, dtype=bool)  # no angular components
        else:
            raw = self.angular  # a class attribute or a property of the subclass
        mask = np.array(raw, dtype=bool).reshape(-1)
        if mask.shape != (m,):
            raise ShapeError(
                f"{cls.__name__}.angular must hold n_meas = {m} booleans, got shape {mask.shape}"
            )
        mask.setflags(write=False)
        self._angular = mask

    @property
    def angular(self) -> np.ndarray:
        """Boolean mask (m,): which measurement components are angles."""
        return self._angular

    def _states(self, X) -> np.ndarray:
        X = as_float_array("X", X, (None, None))
        if X.shape[1] < self.min_state:
            raise ShapeError(
                f"{type(self).__name__} needs states with at least {self.min_state} components, got {X.shape[1]}"
            )
        return X

    def measure(self, X: np.ndarray) -> np.ndarray:
        X = self._states(X)
        Z = np.empty((X.shape[0], self.n_meas))
        _user_call(f"{type(self).__name__}.h", UK.user_measure, self._h, self._p, X, Z)
        _check_finite_out(f"{type(self).__name__}.h", Z, "state")
        return Z

    def jacobians(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = self._states(X)
        H = np.empty((X.shape[0], self.n_meas, X.shape[1]))
        Rd = np.empty((X.shape[0], self.n_meas))
        _user_call(f"{type(self).__name__}.jac", UK.user_jacobians, self._jac, self._p, X, H, Rd)
        _check_finite_out(f"{type(self).__name__}.jac (H)", H, "state")
        _check_finite_out(f"{type(self).__name__}.jac (Rd)", Rd, "state")
        if not np.all(Rd > 0):
            k, a = (int(i) for i in np.argwhere(~(Rd > 0))[0])
            raise InvalidInputError(
                f"{type(self).__name__}.jac returned a noise variance Rd[{a}] = {float(Rd[k, a])} <= 0 at state {k}"
            )
        return H, Rd

    def jacobians_vjp(self, X: np.ndarray, H_bar: np.ndarray, R_bar: np.ndarray) -> tuple[np.ndarray, dict]:
        X = self._states(X)
        Kn, n = X.shape
        Hb = as_float_array("H_bar", H_bar, (Kn, self.n_meas, n))
        Rb = as_float_array("R_bar", R_bar, (Kn, self.n_meas))
        Xb = np.empty((Kn, n))
        qb = np.zeros(self.params.size)
        _user_call(f"{type(self).__name__}.jac_vjp", UK.user_jacobians_vjp, self._jac_vjp, self._p,
                   X, Hb, Rb, Xb, qb)  # fmt: skip
        _check_finite_out(f"{type(self).__name__}.jac_vjp (x_bar)", Xb, "state")
        _check_finite_out(f"{type(self).__name__}.jac_vjp (q_bar)", qb[None], "state")
        return Xb, _unpack(self._layout, qb)

    @property
    def _h(self):
        return _function(type(self), "h")

    @property
    def _jac(self):
        return _function(type(self), "jac")

    @property
    def _jac_vjp(self):
        return _function(type(self), "jac_vjp")

    def _compiled(self):
        return self._h, self._jac, self._p, self._angular
