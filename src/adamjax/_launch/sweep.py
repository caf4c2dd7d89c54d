"""Running a plan into the store: units → processes → ``OUT/<name>/results.zarr``.

Process 0 takes the folder lock, checks the folder (``store.prepare_folder``),
runs unit 0, writes the skeleton and the layout. Then every process runs its units
(``u % process_count == process_index``), skipping those marked done: simulate →
region write → fsync → marker. A unit killed at any point before its marker is
redone on ``--resume``, so a resumed run gives the same dataset as an
uninterrupted one. At the end process 0 adds the recorders' dataset-level
summaries (``Recorder.summarize``). See ``store`` for the layout.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .._engine.errors import SpecError
from .._engine.shard import make_runner
from . import distributed as dist
from . import store as store_
from .dataset import adamjax_version, to_dataset
from .execute import run_group
from .outcome import UNDECIDED
from .plan import Plan
from .progress import Progress
from .recorders import PASS_2

# Automatic unit size: about 1/64 of the sweep, but at least this many runs (per device)
# and run-steps (2**28 ≈ 1–3 s of a 1-D unit on a CPU): a sweep of a few seconds runs
# as one call, with one store write, instead of paying per-unit costs many times.
MIN_UNIT_RUNS = 2048
MIN_UNIT_RUN_STEPS = 2**28
TARGET_UNITS = 64


def unit_target(plan: Plan, ndev: int, explicit_chunk: bool) -> int:
    """Runs per unit.

    An explicit chunk (``--chunk`` / ``run.chunk``) is the unit size, over all
    local devices together. Otherwise: the memory-budget chunk (``group.chunk``,
    per device) × devices, but no more than needed for about ``TARGET_UNITS``
    units (and ≥ ``MIN_UNIT_RUNS`` per device and ``MIN_UNIT_RUN_STEPS`` run-steps), so
    that progress and resume have a useful granularity; balanced to equal units.
    """
    chunk = min(g.chunk for g in plan.groups)
    if explicit_chunk:
        return chunk
    budget = chunk * ndev
    least = max(MIN_UNIT_RUNS * ndev, -(-MIN_UNIT_RUN_STEPS // max(plan.steps, 1)))
    target = max(1, min(budget, max(least, -(-plan.n_runs // TARGET_UNITS))))
    # Balanced: units of equal size (every unit is padded to the largest one).
    return -(-plan.n_runs // -(-plan.n_runs // target))


def _pad_sizes(plan: Plan, layout: store_.Layout, ndev: int) -> list[int]:
    """Per group: the most runs it has in any unit, rounded up to the device count
    (every call of a group then has one shape: one compilation)."""
    bounds = np.asarray([layout.unit(u)[:2] for u in range(layout.n_units)], np.int64)
    out = []
    for g in plan.groups:
        cnt = np.searchsorted(g.index, bounds[:, 1]) - np.searchsorted(g.index, bounds[:, 0])
        m = int(cnt.max()) if len(cnt) else 1
        out.append(-(-max(m, 1) // ndev) * ndev)
    return out


def unit_groups(plan: Plan, pads) -> list:
    """The plan's groups, each with a chunk that holds its padded share of a unit (one
    simulate call per group and unit)."""
    return [
        g if g.chunk >= pad else replace(g, chunk=pad)
        for g, pad in zip(plan.groups, pads, strict=True)
    ]


def run_unit(
    plan: Plan, layout: store_.Layout, u: int, pads, runner, progress=None, groups=None
) -> dict:
    """Simulate the runs of unit ``u``; returns ``{var: array}`` over them (flat order)."""
    lo, hi, _, _ = layout.unit(u)
    out: dict[str, np.ndarray] = {}
    groups = unit_groups(plan, pads) if groups is None else groups
    for g, pad in zip(groups, pads, strict=True):
        a, b = np.searchsorted(g.index, [lo, hi])
        if b <= a:
            continue
        pos = np.arange(a, b)
        padded = np.concatenate([pos, np.full(pad - len(pos), pos[0])]) if pad > len(pos) else pos
        res = run_group(plan, g, runner=runner, sl=padded)
        where = g.index[pos] - lo
        for k, v in res.items():
            v = np.asarray(v)[: len(pos)]
            if k not in out:
                out[k] = np.zeros((hi - lo, *v.shape[1:]), v.dtype)
            out[k][where] = v
        if progress is not None:
            progress(len(pos) * plan.steps)
    return out


def run_to_store(
    plan: Plan,
    out,
    *,
    progress: bool | None = None,
    resume: bool = False,
    force: bool = False,
    runner=None,
    explicit_chunk: bool | None = None,
):
    """Run ``plan`` into ``out/<name>/results.zarr`` (see module doc); returns the dataset
    (``xarray.open_zarr`` of the store)."""
    name = plan.spec["name"]
    root = Path(out) / name
    key = f"adamjax/{name}/{plan.loaded.hash}"
    if runner is None:
        runner = make_runner()
    ndev = runner.device_count
    if explicit_chunk is None:
        explicit_chunk = plan.spec["run"]["chunk"] is not None
    lead = (*plan.shape, plan.seeds)
    dims = (*[n for n, _ in plan.axes], "seed")
    target = unit_target(plan, ndev, explicit_chunk)
    layout = replace(
        store_.make_layout(lead, dims, target, plan.loaded.hash),
        text_hash=plan.loaded.text_hash,
    )

    # Process 0 holds the folder lock (``held``) from before it touches the folder
    # until the run has returned.
    with contextlib.ExitStack() as held:
        return _run_to_store(
            plan,
            root,
            layout,
            key,
            runner,
            ndev,
            held,
            progress=progress,
            resume=resume,
            force=force,
        )


def _run_to_store(plan, root, layout, key, runner, ndev, held, *, progress, resume, force):
    name = plan.spec["name"]
    store = root / store_.STORE
    pidx, pcount = dist.process_index(), dist.process_count()
    done_before = False
    if pidx == 0:
        try:
            held.enter_context(store_.folder_lock(root))
            # Finished already (same spec, same adamjax, a built-in problem): a resume
            # with nothing to run; --force runs it again.
            done_before = not (
                resume or force or plan.provenance.get("problem_hash")
            ) and store_.finished_here(root, plan.loaded.hash, adamjax_version())
            layout = store_.prepare_folder(root, layout, resume=resume or done_before, force=force)
        except (SpecError, OSError) as e:
            dist.publish(key + "/layout", "error:" + str(e))
            if isinstance(e, OSError):
                raise SpecError(f"out = {json.dumps(str(root))}: {e.strerror or e}") from None
            raise
        dist.publish(key + "/layout", layout.to_json())
    else:
        msg = dist.receive(key + "/layout")
        if msg.startswith("error:"):
            raise SpecError(msg[len("error:") :])
        layout = store_.Layout.from_json(msg)
    fresh = layout.spec_hash == ""
    layout = replace(layout, spec_hash=plan.loaded.hash, text_hash=plan.loaded.text_hash)

    done = set() if fresh else store_.done_units(root)
    mine = [u for u in range(layout.n_units) if u % pcount == pidx and u not in done]
    pads = _pad_sizes(plan, layout, ndev)
    groups = unit_groups(plan, pads)
    runs_left = sum(layout.unit(u)[1] - layout.unit(u)[0] for u in mine)
    desc = name if pcount == 1 else f"{name} [{pidx}/{pcount}]"
    if plan.recorders:  # [flow]: this is the APT's second pass over the runs
        desc += f": {PASS_2}"
    if pidx == 0 and done_before:
        say_finished(desc, store)
    elif progress is not False:
        nd = len(done)
        print(
            f"adamjax: {desc}: {plan.n_runs} runs × {plan.steps} steps in {layout.n_units} "
            f"chunks of ≤ {layout.unit_runs} runs ({nd} done{', resumed' if nd else ''}; "
            f"{len(mine)} to run here on {ndev} device(s)), "
            f"{'' if fresh else 'resuming '}into {store}",
            file=sys.stderr,
            flush=True,
        )
    elif done:  # without progress output a resume is still announced: work was kept
        print(
            f"adamjax: {desc}: resuming into {store}: {len(done)} of {layout.n_units} chunks "
            f"done, {len(mine)} to run here",
            file=sys.stderr,
            flush=True,
        )
    bar = Progress(runs_left * plan.steps, 0, desc, progress)
    names = None
    try:
        for u in mine:
            t0 = time.monotonic()
            data = run_unit(plan, layout, u, pads, runner, progress=bar.update, groups=groups)
            if names is None:
                if fresh and pidx == 0:
                    # Runs not yet written read as such: undecided, no blow-up step.
                    fills = {"outcome": UNDECIDED, "diverged_step": -1}
                    arrays = store_.skeleton_arrays(data, plan.n_runs, fills)
                    skeleton = to_dataset(plan, arrays)
                    # Until the last unit is written (``complete`` below), summaries and
                    # plots refuse the store: its missing runs would read as undecided.
                    skeleton.attrs["complete"] = 0
                    store_.write_skeleton(store, skeleton, layout)
                    store_.write_layout(root, layout)
                    dist.publish(key + "/skeleton", "ok")
                elif fresh:
                    dist.receive(key + "/skeleton")
                names = set(store_.store_vars(store))
            files = store_.write_unit(store, layout, u, data, plan.variables, names)
            lo, hi, _, _ = layout.unit(u)
            secs = round(time.monotonic() - t0, 3)
            info = {"runs": [lo, hi], "process": pidx, "seconds": secs, "files": files}
            store_.mark_done(root, u, info)
    finally:
        bar.close()
    if fresh and not mine and pidx == 0:  # nothing to run here (cannot happen: unit 0 is ours)
        raise AssertionError("process 0 had no unit to write the skeleton from")
    dist.barrier(key + "/done")
    missing = layout.n_units - len(store_.done_units(root))
    if missing:
        raise RuntimeError(f"{missing} of {layout.n_units} units are not marked complete")
    if pidx == 0:
        if not fresh and mine:
            _record_launch(store)
        _summarize(store, plan)
        store_.write_summary(store, None, {"complete": 1})
        store_.remove_prepared(root)  # the preparation's kept parts (``checkpoint``)
    dist.barrier(key + "/post")
    import xarray as xr  # here, not above: the import (preload) overlaps the first unit

    return xr.open_zarr(str(store))


def say_finished(desc: str, store: Path) -> None:
    """The line of a run whose folder already holds its finished results."""
    print(
        f"adamjax: {desc}: {store} already holds the finished results of this spec: "
        "nothing to run (--force runs it again)",
        file=sys.stderr,
        flush=True,
    )


def _record_launch(store: Path) -> None:
    """A resume that ran units appends its device count to ``device_counts`` (a fresh
    launch's count is in the skeleton): a dataset written by launches on different
    device counts says so."""
    import jax
    import xarray as xr

    counts = list(xr.open_zarr(str(store)).attrs.get("device_counts", []))
    store_.write_summary(store, None, {"device_counts": [*counts, jax.device_count()]})


def _summarize(store: Path, plan: Plan) -> None:
    """Dataset-level results of the recorders (``Recorder.summarize``, e.g. fitted rates)
    from the complete store, added to it."""
    import xarray as xr

    if not plan.recorders:
        return
    ds = xr.open_zarr(str(store))
    before = dict(ds.attrs)
    post = ds.copy()
    for rec in plan.recorders:
        post = rec.summarize(post)
    new = [k for k in post.data_vars if k not in plan.variables]
    if new:
        out = post[new].load()
        store_.write_summary(store, out.drop_vars(list(out.coords)), dict(post.attrs))
        return
    changed = {
        k: v.item() if isinstance(v, np.generic) else v
        for k, v in post.attrs.items()
        if not _same(before.get(k), v)
    }
    if changed:
        store_.write_summary(store, None, changed)


def _same(a, b) -> bool:
    try:
        return bool(np.all(np.asarray(a) == np.asarray(b))) and type(a) is type(b)
    except Exception:  # noqa: BLE001
        return False
