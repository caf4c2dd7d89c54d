"""Recorders: per-run outputs beyond the engine's, declared once, prepared with the plan.

A :class:`Recorder` declares its variables (name → trailing dims), its
coordinates and the bytes it needs per run (for the chunk size) when it is
created; :meth:`Recorder.prepare` gives each group of the plan the engine
:class:`~adamjax.Observer` and its per-run inputs (called by ``make_plan``);
:meth:`Recorder.finalize` turns a group's simulation result into the declared
variables (called by ``execute``); :meth:`Recorder.summarize` adds dataset-level
results once the whole dataset exists (called by ``run`` in memory and by
``sweep`` on the store). The dataset assembly and the store never call a recorder.

The one recorder today, :class:`APTRecorder`, is the ``[flow]`` table: the APT
error of every run (``_theory.apt``).
"""

from __future__ import annotations

import abc
import sys
import warnings
from typing import Any

import numpy as np

from .._engine.errors import AssumptionWarning, SpecError
from .._engine.simulate import Observer, RunResult
from .._theory.apt import FieldOptions, apt_errors_from, apt_prepare
from .._theory.decay import fit_decay
from .._theory.tabulated import GRID_MAX_NODES, grid_tabulable
from .._theory.vector_field import FIELD_OPTIMIZERS, MAX_SAMPLES, min_samples
from .._theory.windows import window_starts
from .progress import Progress, resolve_mode


class Recorder(abc.ABC):
    """Per-run outputs of a plan (see the module docstring)."""

    #: variable name → trailing dims after (sweep axes…, seed)
    variables: dict[str, tuple[str, ...]]
    #: extra coordinates of the dataset (name → (dim, values))
    coords: dict[str, Any] = {}
    #: CF attributes of its variables and coordinates: name → {long_name, units, description, …}
    attrs: dict[str, dict[str, Any]] = {}

    @abc.abstractmethod
    def bytes_per_run(self, dim: int, block: int) -> int:
        """Memory one run of a chunk needs for this recorder (sizes the chunks)."""

    @abc.abstractmethod
    def prepare(self, plan, progress=None, kept=None) -> list[tuple[Observer | None, Any]]:
        """Per group of ``plan``: the engine observer and its per-run inputs (leading run
        axis over the group's runs), or ``(None, None)``. ``progress``: the display mode
        of :class:`~adamjax._launch.progress.Progress` for work done here. ``kept``: a
        :class:`~adamjax._launch.checkpoint.Checkpoint` for the finished parts of long
        work (read back instead of computed again), or None."""

    @abc.abstractmethod
    def finalize(self, group, result: RunResult) -> dict[str, np.ndarray]:
        """The declared variables of the runs in ``result`` (leading run axis)."""

    def summarize(self, ds):
        """Dataset-level results added to the complete dataset ``ds``; returns it."""
        return ds


class APTRecorder(Recorder):
    """The ``[flow]`` table: ``apt_error`` (…, seed, window), ``vf_se`` (…, seed, window,
    dim), ``flow_ok`` and the coordinate ``window_start``; :meth:`summarize` adds
    ``apt_decay_exponent`` per grid point (also an attribute when there is no sweep).

    Reference: Dereich, Jentzen & Kassing (2025), Thm 1.5.
    """

    variables = {"apt_error": ("window",), "vf_se": ("window", "dim"), "flow_ok": ("window",)}
    _ATTRS = {
        "apt_error": (
            "APT error E_j(T)",
            "1",
            "max over the window [t_{n_j}, t_{n_j} + T] of |Θ_n − Φ_{t_n − t_{n_j}}(Θ_{n_j})| "
            "(DJK 2025, Thm 1.5); NaN: window not completed or flow failed",
        ),
        "vf_se": ("SE of the vector field at Θ_{n_j}", "1", "batch-means standard error of f̂"),
        "flow_ok": ("flow solve succeeded", "1", "diffrax is_successful for the window's flow"),
        "window_start": ("window start n_j", "1", "Adam step at which window j starts"),
        "window": ("window start n_j", "1", "Adam step at which window j starts (index)"),
        "apt_decay_exponent": (
            "decay exponent p of the median APT error",
            "1",
            "least-squares slope of log median_seeds E_j against log n_j over every window "
            "(the rate is asymptotic: early windows bias it in a short run; "
            "adamjax.fit_decay(window_start, apt_error, first=J // 2) fits the later half)",
        ),
        "apt_decay_exponent_se": (
            "standard error of the decay exponent",
            "1",
            "least-squares SE of the slope p",
        ),
    }

    def __init__(self, flow: dict, seed: int, groups, steps: int):
        """``flow`` the validated ``[flow]`` table, ``seed`` the spec's seed, ``groups``
        the plan's groups (their schedules fix the window starts)."""
        self.flow = flow
        _check_field(flow, groups)
        self.options = FieldOptions(
            **{k: flow[k] for k in FieldOptions._fields if k != "seed"}, seed=seed
        )
        self.samples_used: list[int] = []
        kinds = {g.cfg.schedule for g in groups}
        if len(kinds) > 1:
            raise SpecError("flow: all grid points must share one schedule kind")
        if kinds == {"constant"}:
            warnings.warn(
                'flow: schedule.kind = "constant": the APT error tends to 0 only for step '
                "sizes γ_n → 0 (Dereich, Jentzen & Kassing 2025, Thm 1.5); with a constant "
                "step it stays of the order of the step",
                AssumptionWarning,
                stacklevel=4,
            )
        scheds = set()
        for g in groups:
            R = len(g.index)
            s = g.params.sched
            rows = np.stack([np.broadcast_to(np.asarray(a, np.float64), (R,)) for a in s], -1)
            scheds |= {tuple(r) for r in np.unique(rows, axis=0)}
        self.starts = window_starts(
            steps, flow["windows"], flow["horizon"], kinds.pop(), sorted(scheds), flow["first"]
        )
        self.coords = {"window_start": ("window", self.starts), "window": ("window", self.starts)}
        self.attrs = {
            k: dict(zip(("long_name", "units", "description"), v, strict=True))
            for k, v in self._ATTRS.items()
        }
        self.attrs["apt_error"]["horizon"] = float(flow["horizon"])

    def bytes_per_run(self, dim: int, block: int) -> int:
        # The flow table (values and slopes, windows × grid × dim) and the block of
        # iterates its observer reads (block × (dim + 2)).
        windows, grid = self.flow["windows"], self.flow["grid"]
        return 8 * (2 * windows * grid * dim + windows * (dim + 6) + block * (dim + 2))

    def prepare(self, plan, progress=None, kept=None):
        out = []
        parts = [None if kept is None else kept.part(f"group{i}") for i in range(len(plan.groups))]
        found = sum(len(p) for p in parts if p is not None)
        if found and kept.write:  # announced even without progress output: work was kept
            print(
                f"adamjax: {plan.spec['name']}: [flow] continues its preparation from "
                f"{kept.folder.parent}: {found} finished part(s) found (pass 1, batches of flows)",
                file=sys.stderr,
                flush=True,
            )
        show = _StageProgress(plan.spec["name"], progress)
        try:
            for i, g in enumerate(plan.groups):
                obs, args, used = apt_prepare(
                    g.cfg,
                    g.params,
                    self.starts,
                    self.flow["horizon"],
                    self.options,
                    chunk=g.chunk,
                    progress=show,
                    flow_bar=show.flow_bar,
                    saved=parts[i],
                )
                out.append((obs, args))
                self.samples_used += [int(m) for m in used]
        finally:
            show.close()
        return out

    def finalize(self, group, result):
        err, se, ok = apt_errors_from(result, self.starts)
        return {"apt_error": err, "vf_se": se, "flow_ok": ok}

    def summarize(self, ds):
        n = ds["window_start"].values
        # A flow that failed from a start the run reached is unexplained (a NaN the user
        # must know about); a run that blew up before the window start explains its own.
        ok = ds["flow_ok"].values
        blown = ds["diverged"].values[..., None] & (
            (ds["diverged_step"].values[..., None] >= 0)
            & (ds["diverged_step"].values[..., None] <= n)
        )
        failed = int(np.sum(~ok & ~blown))
        ds.attrs["flow_failed"] = failed
        if failed:
            warnings.warn(
                f"flow: {failed} of {ok.size} flows failed (diffrax: step budget or "
                "non-finite values); their apt_error is NaN. Raise flow.max_steps or "
                "loosen flow.rtol/flow.atol (dataset attribute flow_failed)",
                RuntimeWarning,
                stacklevel=2,
            )
        if self.samples_used:
            ds.attrs["flow_samples"] = self.samples_used
        self._warn_se(ds["vf_se"])
        med = ds["apt_error"].median("seed", skipna=True)
        lead = med.dims[:-1]
        flat = med.values.reshape(-1, len(n))
        fits = [fit_decay(n, m, full=True) for m in flat]
        p = np.asarray([f.exponent for f in fits]).reshape(med.shape[:-1])
        se = np.asarray([f.se for f in fits]).reshape(med.shape[:-1])
        ds["apt_decay_exponent"] = (lead, p)
        ds["apt_decay_exponent_se"] = (lead, se)
        for k in ("apt_decay_exponent", "apt_decay_exponent_se"):
            ds[k].attrs.update(self.attrs[k], fit_first_window=0, fit_last_window=len(n) - 1)
        if not lead:
            ds.attrs["apt_decay_exponent"] = float(p)
            ds.attrs["apt_decay_exponent_se"] = float(se)
        return ds

    def _warn_se(self, se) -> None:
        """One warning when the field's SE at the window starts exceeds the asked
        ``target_se`` twice over (the pilot sized M at a few starts; M is capped)."""
        if self.options.samples is not None:
            return
        target = self.options.target_se
        worst = float(se.max(skipna=True))  # lazy over a store: one pass, no copy
        if worst > 2 * target:
            warnings.warn(
                f"flow: the field's standard error reaches {worst:.2g} (median "
                f"{float(se.median(skipna=True)):.2g}; dataset variable vf_se) against "
                f"flow.target_se = {target:g}, with {max(self.samples_used, default=0)} "
                f"samples (at most {MAX_SAMPLES}); give flow.samples for a longer chain",
                RuntimeWarning,
                stacklevel=3,
            )


def _check_field(flow: dict, groups) -> None:
    """The ``[flow]`` options that only the vector field can judge, checked before any
    simulation: the optimiser has a field, and ``flow.samples`` gives every batch mean
    at least ten correlation times of the chain at the largest β of the runs."""
    for g in groups:
        kind = g.cfg.optimizer
        if kind not in FIELD_OPTIMIZERS:
            raise SpecError(
                f"optimizer.kind = {kind!r}: [flow] needs the vector field, defined for "
                + ", ".join(FIELD_OPTIMIZERS)
            )
        if grid_tabulable(g.cfg.problem) and flow["nodes"] > GRID_MAX_NODES:
            raise SpecError(
                f"flow.nodes = {flow['nodes']}: the field of a two-parameter problem is "
                f"tabulated on nodes × nodes points; at most {GRID_MAX_NODES}"
            )
        if flow["samples"] is None:
            continue
        o = g.params.opt
        b1 = 0.0 if kind != "adam" else float(np.max(o.b1))
        b2 = 0.0 if kind == "signsgd" else float(np.max(o.b2))
        floor = min_samples(b1, b2, flow["batches"])
        if flow["samples"] < floor:
            raise SpecError(
                f"flow.samples = {flow['samples']}: too few for flow.batches = "
                f"{flow['batches']} batch means at β = {max(b1, b2):g} (each needs "
                f"≥ 10/(1 − β) steps); use flow.samples ≥ {floor} or fewer flow.batches"
            )
    if flow["samples"] is not None and flow["target_se"] != FieldOptions().target_se:
        # (The default target stays in the spec, and its hash, for stores made before.)
        warnings.warn(
            f"flow.target_se = {flow['target_se']:g} is not used: flow.samples = "
            f"{flow['samples']} fixes the chain length (remove it to size the chain by "
            "the target)",
            UserWarning,
            stacklevel=4,
        )


# The run's own display under ``[flow]``: the APT's second pass over the runs.
PASS_2 = "APT pass 2 (the runs, compared with the flows)"


class _StageProgress:
    """The APT preparation's progress (pass 1, field, flows) as one display per stage."""

    UNITS = {"pass 1": "run-step", "field": "field", "flows": "flow"}
    # What each stage does, as its display says it (pass 2 is the run's own display,
    # labelled with PASS_2).
    LABELS = {
        "pass 1": "APT pass 1 (runs to the window starts)",
        "field": "APT vector fields",
        "flows": "APT flows",
    }

    def __init__(self, name: str, mode):
        self.name, self.mode = name, mode
        self.stage, self.bar, self.done = None, None, 0
        # A terminal bar inside each batch of flows too (the stage bar moves between batches).
        self.flow_bar = resolve_mode(mode) == "bar"

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage, self.done = stage, 0
            self.bar = Progress(
                total, 0, f"{self.name}: {self.LABELS[stage]}", self.mode, unit=self.UNITS[stage]
            )
        if done > self.done:
            self.bar.update(done - self.done)
            self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = self.stage = None


def default_recorders(spec: dict, groups, steps: int) -> list[Recorder]:
    """The recorders a normalised spec asks for: :class:`APTRecorder` with ``[flow]``."""
    if spec.get("flow") is None:
        return []
    return [APTRecorder(spec["flow"], spec["seed"], groups, steps)]
