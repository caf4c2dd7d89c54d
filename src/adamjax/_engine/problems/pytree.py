"""A finite sum over a PyTree of parameters, from a per-example loss: the user's model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..errors import raised
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
            returns them, so that every run (seed) starts from its own draw (a spec's
            ``run.theta0``, where given, replaces it: every seed then starts there).

    Returns:
        A problem for :func:`adamjax.run` (``problem=``), :func:`adamjax.simulate` and the
        theory layer; θ is the flat vector of ``params`` (leaves in ``tree_flatten`` order)
        and the results name every entry by its leaf path and index (``w1[2,0]``).
    """
    data = jax.tree_util.tree_map(jnp.asarray, data)
    lengths = {int(np.shape(a)[0]) if np.ndim(a) else 0 for a in jax.tree_util.tree_leaves(data)}
    if len(lengths) != 1 or 0 in lengths:
        got = sorted(lengths)
        raise ValueError(f"finite_sum_problem: data's leaves must share a leading axis N ({got})")
    try:
        template = init(jax.random.PRNGKey(0)) if callable(init) else init
    except Exception as e:  # noqa: BLE001 - the user's code
        raise ValueError(f"finite_sum_problem: init(key) raised {raised(e)}") from None
    # The engine's own unflatten keeps θ's dtype (ravel_pytree's would cast back to
    # the template's, e.g. float32 inside a float64 run).
    flat, unravel = flatten(template)
    example = jax.tree_util.tree_map(lambda a: a[0], data)
    try:
        out = jax.eval_shape(loss, template, example)
    except Exception as e:  # noqa: BLE001 - the user's code
        raise ValueError(f"finite_sum_problem: loss(params, example) raised {raised(e)}") from None
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        raise ValueError(f"finite_sum_problem: loss(params, example) must be a scalar, not {out}")
    return PyTreeFiniteSumProblem(
        data=jax.tree_util.tree_map(jnp.asarray, data),
        dim=int(flat.shape[0]),
        loss_fn=loss,
        unravel=unravel,
        names=leaf_names(template),
        init_flat=None if callable(init) else flat,
        init_fn=init if callable(init) else None,
    )
