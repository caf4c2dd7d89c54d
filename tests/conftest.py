"""Shared test set-up: float64 available (results in float32 are unaffected), shared tolerances."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
# The persistent compilation cache of the whole session (subprocesses included) in a
# temporary folder, not the user's ~/.cache.
if "ADAMJAX_COMPILATION_CACHE" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="adamjax-test-cache-")
    os.environ["ADAMJAX_COMPILATION_CACHE"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
