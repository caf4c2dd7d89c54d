"""The fused threefry PRNG (``_engine/rng.py``) draws exactly the bits of ``jax.random``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adamjax import run_keys
from adamjax._engine.rng import FUSED_THREEFRY, fused_key, threefry2x32


@pytest.mark.parametrize(
    "draw",
    [
        lambda k: jax.random.bits(k, (7, 3)),
        lambda k: jax.random.uniform(k, (33,)),
        lambda k: jax.random.exponential(k, (256, 1, 1)),
        lambda k: jax.random.normal(k, (16, 5)),
        lambda k: jax.random.rademacher(k, (9,), jnp.float32),
        lambda k: jax.random.randint(k, (256, 4), 0, 10),
        lambda k: jax.random.permutation(k, 11),
        lambda k: jax.random.bits(k, (5,), jnp.uint8),
        lambda k: jax.random.key_data(jax.random.split(k, (3, 2))),
        lambda k: jax.random.key_data(jax.random.split(k)),
        lambda k: jax.random.key_data(jax.random.split(k, ())),
        lambda k: jax.random.key_data(jax.random.split(k, (2, 0))),
        lambda k: jax.random.bits(k, ()),
    ],
)
def test_fused_threefry_draws_the_same_bits_as_jax(draw):
    raw = run_keys(3, np.arange(4))
    for i in range(4):
        for b in (0, 5, 123456):
            k = jax.random.fold_in(raw[i], b)
            fk = jax.random.fold_in(fused_key(raw[i]), b)
            np.testing.assert_array_equal(np.asarray(jax.random.key_data(fk)), np.asarray(k))
            np.testing.assert_array_equal(
                np.asarray(jax.jit(draw)(fk)), np.asarray(jax.jit(draw)(k))
            )


@pytest.mark.parametrize(
    "draw",
    [
        lambda k: jax.random.exponential(k, (64,)),
        lambda k: jax.random.normal(k, (16, 5)),
        lambda k: jax.random.randint(k, (32, 2), 0, 10),
        lambda k: jax.random.permutation(k, 11),
        lambda k: jax.random.bits(k, (5,), jnp.uint8),
        lambda k: jax.random.bits(k, ()),
        lambda k: jax.random.bits(k, (0, 3)),
    ],
)
def test_fused_threefry_under_vmap(draw):
    """The fused PRNG under one and two nested vmaps (batched keys, as in the engine)
    draws the bits of jax.random."""
    keys = run_keys(0, np.arange(50))

    def f(wrap, nest):
        g = lambda k: draw(jax.random.fold_in(wrap(k), 3))  # noqa: E731
        for _ in range(nest):
            g = jax.vmap(g)
        return jax.jit(g)(keys.reshape(50, 1, 2) if nest == 2 else keys)

    for nest in (1, 2):
        want = np.asarray(f(lambda k: k, nest))
        np.testing.assert_array_equal(want, np.asarray(f(fused_key, nest)))


@pytest.mark.parametrize("seed", [0, 1, -1, 12345, 2**31 - 1, -(2**31)])
def test_seed_is_jax_threefry_seed(seed):
    want = jax.random.key_data(jax.random.key(seed))
    got = jax.random.key_data(jax.random.key(seed, impl=FUSED_THREEFRY))
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_seed_keeps_the_high_word_with_x64():
    with jax.enable_x64(True):
        for seed in (2**32 + 5, 2**63 - 1, -(2**63)):
            want = jax.random.key_data(jax.random.key(seed))
            got = jax.random.key_data(jax.random.key(seed, impl=FUSED_THREEFRY))
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
            assert int(np.asarray(got)[0]) != 0


@pytest.mark.parametrize(
    "draw",
    [
        lambda k: jax.random.bits(k, (7, 3)),
        lambda k: jax.random.normal(k, (16, 5)),
        lambda k: jax.random.bits(k, (5,), jnp.uint8),
        lambda k: jax.random.key_data(jax.random.split(k, (3, 2))),
    ],
)
def test_non_partitionable_mode_delegates_to_jax(draw):
    """With ``jax_threefry_partitionable`` off the counters are laid out differently;
    the fused PRNG then hands over to JAX's own threefry (same bits)."""
    with jax.threefry_partitionable(False):
        k = jax.random.fold_in(jax.random.PRNGKey(7), 2)
        fk = jax.random.fold_in(fused_key(jax.random.PRNGKey(7)), 2)
        np.testing.assert_array_equal(np.asarray(jax.jit(draw)(fk)), np.asarray(jax.jit(draw)(k)))


def test_hash_on_numpy_and_traced_arrays_agree():
    """``threefry2x32`` hashes NumPy arrays (host-side run keys) with the bits of XLA."""
    rng = np.random.default_rng(0)
    k1, k2, x1, x2 = (rng.integers(0, 2**32, size=64, dtype=np.uint32) for _ in range(4))
    host = threefry2x32(k1, k2, x1, x2)
    dev = jax.jit(threefry2x32)(k1, k2, x1, x2)
    for h, d in zip(host, dev, strict=True):
        np.testing.assert_array_equal(h, np.asarray(d))
