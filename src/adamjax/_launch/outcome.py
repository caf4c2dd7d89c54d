"""The outcome of every run: converged, diverging or undecided, from its recorded path.

``diverged`` (the engine's flag) only says that a run blew up numerically — its
iterate or loss became non-finite or exceeded ``run.bound`` — and was frozen.
Most divergence that users mean is slower: on Zhang et al.'s counterexample the
iterate grows like √k and stays finite for ever. ``outcome`` says what a user
means, by this rule on the quantity

    q_k = ‖Θ_k − θ*‖   where the problem's minimiser θ* is known, else L(Θ_k),

at the start (q_0, from θ0), at the last step (q_N) and at the first recorded
snapshot in [N/4, N) (q_mid; absent when nothing is recorded there),
with the scale s = |q_0| (1 if q_0 = 0) and the spec's ``record.margin`` (m,
default 0.1) and ``record.ratio`` (ρ, default 0.5):

* **diverging** (1): ``diverged``, or q_N > q_0 + m·s and q_N > q_mid + m·s —
  worse than the start and still getting worse over the last three quarters of
  the run;
* **converged** (0): not diverging, q_N ≤ ρ·s and q_N ≤ q_mid + m·s — the
  distance to the minimiser (or the loss) fell to at most ρ of its start and is
  not growing;
* **undecided** (2): anything else, and every run whose q is not finite.

Without a mid snapshot the conditions on q_mid are dropped. The rule needs no
knowledge of the problem beyond its minimiser and loss. On Zhang et al.'s
counterexample a run growing like √k is diverging once it has passed its start,
and a run that reached θ* is converged. Two limits: "converged" means "close to
θ*" (a run that settles elsewhere, e.g. at a zero of the vector field away from
θ*, stays undecided unless it is within ρ of its start distance), and without a
minimiser the loss is compared with its start, so a problem whose minimal loss is
far from 0 is judged against 0.
"""

from __future__ import annotations

import numpy as np

CONVERGED, DIVERGING, UNDECIDED = 0, 1, 2
FLAG_MEANINGS = "converged diverging undecided"


def classify(
    q0: np.ndarray,
    q_mid: np.ndarray | None,
    q_last: np.ndarray,
    diverged: np.ndarray,
    *,
    margin: float,
    ratio: float,
) -> np.ndarray:
    """The outcome (int8 flags) of runs from q at the start, mid and last points.

    Args:
        q0, q_last: (runs,) the quantity q at step 0 and at the last step.
        q_mid: (runs,) q at the first snapshot at or after step N/4, or None.
        diverged: (runs,) the engine's numeric blow-up flag.
        margin, ratio: m and ρ of the rule in the module docstring (the spec's
            ``record.margin`` and ``record.ratio``).

    Returns:
        (runs,) int8: 0 converged, 1 diverging, 2 undecided.
    """
    q0, q_last = np.asarray(q0, np.float64), np.asarray(q_last, np.float64)
    s = np.where(np.abs(q0) > 0, np.abs(q0), 1.0)
    slack = margin * s
    with np.errstate(invalid="ignore"):
        growing = q_last > q0 + slack
        not_growing = np.ones_like(growing)
        if q_mid is not None:
            q_mid = np.asarray(q_mid, np.float64)
            growing &= q_last > q_mid + slack
            not_growing = q_last <= q_mid + slack
        converged = (q_last <= ratio * s) & not_growing
    finite = np.isfinite(q0) & np.isfinite(q_last)
    if q_mid is not None:
        finite &= np.isfinite(q_mid)
    out = np.full(q0.shape, UNDECIDED, np.int8)
    out[finite & converged] = CONVERGED
    out[(finite & growing) | np.asarray(diverged, bool)] = DIVERGING
    return out


def mid_index(snapshot_steps: np.ndarray, steps: int) -> int | None:
    """The first snapshot in [N/4, N), or None."""
    s = np.asarray(snapshot_steps)
    idx = np.nonzero((s >= steps / 4) & (s < steps))[0]
    return int(idx[0]) if idx.size else None
