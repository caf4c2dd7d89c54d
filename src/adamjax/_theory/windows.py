"""The APT's windows: where the error of each run is measured.

Window j starts at step n_j (n_1 < … < n_J geometric in n, every window inside the
run) and covers the steps n ≥ n_j with t_n − t_{n_j} ≤ T, the horizon T in training
time t_n = γ_1 + … + γ_n (Dereich, Jentzen & Kassing 2025, Thm 1.5).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._engine.errors import SpecError
from .._engine.schedules import SchedHParams


class WindowOptions(NamedTuple):
    """Where the APT error is measured (spec table ``[flow]``): the horizon T in training
    time, the number of windows J and the first window start n_1 (None: 1)."""

    horizon: float = 1.0
    windows: int = 12
    first: int | None = None


_SCHED = SchedHParams()  # the default schedule (the spec's)

# --- window starts ---------------------------------------------------------------------


def _times(kind: str, sched: tuple[float, float, float], steps: int) -> np.ndarray:
    """t_0 = 0, t_1, …, t_steps in float64 for one schedule (c, r, n0)."""
    c, r, n0 = sched
    n = np.arange(1, steps + 1, dtype=np.float64)
    g = c * (n + n0) ** (-r) if kind == "power" else np.full(steps, c)
    return np.concatenate([[0.0], np.cumsum(g)])


def window_starts(
    steps: int,
    windows: int,
    horizon: float,
    schedule: str = "power",
    scheds=(tuple(_SCHED),),
    first: int | None = None,
) -> np.ndarray:
    """``windows`` window starts n_1 < … < n_J, geometric in n, each window inside the run.

    Args:
        steps: the run's number of steps.
        windows: J.
        horizon: T, in training time.
        schedule, scheds: the schedule kind and the (c, r, n0) of every run's schedule.
        first: n_1 (default 1).

    Returns:
        (J,) int64 starts: n_J is the largest n with t_steps − t_n ≥ T for every
        schedule, n_1 = ``first``, geometric in between (strictly increasing).
    """
    last = steps
    for s in scheds:
        t = _times(schedule, tuple(float(x) for x in s), steps)
        ok = np.nonzero(t[-1] - t >= horizon)[0]
        if len(ok) == 0 or ok[-1] < 1:
            raise SpecError(
                f"flow.horizon = {horizon!r}: longer than the training time "
                f"t_steps − t_1 = {t[-1] - t[1]:.4g} of the run"
            )
        last = min(last, int(ok[-1]))
    first = 1 if first is None else int(first)
    if first > last:
        raise SpecError(f"flow.first = {first}: after the last possible window start {last}")
    n = np.round(np.geomspace(first, last, windows)).astype(np.int64)
    for j in range(1, windows):
        n[j] = max(n[j], n[j - 1] + 1)
    if n[-1] > last:
        raise SpecError(
            f"flow.windows = {windows}: too many windows between steps {first} and {last}"
        )
    return n


def window_ends(starts, horizon: float, schedule: str, scheds, steps: int) -> np.ndarray:
    """Static last steps of the windows: the largest n ≤ steps with t_n − t_{n_j} ≤ T for
    any of the schedules, plus a margin for rounding in the run's dtype."""
    ends = np.zeros(len(starts), np.int64)
    for sc in scheds:
        t = _times(schedule, tuple(float(x) for x in sc), steps)
        for j, s in enumerate(starts):
            e = int(np.searchsorted(t, t[s] + horizon * (1 + 1e-3), side="right")) - 1
            ends[j] = max(ends[j], e)
    return np.minimum(ends + 2 + ends // 1000, steps)
