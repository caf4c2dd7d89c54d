"""From a spec to results: plan the sweep, run it group by group, assemble an xarray.Dataset.

Pipeline::

    spec ──load_spec──▶ normalised spec ──make_plan──▶ Plan (groups of runs that
    share one compiled program, per-run parameter arrays) ──execute──▶ flat
    NumPy results ──to_dataset──▶ xarray.Dataset (SPEC §3 layout)

Runs are numbered in C order over (sweep axes…, seed): the flat index of grid
point g and seed s is ``g * seeds + s``. Seed s uses the key
``fold_in(PRNGKey(spec.seed), s)`` at every grid point (common random numbers).
Extra per-run outputs (the APT error of ``[flow]``) plug in as :class:`Recorder`s.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._optimizers import OptHParams
from ._problems import Problem, make_problem
from ._sampling import run_keys
from ._schedules import SchedHParams
from ._simulate import (
    RunParams,
    RunResult,
    SimConfig,
    default_block,
    log_spaced_steps,
    simulate,
)
from ._spec import (
    LoadedSpec,
    SpecError,
    axes_of,
    grid_points,
    load_spec,
    problem_dim,
    resolve_problem,
)

# Separate random stream for the θ0 perturbation (run.theta0_std).
_THETA0_TAG = 0x7E7A


class Recorder:
    """Adds per-run outputs to a plan (see ``_apt.APTRecorder``).

    ``observer(plan, group)`` returns ``(Observer | None, obs_args | None)`` for the
    engine; ``finalize(plan, group, result)`` returns ``{var: array}`` with a
    leading run axis; ``dims`` maps each var to its trailing dim names and
    ``coords()`` gives extra coordinates.
    """

    dims: dict[str, tuple[str, ...]] = {}

    def observer(self, plan, group):
        return None, None

    def finalize(self, plan, group, result: RunResult) -> dict[str, np.ndarray]:
        return {}

    def coords(self, plan) -> dict[str, Any]:
        return {}

    def postprocess(self, plan, ds):
        """Add dataset-level results (e.g. fitted rates) after assembly; returns ``ds``."""
        return ds


@dataclass
class Group:
    """Runs sharing one compiled program."""

    cfg: SimConfig
    params: RunParams  # NumPy leaves, leading axis = runs of this group
    index: np.ndarray  # flat run indices
    point: dict  # resolved spec of the first grid point of the group
    dtype: Any
    chunk: int


@dataclass
class Plan:
    loaded: LoadedSpec
    axes: list[tuple[str, list]]
    zip_coords: dict[str, list]
    seeds: int
    dim: int
    snapshot_steps: np.ndarray
    groups: list[Group]
    n_points: int
    has_minimizer: bool
    recorders: list[Recorder] = field(default_factory=list)

    @property
    def spec(self) -> dict:
        return self.loaded.spec

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(v) for _, v in self.axes)

    @property
    def n_runs(self) -> int:
        return self.n_points * self.seeds

    @property
    def steps(self) -> int:
        return self.spec["run"]["steps"]


def _program_key(point: dict) -> str:
    run = point["run"]
    return json.dumps(
        [
            resolve_problem(point["problem"]),
            point["optimizer"]["kind"],
            point["optimizer"]["bias_correction"],
            point["schedule"]["kind"],
            point["sampling"],
            {k: run[k] for k in ("steps", "dtype", "bound", "block", "fast_pow")},
        ],
        sort_keys=True,
    )


def _dtype(name: str):
    if name == "float64" and not jax.config.read("jax_enable_x64"):
        # float64 needs x64 mode; turning it on does not change float32 results.
        jax.config.update("jax_enable_x64", True)
    return jnp.float64 if name == "float64" else jnp.float32


def auto_chunk(
    problem: Problem,
    batch_size: int,
    block: int,
    n_record: int,
    budget: float,
    flow: tuple[int, int] | None = None,
) -> int:
    """Runs per chunk so that the live buffers of one chunk fit in ``budget`` bytes.

    ``flow = (windows, grid)`` adds what the APT comparison holds per run: the flow
    table (values and slopes, windows × grid × dim) and the block of iterates that
    its observer reads (block × (dim + 2)).
    """
    d = int(problem.dim)
    per_run = 8 * (
        block * batch_size * problem.sample_numel + (8 + n_record) * d + 4 * batch_size * d
    )
    if flow is not None:
        windows, grid = flow
        per_run += 8 * (2 * windows * grid * d + windows * (d + 6) + block * (d + 2))
    # On a CPU, batches beyond ~10⁴ runs fall out of cache and run slower
    # (benchmarks: 86–92 M run-steps/s at 8–16 k runs, 53–59 M at 10⁵–10⁶).
    cap = CPU_CHUNK_CAP if jax.default_backend() == "cpu" else 2**20
    return int(max(1, min(cap, budget // max(per_run, 1))))


CPU_CHUNK_CAP = 2**14


def default_budget() -> float:
    """Bytes one chunk may use: a quarter of the device memory when JAX reports it, else 1 GiB."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
        limit = stats.get("bytes_limit")
        if limit:
            return float(limit) / 4
    except Exception:  # noqa: BLE001 - CPU devices report nothing
        pass
    return float(2**30)


def make_plan(spec, *, chunk: int | None = None, budget: float | None = None) -> Plan:
    """Validate ``spec`` and build the :class:`Plan` (no simulation yet)."""
    loaded = spec if isinstance(spec, LoadedSpec) else load_spec(spec)
    s = loaded.spec
    axes = axes_of(s)
    zip_coords = dict(list(s["zip"].items())[1:]) if s["zip"] else {}
    points = list(grid_points(s))
    seeds = s["run"]["seeds"]
    dims = {problem_dim(p["problem"]) for p in points}
    if len(dims) > 1:
        raise SpecError(
            f"sweep: grid points have different θ dimensions {sorted(dims)}; "
            "sweep problems of one dimension at a time"
        )
    dim = dims.pop()
    for key in ("run.steps", "record.snapshots", "run.dtype"):
        if key in s["sweep"] or key in s["zip"]:
            raise SpecError(f"sweep.{key}: cannot be swept (it changes the result layout)")
    steps = s["run"]["steps"]
    snap = np.asarray(log_spaced_steps(steps, s["record"]["snapshots"]), np.int64)
    budget = default_budget() if budget is None else budget

    by_key: dict[str, list[int]] = {}
    for g, p in enumerate(points):
        by_key.setdefault(_program_key(p), []).append(g)

    groups = []
    has_min = True
    for gids in by_key.values():
        point = points[gids[0]]
        dtype = _dtype(point["run"]["dtype"])
        problem = make_problem(resolve_problem(point["problem"]), dtype)
        has_min = has_min and problem.minimizer is not None
        batch = point["sampling"]["batch_size"]
        block = point["run"]["block"] or default_block(problem, batch)
        cfg = SimConfig(
            problem=problem,
            optimizer=point["optimizer"]["kind"],
            schedule=point["schedule"]["kind"],
            scheme=point["sampling"]["scheme"],
            batch_size=batch,
            steps=steps,
            block=block,
            record_steps=tuple(int(x) for x in snap),
            bias_correction=point["optimizer"]["bias_correction"],
            bound=point["run"]["bound"],
            fast_pow=point["run"]["fast_pow"],
        )
        params, index = _group_params(
            [points[g] for g in gids], gids, seeds, s["seed"], problem, dtype
        )
        fl = s.get("flow")
        flow = None if fl is None else (fl["windows"], fl["grid"])
        ch = (
            chunk
            or point["run"]["chunk"]
            or auto_chunk(problem, batch, block, len(snap), budget, flow)
        )
        groups.append(
            Group(
                cfg=cfg,
                params=params,
                index=index,
                point=point,
                dtype=dtype,
                chunk=min(ch, len(index)),
            )
        )
    return Plan(
        loaded=loaded,
        axes=axes,
        zip_coords=zip_coords,
        seeds=seeds,
        dim=dim,
        snapshot_steps=snap,
        groups=groups,
        n_points=len(points),
        has_minimizer=has_min,
    )


def _group_params(
    points, gids, seeds, base_seed, problem: Problem, dtype
) -> tuple[RunParams, np.ndarray]:
    d = int(problem.dim)
    npd = np.float64 if dtype == jnp.float64 else np.float32

    def col(table, key):
        return np.repeat(np.asarray([p[table][key] for p in points], npd), seeds)

    theta0 = []
    default0 = problem.default_theta0()
    for p in points:
        th = p["run"]["theta0"]
        if th is None:
            th = np.ones(d) if default0 is None else np.asarray(default0)
        theta0.append(np.broadcast_to(np.asarray(th, np.float64), (d,)))
    theta0 = np.repeat(np.asarray(theta0, npd), seeds, axis=0)
    seed_idx = np.tile(np.arange(seeds), len(points))
    keys = np.asarray(run_keys(base_seed, seed_idx))
    std = col("run", "theta0_std")
    if np.any(std > 0):
        noise = jax.vmap(
            lambda k: jax.random.normal(jax.random.fold_in(k, _THETA0_TAG), (d,), dtype)
        )(keys)
        theta0 = (theta0 + std[:, None] * np.asarray(noise)).astype(npd)
    params = RunParams(
        key=keys,
        theta0=theta0,
        opt=OptHParams(
            b1=col("optimizer", "b1"),
            b2=col("optimizer", "b2"),
            eps=col("optimizer", "eps"),
            eps_root=col("optimizer", "eps_root"),
            initial_accumulator=col("optimizer", "initial_accumulator"),
        ),
        sched=SchedHParams(
            c=col("schedule", "c"), r=col("schedule", "r"), n0=col("schedule", "n0")
        ),
    )
    index = (np.asarray(gids)[:, None] * seeds + np.arange(seeds)[None, :]).reshape(-1)
    return params, index


def run_group(plan: Plan, group: Group, *, runner=None, progress=None, sl=slice(None)):
    """Simulate the runs ``sl`` of one group; returns ``{var: array}`` (leading run axis)."""
    cfg = group.cfg
    params = jax.tree_util.tree_map(lambda a: a[sl], group.params)
    obs, obs_args = None, None
    for rec in plan.recorders:
        o, a = rec.observer(plan, group)
        if o is not None:
            if obs is not None:
                raise NotImplementedError("only one recorder with an observer per plan")
            obs, obs_args = o, a
    if obs is not None:
        cfg = SimConfig(
            **{**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__}, "observer": obs}
        )
        params = params._replace(obs_args=jax.tree_util.tree_map(lambda a: a[sl], obs_args))
    res = simulate(cfg, params, chunk=group.chunk, runner=runner, progress=progress)
    out = {
        "theta_final": res.theta,
        "loss_final": res.loss,
        "grad_norm_final": res.grad_norm,
        "t_final": res.t,
        "diverged": res.diverged,
        "diverged_step": res.diverged_step,
        "theta": res.snapshots,
        "loss": res.snapshot_loss,
    }
    m = cfg.problem.minimizer
    if m is not None:
        out["gap_final"] = np.linalg.norm(res.theta - np.asarray(m)[None, :], axis=-1)
    for rec in plan.recorders:
        out.update(rec.finalize(plan, group, res))
    return out


VAR_DIMS: dict[str, tuple[str, ...]] = {
    "theta_final": ("dim",),
    "loss_final": (),
    "grad_norm_final": (),
    "t_final": (),
    "diverged": (),
    "diverged_step": (),
    "theta": ("snapshot", "dim"),
    "loss": ("snapshot",),
    "gap_final": (),
}


def execute(plan: Plan, *, progress: bool | None = None) -> dict[str, np.ndarray]:
    """Run every group in memory; returns flat arrays indexed by flat run index."""
    flat: dict[str, np.ndarray] = {}
    bar = _progress_bar(plan, progress)
    try:
        for g in plan.groups:
            out = run_group(plan, g, progress=lambda k: bar.update(k * plan.steps) if bar else None)
            for k, v in out.items():
                if k not in flat:
                    flat[k] = np.zeros((plan.n_runs, *v.shape[1:]), v.dtype)
                flat[k][g.index] = v
    finally:
        if bar is not None:
            bar.close()
    return flat


def _progress_bar(plan: Plan, progress: bool | None):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=plan.n_runs * plan.steps,
        unit="run-step",
        unit_scale=True,
        desc=plan.spec["name"],
        smoothing=0.1,
    )


def provenance(plan: Plan) -> dict[str, Any]:
    from . import __version__

    return {
        "spec": plan.loaded.text,
        "spec_hash": plan.loaded.hash,
        "adamjax_version": __version__,
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
    """Reshape flat results to the SPEC §3 layout (sweep dims…, seed, …)."""
    import xarray as xr

    lead = (*plan.shape, plan.seeds)
    lead_dims = (*[name for name, _ in plan.axes], "seed")
    dims_of = dict(VAR_DIMS)
    for rec in plan.recorders:
        dims_of.update(rec.dims)
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
    for rec in plan.recorders:
        coords.update(rec.coords(plan))
    ds = xr.Dataset(data_vars, coords=coords, attrs=provenance(plan))
    for rec in plan.recorders:
        ds = rec.postprocess(plan, ds)
    return ds


def run(
    spec,
    out=None,
    *,
    progress: bool | None = None,
    chunk: int | None = None,
    resume: bool = False,
    force: bool = False,
    budget: float | None = None,
):
    """Run an experiment spec (TOML path or dict) and return its results.

    Returns an ``xarray.Dataset`` with the SPEC §3 layout: one dim per sweep
    axis (named by its dotted key), ``seed``, ``snapshot``, ``dim`` (and
    ``window`` with ``[flow]``); variables ``theta_final``, ``loss_final``,
    ``grad_norm_final``, ``t_final``, ``diverged``, ``diverged_step``,
    ``snapshot_step``, ``theta``, ``loss`` (and ``gap_final`` where the minimiser
    is known). Bad input raises ``ValueError`` (:class:`SpecError`) naming the key
    and the value. With ``out=DIR`` the results are also stored under
    ``DIR/<name>/results.zarr`` (chunk by chunk, see ``_store``) and the returned
    dataset reads from there: ``resume`` skips chunks completed by an earlier,
    interrupted run of the same spec; a folder holding another spec's results
    is refused unless ``force``. ``chunk`` (runs per chunk) overrides
    ``run.chunk`` and the automatic size from ``budget`` (bytes per device;
    default a quarter of the device memory, 1 GiB on CPU).
    """
    plan = make_plan(spec, chunk=chunk, budget=budget)
    plan.recorders.extend(_default_recorders(plan))
    if out is not None:
        from ._store import run_to_store

        explicit = chunk is not None or plan.spec["run"]["chunk"] is not None
        return run_to_store(
            plan, out, progress=progress, resume=resume, force=force, explicit_chunk=explicit
        )
    flat = execute(plan, progress=progress)
    return to_dataset(plan, flat)


def _default_recorders(plan: Plan) -> list[Recorder]:
    if plan.spec.get("flow") is None:
        return []
    try:
        from ._apt import APTRecorder
    except ImportError:  # theory layer not present
        return []
    return [APTRecorder()]
