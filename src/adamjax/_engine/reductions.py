"""Whether a function sums (or otherwise reduces) over more than one element.

XLA:CPU vectorises a reduction differently at different batch widths, so a reduction
computed under a ``vmap`` over 128 runs and over 256 runs may round differently in the
last place; elementwise operations give the same bits at every width that is a multiple
of ``LANES`` (tests/launch/test_sweep.py). The engine therefore evaluates what reduces
in fixed blocks of runs (``simulate._finish_batch``) — a loop that costs ~0.4 s of XLA
compilation on the 1-D quadratic, where nothing reduces. :func:`reduces` tells the two
apart from the function's jaxpr for one run.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
from jax.core import ShapedArray
from jax.extend.core import Jaxpr, jaxprs_in_params

# Primitives that add or multiply several elements into one result element (so their
# rounding depends on the order XLA picks). Max, min and the logical reductions are
# exact in any order and do not count. Those in _SHRINKING reduce when their input has
# more elements than their output (a sum over a length-1 axis is a copy); the others
# keep the size and count whenever they occur.
_SHRINKING = frozenset({"reduce_sum", "reduce_prod", "reduce"})
_ALWAYS = frozenset(
    {
        "cumsum",
        "cumprod",
        "cumlogsumexp",
        "conv_general_dilated",
        "reduce_window_sum",
        "reduce_window",
        "select_and_scatter_add",
        "scatter-add",
        "scatter-mul",
    }
)


def _size(var) -> int:
    aval = var.aval
    return math.prod(aval.shape) if isinstance(aval, ShapedArray) else 1


def _contracts(eqn) -> bool:
    """Whether one equation combines more than one element into one (see above)."""
    name = eqn.primitive.name
    if name in _ALWAYS:
        return True
    if name == "dot_general":  # (…, k) · (k, …): a sum of k products
        (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
        shape = eqn.invars[0].aval.shape
        return math.prod(shape[a] for a in lhs_contracting) > 1
    if name in _SHRINKING:
        return max(map(_size, eqn.invars)) > max(map(_size, eqn.outvars))
    return False


def _jaxpr_reduces(jaxpr: Jaxpr) -> bool:
    return any(
        _contracts(eqn) or any(_jaxpr_reduces(sub) for sub in jaxprs_in_params(eqn.params))
        for eqn in jaxpr.eqns
    )


def reduces(fn: Callable, *args) -> bool:
    """Whether ``fn(*args)`` sums or multiplies over more than one element anywhere
    (sums, norms, products of matrices, cumulative sums), by tracing it once (arrays in ``args`` may
    be tracers or ``jax.ShapeDtypeStruct``s; the rest is static).

    Args:
        fn: the function for ONE run.
        *args: its arguments.

    Returns:
        True if a primitive that adds or multiplies several elements into one
        (``reduce_sum`` over more than one element, ``dot_general`` with a contraction
        longer than 1, ``cumsum``, …) occurs anywhere, also inside loops, conditionals
        and nested calls; False where every result element is computed from single
        elements (elementwise and structural operations, max and min).
    """
    return _jaxpr_reduces(eqx.filter_make_jaxpr(fn)(*args)[0].jaxpr)
