"""The one Numba compilation policy used by every physim kernel.

Every kernel is compiled with ``cache=True`` (so a second process reuses the
machine code) and with fastmath flags that keep IEEE inf/NaN semantics: the
eikonal solver relies on ``inf`` for unreached nodes, and the optimizer layer
relies on NaN propagating so that it can stop cleanly on a non-finite value.

Public wrappers convert their inputs to contiguous ``float64``/``int64`` arrays
(see :mod:`physim._validate`) so each kernel compiles a single signature.
"""

from __future__ import annotations

import numba

__all__ = ["FASTMATH", "njit", "prange"]

#: fastmath flags: everything that keeps inf/NaN semantics (never ``nnan``/``ninf``).
FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})

prange = numba.prange


def njit(func=None, *, parallel: bool = False, fastmath: bool = True, **options):
    """Compile ``func`` with physim's policy (``cache=True``, safe fastmath).

    Usable bare (``@njit``) or with options (``@njit(parallel=True)``).
    ``fastmath=False`` switches the flags off for kernels whose results must
    be bit-reproducible across reassociation (e.g. reductions compared with a
    reference to round-off).
    """

    def wrap(f):
        return numba.njit(
            cache=True,
            parallel=parallel,
            fastmath=set(FASTMATH) if fastmath else False,
            nogil=True,
            **options,
        )(f)

    if func is not None:
        return wrap(func)
    return wrap
