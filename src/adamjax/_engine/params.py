"""Declared parameters: a key's type, default and range, in one place.

A :class:`Param` is how a spec key is declared — by the built-in problems
(``problems/*.py``) for their own keys and by the launcher's schema for the
other tables — so the type, the default and the admissible range of every key
live next to the code that uses it. ``Param.parse`` turns a raw value into the
normalised one or raises :class:`~adamjax.SpecError` naming the key.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import SpecError

INT, FLOAT, STR, BOOL, FLOATS, ANY = "int", "float", "str", "bool", "float|list", "any"


def fmt(v) -> str:
    """A value as it would be written in the spec (strings quoted)."""
    return json.dumps(v) if isinstance(v, str) else repr(v)


# What users coming from optax / PyTorch write for adamjax's names.
_ALIASES = {
    "beta1": "b1",
    "beta2": "b2",
    "epsilon": "eps",
    "lr": "schedule.c",
    "learning_rate": "schedule.c",
}


def closest(name: str, known) -> str | None:
    """The known name a mistyped ``name`` most likely meant (``beta1``, ``lr`` and other
    optax / PyTorch spellings included; a dotted alias names another table's key)."""
    known = list(known)
    last = name.rpartition(".")[2]
    alias = _ALIASES.get(last.lower())
    if alias is not None and "." in alias:
        return alias
    if alias is not None and (cand := name[: len(name) - len(last)] + alias) in known:
        return cand
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return close[0] if close else None


def did_you_mean(name: str, known) -> str:
    """``'; did you mean "b1"?'`` for :func:`closest`, else ``''``."""
    cand = closest(name, known)
    return f"; did you mean {fmt(cand)}?" if cand else ""


@dataclass(frozen=True)
class in_range:  # noqa: N801 - reads as a function where keys are declared
    """A check ``v ↦ reason or None`` for lo ≤ v ≤ hi (strict where ``*_open``); lists
    are checked element by element. ``str()`` gives the range for the documentation."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __call__(self, v):
        if isinstance(v, list):
            bad = [x for x in v if self(x)]
            return self(bad[0]) if bad else None
        if self.lo is not None and (v < self.lo or (self.lo_open and v == self.lo)):
            return f"must be {'>' if self.lo_open else '≥'} {self.lo}"
        if self.hi is not None and (v > self.hi or (self.hi_open and v == self.hi)):
            return f"must be {'<' if self.hi_open else '≤'} {self.hi}"
        return None

    def __str__(self):
        lo = "" if self.lo is None else f"{self.lo} {'<' if self.lo_open else '≤'} "
        hi = "" if self.hi is None else f" {'<' if self.hi_open else '≤'} {self.hi}"
        return f"{lo}x{hi}" if lo or hi else "any"


@dataclass(frozen=True)
class one_of:  # noqa: N801
    """A check ``v ↦ reason or None`` for v ∈ ``options`` (read at every check, so a
    registry passed as ``options`` may grow)."""

    options: Any

    def __call__(self, v):
        if v in self.options:
            return None
        hint = did_you_mean(v, self.options) if isinstance(v, str) else ""
        return f"must be one of {', '.join(self.options)}{hint}"

    def __str__(self):
        return ", ".join(f"`{o}`" for o in self.options)


@dataclass(frozen=True)
class Param:
    """One key: ``type`` (``"int"``, ``"float"``, ``"float|list"``, ``"str"``, ``"bool"``),
    ``default`` (None: required or derived) and an optional range ``check``."""

    type: str
    default: Any = None
    check: Callable[[Any], str | None] | None = None
    doc: str = ""

    def parse(self, key: str, v):
        """The normalised value of ``v`` for ``key``; raises :class:`SpecError`."""
        v = coerce(key, v, self.type)
        if self.check is not None and (msg := self.check(v)):
            raise SpecError(f"{key} = {fmt(v)}: {msg}")
        return v


def plain(v):
    """NumPy scalars and arrays as Python numbers and lists (recursively in dicts and
    lists), so that a spec may be written with NumPy values."""
    if isinstance(v, np.ndarray):
        return plain(v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [plain(x) for x in v]
    return v


def coerce(key: str, v, typ: str):
    """Check the type of one value (ints are accepted for floats); return it normalised."""
    v = plain(v)
    if typ == ANY:
        return v
    if typ == INT:
        if isinstance(v, float) and v.is_integer():
            return int(v)  # 1e5 is an integer
        if isinstance(v, bool) or not isinstance(v, int):
            raise SpecError(f"{key} = {fmt(v)}: expected an integer")
        return v
    if typ == FLOAT:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise SpecError(f"{key} = {fmt(v)}: expected a number")
        v = float(v)
        if not math.isfinite(v):
            raise SpecError(f"{key} = {fmt(v)}: expected a finite number")
        return v
    if typ == FLOATS:
        if isinstance(v, list):
            if not v:
                raise SpecError(f"{key} = []: expected a number or a non-empty list of numbers")
            return [coerce(key, x, FLOAT) for x in v]
        return coerce(key, v, FLOAT)
    if typ == STR:
        if not isinstance(v, str):
            raise SpecError(f"{key} = {fmt(v)}: expected a string")
        return v
    if typ == BOOL:
        if not isinstance(v, bool):
            raise SpecError(f"{key} = {fmt(v)}: expected true or false")
        return v
    raise AssertionError(typ)
