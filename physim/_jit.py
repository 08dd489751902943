"""The one Numba compilation policy used by every physim kernel.

Every kernel is compiled with ``cache=True`` (so a second process reuses the
machine code) and with fastmath flags that keep IEEE inf/NaN semantics: the
eikonal solver relies on ``inf`` for unreached nodes, and the optimizer layer
relies on NaN propagating so that it can stop cleanly on a non-finite value.

Public wrappers convert their inputs to contiguous ``float64``/``int64`` arrays
(see :mod:`physim._validate`) so each kernel compiles a single signature.
"""

from __future__ import annotations

import logging
import threading
import time

import numba
from numba.core import event as _event

__all__ = ["FASTMATH", "njit", "prange", "compile_stats"]

logger = logging.getLogger(__name__)

#: fastmath flags: everything that keeps inf/NaN semantics (never ``nnan``/``ninf``), and
#: never ``contract``: with it, a kernel compiled in-process and the same kernel loaded from
#: Numba's on-disk cache fused multiply-adds differently, so a process that compiled its
#: kernels and one that loaded them (a serial run and its Dask workers) differed in the last
#: bits (ensemble members by about 3e-14 relative, measured).
FASTMATH = frozenset({"nsz", "arcp", "afn", "reassoc"})

prange = numba.prange


def njit(func=None, *, parallel: bool = False, fastmath: bool = True, **options):
    """Compile ``func`` with physim's policy (``cache=True``, safe fastmath).

    Usable bare (``@njit``) or with options (``@njit(parallel=True)``).
    ``fastmath=False`` switches the flags off for kernels whose results must
    be bit-reproducible across reassociation (e.g. reductions compared with a
    reference to round-off).
    """

    def wrap(f):
        d = numba.njit(
            cache=True,
            parallel=parallel,
            fastmath=set(FASTMATH) if fastmath else False,
            nogil=True,
            **options,
        )(f)
        return _ThreadSafe(d) if parallel else d

    if func is not None:
        return wrap(func)
    return wrap


_WORKQUEUE_LOCK = threading.Lock()


def _layer_is_threadsafe() -> bool:
    """True once Numba runs its parallel regions on a layer that several threads may enter
    at once (TBB, OpenMP); False for the workqueue layer or before the first launch."""
    try:
        return numba.threading_layer() != "workqueue"
    except ValueError:  # no parallel region launched yet: the layer is chosen at the first
        return False


class _ThreadSafe:
    """A ``parallel=True`` kernel that Python threads may call concurrently.

    Numba's fallback workqueue threading layer (used where neither TBB nor OpenMP is
    available) aborts the process when two threads launch parallel regions at once. Calls
    are serialised by a lock on that layer (and for the first launch, which picks the
    layer); on TBB and OpenMP they run concurrently. Attributes are the dispatcher's.
    """

    def __init__(self, dispatcher):
        self.__dict__["_dispatcher"] = dispatcher
        self.__doc__ = dispatcher.__doc__
        self.__wrapped__ = dispatcher

    def __call__(self, *args, **kwargs):
        if _layer_is_threadsafe():
            return self._dispatcher(*args, **kwargs)
        with _WORKQUEUE_LOCK:
            return self._dispatcher(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._dispatcher, name)

    def __repr__(self) -> str:
        return f"ThreadSafe({self._dispatcher!r})"


class _CompileWatch(_event.Listener):
    """Times Numba compilations (cache loads excluded) and says once that compilation started.

    A top-level ``numba:compile`` event that runs compiler passes is a real
    compilation; one that does not was a load from the cache.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.depth = 0
        self.real = False
        self.t0 = 0.0
        self.seconds = 0.0
        self.functions = 0
        self.announced = False

    def on_start(self, event):
        if event.kind == "numba:compile":
            with self.lock:
                if self.depth == 0:
                    self.t0, self.real = time.perf_counter(), False
                self.depth += 1
        elif event.kind == "numba:run_pass" and not self.real:
            self.real = True
            if not self.announced:
                self.announced = True
                logger.info(
                    "compiling Numba kernels (first run only; the machine code is cached for later runs) ..."
                )

    def on_end(self, event):
        if event.kind == "numba:compile":
            with self.lock:
                self.depth -= 1
                if self.depth == 0 and self.real:
                    self.seconds += time.perf_counter() - self.t0
                    self.functions += 1


_watch = _CompileWatch()
_event.register("numba:compile", _watch)
_event.register("numba:run_pass", _watch)


def compile_stats() -> tuple[float, int]:
    """Seconds spent compiling Numba functions in this process and how many (cache loads excluded)."""
    return _watch.seconds, _watch.functions
