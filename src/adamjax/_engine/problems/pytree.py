"""A finite sum over a PyTree of parameters, from a per-example loss: the user's model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp

from ..pytree import flatten, leaf_names
from .base import AbstractLayeredProblem


class PyTreeFiniteSumProblem(AbstractLayeredProblem):
    """L(θ) = (1/N) Σ_i ℓ(params, x_i) with ``params`` a PyTree; θ is its flat vector.

    Build it with :func:`finite_sum_problem`. The innovation is the mini-batch mean
    gradient with respect to the PyTree, flattened once (as fast as a flat problem).
    """

    data: Any
    dim: int = eqx.field(static=True)
    loss_fn: Callable = eqx.field(static=True)
    unravel: Callable = eqx.field(static=True)
    names: tuple[str, ...] = eqx.field(static=True)
    init_flat: Any = None  # (dim,) a fixed start
    init_fn: Callable | None = eqx.field(static=True, default=None)  # key ↦ PyTree

    def unflatten(self, theta):
        return self.unravel(theta)

    def parts_loss(self, parts, example):
        return self.loss_fn(parts, example)

    @property
    def seeded_init(self) -> bool:
        return self.init_fn is not None

    def default_theta0(self, key=None):
        if self.init_fn is not None:
            key = jax.random.PRNGKey(0) if key is None else key
            return flatten(self.init_fn(key))[0]
        return self.init_flat

    def param_names(self):
        return self.names


def finite_sum_problem(loss: Callable, data, init) -> PyTreeFiniteSumProblem:
    """The problem of minimising L(params) = (1/N) Σ_i ``loss(params, example_i)``.

    Args:
        loss: the per-example loss ℓ(params, example) of a PyTree ``params`` and one
            example (a slice of ``data``).
        data: a PyTree whose leaves share a leading axis N (the examples); mini-batches
            of it follow the spec's sampling scheme.
        init: the initial parameters (a PyTree of arrays), or a function of a key that
            returns them, so that every run (seed) starts from its own draw.

    Returns:
        A problem for :func:`adamjax.run` (``problem=``), :func:`adamjax.simulate` and the
        theory layer; θ is the flat vector of ``params`` (leaves in ``tree_flatten`` order)
        and the results name every entry by its leaf path and index (``w1[2,0]``).
    """
    template = init(jax.random.PRNGKey(0)) if callable(init) else init
    # The engine's own unflatten keeps θ's dtype (ravel_pytree's would cast back to
    # the template's, e.g. float32 inside a float64 run).
    flat, unravel = flatten(template)
    return PyTreeFiniteSumProblem(
        data=jax.tree_util.tree_map(jnp.asarray, data),
        dim=int(flat.shape[0]),
        loss_fn=loss,
        unravel=unravel,
        names=leaf_names(template),
        init_flat=None if callable(init) else flat,
        init_fn=init if callable(init) else None,
    )
