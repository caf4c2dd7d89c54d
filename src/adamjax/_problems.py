"""Stochastic problems: the innovation G(θ, X), its sampler and the objective L.

Two families (Dereich, Jentzen & Kassing 2025, §1 setting):

* :class:`StreamProblem` — a fresh i.i.d. sample X_n every step (the paper's
  general setting; G need not be a gradient). Only the ``iid`` scheme.
* :class:`FiniteSumProblem` — L = (1/N) Σ_i ℓ_i, X_n a mini-batch of indices
  drawn by a sampling scheme (``iid``, ``reshuffle``, ``cyclic``); G is the
  mini-batch mean gradient.

Built-in problems (spec ``problem.kind``): ``quadratic``, ``reddi``, ``zhang``,
``regression`` (overparametrised one-hidden-layer tanh network),
``linear_regression``. Users subclass or instantiate :class:`StreamProblem`
(``innovation`` + ``sampler``) or :class:`FiniteSumProblem` (per-example
``loss`` + ``data``).

All problems are ``equinox.Module``s: array fields (data, curvatures, …) are
traced, never baked into the compiled program.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ._sampling import block_key, finite_sum_indices

NOISES = ("none", "gaussian", "exponential", "rademacher")


class Problem(eqx.Module):
    """Abstract problem. Subclasses define ``dim``, ``sample``, ``innovation``, ``loss``."""

    def sample(self, key, shape: tuple[int, ...]):
        """``shape`` i.i.d. samples of X (a PyTree with leading axes ``shape``)."""
        raise NotImplementedError

    def innovation(self, theta: Float[Array, " dim"], x) -> Float[Array, " dim"]:
        """G(θ, x) averaged over a mini-batch ``x`` (leading axis = batch)."""
        raise NotImplementedError

    def loss(self, theta: Float[Array, " dim"]) -> Float[Array, ""]:
        """The objective L(θ) = E[ℓ(θ, X)]."""
        raise NotImplementedError

    def grad(self, theta: Float[Array, " dim"]) -> Float[Array, " dim"]:
        """∇L(θ) (by autodiff of ``loss`` unless overridden)."""
        return jax.grad(self.loss)(theta)

    def draw(self, run_key, block_index, start, block: int, batch_size: int, scheme: str):
        """Samples for steps ``start+1 … start+block`` of one run: leading axes (block, batch)."""
        return self.sample(block_key(run_key, block_index), (block, batch_size))

    @property
    def box(self) -> tuple[float, float] | None:
        """Closed box the iterates are projected onto after every step, or None."""
        return None

    @property
    def minimizer(self):
        """A known minimiser θ* of L (for the optimality gap), or None."""
        return None

    @property
    def finite_sum(self) -> bool:
        return False

    @property
    def sample_numel(self) -> int:
        """Numbers drawn per sample (to size the noise blocks)."""
        return 1

    def default_theta0(self):
        """Problem-specific default start (e.g. a network initialisation), or None."""
        return None


class StreamProblem(Problem):
    """A user-defined stream problem: i.i.d. X_n ~ ``sampler``, innovation ``G(θ, x)``.

    Args:
        innovation: ``G(theta, x) -> (dim,)`` for ONE sample x.
        sampler: ``sampler(key, shape) -> x`` with leading axes ``shape``.
        dim: dimension of θ.
        loss: optional ``L(theta)`` (for recording and divergence checks).
    """

    innovation_fn: Callable = eqx.field(static=True)
    sampler: Callable = eqx.field(static=True)
    dim: int = eqx.field(static=True)
    loss_fn: Callable | None = eqx.field(static=True, default=None)

    def sample(self, key, shape):
        return self.sampler(key, shape)

    def innovation(self, theta, x):
        return jnp.mean(jax.vmap(self.innovation_fn, (None, 0))(theta, x), axis=0)

    def loss(self, theta):
        if self.loss_fn is None:
            return jnp.asarray(jnp.nan, theta.dtype)
        return self.loss_fn(theta)

    def grad(self, theta):
        if self.loss_fn is None:
            raise ValueError("this StreamProblem has no loss, so ∇L is unknown")
        return jax.grad(self.loss_fn)(theta)


class Quadratic(Problem):
    """ℓ(θ, x) = ½ Σ_i h_i (θ_i − x_i)², x = s·ξ with ξ i.i.d. of mean 0 and variance 1.

    Noise ``exponential`` is ξ = Exp(1) − 1 (asymmetric: Adam's limit is then not
    the minimiser 0, Dereich, Jentzen & Kassing 2025, Cor. 1.10); ``gaussian``
    and ``rademacher`` are symmetric; ``none`` gives G = ∇L.
    L(θ) = ½ Σ_i h_i (θ_i² + s²·Var ξ), minimised at 0.
    """

    curvature: Float[Array, " dim"]
    noise_scale: Float[Array, ""]
    noise: str = eqx.field(static=True)
    dim: int = eqx.field(static=True)

    def sample(self, key, shape):
        full = (*shape, self.dim)
        dt = self.curvature.dtype
        if self.noise == "none":
            xi = jnp.zeros(full, dt)
        elif self.noise == "gaussian":
            xi = jax.random.normal(key, full, dt)
        elif self.noise == "exponential":
            xi = jax.random.exponential(key, full, dt) - 1
        elif self.noise == "rademacher":
            xi = jax.random.rademacher(key, full, dt)
        else:  # validated earlier; kept for direct construction
            raise ValueError(f"problem.noise: unknown noise {self.noise!r}")
        return self.noise_scale * xi

    def innovation(self, theta, x):
        return jnp.mean(self.curvature * (theta - x), axis=0)

    def loss(self, theta):
        var = 0.0 if self.noise == "none" else self.noise_scale**2
        return 0.5 * jnp.sum(self.curvature * (theta**2 + var))

    def grad(self, theta):
        return self.curvature * theta

    @property
    def minimizer(self):
        return jnp.zeros(self.dim, self.curvature.dtype)

    @property
    def sample_numel(self):
        return self.dim


class FiniteSumProblem(Problem):
    """L(θ) = (1/N) Σ_i ℓ(θ, data_i); X_n a mini-batch of indices.

    Subclasses implement :meth:`example_loss`; users can pass ``loss`` and
    ``data`` directly (``data`` is any PyTree whose leaves share a leading axis N).
    """

    data: Any
    dim: int = eqx.field(static=True)
    loss_fn: Callable | None = eqx.field(static=True, default=None)

    def example_loss(self, theta, example):
        return self.loss_fn(theta, example)

    @property
    def finite_sum(self):
        return True

    @property
    def n_data(self) -> int:
        return int(jax.tree_util.tree_leaves(self.data)[0].shape[0])

    def sample(self, key, shape):
        return jax.random.randint(key, shape, 0, self.n_data, dtype=jnp.int32)

    def draw(self, run_key, block_index, start, block, batch_size, scheme):
        return finite_sum_indices(
            run_key, block_index, start, block, batch_size, self.n_data, scheme
        )

    def _batch_loss(self, theta, idx):
        batch = jax.tree_util.tree_map(lambda a: a[idx], self.data)
        return jnp.mean(jax.vmap(self.example_loss, (None, 0))(theta, batch))

    def innovation(self, theta, idx):
        return jax.grad(self._batch_loss)(theta, idx)

    def loss(self, theta):
        return jnp.mean(jax.vmap(self.example_loss, (None, 0))(theta, self.data))

    def example_grads(self, theta):
        """∇ℓ_i(θ) for every i, shape (N, dim)."""
        return jax.vmap(jax.grad(self.example_loss), (None, 0))(theta, self.data)


class Zhang(FiniteSumProblem):
    """Zhang et al. (NeurIPS 2022) counterexample (2.5), n functions of x ∈ R::

        f_0(x) = (1+(n−1)a) x                              x ≥ −1
               = (1+(n−1)a)/2 (x+2)² − (3+3(n−1)a)/2       x < −1
        f_i(x) = −a x                                      x ≥ −1   (i > 0)
               = −(a/2)(x+2)² + 3a/2                       x < −1

    f = (1/n) Σ f_i is minimised at x* = −2; a = 1/(n−1)² gives D1 = 2n², D0 = 0.
    At x = −1 the x ≥ −1 branch is used.
    """

    a: Float[Array, ""] = eqx.field(default=None)

    def example_loss(self, theta, i):
        x = theta[0]
        n1a = 1 + (self.data.shape[0] - 1) * self.a
        right0 = n1a * x
        left0 = n1a / 2 * (x + 2) ** 2 - 3 * n1a / 2
        righti = -self.a * x
        lefti = -(self.a / 2) * (x + 2) ** 2 + 3 * self.a / 2
        f0 = jnp.where(x >= -1, right0, left0)
        fi = jnp.where(x >= -1, righti, lefti)
        return jnp.where(i == 0, f0, fi)

    @property
    def minimizer(self):
        return jnp.full((1,), -2.0, self.a.dtype)


class Reddi(FiniteSumProblem):
    """Reddi, Kale & Kumar (2018) style example on [−1, 1] with projection:
    ℓ_0(θ) = nθ, ℓ_i(θ) = −θ (i = 1 … n−1); L = θ/n is minimised at θ* = −1."""

    def example_loss(self, theta, i):
        n = self.data.shape[0]
        return jnp.where(i == 0, n * theta[0], -theta[0])

    @property
    def box(self):
        return (-1.0, 1.0)

    @property
    def minimizer(self):
        return -jnp.ones((1,), jnp.result_type(float))


class _LayeredProblem(FiniteSumProblem):
    """A finite sum whose θ flattens a few arrays (weights and biases of a network).

    The gradient is taken with respect to the unflattened arrays and concatenated
    once: differentiating through ``θ[a:b]`` slices instead makes XLA pad every
    partial gradient to the full length of θ and add the pads up, which made the
    innovation of the regression network 1.4× dearer (measured on CPU).
    """

    def shapes(self) -> tuple[tuple[int, ...], ...]:
        raise NotImplementedError

    def parts_loss(self, parts, example):
        raise NotImplementedError

    def unflatten(self, theta):
        out, k = [], 0
        for shape in self.shapes():
            size = math.prod(shape)
            out.append(theta[k : k + size].reshape(shape))
            k += size
        return tuple(out)

    def example_loss(self, theta, example):
        return self.parts_loss(self.unflatten(theta), example)

    def innovation(self, theta, idx):
        batch = jax.tree_util.tree_map(lambda a: a[idx], self.data)

        def loss(parts):
            return jnp.mean(jax.vmap(self.parts_loss, (None, 0))(parts, batch))

        grads = jax.grad(loss)(self.unflatten(theta))
        return jnp.concatenate([g.reshape(-1) for g in grads])


class Regression(_LayeredProblem):
    """Overparametrised ERM (Dereich, Jentzen & Kassing 2025, §2): N points with
    distinct inputs, targets from a teacher network of the same architecture
    (so zero training loss is attainable), a student with dim > N parameters.
    ℓ_i(θ) = ½ (net_θ(x_i) − y_i)²."""

    input_dim: int = eqx.field(static=True, default=1)
    width: int = eqx.field(static=True, default=8)
    init: Any = None
    # The teacher embedded in the student's layout (extra hidden units switched
    # off): a point of zero training loss, i.e. on the set of global minima.
    teacher: Any = None

    def shapes(self):
        return ((self.width, self.input_dim), (self.width,), (self.width,), ())

    @staticmethod
    def _net(parts, x):
        w1, b1, w2, b2 = parts
        return jnp.tanh(w1 @ x + b1) @ w2 + b2

    def predict(self, theta, x):
        """The network's output net_θ(x) for one input ``x`` of shape (input_dim,)."""
        return self._net(self.unflatten(theta), x)

    def parts_loss(self, parts, example):
        x, y = example
        return 0.5 * (self._net(parts, x) - y) ** 2

    def default_theta0(self):
        return self.init


class LinearRegression(FiniteSumProblem):
    """ℓ_i(θ) = ½ (a_i·θ − y_i)², y = Aθ* + σ ξ. With σ = 0 every ℓ_i is minimised at
    θ* (interpolation, D0 = 0); with σ > 0 and N > dim it is not (D0 > 0)."""

    theta_star: Any = None

    def example_loss(self, theta, example):
        a, y = example
        return 0.5 * (a @ theta - y) ** 2

    @property
    def minimizer(self):
        return None


class Digits(_LayeredProblem):
    """Softmax classification of scikit-learn's 8×8 digits (1797 images shipped with
    the package, no download) by a one-hidden-layer tanh network, 64 → width → 10.
    ℓ_i(θ) = cross-entropy of example i; θ flattens (W1, b1, W2, b2)."""

    width: int = eqx.field(static=True, default=16)
    init: Any = None

    def shapes(self):
        w = self.width
        return ((w, 64), (w,), (10, w), (10,))

    def parts_loss(self, parts, example):
        w1, b1, w2, b2 = parts
        x, y = example
        logits = w2 @ jnp.tanh(w1 @ x + b1) + b2
        return jax.nn.logsumexp(logits) - logits[y]

    def default_theta0(self):
        return self.init


def digits_dim(width: int) -> int:
    """Parameter count of the :class:`Digits` network."""
    return 64 * width + width + 10 * width + 10


def _make_digits(cfg: dict, dtype) -> Digits:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - scikit-learn is a dev dependency
        raise ValueError(
            'problem.kind = "digits": needs scikit-learn (pip install scikit-learn)'
        ) from e
    x, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(int(cfg.get("data_seed", 0)))
    n_points = int(cfg.get("n_points") or len(y))
    idx = np.sort(rng.permutation(len(y))[: min(n_points, len(y))])
    x, y = x[idx] / 16.0, y[idx]
    w = int(cfg.get("width") or 16)
    init = np.concatenate(
        [
            rng.normal(size=64 * w) / np.sqrt(64),
            np.zeros(w),
            rng.normal(size=10 * w) / np.sqrt(w),
            np.zeros(10),
        ]
    )
    return Digits(
        data=(jnp.asarray(x, dtype), jnp.asarray(y, jnp.int32)),
        dim=digits_dim(w),
        width=w,
        init=jnp.asarray(init, dtype),
    )


def _param_count(input_dim: int, width: int) -> int:
    return width * input_dim + 2 * width + 1


def make_problem(cfg: dict, dtype) -> Problem:
    """Build a built-in problem from a validated ``[problem]`` table."""
    kind = cfg["kind"]
    if kind == "quadratic":
        d = int(cfg.get("dim", 1))
        h = cfg.get("curvature", 1.0)
        h = np.broadcast_to(np.asarray(h, dtype=np.float64), (d,))
        return Quadratic(
            curvature=jnp.asarray(h, dtype),
            noise_scale=jnp.asarray(cfg.get("noise_scale", 1.0), dtype),
            noise=cfg.get("noise", "gaussian"),
            dim=d,
        )
    if kind == "zhang":
        n = int(cfg.get("n", 10))
        a = cfg.get("a", 1.0 / (n - 1) ** 2)
        return Zhang(data=jnp.arange(n), dim=1, a=jnp.asarray(a, dtype))
    if kind == "reddi":
        n = int(cfg.get("n", 3))
        return Reddi(data=jnp.arange(n), dim=1)
    if kind == "regression":
        n_points = int(cfg.get("n_points", 16))
        p = int(cfg.get("input_dim", 1))
        width = int(cfg.get("width", 32))
        teacher_width = int(cfg.get("teacher_width", 4))
        rng = np.random.default_rng(int(cfg.get("data_seed", 0)))
        x = rng.normal(size=(n_points, p))
        teacher = rng.normal(size=_param_count(p, teacher_width))
        teacher[: teacher_width * p] /= np.sqrt(p)
        tw = teacher_width
        w1 = teacher[: tw * p].reshape(tw, p)
        b1 = teacher[tw * p : tw * p + tw]
        w2 = teacher[tw * p + tw : tw * p + 2 * tw] / np.sqrt(tw)
        b2 = teacher[tw * p + 2 * tw]
        y = np.tanh(x @ w1.T + b1) @ w2 + b2
        # Student initialisation (LeCun-normal), deterministic in data_seed.
        init = np.concatenate(
            [
                rng.normal(size=width * p) / np.sqrt(p),
                np.zeros(width),
                rng.normal(size=width) / np.sqrt(width),
                np.zeros(1),
            ]
        )
        if teacher_width > width:
            raise ValueError(
                f"problem.teacher_width = {teacher_width}: must be ≤ problem.width = {width} "
                "(the student must be able to fit the teacher)"
            )
        emb = np.zeros(_param_count(p, width))
        emb[: tw * p] = w1.reshape(-1)
        emb[width * p : width * p + tw] = b1
        emb[width * p + width : width * p + width + tw] = w2
        emb[width * p + 2 * width] = b2
        return Regression(
            data=(jnp.asarray(x, dtype), jnp.asarray(y, dtype)),
            dim=_param_count(p, width),
            input_dim=p,
            width=width,
            init=jnp.asarray(init, dtype),
            teacher=jnp.asarray(emb, dtype),
        )
    if kind == "linear_regression":
        n_points = int(cfg.get("n_points", 32))
        d = int(cfg.get("dim", 8))
        sigma = float(cfg.get("label_noise", 0.0))
        rng = np.random.default_rng(int(cfg.get("data_seed", 0)))
        a = rng.normal(size=(n_points, d))
        ts = rng.normal(size=d)
        y = a @ ts + sigma * rng.normal(size=n_points)
        return LinearRegression(
            data=(jnp.asarray(a, dtype), jnp.asarray(y, dtype)),
            dim=d,
            theta_star=jnp.asarray(ts, dtype),
        )
    if kind == "digits":
        return _make_digits(cfg, dtype)
    raise ValueError(f"problem.kind: unknown problem {kind!r}")


PROBLEMS = ("quadratic", "zhang", "reddi", "regression", "linear_regression", "digits")
