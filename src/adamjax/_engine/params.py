"""Declared parameters: a key's type, default and range, in one place.

A :class:`Param` is how a spec key is declared — by the built-in problems
(``problems/*.py``) for their own keys and by the launcher's schema for the
other tables — so the type, the default and the admissible range of every key
live next to the code that uses it. ``Param.parse`` turns a raw value into the
normalised one or raises :class:`~adamjax.SpecError` naming the key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import SpecError

INT, FLOAT, STR, BOOL, FLOATS = "int", "float", "str", "bool", "float|list"


def fmt(v) -> str:
    """A value as it would be written in the spec (strings quoted)."""
    return json.dumps(v) if isinstance(v, str) else repr(v)


def in_range(lo=None, hi=None, *, lo_open=False, hi_open=False) -> Callable[[Any], str | None]:
    """A check ``v ↦ reason or None`` for lo ≤ v ≤ hi (strict where ``*_open``); lists
    are checked element by element."""

    def check(v):
        if isinstance(v, list):
            bad = [x for x in v if check(x)]
            return check(bad[0]) if bad else None
        if lo is not None and (v < lo or (lo_open and v == lo)):
            return f"must be {'>' if lo_open else '≥'} {lo}"
        if hi is not None and (v > hi or (hi_open and v == hi)):
            return f"must be {'<' if hi_open else '≤'} {hi}"
        return None

    return check


def one_of(options) -> Callable[[Any], str | None]:
    """A check ``v ↦ reason or None`` for v ∈ ``options`` (read at every check, so a
    registry passed as ``options`` may grow)."""

    def check(v):
        return None if v in options else f"must be one of {', '.join(options)}"

    return check


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


def coerce(key: str, v, typ: str):
    """Check the type of one value (ints are accepted for floats); return it normalised."""
    if typ == INT:
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
