"""adamjax benchmark suite: ``make bench`` / ``adamjax bench`` / ``python benchmarks/run.py``.

In ONE process and on the SAME work (same problem, runs, steps, hyperparameters,
float32) it measures, per workload:

* ``adamjax``        — :func:`adamjax.simulate` (noise drawn in blocks, divergence
                       isolation, 64 log-spaced snapshots unless noted);
* ``expert``         — ``jit(vmap(scan(optax.adam)))``, one ``fold_in`` key per step
                       (the hand-written baseline an expert JAX user writes);
* ``per-run loop``   — one jitted ``lax.scan`` of ``optax.adam`` per run, called from
                       a Python loop (a subset of the runs is timed, the rate reported);
* ``torch``          — ``torch.optim.Adam`` per run in a Python loop, when torch is
                       importable (a subset of runs and steps is timed).

Columns: run-steps/s (runs × steps / wall time of a warm call), the ratio to the
expert baseline measured in the same process, compile time (first call minus a
warm call for adamjax; ``lower().compile()`` for the jitted baselines), and memory.
Memory is the peak RSS growth of the process during the variant (a sampling
thread reads ``/proc/self/statm`` every 5 ms) — one process cannot give each
variant its own peak, so this is "extra memory the variant needed on top of what
the process already held". The ``memory`` workload runs in fresh subprocesses
and reports their true peak RSS (``getrusage``), at 10× fewer and the full steps.

Options: ``--quick`` (small sizes, < 1 min), ``--only NAME[,NAME…]``, ``--out FILE``
(JSON), ``--repeat K`` (warm calls per variant, best kept; also the rounds of fresh
processes of the end-to-end rows, one round with ``--quick``), ``--cap S`` (time cap per
scaling point). The theory layer's rows come from ``benchmarks/theory.py``
(``bench_theory(quick)``) when that file exists.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import adamjax
from adamjax import (
    OptHParams,
    RunParams,
    SchedHParams,
    SimConfig,
    default_block,
    log_spaced_steps,
    make_problem,
    run_keys,
    simulate,
)

HERE = Path(__file__).resolve().parent
WORKLOADS = ("quad1d", "quad100", "regression", "zhang", "e2e", "scaling", "memory", "theory")


# ----------------------------------------------------------------------------- memory


class RSSPeak:
    """Peak resident set size growth while the ``with`` block runs (sampling thread)."""

    _page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def __init__(self, period: float = 0.005):
        self.period = period
        self.base = self.peak = 0

    @classmethod
    def rss(cls) -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * cls._page
        except OSError:  # not Linux: fall back to the lifetime peak
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _loop(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(self.period)

    def __enter__(self):
        self.base = self.peak = self.rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self.rss())

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.base) / 2**20


# ----------------------------------------------------------------------------- workloads


class Work:
    """One workload: the adamjax config and per-run parameters, plus what baselines need.

    (A plain class, not a dataclass: ``adamjax bench`` loads this file without putting
    it in ``sys.modules``, which dataclasses with postponed annotations need.)
    """

    def __init__(
        self,
        name,
        problem,
        runs,
        steps,
        params: RunParams,
        shared: bool,
        record: int = 64,
        notes: str = "",
    ):
        self.name, self.problem, self.runs, self.steps = name, problem, runs, steps
        self.params = params  # NumPy leaves, leading run axis
        self.shared = shared  # every run has the same hyperparameters
        self.record, self.notes = record, notes

    @property
    def dim(self) -> int:
        return int(self.problem.dim)

    def cfg(self, record: int | None = None, **kw) -> SimConfig:
        rec = self.record if record is None else record
        kw.setdefault("problem", self.problem)
        kw.setdefault("fast_pow", True)  # the spec's default (run.fast_pow)
        return SimConfig(
            steps=self.steps,
            block=default_block(self.problem, 1),
            record_steps=log_spaced_steps(self.steps, rec),
            **kw,
        )


def _params(runs, dim, theta0, b1, b2, eps, c, r, seed=0) -> RunParams:
    def col(v):
        return np.broadcast_to(np.asarray(v, np.float32), (runs,)).copy()

    th = np.broadcast_to(np.asarray(theta0, np.float32), (runs, dim)).copy()
    return RunParams(
        key=np.asarray(run_keys(seed, np.arange(runs))),
        theta0=th,
        opt=OptHParams(col(b1), col(b2), col(eps), col(0.0), col(0.1)),
        sched=SchedHParams(col(c), col(r), col(0.0)),
    )


def work_quad(dim: int, runs: int, steps: int, name: str) -> Work:
    prob = make_problem(
        {"kind": "quadratic", "dim": dim, "noise": "exponential", "curvature": 1.0}, jnp.float32
    )
    p = _params(runs, dim, 1.0, 0.9, 0.99, 1e-8, 0.05, 0.6)
    return Work(name, prob, runs, steps, p, shared=True)


def work_regression(runs: int, steps: int) -> Work:
    spec = {
        "kind": "regression",
        "n_points": 16,
        "input_dim": 1,
        "width": 32,
        "teacher_width": 4,
        "data_seed": 0,
    }
    prob = make_problem(spec, jnp.float32)
    p = _params(runs, prob.dim, np.asarray(prob.default_theta0()), 0.9, 0.999, 1e-8, 0.01, 0.5)
    return Work(
        "regression",
        prob,
        runs,
        steps,
        p,
        shared=True,
        notes="N=16 points, width 32 (97 params), iid batch 1",
    )


def pytree_twin(prob):
    """The regression network as a user would write it: a per-example loss of a tuple
    (W1, b1, w2, b2) through :func:`adamjax.finite_sum_problem` (same θ layout)."""

    def loss(params, example):
        w1, b1, w2, b2 = params
        x, y = example
        return 0.5 * (jnp.tanh(w1 @ x + b1) @ w2 + b2 - y) ** 2

    w, i = prob.width, prob.input_dim
    init = (jnp.zeros((w, i)), jnp.zeros(w), jnp.zeros(w), jnp.zeros(()))
    return adamjax.finite_sum_problem(loss, prob.data, init)


def work_zhang(grid: int, seeds: int, steps: int) -> Work:
    prob = make_problem({"kind": "zhang", "n": 10}, jnp.float32)
    b1 = np.linspace(0.0, 0.97, grid)
    b2 = 1 - np.geomspace(0.5, 1e-3, grid)
    B1, B2 = np.meshgrid(b1, b2, indexing="ij")
    b1r = np.repeat(B1.reshape(-1), seeds)
    b2r = np.repeat(B2.reshape(-1), seeds)
    runs = b1r.size
    p = _params(runs, 1, 0.0, b1r, b2r, 1e-8, 0.1, 0.5)
    # Seed s at every grid point (common random numbers), as the launcher does.
    p = p._replace(key=np.asarray(run_keys(0, np.tile(np.arange(seeds), grid * grid))))
    return Work(
        "zhang",
        prob,
        runs,
        steps,
        p,
        shared=False,
        record=0,
        notes=f"(β1,β2) grid {grid}×{grid} × {seeds} seeds, n=10, iid, no snapshots",
    )


# ----------------------------------------------------------------------------- baselines


def pure_problem(work: Work) -> tuple[Callable, Callable]:
    """``(sample(key, shape) -> x, grad(theta, x) -> g)`` of the workload's problem in
    plain ``jax.numpy``: the baselines' gradient code, so no adamjax code runs in their
    loops (the problem's data and constants are read once, outside)."""
    prob = work.problem
    kind = type(prob).__name__
    if kind == "Quadratic":
        h, s, d = jnp.asarray(prob.curvature), jnp.asarray(prob.noise_scale), prob.dim

        def sample(key, shape):
            return s * (jax.random.exponential(key, (*shape, d), h.dtype) - 1)

        def grad(theta, x):
            return jnp.mean(h * (theta - x), axis=0)

        return sample, grad
    if kind == "Zhang":
        n, a = prob.n_data, jnp.asarray(prob.a)

        def grad(theta, idx):
            # ∂f_i at x: f_0 = (1+(n−1)a)·x, f_i = −a·x for x ≥ −1, quadratic pieces below.
            x, n1a = theta[0], 1 + (n - 1) * a
            g0 = jnp.where(x >= -1, n1a, n1a * (x + 2))
            gi = jnp.where(x >= -1, -a, -a * (x + 2))
            return jnp.mean(jnp.where(idx == 0, g0, gi), keepdims=True)

    elif kind == "Regression":
        X, Y = (jnp.asarray(v) for v in prob.data)
        n, w, p = X.shape[0], prob.width, prob.input_dim

        def loss(theta, i):
            k = w * p
            w1, b1 = theta[:k].reshape(w, p), theta[k : k + w]
            w2, b2 = theta[k + w : k + 2 * w], theta[k + 2 * w]
            return 0.5 * (jnp.tanh(w1 @ X[i] + b1) @ w2 + b2 - Y[i]) ** 2

        def grad(theta, idx):
            return jnp.mean(jax.vmap(jax.grad(loss), (None, 0))(theta, idx), axis=0)

    else:
        raise ValueError(f"no plain-JAX baseline for {kind}")
    n = prob.n_data

    def sample(key, shape):
        return jax.random.randint(key, shape, 0, n, dtype=jnp.int32)

    return sample, grad


def _optax_run(work: Work, steps: int) -> Callable:
    """``run(key, theta0, b1, b2, eps, c, r) -> theta_T`` for ONE run with optax.adam,
    one ``fold_in`` key per step (the straightforward way to write it)."""
    sample, grad = pure_problem(work)

    def run(key, theta0, b1, b2, eps, c, r):
        opt = optax.adam(learning_rate=lambda k: c * (k + 1.0) ** (-r), b1=b1, b2=b2, eps=eps)

        def body(carry, n):
            th, st = carry
            g = grad(th, sample(jax.random.fold_in(key, n), (1,)))
            u, st = opt.update(g, st, th)
            return (optax.apply_updates(th, u), st), None

        (th, _), _ = jax.lax.scan(body, (theta0, opt.init(theta0)), jnp.arange(steps))
        return th

    return run


def _block_run(work: Work, steps: int, block: int = 256) -> Callable:
    """As :func:`_optax_run`, but the noise of ``block`` steps is drawn at once (one key
    per block): under ``vmap`` one draw per block for all runs, the expert's answer to
    a per-step ``fold_in``; an inner ``scan`` over the block's steps."""
    sample, grad = pure_problem(work)
    nb, tail = divmod(steps, block)

    def run(key, theta0, b1, b2, eps, c, r):
        opt = optax.adam(learning_rate=lambda k: c * (k + 1.0) ** (-r), b1=b1, b2=b2, eps=eps)

        def step(carry, x):
            th, st = carry
            u, st = opt.update(grad(th, x[None]), st, th)
            return (optax.apply_updates(th, u), st), None

        def blk(carry, b):
            xs = sample(jax.random.fold_in(key, b), (block,))
            return jax.lax.scan(step, carry, xs)[0], None

        carry = (theta0, opt.init(theta0))
        carry = jax.lax.scan(blk, carry, jnp.arange(nb))[0]
        if tail:
            xs = sample(jax.random.fold_in(key, nb), (tail,))
            carry = jax.lax.scan(step, carry, xs)[0]
        return carry[0]

    return run


def _hp_args(work: Work, idx=slice(None)):
    p = work.params
    return (p.opt.b1[idx], p.opt.b2[idx], p.opt.eps[idx], p.sched.c[idx], p.sched.r[idx])


def bench_expert(work: Work, repeat: int, block: bool = False) -> dict:
    run = (_block_run if block else _optax_run)(work, work.steps)
    p = work.params
    if work.shared:
        # Constants: the strongest baseline (optax then computes βⁿ and γ_n once per step).
        hp = tuple(float(a[0]) for a in _hp_args(work))
        f = jax.jit(jax.vmap(lambda k, t: run(k, t, *hp)))
        args = (jnp.asarray(p.key), jnp.asarray(p.theta0))
    else:
        f = jax.jit(jax.vmap(run))
        args = (jnp.asarray(p.key), jnp.asarray(p.theta0), *map(jnp.asarray, _hp_args(work)))
    with RSSPeak() as mem:
        t0 = time.perf_counter()
        compiled = f.lower(*args).compile()
        compile_s = time.perf_counter() - t0
        rerun = lambda: compiled(*args).block_until_ready()  # noqa: E731
        best = _best(rerun, repeat)
    name = "block-noise expert (256 steps/draw)" if block else "expert jit(vmap(scan(optax)))"
    row = _row(work, name, work.runs, work.steps, best, compile_s, mem)
    row["_rerun"] = rerun
    return row


def bench_per_run(work: Work, n_runs: int) -> dict:
    run = _optax_run(work, work.steps)
    p = work.params
    f = jax.jit(run)
    hp = _hp_args(work)

    def args(i):
        return (p.key[i], p.theta0[i], *(a[i] for a in hp))

    with RSSPeak() as mem:
        t0 = time.perf_counter()
        compiled = f.lower(*args(0)).compile()
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(n_runs):
            compiled(*args(i)).block_until_ready()
        wall = time.perf_counter() - t0
    return _row(
        work,
        "per-run loop (jit scan optax)",
        n_runs,
        work.steps,
        wall,
        compile_s,
        mem,
        timed=f"{n_runs} of {work.runs} runs timed",
    )


def bench_torch(work: Work, n_runs: int, steps: int) -> dict | None:
    try:
        import torch
    except ImportError:
        return None
    prob = work.problem
    p = work.params
    kind = type(prob).__name__
    if kind == "Quadratic":
        h = torch.tensor(np.asarray(prob.curvature))
        s = float(prob.noise_scale)

        def grad_fn(th, gen):
            xi = torch.empty(th.shape[0]).exponential_(generator=gen) - 1.0
            return h * (th.detach() - s * xi)
    elif kind == "Regression":
        xd, yd = (torch.tensor(np.asarray(a)) for a in prob.data)
        w, pin = prob.width, prob.input_dim

        def grad_fn(th, gen):
            i = int(torch.randint(0, xd.shape[0], (1,), generator=gen))
            k = w * pin
            w1, b1 = th[:k].reshape(w, pin), th[k : k + w]
            w2, b2 = th[k + w : k + 2 * w], th[k + 2 * w]
            out = torch.tanh(w1 @ xd[i] + b1) @ w2 + b2
            loss = 0.5 * (out - yd[i]) ** 2
            return torch.autograd.grad(loss, th)[0]
    else:
        return None
    torch.set_num_threads(1)

    def one(i, steps):
        gen = torch.Generator().manual_seed(i)
        th = torch.tensor(p.theta0[i], requires_grad=True)
        b1, b2, eps = float(p.opt.b1[i]), float(p.opt.b2[i]), float(p.opt.eps[i])
        c, r = float(p.sched.c[i]), float(p.sched.r[i])
        opt = torch.optim.Adam([th], lr=c, betas=(b1, b2), eps=eps)
        for n in range(1, steps + 1):
            opt.param_groups[0]["lr"] = c * n ** (-r)
            th.grad = grad_fn(th, gen)
            opt.step()

    one(0, 10)  # warm-up: lazy imports and first-call set-up are not timed
    t0 = time.perf_counter()
    with RSSPeak() as mem:
        for i in range(n_runs):
            one(i, steps)
    wall = time.perf_counter() - t0
    return _row(
        work,
        f"torch.optim.Adam per run (torch {torch.__version__})",
        n_runs,
        steps,
        wall,
        0.0,
        mem,
        timed=f"{n_runs} runs × {steps} steps timed, 1 thread",
    )


def bench_adamjax(
    work: Work, repeat: int, variant: str = "adamjax", chunk: int | None = None, **cfg_kw
) -> dict:
    cfg = work.cfg(**cfg_kw)
    p = work.params
    chunk = chunk or work.runs
    with RSSPeak() as mem:
        t0 = time.perf_counter()
        simulate(cfg, p, chunk=chunk)
        first = time.perf_counter() - t0
        best = _best(lambda: simulate(cfg, p, chunk=chunk), repeat)
    rec = len(cfg.record_steps)
    note = f"{rec} snapshots" if rec else "no snapshots"
    if chunk < work.runs:
        note += f", chunk {chunk}"
    row = _row(work, variant, work.runs, work.steps, best, max(first - best, 0.0), mem, timed=note)
    row["_rerun"] = lambda: simulate(cfg, p, chunk=chunk)
    return row


def interleave(rows: list[dict], rounds: int) -> None:
    """More warm calls of the variants in ``rows``, alternating between them (A B A B …) so
    that a change of machine load hits all of them alike; keeps each one's best time."""
    live = [r for r in rows if "_rerun" in r]
    for _ in range(rounds):
        for r in live:
            t0 = time.perf_counter()
            r["_rerun"]()
            wall = time.perf_counter() - t0
            r.setdefault("walls", [r["wall_s"]]).append(round(wall, 4))
            if wall < r["wall_s"]:
                r["compile_s"] = (
                    round(r["compile_s"] + r["wall_s"] - wall, 3)
                    if "expert" not in r["variant"]
                    else r["compile_s"]
                )
                r["wall_s"] = round(wall, 4)
                r["run_steps_per_s"] = r["runs"] * r["steps"] / wall
    for r in rows:
        r.pop("_rerun", None)
        _spread(r)


def _spread(r: dict) -> None:
    """``spread``: (slowest − fastest) / fastest over the timed calls of a variant."""
    w = r.get("walls") or [r["wall_s"]]
    r["spread"] = max(w) / min(w) - 1 if len(w) > 1 else None


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _row(work: Work, variant, runs, steps, wall, compile_s, mem: RSSPeak, timed="") -> dict:
    return {
        "workload": work.name,
        "variant": variant,
        "runs": int(runs),
        "steps": int(steps),
        "dim": work.dim,
        "wall_s": round(wall, 4),
        "run_steps_per_s": runs * steps / wall,
        "compile_s": round(compile_s, 3),
        "rss_growth_mib": round(mem.growth_mib, 1),
        "note": "; ".join(x for x in (work.notes, timed) if x),
    }


# The expert computes θ_T only; this row gives adamjax the same output (no snapshots
# and no snapshot losses) for a like-for-like ratio.
NO_SNAPSHOTS = {"variant": "adamjax (no snapshots)", "record": 0}

# Peak rates of accelerators by ``device_kind``: (HBM bytes/s, float32 lane-ops/s
# without FMA doubling, int32 lane-ops/s), from the vendors' data sheets
# (H100 SXM: 3.35 TB/s, 132 SMs × 128 FP32 / 64 INT32 lanes × 1.98 GHz boost; H200:
# the same chip with 4.8 TB/s; A100 SXM: 2.04 TB/s, 108 SMs × 64 lanes × 1.41 GHz).
DEVICE_PEAKS = {
    "H100 PCIe": (2.0e12, 114 * 128 * 1.755e9, 114 * 64 * 1.755e9),
    "H100": (3.35e12, 132 * 128 * 1.98e9, 132 * 64 * 1.98e9),
    "H200": (4.8e12, 132 * 128 * 1.98e9, 132 * 64 * 1.98e9),
    "A100": (2.04e12, 108 * 64 * 1.41e9, 108 * 64 * 1.41e9),
}

# Work of one 1-D run-step (float32), counted from the code: the threefry-2x32 hash
# makes two 32-bit words per call (20 rounds of add/rotate/xor + 5 key injections ≈ 120
# integer ops per call, 60 per random number, plus the counter and bit-to-float ops,
# ≈ 70); the exponential transform −log1p(−u) and the step (gradient, two moments, two
# bias-corrected divisions, sqrt, step size, divergence test and selects) ≈ 50 float ops.
# Bytes: XLA runs one kernel (or fused loop) per step, so θ, m, v, t are read and
# written every step (4 × 4 B × 2) and the noise is written once and read once (8 B).
INT_OPS_PER_RUN_STEP = 70
FLOAT_OPS_PER_RUN_STEP = 50
BYTES_PER_RUN_STEP = 40


def _cpu_peaks() -> tuple[float, float, float] | None:
    """Rough CPU peaks: cores × clock × 16 lanes (AVX-512) or 8 (AVX2), one vector op
    per cycle; bandwidth measured by a NumPy copy of 256 MiB (read + write)."""
    try:
        with open("/proc/cpuinfo") as f:
            txt = f.read()
        mhz = max(float(ln.split(":")[1]) for ln in txt.splitlines() if ln.startswith("cpu MHz"))
        lanes = 16 if "avx512f" in txt else 8
    except (OSError, ValueError):
        return None
    a = np.ones(1 << 26, np.float32)
    b = np.empty_like(a)
    t0 = time.perf_counter()
    for _ in range(3):
        np.copyto(b, a)
    bw = 3 * 2 * a.nbytes / (time.perf_counter() - t0)
    ops = (os.cpu_count() or 1) * mhz * 1e6 * lanes
    return bw, ops, ops


def device_peaks() -> tuple[str, tuple[float, float, float] | None]:
    dev = jax.devices()[0]
    kind = getattr(dev, "device_kind", str(dev))
    if dev.platform == "cpu":
        return kind, _cpu_peaks()
    for name, peaks in DEVICE_PEAKS.items():  # most specific names first
        if name in kind:
            return kind, peaks
    return kind, None


def floors_1d(rows: list[dict]) -> None:
    """Attach to the 1-D adamjax rows the two hardware floors (run-steps/s that the
    memory traffic and the arithmetic would allow) and the fraction of each reached."""
    targets = [r for r in rows if r["workload"] == "quad1d" and r["variant"].startswith("adamjax")]
    if not targets:
        return
    kind, peaks = device_peaks()
    if peaks is None:
        print(f"# floors: peak rates of {kind!r} unknown (add it to DEVICE_PEAKS)")
        return
    bw, fops, iops = peaks
    bw_floor = bw / BYTES_PER_RUN_STEP
    op_floor = 1.0 / (INT_OPS_PER_RUN_STEP / iops + FLOAT_OPS_PER_RUN_STEP / fops)
    l3 = _l3_bytes() if jax.devices()[0].platform == "cpu" else None
    for r in targets:
        r["device_kind"] = kind
        r["floor_bandwidth"] = bw_floor
        r["floor_arithmetic"] = op_floor
        r["frac_bandwidth_floor"] = r["run_steps_per_s"] / bw_floor
        r["frac_arithmetic_floor"] = r["run_steps_per_s"] / op_floor
        # Working set of a step loop: the state and one noise block per run.
        ws = r["runs"] * (16 + 4 * default_block(work_quad(1, 1, 1, "").problem, 1))
        cached = l3 is not None and ws < l3
        r["bandwidth_floor_binding"] = not cached
        note = (
            f"not binding: the {ws / 2**20:.0f} MiB working set fits in L3 ({l3 / 2**20:.0f} MiB)"
            if cached
            else f"{100 * r['frac_bandwidth_floor']:.1f} % of it"
        )
        print(
            f"# floors ({kind}), {r['variant']}, {r['runs']} runs: memory "
            f"{_fmt_rate(bw_floor)} run-steps/s ({BYTES_PER_RUN_STEP} B per run-step at "
            f"{bw / 1e9:.0f} GB/s; {note}); arithmetic {_fmt_rate(op_floor)} run-steps/s "
            f"({100 * r['frac_arithmetic_floor']:.1f} % of it)"
        )


def _l3_bytes() -> int | None:
    try:
        txt = Path("/sys/devices/system/cpu/cpu0/cache/index3/size").read_text().strip()
    except OSError:
        return None
    mult = {"K": 1 << 10, "M": 1 << 20}.get(txt[-1], 1)
    return int(txt.rstrip("KM")) * mult


def _ratios(rows: list[dict]) -> None:
    by = {}
    for r in rows:
        if r.get("variant", "").startswith("expert"):
            by[(r["workload"], r["runs"], r["steps"])] = r["run_steps_per_s"]
    exp = {
        r["workload"]: r["run_steps_per_s"]
        for r in rows
        if r.get("variant", "").startswith("expert")
    }
    per = {
        r["workload"]: r["run_steps_per_s"]
        for r in rows
        if r.get("variant", "").startswith("per-run")
    }
    block = {
        (r["workload"], r["runs"], r["steps"]): r["run_steps_per_s"]
        for r in rows
        if r.get("variant", "").startswith("block-noise")
    }
    for r in rows:
        if "run_steps_per_s" not in r:
            continue
        e = by.get((r["workload"], r["runs"], r["steps"]), exp.get(r["workload"]))
        if e:
            r["vs_expert"] = r["run_steps_per_s"] / e
        b = block.get((r["workload"], r["runs"], r["steps"]))
        if b:
            r["vs_block"] = r["run_steps_per_s"] / b
        if r["workload"] in per:
            r["vs_per_run"] = r["run_steps_per_s"] / per[r["workload"]]


# ----------------------------------------------------------------------------- suites


def suite_standard(
    work: Work, a, per_run_runs: int, torch_runs: int, torch_steps: int, extra: list | None = None
) -> list[dict]:
    # One warm call each, then `repeat` rounds alternating adamjax and the expert baseline.
    load0 = _load()
    rows = [bench_adamjax(work, 1)]
    for kw in extra or []:
        rows.append(bench_adamjax(work, 1, **kw))
    rows.append(bench_expert(work, 1))
    rows.append(bench_expert(work, 1, block=True))
    interleave(rows, a.repeat)
    load = f"{load0:.1f}→{_load():.1f}"
    for r in rows:
        r["load"] = load
        _print_row(r)
    rows.append(bench_per_run(work, per_run_runs))
    _print_row(rows[-1])
    t = None if a.no_torch or not torch_runs else bench_torch(work, torch_runs, torch_steps)
    if t is not None:
        rows.append(t)
        _print_row(rows[-1])
    return rows


def _load() -> float:
    """The 1-minute load average (how busy the machine was around a measurement)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def suite_scaling(a) -> list[dict]:
    q = a.quick
    steps = 100 if q else 1000
    run_sizes = [100, 10_000] if q else [100, 1000, 10_000, 100_000, 1_000_000]
    if not q and jax.default_backend() != "cpu":
        run_sizes.append(10_000_000)
    rows = []
    rate_a = rate_e = None
    for runs in run_sizes:
        w = work_quad(1, runs, steps, f"scaling-runs T={steps}")
        if rate_a is None or runs * steps / rate_a < a.cap:
            # On CPU chunks beyond ~1e5 runs leave the caches (see docs/BENCHMARKS.md).
            chunk = runs if jax.default_backend() != "cpu" else min(runs, 1 << 17)
            r = bench_adamjax(w, a.repeat, chunk=chunk)
            rate_a = r["run_steps_per_s"]
            rows.append(r)
            _print_row(r)
        if rate_e is None or runs * steps / rate_e < a.cap:
            r = bench_expert(w, a.repeat)
            rate_e = r["run_steps_per_s"]
            rows.append(r)
            _print_row(r)
    for r in rows:
        r.pop("_rerun", None)
    runs = 256 if q else 8192
    for steps in [100, 1000] if q else [1000, 10_000, 100_000]:
        w = work_quad(1, runs, steps, f"scaling-steps R={runs}")
        r = bench_adamjax(w, a.repeat)
        r.pop("_rerun", None)
        rows.append(r)
        _print_row(r)
    return rows


def _mem_child(runs: int, steps: int) -> dict:
    """Runs in a fresh process: the memory benchmark (1-D, float32)."""
    w = work_quad(1, runs, steps, "memory")
    t0 = time.perf_counter()
    res = simulate(w.cfg(), w.params)
    wall = time.perf_counter() - t0
    ok = bool(np.all(np.isfinite(res.theta)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
    return {"runs": runs, "steps": steps, "wall_s": wall, "peak_rss_mib": peak, "finite": ok}


def suite_memory(a) -> list[dict]:
    runs = 1000 if a.quick else 100_000
    steps_list = [1000, 10_000] if a.quick else [10_000, 100_000]
    rows = []
    for steps in steps_list:
        out = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--_memchild", f"{runs},{steps}"],
            capture_output=True,
            text=True,
            check=True,
        )
        d = json.loads(out.stdout.strip().splitlines()[-1])
        row = {
            "workload": "memory",
            "variant": "adamjax (fresh process)",
            "runs": runs,
            "steps": steps,
            "dim": 1,
            "wall_s": round(d["wall_s"], 2),
            "run_steps_per_s": runs * steps / d["wall_s"],
            "compile_s": None,
            "peak_rss_mib": round(d["peak_rss_mib"], 1),
            "note": "peak RSS of the whole process (getrusage), incl. compile; 64 snapshots"
            + ("" if d["finite"] else "; NON-FINITE RESULTS"),
        }
        rows.append(row)
        _print_row(row)
    return rows


def suite_theory(a) -> list[dict]:
    path = HERE / "theory.py"
    if not path.is_file():
        return []
    spec = importlib.util.spec_from_file_location("adamjax_bench_theory", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = list(mod.bench_theory(a.quick, rss=RSSPeak))
    for r in rows:
        r.setdefault("workload", "theory")
        _print_row(r)
    return rows


# ----------------------------------------------------------------------------- end to end


def e2e_spec(kind: str, quick: bool) -> dict:
    """The spec of the end-to-end rows: the same work as the ``quad1d`` / ``zhang``
    workloads (problem, hyperparameters, runs, steps, snapshots)."""
    if kind == "quad1d":
        runs, steps = (256, 500) if quick else (8192, 20_000)
        return {
            "name": "e2e-quad1d",
            "problem": {"kind": "quadratic", "dim": 1, "noise": "exponential"},
            "optimizer": {"b1": 0.9, "b2": 0.99, "eps": 1e-8},
            "schedule": {"c": 0.05, "r": 0.6},
            "run": {"steps": steps, "seeds": runs, "theta0": 1.0},
            "record": {"snapshots": 64},
        }
    grid, seeds, steps = (8, 2, 200) if quick else (32, 8, 2000)
    return {
        "name": "e2e-zhang",
        "problem": {"kind": "zhang", "n": 10},
        "optimizer": {"eps": 1e-8},
        "schedule": {"c": 0.1, "r": 0.5},
        "run": {"steps": steps, "seeds": seeds, "theta0": 0.0},
        "record": {"snapshots": 0},
        "sweep": {
            "optimizer.b1": [float(x) for x in np.linspace(0.0, 0.97, grid)],
            "optimizer.b2": [float(x) for x in 1 - np.geomspace(0.5, 1e-3, grid)],
        },
    }


def _toml(spec: dict) -> str:
    """The few TOML forms the end-to-end specs use (no TOML writer needed)."""

    def val(v):
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(repr(float(x)) for x in v) + "]"
        return repr(v)

    out = [f"name = {val(spec['name'])}"]
    for table, body in spec.items():
        if isinstance(body, dict):
            out.append(f"[{table}]")
            out += [f"{json.dumps(k) if '.' in k else k} = {val(v)}" for k, v in body.items()]
    return "\n".join(out) + "\n"


def _e2e_child(which: str, kind: str, quick: bool) -> dict:
    """In a fresh process (persistent compilation cache off): one end-to-end call,
    compilation included. ``adamjax``: :func:`adamjax.run` of :func:`e2e_spec` (plan,
    compile, simulate, outcome, dataset); ``expert`` / ``block``: the baseline, traced,
    compiled and run once."""
    t0 = time.perf_counter()
    if which == "adamjax":
        adamjax.run(e2e_spec(kind, quick), progress=False)
        return {"work_s": time.perf_counter() - t0}
    sp = e2e_spec(kind, quick)
    runs, steps = sp["run"]["seeds"], sp["run"]["steps"]
    if kind == "quad1d":
        w = work_quad(1, runs, steps, "e2e")
    else:
        w = work_zhang(len(sp["sweep"]["optimizer.b1"]), runs, steps)
    t0 = time.perf_counter()  # the workload's arrays are set-up, not the baseline's work
    run = (_block_run if which == "block" else _optax_run)(w, steps)
    p = w.params
    if w.shared:
        hp = tuple(float(a[0]) for a in _hp_args(w))
        out = jax.jit(jax.vmap(lambda k, t: run(k, t, *hp)))(p.key, p.theta0)
    else:
        out = jax.jit(jax.vmap(run))(p.key, p.theta0, *_hp_args(w))
    out.block_until_ready()
    return {"work_s": time.perf_counter() - t0}


def _child(args: list[str], env: dict | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return time.perf_counter() - t0, out.stdout


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # e.g. sys.modules[name] = None
        return False


def _cli_twice(kind: str, quick: bool) -> tuple[float, float]:
    """Process wall of ``adamjax run`` of :func:`e2e_spec`, twice on one fresh cache."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.toml"
        spec.write_text(_toml(e2e_spec(kind, quick)))
        cli = ["-m", "adamjax", "run", str(spec), "--out", str(Path(tmp) / "out")]
        cli += ["--force", "--no-progress"]
        env = {"ADAMJAX_COMPILATION_CACHE": str(Path(tmp) / "cache")}
        first, _ = _child(cli, env)
        second, _ = _child(cli, env)
    return first, second


def suite_e2e(a) -> list[dict]:
    """End to end, compilation included, each in a fresh process: adamjax.run against the
    two experts, and the CLI (``adamjax run``) twice on one fresh persistent compilation
    cache — what a user waits for at interactive sizes.

    ``--repeat`` rounds, each running every variant once in turn (the order rotates, so
    no variant always runs first after a quiet spell); the best of each is reported with
    the spread (slowest − fastest) / fastest: single multi-second processes on a shared
    machine move by ±30 % between calls."""
    rows = []
    me = str(Path(__file__).resolve())
    rounds = 1 if a.quick else max(1, a.repeat)
    for kind in ("quad1d", "zhang"):
        load0 = _load()
        walls: dict[str, list] = {w: [] for w in ("adamjax", "expert", "block")}
        cli: list[tuple[float, float]] = []
        has_store = _importable("zarr")  # the store needs zarr (absent on the GPU machine)
        for rnd in range(rounds):
            order = list(walls)
            order = order[rnd % 3 :] + order[: rnd % 3]
            for which in order:
                wall, out = _child(
                    [me, "--_e2e", f"{which},{kind},{int(a.quick)}"],
                    {"ADAMJAX_COMPILATION_CACHE": "off"},
                )
                walls[which].append((json.loads(out.strip().splitlines()[-1])["work_s"], wall))
            if has_store:
                cli.append(_cli_twice(kind, a.quick))
        load = f"{load0:.1f}→{_load():.1f}"
        sp = e2e_spec(kind, a.quick)
        n_runs = sp["run"]["seeds"] * (
            1 if kind == "quad1d" else len(sp["sweep"]["optimizer.b1"]) ** 2
        )
        size = f"{n_runs} runs × {sp['run']['steps']} steps"
        best = {w: min(v) for w, v in walls.items()}
        ex, bl = best["expert"][0], best["block"][0]
        names = {
            "adamjax": "adamjax.run (plan, compile, run, dataset)",
            "expert": "expert jit(vmap(scan(optax))) incl. compile",
            "block": "block-noise expert incl. compile",
        }
        for which, (work_s, wall) in best.items():
            rows.append(
                {
                    "workload": f"e2e {kind}",
                    "name": names[which],
                    "value": work_s,
                    "unit": "s",
                    "vs_expert": ex / work_s,
                    "vs_block": bl / work_s,
                    "process_wall_s": wall,
                    "walls": [round(w, 3) for w, _ in walls[which]],
                    "note": f"{size}; fresh process, cache off; best of {rounds}; "
                    f"process wall {wall:.1f} s",
                    "load": load,
                }
            )
        if cli:
            first = min(c[0] for c in cli)
            for label, i in (("1st", 0), ("2nd", 1)):
                vals = [c[i] for c in cli]
                rows.append(
                    {
                        "workload": f"e2e {kind}",
                        "name": f"CLI adamjax run, {label} invocation (one fresh cache)",
                        "value": min(vals),
                        "unit": "s",
                        "first_over_this": first / min(vals),
                        "walls": [round(v, 3) for v in vals],
                        "note": f"{size}; process wall incl. Python start, import, store; "
                        f"best of {rounds} fresh caches",
                        "load": load,
                    }
                )
        for r in rows[-(5 if cli else 3) :]:
            _spread(r)
            _print_row(r)
    return rows


def run_suite(a) -> list[dict]:
    q = a.quick
    only = set(a.only.split(",")) if a.only else set(WORKLOADS)
    bad = only - set(WORKLOADS)
    if bad:
        raise SystemExit(
            f"--only: unknown workload(s) {sorted(bad)} (known: {', '.join(WORKLOADS)})"
        )
    rows: list[dict] = []
    gpu = jax.default_backend() != "cpu"
    # The three single-hyperparameter workloads: (work, torch steps timed).
    standard = []
    if "quad1d" in only:
        # On an accelerator the headline point: ≥ 10⁶ runs (the GPU acceptance of #6).
        runs, steps = (256, 500) if q else ((1 << 20, 10_000) if gpu else (8192, 20_000))
        w = work_quad(1, runs, steps, "quad1d")
        w.notes = "1-D quadratic, Exp(1)-1 noise"
        standard.append((w, 200 if q else 2000))
    if "quad100" in only:
        w = work_quad(100, 64 if q else 1024, 200 if q else 2000, "quad100")
        w.notes = "dim=100 quadratic, Exp(1)-1 noise"
        standard.append((w, 200 if q else 2000))
    if "regression" in only:
        w = work_regression(64 if q else (1 << 16 if gpu else 1024), 200 if q else 2000)
        twin = {"variant": "adamjax (PyTree problem, no snapshots)", "record": 0,
                "problem": pytree_twin(w.problem)}  # fmt: skip
        standard.append((w, 100 if q else 1000, [NO_SNAPSHOTS, twin]))
    for w, torch_steps, *extra in standard:
        rows += suite_standard(
            w,
            a,
            per_run_runs=2 if q else 8,
            torch_runs=1,
            torch_steps=torch_steps,
            extra=extra[0] if extra else [NO_SNAPSHOTS],
        )
    if "zhang" in only:
        w = work_zhang(8 if q else 32, 2 if q else 8, 200 if q else 2000)
        rows += suite_standard(w, a, per_run_runs=2 if q else 8, torch_runs=0, torch_steps=0)
    if "e2e" in only:
        rows += suite_e2e(a)
    if "scaling" in only:
        rows += suite_scaling(a)
    if "memory" in only:
        rows += suite_memory(a)
    if "theory" in only:
        rows += suite_theory(a)
    _ratios(rows)
    floors_1d(rows)
    return rows


# ----------------------------------------------------------------------------- output


def _fmt_rate(x):
    if x is None:
        return "-"
    for unit, s in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= s:
            return f"{x / s:.3g} {unit}"
    return f"{x:.3g}"


def _print_row(r: dict) -> None:
    print(_line(r), flush=True)


COLS = (
    "workload",
    "variant",
    "runs",
    "steps",
    "dim",
    "run-steps/s",
    "×expert",
    "×block",
    "×per-run",
    "compile s",
    "mem MiB",
    "spread",
    "load",
)


def _line(r: dict) -> str:
    rate = r.get("run_steps_per_s", r.get("evals_per_s"))
    mem = r.get("peak_rss_mib", r.get("rss_growth_mib"))
    if "value" in r and "run_steps_per_s" not in r:  # theory rows: name, value, unit
        v = r["value"]
        rate = f"{v:.4g} {r.get('unit', '')}" if isinstance(v, (int, float)) else str(v)
    else:
        rate = _fmt_rate(rate)
    cells = [
        str(r.get("workload", "")),
        str(r.get("variant", r.get("name", ""))),
        str(r.get("runs", "")),
        str(r.get("steps", "")),
        str(r.get("dim", "")),
        rate,
        f"{r['vs_expert']:.2f}" if r.get("vs_expert") else "-",
        f"{r['vs_block']:.2f}" if r.get("vs_block") else "-",
        f"{r['vs_per_run']:.0f}" if r.get("vs_per_run") else "-",
        f"{r['compile_s']:.2f}" if isinstance(r.get("compile_s"), (int, float)) else "-",
        f"{mem:.0f}" if isinstance(mem, (int, float)) else "-",
        f"{100 * r['spread']:.0f} %" if r.get("spread") is not None else "-",
        str(r.get("load", "-")),
    ]
    return "| " + " | ".join(cells) + " |"


def table(rows: list[dict]) -> str:
    head = "| " + " | ".join(COLS) + " |\n|" + "|".join("---" for _ in COLS) + "|"
    return "\n".join([head, *(_line(r) for r in rows)])


def machine() -> dict:
    info = {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": getattr(jax.lib, "__version__", None) or _version("jaxlib"),
        "optax": optax.__version__,
        "adamjax": adamjax.__version__,
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in f if "model name" in ln)
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        pass
    return info


def _version(mod: str):
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:  # noqa: BLE001
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="adamjax bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test, < 1 min)")
    ap.add_argument("--only", default="", help=f"comma list of: {', '.join(WORKLOADS)}")
    ap.add_argument("--out", default=None, help="write the rows and machine info as JSON")
    ap.add_argument(
        "--repeat",
        type=int,
        default=2,
        help="warm calls per variant, best kept (also the end-to-end rounds)",
    )
    ap.add_argument("--cap", type=float, default=60.0, help="seconds cap per scaling point")
    ap.add_argument("--no-torch", action="store_true", help="skip the torch rows")
    ap.add_argument("--_memchild", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_e2e", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._e2e:
        which, kind, quick = a._e2e.split(",")
        print(json.dumps(_e2e_child(which, kind, bool(int(quick)))))
        return 0
    if a._memchild:
        runs, steps = (int(x) for x in a._memchild.split(","))
        print(json.dumps(_mem_child(runs, steps)))
        return 0
    info = machine()
    print(
        f"# adamjax bench {'--quick ' if a.quick else ''}— {info.get('cpu', '?')}, "
        f"{info['cpus']} CPUs, jax {info['jax']}, backend {info['backend']}, "
        f"load {info['loadavg']}"
    )
    print("| " + " | ".join(COLS) + " |", flush=True)
    t0 = time.perf_counter()
    rows = run_suite(a)
    info["total_s"] = round(time.perf_counter() - t0, 1)
    info["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print()
    print(table(rows))
    if a.out:
        Path(a.out).write_text(
            json.dumps(
                {"machine": info, "argv": list(argv or sys.argv[1:]), "rows": rows},
                indent=1,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
