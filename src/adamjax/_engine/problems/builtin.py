"""What a built-in problem declares: its spec keys, dimension, constructor and checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..params import Param
from .base import Problem


@dataclass(frozen=True)
class Builtin:
    """A built-in problem as the registry and the spec schema see it.

    Attributes:
        kind: the spec's ``problem.kind``.
        params: its other ``[problem]`` keys, each a :class:`~adamjax.Param` with its
            default (None: derived in ``build``).
        build: ``(table, dtype) -> Problem`` from a table with every key present.
        dim: ``table -> int``, the dimension of θ without building the problem.
        check: optional cross-key check ``table -> "key = value: reason" or None``.
        stream: a fresh sample every step (only the ``iid`` scheme applies).
    """

    kind: str
    params: dict[str, Param]
    build: Callable[[dict, Any], Problem]
    dim: Callable[[dict], int]
    check: Callable[[dict], str | None] | None = None
    stream: bool = False
