"""``adamjax info``: versions, backend, devices and memory of this machine, and the chunk
budget adamjax derives from them (an application of the public API, as the CLI)."""

from __future__ import annotations

import os
import platform


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in (
        "adamjax",
        "jax",
        "jaxlib",
        "numpy",
        "optax",
        "diffrax",
        "equinox",
        "xarray",
        "zarr",
        "tqdm",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _host_memory() -> tuple[float | None, float | None]:
    try:
        info = {}
        with open("/proc/meminfo") as f:
            for line in f:
                k, v = line.split(":", 1)
                info[k] = float(v.split()[0]) * 1024
        return info.get("MemTotal"), info.get("MemAvailable")
    except OSError:
        try:
            return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), None
        except (ValueError, OSError, AttributeError):
            return None, None


def _gib(x) -> str:
    return "?" if x is None else f"{x / 2**30:.1f} GiB"


def main() -> int:
    """Print the report; returns the exit code 0."""
    import jax

    import adamjax

    print(f"python   {platform.python_version()} ({platform.platform()})")
    for k, v in _versions().items():
        print(f"{k:<8} {v}")
    print(f"backend  {jax.default_backend()}")
    print(f"x64      {jax.config.read('jax_enable_x64')}")
    print(f"process  {jax.process_index()} of {jax.process_count()}")
    devs = jax.devices()
    print(f"devices  {len(devs)} ({jax.local_device_count()} local)")
    for d in jax.local_devices():
        mem = ""
        try:
            stats = d.memory_stats() or {}
            if stats.get("bytes_limit"):
                mem = f", memory {_gib(stats['bytes_limit'])}"
                if stats.get("bytes_in_use") is not None:
                    mem += f" ({_gib(stats['bytes_in_use'])} in use)"
        except Exception:  # noqa: BLE001 - CPU devices report nothing
            pass
        print(f"  {d.id}: {d.platform} {getattr(d, 'device_kind', '')}{mem}")
    total, avail = _host_memory()
    print(f"host     {os.cpu_count()} CPUs, memory {_gib(total)} ({_gib(avail)} available)")
    budget = _gib(adamjax.default_budget())
    print(f"budget   {budget} per chunk and device (override: run --budget)")
    return 0
