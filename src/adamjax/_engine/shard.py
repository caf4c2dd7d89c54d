"""Multi-device runner: one chunk of runs split over the local devices with ``jax.shard_map``.

Every device runs its own ``vmap``-ed simulation loop on its slice of the run
axis (a 1-D mesh named ``runs``); no collective is involved, so devices never
wait for each other inside the step loop (plain sharded ``jit`` would turn the
per-run while-loops into one synchronised loop). A run's result does not
depend on which device computed it or how many runs share the device, so the
results are bit-identical to a single-device run.

Under ``jax.distributed`` each process builds its mesh from its *local*
devices only: processes split the work by units (``_launch.sweep``), not inside
a chunk.
"""

from __future__ import annotations

import equinox as eqx
import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from .simulate import LANES, RunParams, RunResult, SimConfig, batch, pad_runs, simulate_batch

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
            return batch(eqx.combine(dyn, static), params)

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


class Runner(eqx.Module):
    """The per-chunk function for :func:`adamjax.simulate` over ``device_count`` local
    devices: ``runner(cfg, params) -> RunResult``. Build it with :func:`make_runner`.

    With one device this calls the plain jitted :func:`simulate_batch`. With more, a
    chunk is padded (by repeating its first run) so that every device gets a multiple
    of ``LANES`` runs, and the padding is dropped from the results; a chunk of fewer
    than devices × ``LANES`` runs uses only as many devices as it fills.
    """

    devices: tuple = eqx.field(static=True)

    @property
    def device_count(self) -> int:
        return len(self.devices)

    def __call__(self, cfg: SimConfig, params: RunParams) -> RunResult:
        n = int(jax.tree_util.tree_leaves(params)[0].shape[0])
        # No more devices than LANES-run slices: a small chunk is not padded to
        # devices × LANES runs (64 devices would otherwise run 8 192 runs for 100).
        ndev = max(1, min(self.device_count, -(-n // LANES)))
        if ndev <= 1:
            return simulate_batch(cfg, params)
        fn = _sharded_fn(local_mesh(self.devices[:ndev]))
        # Each device's share a multiple of LANES runs, as on one device (``simulate``).
        m = -(-n // (ndev * LANES)) * ndev * LANES
        res = fn(cfg, pad_runs(params, m) if m != n else params)
        if m != n:
            res = jax.tree_util.tree_map(lambda a: np.asarray(a)[:n], res)
        return res


def make_runner(devices=None) -> Runner:
    """A :class:`Runner` over ``devices`` (default: this process's local devices)."""
    devices = jax.local_devices() if devices is None else list(devices)
    return Runner(devices=tuple(devices))
