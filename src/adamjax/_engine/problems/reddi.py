"""Reddi, Kale & Kumar (2018): Adam with fixed (β1, β2) ends at the wrong end of a box."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..params import INT, Param, in_range
from .base import AbstractFiniteSumProblem
from .builtin import Builtin, device_array


class Reddi(AbstractFiniteSumProblem):
    """Reddi, Kale & Kumar (2018) style example on [−1, 1] with projection:
    ℓ_0(θ) = nθ, ℓ_i(θ) = −θ (i = 1 … n−1); L = θ/n is minimised at θ* = −1.
    ``data`` is the index range 0 … n−1."""

    data: Any
    dim: int = eqx.field(static=True)

    def example_loss(self, theta, i):
        n = self.data.shape[0]
        return jnp.where(i == 0, n * theta[0], -theta[0])

    @property
    def box(self):
        return (-1.0, 1.0)

    @property
    def minimizer(self):
        return -np.ones((1,), jnp.result_type(float))


ENTRY = Builtin(
    kind="reddi",
    params={"n": Param(INT, 3, in_range(2), "number of functions")},
    build=lambda p, dtype: Reddi(data=device_array(np.arange(p["n"])), dim=1),
    dim=lambda p: 1,
)
