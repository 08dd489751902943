"""Check the hand-written derivatives of a motion model or sensor against finite differences.

:func:`check_model` evaluates, at a few random points (or the ones given),
every derivative a model supplies and compares it with central finite
differences of the function it is the derivative of:

* motion models: ``F = ∂f/∂x`` and ``G = ∂f/∂u`` (from ``step``), the
  ``jacobians_vjp`` contractions x̄ and ū (from ``jacobians``), and, for
  models with parameters (built-in and compiled models), the parameter
  gradient p̄ (from ``step`` and ``jacobians`` at perturbed parameters);
* sensors: ``H = ∂h/∂x`` (from ``measure``, angles wrapped), the
  ``jacobians_vjp`` state contraction x̄ (from ``jacobians``, noise variances
  included), and the parameter gradients of sensors with parameters.

The report names each check and says which one is wrong. Tolerances: a check
passes when ``max |analytic - fd| <= rtol * scale + atol`` where ``scale``
is the largest magnitude of the finite-difference values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .._result import Result
from .._validate import as_float_array, as_rng
from ..errors import InvalidInputError, InvalidTypeError, PhysimError
from .models import MotionModel
from .sensors import MeasurementModel

__all__ = ["check_model", "ModelCheck", "CheckItem"]


@dataclass(frozen=True)
class CheckItem(Result):
    """One derivative compared with finite differences.

    Attributes
    ----------
    name : str
        What was checked (method and quantity).
    error : float
        Largest absolute difference between the supplied derivative and the
        finite differences, over the points (NaN when it could not be evaluated).
    scale : float
        Largest magnitude of the finite-difference values.
    ok : bool
        Whether ``error <= rtol * scale + atol``.
    note : str
        Why it failed to evaluate or was skipped (empty otherwise).
    """

    name: str
    error: float
    scale: float
    ok: bool
    note: str = ""


@dataclass(frozen=True)
class ModelCheck(Result):
    """Report of :func:`check_model`.

    Attributes
    ----------
    model : str
        repr of the checked model.
    items : tuple of CheckItem
    n_points : int
        Number of points checked.
    """

    model: str
    items: tuple
    n_points: int

    @property
    def ok(self) -> bool:
        """Whether every check passed (skipped checks do not count)."""
        return all(i.ok for i in self.items)

    @property
    def failed(self) -> list[str]:
        """Names of the checks that failed."""
        return [i.name for i in self.items if not i.ok]

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        w = max(len(i.name) for i in self.items) if self.items else 10
        lines = [f"check_model({self.model}) at {self.n_points} point(s): " + ("ok" if self.ok else "FAILED")]
        for i in self.items:
            status = "ok" if i.ok else "WRONG"
            if i.note and i.ok:
                status = "skipped"
            lines.append(
                f"  {i.name:<{w}}  error {i.error:9.2e}  scale {i.scale:9.2e}  {status}  {i.note}".rstrip()
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ModelCheck(ok={self.ok}, failed={self.failed})"


def _fd(fun, v: np.ndarray, rel_h: float) -> np.ndarray:
    """Central-difference Jacobian (out..., d) of ``fun`` at ``v`` (d,)."""
    cols = []
    for i in range(v.size):
        h = rel_h * max(1.0, abs(float(v[i])))
        e = np.zeros_like(v)
        e[i] = h
        cols.append((np.asarray(fun(v + e), dtype=float) - np.asarray(fun(v - e), dtype=float)) / (2 * h))
    return np.stack(cols, axis=-1)


class _Collector:
    def __init__(self, rtol, atol):
        self.rtol, self.atol = rtol, atol
        self.acc: dict[str, list] = {}
        self.notes: dict[str, str] = {}

    def add(self, name, analytic, fd):
        a = np.asarray(analytic, dtype=float)
        b = np.asarray(fd, dtype=float)
        if a.shape != b.shape:
            self.fail(name, f"shape {a.shape}, expected {b.shape}")
            return
        err, scale = self.acc.get(name, (0.0, 0.0))
        self.acc[name] = (
            max(err, float(np.max(np.abs(a - b), initial=0.0))),
            max(scale, float(np.max(np.abs(b), initial=0.0))),
        )

    def fail(self, name, note):
        self.acc[name] = (np.nan, np.nan)
        self.notes[name] = note

    def skip(self, name, note):
        self.acc.setdefault(name, (0.0, 0.0))
        self.notes[name] = note

    def run(self, name, thunk):
        """Run ``thunk()``; a raised error marks ``name`` as failed with the message."""
        try:
            thunk()
        except (
            PhysimError,
            ValueError,
            TypeError,
            IndexError,
            ArithmeticError,
            np.linalg.LinAlgError,
        ) as exc:
            self.fail(name, f"{type(exc).__name__}: {exc}")

    def passed(self, name) -> bool:
        err, scale = self.acc.get(name, (np.nan, np.nan))
        return bool(np.isfinite(err) and err <= self.rtol * scale + self.atol)

    def items(self):
        out = []
        for name, (err, scale) in self.acc.items():
            note = self.notes.get(name, "")
            ok = bool(np.isfinite(err) and err <= self.rtol * scale + self.atol)
            out.append(CheckItem(name=name, error=err, scale=scale, ok=ok, note=note))
        return tuple(out)


def _points(name, given, dim, count, draw):
    if given is None:
        return np.array([draw() for _ in range(count)])
    a = as_float_array(name, given)
    if a.ndim == 1:
        a = a[None]
    if a.ndim != 2 or a.shape[1] != dim:
        raise InvalidInputError(f"{name} must have shape ({dim},) or (K, {dim}), got {np.shape(given)}")
    return a


def _check_motion(model: MotionModel, x, u, n_points, rng, col: _Collector, rel_h):
    n, nu = int(model.n_state), int(model.n_control)

    def draw_u():
        for scale in (0.8, 0.4, 0.2, 0.1):
            v = rng.uniform(-scale, scale, nu)
            if nu:
                v[0] = rng.uniform(0.2, 1.0)
            try:
                model.check_controls(v[None])
                return v
            except PhysimError:
                continue
        return np.zeros(nu)

    X = _points("x", x, n, n_points, lambda: rng.standard_normal(n))
    U = _points("u", u, nu, X.shape[0], draw_u)
    if U.shape[0] != X.shape[0]:
        U = np.broadcast_to(U, (X.shape[0], nu))
    has_params = hasattr(model, "parameter_vjp") and hasattr(model, "with_params") and model.param_names
    F_name, G_name = "jacobians: F = ∂f/∂x", "jacobians: G = ∂f/∂u"
    for xk, uk in zip(X, U):

        def jac(xk=xk, uk=uk):
            xn = np.asarray(model.step(xk, uk), dtype=float)
            F, G = model.jacobians(xk, uk)
            col.add(
                "step: output shape and finiteness", np.isfinite(xn).all() * np.ones(xn.shape), np.ones(n)
            )
            col.add(F_name, F, _fd(lambda v: model.step(v, uk), xk, rel_h))
            col.add(G_name, G, _fd(lambda v: model.step(xk, v), uk, rel_h))

        col.run(F_name, jac)
    # the VJP is the derivative of ⟨F̄, F⟩ + ⟨Ḡ, G⟩; when jacobians() failed its check, F and G
    # come from finite differences of step() so that a wrong Jacobian does not blame the VJP
    exact = col.passed(F_name) and col.passed(G_name)

    def jacobians(m, xv, uv):
        if exact:
            return m.jacobians(xv, uv)
        h = 10 * rel_h
        return _fd(lambda v: m.step(v, uv), xv, h), _fd(lambda v: m.step(xv, v), uv, h)

    outer_h = rel_h if exact else 100 * rel_h
    for xk, uk in zip(X, U):
        Fb, Gb = rng.standard_normal((n, n)), rng.standard_normal((n, nu))

        def pairing(xv, uv, m=model, Fb=Fb, Gb=Gb):
            F, G = jacobians(m, xv, uv)
            return np.array(np.sum(Fb * F) + np.sum(Gb * G))

        def vjp(xk=xk, uk=uk, Fb=Fb, Gb=Gb, pairing=pairing):
            xb, ub = model.jacobians_vjp(xk, uk, Fb, Gb)
            col.add("jacobians_vjp: x̄ = ∂(⟨F̄,F⟩ + ⟨Ḡ,G⟩)/∂x", xb, _fd(lambda v: pairing(v, uk), xk, outer_h))
            col.add("jacobians_vjp: ū = ∂(⟨F̄,F⟩ + ⟨Ḡ,G⟩)/∂u", ub, _fd(lambda v: pairing(xk, v), uk, outer_h))

        col.run("jacobians_vjp: x̄ = ∂(⟨F̄,F⟩ + ⟨Ḡ,G⟩)/∂x", vjp)
        if has_params:
            lam = rng.standard_normal(n)

            def params(xk=xk, uk=uk, lam=lam, Fb=Fb, Gb=Gb, pairing=pairing):
                got = model.parameter_vjp(xk, uk, lam, Fb, Gb)
                for pname, pval in model.param_dict().items():
                    v0 = np.atleast_1d(np.asarray(pval, dtype=float)).reshape(-1)

                    def phi(v, pname=pname, pval=pval):
                        m = model.with_params(**{pname: v.reshape(np.shape(pval)) if np.ndim(pval) else v[0]})
                        return np.array(float(lam @ np.asarray(m.step(xk, uk))) + pairing(xk, uk, m=m))

                    col.add(f"parameter_vjp: ∂/∂{pname}", np.atleast_1d(got[pname]).reshape(-1),
                            _fd(phi, v0, outer_h))  # fmt: skip

            col.run("parameter_vjp", params)


def _check_sensor(sensor: MeasurementModel, x, n_state, n_points, rng, col: _Collector, rel_h):
    m = int(sensor.n_meas)
    ang = np.asarray(sensor.angular, dtype=bool).reshape(-1)
    if ang.shape != (m,):
        col.fail("angular: mask of n_meas booleans", f"shape {ang.shape}, expected ({m},)")
        ang = np.zeros(m, dtype=bool)
    n = n_state if x is None else np.atleast_2d(np.asarray(x)).shape[1]
    pos = getattr(sensor, "positions", None)

    def draw():
        for _ in range(1000):
            if pos is not None:
                lo, hi = pos.min(axis=0) - 1.0, pos.max(axis=0) + 1.0
                v = rng.standard_normal(n)
                v[:2] = rng.uniform(lo, hi)
            else:
                v = rng.standard_normal(n)
            try:
                if pos is not None and np.min(np.linalg.norm(pos - v[:2], axis=1)) < 0.3:
                    continue
                sensor.check_states(v[None])
                return v
            except PhysimError:
                continue
        raise InvalidInputError("check_model could not find a state where the sensor is regular; pass x=")

    X = _points("x", x, n, n_points, draw)

    H_name = "jacobians: H = ∂h/∂x"

    def dz_fun(s, xk):
        z0 = np.asarray(s.measure(xk[None]), dtype=float)[0]

        def dz(v):  # measurement differences relative to z0, angles wrapped
            d = np.asarray(s.measure(v[None]), dtype=float)[0] - z0
            d[ang] = np.mod(d[ang] + np.pi, 2 * np.pi) - np.pi
            return d

        return dz

    for xk in X:

        def jac(xk=xk):
            H, Rd = sensor.jacobians(xk[None])
            col.add(H_name, np.asarray(H)[0], _fd(dz_fun(sensor, xk), xk, rel_h))
            col.add("jacobians: noise variances R > 0", (np.asarray(Rd)[0] > 0) * 1.0, np.ones(m))

        col.run(H_name, jac)
    # as for motion models: with a wrong H, the VJP is judged against finite-difference Jacobians
    exact = col.passed(H_name)
    outer_h = rel_h if exact else 100 * rel_h

    def jacobians(s, v):
        H, Rd = s.jacobians(v[None])
        if not exact:
            H = _fd(dz_fun(s, v), v, 10 * rel_h)[None]
        return H, Rd

    for xk in X:
        Hb, Rb = rng.standard_normal((1, m, n)), rng.standard_normal((1, m))

        def pairing(v, s=sensor, Hb=Hb, Rb=Rb):
            H, Rd = jacobians(s, v)
            return np.array(np.sum(Hb * H) + np.sum(Rb * Rd))

        def vjp(xk=xk, Hb=Hb, Rb=Rb, pairing=pairing):
            Xb, grads = sensor.jacobians_vjp(xk[None], Hb, Rb)
            col.add("jacobians_vjp: x̄ = ∂(⟨H̄,H⟩ + ⟨R̄,R⟩)/∂x", np.asarray(Xb)[0], _fd(pairing, xk, outer_h))
            if not (hasattr(sensor, "param_dict") and hasattr(sensor, "with_params")):
                if grads:
                    col.skip("jacobians_vjp: parameter gradients",
                             "not checked: the sensor has no param_dict()/with_params()")  # fmt: skip
                return
            for pname, pval in sensor.param_dict().items():
                if pname not in grads or grads[pname] is None:
                    col.fail(f"jacobians_vjp: ∂/∂{pname}", f"no gradient returned for parameter {pname!r}")
                    continue
                v0 = np.atleast_1d(np.asarray(pval, dtype=float)).reshape(-1)

                def phi(v, pname=pname, pval=pval):
                    s = sensor.with_params(**{pname: v.reshape(np.shape(pval)) if np.ndim(pval) else v[0]})
                    return pairing(xk, s=s)

                col.add(f"jacobians_vjp: ∂/∂{pname}", np.atleast_1d(np.asarray(grads[pname], dtype=float)).reshape(-1),
                        _fd(phi, v0, outer_h))  # fmt: skip

        col.run("jacobians_vjp: x̄ = ∂(⟨H̄,H⟩ + ⟨R̄,R⟩)/∂x", vjp)


def check_model(
    model: MotionModel | MeasurementModel,
    x: ArrayLike | None = None,
    u: ArrayLike | None = None,
    *,
    n_state: int = 3,
    n_points: int = 3,
    seed: int = 0,
    rtol: float = 1e-5,
    atol: float = 1e-7,
    rel_step: float = 1e-6,
) -> ModelCheck:
    """Compare a model's hand-written Jacobians and VJPs with finite differences.

    Parameters
    ----------
    model : MotionModel or MeasurementModel
        Built-in, numpy (subclass of the interfaces) or compiled model.
    x : array_like, shape (n,) or (K, n), optional
        State(s) to check at (default: ``n_points`` random states; for beacon
        sensors, positions near the beacons but at least 0.3 m from them).
    u : array_like, shape (n_u,) or (K, n_u), optional
        Control(s), motion models only (default: random, accepted by
        ``model.check_controls``).
    n_state : int
        State dimension for sensors when ``x`` is not given.
    n_points : int
        Number of random points.
    seed : int
        Seed of the random points and cotangents.
    rtol, atol : float
        Tolerances (see the module docstring).
    rel_step : float
        Finite-difference step relative to max(1, |value|).

    Returns
    -------
    ModelCheck
        ``.ok``, ``.failed`` (names of the wrong derivatives), ``.items``;
        ``print(report)`` shows a table.
    """
    rng = as_rng("seed", seed)
    col = _Collector(float(rtol), float(atol))
    if isinstance(model, MotionModel):
        _check_motion(model, x, u, int(n_points), rng, col, float(rel_step))
    elif isinstance(model, MeasurementModel):
        if u is not None:
            raise InvalidInputError("u is for motion models; a sensor is checked at states x only")
        _check_sensor(model, x, int(n_state), int(n_points), rng, col, float(rel_step))
    else:
        raise InvalidTypeError(
            f"check_model needs a physim.ekf.MotionModel or MeasurementModel, got {type(model).__name__}"
        )
    n = np.atleast_2d(np.asarray(x)).shape[0] if x is not None else int(n_points)
    name = repr(model)
    if name.startswith("<"):  # the default object repr: the class name says more
        name = type(model).__name__
    return ModelCheck(model=name, items=col.items(), n_points=n)
