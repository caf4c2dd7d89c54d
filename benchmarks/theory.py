"""Theory-layer benchmarks (issue 3): vector-field evaluations per second and the APT
pipeline for 1024 runs × 12 windows at vector-field SE ≤ 2e-4.

``bench_theory(quick)`` returns a list of result rows (dicts with ``name``, ``value``,
``unit`` and details); ``benchmarks/run.py`` assembles them into docs/BENCHMARKS.md.
Run alone: ``.venv/bin/python benchmarks/theory.py [--quick]``.

Timings are wall-clock seconds (``wall_s``) and CPU seconds of this process (``cpu_s``;
on a shared machine the latter is the more stable number).
"""

from __future__ import annotations

import sys
import time

import numpy as np


def _timed(fn, repeat: int = 3):
    fn()  # compile / warm up
    best_w, best_c = float("inf"), float("inf")
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        best_w = min(best_w, time.perf_counter() - w)
        best_c = min(best_c, time.process_time() - c)
    return best_w, best_c


def bench_theory(quick: bool = False) -> list[dict]:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import adamjax
    from adamjax._apt import FieldOptions
    from adamjax._run import make_plan

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

    # -- vector-field evaluations --------------------------------------------------
    M = 2**18
    npts = 64 if quick else 256
    th = jnp.linspace(-1.0, 1.0, npts)[:, None]
    for label, kw in (
        ("quadratic fast path", {"fast": True}),
        ("generic chain (blocked scan)", {"fast": False}),
        ("generic chain (associative_scan)", {"fast": False, "scan": "associative"}),
    ):
        if quick and "associative" in label:
            continue
        vf = adamjax.vector_field(spec, samples=M, **kw)
        pts = th if kw.get("fast") else th[: max(8, npts // 16)]
        w, c = _timed(lambda vf=vf, pts=pts: vf(pts)[0].block_until_ready())
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
            }
        )
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

    # -- APT pipeline ----------------------------------------------------------------
    plan = make_plan(spec)
    g = plan.groups[0]
    R, steps = len(g.index), spec["run"]["steps"]
    w0, c0 = time.perf_counter(), time.process_time()
    res = adamjax.apt_error(
        g.cfg, g.params, horizon=1.0, windows=12, options=FieldOptions(target_se=2e-4)
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
    return rows


if __name__ == "__main__":  # pragma: no cover
    for row in bench_theory("--quick" in sys.argv):
        print(row)
