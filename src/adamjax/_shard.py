"""Multi-device runner: one chunk of runs split over the local devices with ``jax.shard_map``.

Every device runs its own ``vmap``-ed simulation loop on its slice of the run
axis (a 1-D mesh named ``runs``); no collective is involved, so devices never
wait for each other inside the step loop (plain sharded ``jit`` would turn the
per-run while-loops into one synchronised loop). A run's result does not
depend on which device computed it or how many runs share the device, so the
results are bit-identical to a single-device run.

Under ``jax.distributed`` each process builds its mesh from its *local*
devices only: processes split the work by chunks (see ``_store``), not inside
a chunk.
"""

from __future__ import annotations

from collections.abc import Callable

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from ._simulate import RunParams, RunResult, SimConfig, _pad_to, simulate_batch, simulate_one

AXIS = "runs"

_CACHE: dict = {}


def local_mesh(devices=None) -> Mesh:
    """A 1-D mesh (axis ``runs``) over ``devices`` (default: this process's local devices)."""
    devices = jax.local_devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS,))


def _sharded_fn(mesh: Mesh):
    if mesh in _CACHE:
        return _CACHE[mesh]

    def fn(cfg: SimConfig, params: RunParams) -> RunResult:
        dyn, static = eqx.partition(cfg, eqx.is_array)

        def body(dyn, params):
            # The engine's own (unjitted) batch function, so that every device runs
            # exactly the program a single device would run on its slice.
            c = eqx.combine(dyn, static)
            return _batch_fn()(c, params)

        in_specs = (
            jax.tree_util.tree_map(lambda _: PartitionSpec(), dyn),
            jax.tree_util.tree_map(lambda _: PartitionSpec(AXIS), params),
        )
        return jax.shard_map(
            body, mesh=mesh, in_specs=in_specs, out_specs=PartitionSpec(AXIS), check_vma=False
        )(dyn, params)

    jitted = eqx.filter_jit(fn)
    _CACHE[mesh] = jitted
    return jitted


def _batch_fn():
    from . import _simulate

    fn = getattr(_simulate, "_simulate_batch", None)
    if fn is None:  # pragma: no cover - engine internals changed
        _simulate.TRACE_COUNT += 1
        return jax.vmap(simulate_one, in_axes=(None, 0))
    return fn


def make_runner(devices=None) -> Callable[[SimConfig, RunParams], RunResult]:
    """The per-chunk function for :func:`adamjax.simulate` over ``devices`` (default: local).

    With one device this is the plain jitted :func:`simulate_batch`. With more,
    a chunk whose size is not a multiple of the device count is padded (by
    repeating its first run) and the padding is dropped from the results.
    """
    devices = jax.local_devices() if devices is None else list(devices)
    if len(devices) <= 1:
        return simulate_batch
    mesh = local_mesh(devices)
    ndev = len(devices)
    fn = _sharded_fn(mesh)

    def runner(cfg: SimConfig, params: RunParams) -> RunResult:
        n = int(jax.tree_util.tree_leaves(params)[0].shape[0])
        m = -(-n // ndev) * ndev
        res = fn(cfg, _pad_to(params, m) if m != n else params)
        if m != n:
            res = jax.tree_util.tree_map(lambda a: np.asarray(a)[:n], res)
        return res

    runner.device_count = ndev  # type: ignore[attr-defined]
    return runner


def round_up(n: int, k: int) -> int:
    """``n`` rounded up to a multiple of ``k``."""
    return -(-int(n) // int(k)) * int(k)
