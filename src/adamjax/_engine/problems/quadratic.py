"""The diagonal quadratic with additive noise (DJK 2025, Cor. 1.10).

ℓ(θ, x) = ½ Σ_i h_i (θ_i − x_i)², x = s·ξ with ξ i.i.d. of mean 0 and variance 1.
Noise ``exponential`` is ξ = Exp(1) − 1 (asymmetric: Adam's limit is then not the
minimiser 0, Dereich, Jentzen & Kassing 2025, Cor. 1.10); ``gaussian`` and
``rademacher`` are symmetric; ``none`` gives G = ∇L. L(θ) = ½ Σ_i h_i (θ_i² + s²·Var ξ),
minimised at 0, where it is ½ s²·Var ξ·Σ_i h_i (the noise's share; 0 only with none).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..params import FLOAT, FLOATS, INT, STR, Param, fmt, in_range, one_of
from .base import Problem
from .builtin import Builtin, device_array

NOISES = ("none", "gaussian", "exponential", "rademacher")


class Quadratic(Problem):
    """ℓ(θ, x) = ½ Σ_i h_i (θ_i − x_i)², x = s·ξ (see the module docstring).

    Args:
        curvature: (dim,) the h_i > 0.
        noise_scale: the scale s ≥ 0.
        noise: ``none``, ``gaussian``, ``exponential`` (Exp(1) − 1) or ``rademacher``.
        dim: dimension of θ.
    """

    curvature: Float[Array, " dim"]
    noise_scale: Float[Array, ""]
    noise: str = eqx.field(static=True)
    dim: int = eqx.field(static=True)

    def sample(self, key, shape):
        full = (*shape, self.dim)
        dt = self.curvature.dtype
        if self.noise == "none":
            xi = jnp.zeros(full, dt)
        elif self.noise == "gaussian":
            xi = jax.random.normal(key, full, dt)
        elif self.noise == "exponential":
            xi = jax.random.exponential(key, full, dt) - 1
        elif self.noise == "rademacher":
            xi = jax.random.rademacher(key, full, dt)
        else:  # validated earlier; kept for direct construction
            raise ValueError(f"problem.noise: unknown noise {self.noise!r}")
        return self.noise_scale * xi

    def innovation(self, theta, x):
        return jnp.mean(self.curvature * (theta - x), axis=0)

    def loss(self, theta):
        var = 0.0 if self.noise == "none" else self.noise_scale**2
        return 0.5 * jnp.sum(self.curvature * (theta**2 + var))

    def grad(self, theta):
        return self.curvature * theta

    def second_moment(self, theta, batch_size, replace=True):
        g = self.grad(theta)
        if self.noise == "none":
            return g * g
        return g * g + (self.curvature * self.noise_scale) ** 2 / batch_size

    def cross_moment(self, theta, batch_size):
        # G = h (θ − x̄): mean hθ, variance (hs)²/b, third central moment −h³s³κ₃/b²
        # (κ₃ of ξ: 2 for Exp(1) − 1, 0 for the symmetric noises), so
        # Cov(G, G²) = 2 E[G] Var(G) + κ₃(G) (see AbstractFiniteSumProblem.cross_moment).
        if self.noise == "none":
            return jnp.zeros_like(theta)
        h, s = self.curvature, self.noise_scale
        k3 = 2.0 if self.noise == "exponential" else 0.0
        return 2 * h * theta * (h * s) ** 2 / batch_size - k3 * (h * s) ** 3 / batch_size**2

    @property
    def separable(self):
        # f_i depends on θ_i only: the noise coordinates are independent.
        return True

    @property
    def noiseless(self):
        return self.noise == "none"

    @property
    def minimizer(self):
        return np.zeros(self.dim, self.curvature.dtype)

    @property
    def sample_numel(self):
        return self.dim


def _build(p: dict, dtype) -> Quadratic:
    d = p["dim"]
    h = np.broadcast_to(np.asarray(p["curvature"], dtype=np.float64), (d,))
    return Quadratic(
        curvature=device_array(h, dtype),
        noise_scale=device_array(p["noise_scale"], dtype),
        noise=p["noise"],
        dim=d,
    )


def _check(p: dict) -> str | None:
    h, d = p["curvature"], p["dim"]
    if isinstance(h, list) and len(h) != d:
        return f"problem.curvature = {fmt(h)}: expected {d} values (problem.dim = {d})"
    return None


ENTRY = Builtin(
    kind="quadratic",
    params={
        "dim": Param(INT, 1, in_range(1), "dimension of θ"),
        "curvature": Param(FLOATS, 1.0, in_range(0.0, lo_open=True), "h_i > 0 (one or dim)"),
        "noise": Param(STR, "gaussian", one_of(NOISES), "law of ξ: " + ", ".join(NOISES)),
        "noise_scale": Param(FLOAT, 1.0, in_range(0.0), "s ≥ 0"),
    },
    build=_build,
    dim=lambda p: p["dim"],
    check=_check,
    stream=True,
)
