"""Theory-layer benchmarks (issue 3): vector-field evaluations per second and the APT
pipeline for 1024 runs × 12 windows at vector-field SE ≤ 2e-4.

``bench_theory(quick)`` returns a list of result rows (dicts with ``name``, ``value``,
``unit`` and details); ``benchmarks/run.py`` assembles them into docs/BENCHMARKS.md.
Run alone: ``.venv/bin/python benchmarks/theory.py [--quick]``.

Timings are wall-clock seconds (``wall_s``) and CPU seconds of this process (``cpu_s``;
on a shared machine the latter is the more stable number).
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np


def _mem_probe(rss):
    """``rss`` (a context-manager class such as run.py's RSSPeak) or a no-op probe."""
    import contextlib

    return rss if rss is not None else (lambda: contextlib.nullcontext(None))


def _timed(fn, repeat: int = 3, info: dict | None = None):
    t0 = time.perf_counter()
    fn()  # compile / warm up
    first = time.perf_counter() - t0
    best_w, best_c = float("inf"), float("inf")
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        best_w = min(best_w, time.perf_counter() - w)
        best_c = min(best_c, time.process_time() - c)
    if info is not None:
        info["compile_s"] = round(max(first - best_w, 0.0), 3)
    return best_w, best_c


def _expert_vf(problem, xs, b1, b2, eps, burn: int):
    """``f(theta) -> f̂`` at one θ: the ergodic average of m_k/(ε + √v_k) along one
    frozen-θ chain, written as a user would — a ``lax.scan`` over the same pre-drawn
    innovations as adamjax's estimator, started at m = v = 0 with a burn-in of
    ``burn`` steps (adamjax solves for the stationary start instead)."""
    import jax
    import jax.numpy as jnp

    def f(theta):
        def body(c, x):
            m, v, acc = c
            g = problem.innovation(theta, x)
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            return (m, v, acc + m / (eps + jnp.sqrt(v))), None

        z = jnp.zeros_like(theta)
        c0 = jax.lax.scan(body, (z, z, z), jax.tree_util.tree_map(lambda a: a[:burn], xs))[0]
        c0 = (c0[0], c0[1], z)
        rest = jax.tree_util.tree_map(lambda a: a[burn:], xs)
        acc = jax.lax.scan(body, c0, rest)[0][2]
        return acc / (jax.tree_util.tree_leaves(xs)[0].shape[0] - burn)

    return f


def _expert_apt_run(problem, steps: int, starts, ends, b1, b2, eps, c, r):
    """``run(key, theta0, ys, dys, horizon) -> err (J,)``: pass 2 of the APT pipeline as
    a user would write it around optax — ``scan`` over the steps with one ``fold_in``
    key per step, and at every step all J windows updated at once under masks
    (vectorised, no conditionals): τ_j += γ_n, Hermite interpolation of the flow
    table, running max of the distance. Same flow tables as adamjax's observer."""
    import jax
    import jax.numpy as jnp
    import optax

    starts = jnp.asarray(starts, jnp.int32)
    ends = jnp.asarray(ends, jnp.int32)

    def run(key, theta0, ys, dys, horizon):
        opt = optax.adam(learning_rate=lambda k: c * (k + 1.0) ** (-r), b1=b1, b2=b2, eps=eps)
        J, K = ys.shape[:2]
        h = horizon / (K - 1)
        rows = jnp.arange(J)

        def body(carry, n):
            th, st, tau, err = carry
            x = problem.sample(jax.random.fold_in(key, n), (1,))
            u, st = opt.update(problem.innovation(th, x), st, th)
            th = optax.apply_updates(th, u)
            m = n + 1
            live = (m >= starts) & (m <= ends)
            tau = jnp.where(live & (m > starts), tau + c * m.astype(th.dtype) ** (-r), tau)
            i = jnp.clip(jnp.floor(tau / h), 0, K - 2).astype(jnp.int32)
            w = (tau / h - i)[:, None]
            y0, y1, d0, d1 = ys[rows, i], ys[rows, i + 1], dys[rows, i], dys[rows, i + 1]
            w2, w3 = w * w, w * w * w
            phi = (
                (2 * w3 - 3 * w2 + 1) * y0
                + (w3 - 2 * w2 + w) * h * d0
                + (3 * w2 - 2 * w3) * y1
                + (w3 - w2) * h * d1
            )
            dist = jnp.sqrt(jnp.sum((th - phi) ** 2, -1))
            err = jnp.where(live & (tau <= horizon), jnp.maximum(err, dist), err)
            return (th, st, tau, err), None

        z = jnp.zeros((J,), theta0.dtype)
        carry = (theta0, opt.init(theta0), z, z)
        return jax.lax.scan(body, carry, jnp.arange(steps))[0][3]

    return run


def bench_apt_pass2(spec: dict, rss=None, rounds: int = 3) -> list[dict]:
    """The part of the APT pipeline that scales with runs × steps — pass 2, the
    simulation that compares every step with the flow — for adamjax (``simulate`` with
    the :class:`APTObserver`) and the expert baseline (:func:`_expert_apt_run` under
    ``jit(vmap)``), timed alternately in this process; suite-style rows."""

    import jax
    import jax.numpy as jnp

    import adamjax

    g = adamjax.make_plan(spec).groups[0]
    cfg, params = g.cfg, g.params
    R, steps, d = len(g.index), cfg.steps, cfg.problem.dim
    s = params.sched
    starts = adamjax.window_starts(
        steps, 12, 1.0, cfg.schedule, [(float(s.c[0]), float(s.r[0]), float(s.n0[0]))]
    )
    obs, args, _ = adamjax.apt_prepare(
        cfg, params, starts, 1.0, adamjax.FieldOptions(target_se=2e-4)
    )
    cfg2 = dataclasses.replace(cfg, observer=obs)
    p2 = params._replace(obs_args=args)
    o = params.opt
    hp = [float(a[0]) for a in (o.b1, o.b2, o.eps, s.c, s.r)]
    run = _expert_apt_run(cfg.problem, steps, obs.starts, obs.ends, *hp)
    ex_args = (
        jnp.asarray(params.key),
        jnp.asarray(params.theta0),
        jnp.asarray(args.ys),
        jnp.asarray(args.dys),
        jnp.asarray(args.horizon),
    )
    expert = jax.jit(jax.vmap(run))
    mem = _mem_probe(rss)
    rows, calls = [], []
    with mem() as m:
        t0 = time.perf_counter()
        jax.block_until_ready(adamjax.simulate(cfg2, p2).theta)
        first = time.perf_counter() - t0
        calls.append(lambda: jax.block_until_ready(adamjax.simulate(cfg2, p2).theta))
    rows.append({"variant": "adamjax (simulate + APTObserver)", "first": first, "mem": m})
    with mem() as m:
        t0 = time.perf_counter()
        compiled = expert.lower(*ex_args).compile()
        comp = time.perf_counter() - t0
        calls.append(lambda: compiled(*ex_args).block_until_ready())
    rows.append(
        {"variant": "expert jit(vmap(scan(optax + all windows)))", "compile": comp, "mem": m}
    )
    best = [float("inf")] * 2
    for _ in range(rounds):
        for k, f in enumerate(calls):
            t0 = time.perf_counter()
            f()
            best[k] = min(best[k], time.perf_counter() - t0)
    out = []
    for k, r in enumerate(rows):
        compile_s = r["first"] - best[k] if "first" in r else r["compile"]
        out.append(
            {
                "workload": "apt-pass2",
                "variant": r["variant"],
                "runs": R,
                "steps": steps,
                "dim": d,
                "wall_s": round(best[k], 4),
                "run_steps_per_s": R * steps / best[k],
                "compile_s": round(compile_s, 3),
                "rss_growth_mib": None if r["mem"] is None else round(r["mem"].growth_mib, 1),
                "note": "12 windows, horizon 1, flow tables of 64 points; best of "
                f"{rounds} alternating calls",
            }
        )
    return out


def _logistic_2d():
    """A user's two-parameter problem: ℓ2-regularised logistic regression on 64 points,
    written with :func:`adamjax.finite_sum_problem` (not separable: a 2-D field table)."""
    import jax
    import jax.numpy as jnp

    import adamjax

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 2))
    y = (x @ np.array([1.0, -2.0]) + 0.5 * rng.normal(size=64) > 0).astype(float)
    data = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)}

    def loss(w, ex):
        z = ex["x"] @ w
        return jax.nn.softplus(z) - ex["y"] * z + 0.05 * jnp.sum(w**2)

    return adamjax.finite_sum_problem(loss, data, jnp.zeros(2, jnp.float32))


def bench_apt_flow(quick: bool = False) -> list[dict]:
    """``adamjax.run`` of a spec with ``[flow]``, end to end in this process: plan, pass 1,
    the vector field, the flows, pass 2 and the dataset, compilation included (the
    persistent compilation cache is whatever the caller set) — on Zhang et al.'s example
    (n = 10, the finite-sum problem a user reaches for first) and on a user's
    two-parameter logistic regression; and, at a small size (its 97-dimensional flows
    are stiff: ~1 200 solver steps each), on the over-parametrised regression network."""
    import adamjax

    size = (64, 2000, 8) if quick else (1024, 20_000, 8)
    cases = [
        ("zhang n=10", {"kind": "zhang", "n": 10}, None, {"b1": 0.9, "b2": 0.99}, {}, size),
        (
            "2-parameter user problem (logistic regression, 64 points)",
            None,
            _logistic_2d(),
            {"b1": 0.9, "b2": 0.999},
            {"c": 0.1},
            size,
        ),
        (
            "regression (97 parameters)",
            {"kind": "regression"},
            None,
            {"b1": 0.9, "b2": 0.999},
            {"c": 0.01, "r": 0.5},
            (2, 4000, 2) if quick else (4, 4000, 4),
        ),
    ]
    rows = []
    for label, kind, problem, opt, sched, (runs, steps, windows) in cases:
        spec = {
            "name": "bench-apt",
            "optimizer": opt,
            "schedule": sched,
            "run": {"steps": steps, "seeds": runs},
            "flow": {"windows": windows},
        }
        if kind == {"kind": "regression"}:
            spec["run"]["theta0_std"] = 0.1  # seeds differ in the initialisation too
        if kind is not None:
            spec["problem"] = kind
        t0, c0 = time.perf_counter(), time.process_time()
        ds = adamjax.run(spec, progress=False, problem=problem)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        err = ds["apt_error"].values
        rows.append(
            {
                "name": f"APT [flow] {label}: {runs} runs x {windows} windows x {steps} steps "
                "(adamjax.run, incl. compile)",
                "value": wall,
                "unit": "s",
                "wall_s": wall,
                "cpu_s": cpu,
                "flows": int(err.size),
                "nan_apt_error": int(np.isnan(err).sum()),
                "flow_failed": int(ds.attrs.get("flow_failed", -1)),
                "vf_se_max": float(np.nanmax(ds["vf_se"].values)),
                "decay_exponent": float(ds.attrs.get("apt_decay_exponent", float("nan"))),
            }
        )
    return rows


def bench_theory(quick: bool = False, rss=None) -> list[dict]:

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import adamjax

    rows: list[dict] = []
    spec = {
        "name": "bench-theory",
        "problem": {"kind": "quadratic", "dim": 1, "noise": "exponential"},
        "optimizer": {"kind": "adam", "b1": 0.9, "b2": 0.99, "eps": 1e-8},
        "schedule": {"kind": "power", "c": 0.05, "r": 0.6},
        "run": {
            "steps": 20_000 if quick else 200_000,
            "seeds": 64 if quick else 1024,
            "theta0": 1.0,
            "dtype": "float32",
        },
        "record": {"snapshots": 0},
    }
    backend = jax.default_backend()
    mem = _mem_probe(rss)

    # -- vector-field evaluations --------------------------------------------------
    M = 2**18
    npts = 64 if quick else 256
    th = jnp.linspace(-1.0, 1.0, npts)[:, None]
    generic = []
    for label, kw in (
        ("quadratic fast path", {"fast": True}),
        ("generic chain (auto: sequential on CPU)", {"fast": False}),
        ("generic chain (blocked scan)", {"fast": False, "scan": "blocked"}),
        ("generic chain (associative_scan)", {"fast": False, "scan": "associative"}),
    ):
        if quick and "associative" in label:
            continue
        vf = adamjax.vector_field(spec, samples=M, **kw)
        pts = th if kw.get("fast") else th[: max(8, npts // 16)]
        info = {}
        with mem() as m:
            w, c = _timed(lambda vf=vf, pts=pts: vf(pts)[0].block_until_ready(), info=info)
        se = float(jnp.max(vf(jnp.zeros((1, 1)))[1]))
        rows.append(
            {
                "name": f"vector field eval, {label}, M={M}",
                "value": pts.shape[0] / w,
                "unit": "evals/s",
                "wall_s": w,
                "cpu_s": c,
                "se_at_0": se,
                "backend": backend,
                "compile_s": info["compile_s"],
                "rss_growth_mib": None if m is None else round(m.growth_mib, 1),
            }
        )
        if not kw.get("fast"):
            generic.append((rows[-1], vf, pts))
    # The expert baseline: the same innovations, one sequential chain per θ.
    row0, vf0, pts0 = generic[0]
    burn = int(10 / (1 - 0.99))
    ex = jax.jit(jax.vmap(_expert_vf(vf0.problem, vf0.xs, 0.9, 0.99, 1e-8, burn)))
    info = {}
    with mem() as m:
        w, c = _timed(lambda: ex(pts0).block_until_ready(), info=info)
    fe = np.asarray(ex(pts0))[:, 0]
    fa = np.asarray(vf0(pts0)[0])[:, 0]
    rows.append(
        {
            "name": f"vector field eval, expert jit(vmap(scan)) chain, M={M}",
            "value": pts0.shape[0] / w,
            "unit": "evals/s",
            "wall_s": w,
            "cpu_s": c,
            "max_abs_diff_vs_adamjax": float(np.max(np.abs(fe - fa))),
            "backend": backend,
            "compile_s": info["compile_s"],
            "rss_growth_mib": None if m is None else round(m.growth_mib, 1),
            "vs_expert": 1.0,
        }
    )
    for r in rows[:-1]:
        r["vs_expert"] = r["value"] / rows[-1]["value"]
    vf = adamjax.vector_field(spec, samples=M)
    tab = vf.tabulate(-1.0, 1.0, 65)
    big = jnp.linspace(-1.0, 1.0, 1_000_000)[:, None]
    ev = jax.jit(lambda x: tab(x)[0])
    w, c = _timed(lambda: ev(big).block_until_ready())
    rows.append(
        {
            "name": "vector field eval, Hermite table (65 nodes)",
            "value": 1e6 / w,
            "unit": "evals/s",
            "wall_s": w,
            "cpu_s": c,
            "backend": backend,
        }
    )

    rows += bench_apt_flow(quick)

    # -- APT pipeline ----------------------------------------------------------------
    plan = adamjax.make_plan(spec)
    g = plan.groups[0]
    R, steps = len(g.index), spec["run"]["steps"]
    w0, c0 = time.perf_counter(), time.process_time()
    res = adamjax.apt_error(
        g.cfg, g.params, horizon=1.0, windows=12, options=adamjax.FieldOptions(target_se=2e-4)
    )
    w_apt, c_apt = time.perf_counter() - w0, time.process_time() - c0
    w0, c0 = time.perf_counter(), time.process_time()
    adamjax.simulate(g.cfg, g.params)
    w_sim, c_sim = time.perf_counter() - w0, time.process_time() - c0
    med = np.nanmedian(res.error, 0)
    rows.append(
        {
            "name": f"APT pipeline {R} runs x 12 windows x {steps} steps (incl. compile)",
            "value": w_apt,
            "unit": "s",
            "wall_s": w_apt,
            "cpu_s": c_apt,
            "plain_simulation_wall_s": w_sim,
            "plain_simulation_cpu_s": c_sim,
            "vf_se_max": float(np.nanmax(res.vf_se)),
            "vf_samples": res.samples,
            "median_first_over_last": float(med[0] / med[-1]),
            "decay_exponent": adamjax.fit_decay(res.window_start, res.error),
            "backend": backend,
        }
    )
    # After the pipeline, whose row includes its compilations.
    rows += bench_apt_pass2(spec, rss, rounds=2 if quick else 3)
    return rows


if __name__ == "__main__":  # pragma: no cover
    for row in bench_theory("--quick" in sys.argv):
        print(row)
