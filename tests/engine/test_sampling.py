"""Seeds: all 64 bits reach the key, whatever the x64 flag (reliability issue)."""

import warnings

import jax
import numpy as np
import pytest

import adamjax
from adamjax._engine.sampling import seed_key
from helpers import base_spec


@pytest.fixture
def x64_flag():
    old = jax.config.read("jax_enable_x64")
    yield lambda on: jax.config.update("jax_enable_x64", on)
    jax.config.update("jax_enable_x64", old)


def test_seed_key_is_prngkey_with_every_bit(x64_flag):
    for on in (False, True):
        x64_flag(on)
        for s in (0, 1, 12345, 2**32 - 1):  # < 2**32: jax.random.PRNGKey(s) in both modes
            np.testing.assert_array_equal(seed_key(s), jax.random.PRNGKey(s))
        assert not np.array_equal(seed_key(2**32), seed_key(0))
        assert not np.array_equal(seed_key(2**64 - 1), seed_key(2**32 - 1))
    x64_flag(True)
    for s in (2**32, 2**40 + 7, 2**63 - 1):  # with x64, PRNGKey keeps the high word too
        np.testing.assert_array_equal(seed_key(s), jax.random.PRNGKey(s))
    with pytest.raises(adamjax.SpecError, match="seed"):
        seed_key(2**64)
    with pytest.raises(adamjax.SpecError, match="seed"):
        seed_key(-1)


@pytest.mark.parametrize("kind", ["quadratic", "zhang"])
def test_large_seeds_do_not_alias_and_ignore_x64(x64_flag, kind):
    """Seed 2**32 differs from seed 0 (it aliased in float32 before), and a float32 run's
    numbers are the same whether x64 was switched on earlier in the process or not."""
    spec = base_spec(name="sd", **{"run.steps": 100, "run.seeds": 3})
    if kind == "zhang":
        spec["problem"] = {"kind": "zhang", "n": 7}
        spec["sampling"] = {"scheme": "reshuffle"}
    out = {}
    for on in (False, True):
        x64_flag(on)
        for seed in (0, 2**32, 2**63 - 5):
            ds = adamjax.run({**spec, "seed": seed}, progress=False)
            out[on, seed] = ds["theta_final"].values
    assert not np.array_equal(out[False, 0], out[False, 2**32])
    for seed in (0, 2**32, 2**63 - 5):
        np.testing.assert_array_equal(out[False, seed], out[True, seed])


@pytest.mark.parametrize("seed", [0, 3, 2**32 + 5, 2**64 - 1])
def test_run_keys_on_the_host_are_jax_fold_in(seed):
    """``run_keys`` hashes in NumPy (no compilation): the bits of ``jax.random.fold_in``
    for any seed and index, scalar or array, with no overflow warning."""
    idx = np.array([0, 1, 7, 2**31, 2**32 - 1, 123456789])
    want = jax.vmap(lambda i: jax.random.fold_in(seed_key(seed), i))(
        jax.numpy.asarray(idx, jax.numpy.uint32)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = adamjax.run_keys(seed, idx)
        one = adamjax.run_keys(seed, 7)
    assert got.dtype == np.uint32 and got.shape == (6, 2)
    np.testing.assert_array_equal(got, np.asarray(want))
    np.testing.assert_array_equal(one, got[2])
    assert adamjax.run_keys(seed, [[1, 2]]).shape == (1, 2, 2)
    for bad in (-1, 2**32, 2.5, [0, 2**40]):
        with pytest.raises(adamjax.SpecError, match="run_index"):
            adamjax.run_keys(seed, bad)
