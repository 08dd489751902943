"""Result and model objects own read-only copies of their data, and print briefly.

Every physim result (``Equilibrium``, ``Activation``, ``ECG``, ``Rollout``,
``Plan``, gradients, ...) and every model object keeps what it needs as
read-only arrays that no caller holds: a later in-place edit of an input array
changes nothing already computed, and an accidental edit of a result array
raises ``ValueError: assignment destination is read-only`` instead of
corrupting the adjoint. One mechanism does it:

* :class:`Result` is the base class of the frozen result dataclasses. After the
  dataclass ``__init__`` it replaces every array field (also inside dicts,
  tuples and lists) by :func:`readonly` of it, and gives the class a short
  ``repr`` (shapes and dtypes of arrays, sizes of containers, scalars) unless
  the class defines its own. Unpickled copies (e.g. results returned by Dask
  workers) are made read-only again.
* :func:`readonly` is the same copy for model objects that are not dataclasses.

Copying costs one pass over the data, far less than computing it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Result", "readonly", "owned", "freeze", "short_repr"]

#: longest repr of a result before it is cut
MAX_REPR = 600


def _safe(a: np.ndarray) -> bool:
    """True if nobody can write ``a``'s memory through another array: ``a`` is
    read-only and so is the array that owns its memory."""
    if a.flags.writeable:
        return False
    if a.base is None:
        return True
    root = a
    while isinstance(root.base, np.ndarray):
        root = root.base
    return root.base is None and not root.flags.writeable


def readonly(a) -> np.ndarray:
    """A read-only array with the content of ``a`` that no caller can modify.

    ``a`` itself when it already is such an array (a read-only array whose
    memory owner is read-only too, e.g. another result's field), else a
    C-contiguous copy marked read-only. The caller's array is never frozen.
    """
    if isinstance(a, np.ndarray) and _safe(a):
        return a
    c = np.array(a, order="C", copy=True)
    c.flags.writeable = False
    return c


def owned(value):
    """``value`` with every array (also inside dicts, tuples and lists) replaced by :func:`readonly`.

    Containers are copied (so adding to the caller's dict later changes nothing);
    other objects are returned as they are.
    """
    if isinstance(value, np.ndarray):
        return readonly(value)
    t = type(value)  # exact containers only: dict subclasses (e.g. OptimizeResult) keep their type
    if t is dict:
        return {k: owned(v) for k, v in value.items()}
    if t is tuple:
        return tuple(owned(v) for v in value)
    if t is list:
        return [owned(v) for v in value]
    return value


def freeze(*arrays: np.ndarray) -> None:
    """Mark arrays the caller has just created (and shares with nobody) read-only, in place.

    Saves :func:`readonly` a copy on hot paths; never use it on an argument.
    """
    for a in arrays:
        a.flags.writeable = False


# ----------------------------------------------------------------------------- short repr


def _scalar(v) -> str | None:
    if v is None:
        return "None"
    if isinstance(v, (bool, np.bool_)):
        return repr(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    if isinstance(v, str):
        return repr(v) if len(v) <= 60 else repr(v[:57] + "...")
    return None


def summary(v, depth: int = 1) -> str:
    """One short description of a field value (arrays by dtype and shape)."""
    s = _scalar(v)
    if s is not None:
        return s
    if isinstance(v, np.ndarray):
        if v.ndim == 0:
            return _scalar(v.item()) or f"{v.dtype}()"
        shape = "(" + ", ".join(map(str, v.shape)) + ")"
        if v.ndim == 1 and v.size <= 4 and v.dtype.kind in "biuf":
            return np.array2string(v, precision=4, separator=", ")
        return f"{v.dtype}{shape}"
    if isinstance(v, (list, tuple)):
        if len(v) <= 4 and all(_scalar(x) is not None for x in v):
            inner = ", ".join(_scalar(x) for x in v)
            return f"[{inner}]" if isinstance(v, list) else f"({inner}{',' if len(v) == 1 else ''})"
        return f"{type(v).__name__}[{len(v)}]"
    if isinstance(v, dict):
        keys = list(v)
        shown = ", ".join(map(str, keys[:4])) + (", ..." if len(keys) > 4 else "")
        return f"dict[{len(keys)}: {shown}]"
    if depth > 1:
        return f"{type(v).__name__}(...)"
    try:
        r = repr(v)
    except Exception:  # pragma: no cover - a broken repr of a user object
        r = ""
    if r and len(r) <= 100 and "\n" not in r:
        return r
    return f"{type(v).__name__}(...)"


def short_repr(name: str, items) -> str:
    """``name(key=summary, ...)`` cut at :data:`MAX_REPR` characters."""
    parts = [f"{k}={summary(v)}" for k, v in items]
    out = f"{name}({', '.join(parts)})"
    return out if len(out) <= MAX_REPR else out[: MAX_REPR - 4] + " ...)"


class Result:
    """Base class of physim's frozen result dataclasses (read-only copies, short repr).

    Subclasses are ``@dataclass(frozen=True)``; one that defines its own
    ``__post_init__`` calls ``super().__post_init__()`` after validating.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__repr__" not in cls.__dict__:  # keep a repr the class defines itself
            cls.__repr__ = Result.__repr__

    def __post_init__(self):
        _own_fields(self)

    def __setstate__(self, state):
        self.__dict__.update(state)
        _own_fields(self)

    def __repr__(self) -> str:
        if not dataclasses.is_dataclass(self):  # pragma: no cover
            return object.__repr__(self)
        items = [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if f.repr]
        return short_repr(type(self).__name__, items)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_CONTAINERS = (np.ndarray, dict, list, tuple)


def _own_fields(obj) -> None:
    cls = type(obj)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(obj))
    d = obj.__dict__
    for name in names:
        v = d.get(name)
        if isinstance(v, _CONTAINERS):
            nv = owned(v)
            if nv is not v:
                object.__setattr__(obj, name, nv)
