"""Shared plumbing for scenario scripts (``scenarios/*.py``).

A scenario is a standalone script::

    '''What it reproduces (first line is the one-line summary shown by ``physim list``).'''
    from physim.scenario import ScenarioContext, scenario_main

    def run(ctx: ScenarioContext) -> dict:
        ...                       # ctx.quick, ctx.out, ctx.plots, ctx.seed
        return {"figure": 1.23}   # written to results.json

    if __name__ == "__main__":
        scenario_main(run, __doc__)

It accepts ``--quick`` (seconds; used by the test suite), ``--out DIR``
(default ``./physim-out/<scenario>/``), ``--no-plots``, ``--seed``, ``-q`` /
``-v``, and for scenarios that fan out independent runs, ``--workers N`` and
``--scheduler ADDRESS`` (``tcp://host:8786``, a scheduler file, or ``serial``),
which they pass on to :func:`physim.distributed.run_sweep`::

    res = run_sweep(one_run, tasks, scheduler=ctx.scheduler, workers=ctx.workers)

``--help`` shows the first paragraph of the docstring and the options;
``physim describe NAME`` prints the whole docstring.

Progress lines (:meth:`ScenarioContext.log`) go through :mod:`logging` to
standard error, and every fit shows a progress bar. Ctrl-C (or SIGTERM) stops
the scenario cleanly: a fit in progress returns its best iterate, the scenario
writes what it has, ``results.json`` gets ``"interrupted": true`` and the
process exits with status 130 without a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _log, _progress

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["ScenarioContext", "scenario_main", "write_json_atomic", "to_jsonable", "best_time"]


@dataclass
class ScenarioContext:
    """What a scenario's ``run`` receives.

    Attributes
    ----------
    name : str
        Scenario name (script file stem).
    quick : bool
        Run a reduced problem that finishes in seconds.
    out : pathlib.Path
        Output directory (created).
    plots : bool
        Whether to render pictures (.png).
    seed : int
        Random seed for data generation / noise.
    extra : dict
        Scenario-specific options parsed by ``add_arguments``.
    workers : int or None
        ``--workers N``: worker processes for :func:`physim.distributed.run_sweep`
        (None: its default, one per core).
    scheduler : str or None
        ``--scheduler ADDRESS``: Dask scheduler address or scheduler file, or
        ``"serial"`` (None: ``$PHYSIM_SCHEDULER``, else an embedded cluster).
    """

    name: str
    quick: bool
    out: Path
    plots: bool = True
    seed: int = 0
    extra: dict = field(default_factory=dict)
    workers: int | None = None
    scheduler: str | None = None

    def path(self, filename: str) -> Path:
        """Path of an output file inside :attr:`out`."""
        return self.out / filename

    def log(self, msg: str) -> None:
        """Report a progress line (logged at INFO to standard error as ``[name] msg``)."""
        logging.getLogger("physim.scenario").info("[%s] %s", self.name, msg)

    @property
    def progress(self) -> bool:
        """Whether loops and fits should show a progress bar (False with ``-q``)."""
        return _progress.enabled(True)

    def progress_bar(self, total: int | None = None, desc: str = "", **kwargs: Any) -> tqdm:
        """A progress bar for a loop of the scenario (disabled with ``-q``); see :func:`physim._progress.progress_bar`."""
        return _progress.progress_bar(total, desc or self.name, disable=not self.progress, **kwargs)


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and paths to plain JSON types (NaN/inf -> None)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json_atomic(path: str | os.PathLike, data: dict) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (temporary file + rename).

    The file gets the permissions of any new file under the user's umask.
    """
    from ._atomic import atomic_write

    text = json.dumps(to_jsonable(data), indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def best_time(f: Callable[[], object], repeat: int = 3, budget_s: float = 5.0) -> tuple[float, object]:
    """Best (minimum) wall time of ``f()`` over up to ``repeat`` calls, for benchmarks.

    Stops repeating once ``budget_s`` seconds have been spent (at least one call
    is made). Returns ``(seconds, result of the last call)``.
    """
    times, out = [], None
    t_start = time.perf_counter()
    for _ in range(max(1, int(repeat))):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - t_start > budget_s:
            break
    return min(times), out


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return n


def _summary_paragraph(doc: str | None) -> str:
    """The first paragraph of a docstring (what ``--help`` shows)."""
    text = (doc or "").strip()
    return text.split("\n\n", 1)[0].strip()


def _parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=name,
        description=_summary_paragraph(doc),
        epilog=f"The full notes (set-up, what was measured): physim describe {name}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="reduced problem that runs in seconds")
    p.add_argument("--out", type=Path, default=None, help=f"output directory (default ./physim-out/{name}/)")
    p.add_argument("--no-plots", action="store_true", help="do not render pictures")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="worker processes for independent runs (default: one per core)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="Dask scheduler for independent runs: tcp://host:8786, a scheduler file, or 'serial' "
        "(default: $PHYSIM_SCHEDULER, else an embedded cluster)",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "-q", "--quiet", dest="level", action="store_const", const=logging.WARNING, default=None,
        help="only warnings and errors, no progress bars",
    )  # fmt: skip
    g.add_argument(
        "-v", "--verbose", dest="level", action="store_const", const=logging.DEBUG, default=None,
        help="also debug messages",
    )  # fmt: skip
    return p


def _prepare_out(name: str, out: Path) -> None:
    """Create the output directory; an unusable one ends the script with one line and status 2."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        print(f"{name}: cannot write to the output directory {out}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(2) from None


class _Interrupts:
    """SIGINT and SIGTERM raise KeyboardInterrupt (so fits return their best) and are remembered."""

    def __init__(self):
        self.seen = False
        self._old = {}

    def _handler(self, signum, frame):
        self.seen = True
        raise KeyboardInterrupt

    def _ignore(self, signum, frame):
        self.seen = True

    def install(self, handler=None):
        handler = handler or self._handler
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old = signal.signal(sig, handler)
            except ValueError:  # not the main thread: leave signals alone
                return
            self._old.setdefault(sig, old)

    def restore(self):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


#: exit status of an interrupted scenario (128 + SIGINT, as shells report it)
EXIT_INTERRUPTED = 130


def scenario_main(
    run: Callable[[ScenarioContext], dict],
    doc: str | None,
    argv: Sequence[str] | None = None,
    *,
    name: str | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> dict:
    """Parse the standard scenario arguments, run ``run(ctx)`` and write ``results.json``.

    Returns the results dictionary (with ``wall_time_s`` added if absent).
    Interrupted by Ctrl-C or SIGTERM, it writes what ``run`` returned (or
    ``{"interrupted": true}`` if it had returned nothing yet) and exits with
    status 130.
    """
    if name is None:
        name = Path(sys.argv[0]).stem if argv is None else "scenario"
        main_mod = sys.modules.get("__main__")
        if main_mod is not None and getattr(main_mod, "__file__", None):
            name = Path(main_mod.__file__).stem
    parser = _parser(name, doc)
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)
    _log.configure(args.level)
    if args.level is not None:
        # -q / -v for this process and its children (Dask workers, subprocesses): the progress
        # bars' quiet check and the children's logging read the level from the environment
        os.environ[_log.LEVEL_ENV] = logging.getLevelName(args.level)
    _progress.set_default(True)  # every fit of a scenario shows a progress bar (unless -q)
    std = {"quick", "out", "no_plots", "seed", "workers", "scheduler", "level"}
    extra = {k: v for k, v in vars(args).items() if k not in std}
    out = args.out if args.out is not None else Path("physim-out") / name
    _prepare_out(name, out)
    if not args.no_plots:
        from . import viz

        viz.ensure_offscreen()
    ctx = ScenarioContext(
        name=name,
        quick=args.quick,
        out=out,
        plots=not args.no_plots,
        seed=args.seed,
        extra=extra,
        workers=args.workers,
        scheduler=args.scheduler,
    )
    from ._jit import compile_stats

    interrupts = _Interrupts()
    interrupts.install()
    t0 = time.perf_counter()
    try:
        try:
            results = run(ctx) or {}
        except KeyboardInterrupt:
            interrupts.seen = True
            results = {}
        interrupts.install(interrupts._ignore)  # let the results be written
        results.setdefault("wall_time_s", time.perf_counter() - t0)
        results.setdefault("quick", bool(args.quick))
        if interrupts.seen:
            results["interrupted"] = True
        path = write_json_atomic(out / "results.json", results)
        seconds, n = compile_stats()
        if n:
            ctx.log(f"Numba compilation took {seconds:.1f} s ({n} functions; cached for the next runs)")
        ctx.log(f"wrote {path}")
    finally:
        interrupts.restore()
    if interrupts.seen:
        ctx.log(f"interrupted: partial results in {out}/")
        raise SystemExit(EXIT_INTERRUPTED)
    return results
