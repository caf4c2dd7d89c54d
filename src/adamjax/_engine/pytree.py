"""PyTree parameters: the engine works on one flat vector θ per run; users give PyTrees.

:func:`flatten` turns a PyTree of arrays with leading batch axes into (…, dim) and
returns the inverse; :func:`leaf_names` names every entry of the flat vector by its
leaf path and index (``w1[2,0]``), the ``param`` coordinate of the results.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np


def is_flat(x) -> bool:
    """Whether ``x`` is a single array or nested lists of numbers (not a PyTree)."""
    if isinstance(x, list | tuple):  # numbers, or nested lists of numbers, only
        return all(isinstance(v, int | float) or (isinstance(v, list | tuple) and is_flat(v))
                   for v in x)  # fmt: skip
    return isinstance(x, jax.Array | np.ndarray | np.generic | float | int)


def flatten(tree, lead: int = 0):
    """``(flat, unflatten)``: ``flat`` has the ``lead`` batch axes of every leaf followed by
    the concatenated entries, (…, dim); ``unflatten(y)`` maps an array (…', dim) back to
    the PyTree with leading axes …'. A plain array is returned as it is."""
    if is_flat(tree) and np.ndim(tree) == lead + 1:
        return jnp.asarray(tree), identity
    leaves, treedef = jax.tree_util.tree_flatten(jnp.asarray(tree) if is_flat(tree) else tree)
    leaves = [jnp.asarray(x) for x in leaves]
    batch = leaves[0].shape[:lead]
    shapes = [x.shape[lead:] for x in leaves]
    flat = jnp.concatenate([x.reshape(*batch, -1) for x in leaves], axis=-1)

    def unflatten(y):
        return jax.tree_util.tree_unflatten(treedef, split_flat(jnp.asarray(y), shapes))

    return flat, unflatten


def identity(y):
    """The ``restore`` of a θ that was flat already."""
    return y


def split_flat(theta, shapes) -> tuple:
    """The arrays of the given ``shapes`` that the last axis of ``theta`` holds, in order
    (leading axes of ``theta`` are kept)."""
    out, k = [], 0
    for shape in shapes:
        size = math.prod(shape)
        out.append(theta[..., k : k + size].reshape(*theta.shape[:-1], *shape))
        k += size
    return tuple(out)


def as_flat(problem, theta):
    """``(flat, restore)`` for θ given flat (…, dim) or in ``problem``'s structure (a
    PyTree whose leaves have the same leading axes …); ``restore`` maps an array
    (…', dim) back to the structure the caller used."""
    if is_flat(theta):
        flat = jnp.asarray(theta)
        if flat.ndim == 0 or flat.shape[-1] != problem.dim:
            raise ValueError(
                f"θ of shape {tuple(flat.shape)}: the problem has dim {problem.dim}, "
                f"so θ must have shape (…, {problem.dim})"
            )
        return flat, identity
    template = jax.eval_shape(problem.unflatten, jax.ShapeDtypeStruct((problem.dim,), float))
    t_leaves = jax.tree_util.tree_leaves(template)
    leaves = jax.tree_util.tree_leaves(theta)
    lead = np.ndim(leaves[0]) - len(t_leaves[0].shape)
    return flatten(theta, lead=lead)


def leaf_names(tree) -> tuple[str, ...]:
    """A name for every entry of ``ravel_pytree(tree)``: the leaf path and the index."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = ".".join(_key(k) for k in path) or "theta"
        shape = np.shape(leaf)
        if not shape:
            out.append(name)
            continue
        for idx in itertools.product(*(range(n) for n in shape)):
            out.append(f"{name}[{','.join(map(str, idx))}]")
    return tuple(out)


def _key(k) -> str:
    tu = jax.tree_util
    if isinstance(k, tu.DictKey | tu.FlattenedIndexKey):
        return str(k.key)
    if isinstance(k, tu.GetAttrKey):
        return k.name
    if isinstance(k, tu.SequenceKey):
        return str(k.idx)
    return str(k)
