"""Checkpoint files of :func:`physim.optim.minimize`: one writer, one reader.

A checkpoint is an ``.npz`` archive holding a JSON ``_state`` entry (version,
method, problem size, digest of ``x0``, history, counters) and the arrays of
the method (Adam: iterate and moment estimates; scipy methods: the log of
evaluations). It is written atomically (:func:`physim._atomic.atomic_write`),
so ``kill -9`` at any moment leaves either the previous or the new checkpoint,
plus at worst a temporary file that the next write or resume removes.

:func:`read_checkpoint` turns every way a file can be unusable (missing,
empty, truncated, not an archive, a foreign archive, a malformed or
incomplete state, arrays of the wrong shape, another problem's checkpoint)
into one :class:`~physim.errors.CheckpointError` naming the file and what is
wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .._atomic import atomic_write, remove_stale_temporaries
from ..errors import CheckpointError, MissingFileError

__all__ = ["VERSION", "digest", "write_checkpoint", "read_checkpoint"]

#: current format; version 1 (before mid-epoch Adam state) is still read
VERSION = 2


def digest(x: np.ndarray) -> str:
    """SHA-1 of the float64 bytes of ``x`` (identifies iterates and starting points)."""
    return hashlib.sha1(np.ascontiguousarray(x, dtype=np.float64).tobytes()).hexdigest()


def write_checkpoint(path: Path, state: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write ``state`` (JSON-serialisable) and ``arrays`` to ``path`` atomically."""
    text = json.dumps(state)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, _state=np.array(text), **arrays)

    atomic_write(path, write)


def _fail(path, what: str) -> CheckpointError:
    return CheckpointError(f"cannot resume from checkpoint {path}: {what}")


def _load(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise _fail(path, f"cannot read it ({exc.strerror or exc})") from None
    if size == 0:
        raise _fail(path, "the file is empty")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:  # BadZipFile, EOFError, ValueError (pickled data), OSError, ...
        raise _fail(path, f"it is not a readable .npz archive ({type(exc).__name__}: {exc})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise _fail(path, "it holds a single array (.npy), not a physim checkpoint archive")
    try:
        with z:
            if "_state" not in z.files:
                shown = ", ".join(z.files[:6]) + (", ..." if len(z.files) > 6 else "")
                raise _fail(
                    path, f"it is not a physim checkpoint (no _state entry; entries: {shown or 'none'})"
                )
            raw = z["_state"]
            if raw.dtype.kind != "U" or raw.ndim != 0:
                raise _fail(
                    path, f"its _state entry is not a JSON string (dtype {raw.dtype}, shape {raw.shape})"
                )
            state = json.loads(str(raw))
            arrays = {k: z[k] for k in z.files if k != "_state"}
    except CheckpointError:
        raise
    except json.JSONDecodeError as exc:
        raise _fail(path, f"its _state entry is not valid JSON ({exc})") from None
    except Exception as exc:  # a truncated member, a corrupted array header, ...
        raise _fail(path, f"the archive is damaged ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise _fail(path, f"its _state entry is a JSON {type(state).__name__}, not an object")
    return state, arrays


def _need(path, state: dict, key: str, kind, what: str):
    if key not in state:
        raise _fail(path, f"its state has no {key!r} entry")
    v = state[key]
    ok = isinstance(v, kind) and not (kind is not bool and isinstance(v, bool))
    if not ok:
        raise _fail(path, f"its state entry {key!r} must be {what}, got {v!r:.60}")
    return v


def _array(path, arrays, key: str, shape: tuple, *, optional: bool = False):
    if key not in arrays:
        if optional:
            return None
        raise _fail(path, f"the archive has no {key!r} array")
    a = arrays[key]
    if a.dtype.kind not in "biuf":
        raise _fail(path, f"array {key!r} has dtype {a.dtype}, not a real number type")
    if a.shape != shape:
        raise _fail(path, f"array {key!r} has shape {a.shape}, expected {shape}")
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise _fail(path, f"array {key!r} contains non-finite values")
    return a


def read_checkpoint(path, *, method: str, n: int, x0: np.ndarray) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and validate a checkpoint for a ``method`` run with ``n`` parameters from ``x0``.

    Returns ``(state, arrays)`` with the arrays the method needs, checked for
    shape and finiteness. Raises :class:`~physim.errors.MissingFileError` if
    the file does not exist and :class:`~physim.errors.CheckpointError` for
    anything else that makes it unusable (including a checkpoint of another
    method, problem size or starting point).
    """
    path = Path(os.fspath(path))
    remove_stale_temporaries(path)
    if not path.exists():
        raise MissingFileError(f"checkpoint to resume from not found: {path}")
    if path.is_dir():
        raise _fail(path, "it is a directory")
    state, arrays = _load(path)
    version = state.get("version")
    if version not in (1, VERSION):
        raise _fail(path, f"it has format version {version!r}; this physim reads versions 1 and {VERSION}")
    m = _need(path, state, "method", str, "a method name")
    size = _need(path, state, "n", int, "an integer")
    if m != method or size != n:
        raise _fail(
            path,
            f"it was written by a different problem: method={m!r} with n={size} parameters, "
            f"this run has method={method!r} with n={n}",
        )
    if _need(path, state, "x0_digest", str, "a string") != digest(x0):
        raise _fail(path, "x0 differs from the x0 of the checkpointed run")
    history = _need(path, state, "history", list, "a list")
    for i, h in enumerate(history):
        if not (isinstance(h, dict) and {"nit", "fun", "gnorm", "time"} <= set(h)):
            raise _fail(path, f"history entry {i} is malformed: {h!r:.80}")
    out: dict[str, np.ndarray] = {}
    if method == "adam":
        for key in ("x", "m", "v"):
            out[key] = _array(path, arrays, key, (n,))
        for key in ("best_x", "best_g"):
            a = _array(path, arrays, key, (n,), optional=True)
            if a is not None:
                out[key] = a
        for key in ("step", "done"):
            if _need(path, state, key, int, "an integer") < 0:
                raise _fail(path, f"its state entry {key!r} is negative")
        state.setdefault("pos", 0)
        state.setdefault("losses", [])
        state.setdefault("gnorm", 0.0)
        pos = _need(path, state, "pos", int, "an integer")
        losses = _need(path, state, "losses", list, "a list")
        if pos < 0 or len(losses) != pos or not all(isinstance(v, (int, float)) for v in losses):
            raise _fail(path, f"its mid-epoch state is inconsistent (pos={pos}, {len(losses)} batch losses)")
        if "best_x" in out:
            best_f = state.get("best_f")
            if not isinstance(best_f, (int, float)) or "best_g" not in out:
                raise _fail(path, "it has a best iterate without its value or gradient")
    else:
        log_h = _need(path, state, "log_h", list, "a list")
        k = len(log_h)
        if not all(isinstance(h, str) for h in log_h):
            raise _fail(path, "its evaluation log holds non-string digests")
        out["log_f"] = _array(path, arrays, "log_f", (k,))
        out["log_g"] = _array(path, arrays, "log_g", (k, n))
    return state, out
