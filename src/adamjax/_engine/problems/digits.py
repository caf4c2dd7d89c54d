"""Softmax classification of scikit-learn's 8×8 digits by a small tanh network."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import SpecError
from ..params import INT, Param, in_range
from ..pytree import split_flat
from .base import AbstractLayeredProblem
from .builtin import Builtin, device_array


class Digits(AbstractLayeredProblem):
    """Softmax classification of scikit-learn's 8×8 digits (1797 images shipped with
    scikit-learn, no download) by a one-hidden-layer tanh network, 64 → width → 10.
    ℓ_i(θ) = cross-entropy of example i; θ flattens (W1, b1, W2, b2)."""

    data: Any
    dim: int = eqx.field(static=True)
    width: int = eqx.field(static=True, default=16)
    init: Any = None

    def shapes(self):
        w = self.width
        return ((w, 64), (w,), (10, w), (10,))

    def parts_loss(self, parts, example):
        w1, b1, w2, b2 = parts
        x, y = example
        logits = w2 @ jnp.tanh(w1 @ x + b1) + b2
        return jax.nn.logsumexp(logits) - logits[y]

    def unflatten(self, theta):
        return split_flat(theta, self.shapes())

    def default_theta0(self, key=None):
        return self.init


def param_count(width: int) -> int:
    """Parameters of the network 64 → width → 10."""
    return 64 * width + width + 10 * width + 10


def _build(p: dict, dtype) -> Digits:
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - scikit-learn is a dev dependency
        raise SpecError(
            'problem.kind = "digits": needs scikit-learn (pip install scikit-learn)'
        ) from None
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(p["data_seed"])
    idx = np.sort(rng.permutation(len(y))[: min(p["n_points"], len(y))])
    x, y = x[idx] / 16.0, y[idx]
    w = p["width"]
    init = np.concatenate(
        [
            rng.normal(size=64 * w) / np.sqrt(64),
            np.zeros(w),
            rng.normal(size=10 * w) / np.sqrt(w),
            np.zeros(10),
        ]
    )
    return Digits(
        data=(device_array(x, dtype), device_array(y, jnp.int32)),
        dim=param_count(w),
        width=w,
        init=device_array(init, dtype),
    )


ENTRY = Builtin(
    kind="digits",
    params={
        "n_points": Param(INT, 1797, in_range(1), "images used (of 1797)"),
        "width": Param(INT, 32, in_range(1), "hidden units"),
        "data_seed": Param(INT, 0, in_range(0), "seed of the subset and the initialisation"),
    },
    build=_build,
    dim=lambda p: param_count(p["width"]),
)
