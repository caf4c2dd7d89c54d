"""The error and warning types every layer raises for bad input.

:class:`SpecError` is a ``ValueError`` whose message is one line naming the
offending key and value (``problem.n = 2: must be ≥ 3``); the CLI prints it as
``adamjax: error: …`` with exit code 2. It lives in the lowest layer so that the
engine and the theory layer can name spec keys in their messages without
importing the launcher.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path


class SpecError(ValueError):
    """A bad spec or input: the message is one line naming the key and the value."""


class AssumptionWarning(UserWarning):
    """Hyperparameters outside the theory's assumptions (e.g. β1² ≥ β2)."""


def beta_warning_text(b1, b2, count: int = 1, total: int = 1) -> str:
    """The one warning text for β1² ≥ β2 (outside the assumption α < √β of the ODE
    theory); with a sweep, ``count`` of its ``total`` grid points are, (b1, b2) the first."""
    pair = f"optimizer.b1 = {b1}, optimizer.b2 = {b2}"
    if total > 1:
        pair = f"{count} of {total} grid points (the first: {pair})"
    return f"{pair}: β1² ≥ β2 is outside the assumption α < √β of the ODE theory (runs anyway)"


def raised(e: BaseException) -> str:
    """``"ValueError: … (at mymodule.py:12)"``: an exception of the user's code in one
    line, with the innermost frame outside Python's and the installed packages' files
    (the user's own line; nothing when there is none)."""
    text = " ".join(str(e).split())
    out = f"{type(e).__name__}: {text}" if text else type(e).__name__
    if " (at " in text:  # an adamjax message that already names the user's line
        return out
    roots = {str(Path(p).resolve()) for p in (sys.prefix, sys.base_prefix)}
    ours = str(Path(__file__).resolve().parents[1])  # the adamjax package
    for frame in reversed(traceback.extract_tb(e.__traceback__)):
        f = str(Path(frame.filename).resolve())
        if frame.filename.startswith("<") or f.startswith(ours) or "site-packages" in f:
            continue
        if any(f.startswith(r + "/lib") for r in roots):
            continue
        return f"{out} (at {Path(f).name}:{frame.lineno})"
    return out
