"""``reduces``: which per-run functions sum over more than one element (then the engine
computes them in fixed blocks of runs, for bits independent of the batch width)."""

import jax
import jax.numpy as jnp
import pytest

import adamjax
from adamjax import SimConfig
from adamjax._engine.reductions import reduces
from adamjax._engine.simulate import LANES, RunResult, _finish_batch

S = jax.ShapeDtypeStruct


def _v(*shape):
    return S(shape, jnp.float32)


@jax.custom_jvp
def _custom_sum(x):
    return jnp.sum(x)


_custom_sum.defjvp(lambda p, t: (_custom_sum(p[0]), jnp.sum(t[0])))


@jax.custom_vjp
def _custom_sin(x):
    return jnp.sin(x)


_custom_sin.defvjp(lambda x: (jnp.sin(x), x), lambda x, ct: (ct * jnp.cos(x),))


@pytest.mark.parametrize(
    "fn, args",
    [
        (lambda x: jnp.sin(x) * 2 + x**2, (_v(5),)),
        (lambda x: jnp.sum(x), (_v(1),)),  # a sum over one element is a copy
        (lambda x: jnp.linalg.norm(x), (_v(1),)),
        (lambda x: jnp.max(x) + jnp.argmin(x), (_v(7),)),  # exact in any order
        (lambda x, y: x @ y, (_v(3, 1), _v(1, 4))),  # a contraction of length 1
        (lambda x: jax.lax.cond(x[0] > 0, jnp.exp, jnp.sin, x), (_v(3),)),
        (lambda x: jax.nn.softplus(x) + jax.nn.relu(x) + jnp.sort(x), (_v(4),)),  # custom_jvp
        (lambda x: jax.grad(lambda y: jnp.tanh(y[0]))(x), (_v(3),)),
        # containers are judged by their bodies
        (lambda x: jax.lax.fori_loop(0, 3, lambda i, c: jnp.sin(c), x), (_v(3),)),
        (lambda x: jax.lax.while_loop(lambda c: c[0] < 1, jnp.exp, x), (_v(3),)),
        (lambda x: jax.lax.map(jnp.sin, x), (_v(3),)),
        (lambda x: jax.checkpoint(jnp.sin)(x), (_v(3),)),
        (lambda x: _custom_sin(x), (_v(3),)),
    ],
)
def test_elementwise_functions_do_not_reduce(fn, args):
    assert not reduces(fn, *args)


@pytest.mark.parametrize(
    "fn, args",
    [
        (lambda x: jnp.sum(x), (_v(2),)),
        (lambda x: jnp.linalg.norm(x), (_v(3),)),
        (lambda x: jnp.prod(x, axis=0), (_v(4, 2),)),
        (lambda x, y: x @ y, (_v(3),) * 2),
        (lambda x: jnp.cumsum(x), (_v(3),)),
        (lambda x: jnp.zeros(3).at[jnp.array([0, 0, 1])].add(x), (_v(3),)),
        # nested: inside a conditional's branch, a scan's body, a nested jit
        (lambda x: jax.lax.cond(x[0] > 0, jnp.sum, lambda a: a[0], x), (_v(3),)),
        (lambda x: jax.lax.scan(lambda c, a: (c + jnp.sum(a), None), 0.0, x)[0], (_v(4, 2),)),
        (lambda x: jax.jit(lambda a: a @ a)(x), (_v(2),)),
        (_custom_sum, (_v(3),)),
        (lambda x: jax.grad(lambda y: _custom_sum(jnp.sin(y)))(x), (_v(3),)),
        # anything not known to be exact counts: scatter-subtract, FFT, linear
        # algebra, a callback
        (lambda x: jnp.zeros(3).at[jnp.array([0, 0, 1])].subtract(x), (_v(3),)),
        (lambda x: jnp.fft.fft(x).real, (_v(4),)),
        (lambda x: jnp.linalg.cholesky(x), (_v(2, 2),)),
        (lambda x: jnp.linalg.norm(x, ord=2), (_v(2, 2),)),
        (lambda x: jax.pure_callback(lambda a: a, jax.ShapeDtypeStruct((), x.dtype), x), (_v(),)),
    ],
)
def test_sums_and_products_reduce(fn, args):
    assert reduces(fn, *args)


def test_a_problem_loss_reduces_where_it_sums():
    """The built-ins as the engine sees them: the 1-D quadratic's loss and gradient norm
    are elementwise; in 3-D, on a finite sum and on the network they sum."""
    for cfg, want in [
        ({"kind": "quadratic", "dim": 1, "noise": "exponential"}, False),
        ({"kind": "quadratic", "dim": 3}, True),
        ({"kind": "zhang", "n": 10}, True),
        ({"kind": "regression"}, True),
    ]:
        p = adamjax.make_problem(cfg, jnp.float32)
        x = _v(p.dim)
        assert reduces(lambda t, p=p: p.loss(t) + jnp.linalg.norm(p.grad(t)), x) is want


def test_the_finish_without_reductions_compiles_without_the_blocks_loop():
    """The 1-D quadratic's batch finish is one vmap (no loop in its program); Zhang's
    keeps the loop over blocks of LANES runs."""
    n, k = 2 * LANES, 3
    for cfg, loops in [
        ({"kind": "quadratic", "dim": 1, "noise": "exponential"}, False),
        ({"kind": "zhang", "n": 10}, True),
    ]:
        p = adamjax.make_problem(cfg, jnp.float32)
        sim = SimConfig(problem=p, optimizer="adam", schedule="power", steps=8)
        f, i, b = (S((n,), t) for t in (jnp.float32, jnp.int32, jnp.bool_))
        raw = RunResult(_v(n, p.dim), f, f, f, b, i, _v(n, k, p.dim), _v(n, k), None)
        jaxpr = jax.make_jaxpr(lambda r, sim=sim: _finish_batch(sim, r))(raw)
        assert ("scan[" in str(jaxpr)) is loops  # lax.map over the blocks
