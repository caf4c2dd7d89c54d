"""The error and warning types every layer raises for bad input.

:class:`SpecError` is a ``ValueError`` whose message is one line naming the
offending key and value (``problem.n = 2: must be ≥ 3``); the CLI prints it as
``adamjax: error: …`` with exit code 2. It lives in the lowest layer so that the
engine and the theory layer can name spec keys in their messages without
importing the launcher.
"""

from __future__ import annotations


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
