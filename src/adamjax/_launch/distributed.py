"""Multi-host runs: ``jax.distributed`` start-up and the little coordination ``sweep`` needs.

``adamjax run --distributed`` (or automatic detection, see :func:`detect`)
calls :func:`jax.distributed.initialize` before JAX touches a backend. Each
process then runs the chunks assigned to it (chunk ``u`` goes to process
``u % process_count``) on its local devices and writes its own regions of the
shared zarr store; process 0 writes the skeleton and the metadata. The
processes meet through the coordination service of ``jax.distributed``
(key-value store and barriers), never through collectives, so this works on
CPU as well as on accelerators. See ``docs/CLUSTER.md``.
"""

from __future__ import annotations

import os
import sys

import jax

_TIMEOUT_MS = 24 * 3600 * 1000
# A process that stops (killed, pre-empted, node lost) is noticed by the coordination
# service when its heartbeats stop; the others then leave the barrier they wait at.
_HEARTBEAT_S = 100


def _int_env(name: str) -> int | None:
    v = os.environ.get(name)
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


def detect() -> str | None:
    """Which multi-process environment we are in: ``"jax"``, ``"slurm"`` or None.

    * ``"jax"``: ``JAX_COORDINATOR_ADDRESS`` and ``JAX_NUM_PROCESSES`` > 1 are set
      (``JAX_PROCESS_ID`` gives this process's rank);
    * ``"slurm"``: inside an ``srun`` step with more than one task
      (``SLURM_STEP_NUM_TASKS`` > 1), where JAX derives everything itself.
    """
    if os.environ.get("JAX_COORDINATOR_ADDRESS") and (_int_env("JAX_NUM_PROCESSES") or 0) > 1:
        return "jax"
    if os.environ.get("SLURM_JOB_ID") and (_int_env("SLURM_STEP_NUM_TASKS") or 0) > 1:
        return "slurm"
    return None


def initialize_distributed(
    *,
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    required: bool = False,
) -> bool:
    """Start ``jax.distributed`` when asked (``required``) or when :func:`detect` finds a
    multi-process environment. Returns whether it was started."""
    if is_initialized():
        return True
    env = detect()
    if not required and env is None and coordinator is None:
        return False
    kwargs = {}
    coordinator = coordinator or os.environ.get("JAX_COORDINATOR_ADDRESS")
    num_processes = num_processes or _int_env("JAX_NUM_PROCESSES")
    if process_id is None:
        process_id = _int_env("JAX_PROCESS_ID")
    if coordinator:
        kwargs["coordinator_address"] = coordinator
    if num_processes is not None:
        kwargs["num_processes"] = num_processes
    if process_id is not None:
        kwargs["process_id"] = process_id
    kwargs["heartbeat_timeout_seconds"] = _int_env("ADAMJAX_HEARTBEAT_S") or _HEARTBEAT_S
    jax.distributed.initialize(**kwargs)
    return True


def is_initialized() -> bool:
    return jax.distributed.is_initialized()


def _client():
    # JAX has no public handle on the coordination service's key-value store and
    # barriers; this is the one private attribute adamjax reads.
    from jax._src import distributed

    return distributed.global_state.client


def process_index() -> int:
    return jax.process_index()


def process_count() -> int:
    return jax.process_count()


def _peer_lost(e: Exception) -> None:
    """A peer stopped: say so in one line and leave at once. (The coordination client
    aborts the process with a C++ stack trace moments later; ``os._exit`` gets there
    first.) Finished units are on disk with their markers, so ``--resume`` completes the
    run."""
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    sys.stderr.write(
        f"adamjax: error: process {process_index()} of {process_count()}: another process "
        f"of this run stopped ({msg[:160]}); the finished chunks are kept, rerun the same "
        "command with --resume to complete the run\n"
    )
    sys.stderr.flush()
    os._exit(3)


def barrier(name: str, timeout_ms: int = _TIMEOUT_MS) -> None:
    """Wait until every process reaches ``name`` (no-op in a single process)."""
    if process_count() > 1:
        try:
            _client().wait_at_barrier(name, timeout_ms)
        except jax.errors.JaxRuntimeError as e:
            _peer_lost(e)


def publish(key: str, value: str) -> None:
    """Process 0 tells the others ``value`` under ``key`` (see :func:`receive`)."""
    if process_count() > 1:
        _client().key_value_set(key, value)


def receive(key: str, timeout_ms: int = _TIMEOUT_MS) -> str:
    """Wait for the value process 0 :func:`publish`-ed under ``key``."""
    try:
        return _client().blocking_key_value_get(key, timeout_ms)
    except jax.errors.JaxRuntimeError as e:
        _peer_lost(e)
