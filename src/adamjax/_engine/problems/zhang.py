"""Zhang et al. (NeurIPS 2022) counterexample (2.5): Adam diverges for small β2."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..params import FLOAT, INT, Param, in_range
from .base import AbstractFiniteSumProblem
from .builtin import Builtin, device_array


class Zhang(AbstractFiniteSumProblem):
    """Zhang et al. (NeurIPS 2022) counterexample (2.5), n functions of x ∈ R::

        f_0(x) = (1+(n−1)a) x                              x ≥ −1
               = (1+(n−1)a)/2 (x+2)² − (3+3(n−1)a)/2       x < −1
        f_i(x) = −a x                                      x ≥ −1   (i > 0)
               = −(a/2)(x+2)² + 3a/2                       x < −1

    f = (1/n) Σ f_i is minimised at x* = −2; a = 1/(n−1)² gives D1 = 2n², D0 = 0.
    At x = −1 the x ≥ −1 branch is used. ``data`` is the index range 0 … n−1.
    """

    data: Any
    dim: int = eqx.field(static=True)
    a: Float[Array, ""]

    def example_loss(self, theta, i):
        x = theta[0]
        n1a = 1 + (self.data.shape[0] - 1) * self.a
        right0 = n1a * x
        left0 = n1a / 2 * (x + 2) ** 2 - 3 * n1a / 2
        righti = -self.a * x
        lefti = -(self.a / 2) * (x + 2) ** 2 + 3 * self.a / 2
        f0 = jnp.where(x >= -1, right0, left0)
        fi = jnp.where(x >= -1, righti, lefti)
        return jnp.where(i == 0, f0, fi)

    @property
    def minimizer(self):
        return np.full((1,), -2.0, self.a.dtype)


def _build(p: dict, dtype) -> Zhang:
    n = p["n"]
    a = p["a"] if p["a"] is not None else 1.0 / (n - 1) ** 2
    return Zhang(data=device_array(np.arange(n)), dim=1, a=device_array(a, dtype))


ENTRY = Builtin(
    kind="zhang",
    params={
        "n": Param(INT, 10, in_range(3), "number of functions"),
        "a": Param(FLOAT, None, in_range(0.0, lo_open=True), "a > 0 (default 1/(n−1)²)"),
    },
    build=_build,
    dim=lambda p: 1,
)
