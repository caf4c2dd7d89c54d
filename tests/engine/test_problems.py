"""Problems and sampling schemes."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adamjax
from adamjax._engine.sampling import finite_sum_indices
from helpers import HalfSquares

KEY = jax.random.PRNGKey(7)


def _indices(scheme, n, b, steps, block=16):
    out = [
        finite_sum_indices(KEY, k, k * block, block, b, n, scheme)
        for k in range(-(-steps // block))
    ]
    return np.asarray(jnp.concatenate(out))[:steps]


def test_cyclic_starts_at_zero_and_wraps():
    idx = _indices("cyclic", 5, 2, 12)
    np.testing.assert_array_equal(idx.reshape(-1)[:12], [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1])


@pytest.mark.parametrize("b", [1, 3, 4])
def test_reshuffle_every_epoch_is_a_fresh_permutation(b):
    n = 8
    stream = _indices("reshuffle", n, b, 200).reshape(-1)
    epochs = stream[: (len(stream) // n) * n].reshape(-1, n)
    for e in epochs:
        np.testing.assert_array_equal(np.sort(e), np.arange(n))
    assert len({tuple(e) for e in epochs}) > len(epochs) // 2  # reshuffled, not repeated


def test_iid_indices_uniform():
    idx = _indices("iid", 10, 4, 4000).reshape(-1)
    counts = np.bincount(idx, minlength=10)
    assert idx.min() >= 0 and idx.max() < 10
    # 16000 draws: each count ≈ 1600 ± 40; 6 sd band
    assert np.all(np.abs(counts - 1600) < 240)


def test_noise_distributions_mean_zero_unit_variance():
    for noise in ("gaussian", "exponential", "rademacher"):
        p = adamjax.make_problem({"kind": "quadratic", "dim": 1, "noise": noise}, jnp.float64)
        x = np.asarray(p.sample(KEY, (200_000,)))[:, 0]
        assert abs(x.mean()) < 0.02 and abs(x.var() - 1) < 0.03, noise
    p = adamjax.make_problem({"kind": "quadratic", "dim": 1, "noise": "exponential"}, jnp.float64)
    x = np.asarray(p.sample(KEY, (200_000,)))[:, 0]
    assert x.min() >= -1 and np.mean(x**3) > 1.5  # Exp(1) − 1: skewness 2


def test_stream_problem_refuses_reshuffle():
    spec = {"name": "x", "problem": {"kind": "quadratic"}, "sampling": {"scheme": "cyclic"}}
    with pytest.raises(ValueError, match="sampling.scheme"):
        adamjax.run(spec)


def test_zhang_branches_and_minimiser():
    p = adamjax.make_problem({"kind": "zhang", "n": 10}, jnp.float64)
    a = 1 / 81
    # x ≥ −1 (x = −1 included): f_0 = (1+9a) x, f_i = −a x ⇒ f = x/n
    for x in (-1.0, 0.0, 2.5):
        assert float(p.loss(jnp.asarray([x]))) == pytest.approx(x / 10, rel=1e-12)
        assert float(p.example_loss(jnp.asarray([x]), 3)) == pytest.approx(-a * x, rel=1e-12)
    # continuity at −1 and the minimiser −2 of the x < −1 branch f = (x+2)²/(2n) − 3/(2n)·…
    left = float(p.loss(jnp.asarray([-1.0 - 1e-9])))
    assert left == pytest.approx(-0.1, abs=1e-8)
    xs = jnp.linspace(-4, 3, 7001)[:, None]
    losses = jax.vmap(p.loss)(xs)
    assert float(xs[jnp.argmin(losses), 0]) == pytest.approx(-2.0, abs=1e-3)
    np.testing.assert_allclose(p.grad(jnp.asarray([-2.0])), 0.0, atol=1e-12)
    # D0 = 0: every ∇f_i vanishes at x* = −2 (overparametrised in the talk's sense)
    np.testing.assert_allclose(p.example_grads(jnp.asarray([-2.0])), 0.0, atol=1e-12)


def test_reddi_projection_and_minimiser():
    p = adamjax.make_problem({"kind": "reddi", "n": 5}, jnp.float64)
    assert p.box == (-1.0, 1.0)
    assert float(p.grad(jnp.asarray([0.3]))[0]) == pytest.approx(1 / 5)
    # Adam from 0.5 with big steps stays in the box
    ds = adamjax.run(
        {
            "name": "r",
            "problem": {"kind": "reddi", "n": 5},
            "sampling": {"scheme": "cyclic"},
            "schedule": {"kind": "constant", "c": 0.5},
            "run": {"steps": 500, "seeds": 2, "theta0": 0.5},
        }
    )
    assert (np.abs(ds.theta.values) <= 1).all()


def test_regression_is_overparametrised_with_attainable_zero_loss():
    cfg = {
        "kind": "regression",
        "n_points": 12,
        "input_dim": 2,
        "width": 16,
        "teacher_width": 3,
        "data_seed": 1,
    }
    p = adamjax.make_problem(cfg, jnp.float64)
    assert p.dim == 16 * 2 + 2 * 16 + 1 > p.n_data
    x = np.asarray(p.data[0])
    assert len({tuple(r) for r in x}) == p.n_data  # distinct inputs
    assert float(p.loss(p.teacher)) < 1e-25
    np.testing.assert_allclose(p.example_grads(p.teacher), 0.0, atol=1e-12)  # D0 = 0
    assert float(p.loss(p.default_theta0())) > 1e-3


def test_linear_regression_d0():
    clean = adamjax.make_problem(
        {"kind": "linear_regression", "n_points": 20, "dim": 5, "label_noise": 0.0}, jnp.float64
    )
    noisy = adamjax.make_problem(
        {"kind": "linear_regression", "n_points": 20, "dim": 5, "label_noise": 0.5}, jnp.float64
    )
    np.testing.assert_allclose(clean.example_grads(clean.theta_star), 0.0, atol=1e-12)
    # noisy: at the least-squares solution the mean gradient is 0 but the examples' are not
    a, y = (np.asarray(v) for v in noisy.data)
    ls = np.linalg.lstsq(a, y, rcond=None)[0]
    np.testing.assert_allclose(noisy.grad(jnp.asarray(ls)), 0.0, atol=1e-10)
    assert np.abs(np.asarray(noisy.example_grads(jnp.asarray(ls)))).max() > 0.1


def test_user_defined_finite_sum_problem():
    data = jnp.asarray([1.0, 2.0, 6.0])
    p = adamjax.FiniteSumProblem(data=data, dim=1, loss_fn=lambda th, x: 0.5 * (th[0] - x) ** 2)
    np.testing.assert_allclose(p.grad(jnp.asarray([0.0])), [-3.0])
    g = p.innovation(jnp.asarray([0.0]), jnp.asarray([0, 2]))
    np.testing.assert_allclose(g, [-3.5])  # mean of −1 and −6


def _np_net_loss(kind, theta, x, y, width, input_dim):
    """Independent NumPy float64 loss of one example, from the documented layout of θ:
    W1 (width × input) row-major, b1, then W2 (regression: width; digits: 10 × width), b2."""
    k = width * input_dim
    w1, b1 = theta[:k].reshape(width, input_dim), theta[k : k + width]
    h = np.tanh(w1 @ x + b1)
    if kind == "regression":
        w2, b2 = theta[k + width : k + 2 * width], theta[k + 2 * width]
        return 0.5 * (h @ w2 + b2 - y) ** 2
    w2 = theta[k + width : k + width + 10 * width].reshape(10, width)
    z = w2 @ h + theta[k + width + 10 * width :]
    return np.log(np.sum(np.exp(z - z.max()))) + z.max() - z[y]


@pytest.mark.parametrize(
    "cfg",
    [
        {"kind": "regression", "n_points": 9, "input_dim": 2, "width": 5, "data_seed": 3},
        {"kind": "digits", "width": 3},
    ],
)
def test_network_innovation_matches_finite_differences(cfg):
    """The layered gradient (taken w.r.t. the unflattened weights) is the gradient of
    the mini-batch loss: central differences of an independent NumPy forward pass."""
    p = adamjax.make_problem(cfg, jnp.float64)
    width = cfg["width"]
    input_dim = cfg.get("input_dim", 64)
    theta = np.asarray(p.default_theta0()) + 0.3 * np.random.default_rng(0).normal(size=p.dim)
    idx = np.array([1, 4, 4])
    xs, ys = (np.asarray(a) for a in p.data)

    def batch_loss(t):
        return np.mean([_np_net_loss(cfg["kind"], t, xs[i], ys[i], width, input_dim) for i in idx])

    g = np.asarray(p.innovation(jnp.asarray(theta), jnp.asarray(idx)))
    h = 1e-6
    fd = np.array(
        [(batch_loss(theta + h * e) - batch_loss(theta - h * e)) / (2 * h) for e in np.eye(p.dim)]
    )
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)
    # and it is the gradient of the problem's own example loss through the flat θ
    flat = jax.grad(
        lambda t: jnp.mean(
            jax.vmap(p.example_loss, (None, 0))(t, jax.tree_util.tree_map(lambda a: a[idx], p.data))
        )
    )
    np.testing.assert_allclose(g, np.asarray(flat(jnp.asarray(theta))), rtol=1e-12, atol=1e-14)


def test_registering_a_problem_is_one_module_and_one_line(monkeypatch):
    """A new built-in problem needs its module (class + ``Builtin`` entry) and one
    registration; spec validation, sweeps, the dimension and ``make_problem`` follow."""
    import jax.numpy as jnp

    from adamjax import BUILTINS, Builtin, Param, register_problem

    # -- the "module": a shifted 1-D quadratic ℓ(θ, x) = ½(θ − s − x)², x ~ N(0, 1) --
    class Shifted(adamjax.Problem):
        shift: jnp.ndarray
        dim: int = eqx.field(static=True)

        def sample(self, key, shape):
            return jax.random.normal(key, (*shape, 1), self.shift.dtype)

        def innovation(self, theta, x):
            return jnp.mean(theta - self.shift - x, axis=0)

        def loss(self, theta):
            return 0.5 * jnp.sum((theta - self.shift) ** 2 + 1.0)

        @property
        def minimizer(self):
            return jnp.reshape(self.shift, (1,))

    entry = Builtin(
        kind="shifted",
        params={"shift": Param("float", 2.0, None, "the minimiser")},
        build=lambda p, dtype: Shifted(shift=jnp.asarray(p["shift"], dtype), dim=1),
        dim=lambda p: 1,
        stream=True,
    )
    monkeypatch.setitem(BUILTINS, "shifted", None)  # restored after the test
    register_problem(entry)  # -- the one registration line --

    spec = {
        "name": "shifted",
        "problem": {"kind": "shifted"},
        "optimizer": {"b1": 0.0, "b2": 0.99},
        "run": {"steps": 3000, "seeds": 8, "theta0": 0.0},
        "sweep": {"problem.shift": [-1.0, 3.0]},
    }
    ds = adamjax.run(spec, progress=False)
    assert ds["theta_final"].dims == ("problem.shift", "seed", "dim")
    # Symmetric noise: Adam ends near the minimiser of each grid point.
    limits = ds["theta_final"].mean(("seed", "dim")).values
    np.testing.assert_allclose(limits, [-1.0, 3.0], atol=0.3)
    assert adamjax.problem_dim({"kind": "shifted"}) == 1
    with pytest.raises(adamjax.SpecError, match="problem.scale = 1.0: not a parameter of"):
        adamjax.load_spec({**spec, "problem": {"kind": "shifted", "scale": 1.0}})
    with pytest.raises(adamjax.SpecError, match='sampling.scheme = "cyclic": problem'):
        adamjax.load_spec({**spec, "sampling": {"scheme": "cyclic"}})


@pytest.mark.parametrize(
    "cfg",
    [
        {"kind": "quadratic", "dim": 2, "curvature": [1.0, 3.0], "noise": "exponential"},
        {"kind": "quadratic", "dim": 1, "noise": "gaussian", "noise_scale": 0.5},
        {"kind": "linear_regression", "dim": 2, "n_points": 6, "label_noise": 0.5},
    ],
)
@pytest.mark.parametrize("b", [1, 3])
def test_second_and_cross_moments_match_sampling(cfg, b):
    """E[G²] and Cov(G, G²) in closed form (the vector field's controls) against the
    moments of 2**18 sampled mini-batch gradients, within 5 SE."""
    pb = adamjax.make_problem(cfg, jnp.float64)
    theta = jnp.linspace(-0.7, 0.4, pb.dim)
    xs = pb.sample(jax.random.PRNGKey(3), (2**18, b))
    g = np.asarray(jax.vmap(pb.innovation, (None, 0))(theta, xs))  # (S, d)
    n = g.shape[0]
    g2 = g * g
    prod = (g - g.mean(0)) * (g2 - g2.mean(0))
    for want, got, samples in (
        (pb.second_moment(theta, b), g2.mean(0), g2),
        (pb.cross_moment(theta, b), prod.mean(0), prod),
    ):
        se = samples.std(0) / np.sqrt(n)
        assert np.all(np.abs(np.asarray(want) - got) <= 5 * se + 1e-12), (want, got, se)


@pytest.mark.parametrize(
    "name, minibatch, unbiased",
    [
        (None, True, True),
        ("innovation", False, False),  # a clipped or perturbed gradient
        ("example_grads", False, False),
        ("_batch_loss", False, False),
        ("sample", True, False),  # weighted sampling: G is still ∇ℓ of the drawn batch
        ("draw", True, False),
        ("n_data", True, False),
        ("loss", True, False),  # a regulariser in L only
        ("grad", True, False),
    ],
)
def test_a_redefinition_turns_off_what_it_invalidates(name, minibatch, unbiased):
    """``minibatch_gradient`` (the vector field's fast path) and ``innovation_is_gradient``
    (its closed-form moments and control variates) follow what a subclass redefines;
    the built-ins redefine nothing that matters."""
    cls = HalfSquares
    if name is not None:  # the same behaviour, but a method of the subclass
        base = HalfSquares.__dict__.get(name) or getattr(HalfSquares, name)
        if isinstance(base, property):
            again = property(lambda self: base.fget(self))
        else:
            again = lambda self, *a, **k: base(self, *a, **k)  # noqa: E731
        cls = type(f"P_{name}", (HalfSquares,), {name: again})
    p = cls(data=jnp.arange(4.0), dim=1)
    assert (p.minibatch_gradient, p.innovation_is_gradient) == (minibatch, unbiased)
    assert (p.second_moment(jnp.zeros(1), 1) is None) is not unbiased


def test_a_layered_problem_redefining_example_loss_loses_the_fast_path():
    """A layered problem's G differentiates ``parts_loss``; one whose ``example_loss``
    says something else (a per-example regulariser) is not the mini-batch gradient of
    its ``example_grads``."""
    from adamjax import PyTreeFiniteSumProblem

    pb = adamjax.finite_sum_problem(
        lambda w, x: 0.5 * jnp.sum((w["a"] - x) ** 2), jnp.arange(4.0), {"a": jnp.zeros(1)}
    )
    assert pb.minibatch_gradient and pb.innovation_is_gradient
    base = PyTreeFiniteSumProblem.example_loss
    cls = type(
        "Reg", (PyTreeFiniteSumProblem,), {"example_loss": lambda s, t, e: base(s, t, e) + t[0]}
    )
    reg = cls(**{f.name: getattr(pb, f.name) for f in dataclasses.fields(pb)})
    assert not reg.minibatch_gradient and not reg.innovation_is_gradient


def test_the_builtins_keep_the_fast_path_and_the_closed_forms():
    for kind in ("zhang", "reddi", "regression", "linear_regression", "digits"):
        b = adamjax.make_problem({"kind": kind}, jnp.float32)
        assert b.minibatch_gradient and b.innovation_is_gradient
