"""The CPU's cores as JAX devices, so that a sweep on a CPU runs one device per core.

On a CPU, JAX has one device by default and parallelises each operation of a program
over the cores. The simulator's step loop is thousands of small operations per block
(one per state array and step, a few thousand runs wide), and splitting each one over
the cores costs a synchronisation per operation. With one JAX device per core, the
multi-device runner (``shard``) gives every core its own slice of the runs and its own
step loop, with no synchronisation inside the loop: the 1-D quadratic (8 192 runs ×
20 000 steps) runs 1.7–1.9× faster on 2 cores (docs/BENCHMARKS.md). A run's numbers do not
depend on the device count (``tests/engine/test_shard.py``, ``tests/engine/test_devices.py``).

:func:`use_cpu_cores` is called once when ``adamjax`` is imported. The environment
variable ``ADAMJAX_CPU_DEVICES`` sets the count (``auto``, the default: the cores this
process may use; an integer; ``off`` = ``1``: JAX's default). A count the user gave JAX
itself (``JAX_NUM_CPU_DEVICES``, ``jax.config.update("jax_num_cpu_devices", …)`` or
``--xla_force_host_platform_device_count`` in ``XLA_FLAGS``, set before ``import
adamjax``) is left alone, and so is a process where JAX already ran a computation (the
count is fixed from then on; ``ADAMJAX_CPU_DEVICES`` then has no effect).
Accelerators are not affected: the CPU devices only serve CPU runs.
"""

from __future__ import annotations

import os
import warnings

import jax

from .errors import SpecError

ENV = "ADAMJAX_CPU_DEVICES"
# The values that turn an adamjax setting off (this one and ADAMJAX_COMPILATION_CACHE).
OFF_VALUES = ("off", "0", "false", "no", "none")
_XLA_FLAG = "xla_force_host_platform_device_count"
# Beyond this, more devices only pad small sweeps (every device gets ≥ 128 runs).
MAX_DEVICES = 64


def cpu_cores() -> int:
    """The number of cores this process may run on: its affinity mask where known, capped
    by a container's CPU quota (cgroup v2 ``cpu.max``)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS / Windows
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(n, quota)) if quota else n


def _cgroup_quota(path: str = "/sys/fs/cgroup/cpu.max") -> int | None:
    """CPUs allowed by the cgroup v2 quota ("max PERIOD" or "QUOTA PERIOD"), or None."""
    try:
        with open(path) as f:
            quota, period = f.read().split()[:2]
        return None if quota == "max" else max(1, int(quota) // int(period))
    except (OSError, ValueError):
        return None


def requested_cpu_devices() -> int | None:
    """The CPU device count ``ADAMJAX_CPU_DEVICES`` asks for (None: leave JAX's default).

    Raises:
        SpecError: the variable is neither ``auto``, ``off`` nor a positive integer.
    """
    value = os.environ.get(ENV, "auto").strip().lower()
    if value in ("", "auto"):
        n = min(cpu_cores(), MAX_DEVICES)
    elif value in OFF_VALUES:
        return None
    else:
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise SpecError(f"{ENV} = {value!r}: expected auto, off or a positive integer")
    return n if n > 1 else None


def use_cpu_cores() -> int | None:
    """Give JAX one CPU device per core (see the module docstring), if nobody chose.

    Returns:
        The CPU device count set, or None when JAX's own setting is kept.
    """
    if jax.config.jax_num_cpu_devices != -1 or _XLA_FLAG in os.environ.get("XLA_FLAGS", ""):
        return None
    try:
        n = requested_cpu_devices()
    except SpecError as e:  # at import: a warning, not a traceback; JAX's default kept
        warnings.warn(str(e), stacklevel=2)
        return None
    if n is None:
        return None
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # JAX already ran something: its device count is fixed
        return None
    return n
