"""Simulating every run of a sweep: chunks of one padded shape, each on the device runner.

:func:`simulate` is the engine's entry point. It cuts the runs into chunks of one
shape (a multiple of ``LANES`` runs, so a run's bits do not depend on the chunk size),
runs each chunk on a :class:`~adamjax.Runner` (all local devices by default; each
device its own slice of the runs) and gives the results back as NumPy arrays, θ in
the structure of the caller's θ0 (flat or a PyTree).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import numpy as np

from .pytree import flatten, is_flat
from .ready import ready
from .shard import make_runner
from .simulate import LANES, RunParams, RunResult, SimConfig, pad_runs, shares_powers


def _take(tree, idx):
    return jax.tree_util.tree_map(lambda a: a[idx], tree)


def simulate(
    cfg: SimConfig,
    params: RunParams,
    *,
    chunk: int | None = None,
    runner: Callable[[SimConfig, RunParams], RunResult] | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Simulate every run in ``params``: Adam-family updates Θ_n = Π(Θ_{n−1} − γ_n u_n).

    The per-run update is the module docstring's; the runs are independent, vmapped
    and cut into chunks of one padded shape, so a sweep compiles once.

    Args:
        cfg: what shapes the compiled program (problem, optimiser kind, schedule kind,
            sampling, steps, recording, observer).
        params: per-run inputs, every leaf with a leading run axis (keys, θ0, β1, β2,
            ε, step-size constants, observer inputs). θ0 may be a PyTree of arrays
            (leading run axis on every leaf): the runs use its flat vector and ``theta``
            and ``snapshots`` come back in the same structure.
        chunk: runs per call (all at once if None).
        runner: the per-chunk function (default: :func:`~adamjax.make_runner` over this
            process's local devices — on a CPU one per core, see ``devices`` — which is
            :func:`simulate_batch` on one device). A run's numbers do not depend on it.
        progress: called with the number of runs finished after each chunk.

    Returns:
        A :class:`RunResult` of NumPy arrays with a leading run axis.

    Reference: Kingma & Ba (2015); Dereich, Jentzen & Kassing (2025), Def. 1.1.
    """
    runner = runner or make_runner()
    # PyTree θ0 (leading run axis on every leaf): run on the flat vector, give θ back
    # in the same structure.
    pytree = not is_flat(params.theta0)
    if pytree:
        theta0, unflatten = flatten(params.theta0, lead=1)
        params = params._replace(theta0=np.asarray(theta0))
    n = int(jax.tree_util.tree_leaves(params)[0].shape[0])
    chunk = n if chunk is None else max(1, min(int(chunk), n))
    if cfg.shared_powers is not False:
        # Decided once for all the runs of the call (or by the planner for a whole
        # group: never switched on here), so every chunk compiles alike; switched off
        # when the runs do not in fact share the powers.
        cfg = dataclasses.replace(cfg, shared_powers=shares_powers(params))
    # Compiled batches are a multiple of LANES runs (see LANES): a run's bits then do
    # not depend on the chunk size.
    width = -(-chunk // LANES) * LANES
    outs = []
    for lo in range(0, n, chunk):
        hi = min(lo + chunk, n)
        part = pad_runs(_take(params, slice(lo, hi)), width)
        res = ready(runner(cfg, part))  # interruptible while the chunk computes
        res = jax.tree_util.tree_map(lambda a, k=hi - lo: np.asarray(a)[:k], res)
        outs.append(res)
        if progress is not None:
            progress(hi - lo)
    res = (
        outs[0]
        if len(outs) == 1
        else jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=0), *outs)
    )
    if pytree:
        res = res._replace(
            theta=_numpy_tree(unflatten, res.theta),
            snapshots=_numpy_tree(unflatten, res.snapshots),
        )
    return res


def _numpy_tree(unflatten, y):
    return jax.tree_util.tree_map(np.asarray, unflatten(y))
