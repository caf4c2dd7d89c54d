"""θ-free precomputed moments: the vector field's fast paths (quadratic, finite sums).

The chain estimator (``vector_field``) averages r_k = m_k / (ε + √(v_k + ε_root))
over the circular moment chains m_k = EMA_α(g)_k, v_k = EMA_β(g²)_k with
g_k = G(θ, X_k). Where G depends on θ through a few θ-only quantities, the chains
are linear in those quantities with θ-free weights, computed once:

* quadratic, g_k = h (θ − x̄_k):  m_k = h (θ − a_k),  v_k = h² ((θ − b_k)² + w_k)
  with a = EMA_α(x̄), b = EMA_β(x̄), w = EMA_β(x̄²) − b²;
* finite sum with mini-batch counts c_k ∈ R^N (c_{k,i} = #{i in batch k} / b) and the
  per-example gradients ∇ℓ_i(θ) as the rows of G (N, d):  g_k = c_k · G, so
  m_k = A_k · G  with A = EMA_α(c). For b = 1, c_k is one-hot and v_k = V_k · G² with
  V = EMA_β(c). For b > 1, v_k = EMA_β((c·G)²)_k is not linear in G²: the squared
  mini-batch gradients (b rows of G each) are summed over each block of ``thin`` steps
  with the weights (1 − β)β^(thin−1−t), and the blocks' recursion
  V_k = β^thin V_{k−1} + B_k is one circular EMA over the K blocks.

An evaluation then costs N gradients (not M) plus O(K N d) flops (O(M b d) for b > 1,
where the weights Q = EMA_β(c ⊗ c) of v would cost O(K N² d)). The moments are
kept at every ``thin``-th k only (K = M / thin rows): neighbouring r_k are strongly
correlated (over ~1/(1 − α) steps), so averaging every one of them adds little
information; the batch-means SE measures what the thinned average achieves. With
``thin = 1`` the estimate equals the generic chain's to rounding.

Reference: Dereich, Jentzen & Kassing (2025), Def. 1.3 (m_∞, v_∞).
"""

from __future__ import annotations

import abc
from typing import Any

import equinox as eqx
import jax.numpy as jnp

from .._engine.problems.base import AbstractFiniteSumProblem, Problem
from .._engine.problems.quadratic import Quadratic
from .ema import circular_ema

# The finite-sum weights are built from an (M, N) array: above this many elements the
# generic chain is used instead.
MAX_WEIGHT_ELEMS = 2**25


class AbstractMoments(eqx.Module):
    """θ-free weights from which the moment chains (m_k, v_k), k = 1 … K, follow for any θ."""

    @abc.abstractmethod
    def mv(self, problem: Problem, theta):
        """(m, v), each (K, d), at one θ of shape (d,)."""

    def temp_elems(self, dim: int) -> int:
        """Elements of the temporaries of one ``mv`` beyond the (K, d) results."""
        return 0


class QuadraticMoments(AbstractMoments):
    """a, b, w (K, d) of the quadratic (see the module docstring)."""

    a: Any
    b: Any
    w: Any

    def mv(self, problem, theta):
        h = problem.curvature
        return h * (theta - self.a), h * h * ((theta - self.b) ** 2 + self.w)


class FiniteSumMoments(AbstractMoments):
    """A (K, N) and V (K, N) of a finite sum with batch size 1 (module docstring)."""

    A: Any
    V: Any

    def mv(self, problem, theta):
        G = problem.example_grads(theta)  # (N, d)
        return self.A @ G, self.V @ (G * G)


class MiniBatchMoments(AbstractMoments):
    """A (K, N) and, for v, the sample indices (K, thin, b), the in-block weights (thin,)
    and β^thin of a finite sum with batch size b > 1 (module docstring)."""

    A: Any
    idx: Any
    weights: Any
    decay: Any
    scan: str = eqx.field(static=True)

    def mv(self, problem, theta):
        G = problem.example_grads(theta)  # (N, d)
        g = jnp.mean(G[self.idx], axis=2)  # (K, thin, d): the mini-batch gradients
        blocks = jnp.sum(self.weights[:, None] * g * g, axis=1)  # (K, d)
        # V_k = β^thin V_{k−1} + B_k, i.e. circular_ema of B/(1 − β^thin) at β^thin.
        v = circular_ema(blocks / (1 - self.decay), self.decay, self.scan)
        return self.A @ G, v

    def temp_elems(self, dim: int) -> int:
        # The gathered rows (K, thin, b, d) and their means (K, thin, d).
        K, thin, b = self.idx.shape
        return K * thin * (b + 1) * dim


def thin_default(b1) -> int:
    """The largest power of two ≤ 1/(1 − α), from 1 to 1024: about the correlation time
    of m_k, within which neighbouring r_k carry nearly the same information (measured on
    the quadratic, the regression network and Zhang's example at (0.9, 0.99): thin = 8
    gives the SE of the full chain within 20 % at 1/8 of the cost)."""
    corr = 1.0 / max(1.0 - float(b1), 1e-12) * (1 + 1e-9)
    s = 1
    while 2 * s <= min(corr, 1024.0):
        s *= 2
    return s


def make_moments(problem: Problem, xs, b1, b2, scan: str, thin: int) -> AbstractMoments | None:
    """The fast-path moments of ``problem`` on the pre-drawn samples ``xs`` (M, batch), or
    None where there is no fast path (the generic chain is then used)."""
    if isinstance(problem, Quadratic):
        return _quad(problem, xs, b1, b2, scan, thin)
    if isinstance(problem, AbstractFiniteSumProblem) and problem.minibatch_gradient:
        M, b = xs.shape
        N = problem.n_data
        if M * N > MAX_WEIGHT_ELEMS:
            return None
        return _finite_sum(xs, N, b1, b2, scan, thin)
    return None


@eqx.filter_jit
def _quad(problem, xs, b1, b2, scan: str, thin: int) -> QuadraticMoments:
    xbar = jnp.mean(xs, axis=1)  # (M, d): the mini-batch mean of the samples
    a = circular_ema(xbar, b1, scan)
    b = circular_ema(xbar, b2, scan)
    w = jnp.maximum(circular_ema(xbar * xbar, b2, scan) - b * b, 0)
    return QuadraticMoments(a[thin - 1 :: thin], b[thin - 1 :: thin], w[thin - 1 :: thin])


@eqx.filter_jit
def _finite_sum(xs, N: int, b1, b2, scan: str, thin: int) -> AbstractMoments:
    M, b = xs.shape
    # (M, N) batch counts / b, by a scatter-add (a one-hot would be an (M, b, N) array).
    rows = jnp.broadcast_to(jnp.arange(M)[:, None], xs.shape)
    c = jnp.zeros((M, N), b1.dtype).at[rows, xs].add(1) / b
    A = circular_ema(c, b1, scan)[thin - 1 :: thin]
    if b == 1:
        return FiniteSumMoments(A, circular_ema(c, b2, scan)[thin - 1 :: thin])
    t = jnp.arange(thin, dtype=b2.dtype)
    weights = (1 - b2) * b2 ** (thin - 1 - t)
    return MiniBatchMoments(A, xs.reshape(M // thin, thin, b), weights, b2**thin, scan)
