"""The decay of the APT error: fitting E_j ≈ C · n_j^p over the window starts."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class DecayFit(NamedTuple):
    """Least-squares fit log E = log C + p log n: ``exponent`` p, ``log_prefactor`` log C,
    the window indices ``first``, ``last`` (inclusive) the fit was allowed to use, and the
    standard error ``se`` of p (NaN with fewer than three usable windows)."""

    exponent: float
    log_prefactor: float
    first: int
    last: int
    se: float = float("nan")


def fit_decay(window_start, errors, *, first: int = 0, last: int | None = None, full=False):
    """Exponent p of median_runs E_j ≈ C · n_j^p (least squares in log–log; NaN-aware).

    Args:
        window_start: (J,) window starts n_j.
        errors: (runs, J) APT errors, or (J,) already reduced (e.g. medians).
        first, last: the window indices (inclusive) the fit uses; the rate is
            asymptotic, so fitting the later windows only (``first = J // 2``) is common.
        full: return a :class:`DecayFit` (exponent, log prefactor, window range, SE)
            instead of the exponent alone.

    Returns:
        p (NaN with fewer than two usable windows), or a :class:`DecayFit`. In the
        noiseless case p ≈ −r (E = O(γ_n)); with noise the fluctuations give p ≈ −r/2
        (Dereich, Jentzen & Kassing 2025, Thm 1.5 and Cor. 1.9).
    """
    e = np.asarray(errors, np.float64)
    med = e if e.ndim == 1 else np.nanmedian(e, axis=0)
    n = np.asarray(window_start, np.float64)
    J = len(n)
    last = J - 1 if last is None else last
    idx = np.arange(J)
    ok = np.isfinite(med) & (med > 0) & (idx >= first) & (idx <= last)
    p = c = se = float("nan")
    if ok.sum() >= 2:
        x, y = np.log(n[ok]), np.log(med[ok])
        p, c = (float(v) for v in np.polyfit(x, y, 1))
        if ok.sum() >= 3:
            resid = y - (c + p * x)
            sxx = float(np.sum((x - x.mean()) ** 2))
            se = float(np.sqrt(np.sum(resid**2) / (ok.sum() - 2) / sxx))
    return DecayFit(p, c, int(first), int(last), se) if full else p
