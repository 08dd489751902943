"""Progress bars (tqdm) for long loops and fits.

:func:`progress_bar` is the one place where physim makes a bar. On a terminal
it redraws at most about ten times a second; written to a pipe or a file
(CI logs, ``physim run ... > log``) it updates only a few times in all, so a
log holds a handful of lines instead of hundreds. ``-q`` turns bars off.
Whether a call with ``progress=None`` shows a bar is decided by
:func:`enabled`: scenario scripts and the ``physim`` command switch bars on
for every fit (:func:`set_default`, or ``PHYSIM_PROGRESS=1`` in the environment).
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

from ._log import quiet

__all__ = ["PROGRESS_ENV", "enabled", "set_default", "progress_bar", "UPDATES_WHEN_NOT_A_TERMINAL"]

#: environment variable: "1" shows a progress bar for every fit whose ``progress`` is None
PROGRESS_ENV = "PHYSIM_PROGRESS"

#: how many times a bar written to a pipe or a file is redrawn (besides its first and last line)
UPDATES_WHEN_NOT_A_TERMINAL = 4


_default: bool | None = None


def set_default(show: bool | None) -> None:
    """Process-wide answer for ``progress=None`` (scenario scripts set True); None: ask the environment."""
    global _default
    _default = show


def enabled(progress: bool | None) -> bool:
    """Resolve a ``progress`` argument: True/False as given; None follows :func:`set_default`,
    else ``$PHYSIM_PROGRESS``. Always False with ``-q`` (``PHYSIM_LOG_LEVEL`` above INFO)."""
    if quiet():
        return False
    if progress is None:
        if _default is not None:
            return _default
        return os.environ.get(PROGRESS_ENV, "") not in ("", "0")
    return bool(progress)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_bar(
    total: int | None = None, desc: str = "", *, unit: str = "it", file: Any = None, **kwargs: Any
):
    """A tqdm bar on standard error that stays quiet in logs.

    Parameters
    ----------
    total : int, optional
        Expected number of steps.
    desc : str
        Label in front of the bar.
    unit : str
    file : text stream, optional
        Default ``sys.stderr``.
    **kwargs
        Passed to ``tqdm``.

    Returns
    -------
    tqdm.tqdm
        Use ``set_postfix(..., refresh=False)`` so that the postfix does not force
        a redraw at every step.
    """
    from tqdm import tqdm

    stream = sys.stderr if file is None else file
    opts: dict[str, Any] = {"desc": desc, "unit": unit, "file": stream, "leave": True, "dynamic_ncols": True}
    if not _is_terminal(stream):
        # a log: redraw every quarter of the run (and at least a minute apart when the length is unknown)
        if total:
            # maxinterval=inf: tqdm's monitor thread would otherwise drop miniters to 1 after 10 s
            opts.update(
                miniters=max(1, math.ceil(total / UPDATES_WHEN_NOT_A_TERMINAL)),
                mininterval=0.0,
                maxinterval=math.inf,
            )
        else:
            opts.update(mininterval=60.0, maxinterval=3600.0)
        opts["dynamic_ncols"] = False
        opts["ncols"] = 100
    opts.update(kwargs)
    return tqdm(total=total, **opts)
