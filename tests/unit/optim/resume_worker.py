"""Subprocess worker for the interruption tests of ``physim.optim.minimize``.

Usage::

    python resume_worker.py run METHOD CHECKPOINT OUT.npy [slow]   # fresh run, or resume if CHECKPOINT exists
    python resume_worker.py sigint METHOD DIR TRIALS SEED      # random-time Ctrl-C, resume, compare

``run`` prints ``start`` when its imports are done and writes the final
iterate to OUT.npy; with ``slow`` every checkpoint write takes 30 ms longer
(a slow disk), so that a ``kill -9`` often lands inside one. ``sigint`` prints one line
``mismatches=<k> interrupted=<i> mid_epoch=<j> trials=<n>`` (exit status 0).
The objective is deterministic and sleeps a little per call, so that a
``kill -9`` or a timer lands anywhere in the run, checkpoint writes included.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

from physim.optim import minimize

N_SAMPLES = 96


def problem(method: str):
    """(fun, x0, kwargs) of a small least-squares fit for ``method``."""
    rng = np.random.default_rng(5)
    n = 3000 if method == "adam" else 400
    X = rng.standard_normal((N_SAMPLES, n)) / np.sqrt(n)
    w = rng.standard_normal(n)
    y = X @ w + 0.01 * rng.standard_normal(N_SAMPLES)

    def loss(v, batch=None):
        time.sleep(0.002)
        idx = np.arange(N_SAMPLES) if batch is None else batch
        r = X[idx] @ v - y[idx]
        return float(r @ r / len(idx)) + 1e-3 * float(v @ v), 2 * X[idx].T @ r / len(idx) + 2e-3 * v

    if method == "adam":
        kw = dict(method="adam", n_samples=N_SAMPLES, batch_size=20, epochs=12, lr=0.05, seed=3)
    else:
        kw = dict(method=method, maxiter=40, tol=1e-14)
    return loss, np.zeros(n), kw


def run(method: str, ckpt: Path, resume: bool):
    fun, x0, kw = problem(method)
    return minimize(fun, x0, checkpoint=ckpt, resume=ckpt if resume else None, **kw)


def main(argv):
    mode, method = argv[0], argv[1]
    if mode == "run":
        ckpt, out = Path(argv[2]), Path(argv[3])
        if argv[4:] == ["slow"]:
            savez = np.savez

            def slow_savez(fh, *args, **arrays):
                savez(fh, *args, **arrays)
                fh.flush()
                time.sleep(0.03)

            np.savez = slow_savez
        print("start", flush=True)  # imports done: the run begins
        res = run(method, ckpt, ckpt.exists())
        np.save(out, res.x)
        return 0
    directory, trials, seed = Path(argv[2]), int(argv[3]), int(argv[4])
    rng = np.random.default_rng(seed)
    ref = run(method, directory / "reference.npz", False).x

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, interrupt)
    t0 = time.perf_counter()
    run(method, directory / "timing.npz", False)
    duration = time.perf_counter() - t0
    mismatches = interrupted = mid_epoch = 0
    for k in range(trials):
        ckpt = directory / f"trial{k}.npz"
        signal.setitimer(signal.ITIMER_REAL, float(rng.uniform(0.0, duration)))
        try:
            res = run(method, ckpt, False)
            stopped = res.stop_reason == "interrupted"
        except KeyboardInterrupt:  # landed outside minimize's own handling (set-up or final save)
            stopped = True
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0.0)
        interrupted += stopped
        if ckpt.exists():
            with np.load(ckpt) as z:
                mid_epoch += json.loads(str(z["_state"])).get("pos", 0) > 0
        res = run(method, ckpt, ckpt.exists())
        mismatches += not np.array_equal(res.x, ref)
    print(f"mismatches={mismatches} interrupted={interrupted} mid_epoch={mid_epoch} trials={trials}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
