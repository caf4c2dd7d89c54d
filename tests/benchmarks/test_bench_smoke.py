"""Smoke test of the benchmark suite (no timing assertions).

The bench runs in ``--quick`` mode on the 1-D workload only; the test checks that
the table has the expected rows and sane fields.
"""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import adamjax

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "run.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("adamjax_bench_run_smoke", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_quick_table_has_expected_rows(tmp_path, capsys):
    bench = _load_bench()
    out = tmp_path / "bench.json"
    rc = bench.main(
        ["--quick", "--only", "quad1d", "--repeat", "0", "--no-torch", "--out", str(out)]
    )
    assert rc == 0
    data = json.loads(out.read_text())
    rows = data["rows"]
    variants = [r["variant"] for r in rows]
    assert variants[0] == "adamjax"
    assert "adamjax (no snapshots)" in variants
    assert any(v.startswith("expert") for v in variants)
    assert any(v.startswith("per-run loop") for v in variants)
    for r in rows:
        assert r["workload"] == "quad1d"
        assert r["run_steps_per_s"] > 0
        assert r["vs_expert"] > 0
    assert {"jax", "python", "date", "cpus"} <= set(data["machine"])
    # the hardware floors of the 1-D workload are attached to the adamjax rows
    head = rows[0]
    assert head["floor_arithmetic"] > head["run_steps_per_s"] > 0
    assert 0 < head["frac_arithmetic_floor"] < 1
    printed = capsys.readouterr().out
    assert "| workload | variant |" in printed and "expert" in printed


def _load_theory():
    path = BENCH.parent / "theory.py"
    spec = importlib.util.spec_from_file_location("adamjax_bench_theory_smoke", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_apt_expert_baseline_computes_the_same_errors():
    """Without noise both engines follow the same deterministic trajectory, so the
    expert's all-windows scan must give adamjax's APT errors (float64): the baseline of
    the ``apt-pass2`` rows measures the same work. Then the rows themselves."""
    from adamjax import SimConfig, make_plan, simulate, window_starts
    from adamjax import apt_errors_from as errors_from
    from adamjax import apt_prepare as prepare
    from helpers import base_spec

    theory = _load_theory()
    spec = base_spec(
        **{
            "problem.noise": "none",
            "run.steps": 3000,
            "run.seeds": 3,
            "optimizer.eps": 1.0,  # a smooth field: the flow converges within every window
            "run.theta0": 5.0,
            "run.dtype": "float64",
            "record.snapshots": 0,
        }
    )
    g = make_plan(spec).groups[0]
    starts = window_starts(3000, 6, 1.0, "power", [(0.05, 0.6, 0.0)])
    obs, args, _ = prepare(g.cfg, g.params, starts, 1.0)
    fields = {f: getattr(g.cfg, f) for f in g.cfg.__dataclass_fields__}
    res = simulate(SimConfig(**{**fields, "observer": obs}), g.params._replace(obs_args=args))
    ours = errors_from(res, starts)[0]
    run = theory._expert_apt_run(
        g.cfg.problem, 3000, obs.starts, obs.ends, 0.9, 0.99, 1.0, 0.05, 0.6
    )
    p = g.params
    theirs = jax.jit(jax.vmap(run))(
        jnp.asarray(p.key), jnp.asarray(p.theta0), args.ys, args.dys, args.horizon
    )
    assert np.all(ours > 0)
    np.testing.assert_allclose(np.asarray(theirs), ours, rtol=1e-7)

    rows = theory.bench_apt_pass2(
        base_spec(**{"run.steps": 2000, "run.seeds": 8, "record.snapshots": 0}), rounds=1
    )
    assert [r["workload"] for r in rows] == ["apt-pass2"] * 2
    assert rows[0]["variant"].startswith("adamjax") and rows[1]["variant"].startswith("expert")
    for r in rows:
        assert r["runs"] == 8 and r["steps"] == 2000 and r["run_steps_per_s"] > 0
        assert r["compile_s"] >= 0


def test_engine_and_bench_need_neither_zarr_nor_tomli_w():
    """The GPU machine has no zarr / tomli-w: the engine and the bench must not import them."""
    code = (
        "import sys; sys.modules['zarr'] = None; sys.modules['tomli_w'] = None\n"
        "import importlib.util, numpy as np, adamjax\n"
        f"spec = importlib.util.spec_from_file_location('b', {str(BENCH)!r})\n"
        "b = importlib.util.module_from_spec(spec); spec.loader.exec_module(b)\n"
        "w = b.work_quad(1, 64, 50, 'q')\n"
        "res = adamjax.simulate(w.cfg(), w.params)\n"
        "assert np.all(np.isfinite(res.theta))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_plain_jax_baselines_compute_the_problems_gradients():
    """The experts' gradient code (no adamjax in their loops) is the problems' own
    stochastic gradient: the baselines do the same work as adamjax."""
    bench = _load_bench()
    for w in (bench.work_regression(4, 10), bench.work_zhang(2, 2, 10)):
        sample, grad = bench.pure_problem(w)
        idx = sample(jax.random.PRNGKey(0), (3,))
        th = jnp.asarray(w.params.theta0[0]) + 0.3
        np.testing.assert_allclose(
            grad(th, idx), w.problem.innovation(th, idx), rtol=1e-5, atol=1e-6
        )
    for th0 in (-0.5, -1.5):  # both branches of Zhang's pieces
        th = jnp.asarray([th0], jnp.float32)
        np.testing.assert_allclose(grad(th, idx), w.problem.innovation(th, idx), rtol=1e-5)


def test_block_noise_expert_follows_the_plain_expert_without_noise():
    """Noise drawn per block or per step: without noise both are the same Adam run."""
    bench = _load_bench()
    w = bench.work_quad(1, 4, 600, "q")
    w.problem = adamjax.make_problem(
        {"kind": "quadratic", "dim": 1, "noise": "exponential", "noise_scale": 0.0},
        jnp.float32,
    )
    p = w.params
    args = (p.key, p.theta0, *bench._hp_args(w))
    a = jax.vmap(bench._optax_run(w, w.steps))(*args)
    b = jax.vmap(bench._block_run(w, w.steps))(*args)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_end_to_end_specs_and_children(tmp_path):
    """The end-to-end rows' specs are valid TOML for the CLI and describe the workloads'
    work; a child call returns its time."""
    import tomllib

    bench = _load_bench()
    for kind in ("quad1d", "zhang"):
        spec = bench.e2e_spec(kind, quick=True)
        assert tomllib.loads(bench._toml(spec)) == spec
        adamjax.load_spec(spec)
    assert bench._e2e_child("block", "zhang", True)["work_s"] > 0
