"""Problem classes: the innovation G(θ, X), its sampler and the objective L.

Two families (Dereich, Jentzen & Kassing 2025, §1 setting):

* stream problems — a fresh i.i.d. sample X_n every step (the paper's general
  setting; G need not be a gradient). Only the ``iid`` scheme applies.
  :class:`StreamProblem` takes the user's ``G(θ, x)`` and sampler.
* finite sums — L = (1/N) Σ_i ℓ_i, X_n a mini-batch of indices drawn by a
  sampling scheme (``iid``, ``reshuffle``, ``cyclic``); G is the mini-batch mean
  gradient. :class:`AbstractFiniteSumProblem` is the base of the built-ins;
  :class:`FiniteSumProblem` takes the user's per-example loss and data.

Every problem is an ``equinox.Module``: array fields (data, curvatures, …) are
traced, never baked into the compiled program. Abstract classes end in their
``abc.abstractmethod``s; the concrete classes are final (subclass the abstract
ones instead).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

from ..sampling import block_key, finite_sum_indices


class Problem(eqx.Module):
    """Abstract problem: a sampler of X, the innovation G(θ, x) and the objective L.

    Subclasses define ``dim`` (the dimension of θ) and the three abstract methods;
    the rest has defaults.
    """

    dim: eqx.AbstractVar[int]

    @abc.abstractmethod
    def sample(self, key, shape: tuple[int, ...]):
        """``shape`` i.i.d. samples of X (a PyTree with leading axes ``shape``)."""

    @abc.abstractmethod
    def innovation(self, theta: Float[Array, " dim"], x) -> Float[Array, " dim"]:
        """G(θ, x) averaged over a mini-batch ``x`` (leading axis = batch)."""

    @abc.abstractmethod
    def loss(self, theta: Float[Array, " dim"]) -> Float[Array, ""]:
        """The objective L(θ) = E[ℓ(θ, X)]."""

    def grad(self, theta: Float[Array, " dim"]) -> Float[Array, " dim"]:
        """∇L(θ) (by autodiff of ``loss`` unless overridden)."""
        return jax.grad(self.loss)(theta)

    def draw(self, run_key, block_index, start, block: int, batch_size: int, scheme: str):
        """Samples for steps ``start+1 … start+block`` of one run: leading axes (block, batch)."""
        return self.sample(block_key(run_key, block_index), (block, batch_size))

    def second_moment(self, theta: Float[Array, " dim"], batch_size: int, replace: bool = True):
        """E[G(θ, X)²] (coordinate-wise) for a mini-batch of ``batch_size`` samples (drawn
        with replacement, or without: a reshuffled or cyclic stream) when known in
        closed form, else None (a control variate of the vector field)."""
        return None

    def cross_moment(self, theta: Float[Array, " dim"], batch_size: int):
        """Cov(G, G²) = E[G³] − E[G]·E[G²] (coordinate-wise) for a mini-batch of
        ``batch_size`` samples drawn i.i.d. (with replacement) when known in closed form,
        else None (with :meth:`second_moment`, the vector field's Taylor control)."""
        return None

    @property
    def separable(self) -> bool:
        """Whether f_i(θ) depends on θ_i only (then the vector field can be tabulated
        per coordinate): always in one dimension."""
        return self.dim == 1

    @property
    def noiseless(self) -> bool:
        """Whether G(θ, x) = ∇L(θ) for every x (then the vector field is exact)."""
        return False

    @property
    def innovation_is_gradient(self) -> bool:
        """Whether E[G(θ, X)] = ∇L(θ) (the control variate of the vector field needs
        it). A subclass whose G is biased (a clipped or perturbed gradient) must say
        False, else the vector field is biased."""
        return True

    @property
    def box(self) -> tuple[float, float] | None:
        """Closed box the iterates are projected onto after every step, or None."""
        return None

    @property
    def minimizer(self):
        """A known minimiser θ* of L (for the optimality gap), or None."""
        return None

    @property
    def sample_numel(self) -> int:
        """Numbers drawn per sample (to size the noise blocks)."""
        return 1

    @property
    def has_loss(self) -> bool:
        """Whether L is known (a stream problem may give only its innovation G)."""
        return True

    @property
    def seeded_init(self) -> bool:
        """Whether :meth:`default_theta0` draws the start from a key (one per run)."""
        return False

    def default_theta0(self, key=None):
        """Problem-specific default start (flat, (dim,)), e.g. a network initialisation, or
        None; ``key`` is the run's own key where :attr:`seeded_init`."""
        return None

    def unflatten(self, theta):
        """θ in the problem's own structure (a PyTree of arrays); the flat vector itself
        unless the problem has structure."""
        return theta

    def param_names(self) -> tuple[str, ...]:
        """A name for every entry of the flat θ (the results' ``param`` coordinate)."""
        return tuple(f"theta[{i}]" for i in range(self.dim))


class StreamProblem(Problem):
    """A user-defined stream problem: i.i.d. X_n ~ ``sampler``, innovation ``G(θ, x)``.

    Args:
        innovation_fn: ``G(theta, x) -> (dim,)`` for ONE sample x.
        sampler: ``sampler(key, shape) -> x`` with leading axes ``shape``.
        dim: dimension of θ.
        loss_fn: optional ``L(theta)``. Without it the loss variables of the results
            are NaN, ∇L is NaN, divergence is judged on θ alone and ``outcome`` needs
            a known minimiser (else it is undecided).
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
        if self.loss_fn is None:  # documented: the loss variables are NaN
            return jnp.asarray(jnp.nan, theta.dtype)
        return self.loss_fn(theta)

    def grad(self, theta):
        if self.loss_fn is None:
            return jnp.full_like(theta, jnp.nan)
        return jax.grad(self.loss_fn)(theta)

    @property
    def has_loss(self) -> bool:
        return self.loss_fn is not None

    @property
    def innovation_is_gradient(self) -> bool:
        # G need not be a gradient in the paper's general setting.
        return False


class AbstractFiniteSumProblem(Problem):
    """L(θ) = (1/N) Σ_i ℓ(θ, data_i); X_n a mini-batch of indices.

    Subclasses define ``data`` (a PyTree whose leaves share a leading axis N) and
    :meth:`example_loss` ℓ(θ, example).
    """

    data: eqx.AbstractVar[Any]

    @abc.abstractmethod
    def example_loss(self, theta, example):
        """ℓ(θ, x_i) for one example (a slice of ``data``, or an index for index data)."""

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

    @property
    def minibatch_gradient(self) -> bool:
        """Whether G is this class's: the mean of ∇ℓ_i (``example_grads``) over the drawn
        indices, whatever draws them. The vector field's fast path (per-example
        gradients weighted by the drawn indices) relies on it; False where a subclass
        redefines ``innovation``, ``_batch_loss`` or ``example_grads`` (a clipped or
        perturbed gradient), or, on a layered problem, ``example_loss`` apart from
        ``parts_loss``: the field then takes the generic chain, which holds for any G."""
        cls = type(self)
        if cls.innovation is AbstractLayeredProblem.innovation:
            # Its G differentiates parts_loss; example_grads differentiate example_loss.
            return (
                cls.example_loss is AbstractLayeredProblem.example_loss
                and cls.example_grads is AbstractFiniteSumProblem.example_grads
            )
        return (
            cls.innovation is AbstractFiniteSumProblem.innovation
            and cls._batch_loss is AbstractFiniteSumProblem._batch_loss
            and cls.example_grads is AbstractFiniteSumProblem.example_grads
        )

    @property
    def innovation_is_gradient(self) -> bool:
        """Whether E[G] = ∇L with the closed-form moments below: G is the mini-batch
        gradient (:attr:`minibatch_gradient`) of indices drawn uniformly, and L the mean
        of ℓ. False where a subclass also redefines ``n_data``, ``sample``, ``draw``,
        ``loss`` or ``grad`` (weighted sampling, a regulariser in L only): the field then
        drops its control variates. A subclass whose redefinitions are equivalent may
        override this (and :attr:`minibatch_gradient`) to True."""
        cls = type(self)
        return (
            self.minibatch_gradient
            and cls.n_data is AbstractFiniteSumProblem.n_data
            and cls.sample is AbstractFiniteSumProblem.sample
            and cls.draw is AbstractFiniteSumProblem.draw
            and cls.loss is AbstractFiniteSumProblem.loss
            and cls.grad is Problem.grad
        )

    def second_moment(self, theta, batch_size, replace=True):
        if not self.innovation_is_gradient:
            return None
        # The variance of a mini-batch mean is Var(∇ℓ_I)/b with replacement, times the
        # finite-population factor (N − b)/(N − 1) without (reshuffle, cyclic).
        eg = self.example_grads(theta)
        g = jnp.mean(eg, 0)
        var = (jnp.mean(eg * eg, 0) - g * g) / batch_size
        if not replace:
            n = self.n_data
            var = var * (n - batch_size) / max(n - 1, 1)
        return g * g + var

    def cross_moment(self, theta, batch_size):
        if not self.innovation_is_gradient:
            return None
        # The mean Ḡ of b i.i.d. draws of X = ∇ℓ_I (mean μ, variance σ², third central
        # moment κ₃) has variance σ²/b and third central moment κ₃/b², so
        # Cov(Ḡ, Ḡ²) = E[Ḡ³] − μ E[Ḡ²] = 2μσ²/b + κ₃/b².
        eg = self.example_grads(theta)
        mu = jnp.mean(eg, 0)
        c = eg - mu
        var, k3 = jnp.mean(c * c, 0), jnp.mean(c * c * c, 0)
        return 2 * mu * var / batch_size + k3 / batch_size**2


class FiniteSumProblem(AbstractFiniteSumProblem):
    """A user-defined finite sum: ``loss_fn(theta, example)`` over ``data``.

    Args:
        data: a PyTree whose leaves share a leading axis N (the examples).
        dim: dimension of θ.
        loss_fn: the per-example loss ℓ(θ, example).
    """

    data: Any
    dim: int = eqx.field(static=True)
    loss_fn: Callable = eqx.field(static=True)

    def example_loss(self, theta, example):
        return self.loss_fn(theta, example)


class AbstractLayeredProblem(AbstractFiniteSumProblem):
    """A finite sum whose flat θ holds several arrays (a network's weights, a PyTree).

    Subclasses define :meth:`unflatten` (flat θ → the arrays) and :meth:`parts_loss`
    (ℓ of one example from the arrays). The gradient is taken with respect to the
    unflattened arrays and flattened once: differentiating through ``θ[a:b]`` slices
    instead makes XLA pad every partial gradient to the full length of θ and add the
    pads up, which made the innovation of the regression network 1.4× dearer
    (measured on CPU).
    """

    @abc.abstractmethod
    def unflatten(self, theta):
        """The arrays (a PyTree) that the flat θ holds."""

    @abc.abstractmethod
    def parts_loss(self, parts, example):
        """ℓ of one example from the unflattened arrays ``parts``."""

    def example_loss(self, theta, example):
        return self.parts_loss(self.unflatten(theta), example)

    def innovation(self, theta, idx):
        batch = jax.tree_util.tree_map(lambda a: a[idx], self.data)

        def loss(parts):
            return jnp.mean(jax.vmap(self.parts_loss, (None, 0))(parts, batch))

        grads = jax.grad(loss)(self.unflatten(theta))
        return jnp.concatenate([g.reshape(-1) for g in jax.tree_util.tree_leaves(grads)])


def cast_problem(problem: Problem, dtype) -> Problem:
    """``problem`` with its floating-point arrays in ``dtype`` (integer data unchanged)."""

    def cast(a):
        if eqx.is_array(a) and jnp.issubdtype(a.dtype, jnp.floating):
            return a.astype(dtype)
        return a

    return jax.tree_util.tree_map(cast, problem)
