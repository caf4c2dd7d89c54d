"""The package's structure (read from the source with ``ast``, nothing imported):

* layers with imports pointing down only — ``_engine`` → ``_theory`` → ``_launch`` →
  the public API (``adamjax/__init__.py``) → the applications (``cli``, ``demo``,
  ``__main__``), which use only the public API;
* no import circle among the package's modules (function-level imports included);
* the figure scripts (``experiments/``) and the benchmarks import no private module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "adamjax"
LAYERS = ("_engine", "_theory", "_launch")
APPS = {"adamjax.cli", "adamjax.demo", "adamjax.info", "adamjax.__main__"}


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = ["adamjax", *f.relative_to(PKG).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return (PKG.parent / Path(*name.split(".")) / "__init__.py").is_file()


def imports(name: str, path: Path) -> set[str]:
    """Every ``adamjax`` module that ``name`` imports, anywhere in the file."""
    package = name if _is_package(name) else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "adamjax"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "adamjax":
                continue
            # ``from pkg import mod`` imports a module; ``from mod import name`` a name.
            subs = {f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in MODULES}
            out |= subs or {mod}
    return out


GRAPH = {name: imports(name, path) & set(MODULES) for name, path in MODULES.items()}


def rank(name: str) -> int:
    """0 engine, 1 theory, 2 launch, 3 the public API, 4 the applications."""
    parts = name.split(".")
    if name in APPS:
        return 4
    if len(parts) > 1 and parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    if name == "adamjax":
        return 3
    raise AssertionError(f"{name}: a module outside the layers; place it in one")


def test_every_module_has_a_layer():
    for name in MODULES:
        rank(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_point_down(name):
    up = sorted(m for m in GRAPH[name] if rank(m) > rank(name) and m not in APPS)
    assert not up, f"{name} imports from a layer above it: {up}"


@pytest.mark.parametrize("name", sorted(APPS))
def test_applications_use_the_public_api(name):
    private = sorted(m for m in imports(name, MODULES[name]) if _private(m))
    assert not private, f"{name} imports private modules {private}"


def _private(module: str) -> bool:
    return any(p.startswith("_") and not p.startswith("__") for p in module.split("."))


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m) :], m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_no_import_circle():
    c = _cycle(GRAPH)
    assert c is None, "import circle: " + " → ".join(c)


def test_checks_can_fail():
    """The detectors find what they look for (a test that cannot fail proves nothing)."""
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert rank("adamjax._engine.simulate") < rank("adamjax._theory.apt") < rank("adamjax")
    assert _private("adamjax._launch.run") and not _private("adamjax.demo")


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "experiments").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py")),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_scripts_use_the_public_api(path):
    bad = sorted(m for m in imports("script", path) if _private(m))
    assert not bad, f"{path.name} imports private modules {bad}"


def test_modules_are_short():
    """One concept per module, short enough to read in one sitting."""
    long = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    assert max(long.values()) <= 600, sorted(long.items(), key=lambda x: -x[1])[:3]
