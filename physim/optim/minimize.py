"""One minimisation interface for every physim inverse problem.

``minimize(fun, x0, method=...)`` with ``fun(x) -> (value, grad)`` (scipy's
``jac=True`` convention) returns a :class:`MinimizeResult` (a
:class:`scipy.optimize.OptimizeResult` with a short repr) with ``x, fun, jac,
nit, nfev, success, message``, the criterion that stopped the run
(``stop_reason``) and a per-iteration ``history``. Methods:

``"lbfgs"``
    scipy's L-BFGS-B (bounds).
``"slsqp"``
    scipy's SLSQP (bounds, equality/inequality constraints as scipy dicts
    with ``fun`` and ``jac``).
``"adam"``
    first-party Adam, full batch (``fun(x)``) or minibatches
    (``fun(x, batch_indices)`` for each batch of an epoch when ``n_samples``
    and ``batch_size`` are given; batches are reshuffled every epoch from
    ``seed`` and the epoch number, so runs are reproducible and resumable).

Stopping
--------
With the default ``tol=None`` the scipy methods stop on criteria relative to
the starting point, so that the units of the problem do not matter (an SI
lattice fit whose gradients are 1e-9 runs as long as the same fit in
millimetres): the objective is divided by ``|f(x0)|`` for the optimiser, so
L-BFGS-B stops when the projected-gradient max-norm falls below
:data:`GTOL_REL` times that of ``g(x0)``, or when an iteration reduces the
objective by less than scipy's ``ftol`` (2.2e-9) relative to
``max(|f|, |f(x0)|)``; SLSQP's ``ftol`` is likewise relative to ``|f(x0)|``.
An explicit ``tol`` is passed to scipy as its absolute ``ftol``/``gtol``.
Adam runs ``maxiter`` steps (epochs) unless ``tol`` is given (full batch:
stop when the gradient max-norm is at most ``tol``). Every result says what
stopped it: ``stop_reason`` is one of :data:`STOP_REASONS` and ``message``
spells it out with the thresholds.

Robustness
----------
* A non-finite value or gradient stops the run with ``success=False`` and a
  message saying at which evaluation and where it appeared; the best finite
  iterate is returned.
* Ctrl-C (``KeyboardInterrupt``) returns the best iterate with
  ``message="interrupted"``.
* An exception raised by ``fun``, the callback or an SLSQP constraint (e.g. a
  :class:`~physim.errors.ConvergenceError` of a solver at an extreme
  parameter) stops the run the same way: the best iterate, ``success=False``,
  the error in ``message`` and the exception itself in ``exception``. Only an
  exception before anything was evaluated (nothing to keep) propagates.
* A ``callback(intermediate_result)`` raising ``StopIteration`` stops the run.
* ``checkpoint=path`` writes the state atomically (temporary file + rename)
  every ``checkpoint_every`` iterations and whenever the run stops;
  ``resume=path`` continues from it and produces exactly the iterates of an
  uninterrupted run, wherever the run was interrupted (Ctrl-C in the middle
  of a minibatch epoch included; after ``kill -9``, from the last
  checkpoint). For Adam the checkpoint holds the moment estimates and the
  position inside the epoch; for the scipy methods, whose internal state is
  not exposed, it holds the log of evaluations, which is replayed (without
  calling ``fun``) to rebuild the optimiser's state exactly. That log holds
  one value and one gradient per evaluation, so such a checkpoint grows as
  ``nfev * n`` floats. A malformed or foreign checkpoint raises
  :class:`~physim.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import scipy.optimize as so
from numpy.typing import ArrayLike

from .._result import short_repr
from .._validate import as_bool, as_float_array, as_int, as_scalar, check_memory
from ..errors import CheckpointError, InvalidInputError, InvalidTypeError, NonFiniteError, ShapeError
from ._checkpoint import VERSION, digest, read_checkpoint, write_checkpoint

__all__ = ["minimize", "METHODS", "MinimizeResult", "GTOL_REL", "STOP_REASONS"]

METHODS = ("lbfgs", "slsqp", "adam")

#: default (``tol=None``) L-BFGS-B gradient criterion, relative to the max-norm of g(x0)
GTOL_REL = 1e-5

#: what ``MinimizeResult.stop_reason`` can say
STOP_REASONS = {
    "gtol": "the (projected) gradient became small enough",
    "ftol": "the objective stopped decreasing (relative reduction below ftol)",
    "maxiter": "the iteration limit was reached",
    "maxfun": "the evaluation limit was reached",
    "line_search": "the line search could not make progress (scipy: ABNORMAL)",
    "failed": "the scipy method reported another failure (see message)",
    "callback": "the callback raised StopIteration",
    "interrupted": "Ctrl-C (KeyboardInterrupt)",
    "nonfinite": "the objective returned a non-finite value or gradient",
    "exception": "the objective, callback or a constraint raised an exception",
}


class MinimizeResult(so.OptimizeResult):
    """:class:`scipy.optimize.OptimizeResult` of :func:`minimize`, with a short repr.

    Keys: ``x, fun, jac, nit, nfev, success, message, stop_reason, history,
    best_x, best_fun, wall_time, exception`` (see :func:`minimize`).
    """

    _FIRST = ("success", "stop_reason", "message", "fun", "x", "nit", "nfev", "best_fun", "exception")

    def __repr__(self) -> str:
        keys = [k for k in self._FIRST if k in self] + sorted(k for k in self if k not in self._FIRST)
        return short_repr(type(self).__name__, [(k, self[k]) for k in keys])

    __str__ = __repr__


class _NonFinite(Exception):
    pass


class _Stop(Exception):
    pass


class _UserError(Exception):
    """An exception raised by user code (``where``), carried out of scipy."""

    def __init__(self, where: str, exc: BaseException):
        super().__init__(where)
        self.where = where
        self.exc = exc


def _value_and_grad(out, n: int) -> tuple[float, np.ndarray]:
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise InvalidInputError(
            "fun must return a pair (value, gradient) (scipy's jac=True convention), "
            f"got {type(out).__name__}"
        )
    f, g = out
    fa = np.asarray(f) if not isinstance(f, (str, bytes)) else np.asarray(None)
    if fa.dtype.kind not in "biuf" or fa.size != 1:
        raise InvalidInputError(f"fun returned a non-scalar or non-real value {f!r:.80}")
    f = float(fa.reshape(-1)[0])
    try:
        ga = np.asarray(g)
    except Exception:
        raise InvalidInputError("fun returned a gradient that is not an array") from None
    if ga.dtype.kind not in "biuf":
        raise InvalidInputError(f"fun returned a gradient of dtype {ga.dtype}, not a real array")
    if ga.size != n:
        raise ShapeError(f"fun returned a gradient of shape {ga.shape}, expected ({n},)")
    return f, ga.astype(np.float64).reshape(-1)


class _Objective:
    """Wraps ``fun``: validates outputs, counts evaluations, tracks the best
    iterate, and logs or replays evaluations for exact checkpoint/resume.

    State that a checkpoint reads (``best``, ``log``) is replaced or appended
    in one step, so an interrupt at any point leaves it consistent.
    """

    def __init__(self, fun, n, args, log_evals: bool, track_best: bool = True):
        self.fun = fun
        self.track_best = track_best
        self.n = n
        self.args = args
        self.nfev = 0
        self.best: tuple[float, np.ndarray, np.ndarray] | None = None
        self.log_evals = log_evals
        self.log: list[tuple[float, np.ndarray, str]] = []
        self.replay: list[tuple[float, np.ndarray, str]] | None = None
        self.replayed = 0
        self.recent: OrderedDict[str, tuple[float, np.ndarray]] = OrderedDict()

    @property
    def best_f(self) -> float:
        return np.inf if self.best is None else self.best[0]

    @property
    def replaying(self) -> bool:
        return self.replay is not None and self.replayed < len(self.replay)

    def __call__(self, x, *extra):
        x = np.array(x, dtype=np.float64, copy=True)
        h = digest(x) if (self.log_evals or self.replay is not None) else None
        if self.replaying:
            f, g, hr = self.replay[self.replayed]
            if hr == h:
                self.replayed += 1
                self.nfev += 1
                g = np.array(g, dtype=np.float64)
                self._record(x, float(f), g, h)
                return float(f), g.copy()
            # the optimiser diverged from the recorded path: evaluate live from here on
            self.replay = None
        try:
            out = self.fun(x.copy(), *extra, *self.args)
        except Exception as exc:
            raise _UserError("the objective", exc) from exc
        f, g = _value_and_grad(out, self.n)
        self.nfev += 1
        if not np.isfinite(f):
            raise _NonFinite(f"non-finite objective value {f} at evaluation {self.nfev}")
        bad = ~np.isfinite(g)
        if bad.any():
            idx = np.nonzero(bad)[0]
            raise _NonFinite(
                f"non-finite gradient at evaluation {self.nfev}: {idx.size} entries, "
                f"first at index {int(idx[0])} ({g[idx[0]]})"
            )
        self._record(x, f, g, h)
        return f, g.copy()

    def _record(self, x, f, g, h):
        if self.log_evals:
            self.log.append((f, g.copy(), h))
        if self.track_best and (self.best is None or f < self.best[0]):
            self.best = (f, x.copy(), g.copy())
        self.recent[h or digest(x)] = (f, g)
        while len(self.recent) > 8:
            self.recent.popitem(last=False)

    def lookup(self, x):
        hit = self.recent.get(digest(np.asarray(x, dtype=np.float64)))
        return None if hit is None else (hit[0], hit[1].copy())


def _progress_bar(progress, total, desc):
    from .._progress import enabled, progress_bar

    if not enabled(progress):
        return None
    return progress_bar(total, desc)


def _bound_value(v, name: str, fill: float) -> float:
    if v is None:
        return fill
    if isinstance(v, (bool, np.bool_, str, bytes)) or np.ndim(v) != 0:
        raise InvalidTypeError(f"{name} must be a number or None, got {v!r:.60}")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise InvalidTypeError(f"{name} must be a number or None, got {v!r:.60}") from None
    if np.isnan(x):
        raise NonFiniteError(f"{name} is NaN; use None or ±inf for an unbounded side")
    return x


def _normalise_bounds(bounds, n):
    """``(lower, upper)`` float arrays (n,) from scipy Bounds or (lower, upper) pairs, validated."""
    if bounds is None:
        return None
    if isinstance(bounds, so.Bounds):
        sides = []
        for name, b, fill in (("bounds.lb", bounds.lb, -np.inf), ("bounds.ub", bounds.ub, np.inf)):
            a = np.asarray(b)
            if a.dtype == object:
                a = np.array([fill if v is None else v for v in a.ravel()]).reshape(a.shape)
            a = as_float_array(name, a, finite=False)
            try:
                a = np.broadcast_to(a, (n,)).copy()
            except ValueError:
                raise ShapeError(f"{name} has shape {a.shape}, not broadcastable to ({n},)") from None
            if np.isnan(a).any():
                i = int(np.argmax(np.isnan(a)))
                raise NonFiniteError(f"{name}[{i}] is NaN; use ±inf for an unbounded side")
            sides.append(a)
        lo, hi = sides
    else:
        try:
            b = np.asarray(bounds, dtype=object)
        except Exception:
            raise InvalidTypeError(
                "bounds must be a sequence of (lower, upper) pairs or scipy Bounds"
            ) from None
        if b.shape == (2,) and n != 2 and np.ndim(bounds[0]) == 0:
            b = np.array([list(bounds)] * n, dtype=object)
        if b.shape != (n, 2):
            raise ShapeError(
                f"bounds must be a sequence of {n} (lower, upper) pairs or scipy Bounds, got shape {b.shape}"
            )
        lo = np.array([_bound_value(v, f"bounds[{i}] lower", -np.inf) for i, v in enumerate(b[:, 0])])
        hi = np.array([_bound_value(v, f"bounds[{i}] upper", np.inf) for i, v in enumerate(b[:, 1])])
    if np.any(lo > hi):
        i = int(np.argmax(lo > hi))
        raise InvalidInputError(f"bounds[{i}] has lower {lo[i]} > upper {hi[i]}")
    empty = (lo == np.inf) | (hi == -np.inf)
    if empty.any():
        i = int(np.argmax(empty))
        raise InvalidInputError(f"bounds[{i}] = ({lo[i]}, {hi[i]}) admits no finite value")
    return lo, hi


def _check_constraints(constraints, method):
    if isinstance(constraints, dict):
        constraints = (constraints,)
    try:
        constraints = tuple(constraints)
    except TypeError:
        raise InvalidTypeError("constraints must be a dict or a sequence of dicts") from None
    if constraints and method != "slsqp":
        raise InvalidInputError(f"constraints are supported by method='slsqp' only, not {method!r}")
    for i, c in enumerate(constraints):
        if not isinstance(c, dict):
            raise InvalidTypeError(f"constraints[{i}] must be a dict, got {type(c).__name__}")
        if c.get("type") not in ("eq", "ineq"):
            raise InvalidInputError(f"constraints[{i}]['type'] must be 'eq' or 'ineq', got {c.get('type')!r}")
        for key in ("fun", "jac"):
            if key in c and not callable(c[key]):
                raise InvalidTypeError(f"constraints[{i}][{key!r}] must be callable")
        if "fun" not in c:
            raise InvalidInputError(f"constraints[{i}] has no 'fun'")
    return constraints


def _guard_constraints(constraints):
    """The constraint dicts with ``fun``/``jac`` whose exceptions stop the run like the objective's."""

    def guard(f, where):
        def g(x, *a):
            try:
                return f(x, *a)
            except Exception as exc:
                raise _UserError(where, exc) from exc

        return g

    out = []
    for i, c in enumerate(constraints):
        c = dict(c)
        for key in ("fun", "jac"):
            if key in c:
                c[key] = guard(c[key], f"constraints[{i}][{key!r}]")
        out.append(c)
    return tuple(out)


def minimize(
    fun: Callable,
    x0: ArrayLike,
    *,
    method: str = "lbfgs",
    bounds: Sequence[tuple[float | None, float | None]] | tuple[float | None, float | None] | so.Bounds | None = None,
    constraints: Sequence[dict] | dict = (),
    maxiter: int = 100,
    tol: float | None = None,
    callback: Callable | None = None,
    progress: bool | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    resume: str | os.PathLike | None = None,
    args: tuple = (),
    lr: float = 1e-2,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    epochs: int | None = None,
    n_samples: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    lr_schedule: str | Callable[[int, int], float] | None = None,
    options: dict | None = None,
) -> MinimizeResult:
    """Minimise ``fun`` from ``x0``.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> (value, grad)`` with ``x`` float64 (n,), ``value`` a
        float and ``grad`` (n,). With Adam minibatches: ``fun(x, batch, *args)``
        where ``batch`` is an int64 array of sample indices.
    x0 : array_like, shape (n,)
        Starting point (flattened), finite; clipped into ``bounds``.
    method : {"lbfgs", "slsqp", "adam"}
    bounds : sequence of (lower, upper) or scipy.optimize.Bounds, optional
        Box constraints (``None`` or ±inf = unbounded side; NaN is an error).
        Adam projects onto them.
    constraints : dict or sequence of dict
        SLSQP only: scipy dicts ``{"type": "eq"|"ineq", "fun": c, "jac": dc}``.
    maxiter : int
        Maximum iterations, >= 0 (Adam: steps in full-batch mode, epochs in
        minibatch mode unless ``epochs`` is given).
    tol : float, optional
        ``None`` (default): scale-invariant criteria relative to ``x0`` (see
        the module docstring). A number: scipy's absolute ``ftol``/``gtol``;
        Adam (full batch) stops when the gradient's max-norm is at most ``tol``.
    callback : callable, optional
        ``callback(intermediate_result)`` with an ``OptimizeResult`` holding
        ``x, fun, jac, nit``; raise ``StopIteration`` to stop.
    progress : bool, optional
        Show a progress bar (iterations, current and best value). None (the
        default): only inside scenario scripts and the ``physim`` command
        (never with ``-q``). Written to a pipe or a file, the bar is updated
        only a few times.
    checkpoint : path, optional
        Write a checkpoint (``.npz``) atomically every ``checkpoint_every``
        iterations and when the run stops.
    checkpoint_every : int
        Iterations between checkpoints, >= 1.
    resume : path, optional
        Continue from a checkpoint written by the same call (same ``fun``,
        ``x0``, method and options); the iterates equal those of an
        uninterrupted run.
    args : tuple
        Extra positional arguments for ``fun``.
    lr, betas, eps : Adam hyper-parameters
        Step size (> 0), moment decay rates (a pair in [0, 1)) and the
        denominator guard (> 0).
    epochs, n_samples, batch_size : int, optional
        Adam minibatching (each >= 1).
    seed : int
        Seed (>= 0) of the Adam batch shuffling.
    lr_schedule : {None, "constant", "cosine"} or callable, optional
        Adam step-size schedule: the step size of update ``t`` (0-based) out of
        ``T`` (steps of the whole run: epochs times batches per epoch) is
        ``lr * factor(t, T)``; ``"cosine"`` is ``0.5 (1 + cos(pi t / T))``
        (Loshchilov & Hutter 2017, without restarts), a callable gives the
        factor itself. A checkpointed run resumes on the same schedule.
    options : dict, optional
        Extra scipy options.

    Returns
    -------
    MinimizeResult
        ``x, fun, jac, nit, nfev, success, message``, ``stop_reason`` (a key
        of :data:`STOP_REASONS`), ``history`` (list of dicts with ``nit, fun,
        gnorm, time`` per iteration — per epoch for minibatch Adam, where
        ``fun`` is the mean batch loss), ``best_x`` and ``best_fun`` (best
        finite evaluation seen), ``wall_time`` (s) and ``exception`` (the
        exception that stopped the run, else None).

    Raises
    ------
    InvalidInputError, InvalidTypeError, ShapeError, NonFiniteError
        Bad arguments (named in the message), or ``fun`` returning something
        other than a (value, gradient) pair of the right shape.
    CheckpointError
        ``resume`` names an unusable checkpoint or one of another problem.
    """
    if not callable(fun):
        raise InvalidTypeError(f"fun must be callable, got {type(fun).__name__}")
    if not isinstance(method, str) or method not in METHODS:
        raise InvalidInputError(f"method must be one of {METHODS}, got {method!r}")
    x0 = as_float_array("x0", x0).ravel().copy()
    n = x0.size
    if n == 0:
        raise ShapeError("x0 must have at least one entry")
    maxiter = as_int("maxiter", maxiter, lower=0)
    checkpoint_every = as_int("checkpoint_every", checkpoint_every, lower=1)
    tol = None if tol is None else as_scalar("tol", tol, nonnegative=True)
    if callback is not None and not callable(callback):
        raise InvalidTypeError(f"callback must be callable, got {type(callback).__name__}")
    progress = None if progress is None else as_bool("progress", progress)
    if not isinstance(args, tuple):
        raise InvalidTypeError(f"args must be a tuple, got {type(args).__name__}")
    if options is not None and not isinstance(options, dict):
        raise InvalidTypeError(f"options must be a dict, got {type(options).__name__}")
    constraints = _check_constraints(constraints, method)
    bnds = _normalise_bounds(bounds, n)
    for name, p in (("checkpoint", checkpoint), ("resume", resume)):
        if p is not None and not isinstance(p, (str, os.PathLike)):
            raise InvalidTypeError(f"{name} must be a path, got {type(p).__name__}")
    ckpt = Path(checkpoint) if checkpoint is not None else None
    state = arrays = None
    if resume is not None:
        state, arrays = read_checkpoint(resume, method=method, n=n, x0=x0)
    x0_digest = digest(x0)
    if bnds is not None:
        x0 = np.clip(x0, bnds[0], bnds[1])
    run = _Run(
        fun=fun,
        x0=x0,
        x0_digest=x0_digest,
        method=method,
        bounds=bnds,
        maxiter=maxiter,
        tol=tol,
        callback=callback,
        progress=progress,
        checkpoint=ckpt,
        every=checkpoint_every,
        state=state,
        arrays=arrays,
        args=args,
    )
    schedule = _schedule(lr_schedule)
    if method == "adam":
        return _adam(run, lr, betas, eps, epochs, n_samples, batch_size, seed, schedule)
    if schedule is not None:
        raise InvalidInputError(f"lr_schedule applies to method='adam' only, not {method!r}")
    return _scipy(run, constraints, options)


class _Run:
    """Settings of one ``minimize`` call and the bookkeeping every method shares:
    history, progress bar, periodic checkpoints, the user callback and the result."""

    def __init__(
        self,
        *,
        fun,
        x0,
        x0_digest,
        method,
        bounds,
        maxiter,
        tol,
        callback,
        progress,
        checkpoint,
        every,
        state,
        arrays,
        args,
    ):
        self.fun, self.x0, self.x0_digest, self.method, self.bounds = fun, x0, x0_digest, method, bounds
        self.maxiter, self.tol, self.callback = maxiter, tol, callback
        self.progress, self.checkpoint, self.every = progress, checkpoint, every
        self.state, self.arrays, self.args = state, arrays, args
        self.history: list[dict] = list(state["history"]) if state is not None else []
        self.t0 = time.perf_counter()
        self.bar = None
        self.save = lambda: None  # set by each method: writes its checkpoint

    def open_bar(self, total: int) -> None:
        self.bar = _progress_bar(self.progress, total, self.method)
        if self.bar is not None and self.history:
            self.bar.update(len(self.history))

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def checkpoint_state(self, **extra) -> dict:
        return {
            "version": VERSION,
            "method": self.method,
            "n": self.x0.size,
            "x0_digest": self.x0_digest,
            "history": list(self.history),
            **extra,
        }

    def record(self, k: int, f: float, gnorm: float, best: float) -> None:
        """Append the history entry of iteration ``k`` (once) and update the progress bar."""
        if len(self.history) >= k:  # already recorded before an interruption
            return
        self.history.append(
            {"nit": k, "fun": float(f), "gnorm": float(gnorm), "time": time.perf_counter() - self.t0}
        )
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{f:.6g}", best=f"{best:.6g}", refresh=False)

    def after(self, k: int, x, f: float, g) -> None:
        """Checkpoint (every ``every`` iterations) and call the callback after iteration ``k``.

        Raises ``_Stop`` when the callback asks to stop, ``_UserError`` when it fails.
        """
        if self.checkpoint is not None and k % self.every == 0:
            self.save()
        if self.callback is not None:
            try:
                self.callback(so.OptimizeResult(x=np.array(x), fun=float(f), jac=np.array(g), nit=k))
            except StopIteration:
                raise _Stop from None
            except Exception as exc:
                raise _UserError("the callback", exc) from exc

    def iteration(self, k: int, x, f: float, g, gnorm: float, best: float) -> None:
        self.record(k, f, gnorm, best)
        self.after(k, x, f, g)

    def result(self, obj: _Objective, x, f, g, nit, success, message, reason, exception=None):
        best = obj.best
        return MinimizeResult(
            x=np.asarray(x, dtype=float).copy(),
            fun=float(f),
            jac=None if g is None else np.asarray(g, dtype=float).copy(),
            nit=int(nit),
            nfev=int(obj.nfev),
            success=bool(success),
            message=str(message),
            stop_reason=reason,
            history=list(self.history[: int(nit)]),
            best_x=None if best is None else best[1].copy(),
            best_fun=float(obj.best_f),
            wall_time=time.perf_counter() - self.t0,
            exception=exception,
        )

    def stopped(self, obj: _Objective, nit: int, message: str, reason: str, exception=None):
        """Result for a run that stopped early: the best finite iterate (or x0); checkpointed."""
        self.save()
        best = obj.best
        if best is not None:
            return self.result(obj, best[1], best[0], best[2], nit, False, message, reason, exception)
        if reason == "nonfinite":
            # nothing finite to return: the objective was not finite from the start
            raise NonFiniteError(
                f"minimize: {message.removeprefix('stopped: ').split('; returning')[0]} "
                "before any finite iterate (x0 and every later point)"
            )
        return self.result(obj, self.x0, np.nan, None, nit, False, message, reason, exception)

    def failed(self, obj: _Objective, nit: int, err: _UserError):
        """Result for a run stopped by an exception of user code; re-raises it if there is
        nothing to keep (call outside the ``except`` block, so the traceback stays the user's)."""
        exc = err.exc
        if obj.best is None and obj.nfev == 0 and self.state is None:
            raise exc
        msg = f"stopped: {err.where} raised {type(exc).__name__}: {exc}; returning the best finite iterate"
        return self.stopped(obj, nit, msg, "exception", exc)


def _nonfinite_message(exc: Exception) -> str:
    return f"stopped: {exc}; returning the best finite iterate"


def _scipy_reason(method: str, r, crit: dict) -> tuple[str, str]:
    """``(stop_reason, message)`` from a scipy result and the thresholds used."""
    msg = str(r.message)
    up = msg.upper()
    if method == "lbfgs":
        if "PROJECTED GRADIENT" in up:
            reason = "gtol"
        elif "REDUCTION OF F" in up:
            reason = "ftol"
        elif "ITERATIONS" in up:
            reason = "maxiter"
        elif "EVALUATIONS" in up:
            reason = "maxfun"
        elif "ABNORMAL" in up:
            reason = "line_search"
        else:
            reason = "failed"
    else:
        reason = {0: "ftol", 9: "maxiter"}.get(int(getattr(r, "status", -1)), "failed")
    detail = crit.get(reason)
    return reason, (f"{detail} ({msg})" if detail else msg)


def _scipy(run: _Run, constraints, options):
    n = run.x0.size
    obj = _Objective(run.fun, n, run.args, log_evals=run.checkpoint is not None)
    if run.state is not None:
        lf, lg, lh = run.arrays["log_f"], run.arrays["log_g"], run.state["log_h"]
        obj.replay = [(float(lf[i]), lg[i], lh[i]) for i in range(len(lh))]
    done_iters = len(run.history)
    it = {"nit": 0}
    scale = {"f": 1.0}

    def save():
        log = list(obj.log)
        best = obj.best
        st = run.checkpoint_state(log_h=[h for _, _, h in log], nit=it["nit"])
        write_checkpoint(
            run.checkpoint,
            st,
            {
                "log_f": np.array([f for f, _, _ in log], dtype=float),
                "log_g": np.array([g for _, g, _ in log], dtype=float).reshape(len(log), n),
                "x": best[1] if best is not None else run.x0,
            },
        )

    if run.checkpoint is not None:
        run.save = save

    def sfun(x):
        hit = obj.lookup(x)
        f, g = hit if hit is not None else obj(x)
        return f / scale["f"], g / scale["f"]

    def cb(xk, *_):
        it["nit"] += 1
        k = it["nit"]
        if k <= done_iters:  # replaying iterations already recorded
            return
        found = obj.lookup(xk)
        f, g = found if found is not None else obj(xk)
        run.iteration(k, xk, f, g, float(np.linalg.norm(g)), obj.best_f)

    opts = {"maxiter": run.maxiter}
    crit = {
        "maxiter": f"stopped: iteration limit maxiter={run.maxiter} reached",
        "maxfun": "stopped: evaluation limit reached",
    }
    smethod = "L-BFGS-B" if run.method == "lbfgs" else "SLSQP"
    if run.tol is not None:
        opts["ftol"] = run.tol
        if run.method == "lbfgs":
            opts["gtol"] = run.tol
        crit["gtol"] = f"converged: projected-gradient max-norm <= tol={run.tol:.3g}"
        crit["ftol"] = f"converged: objective change below tol={run.tol:.3g}"
    opts.update(options or {})
    sb = None
    if run.bounds is not None:
        lo, hi = run.bounds
        if run.method == "slsqp":
            # SLSQP rejects infinite bounds in some scipy versions: pass None there
            sb = [(a if np.isfinite(a) else None, b if np.isfinite(b) else None) for a, b in zip(lo, hi)]
        else:
            sb = so.Bounds(lo, hi)
    kw = {"constraints": _guard_constraints(constraints)} if run.method == "slsqp" else {}
    run.open_bar(run.maxiter)
    user_error = None
    try:
        if run.tol is None:
            # scale-invariant defaults: the optimiser sees f / |f(x0)|
            f0, g0 = obj(run.x0)
            sf = abs(f0) if f0 != 0.0 else 1.0
            scale["f"] = sf
            g0n = float(np.max(np.abs(g0)))
            ftol = float(
                (options or {}).get("ftol", 2.220446049250313e-09 if run.method == "lbfgs" else 1e-6)
            )
            if run.method == "lbfgs":
                opts.setdefault("gtol", GTOL_REL * g0n / sf)
                crit["gtol"] = (
                    f"converged: projected-gradient max-norm <= {opts['gtol'] * sf:.3g} "
                    f"= {GTOL_REL:g} x the initial max-norm {g0n:.3g}"
                )
                crit["ftol"] = (
                    f"converged: objective reduction below {ftol:.3g} x max(|f|, |f(x0)| = {sf:.3g}) "
                    "in one iteration"
                )
            else:
                crit["ftol"] = f"converged: objective change below {ftol:.3g} x |f(x0)| = {ftol * sf:.3g}"
        r = so.minimize(sfun, run.x0, jac=True, method=smethod, bounds=sb, callback=cb, options=opts, **kw)
        x = r.x
        found = obj.lookup(x)
        if found is not None:
            f, g = found
        else:
            f = float(r.fun) * scale["f"]
            jac = getattr(r, "jac", None)
            g = None if jac is None else np.asarray(jac, dtype=float) * scale["f"]
        reason, message = _scipy_reason(run.method, r, crit)
        result = run.result(obj, x, f, g, it["nit"], r.success, message, reason)
    except _NonFinite as exc:
        result = run.stopped(obj, it["nit"], _nonfinite_message(exc), "nonfinite")
    except KeyboardInterrupt:
        result = run.stopped(obj, it["nit"], "interrupted", "interrupted")
    except _Stop:
        result = run.stopped(obj, it["nit"], "stopped by callback", "callback")
    except _UserError as err:
        user_error = err
    finally:
        run.close_bar()
    if user_error is not None:
        return run.failed(obj, it["nit"], user_error)
    run.save()
    return result


class _AdamState(NamedTuple):
    """Everything an Adam run needs to continue exactly; replaced as a whole after each batch."""

    x: np.ndarray
    m: np.ndarray
    v: np.ndarray
    step: int  # Adam steps taken
    done: int  # epochs (full-batch: steps) completed
    pos: int  # batches completed in the current epoch
    losses: tuple  # their losses
    gnorm: float  # largest batch-gradient norm of the current epoch
    g: np.ndarray | None  # last gradient


def _adam_params(lr, betas, eps):
    lr = as_scalar("lr", lr, positive=True)
    if isinstance(betas, (str, bytes)) or np.ndim(betas) != 1 or len(betas) != 2:
        raise InvalidInputError(f"betas must be a pair (beta1, beta2), got {betas!r:.60}")
    b1, b2 = as_scalar("betas[0]", betas[0]), as_scalar("betas[1]", betas[1])
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise InvalidInputError(f"betas must lie in [0, 1), got {tuple(betas)}")
    eps = as_scalar("eps", eps, positive=True)
    return lr, b1, b2, eps


def _cosine(t: int, total: int) -> float:
    return 0.5 * (1.0 + np.cos(np.pi * t / max(total, 1)))


def _schedule(lr_schedule):
    """The step-size factor ``factor(t, T)`` for an ``lr_schedule`` argument (None: constant)."""
    if lr_schedule is None or (isinstance(lr_schedule, str) and lr_schedule == "constant"):
        return None
    if isinstance(lr_schedule, str) and lr_schedule == "cosine":
        return _cosine
    if callable(lr_schedule):
        return lr_schedule
    raise InvalidInputError(
        f"lr_schedule must be None, 'constant', 'cosine' or a callable factor(t, T), got {lr_schedule!r:.60}"
    )


def _adam(run: _Run, lr, betas, eps, epochs, n_samples, batch_size, seed, schedule=None):
    n = run.x0.size
    lr, b1, b2, eps = _adam_params(lr, betas, eps)
    seed = as_int("seed", seed, lower=0)
    minibatch = n_samples is not None or batch_size is not None
    if minibatch:
        if n_samples is None or batch_size is None:
            raise InvalidInputError("Adam minibatches need both n_samples and batch_size")
        n_samples = as_int("n_samples", n_samples, lower=1)
        batch_size = as_int("batch_size", batch_size, lower=1)
        check_memory(f"n_samples={n_samples}", 16.0 * n_samples)
    if epochs is not None:
        epochs = as_int("epochs", epochs, lower=0)
    total = epochs if (minibatch and epochs is not None) else run.maxiter
    n_batches = -(-n_samples // batch_size) if minibatch else 1
    total_steps = total * n_batches
    obj = _Objective(run.fun, n, run.args, log_evals=False, track_best=not minibatch)
    S = _AdamState(run.x0.copy(), np.zeros(n), np.zeros(n), 0, 0, 0, (), 0.0, None)
    if run.state is not None:
        a, st = run.arrays, run.state
        S = _AdamState(
            a["x"].copy(), a["m"].copy(), a["v"].copy(), int(st["step"]), int(st["done"]),
            int(st["pos"]), tuple(float(v) for v in st["losses"]), float(st["gnorm"]),
            None if "best_g" not in a else a["best_g"].copy(),
        )  # fmt: skip
        if S.pos > n_batches:
            raise CheckpointError(
                f"cannot resume: the checkpoint is {S.pos} batches into an epoch, but this run has "
                f"{n_batches} batches per epoch (n_samples or batch_size differ)"
            )
        if "best_x" in a:
            obj.best = (float(st["best_f"]), a["best_x"].copy(), a["best_g"].copy())
        obj.nfev = int(st.get("nfev", 0))
        del run.history[S.done :]  # an entry recorded just before an interruption is redone
    lo, hi = run.bounds if run.bounds is not None else (None, None)
    cur = {"S": S}

    def save():
        s = cur["S"]
        best = obj.best
        arr = {"x": s.x, "m": s.m, "v": s.v}
        if best is not None:
            arr.update(best_x=best[1], best_g=best[2])
        st = run.checkpoint_state(
            step=s.step, done=s.done, pos=s.pos, losses=list(s.losses), gnorm=s.gnorm,
            best_f=float(obj.best_f), nfev=obj.nfev,
        )  # fmt: skip
        st["history"] = st["history"][: s.done]
        write_checkpoint(run.checkpoint, st, arr)

    if run.checkpoint is not None:
        run.save = save

    def advance(s: _AdamState, f: float, g: np.ndarray) -> _AdamState:
        step = s.step + 1
        m = b1 * s.m + (1 - b1) * g
        v = b2 * s.v + (1 - b2) * g * g
        mhat = m / (1 - b1**step)
        vhat = v / (1 - b2**step)
        a = lr
        if schedule is not None:
            a = lr * float(schedule(step - 1, total_steps))
            if not np.isfinite(a) or a < 0:
                raise InvalidInputError(f"lr_schedule gave step size {a} at step {step - 1}")
        x = s.x - a * mhat / (np.sqrt(vhat) + eps)
        if lo is not None:
            x = np.clip(x, lo, hi)
        gn = max(s.gnorm, float(np.linalg.norm(g)))
        return _AdamState(x, m, v, step, s.done, s.pos + 1, s.losses + (f,), gn, g)

    f = g = None
    success, message, reason = True, "maximum number of iterations reached", "maxiter"
    user_error = None
    run.open_bar(total)
    try:
        while cur["S"].done < total:
            s = cur["S"]
            if minibatch:
                perm = np.random.default_rng([seed, s.done]).permutation(n_samples).astype(np.int64)
            converged = False
            while cur["S"].pos < n_batches:
                s = cur["S"]
                if minibatch:
                    lo_b = s.pos * batch_size
                    f, g = obj(s.x, perm[lo_b : lo_b + batch_size])
                else:
                    f, g = obj(s.x)
                    if run.tol is not None and float(np.max(np.abs(g))) <= run.tol:
                        message = f"converged: gradient max-norm {np.max(np.abs(g)):.3g} <= tol={run.tol:.3g}"
                        reason = "gtol"
                        converged = True
                        break
                cur["S"] = advance(s, f, g)
            if converged:
                break
            s = cur["S"]
            f = float(np.mean(s.losses)) if minibatch else float(s.losses[0])
            g = s.g
            if minibatch and (obj.best is None or f <= obj.best[0]):
                # the epoch's result is the end-of-epoch iterate, ranked by its mean batch loss
                obj.best = (f, s.x.copy(), g.copy())
            run.record(s.done + 1, f, s.gnorm, obj.best_f)
            cur["S"] = s._replace(done=s.done + 1, pos=0, losses=(), gnorm=0.0)
            run.after(s.done + 1, cur["S"].x, f, g)
        s = cur["S"]
        if f is None and s.step == 0:
            # no step was asked for (maxiter=0 or epochs=0): report the objective at x0
            if minibatch:
                idx = np.arange(n_samples, dtype=np.int64)
                fg = [obj(s.x, idx[i : i + batch_size]) for i in range(0, n_samples, batch_size)]
                f, g = float(np.mean([v for v, _ in fg])), np.mean([w for _, w in fg], axis=0)
                obj.best = (f, s.x.copy(), g.copy())
            else:
                f, g = obj(s.x)
        elif not minibatch and s.step > 0 and reason != "gtol":
            # report value and gradient at the returned iterate, not at the one before the last step
            f, g = obj(s.x)
    except _NonFinite as exc:
        return run.stopped(obj, cur["S"].done, _nonfinite_message(exc), "nonfinite")
    except KeyboardInterrupt:
        return run.stopped(obj, cur["S"].done, "interrupted", "interrupted")
    except _UserError as err:
        user_error = err
    except _Stop:
        success, message, reason = False, "stopped by callback", "callback"
        if not minibatch:
            try:
                f, g = obj(cur["S"].x)  # value and gradient at the returned iterate
            except _NonFinite as exc:
                return run.stopped(obj, cur["S"].done, _nonfinite_message(exc), "nonfinite")
            except _UserError as err:
                user_error = err
    finally:
        run.close_bar()
    if user_error is not None:
        return run.failed(obj, cur["S"].done, user_error)
    run.save()
    if f is None:
        f = np.nan
    return run.result(obj, cur["S"].x, f, g, cur["S"].done, success, message, reason)
