"""Messages of the library and of the ``physim`` command, through :mod:`logging`.

The library logs to the ``"physim"`` logger (one child logger per module) and
never prints: with no logging configured, nothing below WARNING is shown. The
``physim`` command and scenario scripts call :func:`configure`, which sends
the messages to standard error (through ``tqdm.write`` so they do not break a
progress bar). ``-q`` / ``-v`` set the level; the command passes it to the
scenario processes it starts in the ``PHYSIM_LOG_LEVEL`` environment variable.
"""

from __future__ import annotations

import logging
import os
import sys

__all__ = ["LEVEL_ENV", "configure", "env_level", "quiet"]

#: environment variable holding the level name (DEBUG, INFO, WARNING, ERROR) for child processes
LEVEL_ENV = "PHYSIM_LOG_LEVEL"

logger = logging.getLogger("physim")
logger.addHandler(logging.NullHandler())


def env_level(default: int = logging.INFO) -> int:
    """The level named by ``$PHYSIM_LOG_LEVEL`` (a name or a number), else ``default``."""
    raw = os.environ.get(LEVEL_ENV, "").strip()
    if not raw:
        return default
    if raw.lstrip("-").isdigit():
        return int(raw)
    level = logging.getLevelName(raw.upper())
    return level if isinstance(level, int) else default


def quiet() -> bool:
    """True when ``-q`` (or ``PHYSIM_LOG_LEVEL`` above INFO) asked for no progress output."""
    return env_level() > logging.INFO


class _TqdmHandler(logging.StreamHandler):
    """Write records with ``tqdm.write`` so that an active progress bar is redrawn below them."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            from tqdm import tqdm

            tqdm.write(msg, file=self.stream)
            self.flush()
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


def configure(level: int | None = None) -> None:
    """Show physim's messages on standard error at ``level`` (default: ``$PHYSIM_LOG_LEVEL`` or INFO).

    For applications (the ``physim`` command, scenario scripts); idempotent.
    """
    level = env_level() if level is None else int(level)
    for h in list(logger.handlers):
        if isinstance(h, _TqdmHandler):
            logger.removeHandler(h)
    handler = _TqdmHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
