"""Shared helpers and tolerances for the tests."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import adamjax

# Parity with optax / NumPy references (acceptance of the engine issue).
RTOL_F64 = 1e-12
ULP_F32 = 4


def ulp_distance(a, b) -> np.ndarray:
    """Distance in units in the last place between two float32 arrays."""
    a = np.asarray(a, np.float32).view(np.int32).astype(np.int64)
    b = np.asarray(b, np.float32).view(np.int32).astype(np.int64)
    # Map the sign-magnitude integer order onto a monotone one.
    a = np.where(a < 0, np.int64(-(2**31)) - a, a)
    b = np.where(b < 0, np.int64(-(2**31)) - b, b)
    return np.abs(a - b)


def base_spec(**over):
    """A small valid spec dict; ``over`` maps 'table.key' (or top-level key) to a value."""
    spec = {
        "name": "t",
        "seed": 0,
        "problem": {"kind": "quadratic", "dim": 1, "noise": "exponential"},
        "optimizer": {"kind": "adam", "b1": 0.9, "b2": 0.99, "eps": 1e-8},
        "schedule": {"kind": "power", "c": 0.05, "r": 0.6},
        "run": {"steps": 200, "seeds": 4, "theta0": 1.0},
        "record": {"snapshots": 8},
    }
    for k, v in over.items():
        table, _, key = k.rpartition(".")
        if table:
            spec.setdefault(table, {})[key] = v
        else:
            spec[key] = v
    return spec


def assert_same(a, b):
    """Identical data, coordinates and provenance (except the creation time and the
    device count) of two results datasets."""
    import xarray as xr

    a, b = a.load(), b.load()
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    drop = {"created", "device_count", "device_counts"}
    assert {k: v for k, v in a.attrs.items() if k not in drop} == {
        k: v for k, v in b.attrs.items() if k not in drop
    }


def half_square(theta, example):
    """ℓ(θ, x) = ½‖θ − x‖²: the per-example loss of the small user finite sums."""
    return 0.5 * jnp.sum((theta - example) ** 2)


class HalfSquares(adamjax.AbstractFiniteSumProblem):
    """A user's finite sum of ½‖θ − x_i‖² over ``data`` (the tests subclass it with one
    redefinition each)."""

    data: jax.Array
    dim: int = eqx.field(static=True)

    def example_loss(self, theta, example):
        return half_square(theta, example)
