"""The threefry2x32 PRNG with a fused (unrolled) hash: the same bits, computed faster on CPU.

JAX lowers the threefry hash on CPU as a ``fori_loop`` over its 5 groups of
rounds ("rolled loops", to keep compile times short). For the large noise
blocks of the engine — (runs × block steps) numbers at a time — every group of
rounds then reads and writes the whole counter arrays from memory, and the
hash costs several times what the arithmetic alone would. Here the 20 rounds
are plain ``lax`` integer ops that XLA fuses into one elementwise loop (this is
also what JAX itself emits on GPU).

:data:`FUSED_THREEFRY` is a PRNG implementation with exactly the key layout,
``fold_in``, ``split`` and ``random_bits`` of ``jax.random``'s default
``threefry2x32`` (in the default ``jax_threefry_partitionable=True`` mode; the
other mode delegates to JAX): every distribution drawn through it (uniform,
exponential, normal, randint, permutation, …) is bit-identical to the default
implementation. ``tests/engine/test_rng.py`` checks this.
"""

from __future__ import annotations

import math

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
from jax import lax

_ROT = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(x, d: int):
    # Operators, not lax calls: the same code hashes NumPy arrays (``sampling.run_keys``,
    # on the host) and traced JAX arrays (uint32 `>>` is the logical shift in both).
    return (x << np.uint32(d)) | (x >> np.uint32(32 - d))


def threefry2x32(k1, k2, x1, x2):
    """The Threefry-2x32 hash (20 rounds) of the counter pair (x1, x2) under key (k1, k2).

    Works on uint32 JAX arrays (traced: fuses into one elementwise loop) and on uint32
    NumPy arrays of at least one dimension (wrapping arithmetic; NumPy scalars would warn
    on overflow), with the same bits. Unsigned ``>>`` is the logical shift in both.
    """
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x1 = x1 + ks[0]
    x2 = x2 + ks[1]
    for i in range(5):
        for r in _ROT[i % 2]:
            x1 = x1 + x2
            x2 = _rotl(x2, r)
            x2 = x1 ^ x2
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x1, x2


def _fold_in(key, data):
    # jax: threefry_2x32(key, threefry_seed(data)) with threefry_seed(uint32 d) = [0, d].
    d = jnp.asarray(data, jnp.uint32).reshape(1)
    o1, o2 = threefry2x32(key[0], key[1], jnp.zeros((1,), jnp.uint32), d)
    return jnp.concatenate([o1, o2])


def _hash_counters(key, shape):
    """The hash of counter i for every i < prod(shape) (C order), as in JAX's
    partitionable mode: the counter as a 64-bit (hi, lo) pair; None where that mode is
    off or the counters need more than 32 bits (then JAX's own implementation serves)."""
    size = math.prod(shape)
    if not jax.config.jax_threefry_partitionable or size >= 2**32:
        return None
    lo = lax.iota(jnp.uint32, size).reshape(shape) if shape else jnp.zeros((), jnp.uint32)
    return threefry2x32(key[0], key[1], jnp.zeros(shape, jnp.uint32), lo)


def _default_key(key):
    # The same raw key under JAX's own threefry: the fallback paths delegate to it.
    return jax.random.wrap_key_data(key, impl="threefry2x32")


def _seed(seed):
    """JAX's threefry seed: a 64-bit seed bit-cast to (hi, lo), a 32-bit one padded with
    a zero high word."""
    seed = jnp.asarray(seed)
    if seed.shape or not jnp.issubdtype(seed.dtype, jnp.integer):
        raise TypeError(f"PRNG key seed must be an integer scalar; got {seed!r}")
    if seed.dtype.itemsize == 8:
        hi = lax.convert_element_type(
            lax.shift_right_logical(seed, seed.dtype.type(32)), jnp.uint32
        )
    else:
        hi = jnp.zeros((), jnp.uint32)
    lo = lax.convert_element_type(seed, jnp.uint32)  # keeps the low 32 bits
    return jnp.stack([hi, lo])


def _random_bits(key, bit_width, shape):
    hashed = _hash_counters(key, shape)
    if hashed is None:
        dtype = {8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32, 64: jnp.uint64}[bit_width]
        return jax.random.bits(_default_key(key), shape, dtype)
    b1, b2 = hashed
    if bit_width == 64:
        b1 = lax.convert_element_type(b1, jnp.uint64)
        b2 = lax.convert_element_type(b2, jnp.uint64)
        return lax.shift_left(b1, jnp.uint64(32)) | b2
    bits = b1 ^ b2
    if bit_width == 32:
        return bits
    return lax.convert_element_type(bits, {8: jnp.uint8, 16: jnp.uint16}[bit_width])


def _split(key, shape):
    # New key i is the hash of counter i. JAX's own split is a rolled loop (a while loop
    # per draw of ``randint``, which splits).
    hashed = _hash_counters(key, shape)
    if hashed is None:
        return jax.random.key_data(jax.random.split(_default_key(key), shape))
    b1, b2 = hashed
    return jnp.stack([b1, b2], axis=b1.ndim)


def _make_impl():
    return jax.extend.random.define_prng_impl(
        key_shape=(2,),
        seed=_seed,
        split=_split,
        random_bits=_random_bits,
        fold_in=_fold_in,
        name="adamjax_threefry2x32_fused",
    )


FUSED_THREEFRY = _make_impl()


def fused_key(raw_key):
    """Typed key of :data:`FUSED_THREEFRY` from a raw uint32 threefry key (shape (…, 2))."""
    return jax.random.wrap_key_data(raw_key, impl=FUSED_THREEFRY)
