"""One minimisation interface for every physim inverse problem.

``minimize(fun, x0, method=...)`` with ``fun(x) -> (value, grad)`` (scipy's
``jac=True`` convention) returns a :class:`scipy.optimize.OptimizeResult`
with ``x, fun, jac, nit, nfev, success, message`` and a per-iteration
``history``. Methods:

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

Robustness
----------
* A non-finite value or gradient stops the run with ``success=False`` and a
  message saying at which evaluation and where it appeared; the best finite
  iterate is returned.
* Ctrl-C (``KeyboardInterrupt``) returns the best iterate with
  ``message="interrupted"``.
* A ``callback(intermediate_result)`` raising ``StopIteration`` stops the run.
* ``checkpoint=path`` writes the state atomically (temporary file + rename)
  every ``checkpoint_every`` iterations; ``resume=path`` continues from it and
  produces exactly the iterates of an uninterrupted run. For Adam the
  checkpoint holds the moment estimates; for the scipy methods, whose internal
  state is not exposed, it holds the log of evaluations, which is replayed
  (without calling ``fun``) to rebuild the optimiser's state exactly.
  That log holds one value and one gradient per evaluation, so such a
  checkpoint grows as ``nfev * n`` floats.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import scipy.optimize as so

from .._validate import as_float_array, as_scalar
from ..errors import InvalidInputError, ShapeError

__all__ = ["minimize", "METHODS"]

METHODS = ("lbfgs", "slsqp", "adam")

_CHECKPOINT_VERSION = 1


class _NonFinite(Exception):
    pass


class _Stop(Exception):
    pass


def _digest(x: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(x, dtype=np.float64).tobytes()).hexdigest()


class _Objective:
    """Wraps ``fun``: validates outputs, counts evaluations, tracks the best
    iterate, and logs or replays evaluations for exact checkpoint/resume."""

    def __init__(self, fun, n, args, log_evals: bool, track_best: bool = True):
        self.fun = fun
        self.track_best = track_best
        self.n = n
        self.args = args
        self.nfev = 0
        self.best_f = np.inf
        self.best_x = None
        self.best_g = None
        self.log_evals = log_evals
        self.log_f: list[float] = []
        self.log_g: list[np.ndarray] = []
        self.log_h: list[str] = []
        self.replay: tuple[np.ndarray, np.ndarray, list[str]] | None = None
        self.replayed = 0
        self.last: dict[str, tuple[float, np.ndarray]] = {}

    @property
    def replaying(self) -> bool:
        return self.replay is not None and self.replayed < len(self.replay[2])

    def __call__(self, x, *extra):
        x = np.array(x, dtype=np.float64, copy=True)
        h = _digest(x) if (self.log_evals or self.replay is not None) else None
        if self.replaying:
            fs, gs, hs = self.replay
            i = self.replayed
            if hs[i] == h:
                self.replayed += 1
                self.nfev += 1
                f, g = float(fs[i]), np.array(gs[i])
                self._record(x, f, g, h)
                return f, g
            # the optimiser diverged from the recorded path: evaluate live from here on
            self.replay = None
        out = self.fun(x, *extra, *self.args)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise InvalidInputError(
                "fun must return a pair (value, gradient) (scipy's jac=True convention), "
                f"got {type(out).__name__}"
            )
        f, g = out
        try:
            f = float(f)
        except (TypeError, ValueError):
            raise InvalidInputError(f"fun returned a non-scalar value {f!r}") from None
        g = np.asarray(g, dtype=np.float64).reshape(-1) if np.size(g) == self.n else np.asarray(g)
        if g.shape != (self.n,):
            raise ShapeError(f"fun returned a gradient of shape {np.shape(g)}, expected ({self.n},)")
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
            self.log_f.append(f)
            self.log_g.append(g.copy())
            self.log_h.append(h)
        if self.track_best and f < self.best_f:
            self.best_f, self.best_x, self.best_g = f, x.copy(), g.copy()
        self.last = {(h or _digest(x)): (f, g)}

    def lookup(self, x):
        return self.last.get(_digest(np.asarray(x, dtype=np.float64)))


def _write_checkpoint(path: Path, state: dict, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, _state=np.array(json.dumps(state)), **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_checkpoint(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint to resume from not found: {path}")
    with np.load(path, allow_pickle=False) as z:
        state = json.loads(str(z["_state"]))
        arrays = {k: z[k] for k in z.files if k != "_state"}
    if state.get("version") != _CHECKPOINT_VERSION:
        raise InvalidInputError(f"{path} is not a physim checkpoint (version {state.get('version')})")
    return state, arrays


def _progress_bar(progress, total, desc):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="it", leave=True)


def _normalise_bounds(bounds, n):
    if bounds is None:
        return None
    if isinstance(bounds, so.Bounds):
        lo = np.broadcast_to(np.asarray(bounds.lb, dtype=float), (n,)).copy()
        hi = np.broadcast_to(np.asarray(bounds.ub, dtype=float), (n,)).copy()
    else:
        b = np.asarray(bounds, dtype=object)
        if b.shape == (2,) and n != 2 and np.ndim(bounds[0]) == 0:
            b = np.array([bounds] * n, dtype=object)
        if b.shape != (n, 2):
            raise ShapeError(
                f"bounds must be a sequence of {n} (lower, upper) pairs or scipy Bounds, got shape {b.shape}"
            )
        lo = np.array([-np.inf if v is None else float(v) for v in b[:, 0]])
        hi = np.array([np.inf if v is None else float(v) for v in b[:, 1]])
    if np.any(lo > hi):
        i = int(np.argmax(lo > hi))
        raise InvalidInputError(f"bounds[{i}] has lower {lo[i]} > upper {hi[i]}")
    return lo, hi


def minimize(
    fun: Callable,
    x0,
    *,
    method: str = "lbfgs",
    bounds=None,
    constraints: Sequence[dict] | dict = (),
    maxiter: int = 100,
    tol: float | None = None,
    callback: Callable | None = None,
    progress: bool = False,
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
    options: dict | None = None,
) -> so.OptimizeResult:
    """Minimise ``fun`` from ``x0``.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> (value, grad)`` with ``x`` float64 (n,), ``value`` a
        float and ``grad`` (n,). With Adam minibatches: ``fun(x, batch, *args)``
        where ``batch`` is an int64 array of sample indices.
    x0 : array_like, shape (n,)
        Starting point (flattened).
    method : {"lbfgs", "slsqp", "adam"}
    bounds : sequence of (lower, upper) or scipy.optimize.Bounds, optional
        Box constraints (``None`` = unbounded side). Adam projects onto them.
    constraints : dict or sequence of dict
        SLSQP only: scipy dicts ``{"type": "eq"|"ineq", "fun": c, "jac": dc}``.
    maxiter : int
        Maximum iterations (Adam: steps in full-batch mode, epochs in minibatch
        mode unless ``epochs`` is given).
    tol : float, optional
        Stopping tolerance (scipy ``ftol``/``gtol``; Adam stops when the
        gradient's max-norm falls below it in full-batch mode).
    callback : callable, optional
        ``callback(intermediate_result)`` with an ``OptimizeResult`` holding
        ``x, fun, jac, nit``; raise ``StopIteration`` to stop.
    progress : bool
        Show a progress bar (iterations, current and best value).
    checkpoint : path, optional
        Write a checkpoint (``.npz``) atomically every ``checkpoint_every``
        iterations and at the end.
    resume : path, optional
        Continue from a checkpoint written by the same call (same ``fun``,
        ``x0``, method and options); the iterates equal those of an
        uninterrupted run.
    args : tuple
        Extra positional arguments for ``fun``.
    lr, betas, eps : Adam hyper-parameters.
    epochs, n_samples, batch_size : Adam minibatching.
    seed : int
        Seed of the Adam batch shuffling.
    options : dict, optional
        Extra scipy options.

    Returns
    -------
    scipy.optimize.OptimizeResult
        ``x, fun, jac, nit, nfev, success, message``, plus ``history`` (list
        of dicts with ``nit, fun, gnorm, time`` per iteration — per epoch for
        minibatch Adam, where ``fun`` is the mean batch loss), ``best_x`` and
        ``best_fun`` (best finite evaluation seen).
    """
    if method not in METHODS:
        raise InvalidInputError(f"method must be one of {METHODS}, got {method!r}")
    x0 = as_float_array("x0", x0).ravel().copy()
    n = x0.size
    if n == 0:
        raise ShapeError("x0 must have at least one entry")
    maxiter = int(maxiter)
    if maxiter < 0:
        raise InvalidInputError(f"maxiter must be >= 0, got {maxiter}")
    checkpoint_every = max(1, int(checkpoint_every))
    if isinstance(constraints, dict):
        constraints = (constraints,)
    constraints = tuple(constraints)
    if constraints and method != "slsqp":
        raise InvalidInputError(f"constraints are supported by method='slsqp' only, not {method!r}")
    bnds = _normalise_bounds(bounds, n)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    state, arrays = _read_checkpoint(Path(resume)) if resume is not None else (None, None)
    if state is not None:
        if state["method"] != method or int(state["n"]) != n:
            raise InvalidInputError(
                f"checkpoint {resume} is for method={state['method']!r} with n={state['n']}, "
                f"not method={method!r} with n={n}"
            )
    run = _Run(
        fun=fun,
        x0=x0,
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
    if state is not None and _digest(x0) != state["x0_digest"]:
        raise InvalidInputError("resume: x0 differs from the x0 of the checkpointed run")
    if method == "adam":
        return _adam(run, lr, betas, eps, epochs, n_samples, batch_size, seed)
    return _scipy(run, constraints, options)


class _Run:
    """Settings of one ``minimize`` call and the bookkeeping every method shares:
    history, progress bar, periodic checkpoints, the user callback and the result."""

    def __init__(
        self,
        *,
        fun,
        x0,
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
        self.fun, self.x0, self.method, self.bounds = fun, x0, method, bounds
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
            "version": _CHECKPOINT_VERSION,
            "method": self.method,
            "n": self.x0.size,
            "x0_digest": _digest(self.x0),
            "history": self.history,
            **extra,
        }

    def iteration(self, k: int, x, f: float, g, gnorm: float, best: float) -> None:
        """Record iteration ``k``; raises ``_Stop`` when the callback asks to stop."""
        self.history.append(
            {"nit": k, "fun": float(f), "gnorm": float(gnorm), "time": time.perf_counter() - self.t0}
        )
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(f=f"{f:.6g}", best=f"{best:.6g}")
        if self.checkpoint is not None and k % self.every == 0:
            self.save()
        if self.callback is not None:
            try:
                self.callback(so.OptimizeResult(x=np.array(x), fun=float(f), jac=np.array(g), nit=k))
            except StopIteration:
                raise _Stop from None

    def result(self, obj: _Objective, x, f, g, nit, success, message):
        return so.OptimizeResult(
            x=np.asarray(x, dtype=float),
            fun=float(f),
            jac=None if g is None else np.asarray(g, dtype=float),
            nit=int(nit),
            nfev=int(obj.nfev),
            success=bool(success),
            message=str(message),
            history=self.history,
            best_x=None if obj.best_x is None else obj.best_x.copy(),
            best_fun=float(obj.best_f),
            wall_time=time.perf_counter() - self.t0,
        )

    def stopped(self, obj: _Objective, nit: int, message: str):
        """Result for a run that stopped early: the best finite iterate (or x0)."""
        self.save()
        if obj.best_x is not None:
            return self.result(obj, obj.best_x, obj.best_f, obj.best_g, nit, False, message)
        return self.result(obj, self.x0, np.nan, None, nit, False, message)


def _nonfinite_message(exc: Exception) -> str:
    return f"stopped: {exc}; returning the best finite iterate"


def _scipy(run: _Run, constraints, options):
    n = run.x0.size
    obj = _Objective(run.fun, n, run.args, log_evals=run.checkpoint is not None)
    if run.state is not None:
        obj.replay = (run.arrays["log_f"], run.arrays["log_g"], list(run.state["log_h"]))
    done_iters = len(run.history)
    it = {"nit": 0}

    def save():
        st = run.checkpoint_state(log_h=obj.log_h, nit=it["nit"])
        _write_checkpoint(
            run.checkpoint,
            st,
            {
                "log_f": np.asarray(obj.log_f, dtype=float),
                "log_g": np.asarray(obj.log_g, dtype=float).reshape(len(obj.log_g), n),
                "x": obj.best_x if obj.best_x is not None else run.x0,
            },
        )

    if run.checkpoint is not None:
        run.save = save

    def cb(xk, *_):
        it["nit"] += 1
        k = it["nit"]
        if k <= done_iters:  # replaying iterations already recorded
            return
        found = obj.lookup(xk)
        f, g = found if found is not None else obj(xk)
        run.iteration(k, xk, f, g, float(np.linalg.norm(g)), obj.best_f)

    opts = {"maxiter": run.maxiter}
    if run.method == "lbfgs":
        smethod = "L-BFGS-B"
        if run.tol is not None:
            opts.update(ftol=run.tol, gtol=run.tol)
    else:
        smethod = "SLSQP"
        if run.tol is not None:
            opts["ftol"] = run.tol
    opts.update(options or {})
    sb = None
    if run.bounds is not None:
        lo, hi = run.bounds
        if run.method == "slsqp":
            # SLSQP rejects infinite bounds in some scipy versions: pass None there
            sb = [(a if np.isfinite(a) else None, b if np.isfinite(b) else None) for a, b in zip(lo, hi)]
        else:
            sb = so.Bounds(lo, hi)
    kw = {"constraints": constraints} if run.method == "slsqp" else {}
    run.open_bar(run.maxiter)
    try:
        r = so.minimize(obj, run.x0, jac=True, method=smethod, bounds=sb, callback=cb, options=opts, **kw)
        x, f, g = r.x, r.fun, getattr(r, "jac", None)
        found = obj.lookup(x)
        if found is not None:
            f, g = found
        result = run.result(obj, x, f, g, it["nit"], r.success, r.message)
    except _NonFinite as exc:
        result = run.stopped(obj, it["nit"], _nonfinite_message(exc))
    except KeyboardInterrupt:
        result = run.stopped(obj, it["nit"], "interrupted")
    except _Stop:
        result = run.stopped(obj, it["nit"], "stopped by callback")
    finally:
        run.close_bar()
    run.save()
    return result


def _adam(run: _Run, lr, betas, eps, epochs, n_samples, batch_size, seed):
    n = run.x0.size
    lr = as_scalar("lr", lr, positive=True)
    b1, b2 = (as_scalar("betas[0]", betas[0]), as_scalar("betas[1]", betas[1]))
    if not (0 <= b1 < 1 and 0 <= b2 < 1):
        raise InvalidInputError(f"betas must lie in [0, 1), got {betas}")
    eps = as_scalar("eps", eps, positive=True)
    minibatch = n_samples is not None or batch_size is not None
    if minibatch:
        if n_samples is None or batch_size is None:
            raise InvalidInputError("Adam minibatches need both n_samples and batch_size")
        n_samples, batch_size = int(n_samples), int(batch_size)
        if n_samples < 1 or batch_size < 1:
            raise InvalidInputError(f"n_samples and batch_size must be >= 1, got {n_samples}, {batch_size}")
    total = int(epochs) if (minibatch and epochs is not None) else run.maxiter
    obj = _Objective(run.fun, n, run.args, log_evals=False, track_best=not minibatch)
    x, m, v, step, done = run.x0.copy(), np.zeros(n), np.zeros(n), 0, 0
    if run.state is not None:
        a, st = run.arrays, run.state
        x, m, v = a["x"].copy(), a["m"].copy(), a["v"].copy()
        step, done = int(st["step"]), int(st["done"])
        if "best_x" in a:
            obj.best_x, obj.best_f, obj.best_g = a["best_x"].copy(), float(st["best_f"]), a["best_g"].copy()
    lo, hi = run.bounds if run.bounds is not None else (None, None)

    def save():
        arr = {"x": x, "m": m, "v": v}
        if obj.best_x is not None:
            arr.update(best_x=obj.best_x, best_g=obj.best_g)
        _write_checkpoint(
            run.checkpoint, run.checkpoint_state(step=step, done=done, best_f=float(obj.best_f)), arr
        )

    if run.checkpoint is not None:
        run.save = save

    def update(g):
        nonlocal x, m, v, step
        step += 1
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat = m / (1 - b1**step)
        vhat = v / (1 - b2**step)
        x = x - lr * mhat / (np.sqrt(vhat) + eps)
        if lo is not None:
            x = np.clip(x, lo, hi)

    f = g = None
    success, message = True, "maximum number of iterations reached"
    run.open_bar(total)
    try:
        while done < total:
            if minibatch:
                rng = np.random.default_rng([seed, done])
                perm = rng.permutation(n_samples).astype(np.int64)
                fs, gnorm = [], 0.0
                for s in range(0, n_samples, batch_size):
                    f, g = obj(x, perm[s : s + batch_size])
                    fs.append(f)
                    gnorm = max(gnorm, float(np.linalg.norm(g)))
                    update(g)
                f = float(np.mean(fs))
                # the epoch's result is the end-of-epoch iterate, ranked by its mean batch loss
                if f <= obj.best_f:
                    obj.best_f, obj.best_x, obj.best_g = f, x.copy(), g.copy()
            else:
                f, g = obj(x)
                gnorm = float(np.linalg.norm(g))
                if run.tol is not None and float(np.max(np.abs(g))) <= run.tol:
                    message = f"gradient max-norm {np.max(np.abs(g)):.3g} <= tol {run.tol}"
                    break
                update(g)
            done += 1
            run.iteration(done, x, f, g, gnorm, obj.best_f)
        if not minibatch and step > 0:
            # report value and gradient at the returned iterate, not at the one before the last step
            f, g = obj(x)
    except _NonFinite as exc:
        return run.stopped(obj, done, _nonfinite_message(exc))
    except KeyboardInterrupt:
        return run.stopped(obj, done, "interrupted")
    except _Stop:
        success, message = False, "stopped by callback"
        if not minibatch:
            try:
                f, g = obj(x)  # value and gradient at the returned iterate
            except _NonFinite as exc:
                return run.stopped(obj, done, _nonfinite_message(exc))
    finally:
        run.close_bar()
    run.save()
    if f is None:
        f = np.nan
    return run.result(obj, x, f, g, done, success, message)
