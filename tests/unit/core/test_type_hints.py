"""Every public function and method of physim carries type hints on all its parameters and its return.

"Public" is what ``__all__`` exports, from ``physim`` down through its subpackages and their
modules: module-level functions, and for exported classes their public methods (names without
a leading underscore, plus ``__init__`` and ``__call__``), properties, class- and static methods,
including those inherited from physim's own base classes. Numba dispatchers are checked through
the Python function they compile. ``self`` / ``cls`` need no annotation.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import sys
import types
import typing

import pytest

import physim

CHECKED_DUNDERS = {"__init__", "__call__"}


def _modules() -> list[types.ModuleType]:
    """physim and every module under it that defines ``__all__`` (private modules excluded)."""
    mods = [physim]
    for info in pkgutil.walk_packages(physim.__path__, "physim."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        if info.name.startswith("physim.scenarios"):
            continue  # scenario scripts: run by the CLI, not imported as an API
        mod = importlib.import_module(info.name)
        if hasattr(mod, "__all__"):
            mods.append(mod)
    return mods


def _function(obj):
    """The plain Python function behind ``obj`` (numba dispatcher, wrapper), or None."""
    py = getattr(obj, "py_func", None)  # numba
    if py is not None:
        obj = py
    obj = inspect.unwrap(obj) if callable(obj) else obj
    if isinstance(obj, (types.FunctionType, types.MethodType)):
        return obj
    return None


def _missing(fn, name: str, skip_first: bool) -> list[str]:
    out = []
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return out
    params = list(sig.parameters.values())
    if skip_first and params and params[0].name in ("self", "cls"):
        params = params[1:]
    for p in params:
        if p.annotation is inspect.Parameter.empty:
            out.append(f"{name}: parameter {p.name!r}")
    if sig.return_annotation is inspect.Signature.empty:
        out.append(f"{name}: return")
    return out


def _own_physim_class(cls) -> bool:
    return getattr(cls, "__module__", "").startswith("physim")


def _class_members(cls):
    """(qualified name, function, is_method) of the public callables of a physim class."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if not _own_physim_class(klass):
            continue
        for attr, raw in vars(klass).items():
            if attr in seen or (attr.startswith("_") and attr not in CHECKED_DUNDERS):
                continue
            seen.add(attr)
            label = f"{cls.__module__}.{cls.__qualname__}.{attr}"
            if isinstance(raw, property):
                if raw.fget is not None:
                    yield label, raw.fget, True
                continue
            if isinstance(raw, staticmethod):
                fn = _function(raw.__func__)
                if fn is not None:
                    yield label, fn, False
                continue
            if isinstance(raw, classmethod):
                fn = _function(raw.__func__)
                if fn is not None:
                    yield label, fn, True
                continue
            if isinstance(raw, type):
                continue
            fn = _function(raw)
            if fn is not None and _own_physim_class(fn):
                yield label, fn, True


def public_callables() -> dict[str, tuple[object, bool]]:
    """qualified name -> (function, is_method) for the whole public API."""
    found: dict[str, tuple[object, bool]] = {}
    done_classes: set[type] = set()
    for mod in _modules():
        for name in getattr(mod, "__all__", ()):
            obj = getattr(mod, name, None)
            if obj is None or isinstance(obj, types.ModuleType):
                continue
            if isinstance(obj, type):
                if not _own_physim_class(obj) or obj in done_classes:
                    continue
                done_classes.add(obj)
                for label, fn, is_method in _class_members(obj):
                    found.setdefault(label, (fn, is_method))
                continue
            fn = _function(obj)
            if fn is None or not _own_physim_class(fn):
                continue
            found.setdefault(f"{fn.__module__}.{fn.__qualname__}", (fn, False))
    return found


def coverage() -> tuple[int, list[str]]:
    """(number of public callables, [what lacks an annotation])."""
    api = public_callables()
    missing: list[str] = []
    for label, (fn, is_method) in sorted(api.items()):
        missing += _missing(fn, label, is_method)
    return len(api), missing


def test_the_walk_finds_the_public_api():
    api = public_callables()
    # a few names the walk must reach, across packages and kinds (function, method, property)
    for name in (
        "physim.eikonal.solve.solve",
        "physim.lattice.solve.solve",
        "physim.optim.minimize.minimize",
        "physim.ekf.checks.check_model",
        "physim.viz.write_view_html",
    ):
        assert name in api, name
    assert any(".__init__" in k for k in api)
    assert len(api) > 150


def test_the_check_catches_a_missing_annotation():
    def f(a, b: int = 1):
        return a

    def g(self, a: int) -> int:
        return a

    assert _missing(f, "f", False) == ["f: parameter 'a'", "f: return"]
    assert _missing(g, "g", True) == []


# the public API, package by package (every public callable falls under one of these)
PACKAGES = ["physim.optim", "physim.distributed", "physim.io", "physim.scenario", "physim.viz", "physim.eikonal", "physim.cli", "physim.errors", "physim.lattice", "physim.ekf", "physim.cardiac"]


def test_every_public_callable_belongs_to_a_checked_package():
    outside = [k for k in public_callables() if not any(k.startswith(p + ".") for p in PACKAGES)]
    assert outside == []


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_callable_is_fully_annotated(package):
    n, missing = coverage()
    missing = [m for m in missing if m.startswith(package + ".")]
    assert not missing, f"{len(missing)} missing annotation(s) in {package}:\n" + "\n".join(missing)


def _namespace(fn) -> dict:
    """The globals of ``fn``'s module plus what it imports only under ``if TYPE_CHECKING:``."""
    ns = dict(fn.__globals__)
    mod = sys.modules.get(fn.__module__)
    if mod is None or "TYPE_CHECKING" not in ns:
        return ns
    tree = ast.parse(inspect.getsource(mod))
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            block = ast.Module(body=node.body, type_ignores=[])
            exec(compile(block, mod.__file__, "exec"), ns)  # imports only
    return ns


def test_every_annotation_names_something_real():
    bad = []
    for label, (fn, _) in sorted(public_callables().items()):
        try:
            typing.get_type_hints(fn, globalns=_namespace(fn))
        except Exception as e:  # a misspelt or unimported name, or a malformed annotation
            bad.append(f"{label}: {type(e).__name__}: {e}")
    assert not bad, "annotations that do not evaluate:\n" + "\n".join(bad)


if __name__ == "__main__":
    n, missing = coverage()
    bad = {m.split(":")[0] for m in missing}
    print(f"{n - len(bad)}/{n} public callables fully annotated; {len(missing)} missing annotations")
    for m in missing:
        print(" ", m)
