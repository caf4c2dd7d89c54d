"""Assembling flat per-run results into the labelled ``xarray.Dataset`` (docs/RESULTS.md).

Dims: one per sweep axis (named by its dotted key, values as coordinates), then
``seed``, then each variable's own trailing dims (``dim``, ``snapshot``,
``window``). Provenance attributes: the spec text and hash, versions, backend,
device count and creation time.
"""

from __future__ import annotations

import datetime as _dt
import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import jax
import numpy as np

from .plan import Plan


def adamjax_version() -> str:
    """The installed adamjax version (``0+unknown`` when run from an uninstalled tree)."""
    try:
        return version("adamjax")
    except PackageNotFoundError:  # pragma: no cover - source tree on sys.path
        return "0+unknown"


def provenance(plan: Plan) -> dict[str, Any]:
    return {
        "spec": plan.loaded.text,
        "spec_hash": plan.loaded.hash,
        "adamjax_version": adamjax_version(),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "device_count": jax.device_count(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def axis_values(vals: list) -> np.ndarray:
    """Coordinate values of a sweep axis; list values (e.g. a θ0 vector) become labels."""
    if any(isinstance(v, list) for v in vals):
        return np.asarray([json.dumps(v) for v in vals])
    return np.asarray(vals)


def to_dataset(plan: Plan, flat: dict[str, np.ndarray]):
    """Reshape flat results (leading axis = flat run index) to the labelled layout."""
    import xarray as xr

    lead = (*plan.shape, plan.seeds)
    lead_dims = (*[name for name, _ in plan.axes], "seed")
    dims_of = plan.variables
    data_vars = {}
    for k, v in flat.items():
        data_vars[k] = (lead_dims + dims_of[k], v.reshape(lead + v.shape[1:]))
    coords: dict[str, Any] = {name: axis_values(vals) for name, vals in plan.axes}
    coords["seed"] = np.arange(plan.seeds)
    coords["snapshot_step"] = ("snapshot", plan.snapshot_steps)
    if plan.axes and plan.zip_coords:
        zdim = plan.axes[-1][0]
        for name, vals in plan.zip_coords.items():
            coords[name] = (zdim, axis_values(vals))
    coords.update(plan.coords)
    return xr.Dataset(data_vars, coords=coords, attrs=provenance(plan))
