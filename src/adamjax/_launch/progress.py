"""The one progress display: a tqdm bar on a terminal, plain periodic log lines otherwise."""

from __future__ import annotations

import math
import os
import sys
import time


def resolve_mode(mode: bool | str | None) -> str:
    """``"bar"``, ``"log"`` or ``"off"`` for a ``progress`` argument: None is a bar on a
    terminal and log lines otherwise, True a bar, False nothing."""
    if mode is None:
        return "bar" if sys.stderr.isatty() else "log"
    if mode is True:
        return "bar"
    if mode is False:
        return "off"
    return mode


class Progress:
    """Progress in run-steps (or another ``unit``): a tqdm bar (rate, ETA) on a terminal,
    plain log lines every ``ADAMJAX_LOG_INTERVAL`` seconds (default 10) otherwise.

    ``mode``: None (bar on a terminal, else log lines), True (bar), False (nothing),
    or one of ``"bar"``, ``"log"``, ``"off"``.
    """

    def __init__(
        self,
        total: int,
        initial: int,
        desc: str,
        mode: bool | str | None,
        interval=None,
        unit: str = "run-step",
    ):
        self.total, self.done, self.desc, self.unit = int(total), int(initial), desc, unit
        self.start_done = self.logged = self.done
        self.t0 = self.last = time.monotonic()
        self.interval = float(os.environ.get("ADAMJAX_LOG_INTERVAL", interval or 10.0))
        self.mode = mode = resolve_mode(mode)
        self.bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total,
                initial=self.done,
                unit=unit,
                unit_scale=True,
                desc=desc,
                smoothing=0.1,
                dynamic_ncols=True,
            )
        elif mode == "log" and self.total:
            self._log(force=True)

    def update(self, n: int) -> None:
        self.done += int(n)
        if self.bar is not None:
            self.bar.update(int(n))
        elif self.mode == "log":
            self._log()

    def _log(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.interval and self.done < self.total:
            return
        self.last, self.logged = now, self.done
        el = now - self.t0
        rate = (self.done - self.start_done) / el if el > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = _hms(left) if math.isfinite(left) else "?"
        print(
            f"adamjax: {self.desc}: {self.done:.4g}/{self.total:.4g} {self.unit}s ({pct:.0f}%), "
            f"{rate:.3g} {self.unit}s/s, elapsed {_hms(el)}, ETA {eta}",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "log" and self.done != self.logged:
            self._log(force=True)


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
