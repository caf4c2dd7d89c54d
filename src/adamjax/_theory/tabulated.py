"""Cubic Hermite tables of a vector field: a few flops per evaluation.

For a problem whose field is coordinate-separable (f_i depends on θ_i only, e.g.
the diagonal quadratic) :meth:`VectorField.tabulate` evaluates f̂ once on a
uniform grid and returns a :class:`TabulatedField`; for a two-parameter problem it
evaluates f̂ on a tensor grid of a box and returns a :class:`GridField` (bicubic) —
what the ODE flows of thousands of runs need.
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np

from .field import AbstractField
from .hermite import central_slopes, hermite


def tabulate(field: AbstractField, lo, hi, nodes: int, dim: int, dtype) -> TabulatedField:
    """Tabulate ``field`` on ``nodes`` points of [lo, hi] (every coordinate alike).

    Values on the grid extended by two nodes each side; slopes by the fourth-order
    central difference (the CRN estimate is a smooth deterministic function of θ),
    so the Hermite interpolant is O(h⁴) accurate at the cost of nodes + 4
    evaluations. The SE is interpolated linearly.
    """
    h = (hi - lo) / (nodes - 1)
    u = lo + h * jnp.arange(-2, nodes + 2, dtype=dtype)
    pts = u[:, None] * jnp.ones((1, dim), u.dtype)
    f, se = field(pts)
    df = central_slopes(f, h)
    return TabulatedField(lo=lo, hi=hi, f=f[2:-2], df=df, se=se[2:-2])


class TabulatedField(AbstractField):
    """Cubic Hermite interpolant of a separable field on a uniform grid of [lo, hi].

    ``tf(theta)`` → (f, se) for θ of shape (…, dim); ``tf.value(theta)`` → f.
    Outside [lo, hi] the end cubic is extrapolated (callers choose the range so
    that this does not happen: the flow moves at most sup|f|·T from its start).
    """

    lo: Any
    hi: Any
    f: Any  # (nodes, dim)
    df: Any  # (nodes, dim): ∂f_i/∂θ_i at the nodes
    se: Any  # (nodes, dim)

    def _locate(self, theta):
        n = self.f.shape[0]
        h = (self.hi - self.lo) / (n - 1)
        pos = (theta - self.lo) / h
        i = jnp.clip(jnp.floor(pos), 0, n - 2).astype(jnp.int32)
        s = pos - i
        return i, s, h

    def value(self, theta):
        theta = jnp.asarray(theta, self.f.dtype)
        i, s, h = self._locate(theta)
        cols = jnp.arange(self.f.shape[1])
        return hermite(
            self.f[i, cols], self.f[i + 1, cols], self.df[i, cols], self.df[i + 1, cols], s, h
        )

    def __call__(self, theta):
        theta = jnp.asarray(theta, self.f.dtype)
        i, s, _ = self._locate(theta)
        cols = jnp.arange(self.f.shape[1])
        se = (1 - s) * self.se[i, cols] + s * self.se[i + 1, cols]
        return self.value(theta), se


# Most nodes per axis of a two-parameter table ((nodes + 4)² field evaluations).
GRID_MAX_NODES = 1024


def grid_tabulable(problem) -> bool:
    """Whether the field of ``problem`` is tabulated on a 2-D grid (:class:`GridField`):
    two parameters, not coordinate-separable (a separable field has a 1-D table)."""
    return problem.dim == 2 and not problem.separable


def tabulate_grid(field: AbstractField, lo, hi, nodes: int, dtype) -> GridField:
    """Tabulate a field of two parameters on ``nodes`` × ``nodes`` points of the box
    [lo₁, hi₁] × [lo₂, hi₂].

    Values on the grid extended by two nodes each side, (nodes + 4)² evaluations;
    the slopes ∂f/∂θ₁, ∂f/∂θ₂ and the cross slope ∂²f/∂θ₁∂θ₂ by fourth-order central
    differences along each axis, so the bicubic Hermite interpolant (the tensor product
    of the 1-D one) is O(h⁴) accurate. The SE is interpolated bilinearly.
    """
    lo, hi = (jnp.broadcast_to(jnp.asarray(a, dtype), (2,)) for a in (lo, hi))
    h = (hi - lo) / (nodes - 1)
    k = jnp.arange(-2, nodes + 2, dtype=dtype)
    u = lo[:, None] + h[:, None] * k  # (2, nodes + 4)
    pts = jnp.stack(jnp.meshgrid(u[0], u[1], indexing="ij"), -1).reshape(-1, 2)
    f, se = field(pts)
    f, se = (a.reshape(nodes + 4, nodes + 4, 2) for a in (f, se))

    # Slopes along θ₁ (axis 0; ``central_slopes`` differences along axis −2, here θ₂).
    f1 = jnp.swapaxes(central_slopes(jnp.swapaxes(f, 0, 1), h[0]), 0, 1)  # (nodes, nodes + 4, 2)
    inner = slice(2, -2)
    return GridField(
        lo=lo,
        hi=hi,
        f=f[inner, inner],
        d1=f1[:, inner],
        d2=central_slopes(f, h[1])[inner],
        d12=central_slopes(f1, h[1]),
        se=se[inner, inner],
    )


class GridField(AbstractField):
    """Bicubic Hermite interpolant of a field of two parameters on a uniform grid of a
    box (:func:`tabulate_grid`).

    ``gf(theta)`` → (f, se) for θ of shape (…, 2); ``gf.value(theta)`` → f. In the cell
    [θ₁ⁱ, θ₁ⁱ⁺¹] × [θ₂ʲ, θ₂ʲ⁺¹], at relative positions (s, t) ∈ [0, 1]², the tensor
    product of the 1-D cubic Hermite interpolant H(y0, y1, d0, d1; u, h)::

        p(s, t) = H(F_j, F_{j+1}, G_j, G_{j+1}; t, h₂),
        F_k = H(f[i, k], f[i+1, k], ∂₁f[i, k], ∂₁f[i+1, k]; s, h₁),
        G_k = H(∂₂f[i, k], ∂₂f[i+1, k], ∂₁∂₂f[i, k], ∂₁∂₂f[i+1, k]; s, h₁).

    Outside the box θ is first moved to its nearest point (the table does not
    extrapolate): callers check with :meth:`contains` (the APT flows do, and integrate a
    flow that leaves the box with the estimator itself).
    """

    lo: Any  # (2,)
    hi: Any  # (2,)
    f: Any  # (nodes, nodes, 2)
    d1: Any  # ∂f/∂θ₁ at the nodes
    d2: Any  # ∂f/∂θ₂
    d12: Any  # ∂²f/∂θ₁∂θ₂
    se: Any  # (nodes, nodes, 2)

    def _locate(self, theta):
        n = self.f.shape[0]
        h = (self.hi - self.lo) / (n - 1)
        pos = (jnp.clip(theta, self.lo, self.hi) - self.lo) / h
        i = jnp.clip(jnp.floor(pos), 0, n - 2).astype(jnp.int32)
        return i[..., 0], i[..., 1], pos[..., 0] - i[..., 0], pos[..., 1] - i[..., 1], h

    def value(self, theta):
        theta = jnp.asarray(theta, self.f.dtype)
        i, j, s, t, h = self._locate(theta)
        s, t = s[..., None], t[..., None]

        def along_1(y, dy, jj):  # the 1-D Hermite along θ₁ in column jj
            return hermite(y[i, jj], y[i + 1, jj], dy[i, jj], dy[i + 1, jj], s, h[0])

        f0, f1 = (along_1(self.f, self.d1, jj) for jj in (j, j + 1))
        g0, g1 = (along_1(self.d2, self.d12, jj) for jj in (j, j + 1))
        return hermite(f0, f1, g0, g1, t, h[1])

    def __call__(self, theta):
        theta = jnp.asarray(theta, self.f.dtype)
        i, j, s, t, _ = self._locate(theta)
        s, t = s[..., None], t[..., None]
        se = self.se
        se = (1 - t) * ((1 - s) * se[i, j] + s * se[i + 1, j]) + t * (
            (1 - s) * se[i, j + 1] + s * se[i + 1, j + 1]
        )
        return self.value(theta), se

    def contains(self, theta) -> np.ndarray:
        """Whether every point of each θ (…, k, 2) lies in the box: a NumPy bool array
        of shape (…) (False for NaN)."""
        theta = np.asarray(theta)
        lo, hi = np.asarray(self.lo), np.asarray(self.hi)
        return np.all((theta >= lo) & (theta <= hi), axis=(-2, -1))


def flow_table(
    vf: AbstractField, starts: np.ndarray, nodes: int, horizon: float, dt, target_se=None
):
    """The bicubic table of a two-parameter field for the flows from ``starts`` (P, 2), or
    the estimator itself where a table would not be accurate.

    The box: that of the starts, widened by how far a flow moves in the horizon at 1.5 ×
    the fastest |f̂| at (up to 64 of) the starts (a flow that still leaves it is integrated
    again with the estimator, ``apt.apt_prepare``). The check: at those starts and 64 points
    spread over the box the table must agree with the estimator to its median SE (then
    the table adds at most the estimator's own error), or, given the ``target_se`` the
    field was asked for, so that the two errors together, √(gap² + SE²), stay within it
    — a box made wide by a far-off run would leave the field under-resolved.
    """
    lo, hi = starts.min(0), starts.max(0)
    some = jnp.asarray(
        starts[np.linspace(0, len(starts) - 1, min(64, len(starts))).astype(int)], dt
    )
    f_some, se_some = (np.asarray(a) for a in vf(some))
    speed = np.nanmax(np.abs(f_some), axis=0)
    scale = np.maximum(1.0, np.abs(starts).max(0))
    pad = 0.05 * (hi - lo) + 1.5 * horizon * speed + 1e-2 * scale
    if not np.all(np.isfinite(pad)):
        return vf
    tab = tabulate_grid(vf, lo - pad, hi + pad, nodes, dt)
    spread = jnp.asarray(np.random.default_rng(0).uniform(lo - pad, hi + pad, size=(64, 2)), dt)
    f_spread, se_spread = (np.asarray(a) for a in vf(spread))
    f, se = np.concatenate([f_some, f_spread]), np.concatenate([se_some, se_spread])
    gap = np.nanmax(np.abs(np.asarray(tab.value(jnp.concatenate([some, spread]))) - f))
    med = float(np.nanmedian(se))
    tol = med if target_se is None else max(med, math.sqrt(max(target_se**2 - med**2, 0.0)))
    return tab if gap <= tol else vf
