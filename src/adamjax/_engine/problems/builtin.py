"""What a built-in problem declares: its spec keys, dimension, constructor and checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from ..params import Param
from .base import Problem


def device_array(x, dtype=None) -> jax.Array:
    """A device array of host values ``x`` in ``dtype``, without compiling anything.

    The values are converted in NumPy (``np.asarray(x, dtype)``: a strong dtype, NumPy's
    casting, no overflow check) and transferred with ``jax.device_put``, which gives
    64-bit values JAX's canonical dtype (32-bit without x64). ``jnp.asarray`` would
    compile a small program for every new shape and dtype, 20–80 ms each when nothing
    is cached, which a small sweep pays for every array of its problem.
    """
    return jax.device_put(np.asarray(x, dtype))


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
