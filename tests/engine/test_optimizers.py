"""Parity of the engine's optimisers with optax and with an independent NumPy Adam.

"Fed the same gradients": the engine runs a deterministic problem (a 2-D
quadratic) on pre-drawn noise; the reference re-creates exactly the engine's
noise stream (``problem.draw`` with the run's key, block by block) and drives
the jitted optax optimiser over it. Tolerances (the acceptance of the engine
issue): ≤ 1e-12 relative in float64, ≤ 4 ulp in float32 after 1000 steps, both
when the runs of a batch share β1, β2, r, n0 (the powers are then evaluated once
per batch) and when they do not. (Measured: 0–3 ulp. Two XLA programs need not
agree to the bit — FMA contraction depends on fusion — and jitted optax itself
is up to ~80 ulp from op-by-op eager optax over these 1000 steps.) The opt-in
``fast_pow`` mode (βⁿ as exp(n log β)) is checked per step in float32 and on
whole trajectories in float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax
from adamjax import OptHParams, RunParams, SchedHParams, SimConfig
from helpers import RTOL_F64, ULP_F32, ulp_distance

STEPS = 1000
H = dict(b1=0.9, b2=0.99, eps=1e-8, eps_root=0.0, initial_accumulator=0.1)
C, R, N0 = 0.05, 0.6, 0.0


def _optax(kind, dtype):
    # Hyperparameters as arrays of the run's dtype, as a vmapped optax sweep would
    # hold them (Python floats would make optax form 1 − β in double precision).
    h = {k: jnp.asarray(v, dtype) for k, v in H.items()}
    c, r, n0 = (jnp.asarray(v, dtype) for v in (C, R, N0))

    def lr(count):
        return c * ((count + 1).astype(dtype) + n0) ** (-r)

    return {
        "adam": lambda: optax.adam(lr, b1=h["b1"], b2=h["b2"], eps=h["eps"]),
        "amsgrad": lambda: optax.amsgrad(lr, b1=h["b1"], b2=h["b2"], eps=h["eps"]),
        "rmsprop": lambda: optax.rmsprop(lr, decay=h["b2"], eps=h["eps"], eps_in_sqrt=False),
        "adagrad": lambda: optax.adagrad(
            lr, initial_accumulator_value=h["initial_accumulator"], eps=jnp.asarray(1e-7, dtype)
        ),
        "sgd": lambda: optax.sgd(lr),
        "sgdm": lambda: optax.sgd(lr, momentum=h["b1"]),
    }[kind]()


def _setup(kind, dtype, fast_pow, steps=STEPS):
    prob = adamjax.make_problem(
        {
            "kind": "quadratic",
            "dim": 2,
            "noise": "exponential",
            "curvature": [1.0, 3.0],
            "noise_scale": 0.5,
        },
        dtype,
    )
    eps = 1e-7 if kind == "adagrad" else H["eps"]
    cfg = SimConfig(
        problem=prob,
        optimizer=kind,
        steps=steps,
        block=64,
        fast_pow=fast_pow,
        record_steps=(0, 10, steps),
    )
    one = lambda v: np.asarray([v], dtype)  # noqa: E731
    params = RunParams(
        key=np.asarray(adamjax.run_keys(3, [5])),
        theta0=np.asarray([[1.0, -0.7]], dtype),
        opt=OptHParams(
            one(H["b1"]), one(H["b2"]), one(eps), one(0.0), one(H["initial_accumulator"])
        ),
        sched=SchedHParams(one(C), one(R), one(N0)),
    )
    return prob, cfg, params


def _noise(prob, cfg, key, steps):
    blocks = []
    for b in range(-(-steps // cfg.block)):
        blocks.append(prob.draw(key, b, b * cfg.block, cfg.block, 1, "iid"))
    return jnp.concatenate(blocks)[:steps]


def _reference_optax(kind, prob, cfg, params, dtype):
    xs = _noise(prob, cfg, params.key[0], cfg.steps)
    opt = _optax(kind, dtype)
    theta = jnp.asarray(params.theta0[0])

    def body(c, x):
        th, st = c
        g = prob.innovation(th, x)
        u, st = opt.update(g, st, th)
        return (optax.apply_updates(th, u), st), th

    (th, _), _ = jax.lax.scan(body, (theta, opt.init(theta)), xs)
    return np.asarray(th)


KINDS = ["adam", "amsgrad", "rmsprop", "adagrad", "sgd", "sgdm"]


def _assert_parity(got, ref, dtype):
    if dtype == jnp.float64:
        np.testing.assert_allclose(got, ref, rtol=RTOL_F64, atol=0)
    else:
        assert ulp_distance(got, ref).max() <= ULP_F32, (got, ref)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_matches_optax(kind, dtype):
    prob, cfg, params = _setup(kind, dtype, fast_pow=False)
    res = adamjax.simulate(cfg, params)
    ref = _reference_optax(kind, prob, cfg, params, dtype)
    _assert_parity(res.theta[0], ref, dtype)


@pytest.mark.parametrize("kind", ["adam", "amsgrad", "rmsprop"])
def test_matches_optax_in_a_heterogeneous_batch(kind):
    # Three runs with different β1, β2, r: the per-run pow branch; run 1 is the
    # reference configuration.
    prob, cfg, params = _setup(kind, jnp.float32, fast_pow=False)
    stack = lambda a, *others: np.concatenate([a, *others])  # noqa: E731
    f = lambda v: np.asarray([v], np.float32)  # noqa: E731
    params3 = params._replace(
        key=np.repeat(params.key, 3, axis=0),
        theta0=np.repeat(params.theta0, 3, axis=0),
        opt=params.opt._replace(
            b1=stack(f(0.5), params.opt.b1, f(0.7)),
            b2=stack(f(0.9), params.opt.b2, f(0.999)),
            eps=np.repeat(params.opt.eps, 3),
            eps_root=np.repeat(params.opt.eps_root, 3),
            initial_accumulator=np.repeat(params.opt.initial_accumulator, 3),
        ),
        sched=params.sched._replace(
            c=np.repeat(params.sched.c, 3),
            r=stack(f(0.5), params.sched.r, f(0.8)),
            n0=np.repeat(params.sched.n0, 3),
        ),
    )
    res = adamjax.simulate(cfg, params3)
    ref = _reference_optax(kind, prob, cfg, params, jnp.float32)
    _assert_parity(res.theta[1], ref, jnp.float32)


@pytest.mark.parametrize("kind", ["adam", "rmsprop"])
def test_fast_pow_mode_float64_within_tolerance_of_optax(kind):
    prob, cfg, params = _setup(kind, jnp.float64, fast_pow=True)
    res = adamjax.simulate(cfg, params)
    ref = _reference_optax(kind, prob, cfg, params, jnp.float64)
    np.testing.assert_allclose(res.theta[0], ref, rtol=RTOL_F64, atol=0)


def test_fast_pow_factors_within_a_few_ulp_float32():
    # The two factors fast_pow changes: 1 − βⁿ and (n + n0)^(−r), every n ≤ 10⁵
    # (measured: ≤ 5 and ≤ 9 ulp; the naive 1 − exp(n log β) is ~1000 ulp off at β = 0.9999).
    n = jnp.arange(1, 100_001, dtype=jnp.int32)
    for beta in (0.5, 0.9, 0.99, 0.999, 0.9999):
        b = jnp.float32(beta)
        fast = -jnp.expm1(n.astype(jnp.float32) * jnp.log1p(b - 1))
        b64 = np.float64(np.float32(beta))  # the float32 β both sides use
        exact = np.float32(1 - b64 ** np.arange(1, 100_001, dtype=np.float64))
        assert ulp_distance(fast, exact).max() <= 8, beta
    h = adamjax.SchedHParams(jnp.float32(1.0), jnp.float32(0.6), jnp.float32(3.0))
    fast = adamjax.step_size("power", h, n.astype(jnp.float32), fast_pow=True)
    exact = np.float32((np.arange(1, 100_001) + 3.0) ** -np.float64(np.float32(0.6)))
    assert ulp_distance(fast, exact).max() <= 16


def _numpy_adam(theta0, xs, h, curvature, steps):
    """Independent float64 Adam (Kingma & Ba, ε outside the root), plain NumPy loop."""
    b1, b2, eps = h["b1"], h["b2"], h["eps"]
    th = np.array(theta0, np.float64)
    m = np.zeros_like(th)
    v = np.zeros_like(th)
    for n in range(1, steps + 1):
        g = curvature * (th - xs[n - 1, 0])
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat = m / (1 - b1**n)
        vhat = v / (1 - b2**n)
        th = th - C * (n + N0) ** (-R) * mhat / (eps + np.sqrt(vhat))
    return th


def test_adam_matches_independent_numpy_float64():
    prob, cfg, params = _setup("adam", jnp.float64, fast_pow=True)
    res = adamjax.simulate(cfg, params)
    xs = np.asarray(_noise(prob, cfg, params.key[0], cfg.steps))
    ref = _numpy_adam(params.theta0[0], xs, H, np.array([1.0, 3.0]), cfg.steps)
    np.testing.assert_allclose(res.theta[0], ref, rtol=RTOL_F64, atol=0)


def test_no_bias_correction_and_eps_root_change_the_update():
    # Step 1 with g = 1: m̂ = v̂ = 1 → u = 1/(1+ε); without correction u = (1-α)/(√(1-β)+ε).
    g = jnp.ones(1)
    for bc, want in [(True, 1 / (1 + 1e-8)), (False, 0.1 / (np.sqrt(0.01) + 1e-8))]:
        t = adamjax.scale_by_adam(0.9, 0.99, 1e-8, bias_correction=bc)
        u, _ = t.update(g, t.init(g))
        np.testing.assert_allclose(u, want, rtol=1e-12)
    t = adamjax.scale_by_adam(0.9, 0.99, 0.0, eps_root=3.0)
    u, _ = t.update(g, t.init(g))
    np.testing.assert_allclose(u, 1 / np.sqrt(4.0), rtol=1e-12)


def test_signsgd_and_amsgrad_max():
    t = adamjax.scale_by_signsgd()
    g = jnp.asarray([-2.0, 0.0, 3.0])
    np.testing.assert_array_equal(t.update(g, t.init(g))[0], [-1.0, 0.0, 1.0])
    # AMSGrad keeps the running max of v̂: after a big then a small gradient the
    # denominator stays that of the big one.
    t = adamjax.scale_by_amsgrad(0.0, 0.5, 0.0)
    s = t.init(jnp.zeros(1))
    _, s = t.update(jnp.asarray([10.0]), s)
    u, s = t.update(jnp.asarray([1.0]), s)
    assert float(s.nu_max[0]) == pytest.approx(100.0)
    np.testing.assert_allclose(u, 1.0 / 10.0, rtol=1e-12)
