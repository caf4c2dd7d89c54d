"""The registry of built-in problems: one entry per ``problem.kind``.

Adding a built-in problem = one module in this folder that defines the problem
class and its :class:`~adamjax._engine.problems.builtin.Builtin` entry
(``ENTRY``), plus one line in :data:`BUILTINS` below. The spec schema,
validation, :func:`problem_dim` and :func:`make_problem` all read the entry.
"""

from __future__ import annotations

from ..errors import SpecError
from ..params import did_you_mean, fmt
from . import digits, linear_regression, quadratic, reddi, regression, zhang
from .base import Problem
from .builtin import Builtin

BUILTINS: dict[str, Builtin] = {}


def register_problem(entry: Builtin) -> Builtin:
    """Add a built-in problem (``problem.kind = entry.kind``) to the registry."""
    BUILTINS[entry.kind] = entry
    return entry


for _module in (quadratic, zhang, reddi, regression, linear_regression, digits):
    register_problem(_module.ENTRY)


def unknown_kind(kind: str) -> str:
    """Why ``kind`` is not a problem kind (the spec check and :func:`entry` say it)."""
    return (
        f'must be one of {", ".join(BUILTINS)}, or "module:callable" for your own '
        f"problem{did_you_mean(kind, BUILTINS)}"
    )


def entry(kind: str) -> Builtin:
    """The registry entry of ``kind``; raises :class:`SpecError` for an unknown kind."""
    if kind not in BUILTINS:
        raise SpecError(f"problem.kind = {fmt(kind)}: {unknown_kind(kind)}")
    return BUILTINS[kind]


def resolve(table: dict) -> dict:
    """A ``[problem]`` table with the kind's defaults filled in and its values parsed.

    Raises :class:`SpecError` for a key the kind does not have, a bad value, or a
    failed cross-key check.
    """
    e = entry(table.get("kind", "quadratic"))
    out = {"kind": e.kind}
    for k, v in table.items():
        if k == "kind":
            continue
        if k not in e.params:
            raise SpecError(
                f"problem.{k} = {fmt(v)}: not a parameter of problem {e.kind!r} "
                f"(its parameters: {', '.join(sorted(e.params))})" + did_you_mean(k, e.params)
            )
        out[k] = v if v is None else e.params[k].parse(f"problem.{k}", v)
    for k, p in e.params.items():
        out.setdefault(k, p.default)
    if e.check is not None and (msg := e.check(out)):
        raise SpecError(msg)
    return out


def problem_dim(table: dict) -> int:
    """Dimension of θ for a ``[problem]`` table (without building the problem)."""
    t = resolve(table)
    return int(BUILTINS[t["kind"]].dim(t))


def make_problem(table: dict, dtype) -> Problem:
    """Build a built-in problem from a ``[problem]`` table (missing keys take their
    defaults), with its arrays in ``dtype``."""
    t = resolve(table)
    return BUILTINS[t["kind"]].build(t, dtype)
