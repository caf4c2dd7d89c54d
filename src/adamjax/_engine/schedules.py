"""Step-size schedules γ_n with per-run (array) constants.

``power``:    γ_n = c · (n + n0)^(−r), 0 < r ≤ 1 — the paper's example
              (Dereich, Jentzen & Kassing 2025, Remark 1.6) and, with r = 1/2,
              Zhang 2023's η_k = η0/√k.
``constant``: γ_n = c.

``n`` counts Adam steps from 1. Training time is t_n = γ_1 + … + γ_n.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

SCHEDULES = ("power", "constant")


class SchedHParams(NamedTuple):
    """Per-run schedule constants (scalars, or arrays with a leading run axis).

    The defaults here are the defaults of the spec's ``[schedule]`` table:
    γ_n = 0.05·n^(−1/2), Zhang 2023's η_k = η0/√k.
    """

    c: Any = 0.05
    r: Any = 0.5
    n0: Any = 0.0


def step_size(kind: str, h: SchedHParams, n, fast_pow: bool = False):
    """γ_n for step ``n`` (≥ 1); ``n`` may be a traced scalar, the constants per-run arrays.

    ``fast_pow`` evaluates (n + n0)^(−r) as exp(−r·log(n + n0)) (cheaper than XLA's
    correctly rounded pow; a few ulp different).
    """
    if kind == "power":
        if fast_pow:
            return h.c * jnp.exp(-h.r * jnp.log(n + h.n0))
        return h.c * (n + h.n0) ** (-h.r)
    if kind == "constant":
        return h.c * jnp.ones_like(n)
    raise ValueError(f"schedule.kind: unknown schedule {kind!r} (known: {', '.join(SCHEDULES)})")


def training_times(kind: str, h: SchedHParams, steps: int, dtype=jnp.float64):
    """t_1, …, t_steps for one run (cumulative sum of γ_n), as an array of shape (steps,)."""
    n = jnp.arange(1, steps + 1, dtype=dtype)
    return jnp.cumsum(step_size(kind, h, n))
