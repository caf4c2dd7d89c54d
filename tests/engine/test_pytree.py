"""PyTree parameters: a dict-PyTree problem from a per-example loss runs exactly as a
hand-written optax.adam loop on the same PyTree; θ comes back in the user's structure
from simulate, the vector field, its zero and the flow; the results name every entry."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adamjax
from helpers import RTOL_F64

STEPS, N = 400, 6


def _problem():
    rng = np.random.default_rng(0)
    data = {"x": jnp.asarray(rng.normal(size=(N, 3))), "y": jnp.asarray(rng.normal(size=N))}

    def loss(params, ex):
        pred = jnp.tanh(params["w"] @ ex["x"]) @ params["v"] + params["b"]
        return 0.5 * (pred - ex["y"]) ** 2

    init = {"w": jnp.full((2, 3), 0.3), "v": jnp.array([0.5, -0.2]), "b": jnp.array(0.1)}
    return adamjax.finite_sum_problem(loss, data, init), loss, data, init


def test_dict_pytree_matches_optax_adam_float64():
    """Two leaves of different shapes (and a scalar); cyclic sampling so the gradients
    are deterministic: example (n − 1) mod N at step n."""
    jax.config.update("jax_enable_x64", True)
    prob, loss, data, init = _problem()
    init = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), init)
    lr = lambda count: 0.05 * (count + 1.0) ** -0.5  # noqa: E731
    opt = optax.adam(lr, b1=0.9, b2=0.99, eps=1e-8)

    def body(carry, i):
        params, state = carry
        ex = jax.tree_util.tree_map(lambda a: a[i], data)
        g = jax.grad(loss)(params, ex)
        u, state = opt.update(g, state, params)
        return (optax.apply_updates(params, u), state), None

    idx = jnp.arange(STEPS) % N
    ref, _ = jax.lax.scan(body, (init, opt.init(init)), idx)[0]

    one = lambda v: np.asarray([v], np.float64)  # noqa: E731
    cfg = adamjax.SimConfig(
        problem=prob,
        optimizer="adam",
        scheme="cyclic",
        steps=STEPS,
        record_steps=(0, STEPS),
    )
    theta0 = jax.tree_util.tree_map(lambda a: np.asarray(a)[None], init)
    params = adamjax.RunParams(
        key=np.asarray(adamjax.run_keys(0, [0])),
        theta0=theta0,
        opt=adamjax.OptHParams(one(0.9), one(0.99), one(1e-8), one(0.0), one(0.0)),
        sched=adamjax.SchedHParams(one(0.05), one(0.5), one(0.0)),
    )
    res = adamjax.simulate(cfg, params)
    assert jax.tree_util.tree_structure(res.theta) == jax.tree_util.tree_structure(init)
    for k in init:
        got, want = np.asarray(res.theta[k][0]), np.asarray(ref[k])
        np.testing.assert_allclose(got, want, rtol=RTOL_F64, atol=1e-14)
        assert res.snapshots[k].shape == (1, 2, *np.shape(init[k]))
    assert prob.param_names() == ("b", "v[0]", "v[1]", "w[0,0]", "w[0,1]", "w[0,2]",
                                  "w[1,0]", "w[1,1]", "w[1,2]")  # fmt: skip


def test_theory_layer_takes_the_pytree():
    prob, *_ = _problem()
    vf = adamjax.vector_field(prob, b1=0.9, b2=0.99, samples=2**14, batches=16)
    theta = {"w": jnp.full((2, 3), 0.3), "v": jnp.array([0.5, -0.2]), "b": jnp.array(0.1)}
    f, se = vf(theta)
    flat_f, _ = vf(prob.default_theta0()[None])
    assert f["w"].shape == (2, 3) and se["b"].shape == ()
    np.testing.assert_allclose(np.concatenate([np.ravel(f[k]) for k in ("b", "v", "w")]),
                               np.asarray(flat_f[0]), rtol=1e-12)  # fmt: skip
    batch = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), theta)
    sol = adamjax.flow(vf, batch, jnp.linspace(0, 0.2, 3))
    assert sol.ys["w"].shape == (2, 3, 2, 3) and sol.ok.all()
    ly = adamjax.lyapunov(vf, batch)
    assert ly.values.shape == (2,)


def test_seeded_init_and_param_coordinate():
    """``init`` as a function of a key: every seed starts from its own draw, the same at
    every grid point (common random numbers); the results name θ's entries."""
    _, loss, data, _ = _problem()

    def init(key):
        return {"w": jax.random.normal(key, (2, 3)), "v": jnp.ones(2), "b": jnp.zeros(())}

    prob = adamjax.finite_sum_problem(loss, data, init)
    spec = {"name": "pt", "run": {"steps": 50, "seeds": 3}, "record": {"snapshots": 4},
            "sweep": {"optimizer.b2": [0.9, 0.99]}}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", adamjax.AssumptionWarning)
        ds = adamjax.run(spec, problem=prob, progress=False)
    start = ds["theta"].isel(snapshot=0).values  # (b2, seed, dim)
    assert len({tuple(start[0, s]) for s in range(3)}) == 3
    np.testing.assert_array_equal(start[0], start[1])
    assert list(ds["param"].values[:3]) == ["b", "v[0]", "v[1]"]


def test_tuple_structure_is_kept():
    from adamjax._engine.pytree import flatten, is_flat

    tree = (np.zeros((2, 3)), np.ones((2, 1)))
    assert not is_flat(tree) and is_flat([1.0, [2.0, 3.0]])
    flat, back = flatten(tree, lead=1)
    assert flat.shape == (2, 4)
    out = back(flat)
    assert isinstance(out, tuple) and out[0].shape == (2, 3) and out[1].shape == (2, 1)


def test_errors_in_the_users_functions_name_the_line():
    """An exception in the user's loss or init is one line with the user's own line."""
    data = {"x": jnp.ones((4, 2))}

    def loss(params, ex):
        return jnp.sum(params["w3"] * ex["x"])  # no such key

    with pytest.raises(ValueError, match=r"loss\(params, example\) raised KeyError: 'w3' \(at "):
        adamjax.finite_sum_problem(loss, data, {"w": jnp.zeros(2)})
    with pytest.raises(ValueError, match=r"init\(key\) raised ZeroDivisionError: .*test_pytree"):
        adamjax.finite_sum_problem(loss, data, lambda key: 1 / 0)
