"""The outcome of a run: the documented rule (docs/results.md), and what it says on
Zhang et al.'s counterexample (diverging at small β2, converged at large β2)."""

import warnings

import numpy as np

import adamjax
from adamjax._launch.outcome import CONVERGED, DIVERGING, UNDECIDED, classify, mid_index


def test_rule_cases():
    q0 = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 0.0, 2.0])
    mid = np.array([2.8, 0.5, 0.95, 1.5, 3.0, 0.0, np.nan])
    last = np.array([3.5, 0.001, 0.9, 1.5, 2.5, 0.05, 0.1])
    div = np.array([False, False, False, False, False, False, False])
    out = classify(q0, mid, last, div, margin=0.1, ratio=0.5)
    # growing past the start; reached the minimiser; still improving and ≤ ρ·s;
    # stalled above ρ·s; worse than the start but shrinking since mid (undecided);
    # started at the minimiser and stayed near it (s = 1); a NaN is undecided.
    assert out.tolist() == [
        DIVERGING,
        CONVERGED,
        CONVERGED,
        UNDECIDED,
        UNDECIDED,
        CONVERGED,
        UNDECIDED,
    ]
    # The engine's blow-up flag always wins; without a mid point only q0/q_last count.
    kw = {"margin": 0.1, "ratio": 0.5}
    assert classify(q0[:1], None, last[1:2], np.array([True]), **kw)[0] == DIVERGING
    assert classify(q0[:2], None, np.array([3.0, 0.5]), div[:2], **kw).tolist() == [
        DIVERGING,
        CONVERGED,
    ]


def test_mid_index():
    steps = np.array([0, 1, 3, 10, 30, 100])
    assert mid_index(steps, 100) == 4  # the first snapshot at or after N/4 = 25
    assert mid_index(np.array([0, 100]), 100) is None


def test_zhang_small_beta2_diverges_large_beta2_converges():
    """n = 10, random reshuffling, β1 = 0, 20 000 steps: β2 = 0.3 runs grow like √k (no
    numeric blow-up, so ``diverged`` stays False) and are diverging; β2 = 0.99 runs reach
    x* = −2 and are converged."""
    spec = {
        "name": "zhang-outcome",
        "problem": {"kind": "zhang", "n": 10},
        "optimizer": {"b1": 0.0},
        "schedule": {"c": 0.1, "r": 0.5},
        "sampling": {"scheme": "reshuffle"},
        "run": {"steps": 20_000, "seeds": 8, "theta0": 0.0},
        "record": {"snapshots": 16},
        "sweep": {"optimizer.b2": [0.3, 0.99]},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", adamjax.AssumptionWarning)
        ds = adamjax.run(spec, progress=False)
    oc = ds["outcome"].values
    assert not ds["diverged"].values.any()
    assert (oc[0] == DIVERGING).all() and (oc[1] == CONVERGED).all(), oc
    assert ds["outcome"].attrs["flag_meanings"] == "converged diverging undecided"
    assert list(ds["outcome"].attrs["flag_values"]) == [0, 1, 2]
