"""Per-run randomness and the sampling schemes.

Reproducibility contract: every random number a run uses is a function of
(base seed, global run index, block index) only —

    run_key   = fold_in(seed_key(seed), global_run_index)
    block_key = fold_in(run_key, block_index)

so a run's trajectory does not depend on the chunk size, on which other runs
share its batch, or on the number of devices. Noise is drawn for a whole block
of steps with one key (one ``fold_in`` per block instead of one per step),
which is several times cheaper than a key per step.

Schemes for a finite sum over N examples with mini-batch size b (step n ≥ 1
uses the positions (n−1)·b, …, n·b − 1 of an index stream):

* ``iid``        indices drawn uniformly with replacement;
* ``reshuffle``  the stream is a concatenation of fresh random permutations,
                 one per epoch (random reshuffling);
* ``cyclic``     the stream is 0, 1, …, N−1, 0, 1, … (Reddi's counterexample).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import UInt32

from .errors import SpecError
from .rng import threefry2x32

SCHEMES = ("iid", "reshuffle", "cyclic")

# Streams tagged so that the permutations of `reshuffle` never reuse a block key.
_PERM_TAG = 0x5EED


SEED_MAX = 2**64 - 1


def seed_key(seed: int) -> jax.Array:
    """The key of a seed 0 ≤ seed < 2**64: the uint32 pair (seed >> 32, seed mod 2**32).

    This is ``jax.random.PRNGKey(seed)`` with x64 enabled, built here so that every bit
    of the seed counts whatever the x64 flag: without x64, ``PRNGKey`` keeps only the
    low 32 bits (seed 2**32 would give the streams of seed 0). For seeds < 2**32 it is
    ``PRNGKey(seed)`` in both modes.
    """
    # device_put, not jnp.asarray: no small program compiled for the transfer.
    return jax.device_put(_seed_words(seed))


def _seed_words(seed: int) -> np.ndarray:
    s = int(seed)
    if not 0 <= s <= SEED_MAX:
        raise SpecError(f"seed = {s}: must be an integer in [0, 2**64 − 1]")
    return np.array([s >> 32, s & 0xFFFFFFFF], np.uint32)


def run_keys(seed: int, run_index) -> UInt32[np.ndarray, "*runs 2"]:
    """Per-run keys ``fold_in(seed_key(seed), run_index)`` for an array of run indices.

    ``jax.random.fold_in(key, d)`` is the threefry hash of the counter pair (0, d) under
    ``key``; it is evaluated here on the host, in NumPy, with the engine's hash
    (``rng.threefry2x32``): the same bits as ``jax.random.fold_in``, without compiling a
    program for each new number of runs (a quarter of a second of a small sweep).

    Args:
        seed: the spec's seed, 0 ≤ seed < 2**64.
        run_index: global run indices, integers in [0, 2**32).

    Returns:
        Raw uint32 threefry keys (a NumPy array), shape ``(*run_index.shape, 2)``.
    """
    k = _seed_words(seed)
    a = np.asarray(run_index)
    if a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= 2**32):
        raise SpecError(
            f"run_index: must be integers in [0, 2**32) (got {a.dtype}, e.g. {a.flat[0]})"
        )
    d = a.astype(np.uint32)
    flat = d.reshape(-1)  # arrays, not NumPy scalars: their arithmetic wraps silently
    o1, o2 = threefry2x32(k[0], k[1], np.zeros_like(flat), flat)
    return np.stack([o1, o2], axis=-1).reshape(*d.shape, 2)


def block_key(run_key, block_index):
    """Key of one block of steps of one run."""
    return jax.random.fold_in(run_key, block_index)


def finite_sum_indices(run_key, block_index, start, block: int, batch_size: int, n: int, scheme):
    """Indices (block, batch_size) for steps start+1 … start+block of one run."""
    if scheme == "iid":
        # int32 explicitly: the default int is int64 under jax_enable_x64 and would
        # draw different bits, so results would depend on the x64 flag.
        return jax.random.randint(
            block_key(run_key, block_index), (block, batch_size), 0, n, dtype=jnp.int32
        )
    pos = (start + jnp.arange(block))[:, None] * batch_size + jnp.arange(batch_size)[None, :]
    if scheme == "cyclic":
        return (pos % n).astype(jnp.int32)
    if scheme == "reshuffle":
        epoch = pos // n
        within = pos % n
        e0 = (start * batch_size) // n
        n_epochs = (block * batch_size - 1) // n + 2  # static bound on epochs a block touches
        perm_key = jax.random.fold_in(run_key, _PERM_TAG)

        def perm(e):
            return jax.random.permutation(
                jax.random.fold_in(perm_key, e), jnp.arange(n, dtype=jnp.int32)
            )

        perms = jax.vmap(perm)(e0 + jnp.arange(n_epochs))
        return perms[epoch - e0, within].astype(jnp.int32)
    raise ValueError(f"sampling.scheme: unknown scheme {scheme!r} (known: {', '.join(SCHEMES)})")
