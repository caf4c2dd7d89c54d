"""From a normalised spec to a :class:`Plan`: groups of runs that share one compiled program.

Pipeline of ``adamjax.run``::

    spec ──load_spec──▶ normalised spec ──make_plan──▶ Plan ──execute / sweep──▶
    flat results ──to_dataset──▶ xarray.Dataset (docs/results.md layout)

A plan holds, per group, the :class:`~adamjax.SimConfig` (what shapes the
program, including the observer of a recorder), the per-run parameter arrays
and the flat indices of its runs. Runs are numbered in C order over (sweep
axes…, seed): the flat index of grid point g and seed s is ``g * seeds + s``.
Seed s uses the key ``fold_in(seed_key(spec.seed), s)`` at every grid point
(common random numbers). Recorders (``recorders``) are created and prepared
here, so that running a plan needs nothing but the plan.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._engine.errors import SpecError
from .._engine.optimizers import OptHParams
from .._engine.params import fmt
from .._engine.problems.base import AbstractFiniteSumProblem, Problem
from .._engine.problems.registry import problem_dim
from .._engine.sampling import run_keys
from .._engine.schedules import SchedHParams
from .._engine.simulate import RunParams, SimConfig, default_block, log_spaced_steps, shares_powers
from .checkpoint import PrepareFolder
from .problems import Problems, is_user_kind
from .recorders import Recorder, default_recorders
from .spec import LoadedSpec, axes_of, check_theta0, grid_points, issue_notes, load_spec

# Separate random streams for the θ0 perturbation (run.theta0_std) and for a problem
# that draws each run's start (a user's init(key)).
_THETA0_TAG = 0x7E7A
_INIT_TAG = 0x1A17

# The engine's variables (``execute.run_group``): name → trailing dims after (sweep
# axes…, seed). ``gap_final`` exists where the problem's minimiser is known.
VARIABLES: dict[str, tuple[str, ...]] = {
    "theta_final": ("dim",),
    "loss_final": (),
    "grad_norm_final": (),
    "t_final": (),
    "diverged": (),
    "diverged_step": (),
    "theta": ("snapshot", "dim"),
    "loss": ("snapshot",),
    "gap_final": (),
    "outcome": (),
}

# On a CPU, batches beyond ~10⁴ runs fall out of cache and run slower
# (benchmarks: 86–92 M run-steps/s at 8–16 k runs, 53–59 M at 10⁵–10⁶).
CPU_CHUNK_CAP = 2**14


@dataclass
class Group:
    """Runs sharing one compiled program: ``cfg`` (with the recorder's observer, if
    any), ``params`` (NumPy leaves, leading axis = the group's runs, with the
    observer's ``obs_args``), their flat run indices, the resolved spec of the first
    grid point, the dtype and the runs per chunk."""

    cfg: SimConfig
    params: RunParams
    index: np.ndarray
    point: dict
    dtype: Any
    chunk: int


@dataclass
class Plan:
    """A validated spec cut into :class:`Group`s, with everything the results need:
    the sweep axes, seeds, θ's dimension, the snapshot steps, the recorders and the
    declared variables (name → trailing dims) and extra coordinates."""

    param_names: tuple[str, ...]
    provenance: dict[str, str]
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

    @property
    def variables(self) -> dict[str, tuple[str, ...]]:
        out = dict(VARIABLES)
        if not self.has_minimizer:
            del out["gap_final"]
        for rec in self.recorders:
            out.update(rec.variables)
        return out

    @property
    def coords(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for rec in self.recorders:
            out.update(rec.coords)
        return out


def _program_key(point: dict) -> str:
    run = point["run"]
    return json.dumps(
        [
            point["problem"],
            point["optimizer"]["kind"],
            point["optimizer"]["bias_correction"],
            point["schedule"]["kind"],
            point["sampling"],
            {k: run[k] for k in ("steps", "dtype", "bound", "block", "fast_pow")},
        ],
        sort_keys=True,
    )


def spec_folder(loaded: LoadedSpec) -> Path:
    """Where a user's problem module is looked for: beside the spec file, or the current
    folder for a spec given as a dict."""
    return Path(loaded.path).resolve().parent if loaded.path else Path.cwd()


def point_problem(spec, point: int) -> tuple[Problem, dict]:
    """The problem of grid point ``point`` of ``spec`` (a path, TOML text or dict) and
    the point's resolved sections. For the theory helpers, which take β1, β2 from their
    own arguments: the spec's β1² ≥ β2 warning about its grid is not issued here."""
    loaded = load_spec(spec, warn=False)  # its deferred warning is never issued
    p = list(grid_points(loaded.spec))[point]
    return Problems(spec_folder(loaded))(p["problem"], run_dtype(p["run"]["dtype"])), p


def run_dtype(name: str):
    """The JAX dtype of ``run.dtype``; float64 switches on x64 mode (which does not change
    float32 results)."""
    if name == "float64" and not jax.config.read("jax_enable_x64"):
        jax.config.update("jax_enable_x64", True)
    return jnp.float64 if name == "float64" else jnp.float32


def auto_chunk(
    problem: Problem,
    batch_size: int,
    block: int,
    n_record: int,
    budget: float,
    extra_bytes_per_run: int = 0,
) -> int:
    """Runs per chunk so that the live buffers of one chunk fit in ``budget`` bytes.

    ``extra_bytes_per_run`` is what the recorders hold per run (their observer state).
    """
    per_run = run_bytes(problem, batch_size, block, n_record, extra_bytes_per_run)
    cap = CPU_CHUNK_CAP if jax.default_backend() == "cpu" else 2**20
    return int(max(1, min(cap, budget // max(per_run, 1))))


def run_bytes(problem: Problem, batch_size: int, block: int, n_record: int, extra: int = 0) -> int:
    """Bytes of device memory one run holds in a chunk: its noise block, its state and
    snapshot buffers (8 bytes per number, an upper bound for float32), and ``extra``."""
    d = int(problem.dim)
    return (
        8 * (block * batch_size * problem.sample_numel + (8 + n_record) * d + 4 * batch_size * d)
        + extra
    )


def _size_text(n: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} bytes"


def _host_memory() -> float | None:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def default_budget() -> float:
    """Bytes one chunk may use per device: a quarter of the device memory when JAX reports
    it; else (CPU devices) 1 GiB shared by the local devices, which share the host's
    memory (one device per core, ``_engine/devices``)."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
        limit = stats.get("bytes_limit")
        if limit:
            return float(limit) / 4
    except Exception:  # noqa: BLE001 - CPU devices report nothing
        pass
    return float(2**30) / max(1, jax.local_device_count())


def make_plan(
    spec,
    *,
    chunk: int | None = None,
    budget: float | None = None,
    problem: Problem | None = None,
    progress: bool | str | None = False,
    prepare: PrepareFolder | None = None,
) -> Plan:
    """Validate ``spec`` and build its :class:`Plan`, recorders prepared (with ``[flow]``
    this runs the APT pass 1 and integrates the flows); no simulation of the runs yet.

    Args:
        spec: a path to a TOML file, a dict, or a loaded spec.
        chunk: runs per chunk (overrides ``run.chunk`` and the memory budget).
        budget: bytes per device for one chunk (default: :func:`default_budget`).
        problem: a problem object that replaces the spec's ``[problem]`` (its class and
            data enter the spec hash, so a store of another problem is not resumed).
        progress: the display of the recorders' preparation (the ``[flow]`` pass 1,
            fields and flows): False (default, nothing), None (a bar on a terminal, log
            lines otherwise), True, or ``"bar"``/``"log"``/``"off"``.
        prepare: where the recorders keep their finished work (``adamjax.run`` with an
            output folder), so that a stopped run continues from there; None: nowhere.
    """
    if isinstance(spec, LoadedSpec):
        loaded = spec
    else:
        loaded = load_spec(spec, problem_object=problem is not None, warn=False)
    s = loaded.spec
    axes = axes_of(s)
    zip_coords = dict(list(s["zip"].items())[1:]) if s["zip"] else {}
    points = list(grid_points(s))
    seeds = s["run"]["seeds"]
    # Before building anything: the built-in problems know their dimension from the table.
    builtin_dims = [
        problem_dim(p["problem"])
        for p in points
        if problem is None and not is_user_kind(p["problem"]["kind"])
    ]
    _check_run_count(len(points) * seeds, max(builtin_dims, default=0))
    build = Problems(spec_folder(loaded), problem)
    built = [build(p["problem"], run_dtype(p["run"]["dtype"])) for p in points]
    wrap = None  # the first mini-batch longer than an epoch of a reshuffled/cyclic order
    for p, prob in zip(points, built, strict=True):
        check_theta0(p["run"]["theta0"], int(prob.dim))
        scheme, b = p["sampling"]["scheme"], p["sampling"]["batch_size"]
        if not isinstance(prob, AbstractFiniteSumProblem) and scheme != "iid":
            raise SpecError(
                f"sampling.scheme = {fmt(scheme)}: the problem draws fresh "
                'samples every step, so only "iid" applies'
            )
        if scheme != "iid" and b > prob.n_data and wrap is None:
            wrap = (
                f"sampling.batch_size = {b}: more than the problem's {prob.n_data} examples; "
                f"under {scheme} order a mini-batch then spans epochs and repeats examples"
            )
    if build.provenance.get("problem_hash"):
        # The user's problem (its code and data) is part of what the results depend on;
        # so is its module's text (a helper the loss calls is not in the problem's hash).
        prov = build.provenance
        digest = f"{loaded.hash}{prov['problem_hash']}{prov.get('problem_source_sha256', '')}"
        digest = digest.encode()
        loaded = dataclasses.replace(loaded, hash=hashlib.sha256(digest).hexdigest()[:16])
    dims = {int(prob.dim) for prob in built}
    if len(dims) > 1:
        raise SpecError(
            f"sweep: grid points have different θ dimensions {sorted(dims)}; "
            "sweep problems of one dimension at a time"
        )
    dim = dims.pop()
    _check_run_count(len(points) * seeds, dim)
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
        dtype = run_dtype(point["run"]["dtype"])
        problem = built[gids[0]]
        has_min = has_min and problem.minimizer is not None
        batch = point["sampling"]["batch_size"]
        cfg = SimConfig(
            problem=problem,
            optimizer=point["optimizer"]["kind"],
            schedule=point["schedule"]["kind"],
            scheme=point["sampling"]["scheme"],
            batch_size=batch,
            steps=steps,
            block=point["run"]["block"] or default_block(problem, batch),
            record_steps=tuple(int(x) for x in snap),
            bias_correction=point["optimizer"]["bias_correction"],
            bound=point["run"]["bound"],
            fast_pow=point["run"]["fast_pow"],
        )
        params, index = _group_params(
            [points[g] for g in gids], gids, seeds, s["seed"], problem, dtype
        )
        # Static per group: every unit (chunk) of the group compiles the same program.
        cfg = dataclasses.replace(cfg, shared_powers=shares_powers(params))
        groups.append(Group(cfg=cfg, params=params, index=index, point=point, dtype=dtype, chunk=0))

    recorders = default_recorders(s, groups, steps)
    for g in groups:
        extra = sum(r.bytes_per_run(dim, g.cfg.block) for r in recorders)
        # Refuse before allocating: a chunk holds at least one run.
        one = run_bytes(g.cfg.problem, g.cfg.batch_size, g.cfg.block, len(snap), extra)
        if one > budget:
            raise SpecError(
                f"run: one run needs {_size_text(one)} of device memory (noise block of "
                f"{g.cfg.block} steps × batch {g.cfg.batch_size}, dim {dim}, {len(snap)} "
                f"snapshots) but a chunk may use {_size_text(budget)}; lower run.block, "
                "record.snapshots or the problem size, or raise --budget"
            )
        ch = (
            chunk
            or g.point["run"]["chunk"]
            or auto_chunk(g.cfg.problem, g.cfg.batch_size, g.cfg.block, len(snap), budget, extra)
        )
        g.chunk = min(ch, len(g.index))
    plan = Plan(
        param_names=tuple(built[0].param_names()),
        provenance=dict(build.provenance),
        loaded=loaded,
        axes=axes,
        zip_coords=zip_coords,
        seeds=seeds,
        dim=dim,
        snapshot_steps=snap,
        groups=groups,
        n_points=len(points),
        has_minimizer=has_min,
        recorders=recorders,
    )
    # The plan stands (problems built, sizes checked): now the spec's warnings, before
    # the recorders' preparation (with [flow]: minutes of pass 1 and flows).
    issue_notes(loaded.deferred)
    if wrap is not None:
        warnings.warn(wrap, UserWarning, stacklevel=2)
    kept = None
    if prepare is not None:
        kept = prepare.open(loaded.hash, bool(build.provenance.get("problem_hash")))
    for i, rec in enumerate(recorders):
        parts = None if kept is None else kept.part(f"recorder{i}")
        for g, (obs, args) in zip(plan.groups, rec.prepare(plan, progress, parts), strict=True):
            if obs is None:
                continue
            if g.cfg.observer is not None:
                raise SpecError("recorders: only one recorder with an observer per plan")
            g.cfg = dataclasses.replace(g.cfg, observer=obs)
            g.params = g.params._replace(obs_args=args)
    return plan


def _check_run_count(n_runs: int, dim: int = 0) -> None:
    """Refuse sweeps beyond the run counter (uint32) or whose per-run host arrays (keys,
    hyperparameters: 64 bytes; start and final θ: 16 bytes per coordinate) cannot fit
    in half of this machine's memory."""
    if n_runs >= 2**32:
        raise SpecError(f"run.seeds × grid points = {n_runs} runs: at most 2**32 − 1")
    host = _host_memory()
    need = n_runs * (64 + 16 * dim)
    if host is not None and need > host / 2:
        raise SpecError(
            f"run.seeds × grid points = {n_runs} runs of dim {dim}: planning them needs "
            f"{_size_text(need)} of host memory (this machine has {_size_text(host)}); "
            "split the sweep or lower the problem size"
        )


def _group_params(
    points, gids, seeds, base_seed, problem: Problem, dtype
) -> tuple[RunParams, np.ndarray]:
    d = int(problem.dim)
    npd = np.float64 if dtype == jnp.float64 else np.float32

    def col(table, key):
        return np.repeat(np.asarray([p[table][key] for p in points], npd), seeds)

    seed_idx = np.tile(np.arange(seeds), len(points))
    keys = np.asarray(run_keys(base_seed, seed_idx))
    theta0 = []
    default0 = None if problem.seeded_init else problem.default_theta0()
    for p in points:
        th = p["run"]["theta0"]
        if th is None:
            th = np.ones(d) if default0 is None else np.asarray(default0)
        theta0.append(np.broadcast_to(np.asarray(th, np.float64), (d,)))
    theta0 = np.repeat(np.asarray(theta0, npd), seeds, axis=0)
    if problem.seeded_init:  # the problem draws each run's start from its own key
        drawn = np.asarray(
            jax.vmap(lambda k: problem.default_theta0(jax.random.fold_in(k, _INIT_TAG)))(keys),
            npd,
        )
        given = np.repeat([p["run"]["theta0"] is not None for p in points], seeds)
        theta0 = np.where(given[:, None], theta0, drawn)
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
