"""The Adam vector field f, its standard error, its zeros and the Lyapunov check.

Definition (Dereich & Jentzen 2024; Dereich, Jentzen & Kassing 2025, Def. 1.3).
Freeze θ and let Adam's moment recursions run forever on i.i.d. innovations::

    m_∞(θ) = Σ_{k≥0} (1−α) α^k G(θ, X_k)
    v_∞(θ) = Σ_{k≥0} (1−β) β^k G(θ, X_k)²          (the same X_k in both sums)
    f(θ)   = E[ m_∞(θ) / (ε + sqrt(v_∞(θ) + ε_root)) ]       (coordinate-wise)

Adam follows the ODE θ' = −f(θ) (Thm 1.5) and, if it converges, converges to a
zero of f (Cor. 1.10), which in general is not a critical point of L. Without
noise (G = ∇L) f = ∇L / (ε + |∇L|) coordinate-wise (eq. (6)). RMSProp is α = 0,
signSGD α = β = ε = 0.

Estimator (``method="chain"``). One noise sequence X_1 … X_M is drawn once
(common random numbers: for a fixed ``seed`` the estimate f̂ is a deterministic,
smooth function of θ, so ODE solvers and root finders can use it). For a given θ,
g_k = G(θ, X_k) and the two linear recursions are solved on the *circular*
sequence (X_M is followed by X_1 again)::

    m_k = α m_{k−1} + (1−α) g_k,   m_0 = m_M     ⇒   m_0 = m_M⁽⁰⁾ / (1 − α^M)

where m⁽⁰⁾ is the recursion started at 0; both are computed for the whole
sequence at once: on accelerators by a parallel prefix scan, blocked (a 64×64
Toeplitz matmul per block plus the same recursion on the block ends, recursively;
``scan="blocked"``) or ``lax.associative_scan`` (``scan="associative"``); on CPU by
the plain recursion, ``lax.scan`` passes over the samples that sum the batch means
in the loop (``scan="sequential"``; 2–9× the blocked form there, which does 64× the
flops and streams length-M arrays through memory). ``scan="auto"`` (the default)
picks by backend. Every m_k, v_k then
has the law of (m_∞, v_∞) up to the truncation α^M, β^M (negligible for
M ≫ 1/(1−β)), so no burn-in is wasted, and f̂ = mean_k m_k/(ε+√v_k). The
standard error comes from batch means (``batches`` contiguous batches, each much
longer than the correlation time ~1/(1−β)).

Control variate (on by default when G is a stochastic gradient, i.e. E[G] = ∇L):
the batch means of m_k have the known mean ∇L(θ) (the circular mean of m is the
sample mean of g), so f̂ = mean(r) − λ (mean(m) − ∇L) with the per-coordinate
regression coefficient λ fitted on the batch means. Where E[G²] is known in
closed form (quadratic, finite sums) the batch means of v are a second control.
The fluctuations of m and v — most of the variance — cancel; on the asymmetric
quadratic with (α, β) = (0.9, 0.99) the variance drops ≈ 15× at the zero of f
and ≈ 100× at |θ| = 1.

Cost per θ: O(M · dim · (cost of G + ~150 flops)) for the generic chain (the blocked
scan is a 64-wide matmul per element), vectorised over θ in chunks of at most 2**22
sample-coordinates; for the quadratic the θ-free circular moments are precomputed
once and an evaluation is ~15 flops per sample (``fast=True``). Accuracy: SE ∝ 1/√M;
pass ``samples`` or a ``target_se`` (a pilot run at ``at`` sizes M).

For problems whose field is coordinate-separable (the diagonal quadratic: f_i
depends on θ_i only) :meth:`VectorField.tabulate` evaluates f̂ once on a grid
and returns a cubic Hermite interpolant (:class:`TabulatedField`) that costs a
few flops per evaluation — what the ODE flow of thousands of runs needs.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._problems import FiniteSumProblem, Problem, Quadratic, StreamProblem

# Stream tag for the common random numbers of the vector field.
_VF_TAG = 0x0F1E1D

_CHUNK_ELEMS = 2**22  # sample-coordinates per vectorised evaluation


_BLOCK = 64  # block length of the blocked recursion (a Toeplitz matmul per block)


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
    Q = _BLOCK
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


def _scan_kind(scan: str) -> str:
    if scan not in ("auto", "sequential", "blocked", "associative"):
        raise ValueError(
            f"scan = {scan!r}: expected 'auto', 'sequential', 'blocked' or 'associative'"
        )
    if scan == "auto":
        return "sequential" if jax.default_backend() == "cpu" else "blocked"
    return scan


def _circular_ema(x, a, scan: str = "blocked"):
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


def second_moment(problem: Problem, theta, batch_size: int):
    """E[G(θ, X)²] (coordinate-wise) for a mini-batch of ``batch_size`` i.i.d. samples,
    when known in closed form (quadratic, finite sums), else None."""
    if isinstance(problem, Quadratic):
        g = problem.grad(theta)
        if problem.noise == "none":
            return g * g
        return g * g + (problem.curvature * problem.noise_scale) ** 2 / batch_size
    if isinstance(problem, FiniteSumProblem):
        eg = problem.example_grads(theta)
        g = jnp.mean(eg, 0)
        return g * g + (jnp.mean(eg * eg, 0) - g * g) / batch_size
    return None


class VectorField(eqx.Module):
    """The Adam vector field of ``problem`` with hyperparameters (α, β, ε).

    Call ``vf(theta)`` with θ of shape (…, dim) → ``(f, se)`` of the same shape;
    ``vf.value(theta)`` returns f only (for solvers); ``vf.cov(theta)`` the
    (…, dim, dim) covariance of f̂ (batch means). Build it with :func:`vector_field`.

    Array fields (hyperparameters, the pre-drawn samples) are traced, so fields
    with different (α, β, ε) share one compilation.
    """

    problem: Problem
    b1: Any
    b2: Any
    eps: Any
    eps_root: Any
    xs: Any  # pre-drawn samples, leading axes (samples, batch); None for "exact"
    method: str = eqx.field(static=True, default="chain")
    batches: int = eqx.field(static=True, default=32)
    control_variate: bool = eqx.field(static=True, default=True)
    scan: str = eqx.field(static=True, default="blocked")
    moments: Any = None  # quadratic fast path: θ-free circular moments (a, b, w), each (M, d)

    @property
    def dim(self) -> int:
        return int(self.problem.dim)

    @property
    def samples(self) -> int:
        if self.xs is None:
            return 0
        return int(jax.tree_util.tree_leaves(self.xs)[0].shape[0])

    def with_moments(self) -> VectorField:
        """Precompute the quadratic fast path (a no-op for other problems)."""
        if not isinstance(self.problem, Quadratic) or self.xs is None:
            return self
        return eqx.tree_at(
            lambda t: t.moments, self, _quad_moments(self), is_leaf=lambda x: x is None
        )

    @property
    def dtype(self):
        return jnp.asarray(self.b1).dtype

    # -- one θ ------------------------------------------------------------------
    def _stats_one(self, theta):
        """(f̂, batch residuals (B, d)) at one θ of shape (d,)."""
        eps, b1, b2, er = self.eps, self.b1, self.b2, self.eps_root
        if self.method == "exact":
            g = self.problem.grad(theta)
            f = g / (eps + jnp.sqrt(g * g + er))
            return f, jnp.zeros((2, theta.shape[0]), theta.dtype)
        if self.moments is not None:
            # Quadratic: g_k = h (θ − x̄_k) is affine in θ, so with the θ-free circular
            # averages a = EMA_α(x̄), b = EMA_β(x̄), w = EMA_β(x̄²) − b² (≥ 0):
            # m_k = h (θ − a_k), v_k = h² ((θ − b_k)² + w_k). Same numbers as the
            # generic path, O(M) per θ without any scan.
            a, b, w = self.moments
            h = self.problem.curvature
            m = h * (theta - a)
            v = h * h * ((theta - b) ** 2 + w)
            g = None
        elif self.scan == "sequential":
            rb, mb, vb = self._batch_means_seq(theta)
        else:
            g = jax.vmap(self.problem.innovation, (None, 0))(theta, self.xs)  # (M, d)
            m = _circular_ema(g, b1, self.scan)
            v = _circular_ema(g * g, b2, self.scan)
        if self.moments is not None or self.scan != "sequential":
            r = m / (eps + jnp.sqrt(v + er))
            B = self.batches
            M = r.shape[0]

            def bmean(a):
                return a.reshape(B, M // B, -1).mean(axis=1)  # (B, d)

            rb, mb, vb = bmean(r), bmean(m), bmean(v)
        if not self.control_variate:
            return rb.mean(0), rb - rb.mean(0)
        # Controls: batch means of m and v minus their known means ∇L and E[G²]
        # (stationary chain: E[m_k] = E[G], E[v_k] = E[G²]).
        ctl = [mb - self.problem.grad(theta)]
        eg2 = second_moment(self.problem, theta, self._batch_size)
        if eg2 is not None:
            ctl.append(vb - eg2)
        C = jnp.stack(ctl, -1)  # (B, d, k)
        Cc = C - C.mean(0)
        dr = rb - rb.mean(0)
        S = jnp.einsum("bdk,bdl->dkl", Cc, Cc)
        sy = jnp.einsum("bdk,bd->dk", Cc, dr)
        k = C.shape[-1]
        scale = jnp.trace(S, axis1=-2, axis2=-1)[:, None, None] / k
        ok = scale > 0
        reg = jnp.where(ok, scale, 1.0) * (1e-10 * jnp.eye(k, dtype=S.dtype))
        lam = jnp.linalg.solve(jnp.where(ok, S, 1.0) + reg, sy[..., None])[..., 0]
        lam = jnp.where(ok[:, :, 0], lam, 0.0)  # (d, k)
        adj = rb - jnp.einsum("bdk,dk->bd", C, lam)  # per-batch CV estimates
        return adj.mean(0), adj - adj.mean(0)

    def _batch_means_seq(self, theta):
        """Batch means of r_k = m_k/(ε+√(v_k+ε_root)), m_k and v_k (each (B, d)) by
        sequential passes over the samples, nothing of length M materialised: the
        first runs the recursions from 0 around the circle to get the stationary start
        m_0 = m⁽⁰⁾_M/(1−α^M) (and v_0 alike), the others run them from there and sum
        per batch. The same estimator as the prefix-scan forms; on CPU this is the
        fast one (the scan body stays in registers, where the others stream (M, d)
        arrays through memory for every operation)."""
        eps, b1, b2, er = self.eps, self.b1, self.b2, self.eps_root
        B, M = self.batches, self.samples
        L = M // B
        z = jnp.zeros_like(theta)

        def moments(c, x):
            m, v = c
            g = self.problem.innovation(theta, x)
            return (b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g), None

        (mM, vM), _ = jax.lax.scan(moments, (z, z), self.xs)
        start = (mM / (1 - b1**M), vM / (1 - b2**M))

        xb = jax.tree_util.tree_map(lambda a: a.reshape(B, L, *a.shape[1:]), self.xs)

        # One pass per statistic, each with a single accumulator: XLA keeps such a
        # loop as one tight kernel on CPU; with three accumulators in one loop it
        # was 8× slower per pass. (Unused passes, m and v without control
        # variates, are removed by XLA.)
        def batch_means(stat):
            def step(c, x):
                mv, acc = c
                mv, _ = moments(mv, x)
                return (mv, acc + stat(*mv)), None

            def batch(mv, xs_b):
                (mv, acc), _ = jax.lax.scan(step, (mv, z), xs_b)
                return mv, acc / L

            return jax.lax.scan(batch, start, xb)[1]

        rb = batch_means(lambda m, v: m / (eps + jnp.sqrt(v + er)))
        return rb, batch_means(lambda m, v: m), batch_means(lambda m, v: v)

    @property
    def _batch_size(self) -> int:
        return int(jax.tree_util.tree_leaves(self.xs)[0].shape[1])

    @property
    def _n_controls(self) -> int:
        if not self.control_variate:
            return 0
        p = self.problem
        return 2 if isinstance(p, Quadratic | FiniteSumProblem) else 1

    def _one(self, theta):
        f, res = self._stats_one(theta)
        B = res.shape[0]
        dof = max(B - 1 - self._n_controls, 1)
        se = jnp.sqrt(jnp.sum(res * res, 0) / dof / B)
        if self.method == "exact":
            se = jnp.zeros_like(f)
        return f, se

    def _cov_one(self, theta):
        f, res = self._stats_one(theta)
        B = res.shape[0]
        dof = max(B - 1 - self._n_controls, 1)
        return res.T @ res / dof / B

    # -- vectorised -----------------------------------------------------------
    def _map(self, fn, theta):
        theta = jnp.asarray(theta, self.dtype)
        lead = theta.shape[:-1]
        flat = theta.reshape(-1, theta.shape[-1])
        per = max(1, self.samples * self.dim)
        bs = max(1, min(flat.shape[0], _CHUNK_ELEMS // per))
        small = flat.shape[0] <= bs
        out = jax.vmap(fn)(flat) if small else jax.lax.map(fn, flat, batch_size=bs)
        return jax.tree_util.tree_map(lambda a: a.reshape(*lead, *a.shape[1:]), out)

    def __call__(self, theta):
        """(f̂(θ), SE) for θ of shape (…, dim)."""
        return _jit_call(self, theta)

    def value(self, theta):
        """f̂(θ) only (a deterministic smooth function of θ for a fixed seed)."""
        return _jit_value(self, theta)

    def cov(self, theta):
        """Covariance (…, dim, dim) of f̂(θ) from batch means."""
        return _jit_cov(self, theta)

    # -- tabulation -------------------------------------------------------------
    def tabulate(self, lo: float, hi: float, nodes: int = 257) -> TabulatedField:
        """Tabulate a coordinate-separable field on ``nodes`` points of [lo, hi].

        Valid when f_i depends on θ_i only (the diagonal quadratic). Values and
        slopes (fourth-order differences of the smooth CRN estimate) at the nodes give
        a cubic Hermite interpolant, error O(h⁴); SE is interpolated linearly.
        """
        if not separable(self.problem):
            raise ValueError(
                "vector field: tabulation needs a coordinate-separable problem (quadratic)"
            )
        return _tabulate(self, jnp.asarray(lo, self.dtype), jnp.asarray(hi, self.dtype), nodes)


@eqx.filter_jit
def _quad_moments(vf: VectorField):
    xbar = jnp.mean(vf.xs, axis=1)  # (M, d): the mini-batch mean of the samples
    a = _circular_ema(xbar, vf.b1, vf.scan)
    b = _circular_ema(xbar, vf.b2, vf.scan)
    w = jnp.maximum(_circular_ema(xbar * xbar, vf.b2, vf.scan) - b * b, 0)
    return a, b, w


@eqx.filter_jit
def _jit_call(vf: VectorField, theta):
    return vf._map(vf._one, theta)


@eqx.filter_jit
def _jit_value(vf: VectorField, theta):
    return vf._map(lambda t: vf._stats_one(t)[0], theta)


@eqx.filter_jit
def _jit_cov(vf: VectorField, theta):
    return vf._map(vf._cov_one, theta)


def separable(problem: Problem) -> bool:
    """Whether f_i(θ) depends on θ_i only (diagonal quadratic with independent noise)."""
    return isinstance(problem, Quadratic)


def _tabulate(vf: VectorField, lo, hi, nodes: int) -> TabulatedField:
    # Values on the grid extended by two nodes each side; slopes by the fourth-order
    # central difference (f̂ is a smooth deterministic function of θ), so the Hermite
    # interpolant is O(h⁴) accurate at the cost of nodes + 4 evaluations.
    h = (hi - lo) / (nodes - 1)
    u = lo + h * jnp.arange(-2, nodes + 2, dtype=vf.dtype)
    pts = u[:, None] * jnp.ones((1, vf.dim), u.dtype)
    f, se = vf(pts)
    df = (f[:-4] - 8 * f[1:-3] + 8 * f[3:-1] - f[4:]) / (12 * h)
    return TabulatedField(lo=lo, hi=hi, f=f[2:-2], df=df, se=se[2:-2])


class TabulatedField(eqx.Module):
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
        f0, f1 = self.f[i, cols], self.f[i + 1, cols]
        d0, d1 = self.df[i, cols], self.df[i + 1, cols]
        s2, s3 = s * s, s * s * s
        h00 = 2 * s3 - 3 * s2 + 1
        h10 = s3 - 2 * s2 + s
        h01 = -2 * s3 + 3 * s2
        h11 = s3 - s2
        return h00 * f0 + h10 * h * d0 + h01 * f1 + h11 * h * d1

    def __call__(self, theta):
        theta = jnp.asarray(theta, self.f.dtype)
        i, s, _ = self._locate(theta)
        cols = jnp.arange(self.f.shape[1])
        se = (1 - s) * self.se[i, cols] + s * self.se[i + 1, cols]
        return self.value(theta), se


def field_bound(b1: float, b2: float) -> float:
    """sup |m_∞ / √v_∞| ≤ (1−α)/√(1−β) / √(1 − α²/β) (Cauchy–Schwarz; needs α² < β).

    The flow therefore moves at most this far per unit of time."""
    if b1 * b1 >= b2:
        return float("inf")
    return (1 - b1) / math.sqrt(1 - b2) / math.sqrt(1 - b1 * b1 / b2)


# --- construction ---------------------------------------------------------------------


def _hparams_from_spec(spec, point: int):
    from ._run import _dtype
    from ._spec import grid_points, load_spec, resolve_problem

    loaded = load_spec(spec)
    points = list(grid_points(loaded.spec))
    p = points[point]
    dtype = _dtype(p["run"]["dtype"])
    from ._problems import make_problem

    problem = make_problem(resolve_problem(p["problem"]), dtype)
    o = p["optimizer"]
    return problem, o["kind"], o["b1"], o["b2"], o["eps"], o["eps_root"], p["sampling"], p


def default_dtype():
    """float64 when x64 is enabled (recommended for the theory layer), else float32."""
    return jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32


def _cast_problem(problem: Problem, dtype) -> Problem:
    def cast(a):
        if eqx.is_array(a) and jnp.issubdtype(a.dtype, jnp.floating):
            return a.astype(dtype)
        return a

    return jax.tree_util.tree_map(cast, problem)


def vector_field(
    spec_or_problem,
    *,
    b1: float | None = None,
    b2: float | None = None,
    eps: float | None = None,
    eps_root: float | None = None,
    optimizer: str | None = None,
    batch_size: int | None = None,
    samples: int | None = None,
    target_se: float | None = None,
    at=None,
    max_samples: int = 2**24,
    batches: int = 32,
    control_variate: bool | None = None,
    method: str = "auto",
    fast: bool = True,
    scan: str = "auto",
    seed: int = 0,
    point: int = 0,
    dtype=None,
) -> VectorField:
    """The Adam vector field f of a spec (its grid point ``point``) or a :class:`Problem`.

    Returns a :class:`VectorField`: ``vf(theta) -> (f, se)`` for θ of shape (…, dim).

    * ``method``: ``"exact"`` (noiseless problems: f = ∇L/(ε+|∇L|), se = 0),
      ``"chain"`` (the CRN circular-chain estimator of the module docstring), or
      ``"auto"`` (exact when the problem has no noise).
    * Accuracy: ``samples`` M (rounded up to a multiple of 64·``batches``; default
      2**18), or ``target_se``: a pilot with 2**16 samples at the points ``at``
      (default θ = 0) sets M = 1.1·2**16·(SE/target)² (≤ ``max_samples``).
    * ``optimizer``: ``adam`` (default), ``rmsprop`` (α = 0), ``signsgd`` (α = β = ε = 0).
    * ``fast``: for the quadratic, precompute the θ-free circular moments once, so an
      evaluation costs O(M) flops without scans (identical estimator). ``scan``:
      ``"auto"`` (default: ``"sequential"`` on CPU, ``"blocked"`` elsewhere),
      ``"sequential"``, ``"blocked"`` or ``"associative"`` (see the module docstring).
    * ``seed`` fixes the common random numbers; ``dtype`` defaults to float64 when x64 is
      enabled.

    Reference: Dereich, Jentzen & Kassing (2025), Def. 1.3 and eq. (6).
    """
    samp = {}
    if isinstance(spec_or_problem, Problem):
        problem = spec_or_problem
        kind = optimizer or "adam"
        b1 = 0.9 if b1 is None else b1
        b2 = 0.999 if b2 is None else b2
        eps = 1e-8 if eps is None else eps
        eps_root = 0.0 if eps_root is None else eps_root
    else:
        problem, k, sb1, sb2, seps, ser, samp, _ = _hparams_from_spec(spec_or_problem, point)
        kind = optimizer or k
        b1 = sb1 if b1 is None else b1
        b2 = sb2 if b2 is None else b2
        eps = seps if eps is None else eps
        eps_root = ser if eps_root is None else eps_root
    if batch_size is None:
        batch_size = int(samp.get("batch_size", 1)) if samp else 1
    if kind == "rmsprop":
        b1 = 0.0
    elif kind == "signsgd":
        b1, b2, eps = 0.0, 0.0, 0.0
    elif kind != "adam":
        raise ValueError(
            f"optimizer.kind = {kind!r}: the vector field is defined for adam, rmsprop and signsgd"
        )
    dtype = default_dtype() if dtype is None else dtype
    problem = _cast_problem(problem, dtype)
    if method == "auto":
        noiseless = isinstance(problem, Quadratic) and problem.noise == "none"
        method = "exact" if noiseless else "chain"
    if method not in ("exact", "chain"):
        raise ValueError(f"method = {method!r}: must be one of auto, exact, chain")
    if control_variate is None:
        control_variate = not isinstance(problem, StreamProblem)
    hp = {
        k: jnp.asarray(v, dtype) for k, v in dict(b1=b1, b2=b2, eps=eps, eps_root=eps_root).items()
    }

    def build(m: int) -> VectorField:
        xs = None
        if method == "chain":
            key = jax.random.fold_in(jax.random.PRNGKey(seed), _VF_TAG)
            xs = problem.sample(key, (m, batch_size))
        vf = VectorField(
            problem=problem,
            xs=xs,
            method=method,
            batches=batches,
            control_variate=bool(control_variate),
            scan=_scan_kind(scan),
            **hp,
        )
        return vf.with_moments() if fast else vf

    if method == "exact":
        return build(0)
    corr = 1.0 / (1.0 - max(float(b2), float(b1)) + 1e-300)
    if samples is None and target_se is not None:
        m0 = _round(2**16, batches)
        pilot = build(m0)
        pts = jnp.zeros((1, problem.dim), dtype) if at is None else jnp.asarray(at, dtype)
        _, se = pilot(pts.reshape(-1, problem.dim))
        worst = float(jnp.max(se))
        need = m0 * (worst / target_se) ** 2 * 1.1 if worst > 0 else m0
        samples = min(max_samples, max(int(math.ceil(need)), m0))
    samples = _round(samples or 2**18, batches)
    if samples // batches < 10 * corr:
        raise ValueError(
            f"samples = {samples}: each of the {batches} batches must be much "
            f"longer than 1/(1−β) ≈ {corr:.0f} steps; use more samples"
        )
    return build(samples)


def _round(m: int, batches: int) -> int:
    unit = batches * _BLOCK
    return int(math.ceil(m / unit) * unit)


# --- zeros and Lyapunov ---------------------------------------------------------------


class Zero(NamedTuple):
    """A zero of f̂: ``theta`` (dim,), its SE (delta method), the residual f̂(theta),
    whether the solver converged, ∇L(theta), and the distance to the problem's
    known minimiser (NaN if none)."""

    theta: Any
    se: Any
    residual: Any
    success: bool
    grad_loss: Any
    distance_to_minimizer: float


@eqx.filter_jit
def _newton_parts(vf: VectorField, y):
    f, J = vf.value(y), jax.jacfwd(vf.value)(y)
    C = vf.cov(y) if vf.method != "exact" else jnp.zeros((y.shape[0],) * 2, y.dtype)
    return f, J, C


def vf_zero(
    field: VectorField,
    x0=None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int = 50,
) -> Zero:
    """Find θ with f̂(θ) = 0 by Newton's method on the CRN estimate f̂ (smooth in θ, so
    the Jacobian J = ∂f̂/∂θ comes from forward-mode AD through the estimator).

    The SE of the zero is the delta method, sqrt(diag(J⁻¹ Σ J⁻ᵀ)) with Σ the
    batch-means covariance of f̂ at the zero. ``grad_loss`` = ∇L at the zero: in
    general the zero of f is not a critical point of L (Dereich, Jentzen & Kassing
    2025, Cor. 1.10; Dereich & Jentzen: it is the minimiser iff the noise is symmetric).

    Newton stops when every |step| ≤ atol + rtol·|θ|; by default rtol = 1e-10 and
    atol = 1e-12, or 64 and 0.064 units in the last place of the field's dtype where
    that is coarser (float32: a step cannot shrink below the spacing of θ).
    """
    ulp = float(jnp.finfo(field.dtype).eps)
    rtol = max(1e-10, 64 * ulp) if rtol is None else rtol
    atol = max(1e-12, 0.064 * ulp) if atol is None else atol
    d = field.dim
    y = jnp.zeros(d, field.dtype) if x0 is None else jnp.asarray(x0, field.dtype).reshape(d)
    ok = False
    for _ in range(max_steps):
        f, J, C = _newton_parts(field, y)
        step = jnp.linalg.solve(J, f)
        y = y - step
        if not bool(jnp.all(jnp.isfinite(y))):
            break
        if bool(jnp.all(jnp.abs(step) <= atol + rtol * jnp.abs(y))):
            ok = True
            break
    f, J, C = _newton_parts(field, y)
    Ji = jnp.linalg.inv(J)
    se = jnp.sqrt(jnp.clip(jnp.diag(Ji @ C @ Ji.T), 0))
    mini = field.problem.minimizer
    dist = float("nan") if mini is None else float(jnp.linalg.norm(y - mini))
    return Zero(
        theta=np.asarray(y),
        se=np.asarray(se),
        residual=np.asarray(f),
        success=ok,
        grad_loss=np.asarray(field.problem.grad(y)),
        distance_to_minimizer=dist,
    )


class Lyapunov(NamedTuple):
    """⟨∇L(θ), f̂(θ)⟩ at each point, its SE, and the fraction of points where it is > 0."""

    values: Any
    se: Any
    fraction_positive: float


def lyapunov(field: VectorField, points) -> Lyapunov:
    """The Lyapunov quantity ⟨∇L(θ), f(θ)⟩ at ``points`` (…, dim).

    L is a Lyapunov function of θ' = −f where this is > 0 (Dereich, Jentzen &
    Kassing 2025, Thm 2.1: near the global minima of an overparametrised ERM for
    large enough mini-batches). SE from the batch-means covariance.
    """
    pts = jnp.asarray(points, field.dtype)
    flat = pts.reshape(-1, field.dim)
    g = jax.vmap(field.problem.grad)(flat)
    f = field.value(flat)
    val = jnp.sum(g * f, -1)
    if field.method == "exact":
        se = jnp.zeros_like(val)
    else:
        C = field.cov(flat)
        se = jnp.sqrt(jnp.clip(jnp.einsum("ni,nij,nj->n", g, C, g), 0))
    val = np.asarray(val).reshape(pts.shape[:-1])
    se = np.asarray(se).reshape(pts.shape[:-1])
    return Lyapunov(values=val, se=se, fraction_positive=float(np.mean(val > 0)))
