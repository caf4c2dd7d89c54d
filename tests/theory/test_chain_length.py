"""The chain length and the widening of the thinning (``_theory.chain_length``)."""

import math

import numpy as np
import pytest

from adamjax._theory.chain_length import (
    MIN_BATCH_ROWS,
    THIN_SE_MARGIN,
    min_samples,
    round_samples,
    widest_thin,
)


class _Field:
    """A stand-in field whose SE grows as c·thin^p (the law ``widest_thin`` probes)."""

    def __init__(self, samples, thin, c, p, moments=True):
        self.samples, self.thin, self.c, self.p = samples, thin, c, p
        self.moments = object() if moments else None  # the fast path's weights

    def __call__(self, pts):
        return None, np.full(pts.shape, self.c * self.thin**self.p)


def _widen(c, p, target=1.0, samples=327_680, batches=32, thin=8, fast_upto=2**30):
    built = []

    def build(m, t):
        built.append(t)
        assert m % (batches * max(64, t)) == 0 and m >= samples
        return _Field(m, t, c, p, moments=m <= fast_upto)

    vf = _Field(samples, thin, c, p)
    out = widest_thin(vf, build, samples, batches, target, np.zeros((3, 2)), c * thin**p)
    return out.thin, built


def test_flat_se_takes_the_widest_thinning():
    # SE independent of the thinning: straight to 1024, one build.
    assert _widen(c=0.1, p=0.0) == (1024, [1024])


def test_correlated_rows_fall_back_to_the_predicted_thinning():
    # SE ∝ √thin from 1.5·10⁻¹ at thin 8: 1024 fails; √-law prediction 8·(0.5/0.15)² → 64.
    c = 0.15 / math.sqrt(8)
    thin, built = _widen(c=c, p=0.5)
    assert built == [1024, 64] and thin == 64
    assert c * math.sqrt(64) <= THIN_SE_MARGIN


def test_no_room_keeps_the_field():
    # Already above half the target: the widest is tried, the prediction adds nothing.
    assert _widen(c=0.6, p=0.0) == (8, [1024])


def test_rows_per_batch_bound_the_thinning():
    # 65 536 samples in 32 batches: thin 256 leaves 8 rows per batch, 512 only 4.
    thin, _ = _widen(c=0.1, p=0.0, samples=65_536)
    assert thin == 256 and round_samples(65_536, 32, thin) // thin >= MIN_BATCH_ROWS * 32


@pytest.mark.parametrize("b2", [0.9, 0.99, 0.999])
def test_min_samples_is_ten_correlation_times_per_batch(b2):
    m = min_samples(0.9, b2, 32, thin=8)
    assert m >= 10 * 32 / (1 - b2) * (1 - 1e-6) and m % (32 * 64) == 0


def test_a_chain_too_long_for_the_fast_path_is_not_taken():
    # Rounding to thin 1024 lengthens the chain past the fast path's size: that field
    # (the generic chain, unthinned) is skipped for the predicted thinning.
    c = 0.1 / math.sqrt(8)
    thin, built = _widen(c=c, p=0.5, samples=329_728, fast_upto=331_776)
    assert built[0] == 1024 and thin == built[1] == 128
