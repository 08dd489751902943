"""The ``physim`` command.

``physim list``                      scenarios and their one-line summaries
``physim run NAME [--quick] [--out DIR] [--no-plots] [--seed N] [--workers N] [--scheduler ADDRESS]``
``physim demo [--out DIR] [--full]``  every scenario (quick mode by default)
``physim info``                      versions, Numba threads, cache directory

Errors print one line and exit with status 2 (user mistakes) or 1 (a scenario
failed); no traceback for user mistakes.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import time
from pathlib import Path

from .errors import ScenarioError

__all__ = ["main", "scenario_dir", "list_scenarios"]


def scenario_dir() -> Path:
    """Directory holding the scenario scripts.

    ``$PHYSIM_SCENARIOS`` if set, else ``scenarios/`` next to the package (a
    source checkout / editable install), else ``./scenarios``.
    """
    env = os.environ.get("PHYSIM_SCENARIOS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent / "scenarios"
    if here.is_dir():
        return here
    return Path.cwd() / "scenarios"


def _summary(path: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    except (SyntaxError, OSError):
        return "(unreadable script)"
    return (doc or "").strip().splitlines()[0] if doc else ""


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


def _resolve(name: str) -> Path:
    scen = list_scenarios(include_benchmarks=True)
    key = name[:-3] if name.endswith(".py") else name
    if key in scen:
        return scen[key]
    close = [k for k in scen if key.lower() in k.lower()]
    hint = f"; did you mean {', '.join(close)}?" if close else "; run 'physim list' to see them"
    raise ScenarioError(f"unknown scenario {name!r}{hint}")


def _run_script(path: Path, argv: list[str]) -> int:
    cmd = [sys.executable, str(path), *argv]
    return subprocess.call(cmd)


def _cmd_list(args) -> int:
    scen = list_scenarios(include_benchmarks=args.all)
    width = max((len(k) for k in scen), default=0)
    for name, path in scen.items():
        print(f"{name:<{width}}  {_summary(path)}")
    if not scen:
        print("no scenarios found in", scenario_dir())
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
    path = _resolve(args.name)
    flags = _forward_flags(args)
    if args.out is not None:
        flags += ["--out", str(args.out)]
    rc = _run_script(path, flags + list(args.extra))
    if rc != 0:
        print(f"physim: scenario {args.name} failed (exit status {rc})", file=sys.stderr)
        return 1
    return 0


def _cmd_demo(args) -> int:
    scen = list_scenarios()
    if not scen:
        raise ScenarioError(f"no scenarios found in {scenario_dir()}")
    root = Path(args.out)
    failed = []
    t_all = time.perf_counter()
    for i, (name, path) in enumerate(scen.items(), 1):
        print(f"=== [{i}/{len(scen)}] {name}: {_summary(path)}", flush=True)
        flags = ([] if args.full else ["--quick"]) + ["--out", str(root / name)]
        if args.no_plots:
            flags.append("--no-plots")
        t0 = time.perf_counter()
        rc = _run_script(path, flags)
        status = "ok" if rc == 0 else f"FAILED (exit status {rc})"
        print(f"=== {name}: {status} in {time.perf_counter() - t0:.1f} s", flush=True)
        if rc != 0:
            failed.append(name)
    print(f"demo finished in {time.perf_counter() - t_all:.1f} s; results and pictures under {root}/")
    if failed:
        print(f"physim: {len(failed)} scenario(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
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
    for mod in ("meshio", "pyvista", "matplotlib", "tqdm"):
        try:
            lines.append((mod, __import__(mod).__version__))
        except ImportError:
            lines.append((mod, "not installed"))
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
    p = argparse.ArgumentParser(
        prog="physim", description="Differentiable physics solvers: scenarios and info."
    )
    sub = p.add_subparsers(dest="command", required=True)
    pl = sub.add_parser("list", help="list the scenarios")
    pl.add_argument("--all", action="store_true", help="include benchmarks")
    pl.set_defaults(func=_cmd_list)
    pr = sub.add_parser("run", help="run one scenario (or benchmarks/NAME)")
    pr.add_argument("name")
    pr.add_argument("--quick", action="store_true", help="reduced problem that runs in seconds")
    pr.add_argument("--out", type=Path, default=None, help="output directory (default ./physim-out/NAME/)")
    pr.add_argument("--no-plots", action="store_true", help="do not render pictures")
    pr.add_argument("--seed", type=int, default=None)
    pr.add_argument("--workers", type=int, default=None, help="worker processes for independent runs")
    pr.add_argument(
        "--scheduler", default=None, help="Dask scheduler address or scheduler file for independent runs"
    )
    pr.add_argument("extra", nargs=argparse.REMAINDER, help="further options passed to the script")
    pr.set_defaults(func=_cmd_run)
    pd = sub.add_parser("demo", help="run every scenario in quick mode, writing under ./physim-out/")
    pd.add_argument("--out", default="physim-out", help="output root (default ./physim-out)")
    pd.add_argument("--full", action="store_true", help="full-size runs instead of quick mode")
    pd.add_argument("--no-plots", action="store_true")
    pd.set_defaults(func=_cmd_demo)
    pi = sub.add_parser("info", help="versions, Numba threads and cache directory")
    pi.set_defaults(func=_cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``physim`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ScenarioError as exc:
        print(f"physim: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("physim: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
