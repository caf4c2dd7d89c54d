"""The vector field over a grid of (β1, β2): one compilation, common random numbers.

Dereich, Jentzen & Kassing (2025), Def. 1.3: for fixed samples X_1 … X_M the chain
estimator f̂(θ; α, β) is a smooth function of (α, β) as well as of θ, so the field
of every grid point is evaluated on the SAME samples (common random numbers: the
boundary where f changes sign is smooth across the grid) by one program vmapped
over (α, β). Used by :func:`adamjax.phase_diagram`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._engine.problems.quadratic import Quadratic
from .vector_field import VectorField


@eqx.filter_jit
def _grid(vf: VectorField, b1, b2, points):
    # Of the fast paths only the quadratic's pays here: the finite-sum weights, rebuilt
    # for every (α, β), cost more than the chain they replace.
    quadratic = isinstance(vf.problem, Quadratic)

    def one(ab):
        a, b = ab
        v = eqx.tree_at(lambda t: (t.b1, t.b2), vf, (a, b))
        if quadratic:  # the quadratic's θ-free moments depend on (α, β)
            v = v.with_moments()
        return jax.vmap(v._one)(points)

    # lax.map in batches bounds the memory of the prefix-scan forms on accelerators.
    return jax.lax.map(one, (b1, b2), batch_size=min(256, b1.shape[0]))


def field_grid(vf: VectorField, b1, b2, points):
    """f̂ and its SE at ``points`` (P, dim) for every (b1[g], b2[g]), g < G.

    Args:
        vf: a :class:`VectorField` (its samples, ε, ε_root and problem are shared).
        b1, b2: (G,) the momentum parameters α, β of the grid points.
        points: (P, dim) where to evaluate.

    Returns:
        ``(f, se)``, each (G, P, dim).
    """
    dt = vf.dtype
    b1, b2 = jnp.asarray(b1, dt), jnp.asarray(b2, dt)
    return _grid(vf, b1, b2, jnp.asarray(points, dt))
