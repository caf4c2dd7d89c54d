"""Shared test set-up: float64 available (results in float32 are unaffected), shared tolerances."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# One CPU device per test process (and its subprocesses) unless a test asks for more: the
# test workers already use every core (pytest-xdist), and the multi-device tests set
# their device count themselves (tests/engine/test_devices.py, test_shard.py).
os.environ.setdefault("ADAMJAX_CPU_DEVICES", "1")
# The persistent compilation cache of the whole session (subprocesses included) in a
# temporary folder, not the user's ~/.cache.
if "ADAMJAX_COMPILATION_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="adamjax-test-cache-")
    os.environ["ADAMJAX_COMPILATION_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
