"""The error and warning types every layer raises for bad input.

:class:`SpecError` is a ``ValueError`` whose message is one line naming the
offending key and value (``problem.n = 2: must be ≥ 3``); the CLI prints it as
``adamjax: error: …`` with exit code 2. It lives in the lowest layer so that the
engine and the theory layer can name spec keys in their messages without
importing the launcher.
"""

from __future__ import annotations

import re
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


def _library_dirs() -> list[Path]:
    """Python's own and the installed packages' folders (and adamjax's): not the user's."""
    import site
    import sysconfig

    dirs = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs |= set(site.getsitepackages()) | {site.getusersitepackages()}
    dirs.add(str(Path(__file__).resolve().parents[1]))  # the adamjax package
    return [Path(d).resolve() for d in dirs if d]


def raised(e: BaseException) -> str:
    """``"ValueError: … (at mymodule.py:12)"``: an exception of the user's code in one
    line, with the innermost frame outside Python's, the installed packages' and
    adamjax's folders (the user's own line; nothing when there is none)."""
    text = " ".join(str(e).split())
    out = f"{type(e).__name__}: {text}" if text else type(e).__name__
    if _AT.search(text):  # an adamjax message that already names the user's line
        return out
    libs = _library_dirs()
    for frame in reversed(traceback.extract_tb(e.__traceback__)):
        if frame.filename.startswith("<"):
            continue
        f = Path(frame.filename).resolve()
        if not any(f.is_relative_to(d) for d in libs):
            return f"{out} (at {f.name}:{frame.lineno})"
    return out


_AT = re.compile(r"\(at [^ ()]+\.py:\d+\)$")
