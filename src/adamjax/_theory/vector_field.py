"""The Adam vector field f and its standard error: the common-random-number chain estimator.

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
the plain recursion, two unrolled ``lax.scan`` passes over the samples (the start,
then r_k summed per batch in the loop; the batch means of m and v follow from batch
sums of g and g²) (``scan="sequential"``; 5–7× the blocked form there, which does 64×
the flops and streams length-M arrays through memory). ``scan="auto"`` (the default)
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
and ≈ 100× at |θ| = 1. Where Cov(G, G²) is known too (i.i.d. samples of the
quadratic and of finite sums) a third control is r's first-order term in v,
Y_k = φ′(E[G²]) m_k (v_k − E[G²]) with φ(v) = 1/(ε + √(v + ε_root)) (so that
r_k = φ(E[G²]) m_k + Y_k + O((v_k − E[G²])²)), whose mean φ′ Cov(m_k, v_k) is known
exactly (``VectorField._taylor``); its coefficient is fitted like the others'. On the
regression network at (0.9, 0.999) the SE falls a further 10–20×, on the quadratic
up to 30× at the zero of f; where it gains nothing it costs one degree of freedom.

Cost per θ: O(M · dim · (cost of G + ~150 flops)) for the generic chain (the blocked
scan is a 64-wide matmul per element), vectorised over θ in chunks of at most 2**22
sample-coordinates. Fast paths (``fast=True``, module ``moments``): for the quadratic
and for finite sums the chains are linear in θ-only quantities (θ itself; the N
per-example gradients) with θ-free weights precomputed once, and r_k is averaged at
every ``thin``-th k (default: a power of two ≤ 1/(1 − α); 1 for the periodic index
orders ``reshuffle`` and ``cyclic``, which thinning would alias), so an evaluation costs
O(M/thin · dim) flops (plus N gradients) without any scan. Accuracy: SE ∝ 1/√M;
pass ``samples`` or a ``target_se`` (a pilot run at ``at`` sizes M).

For problems whose field is coordinate-separable (the diagonal quadratic: f_i
depends on θ_i only) :meth:`VectorField.tabulate` returns a cubic Hermite table
(``tabulated``). Zeros of f and the Lyapunov check are in ``zeros``; the
circular moving averages in ``ema``.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._engine.optimizers import OptHParams
from .._engine.problems.base import AbstractFiniteSumProblem, Problem, cast_problem
from .._engine.pytree import as_flat
from .._engine.sampling import seed_key
from .chain_length import min_samples, round_samples, widest_thin
from .ema import circular_ema, scan_kind
from .field import AbstractField
from .moments import AbstractMoments, make_moments, thin_default
from .tabulated import (
    GRID_MAX_NODES,
    GridField,
    TabulatedField,
    grid_tabulable,
    tabulate,
    tabulate_grid,
)

# Stream tag for the common random numbers of the vector field.
_VF_TAG = 0x0F1E1D

_CHUNK_ELEMS = 2**22  # sample-coordinates per vectorised evaluation

_OPT = OptHParams()  # the optimiser defaults (the spec's [optimizer] defaults)

# The optimisers whose vector field is defined (Adam; RMSProp is α = 0; signSGD α = β = ε = 0).
# The longest chain a target SE may ask for (memory: 6 · M/thin · dim numbers).
MAX_SAMPLES = 2**24
# Batch means for the SE: one gives SE 0 (a spec's [flow] asks for at least 8).
MIN_BATCHES, MAX_BATCHES = 2, 4096


FIELD_OPTIMIZERS = ("adam", "rmsprop", "signsgd")


class VectorField(AbstractField):
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
    scheme: str = eqx.field(static=True, default="iid")  # how the samples xs were drawn
    moments: AbstractMoments | None = None  # fast path: θ-free weights of the chains
    thin: int = eqx.field(static=True, default=1)  # fast path: r_k averaged at every thin-th k

    @property
    def dim(self) -> int:
        return int(self.problem.dim)

    @property
    def samples(self) -> int:
        if self.xs is None:
            return 0
        return int(jax.tree_util.tree_leaves(self.xs)[0].shape[0])

    def with_moments(self, thin: int = 1) -> VectorField:
        """Precompute the fast path (quadratic, finite sums: ``moments``), averaging r_k at
        every ``thin``-th k; a no-op for problems without one."""
        if self.xs is None:
            return self
        mom = make_moments(self.problem, self.xs, self.b1, self.b2, self.scan, thin)
        if mom is None:
            return self
        return dataclasses.replace(self, moments=mom, thin=thin)

    @property
    def dtype(self):
        return jnp.asarray(self.b1).dtype

    # -- one θ ------------------------------------------------------------------
    def _stats_one(self, theta):
        """(f̂, batch residuals (B, d), number of control variates) at one θ of shape (d,)."""
        eps, b1, b2, er = self.eps, self.b1, self.b2, self.eps_root
        if self.method == "exact":
            g = self.problem.grad(theta)
            f = g / (eps + jnp.sqrt(g * g + er))
            return f, jnp.zeros((2, theta.shape[0]), theta.dtype), 0
        # ∇L and E[G²] once: the known means of the controls (None where not used).
        grad = self.problem.grad(theta) if self.control_variate else None
        eg2 = self._second_moment(theta) if self.control_variate else None
        taylor = self._taylor(theta, grad, eg2)  # the third control, where its mean is known
        yb = None
        if self.moments is not None:
            # Fast path (``moments``): m_k, v_k from θ-free weights, no scan.
            m, v = self.moments.mv(self.problem, theta)
        elif self.scan == "sequential":
            rb, mb, vb, yb = self._batch_means_seq(theta, taylor)
        else:
            g = jax.vmap(self.problem.innovation, (None, 0))(theta, self.xs)  # (M, d)
            m = circular_ema(g, b1, self.scan)
            v = circular_ema(g * g, b2, self.scan)
        if self.moments is not None or self.scan != "sequential":
            r = m / (eps + jnp.sqrt(v + er))
            B = self.batches
            M = r.shape[0]

            def bmean(a):
                return a.reshape(B, M // B, -1).mean(axis=1)  # (B, d)

            rb, mb, vb = bmean(r), bmean(m), bmean(v)
            if taylor is not None:
                yb = bmean(taylor[0] * m * (v - taylor[1]))
        if not self.control_variate:
            return rb.mean(0), rb - rb.mean(0), 0
        # Controls: batch means of m and v minus their known means ∇L and E[G²]
        # (stationary chain: E[m_k] = E[G], E[v_k] = E[G²]).
        ctl = [mb - grad]
        if eg2 is not None:
            ctl.append(vb - eg2)
        if taylor is not None:
            ctl.append(yb - taylor[2])
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
        return adj.mean(0), adj - adj.mean(0), k

    def _batch_means_seq(self, theta, taylor=None):
        """Batch means of r_k = m_k/(ε+√(v_k+ε_root)), m_k, v_k and (with ``taylor``, else
        None) the Taylor control φ₁ m_k (v_k − E[G²]) (each (B, d)) by
        sequential passes over the samples, nothing of length M materialised: the
        first runs the recursions from 0 around the circle to get the stationary start
        m_0 = m⁽⁰⁾_M/(1−α^M) (and v_0 alike), the second runs them from there, sums r_k
        per batch and keeps m, v at the batch ends; the batch means of m and v follow
        from batch sums of g and g² (no recursion, below). The same estimator as the
        prefix-scan forms; on CPU this is the fast one (the scan body stays in registers,
        where the others stream (M, d) arrays through memory for every operation)."""
        eps, b1, b2, er = self.eps, self.b1, self.b2, self.eps_root
        B, M = self.batches, self.samples
        L = M // B
        z = jnp.zeros_like(theta)

        def moments(c, x):
            m, v = c
            g = self.problem.innovation(theta, x)
            return (b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g), None

        # Unrolled by UNROLL: the loop bodies are a few flops per θ, so the loop's own
        # per-iteration cost dominated (same arithmetic, same bits; 3× faster on CPU).
        (mM, vM), _ = jax.lax.scan(moments, (z, z), self.xs, unroll=UNROLL)
        start = (mM / (1 - b1**M), vM / (1 - b2**M))

        xb = jax.tree_util.tree_map(lambda a: a.reshape(B, L, *a.shape[1:]), self.xs)

        # One pass for r_k with one accumulator (a tight kernel on CPU; with three 8×
        # slower; the Taylor control's m_k(v_k − E[G²]) is a second: stacked with r_k's
        # it was 2× slower), handing out m and v at every batch end.
        def step(c, x):
            mv, acc = c
            mv, _ = moments(mv, x)
            m, v = mv
            r = m / (eps + jnp.sqrt(v + er))
            if taylor is None:
                return (mv, acc + r), None
            return (mv, (acc[0] + r, acc[1] + m * (v - taylor[1]))), None

        def batch(mv, xs_b):
            acc0 = z if taylor is None else (z, z)
            (mv, acc), _ = jax.lax.scan(step, (mv, acc0), xs_b, unroll=UNROLL)
            return mv, (jax.tree_util.tree_map(lambda a: a / L, acc), mv)

        _, (rb, (m_end, v_end)) = jax.lax.scan(batch, start, xb)
        yb = None
        if taylor is not None:
            rb, yb = rb[0], taylor[0] * rb[1]

        # The batch means of m and v need no recursion: summing m_k − α m_{k−1} =
        # (1 − α) g_k over a batch a..b gives Σ m_k = Σ g_k − α/(1 − α)·(m_b − m_{a−1})
        # (v alike with g² and β), so they come from batch sums of g and g², which
        # vectorise (a map over batches: L × d at a time), and the batch-end values.
        def sums(xs_b):
            g = jax.vmap(self.problem.innovation, (None, 0))(theta, xs_b)  # (L, d)
            return g.sum(0), (g * g).sum(0)

        gs, g2s = jax.lax.map(sums, xb)
        m_prev = jnp.concatenate([start[0][None], m_end[:-1]])
        v_prev = jnp.concatenate([start[1][None], v_end[:-1]])
        mb = (gs - b1 / (1 - b1) * (m_end - m_prev)) / L
        vb = (g2s - b2 / (1 - b2) * (v_end - v_prev)) / L
        return rb, mb, vb, yb

    def _second_moment(self, theta):
        """E[G²] where it is known for the way the samples were drawn: i.i.d., or a
        reshuffled stream whose batches partition each epoch (b divides N); None for
        cyclic order and other reshuffled batches (the m-control alone is then used)."""
        b = self._batch_size
        if self.scheme == "iid":
            return self.problem.second_moment(theta, b)
        n = self.problem.n_data
        if self.scheme == "reshuffle" and b <= n and n % b == 0:
            return self.problem.second_moment(theta, b, replace=False)
        return None

    def _taylor(self, theta, grad, eg2):
        """(φ₁, E[G²], E[Y_k]) of the Taylor control Y_k = φ₁ m_k (v_k − E[G²]) (module
        docstring), or None where its mean is not known; ``grad``, ``eg2``: ∇L and E[G²]
        at θ (as the other controls use them). E[Y_k] = φ₁ Cov(m_k, v_k), and
        for i.i.d. g_k on the circular chain Cov(m_k, v_k) = Σ_j a_j b_j Cov(G, G²), with
        a_j = (1 − α)α^j / (1 − α^M), b_j = (1 − β)β^j / (1 − β^M), j < M."""
        if not self.control_variate or self.scheme != "iid" or eg2 is None:
            return None
        cov = self.problem.cross_moment(theta, self._batch_size)
        if cov is None:
            return None
        a, be, M = self.b1, self.b2, self.samples
        wab = (1 - a) * (1 - be) * (1 - (a * be) ** M) / ((1 - a**M) * (1 - be**M) * (1 - a * be))
        s = jnp.sqrt(eg2 + self.eps_root)
        # φ′(E[G²]), set to 0 (Y_k = 0) where G has no variance at θ: there v_k − E[G²]
        # is rounding, which the fitted coefficient would amplify into the estimate.
        noisy = (eg2 - grad * grad > 64 * jnp.finfo(s.dtype).eps * eg2) & (s > 0)
        phi1 = jnp.where(noisy, -1 / (2 * jnp.where(noisy, s, 1) * (self.eps + s) ** 2), 0)
        return phi1, eg2, phi1 * wab * cov

    @property
    def _batch_size(self) -> int:
        return int(jax.tree_util.tree_leaves(self.xs)[0].shape[1])

    def _one(self, theta):
        f, res, k = self._stats_one(theta)
        B = res.shape[0]
        dof = max(B - 1 - k, 1)
        se = jnp.sqrt(jnp.sum(res * res, 0) / dof / B)
        if self.method == "exact":
            se = jnp.zeros_like(f)
        return f, se

    def _cov_one(self, theta):
        f, res, k = self._stats_one(theta)
        B = res.shape[0]
        dof = max(B - 1 - k, 1)
        return res.T @ res / dof / B

    # -- vectorised -----------------------------------------------------------
    def _map(self, fn, theta):
        theta = jnp.asarray(theta, self.dtype)
        lead = theta.shape[:-1]
        flat = theta.reshape(-1, theta.shape[-1])
        per = max(1, self._eval_elems(1))
        bs = max(1, min(flat.shape[0], _CHUNK_ELEMS // per))
        small = flat.shape[0] <= bs
        out = jax.vmap(fn)(flat) if small else jax.lax.map(fn, flat, batch_size=bs)
        return jax.tree_util.tree_map(lambda a: a.reshape(*lead, *a.shape[1:]), out)

    def __call__(self, theta):
        """(f̂(θ), SE) for θ of shape (…, dim), or θ in the problem's PyTree structure
        (then f̂ and SE come back in that structure)."""
        flat, restore = as_flat(self.problem, theta)
        f, se = _jit_call(self, flat)
        return restore(f), restore(se)

    def value(self, theta):
        """f̂(θ) only (a deterministic smooth function of θ for a fixed seed)."""
        flat, restore = as_flat(self.problem, theta)
        return restore(_jit_value(self, flat))

    def to_flat(self, theta):
        return as_flat(self.problem, theta)

    def eval_bytes(self) -> int:
        # The (samples/thin, dim) arrays of m, v, r and their temporaries.
        return self._eval_elems(6) * jnp.dtype(self.dtype).itemsize

    def _eval_elems(self, copies: int) -> int:
        """Numbers one evaluation holds: ``copies`` (samples/thin, dim) arrays and the
        fast path's own temporaries."""
        extra = 0 if self.moments is None else self.moments.temp_elems(self.dim)
        return copies * (self.samples // self.thin) * self.dim + extra

    def cov(self, theta):
        """Covariance (…, dim, dim) of f̂(θ) from batch means (θ flat or a PyTree)."""
        return _jit_cov(self, as_flat(self.problem, theta)[0])

    # -- tabulation -------------------------------------------------------------
    def tabulate(self, lo, hi, nodes: int = 257) -> TabulatedField | GridField:
        """Tabulate the field: a coordinate-separable one on ``nodes`` points of
        [lo, hi], one of two parameters on ``nodes`` × ``nodes`` points of a box.

        Separable (f_i depends on θ_i only: one dimension, the diagonal quadratic):
        values and slopes (fourth-order differences of the smooth CRN estimate) at the
        nodes give a cubic Hermite interpolant, error O(h⁴); SE interpolated linearly
        (:class:`TabulatedField`). Two parameters: ``lo``, ``hi`` scalars or pairs (the
        box [lo₁, hi₁] × [lo₂, hi₂]), (nodes + 4)² evaluations, the bicubic Hermite
        interpolant, error O(h⁴); SE bilinear (:class:`GridField`).
        """
        grid = grid_tabulable(self.problem)
        if not (self.problem.separable or grid):
            raise ValueError(
                "vector field: tabulation needs a coordinate-separable problem (quadratic) "
                f"or two parameters (this one has {self.dim})"
            )
        if grid:
            if not 4 <= int(nodes) <= GRID_MAX_NODES:
                raise ValueError(f"vector field: nodes = {nodes} outside [4, {GRID_MAX_NODES}]")
            lo, hi = (np.broadcast_to(np.asarray(a, np.float64), (2,)) for a in (lo, hi))
            if not np.all(lo < hi):
                raise ValueError(f"vector field: the box needs lo < hi (got {lo}, {hi})")
            return tabulate_grid(self, lo, hi, int(nodes), self.dtype)
        lo, hi = jnp.asarray(lo, self.dtype), jnp.asarray(hi, self.dtype)
        return tabulate(self, lo, hi, nodes, self.dim, self.dtype)


# Unrolling of the sequential estimator's loops over the samples (``_batch_means_seq``).
UNROLL = 8


@eqx.filter_jit
def _jit_call(vf: VectorField, theta):
    return vf._map(vf._one, theta)


@eqx.filter_jit
def _jit_value(vf: VectorField, theta):
    return vf._map(lambda t: vf._stats_one(t)[0], theta)


@eqx.filter_jit
def _jit_cov(vf: VectorField, theta):
    return vf._map(vf._cov_one, theta)


def default_dtype():
    """float64 when x64 is enabled (recommended for the theory layer), else float32."""
    return jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32


def vector_field(
    problem: Problem,
    *,
    b1: float = _OPT.b1,
    b2: float = _OPT.b2,
    eps: float = _OPT.eps,
    eps_root: float = _OPT.eps_root,
    optimizer: str = "adam",
    batch_size: int = 1,
    samples: int | None = None,
    target_se: float | None = None,
    at=None,
    max_samples: int = MAX_SAMPLES,
    batches: int = 32,
    control_variate: bool | None = None,
    method: str = "auto",
    fast: bool = True,
    thin: int | None = None,
    scan: str = "auto",
    seed: int = 0,
    scheme: str = "iid",
    dtype=None,
    check_samples: bool = True,
) -> VectorField:
    """The Adam vector field f of ``problem`` with hyperparameters (α, β, ε) = (b1, b2, eps).

    (``adamjax.vector_field`` also accepts a spec and takes these from it.)

    Returns a :class:`VectorField`: ``vf(theta) -> (f, se)`` for θ of shape (…, dim).

    * ``method``: ``"exact"`` (noiseless problems: f = ∇L/(ε+|∇L|), se = 0),
      ``"chain"`` (the CRN circular-chain estimator of the module docstring), or
      ``"auto"`` (exact when the problem has no noise).
    * Accuracy: ``samples`` M from 1 to ``max_samples`` (rounded up to a multiple of
      max(64, thin)·``batches``; default 2**18, or :func:`min_samples` where that is
      more), or ``target_se`` > 0: a pilot with 2**16 samples at the points ``at``
      (default θ = 0) sets M = 1.1·2**16·(SE/target)² (≤ ``max_samples``, and at least
      :func:`min_samples`: every batch ≥ 10/(1 − β) steps). ``batches`` (2 to 4096) batch
      means give the SE.
    * ``optimizer``: ``adam`` (default), ``rmsprop`` (α = 0), ``signsgd`` (α = β = ε = 0).
    * ``fast``: for the quadratic and finite sums, precompute the θ-free weights of the
      chains once (module ``moments``): an evaluation costs O(M/thin) flops without
      scans. ``thin``: r_k is averaged at every thin-th k (a power of two ≤ 1024; default
      the largest ≤ 1/(1 − α) for i.i.d. samples, 1 for ``reshuffle``/``cyclic``; with
      ``target_se`` it is then widened where the SE at the pilot points stays within
      half the target, see ``chain_length.widest_thin``);
      ``thin=1`` gives the generic chain's estimate. ``scan``: ``"auto"`` (default:
      ``"sequential"`` on CPU, ``"blocked"`` elsewhere),
      ``"sequential"``, ``"blocked"`` or ``"associative"`` (see the module docstring).
    * ``scheme``: how the frozen-θ chain draws its samples: ``iid`` (the paper's
      Def. 1.3), or, for a finite sum, ``reshuffle`` / ``cyclic`` — the analogue of f
      under random reshuffling or cyclic order (the ergodic average of m/(ε+√v) along
      that index stream).
    * ``seed`` fixes the common random numbers; ``dtype`` defaults to float64 when x64 is
      enabled. ``check_samples=False`` skips the check that each batch is much longer
      than 1/(1 − β) (for a field whose β will be replaced, as in a phase diagram).

    Reference: Dereich, Jentzen & Kassing (2025), Def. 1.3 and eq. (6).
    """
    kind = optimizer
    if scheme != "iid" and not isinstance(problem, AbstractFiniteSumProblem):
        raise ValueError(
            f"sampling.scheme = {scheme!r}: only a finite sum has a {scheme} order (a stream "
            "problem draws fresh samples: iid)"
        )
    if kind == "rmsprop":
        b1 = 0.0
    elif kind == "signsgd":
        b1, b2, eps = 0.0, 0.0, 0.0
    elif kind != "adam":
        raise ValueError(
            f"optimizer.kind = {kind!r}: the vector field is defined for adam, rmsprop and signsgd"
        )
    for name, v in (("b1", b1), ("b2", b2)):
        if not 0.0 <= float(v) < 1.0:
            raise ValueError(f"{name} = {float(v):g}: must be in [0, 1)")
    if not float(eps) >= 0.0 or not float(eps_root) >= 0.0:
        raise ValueError(f"eps = {float(eps):g}, eps_root = {float(eps_root):g}: must be ≥ 0")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size = {batch_size}: must be ≥ 1")
    if thin is not None and (int(thin) < 1 or 1024 % int(thin)):
        raise ValueError(f"thin = {thin!r}: must be a power of two from 1 to 1024")
    if samples is not None and not 1 <= int(samples) <= max_samples:
        raise ValueError(
            f"samples = {samples}: must be from 1 to max_samples = {max_samples} "
            f"(≈ 2**{math.log2(max_samples):.0f}; raise max_samples for a longer chain)"
        )
    if target_se is not None and not float(target_se) > 0:
        raise ValueError(f"target_se = {target_se}: must be > 0")
    if not MIN_BATCHES <= int(batches) <= MAX_BATCHES:
        raise ValueError(
            f"batches = {batches}: must be from {MIN_BATCHES} to {MAX_BATCHES} (the batch "
            "means of the SE)"
        )
    dtype = default_dtype() if dtype is None else dtype
    problem = cast_problem(problem, dtype)
    if method == "auto":
        method = "exact" if problem.noiseless else "chain"
    if method not in ("exact", "chain"):
        raise ValueError(f"method = {method!r}: must be one of auto, exact, chain")
    if control_variate is None:
        control_variate = problem.innovation_is_gradient
    if thin is not None and int(thin) > 1 and scheme != "iid":
        raise ValueError(
            f"thin = {thin}: needs sampling.scheme = 'iid' (thinning a periodic index "
            f"order, {scheme}, would see only some positions of each epoch)"
        )
    th = thin_default(b1) if scheme == "iid" and thin is None else int(thin or 1)
    hp = {
        k: jnp.asarray(v, dtype) for k, v in dict(b1=b1, b2=b2, eps=eps, eps_root=eps_root).items()
    }

    def build(m: int, thin: int = th) -> VectorField:
        xs = None
        if method == "chain":
            key = jax.random.fold_in(seed_key(seed), _VF_TAG)
            if scheme == "iid":
                xs = problem.sample(key, (m, batch_size))
            else:  # the index stream of the scheme: steps 1 … m as one block
                xs = problem.draw(key, 0, 0, m, batch_size, scheme)
        vf = VectorField(
            problem=problem,
            xs=xs,
            method=method,
            batches=batches,
            control_variate=bool(control_variate),
            scan=scan_kind(scan),
            scheme=scheme,
            **hp,
        )
        if not fast or method != "chain":
            return vf
        return vf.with_moments(thin)

    if method == "exact":
        return build(0)
    if samples is not None and target_se is not None:
        raise ValueError(
            f"target_se = {target_se:g}: give samples (a fixed chain length) or target_se "
            "(sized by a pilot), not both"
        )
    floor = min_samples(b1, b2, batches, th)
    pilot_at = target_se is not None and samples is None
    if pilot_at:
        m0 = round_samples(max(2**16, floor), batches, th)
        pilot = build(m0)
        pts = jnp.zeros((1, problem.dim), dtype) if at is None else jnp.asarray(at, dtype)
        pts = pts.reshape(-1, problem.dim)
        _, se = pilot(pts)
        worst = float(jnp.max(se))
        need = m0 * (worst / target_se) ** 2 * 1.1 if worst > 0 else m0
        samples = min(max_samples, max(int(math.ceil(need)), floor))
        if worst * math.sqrt(m0 / max_samples) > target_se:
            warnings.warn(
                f"target_se = {target_se:g}: needs about {need:.3g} samples, capped at "
                f"max_samples = {max_samples}; the SE will be about "
                f"{worst * math.sqrt(m0 / max_samples):.2g}",
                RuntimeWarning,
                stacklevel=2,
            )
    given = samples
    # By default 2**18, or the floor where β is so near 1 that 2**18 would be too short.
    samples = round_samples(max(2**18, floor) if samples is None else samples, batches, th)
    if check_samples and samples < floor:
        raise ValueError(
            f"samples = {given or samples}: each of the {batches} batches must be at least "
            f"10/(1−β) ≈ {floor // batches} steps long; use samples ≥ {floor} "
            "(or fewer batches)"
        )
    vf = build(samples)
    if pilot_at and thin is None and vf.moments is not None and scheme == "iid":
        se_now = worst * math.sqrt(m0 / samples)
        vf = widest_thin(vf, build, samples, batches, float(target_se), pts, se_now)
    return vf
