"""The problem of a grid point: a built-in from the registry, the user's own callable
(``problem.kind = "module:callable"``), or a problem object given to ``adamjax.run``.

A user kind names a module and a callable in it. The module is looked up beside
the spec file first, then on ``sys.path``; the callable is called with the other
keys of ``[problem]`` as keyword arguments and must return an adamjax problem
(e.g. :func:`adamjax.finite_sum_problem`). **This runs the user's own code**, as a
``conftest.py`` does; nothing else in a spec is ever imported or evaluated. Every
failure — the import, a missing attribute, an exception inside the callable, a
wrong return type — is one :class:`SpecError` naming ``problem.kind``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path

import jax
import numpy as np

from .._engine.errors import SpecError, raised
from .._engine.problems.base import Problem, cast_problem
from .._engine.problems.registry import make_problem

# The kind of a spec whose problem is an object given to ``adamjax.run(problem=…)``.
OBJECT_KIND = "<object>"


def is_user_kind(kind: str) -> bool:
    """Whether ``problem.kind`` is the user's (``module:callable``, or an object)."""
    return ":" in kind or kind == OBJECT_KIND


def _load_module(name: str, spec_dir: Path | None):
    if spec_dir is not None:
        path = spec_dir / (name.replace(".", "/") + ".py")
        if path.is_file():
            # Keyed by the file and its content: an edited module is loaded afresh.
            digest = hashlib.sha256(str(path).encode() + path.read_bytes()).hexdigest()[:12]
            key = f"adamjax_user_{digest}_{name}"
            if key in sys.modules:
                return sys.modules[key]
            spec = importlib.util.spec_from_file_location(key, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[key] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[key]
                raise
            return module
    return importlib.import_module(name)


def load_callable(kind: str, spec_dir: Path | None = None):
    """The callable that ``problem.kind = "module:callable"`` names, and its module."""
    name, _, attr = kind.partition(":")
    where = f"beside the spec ({spec_dir}) or on sys.path" if spec_dir else "on sys.path"
    if not name or not attr:
        raise SpecError(f'problem.kind = "{kind}": expected "module:callable"')
    try:
        module = _load_module(name, spec_dir)
    except ModuleNotFoundError as e:
        if e.name == name.split(".")[0] or e.name == name:
            raise SpecError(f'problem.kind = "{kind}": no module {name!r} {where}') from None
        raise SpecError(f'problem.kind = "{kind}": importing {name}: {raised(e)}') from None
    except Exception as e:  # noqa: BLE001 - the user's module: any failure is one line
        raise SpecError(f'problem.kind = "{kind}": importing {name}: {raised(e)}') from None
    fn = vars(module).get(attr)
    if fn is None:
        raise SpecError(f'problem.kind = "{kind}": module {name!r} has no attribute {attr!r}')
    if not callable(fn):
        raise SpecError(f'problem.kind = "{kind}": {name}.{attr} is not callable')
    return fn, module


def build_user(table: dict, spec_dir: Path | None = None) -> tuple[Problem, dict]:
    """Call the user's callable with the table's other keys; returns the problem and
    provenance attributes (the module's file and the SHA-256 of its source)."""
    kind = table["kind"]
    fn, module = load_callable(kind, spec_dir)
    # A copy: grid points share their values (``spec.grid_points``), and the user's
    # code may change an argument in place.
    kwargs = copy.deepcopy({k: v for k, v in table.items() if k != "kind"})
    try:
        obj = fn(**kwargs)
    except Exception as e:  # noqa: BLE001 - the user's code
        raise SpecError(
            f'problem.kind = "{kind}": {kind.partition(":")[2]}(…) raised {raised(e)}'
        ) from None
    if not isinstance(obj, Problem):
        raise SpecError(
            f'problem.kind = "{kind}": returned {type(obj).__name__}, expected an adamjax '
            "problem (e.g. adamjax.finite_sum_problem(loss, data, init))"
        )
    info = {"problem_kind": kind, "problem_hash": problem_hash(obj)}
    file = getattr(module, "__file__", None)
    if file:
        info["problem_module"] = str(Path(file).resolve())
        info["problem_source_sha256"] = hashlib.sha256(Path(file).read_bytes()).hexdigest()
    return obj, info


def problem_hash(problem: Problem) -> str:
    """A digest of a problem object: its class, its array data and its static fields
    (functions by module, qualified name and compiled code), the same in every process —
    what a run depends on beyond the spec, so that a store of another problem is not
    resumed."""
    h = hashlib.sha256()

    def feed(v):
        if isinstance(v, jax.Array | np.ndarray):
            a = np.asarray(v)
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(np.ascontiguousarray(a).tobytes())
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            h.update(f"{type(v).__module__}.{type(v).__qualname__}".encode())
            for f in dataclasses.fields(v):
                h.update(f.name.encode())
                feed(getattr(v, f.name))
        elif isinstance(v, dict):
            for k in sorted(v, key=str):
                h.update(str(k).encode())
                feed(v[k])
        elif isinstance(v, list | tuple):
            for x in v:
                feed(x)
        elif callable(v):
            code = getattr(v, "__code__", None)
            h.update(f"{getattr(v, '__module__', '')}.{getattr(v, '__qualname__', '')}".encode())
            if code is not None:
                feed_code(code)
        else:
            h.update(repr(v).encode())

    def feed_code(code):
        # Nested code objects (a lambda or def inside the loss) by their contents: their
        # repr holds a memory address, different in every process.
        h.update(code.co_code)
        h.update(repr(code.co_names).encode())
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                feed_code(c)
            else:
                h.update(repr(c).encode())

    feed(problem)
    return h.hexdigest()[:16]


class Problems:
    """Builds (once per distinct table) the problem of every grid point of a plan."""

    def __init__(self, spec_dir: Path | None = None, override: Problem | None = None):
        self.spec_dir, self.override = spec_dir, override
        self.provenance: dict[str, str] = {}
        self._cache: dict[str, Problem] = {}

    def __call__(self, table: dict, dtype) -> Problem:
        key = json.dumps([table, str(dtype)], sort_keys=True, default=str)
        if key not in self._cache:
            if self.override is not None:
                p = cast_problem(self.override, dtype)
                self.provenance.update(
                    problem_class=f"{type(p).__module__}.{type(p).__qualname__}",
                    problem_hash=problem_hash(self.override),
                )
            elif is_user_kind(table["kind"]):
                p, info = build_user(table, self.spec_dir)
                p = cast_problem(p, dtype)
                self.provenance.update(info)
            else:
                p = _build_or_refuse(table, dtype)
            self._cache[key] = p
        return self._cache[key]


def _build_or_refuse(table: dict, dtype) -> Problem:
    """A built-in problem; one that does not fit in memory is refused in one line."""
    try:
        return make_problem(table, dtype)
    except MemoryError:
        pass
    except RuntimeError as e:  # XLA's allocation failure (RESOURCE_EXHAUSTED)
        if "RESOURCE_EXHAUSTED" not in str(e) and "Out of memory" not in str(e):
            raise
    sizes = ", ".join(f"problem.{k} = {v}" for k, v in table.items() if isinstance(v, int))
    raise SpecError(f"problem: {sizes or table['kind']}: the problem does not fit in memory")
