"""Whether a function sums (or otherwise reduces) over more than one element.

XLA:CPU vectorises a reduction differently at different batch widths, so a reduction
computed under a ``vmap`` over 128 runs and over 256 runs may round differently in the
last place. The engine therefore evaluates the losses that reduce in fixed blocks of
runs (``simulate._finish_batch``) — a loop that costs ~0.25 s of XLA compilation on the
1-D quadratic, where nothing reduces and one ``vmap`` gives the same bits at every
width that is a multiple of ``LANES`` (tests/launch/test_sweep.py; an observation
about XLA:CPU's code for the built-in problems, not a promise for every elementwise
function). :func:`reduces` tells the two apart from the function's jaxpr for one run.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
from jax.core import ShapedArray
from jax.extend.core import Jaxpr, jaxprs_in_params

# Primitives that compute every result element from single elements of their operands
# (elementwise arithmetic, comparisons, data movement, random bits), or that combine
# several elements exactly in any order (max, min, the logical reductions, sorting).
# Everything else counts as reducing — an unknown primitive, a linear-algebra or FFT
# routine, a callback — so that a primitive missing here costs compile time, not bits.
_EXACT = frozenset(
    """
    abs acos acosh add add_any and asin asinh atan atan2 atanh bessel_i0e bessel_i1e
    bitcast_convert_type cbrt ceil clamp clz complex conj convert_element_type copy cos
    cosh digamma div eq eq_to erf erf_inv erfc exp exp2 expm1 floor ge gt igamma
    igamma_grad_a igammac imag integer_pow is_finite le le_to lgamma log log1p logistic
    lt lt_to max min mul ne neg nextafter not or polygamma population_count pow real
    reduce_precision regularized_incomplete_beta rem round rsqrt select_n shift_left
    shift_right_arithmetic shift_right_logical sign sin sinh sqrt square sub tan tanh
    xor zeta
    broadcast_in_dim concatenate dynamic_slice dynamic_update_slice gather iota pad
    reshape rev scatter scatter-max scatter-min slice split squeeze tile transpose
    argmax argmin cummax cummin reduce_and reduce_max reduce_min reduce_or reduce_xor
    reduce_window_max reduce_window_min sort top_k
    device_put optimization_barrier reshard sharding_constraint pvary stop_gradient
    random_bits random_fold_in random_gamma random_seed random_split random_unwrap
    random_wrap rng_bit_generator threefry2x32
    """.split()  # noqa: SIM905 (a table of names reads better than a list)
)
# Calls, conditionals and loops (the names of jax ≥ 0.10): judged by their bodies. Any
# other primitive that holds a jaxpr counts as reducing unless listed above.
_CONTAINERS = frozenset(
    {"jit", "closed_call", "cond", "while", "scan", "custom_jvp_call", "custom_vjp_call", "remat2"}
)
# Sums and products: they reduce only where an operand has more elements than the
# result (a sum over a length-1 axis is a copy).
_SUMS = frozenset({"reduce_sum", "reduce_prod"})


def _size(var) -> int:
    aval = var.aval
    return math.prod(aval.shape) if isinstance(aval, ShapedArray) else 1


def _contracts(eqn) -> bool:
    """Whether one equation (not a container of sub-jaxprs) may combine more than one
    element into one with rounding."""
    name = eqn.primitive.name
    if name in _EXACT:
        return False
    if name == "dot_general":  # (…, k) · (k, …): a sum of k products
        (lhs_contracting, _), _ = eqn.params["dimension_numbers"]
        shape = eqn.invars[0].aval.shape
        return math.prod(shape[a] for a in lhs_contracting) > 1
    if name in _SUMS:
        return max(map(_size, eqn.invars)) > max(map(_size, eqn.outvars))
    return True


def _jaxpr_reduces(jaxpr: Jaxpr) -> bool:
    for eqn in jaxpr.eqns:
        # A container (jit, cond, while, scan, custom_jvp, remat, …) is judged by its
        # body alone: a loop accumulates in a fixed order. Other primitives with a
        # jaxpr (scatter-add's update, a generic reduce) combine elements themselves.
        if eqn.primitive.name not in _CONTAINERS and _contracts(eqn):
            return True
        if any(_jaxpr_reduces(sub) for sub in jaxprs_in_params(eqn.params)):
            return True
    return False


def reduces(fn: Callable, *args) -> bool:
    """Whether ``fn(*args)`` sums or multiplies over more than one element anywhere
    (sums, norms, products of matrices, cumulative sums), by tracing it once (arrays
    in ``args`` may be tracers or ``jax.ShapeDtypeStruct``s; the rest is static).

    Args:
        fn: the function for ONE run.
        *args: its arguments.

    Returns:
        True if a primitive that may add or multiply several elements into one
        (``reduce_sum`` over more than one element, ``dot_general`` with a contraction
        longer than 1, ``cumsum``, linear algebra, FFT, a callback, any primitive not
        known to be exact) occurs anywhere, also inside loops, conditionals and nested
        calls; False where every result element is computed from single elements or
        by exact operations (elementwise arithmetic, data movement, max, min, sort).
    """
    return _jaxpr_reduces(eqx.filter_make_jaxpr(fn)(*args)[0].jaxpr)
