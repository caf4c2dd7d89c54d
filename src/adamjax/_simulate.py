"""The simulation engine: many independent Adam-family runs under one compilation.

The function for ONE run (:func:`simulate_one`) is a ``lax.scan`` over blocks of
steps, each block a nested ``lax.scan`` over its steps; it is vmapped over runs
at the edge (:func:`simulate_batch`) and jitted once per :class:`SimConfig`.
Per-run numeric hyperparameters (β1, β2, ε, step-size constants, θ0) are
arguments (:class:`RunParams`), so a sweep of any number of distinct values
compiles once.

Per step n (1-based), for one run::

    x_n   = samples of block ⌈n/B⌉ (drawn once per block, see ``_sampling``)
    g_n   = G(Θ_{n-1}, x_n)
    u_n   = direction of the optimiser (``_optimizers``)
    Θ_n   = Π_box(Θ_{n-1} − γ_n u_n),     t_n = t_{n-1} + γ_n

Divergence isolation: if Θ_n is non-finite or max|Θ_n| > ``bound``, the run is
frozen at its last finite state and ``diverged_step = n`` is recorded. Runs are
independent under ``vmap``, so one run can never put NaN into another.

Recording uses O(record points) memory: the final state, θ at the static
``record_steps`` (written only inside blocks that contain one, selected by an
unbatched ``lax.cond``) and an optional per-step :class:`Observer` that keeps
running statistics (the APT error uses it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from ._optimizers import OptHParams, make_optimizer
from ._problems import Problem
from ._schedules import SchedHParams, step_size

# Number of times the batched simulation has been traced (tests count compilations).
TRACE_COUNT = 0


class Observer(eqx.Module):
    """Per-step running statistic of one run (e.g. the APT error of ``_apt``).

    ``init(theta0) -> state``; ``update(state, n, t, theta, active) -> state`` is
    called after every step with the step number ``n``, training time ``t_n``,
    iterate ``Θ_n`` and whether the run actually stepped (not frozen / past the end).
    Array fields of an observer may be batched per run through ``obs_args``.
    """

    def init(self, theta0, args):
        raise NotImplementedError

    def update(self, state, n, t, theta, active, args):
        raise NotImplementedError


class SimConfig(eqx.Module):
    """Everything that shapes the compiled program (one compilation per config).

    ``problem`` array fields (data, curvatures) are traced inputs; the rest is static.
    """

    problem: Problem
    optimizer: str = eqx.field(static=True, default="adam")
    schedule: str = eqx.field(static=True, default="power")
    scheme: str = eqx.field(static=True, default="iid")
    batch_size: int = eqx.field(static=True, default=1)
    steps: int = eqx.field(static=True, default=1000)
    block: int = eqx.field(static=True, default=256)
    record_steps: tuple[int, ...] = eqx.field(static=True, default=())
    bias_correction: bool | None = eqx.field(static=True, default=None)
    bound: float = eqx.field(static=True, default=1e12)
    unroll: int = eqx.field(static=True, default=1)
    fast_pow: bool = eqx.field(static=True, default=True)
    observer: Observer | None = None


class RunParams(NamedTuple):
    """Per-run inputs; every leaf has a leading run axis when batched."""

    key: Any  # raw uint32 PRNG key, shape (2,)
    theta0: Any  # (dim,)
    opt: OptHParams
    sched: SchedHParams
    obs_args: Any = None


class RunResult(NamedTuple):
    theta: Float[Array, "*runs dim"]
    loss: Float[Array, "*runs"]
    grad_norm: Float[Array, "*runs"]
    t: Float[Array, "*runs"]
    diverged: Bool[Array, "*runs"]
    diverged_step: Int[Array, "*runs"]
    snapshots: Float[Array, "*runs snapshot dim"]
    snapshot_loss: Float[Array, "*runs snapshot"]
    observer: Any


def default_block(problem: Problem, batch_size: int) -> int:
    """Steps per noise block: 256, fewer when a step draws many numbers.

    Depends only on the problem and the batch size — never on the number of
    runs — so the random stream of a run is the same whatever the chunking.
    """
    per_step = max(1, batch_size * problem.sample_numel)
    b = 256
    while b > 1 and b * per_step > 2048:
        b //= 2
    return b


def log_spaced_steps(steps: int, count: int) -> tuple[int, ...]:
    """``count`` log-spaced step numbers in [1, steps] (deduplicated, with 0 first)."""
    if count <= 0:
        return ()
    pts = np.unique(np.round(np.geomspace(1, steps, max(count - 1, 1))).astype(np.int64))
    return (0, *[int(p) for p in pts])


class _Carry(NamedTuple):
    theta: Any
    opt_state: Any
    t: Any
    diverged: Any
    diverged_step: Any
    snaps: Any
    obs: Any


def simulate_one(cfg: SimConfig, p: RunParams) -> RunResult:
    """Simulate one run (vmap this over runs; see :func:`simulate_batch`)."""
    problem = cfg.problem
    theta0 = p.theta0
    dtype = theta0.dtype
    opt = make_optimizer(
        cfg.optimizer, p.opt, bias_correction=cfg.bias_correction, fast_pow=cfg.fast_pow
    )
    box = problem.box
    rec = np.asarray(cfg.record_steps, np.int64)
    n_blocks = math.ceil(cfg.steps / cfg.block)
    B = cfg.block

    snaps0 = jnp.broadcast_to(theta0, (len(rec), theta0.shape[0])).astype(dtype)
    obs0 = None if cfg.observer is None else cfg.observer.init(theta0, p.obs_args)
    carry0 = _Carry(
        theta=theta0,
        opt_state=opt.init(theta0),
        t=jnp.zeros((), dtype),
        diverged=jnp.zeros((), bool),
        diverged_step=jnp.full((), -1, jnp.int32),
        snaps=snaps0,
        obs=obs0,
    )
    rec_j = jnp.asarray(rec if len(rec) else np.zeros(1, np.int64), jnp.int32)

    def step(c: _Carry, inp, record: bool):
        n, x = inp
        g = problem.innovation(c.theta, x)
        u, new_state = opt.update(g, c.opt_state, c.theta)
        gamma = step_size(cfg.schedule, p.sched, n.astype(dtype), cfg.fast_pow)
        new_theta = c.theta - gamma * u
        # Divergence is judged before projection: clipping would hide an overflow.
        bad = ~jnp.all(jnp.isfinite(new_theta)) | (jnp.max(jnp.abs(new_theta)) > cfg.bound)
        if box is not None:
            new_theta = jnp.clip(new_theta, box[0], box[1])
        active = (~c.diverged) & (n <= cfg.steps)
        ok = active & ~bad
        theta = jnp.where(ok, new_theta, c.theta)
        opt_state = jax.tree_util.tree_map(
            lambda a, b: jnp.where(ok, a, b), new_state, c.opt_state
        )
        t = jnp.where(ok, c.t + gamma, c.t)
        newly = active & bad
        diverged_step = jnp.where(newly, n, c.diverged_step)
        diverged = c.diverged | newly
        snaps = c.snaps
        if record:
            k = jnp.clip(jnp.searchsorted(rec_j, n), 0, len(rec) - 1)
            hit = rec_j[k] == n
            snaps = snaps.at[k].set(jnp.where(hit, theta, snaps[k]))
        obs = c.obs
        if cfg.observer is not None:
            obs = cfg.observer.update(obs, n, t, theta, ok, p.obs_args)
        return _Carry(theta, opt_state, t, diverged, diverged_step, snaps, obs), None

    # Which blocks contain a record step (static): only those pay for recording.
    has_rec = np.zeros(n_blocks, bool)
    for s in rec:
        if s >= 1:
            has_rec[(s - 1) // B] = True

    def block_fn(c: _Carry, inp):
        b, rec_here = inp
        start = b * B
        xs = problem.draw(p.key, b, start, B, cfg.batch_size, cfg.scheme)
        ns = start + 1 + jnp.arange(B, dtype=jnp.int32)

        def run(record):
            def f(c):
                return jax.lax.scan(
                    lambda cc, i: step(cc, i, record), c, (ns, xs), unroll=cfg.unroll
                )[0]

            return f

        if len(rec) and has_rec.any():
            c = jax.lax.cond(rec_here, run(True), run(False), c)
        else:
            c = run(False)(c)
        return c, None

    blocks = (jnp.arange(n_blocks, dtype=jnp.int32), jnp.asarray(has_rec))
    c, _ = jax.lax.scan(block_fn, carry0, blocks)

    loss = problem.loss(c.theta)
    # A loss that overflowed although θ stayed finite also counts as divergence.
    late = ~c.diverged & ~jnp.isfinite(loss)
    diverged = c.diverged | late
    diverged_step = jnp.where(late, cfg.steps, c.diverged_step)
    grad_norm = jnp.linalg.norm(problem.grad(c.theta))
    snap_loss = jax.vmap(problem.loss)(c.snaps) if len(rec) else jnp.zeros((0,), dtype)
    return RunResult(
        theta=c.theta,
        loss=loss,
        grad_norm=grad_norm,
        t=c.t,
        diverged=diverged,
        diverged_step=diverged_step,
        snapshots=c.snaps,
        snapshot_loss=snap_loss,
        observer=c.obs,
    )


def _simulate_batch(cfg: SimConfig, params: RunParams) -> RunResult:
    """Simulate a batch of runs (leading axis of every ``params`` leaf); jitted
    once per config and batch size."""
    global TRACE_COUNT
    TRACE_COUNT += 1
    return jax.vmap(simulate_one, in_axes=(None, 0))(cfg, params)


simulate_batch: Callable[[SimConfig, RunParams], RunResult] = eqx.filter_jit(_simulate_batch)


def _take(tree, idx):
    return jax.tree_util.tree_map(lambda a: a[idx], tree)


def _pad_to(tree, size: int):
    """Pad the run axis to ``size`` by repeating the first run (results dropped later)."""

    def pad(a):
        a = np.asarray(a)
        if a.shape[0] == size:
            return a
        reps = np.repeat(a[:1], size - a.shape[0], axis=0)
        return np.concatenate([a, reps], axis=0)

    return jax.tree_util.tree_map(pad, tree)


def simulate(
    cfg: SimConfig,
    params: RunParams,
    *,
    chunk: int | None = None,
    runner: Callable[[SimConfig, RunParams], RunResult] | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Simulate all runs in ``params`` in chunks of ``chunk`` runs (all at once if None).

    Every chunk has the same shape (the last one is padded), so a sweep compiles
    once. Results are NumPy arrays. ``runner`` replaces the per-chunk function
    (the launcher passes a device-sharded one); ``progress(k)`` is called with the
    number of runs finished after each chunk.
    """
    runner = runner or simulate_batch
    n = int(jax.tree_util.tree_leaves(params)[0].shape[0])
    chunk = n if chunk is None else max(1, min(int(chunk), n))
    outs = []
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        part = _pad_to(_take(params, slice(lo, hi)), chunk)
        res = runner(cfg, part)
        res = jax.tree_util.tree_map(lambda a, k=hi - lo: np.asarray(a)[:k], res)
        outs.append(res)
        if progress is not None:
            progress(hi - lo)
    if len(outs) == 1:
        return outs[0]
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=0), *outs)
