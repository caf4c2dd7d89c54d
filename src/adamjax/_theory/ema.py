"""Circular exponential moving averages: the two linear recursions of the chain estimator.

For a sequence x_1 … x_M (rows of an (M, d) array) and a decay a, the stationary
solution of y_k = a y_{k−1} + (1−a) x_k on the *circular* sequence (x_M is
followed by x_1 again) is y_k = y⁽⁰⁾_k + a^k y_0 with y⁽⁰⁾ the recursion started
at 0 and y_0 = y_M = y⁽⁰⁾_M / (1 − a^M). The recursion from 0 is computed in one
of three ways (``scan``): ``"blocked"`` (a 64×64 Toeplitz matmul per block plus
the same recursion on the block ends, recursively: a parallel prefix scan that
compiles fast), ``"associative"`` (``lax.associative_scan``, the reference) or
``"sequential"`` (one ``lax.scan``; the fastest on CPU). ``"auto"`` picks by
backend. Reference: Dereich, Jentzen & Kassing (2025), Def. 1.3 (m_∞, v_∞).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

BLOCK = 64  # block length of the blocked recursion (a Toeplitz matmul per block)


def _toeplitz(a, n: int, dtype):
    k = jnp.arange(n)
    e = k[:, None] - k[None, :]
    return jnp.where(e >= 0, jnp.power(a, jnp.maximum(e, 0).astype(dtype)), 0.0)


def _ema_zero(x, a):
    """y_k = a y_{k−1} + x_k with y_0 = 0, for x of shape (M, d): blocked and recursive.

    Within blocks of 64 steps the recursion is a lower-triangular Toeplitz matmul
    (BLAS); the block ends form the same recursion with coefficient a^64, solved
    recursively; each block then adds a^(k+1) × the previous block's end. Work
    O(64·M), depth O(log M) — the blocked form of a parallel prefix scan, faster to
    compile and run on CPU than ``lax.associative_scan``.
    """
    M, d = x.shape
    Q = BLOCK
    if M <= Q:
        return _toeplitz(a, M, x.dtype) @ x
    P = -(-M // Q)
    pad = P * Q - M
    xp = jnp.pad(x, ((0, pad), (0, 0))) if pad else x
    local = jnp.einsum("kj,pjd->pkd", _toeplitz(a, Q, x.dtype), xp.reshape(P, Q, d))
    ends = _ema_zero(local[:, -1], a**Q)
    prev = jnp.concatenate([jnp.zeros((1, d), x.dtype), ends[:-1]], 0)
    pw = jnp.power(a, jnp.arange(1, Q + 1, dtype=x.dtype))
    y = local + pw[None, :, None] * prev[:, None, :]
    return y.reshape(P * Q, d)[:M]


def _ema_zero_assoc(x, a):
    """Same as :func:`_ema_zero` with one ``lax.associative_scan`` (reference)."""
    M = x.shape[0]

    def comb(u, w):
        a1, b1 = u
        a2, b2 = w
        return a1 * a2, a2 * b1 + b2

    _, y = jax.lax.associative_scan(comb, (jnp.broadcast_to(a, (M, 1)), x))
    return y


def _ema_zero_seq(x, a):
    """Same as :func:`_ema_zero` by the sequential recursion (one ``lax.scan``)."""

    def body(y, xk):
        y = a * y + xk
        return y, y

    return jax.lax.scan(body, jnp.zeros_like(x[0]), x)[1]


def scan_kind(scan: str) -> str:
    if scan not in ("auto", "sequential", "blocked", "associative"):
        raise ValueError(
            f"scan = {scan!r}: expected 'auto', 'sequential', 'blocked' or 'associative'"
        )
    if scan == "auto":
        return "sequential" if jax.default_backend() == "cpu" else "blocked"
    return scan


def circular_ema(x, a, scan: str = "blocked"):
    """Stationary solution of y_k = a y_{k−1} + (1−a) x_k on the circular sequence x.

    ``x`` has shape (M, d), ``a`` is a (traced) scalar. With y⁽⁰⁾ the recursion
    started at 0, y_k = y⁽⁰⁾_k + a^k y_0 where y_0 = y_M = y⁽⁰⁾_M / (1 − a^M).
    """
    M = x.shape[0]
    a = jnp.asarray(a, x.dtype)
    ema = {"associative": _ema_zero_assoc, "sequential": _ema_zero_seq}.get(scan, _ema_zero)
    y = ema((1 - a) * x, a)
    pw = jnp.power(a, jnp.arange(1, M + 1, dtype=x.dtype))
    return y + pw[:, None] * (y[-1] / (1 - a**M))
