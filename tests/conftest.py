"""Shared test set-up: float64 available (results in float32 are unaffected), shared tolerances."""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
