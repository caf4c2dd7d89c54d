"""Assembling flat per-run results into the labelled ``xarray.Dataset`` (docs/results.md).

Dims: one per sweep axis (named by its dotted key, values as coordinates), then
``seed``, then each variable's own trailing dims (``dim``, ``snapshot``,
``window``). Provenance attributes: the spec text and hash, versions, backend,
device count and creation time.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib
import json
import threading
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import jax
import numpy as np

from .._engine.problems.registry import BUILTINS
from .outcome import FLAG_MEANINGS
from .plan import Plan
from .schema import SCHEMA, problem_params

# CF attributes of the engine's variables and coordinates: (long_name, units, description).
# Units "1": counts, flags, dimensionless numbers; θ, the loss and training time are in
# the problem's own units, which adamjax does not know.
ATTRS: dict[str, tuple[str, str, str]] = {
    "theta_final": ("final iterate Θ_N", "1", "θ after the last step (frozen value if diverged)"),
    "loss_final": ("final loss L(Θ_N)", "1", "objective at the final iterate (NaN: no loss)"),
    "grad_norm_final": ("‖∇L(Θ_N)‖", "1", "Euclidean norm of the gradient of L at Θ_N"),
    "t_final": ("training time t_N", "1", "γ_1 + … + γ_N over the steps actually taken"),
    "diverged": (
        "numeric blow-up",
        "1",
        "θ or L became non-finite or |θ| exceeded run.bound; the run was frozen there",
    ),
    "diverged_step": ("step of the blow-up", "1", "the step that blew up; -1 if none"),
    "theta": ("iterate Θ_n at the snapshots", "1", "θ at the log-spaced snapshot steps"),
    "loss": ("loss L(Θ_n)", "1", "objective at the snapshot iterates"),
    "gap_final": (
        "optimality gap ‖Θ_N − θ*‖",
        "1",
        "distance to the problem's minimiser θ* (only where θ* is known: absent otherwise)",
    ),
    "outcome": (
        "outcome of the run",
        "1",
        "converged / diverging / undecided by the rule of docs/results.md "
        "(record.margin, record.ratio); diverged runs are diverging",
    ),
    "seed": (
        "seed index",
        "1",
        "run index within a grid point; seed s uses the same noise at every grid point",
    ),
    "snapshot": ("snapshot step n", "1", "Adam step of each snapshot (index of dim snapshot)"),
    "snapshot_step": ("snapshot step n", "1", "Adam step of each snapshot"),
    "param": (
        "entry of θ",
        "1",
        "name of each entry of the flat θ: the leaf path and index for PyTree parameters",
    ),
}


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
        # One entry per launch that wrote runs into a store (a resume appends its own).
        "device_counts": [jax.device_count()],
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        # 1: every run present (a store's skeleton says 0 until its last unit is written;
        # an int, not a bool: netCDF has no boolean attributes).
        "complete": 1,
        **plan.provenance,  # a user's problem module: its file and source hash
    }


def axis_values(vals: list) -> np.ndarray:
    """Coordinate values of a sweep axis; list values (e.g. a θ0 vector) become labels."""
    if any(isinstance(v, list) for v in vals):
        return np.asarray([json.dumps(v) for v in vals])
    return np.asarray(vals)


def preload(store: bool) -> threading.Thread:
    """Start importing xarray (and zarr for a ``store``) on a background thread.

    The import takes 0.5–1 s, a good part of an interactive run; :func:`~adamjax.run`
    calls this once the plan is made, so that the import overlaps with compiling the
    simulation (XLA compiles without holding the GIL). A module being imported by one
    thread is waited for by the others, so the result is the same as a plain import.
    Measured: a cold ``adamjax.run`` of a 32 × 32 Zhang sweep 3.3–3.8 s → 2.7–3.2 s.

    Returns:
        The importing thread (already started).
    """

    def load():
        for name in ("xarray", "zarr") if store else ("xarray",):
            # Never a message from here: zarr is optional where no store is written, and
            # an import cut short by the interpreter's exit (e.g. an error right after
            # ``run`` started) raises; the main thread's own import reports real errors.
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    thread = threading.Thread(target=load, name="adamjax-preload", daemon=True)
    thread.start()
    return thread


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
    coords["snapshot"] = ("snapshot", plan.snapshot_steps)
    coords["param"] = ("dim", np.asarray(plan.param_names))
    coords.update(plan.coords)
    ds = xr.Dataset(data_vars, coords=coords, attrs=provenance(plan))
    return describe(ds, plan)


def describe(ds, plan: Plan):
    """Add the CF attributes (``long_name``, ``units``, ``description``) to every variable
    and coordinate of ``ds``: the engine's from :data:`ATTRS`, the recorders' from their
    declarations, the sweep axes' from the spec schema."""
    keys = ("long_name", "units", "description")
    table = {k: dict(zip(keys, v, strict=True)) for k, v in ATTRS.items()}
    for rec in plan.recorders:
        table.update(rec.attrs)
    axes = {name for name, _ in plan.axes} | set(plan.zip_coords)
    for name in ds.variables:
        if name in table:
            attrs = table[name]
        elif name in axes:  # a sweep axis or a zipped key ("optimizer.b2")
            attrs = dict(zip(keys, _axis_attrs(name), strict=True))
        else:  # a recorder's variable it did not describe
            attrs = {"long_name": name, "units": "1", "description": name}
        ds[name].attrs.update(attrs)
    if "outcome" in ds:
        ds["outcome"].attrs.update(
            flag_values=np.arange(3, dtype=np.int8), flag_meanings=FLAG_MEANINGS
        )
    return ds


def _axis_attrs(key: str) -> tuple[str, str, str]:
    table, _, name = key.rpartition(".")
    params = problem_params(BUILTINS) if table == "problem" else SCHEMA.get(table, {})
    param = params.get(name)
    doc = param.doc if param is not None and param.doc else ""
    return (key, "1", f"swept spec key {key}" + (f": {doc}" if doc else ""))
