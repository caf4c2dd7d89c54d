"""How long the vector field's chain is and how widely it is thinned.

The batch-means SE needs batches much longer than the chain's correlation time, so
the chain length M has a floor (:func:`min_samples`); M is rounded to whole batches of
whole blocks (:func:`round_samples`). Under a target SE the fast paths then average
r_k at every thin-th step only, as widely as the SE allows (:func:`widest_thin`).
Reference: Dereich, Jentzen & Kassing (2025), Def. 1.3 (the chains of m_∞, v_∞).
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from .ema import BLOCK

# A wider thinning is kept only if the pilot's worst SE stays below this share of the
# target: with few rows per batch the batch-means SE is itself rough (measured on the
# regression network at thin 1024: up to 1.5× too small).
THIN_SE_MARGIN = 0.5
# Rows (thinned chain values) per batch mean, at least.
MIN_BATCH_ROWS = 8


def widest_thin(vf, build, samples: int, batches: int, target_se: float, pts, se):
    """The fast-path field ``vf`` rebuilt with a wider thinning where its SE at the pilot
    points ``pts`` stays within :data:`THIN_SE_MARGIN` of ``target_se``; ``se`` is the
    worst SE of ``vf`` there.

    With the control variates the residual of r_k varies mostly with v_k, over
    ~1/(1 − β) steps, so averaging r_k at every thin-th k loses little while thin is
    below that; an evaluation costs O(M/thin · dim). Where β is near 1 the chain length
    M is set by the batches (each ≥ 10/(1 − β) steps), not by the SE, and the default
    thinning (~1/(1 − α)) leaves the SE far below the target: on the regression network
    (β = 0.999, target 2·10⁻⁴) thin 8 → 1024 keeps the SE at 2–5·10⁻⁵ and evaluates
    the field 15× faster. Two candidates, each checked at the pilot points (every
    thinning compiles its own program): the widest (1024, or as wide as leaves
    :data:`MIN_BATCH_ROWS` rows per batch), else the one the worst case predicts (SE
    growing as √thin, as for uncorrelated rows).

    Args:
        vf: the field as built, with its ``thin``.
        build: ``build(M, thin)`` → the same field with M samples thinned by ``thin``.
        samples, batches: the chain length chosen (rounded up per thinning) and the
            number of batch means.
        target_se, pts, se: the target, the pilot points (P, d), the worst SE of ``vf``.

    Returns:
        The widest field that passed, else ``vf``.
    """
    th = vf.thin
    widest = th
    while widest < 1024 and round_samples(samples, batches, 2 * widest) // (2 * widest) >= (
        MIN_BATCH_ROWS * batches
    ):
        widest *= 2
    safe = th
    if se > 0:
        while 2 * safe <= widest and se * math.sqrt(2 * safe / th) <= THIN_SE_MARGIN * target_se:
            safe *= 2
    for t in dict.fromkeys((widest, safe)):  # widest first; each at most once
        if t <= th:
            continue
        wider = build(round_samples(samples, batches, t), t)
        # (The fast path's weights grow with M: a longer chain may not have one. Then
        # build gives the generic chain, unthinned and slower: not wanted here.)
        if wider.moments is None:
            continue
        if float(jnp.max(wider(pts)[1])) <= THIN_SE_MARGIN * target_se:
            return wider
    return vf


def min_samples(b1, b2, batches: int, thin: int | None = None) -> int:
    """The fewest samples for ``batches`` batch means: each batch ≥ 10/(1 − max(α, β))
    steps, the chain's correlation time ten times over (rounded as the samples are, given
    ``thin``; unrounded without)."""
    corr = 1.0 / (1.0 - max(float(b2), float(b1)) + 1e-300)
    # (1 − 1e-6: β given in float32, e.g. 0.99 → 0.9900000095, must not ask for one more.)
    need = int(math.ceil(10 * corr * batches * (1 - 1e-6)))
    return need if thin is None else round_samples(need, batches, thin)


def round_samples(m: int, batches: int, thin: int = 1) -> int:
    unit = batches * max(BLOCK, thin)
    return int(math.ceil(m / unit) * unit)
