"""The ``physim`` command (also ``python -m physim``).

``physim list [--all]``                  scenarios and their one-line summaries
``physim run NAME [--quick] [--out DIR] [--no-plots] [--seed N] [--workers N] [--scheduler ADDRESS] [OPTIONS]``
                                        run one scenario (``physim run NAME --help``: its options)
``physim describe NAME``                 the scenario's full notes (what it reproduces, what was measured)
``physim demo [--out DIR] [--full]``      every scenario (quick mode by default)
``physim view PATH [--html OUT.html]``    interactive 3D view of a ``.vtu`` or a scenario's output directory
``physim info``                          versions, Numba threads, cache directory

``-q`` shows only warnings and errors (no progress bars), ``-v`` adds debug
messages; ``--version`` prints the version.

Errors print one line and exit with status 2 (user mistakes) or 1 (a scenario
failed); no traceback for user mistakes. Ctrl-C is passed on to the running
scenario, which stops, writes what it has (pictures, ``results.json`` with
``"interrupted": true``) and exits; the command says where the partial
results are and exits with status 130.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib.resources
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import _log
from ._progress import PROGRESS_ENV
from .errors import ScenarioError

__all__ = ["main", "scenario_dir", "list_scenarios", "describe", "summary"]

#: exit status of a run stopped by Ctrl-C (128 + SIGINT, as shells report it)
EXIT_INTERRUPTED = 130


def scenario_dir() -> Path:
    """Directory holding the scenario scripts.

    ``$PHYSIM_SCENARIOS`` if set, else the ``physim.scenarios`` package: the
    repository's ``scenarios/`` directory in a source checkout or editable
    install, the installed copy otherwise.
    """
    env = os.environ.get("PHYSIM_SCENARIOS")
    if env:
        return Path(env)
    try:
        return Path(str(importlib.resources.files("physim.scenarios")))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - a broken install
        return Path(__file__).resolve().parent.parent / "scenarios"


def _docstring(path: Path) -> str:
    """Module docstring of a script, without importing it; raises ScenarioError if unreadable."""
    try:
        # bytes: the parser honours a coding declaration and rejects invalid UTF-8 with SyntaxError
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError) as exc:
        raise ScenarioError(
            f"{path}: not a readable Python script ({exc.__class__.__name__}: {exc})"
        ) from None
    except OSError as exc:
        raise ScenarioError(f"cannot read {path}: {exc.strerror or exc}") from None
    return ast.get_docstring(tree) or ""


def summary(path: Path) -> str:
    """First line of a script's docstring, or a note saying why there is none."""
    try:
        doc = _docstring(path)
    except ScenarioError as exc:
        reason = str(exc).split("(", 1)[-1].split(":", 1)[0] if "(" in str(exc) else "unreadable"
        return f"(unreadable script: {reason})"
    return doc.strip().splitlines()[0] if doc.strip() else ""


def describe(path: Path) -> str:
    """The full docstring of a script."""
    return _docstring(path).strip()


def list_scenarios(include_benchmarks: bool = False) -> dict[str, Path]:
    """Map scenario name -> script path (``benchmarks/NAME`` for benchmarks)."""
    d = scenario_dir()
    if not d.is_dir():
        raise ScenarioError(f"scenario directory not found: {d} (set PHYSIM_SCENARIOS)")
    found = {p.stem: p for p in sorted(d.glob("*.py")) if not p.name.startswith("_")}
    if include_benchmarks and (d / "benchmarks").is_dir():
        for p in sorted((d / "benchmarks").glob("*.py")):
            if not p.name.startswith("_"):
                found[f"benchmarks/{p.stem}"] = p
    return found


def _resolve(name: str) -> tuple[str, Path]:
    scen = list_scenarios(include_benchmarks=True)
    key = name[:-3] if name.endswith(".py") else name
    if key in scen:
        return key, scen[key]
    close = difflib.get_close_matches(key, list(scen), n=3, cutoff=0.6)
    close += [k for k in scen if key.lower() in k.lower() and k not in close]
    hint = f"; did you mean {' or '.join(close[:3])}?" if close else "; run 'physim list' to see them"
    raise ScenarioError(f"unknown scenario {name!r}{hint}")


def _prepare_out(path: Path) -> Path:
    """Create the output directory and check that files can be written there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ScenarioError(f"cannot write to the output directory {path}: {exc.strerror or exc}") from None
    return path


class _Child:
    """A scenario process that Ctrl-C (SIGINT), SIGTERM and SIGHUP reach exactly once each.

    The child runs in its own process group, so a Ctrl-C at the terminal reaches
    only this process, which passes it on and waits: the scenario stops its
    fit, writes its partial results and exits. A second Ctrl-C is passed on as
    well; a third kills the scenario.
    """

    def __init__(self, cmd: list[str], env: dict[str, str]):
        kw = {"start_new_session": True} if os.name == "posix" else {}
        self.proc = subprocess.Popen(cmd, env=env, **kw)
        self.interrupts = 0

    def _forward(self, signum, _frame) -> None:
        if signum == signal.SIGINT:
            self.interrupts += 1
            if self.interrupts == 1:
                print(
                    "physim: interrupted; waiting for the scenario to stop and save its results "
                    "(Ctrl-C again to stop it sooner)",
                    file=sys.stderr,
                    flush=True,
                )
            if self.interrupts >= 3:
                self.proc.kill()
                return
        else:
            self.interrupts = max(self.interrupts, 1)
        try:
            self.proc.send_signal(signum)
        except ProcessLookupError:  # already gone
            pass

    def wait(self) -> int:
        handled = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
        previous = {s: signal.signal(s, self._forward) for s in handled}
        try:
            return self.proc.wait()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def _run_script(path: Path, argv: list[str]) -> tuple[int, bool]:
    """Run a script in a child process; returns (exit status, interrupted)."""
    env = dict(os.environ)
    env[_log.LEVEL_ENV] = logging.getLevelName(_log.logger.getEffectiveLevel())
    env.setdefault(PROGRESS_ENV, "1")
    child = _Child([sys.executable, str(path), *argv], env)
    rc = child.wait()
    interrupted = child.interrupts > 0 or rc in (EXIT_INTERRUPTED, -signal.SIGINT)
    return rc, interrupted


def _where(out: Path) -> str:
    res = out / "results.json"
    if res.is_file():
        return f'partial results in {out}/ (results.json says "interrupted": true)'
    if out.is_dir() and any(out.iterdir()):
        return f"what it wrote is in {out}/"
    return "it had not written any results yet"


def _cmd_list(args) -> int:
    scen = list_scenarios(include_benchmarks=args.all)
    width = max((len(k) for k in scen), default=0)
    for name, path in scen.items():
        print(f"{name:<{width}}  {summary(path)}")
    if not scen:
        print("no scenarios found in", scenario_dir())
    return 0


def _cmd_describe(args) -> int:
    name, path = _resolve(args.name)
    print(f"{name}  ({path})\n")
    print(describe(path) or "(no description)")
    print(f"\nOptions: physim run {name} --help")
    return 0


def _forward_flags(args) -> list[str]:
    out = []
    if getattr(args, "quick", False):
        out.append("--quick")
    if getattr(args, "no_plots", False):
        out.append("--no-plots")
    if getattr(args, "seed", None) is not None:
        out += ["--seed", str(args.seed)]
    if getattr(args, "workers", None) is not None:
        out += ["--workers", str(args.workers)]
    if getattr(args, "scheduler", None) is not None:
        out += ["--scheduler", args.scheduler]
    return out


def _cmd_run(args) -> int:
    name, path = _resolve(args.name)
    extra = list(args.extra)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    if any(a in ("-h", "--help") for a in extra):
        rc, _ = _run_script(path, ["--help"])
        return 0 if rc == 0 else 1
    # the standard options may also come after NAME (argparse leaves them in the remainder)
    std = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    std.add_argument("--out", type=Path, default=args.out)
    std.add_argument("--quick", action="store_true", default=args.quick)
    std.add_argument("--no-plots", action="store_true", default=args.no_plots)
    std.add_argument("--seed", type=int, default=args.seed)
    args, extra = std.parse_known_args(extra, namespace=args)
    out = Path(args.out) if args.out is not None else Path("physim-out") / name
    _prepare_out(out)
    rc, interrupted = _run_script(path, [*_forward_flags(args), "--out", str(out), *extra])
    if interrupted:
        print(f"physim: {name} interrupted; {_where(out)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if rc != 0:
        print(f"physim: scenario {name} failed (exit status {rc})", file=sys.stderr)
        return 1
    return 0


def _cmd_demo(args) -> int:
    scen = list_scenarios()
    if not scen:
        raise ScenarioError(f"no scenarios found in {scenario_dir()}")
    root = _prepare_out(Path(args.out))
    failed = []
    t_all = time.perf_counter()
    for i, (name, path) in enumerate(scen.items(), 1):
        print(f"=== [{i}/{len(scen)}] {name}: {summary(path)}", flush=True)
        flags = ([] if args.full else ["--quick"]) + ["--out", str(root / name)]
        if args.no_plots:
            flags.append("--no-plots")
        t0 = time.perf_counter()
        rc, interrupted = _run_script(path, flags)
        if interrupted:
            done = ", ".join(list(scen)[: i - 1]) or "none"
            print(
                f"physim: demo interrupted during {name}; {_where(root / name)}; "
                f"finished before it: {done} (under {root}/)",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
        status = "ok" if rc == 0 else f"FAILED (exit status {rc})"
        print(f"=== {name}: {status} in {time.perf_counter() - t0:.1f} s", flush=True)
        if rc != 0:
            failed.append(name)
    print(f"demo finished in {time.perf_counter() - t_all:.1f} s; results and pictures under {root}/")
    if failed:
        print(f"physim: {len(failed)} scenario(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _cmd_view(args) -> int:
    from . import viz

    path = Path(args.path)
    try:
        meshes = viz.read_view_meshes(path)
    except (FileNotFoundError, ValueError) as exc:
        raise ScenarioError(str(exc)) from None
    if args.html is not None:
        out = Path(args.html)
        _prepare_out(out.parent if str(out.parent) else Path("."))
        title = args.title or (path.name if path.is_dir() else path.stem)
        viz.write_view_html(out, meshes, fields=args.field or None, title=title)
        print(f"wrote {out} (open it in a browser; no server needed)")
        return 0
    if viz.headless():
        raise ScenarioError(
            "no display for an interactive window (DISPLAY is not set or PHYSIM_OFFSCREEN=1); "
            f"write a page instead: physim view {path} --html view.html"
        )
    viz.show_interactive(meshes, fields=args.field or None, title=args.title or path.name)
    return 0


def _cmd_info(args) -> int:
    import numba
    import numpy
    import scipy

    from . import __version__

    lines = [
        ("physim", __version__),
        ("python", sys.version.split()[0]),
        ("numpy", numpy.__version__),
        ("scipy", scipy.__version__),
        ("numba", numba.__version__),
    ]
    for mod in ("meshio", "pyvista", "matplotlib", "tqdm", "dask", "trame_vtk"):
        try:
            lines.append((mod, __import__(mod).__version__))
        except ImportError:
            lines.append((mod, "not installed"))
        except AttributeError:
            lines.append((mod, "installed"))
    lines.append(("numba threads", str(numba.config.NUMBA_NUM_THREADS)))
    lines.append(("numba threading layer", str(numba.config.THREADING_LAYER)))
    cache = numba.config.CACHE_DIR or f"__pycache__ next to each module ({Path(__file__).parent})"
    lines.append(("numba cache dir", cache))
    lines.append(("scenarios", str(scenario_dir())))
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k:<{width}}  {v}")
    return 0


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    verbosity = argparse.ArgumentParser(add_help=False)
    g = verbosity.add_mutually_exclusive_group()
    g.add_argument(
        "-q", "--quiet", action="store_const", const=logging.WARNING, dest="level", default=argparse.SUPPRESS,
        help="only warnings and errors, no progress bars",
    )  # fmt: skip
    g.add_argument(
        "-v", "--verbose", action="store_const", const=logging.DEBUG, dest="level", default=argparse.SUPPRESS,
        help="also debug messages",
    )  # fmt: skip
    p = argparse.ArgumentParser(
        prog="physim",
        description="Differentiable physics solvers: scenarios, views and info.",
        parents=[verbosity],
        epilog="'physim COMMAND --help' shows a command's options.",
    )
    p.add_argument("--version", action="version", version=f"physim {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    pl = sub.add_parser("list", help="list the scenarios", parents=[verbosity])
    pl.add_argument("--all", action="store_true", help="include benchmarks")
    pl.set_defaults(func=_cmd_list)
    pr = sub.add_parser(
        "run",
        help="run one scenario (or benchmarks/NAME)",
        parents=[verbosity],
        description="Run one scenario; 'physim run NAME --help' lists its own options.",
    )
    pr.add_argument("name", help="scenario name (see 'physim list')")
    pr.add_argument("--quick", action="store_true", help="reduced problem that runs in seconds")
    pr.add_argument("--out", type=Path, default=None, help="output directory (default ./physim-out/NAME/)")
    pr.add_argument("--no-plots", action="store_true", help="do not render pictures")
    pr.add_argument("--seed", type=int, default=None, help="random seed")
    pr.add_argument("--workers", type=int, default=None, help="worker processes for independent runs")
    pr.add_argument(
        "--scheduler", default=None, help="Dask scheduler address or scheduler file for independent runs"
    )
    pr.add_argument("extra", nargs=argparse.REMAINDER, help="further options passed to the scenario")
    pr.set_defaults(func=_cmd_run)
    pde = sub.add_parser("describe", help="a scenario's full notes", parents=[verbosity])
    pde.add_argument("name", help="scenario name (see 'physim list')")
    pde.set_defaults(func=_cmd_describe)
    pd = sub.add_parser(
        "demo", help="run every scenario in quick mode, writing under ./physim-out/", parents=[verbosity]
    )
    pd.add_argument("--out", default="physim-out", help="output root (default ./physim-out)")
    pd.add_argument("--full", action="store_true", help="full-size runs instead of quick mode")
    pd.add_argument("--no-plots", action="store_true", help="do not render pictures")
    pd.set_defaults(func=_cmd_demo)
    pv = sub.add_parser(
        "view",
        help="interactive 3D view of a .vtu file or a scenario's output directory",
        parents=[verbosity],
        description="Show a mesh and its fields in an interactive window, or write a standalone HTML page.",
    )
    pv.add_argument("path", help="a mesh file (.vtu, .vtk, .msh, ...) or a directory of .vtu files")
    pv.add_argument(
        "--html", metavar="OUT.html", default=None, help="write a standalone page instead of a window"
    )
    pv.add_argument("--field", action="append", default=None, help="field(s) to offer (default: all)")
    pv.add_argument("--title", default=None, help="title shown in the view")
    pv.set_defaults(func=_cmd_view)
    pi = sub.add_parser("info", help="versions, Numba threads and cache directory", parents=[verbosity])
    pi.set_defaults(func=_cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``physim`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    _log.configure(getattr(args, "level", None))
    try:
        return args.func(args)
    except ScenarioError as exc:
        print(f"physim: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("physim: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
