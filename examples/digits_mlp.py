"""A user problem: a small MLP on scikit-learn's 8×8 digits, written in plain JAX.

The spec beside this file (``digits-mlp.toml``) names it as
``kind = "digits_mlp:problem"``; adamjax imports this module (it is looked up beside
the spec, then on ``sys.path``) and calls ``problem(**keys)`` with the spec's other
``[problem]`` keys, which may be swept. Everything else — seeds, sweeps, sampling,
the zarr store, ``--resume``, progress, sharding, the theory layer — comes from
adamjax. The parameters are an ordinary PyTree (a dict of arrays); the stored θ
coordinate names each entry (``w1[3,17]``).
"""

import jax
import jax.numpy as jnp
import numpy as np

import adamjax


def problem(width: int = 16, n_points: int = 512, data_seed: int = 0):
    """Cross-entropy of a 64 → width → 10 tanh network on ``n_points`` digit images."""
    from sklearn.datasets import load_digits  # the images ship with scikit-learn

    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(data_seed)
    idx = rng.permutation(len(y))[:n_points]
    data = {"x": jnp.asarray(x[idx] / 16.0, jnp.float32), "y": jnp.asarray(y[idx], jnp.int32)}

    def loss(params, example):
        h = jnp.tanh(params["w1"] @ example["x"] + params["b1"])
        logits = params["w2"] @ h + params["b2"]
        return jax.nn.logsumexp(logits) - logits[example["y"]]

    def init(key):
        # A different LeCun-normal start for every seed (explicit dtype: the same
        # numbers whether or not JAX's x64 mode is on).
        k1, k2 = jax.random.split(key)
        f32 = jnp.float32
        return {
            "w1": jax.random.normal(k1, (width, 64), f32) / 8.0,
            "b1": jnp.zeros(width, f32),
            "w2": jax.random.normal(k2, (10, width), f32) / jnp.sqrt(width),
            "b2": jnp.zeros(10, f32),
        }

    return adamjax.finite_sum_problem(loss, data, init)
