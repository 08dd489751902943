"""Atomic file writes, shared by every physim writer (meshes, checkpoints, ``results.json``).

A file is written to a unique temporary file in the target directory and
renamed over the target (``os.replace``), so readers see either the old or the
new file, never a truncated one, whatever interrupts the write (an exception,
Ctrl-C, ``kill -9``). Every write gets its own temporary name (``mkstemp``), so
threads and processes writing the same path never collide. The temporary name
is short whatever the target's length (a 250-character file name stays legal),
and the file gets the permissions any new file of the user gets
(``0o666 & ~umask``), not ``mkstemp``'s 0600.

A write killed by ``kill -9`` leaves its temporary file behind; the next write
(or checkpoint resume) of the same path in a later process removes the
leftovers of processes that no longer run.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .errors import FileError

__all__ = ["atomic_write", "remove_stale_temporaries", "file_mode"]

_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
#: temporary files of other hosts (shared file systems) are removed when older than this (s)
FOREIGN_STALE_S = 24 * 3600.0

_cleaned: set[str] = set()
_lock = threading.Lock()


def file_mode() -> int:
    """Permission bits of a new regular file under the current umask (``0o666 & ~umask``)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _lock:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def _stem(path: Path) -> str:
    name = path.name
    digest = hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f".{name[:60]}.{digest}."


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike, *, force: bool = False) -> list[Path]:
    """Remove temporary files that interrupted writes of ``path`` left behind.

    A temporary file is stale when the process that created it on this host no
    longer runs (or, for another host, when it is older than a day). This runs
    once per path and process unless ``force``. Returns the removed paths.
    """
    path = Path(path)
    key = str(path.resolve()) if path.parent.exists() else str(path)
    with _lock:
        if key in _cleaned and not force:
            return []
        _cleaned.add(key)
    stem = _stem(path)
    pat = re.compile(re.escape(stem) + r"([0-9a-f]{6})-(\d+)\..*\.tmp$")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(stem):
            continue
        m = pat.match(entry.name)
        if m is None:
            continue
        host, pid = m.group(1), int(m.group(2))
        try:
            if host == _HOST:
                stale = not _pid_alive(pid)
            else:
                stale = now - entry.stat(follow_symlinks=False).st_mtime > FOREIGN_STALE_S
            if stale:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary file, which is renamed onto ``path``.

    Parameters
    ----------
    path : path-like
        The target file. Its directory is created if needed.
    write : callable
        ``write(tmp_path)`` writes the complete content to ``tmp_path`` (an
        existing empty file in the target directory).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    FileError
        The directory cannot be created or written, or the rename fails; the
        message names ``path``. Exceptions raised by ``write`` propagate
        (``OSError`` as :class:`FileError`); the temporary file is removed in
        every case.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileError(f"cannot write {path}: cannot create its directory ({exc.strerror or exc})") from exc
    remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f"{_stem(path)}{_HOST}-{os.getpid()}.", suffix=".tmp", dir=path.parent
        )
    except OSError as exc:
        raise FileError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        try:
            os.fchmod(fd, file_mode())
        except (OSError, AttributeError):  # pragma: no cover - platforms without fchmod
            pass
        os.close(fd)
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, FileError):
            raise FileError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
    return path
