"""Engine properties: one compilation per sweep, chunking/seed-count invariance,
divergence isolation, recording."""

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

import adamjax
import adamjax._engine.simulate as sim
from adamjax import OptHParams, RunParams, SchedHParams, SimConfig
from helpers import base_spec


def test_one_compilation_for_1000_distinct_hyperparameters():
    k = 1000
    grid = np.linspace(0, 1, k)
    spec = base_spec(**{"run.steps": 30, "run.seeds": 1, "record.snapshots": 4})
    spec["zip"] = {
        "optimizer.b1": list(0.5 + 0.3 * grid),
        "optimizer.b2": list(0.95 + 0.04 * grid),
        "optimizer.eps": list(1e-8 * (1 + grid)),
        "schedule.c": list(0.01 + 0.05 * grid),
        "schedule.r": list(0.5 + 0.4 * grid),
        "run.theta0": list(-1 + 2 * grid),
    }
    before = eqx.debug.get_num_traces(sim.batch)
    ds = adamjax.run(spec, chunk=300)  # 4 chunks of one padded shape
    assert eqx.debug.get_num_traces(sim.batch) - before == 1
    assert ds.theta_final.shape == (k, 1, 1)
    # the hyperparameters really differ per run: distinct results
    assert len(np.unique(ds.theta_final.values)) > 990


def _invariance_spec(seeds):
    spec = base_spec(**{"run.steps": 300, "run.seeds": seeds, "record.snapshots": 6})
    spec["sweep"] = {"optimizer.b2": [0.99, 0.999]}
    return spec


def test_seeds_bit_identical_across_seed_count_and_chunking():
    ref = adamjax.run(_invariance_spec(16))
    for seeds, chunk in [(64, None), (64, 7), (16, 1), (16, 7)]:
        ds = adamjax.run(_invariance_spec(seeds), chunk=chunk)
        sub = ds.isel(seed=slice(0, 16))
        for var in ("theta_final", "theta", "loss", "diverged_step"):
            np.testing.assert_array_equal(sub[var].values, ref[var].values, err_msg=var)


def test_chunk_invariance_in_several_dimensions():
    # dim > 1 with chunk sizes that are not multiples of anything (seen once as a
    # 1-ulp flake during development): every run must be bit-identical.
    spec = base_spec(
        **{
            "problem.dim": 3,
            "problem.curvature": [1.0, 2.0, 5.0],
            "run.steps": 300,
            "run.seeds": 16,
            "run.theta0": [1.0, -1.0, 0.5],
        }
    )
    spec["sweep"] = {"optimizer.b1": [0.5, 0.9]}
    ref = adamjax.run(spec)
    for chunk in (5, 16, 3):
        ds = adamjax.run(spec, chunk=chunk)
        for var in ("theta_final", "theta", "loss"):
            np.testing.assert_array_equal(ds[var].values, ref[var].values, err_msg=f"{var} {chunk}")


def test_seeds_differ_and_grid_points_share_noise():
    ds = adamjax.run(_invariance_spec(8))
    th = ds.theta_final.values[..., 0]
    assert len(np.unique(th[0])) == 8  # different seeds, different runs
    # common random numbers: the same seed at both β2 values starts identically
    np.testing.assert_array_equal(ds.theta.values[0, :, 1], ds.theta.values[1, :, 1])


def _zhang_spec():
    spec = base_spec(
        **{
            "problem.kind": "zhang",
            "problem.n": 10,
            "problem.dim": None,
            "problem.noise": None,
            "optimizer.b1": 0.0,
            "schedule.kind": "constant",
            "schedule.c": 0.1,
            "run.steps": 3000,
            "run.seeds": 4,
            "run.theta0": -0.5,
            "run.bound": 20.0,
            "sampling.scheme": "reshuffle",
        }
    )
    spec["problem"] = {"kind": "zhang", "n": 10}
    spec["sweep"] = {"optimizer.b2": [0.1, 0.5, 0.99, 0.999]}
    return spec


def test_divergence_flagged_and_isolated():
    spec = _zhang_spec()
    ds = adamjax.run(spec)
    div = ds.diverged.values
    assert div[0].all()  # β2 = 0.1: the iterate runs off (|x| > bound)
    assert not div[-1].any()  # β2 = 0.999 converges towards x* = −2
    step = ds.diverged_step.values
    assert ((step > 0) == div).all() and (step[~div] == -1).all()
    # frozen at the last state inside the bound, finite everywhere
    assert np.isfinite(ds.theta_final.values).all()
    assert (np.abs(ds.theta_final.values[div]) <= 20.0).all()
    for var in ("theta_final", "loss_final", "theta", "loss", "grad_norm_final"):
        assert np.isfinite(ds[var].values[~div]).all(), var
    # every non-diverged run is bit-identical to running its grid point alone
    for i, b2 in enumerate(spec["sweep"]["optimizer.b2"]):
        alone = dict(spec, sweep={})
        alone["optimizer"] = dict(spec["optimizer"], b2=b2)
        solo = adamjax.run(alone)
        keep = ~div[i]
        np.testing.assert_array_equal(solo.theta_final.values[keep], ds.theta_final.values[i][keep])


def test_nan_in_one_run_never_reaches_another():
    # G explodes for |θ| > 1 (θ·e^{θ²}); with a large step some runs overflow to inf/NaN.
    prob = adamjax.StreamProblem(
        innovation_fn=lambda th, x: th * jnp.exp(th**2) + x,
        sampler=lambda key, shape: 0.0 * jnp.ones((*shape, 1)),
        dim=1,
        loss_fn=lambda th: jnp.sum(jnp.exp(th**2)) / 2,
    )
    cfg = SimConfig(
        problem=prob,
        optimizer="sgd",
        schedule="constant",
        steps=50,
        block=16,
        record_steps=(0, 1, 10, 50),
    )
    r = 6
    theta0 = np.asarray([[0.1], [3.0], [0.2], [5.0], [-0.3], [-4.0]], np.float32)
    f = lambda v: np.full((r,), v, np.float32)  # noqa: E731
    params = RunParams(
        key=np.asarray(adamjax.run_keys(0, np.arange(r))),
        theta0=theta0,
        opt=OptHParams(f(0.9), f(0.99), f(1e-8), f(0.0), f(0.1)),
        sched=SchedHParams(f(0.5), f(0.5), f(0.0)),
    )
    res = adamjax.simulate(cfg, params)
    assert list(res.diverged) == [False, True, False, True, False, True]
    assert (res.diverged_step[res.diverged] >= 1).all()
    assert np.isfinite(res.theta).all() and np.isfinite(res.snapshots).all()
    # the healthy runs equal their solo simulation
    for i in (0, 2, 4):
        solo = adamjax.simulate(
            cfg,
            RunParams(
                *[
                    a
                    if a is None
                    else type(a)(*[np.asarray(x)[i : i + 1] for x in a])
                    if isinstance(a, tuple)
                    else np.asarray(a)[i : i + 1]
                    for a in params
                ]
            ),
        )
        np.testing.assert_array_equal(solo.theta[0], res.theta[i])


def test_snapshots_are_at_the_recorded_steps():
    # noiseless quadratic with SGD and a constant step: θ_n = (1 − γ)^n θ0 exactly in float64
    prob = adamjax.make_problem({"kind": "quadratic", "dim": 1, "noise": "none"}, jnp.float64)
    steps = 700
    rec = adamjax.log_spaced_steps(steps, 12)
    cfg = SimConfig(
        problem=prob, optimizer="sgd", schedule="constant", steps=steps, block=64, record_steps=rec
    )
    f = lambda v: np.full((1,), v)  # noqa: E731
    params = RunParams(
        key=np.asarray(adamjax.run_keys(0, [0])),
        theta0=np.ones((1, 1)),
        opt=OptHParams(f(0.9), f(0.99), f(1e-8), f(0.0), f(0.1)),
        sched=SchedHParams(f(0.01), f(0.5), f(0.0)),
    )
    res = adamjax.simulate(cfg, params)
    want = 0.99 ** np.asarray(rec, float)
    np.testing.assert_allclose(res.snapshots[0, :, 0], want, rtol=1e-12)
    np.testing.assert_allclose(res.t[0], 0.01 * steps, rtol=1e-12)
    assert rec[0] == 0 and rec[-1] == steps and list(rec) == sorted(set(rec))


def test_steps_not_multiple_of_block_stop_exactly():
    spec = base_spec(**{"run.steps": 257, "run.seeds": 2, "schedule.kind": "constant"})
    ds = adamjax.run(spec)
    np.testing.assert_allclose(ds.t_final.values, 0.05 * 257, rtol=1e-5)
    assert int(ds.snapshot_step.values[-1]) == 257


@pytest.mark.parametrize("kind", ["amsgrad", "rmsprop", "adagrad", "sgd", "sgdm", "signsgd"])
def test_every_optimizer_runs_from_a_spec(kind):
    ds = adamjax.run(base_spec(**{"optimizer.kind": kind, "run.steps": 100}))
    assert np.isfinite(ds.theta_final.values).all()
    # a quadratic pulls θ0 = 1 towards 0
    assert (np.abs(ds.theta_final.values) < 1).all()


_X64_SCRIPT = """
import sys, json, numpy as np, jax
jax.config.update("jax_enable_x64", sys.argv[1] == "1")
import adamjax
spec = json.loads(sys.argv[2])
ds = adamjax.run(spec)
np.save(sys.argv[3], ds.theta.values)
"""


def test_float32_results_do_not_depend_on_the_x64_flag(tmp_path):
    import json
    import subprocess
    import sys

    spec = {
        "name": "x",
        "problem": {"kind": "zhang", "n": 7},
        "sampling": {"batch_size": 2},
        "run": {"steps": 300, "seeds": 3, "theta0": -0.5},
        "record": {"snapshots": 5},
        "sweep": {"sampling.scheme": ["iid", "reshuffle", "cyclic"]},
    }
    out = []
    for flag in ("0", "1"):
        f = tmp_path / f"x64_{flag}.npy"
        subprocess.run(
            [sys.executable, "-c", _X64_SCRIPT, flag, json.dumps(spec), str(f)],
            check=True,
            capture_output=True,
        )
        out.append(np.load(f))
    np.testing.assert_array_equal(out[0], out[1])
