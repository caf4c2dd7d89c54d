"""JAX's persistent compilation cache, on by default in the user's cache directory.

Every ``adamjax run`` of a spec compiles the same few XLA programs again; with the
cache, the second invocation loads them from disk instead (see docs/BENCHMARKS.md for
what it buys). The cache lives in ``$XDG_CACHE_HOME/adamjax/jax`` (default
``~/.cache/adamjax/jax``). Control it with the environment variable
``ADAMJAX_COMPILATION_CACHE``: ``off`` (or ``0``, ``false``, ``no``) turns it off, a
path puts it there. A cache directory the user gave JAX itself
(``JAX_COMPILATION_CACHE_DIR`` or ``jax.config.update("jax_compilation_cache_dir",
…)``) is left alone. Entries are keyed by JAX on the program, the devices and the JAX
version, so a stale entry is never used; deleting the folder is always safe.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

from .._engine.devices import OFF_VALUES

ENV = "ADAMJAX_COMPILATION_CACHE"
# Programs that compile faster than this are not written (JAX's default is 1 s; most
# of adamjax's compile in 0.3–3 s on a CPU, and loading one takes milliseconds).
MIN_COMPILE_SECONDS = 0.2


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/adamjax/jax``, or ``~/.cache/adamjax/jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "adamjax" / "jax"


def compilation_cache_dir() -> str | None:
    """The persistent compilation cache JAX is using now (None: off)."""
    return jax.config.jax_compilation_cache_dir


def enable_compilation_cache(path: str | os.PathLike | None = None) -> str | None:
    """Turn JAX's persistent compilation cache on in ``path`` (default: the environment
    variable ``ADAMJAX_COMPILATION_CACHE``, else :func:`default_cache_dir`).

    Called once when ``adamjax`` is imported. Does nothing when the user set JAX's own
    cache directory, when the variable says ``off``, or when the folder cannot be
    created (a read-only home: the cache is an optimisation, never an error).

    Returns:
        The cache folder in use, or None when the cache is off.
    """
    current = compilation_cache_dir()
    if current:
        return current
    setting = os.environ.get(ENV, "").strip()
    if path is None and setting.lower() in OFF_VALUES:
        return None
    folder = Path(path or setting or default_cache_dir())
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return str(folder)
