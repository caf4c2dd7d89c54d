"""On-disk results: ``OUT/<name>/results.zarr``, written chunk by chunk, resumable.

Layout of ``OUT/<name>/``::

    results.zarr/     the dataset (SPEC §3), readable with ``xarray.open_zarr``
    layout.json       spec hash + how the runs are cut into units (written after
                      the skeleton: its presence means the skeleton is complete)
    progress/u000017  completion marker of unit 17 (written after its data is durable)

**Units.** The lead dims of every variable are ``(*sweep axes, seed)`` and runs
are numbered in C order over them. A *unit* is a block of runs that is one
zarr chunk of every variable: size 1 on the outer lead axes, a block of
``size`` on one axis, everything on the inner ones — so a unit is a contiguous
range of run numbers and an axis-aligned region of the arrays. Distinct units
touch distinct chunk files, so units can be written in any order and by any
number of processes at once. A unit holds at most the memory-budget chunk
(``make_plan``'s ``group.chunk``, times the local device count), so a sweep of
any size runs with bounded memory.

**Protocol.** Process 0 checks the folder (a different spec is refused unless
forced; ``resume`` keeps the done units), runs unit 0, writes the skeleton
(every variable at full shape, filled with NaN / 0 / False, chunked by units;
coordinates and provenance attributes; consolidated metadata) and
``layout.json``. Then every process runs its units (``u % process_count ==
process_index``), skipping those marked done: simulate → region write →
``fsync`` of the unit's chunk files → marker (written to a temporary name,
``fsync``-ed, renamed). A unit killed at any point before its marker is redone
on ``--resume``, so a resumed run gives the same dataset as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from . import _distributed as dist
from ._run import VAR_DIMS, Plan, run_group, to_dataset
from ._spec import SpecError

STORE = "results.zarr"
LAYOUT = "layout.json"
PROGRESS = "progress"
LOCK = ".lock"


@contextlib.contextmanager
def folder_lock(root: Path):
    """Hold an exclusive advisory lock on ``root`` for a whole launch (process 0 only).

    A second launch into the same folder while one is running would wipe or overwrite
    its units; it is refused with a one-line error instead. ``flock`` is released by the
    kernel when the holder dies, so a killed run never leaves a stale lock behind.
    """
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise SpecError(
                f"out = {json.dumps(str(root))}: another adamjax run (pid {holder}) is "
                "writing this folder; wait for it to finish or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


# Automatic unit size: at least this many runs (per device), else about 1/64 of the sweep.
MIN_UNIT_RUNS = 2048
TARGET_UNITS = 64


# --- units --------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """How the lead dims ``(*sweep axes, seed)`` are cut into units (see module doc)."""

    lead: tuple[int, ...]
    dims: tuple[str, ...]
    axis: int
    size: int
    spec_hash: str = ""

    @property
    def stride(self) -> int:
        return math.prod(self.lead[self.axis + 1 :])

    @property
    def blocks(self) -> int:
        return -(-self.lead[self.axis] // self.size)

    @property
    def n_units(self) -> int:
        return math.prod(self.lead[: self.axis]) * self.blocks

    @property
    def unit_runs(self) -> int:
        return self.size * self.stride

    def unit(self, u: int):
        """``(lo, hi, region, chunk_index)`` of unit ``u``: runs ``lo..hi-1`` (flat),
        the region as {dim: slice}, and the unit's chunk index on the lead dims."""
        outer = np.unravel_index(u // self.blocks, self.lead[: self.axis]) if self.axis else ()
        b = u % self.blocks
        start = b * self.size
        length = min(self.size, self.lead[self.axis] - start)
        strides = [math.prod(self.lead[i + 1 :]) for i in range(len(self.lead))]
        lo = sum(int(i) * strides[k] for k, i in enumerate(outer)) + start * self.stride
        hi = lo + length * self.stride
        region = {d: slice(int(i), int(i) + 1) for d, i in zip(self.dims, outer, strict=False)}
        region[self.dims[self.axis]] = slice(start, start + length)
        for d, n in zip(self.dims[self.axis + 1 :], self.lead[self.axis + 1 :], strict=True):
            region[d] = slice(0, n)
        chunk_index = (*[int(i) for i in outer], int(b)) + (0,) * (len(self.lead) - self.axis - 1)
        return lo, hi, region, chunk_index

    def chunks(self, trailing: tuple[int, ...]) -> tuple[int, ...]:
        """zarr chunk shape of a variable with these trailing dims."""
        return (
            (1,) * self.axis
            + (self.size,)
            + tuple(self.lead[self.axis + 1 :])
            + tuple(max(1, n) for n in trailing)
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Layout:
        d = json.loads(text)
        return cls(
            lead=tuple(d["lead"]),
            dims=tuple(d["dims"]),
            axis=d["axis"],
            size=d["size"],
            spec_hash=d.get("spec_hash", ""),
        )


def make_layout(lead, dims, target: int, spec_hash: str = "") -> Layout:
    """Cut lead dims into units of at most ``max(target, seeds-or-inner-block)`` runs,
    as evenly as possible."""
    lead = tuple(int(n) for n in lead)
    target = max(1, int(target))
    strides = [math.prod(lead[i + 1 :]) for i in range(len(lead))]
    axis = next(i for i in range(len(lead)) if strides[i] <= target)
    cmax = max(1, min(lead[axis], target // strides[axis]))
    # Equal units waste nothing on padding: a divisor of the axis length if one is
    # close to the target, else blocks as even as possible.
    div = max(d for d in range(1, cmax + 1) if lead[axis] % d == 0)
    if 2 * div >= cmax:
        size = div
    else:
        nb = -(-lead[axis] // cmax)
        size = -(-lead[axis] // nb)
    return Layout(lead=lead, dims=tuple(dims), axis=axis, size=size, spec_hash=spec_hash)


def unit_target(plan: Plan, ndev: int, explicit_chunk: bool) -> int:
    """Runs per unit.

    An explicit chunk (``--chunk`` / ``run.chunk``) is the unit size, over all
    local devices together. Otherwise: the memory-budget chunk (``group.chunk``,
    per device) × devices, but no more than needed for about ``TARGET_UNITS``
    units (and ≥ ``MIN_UNIT_RUNS`` per device), so that progress and resume have
    a useful granularity.
    """
    chunk = min(g.chunk for g in plan.groups)
    if explicit_chunk:
        return chunk
    budget = chunk * ndev
    return max(1, min(budget, max(MIN_UNIT_RUNS * ndev, -(-plan.n_runs // TARGET_UNITS))))


# --- progress -----------------------------------------------------------------


class Progress:
    """A tqdm bar (run-steps/s, ETA) on a terminal, plain periodic log lines otherwise."""

    def __init__(self, total: int, initial: int, desc: str, mode: bool | None, interval=None):
        self.total, self.done, self.desc = int(total), int(initial), desc
        self.start_done = self.logged = self.done
        self.t0 = self.last = time.monotonic()
        self.interval = float(os.environ.get("ADAMJAX_LOG_INTERVAL", interval or 10.0))
        if mode is None:
            mode = "bar" if sys.stderr.isatty() else "log"
        elif mode is True:
            mode = "bar"
        elif mode is False:
            mode = "off"
        self.mode = mode
        self.bar = None
        if mode == "bar":
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=self.total,
                initial=self.done,
                unit="run-step",
                unit_scale=True,
                desc=desc,
                smoothing=0.1,
                dynamic_ncols=True,
            )
        elif mode == "log" and self.total:
            self._log(force=True)

    def update(self, n: int) -> None:
        self.done += int(n)
        if self.bar is not None:
            self.bar.update(int(n))
        elif self.mode == "log":
            self._log()

    def _log(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.interval and self.done < self.total:
            return
        self.last, self.logged = now, self.done
        el = now - self.t0
        rate = (self.done - self.start_done) / el if el > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = _hms(left) if math.isfinite(left) else "?"
        print(
            f"adamjax: {self.desc}: {self.done:.4g}/{self.total:.4g} run-steps ({pct:.0f}%), "
            f"{rate:.3g} run-steps/s, elapsed {_hms(el)}, ETA {eta}",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "log" and self.done != self.logged:
            self._log(force=True)


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


# --- files --------------------------------------------------------------------


def _fsync_path(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_path(path.parent)


def _marker(root: Path, u: int) -> Path:
    return root / PROGRESS / f"u{u:06d}"


def done_units(root: Path) -> set[int]:
    d = root / PROGRESS
    if not d.is_dir():
        return set()
    out = set()
    for f in d.iterdir():
        if f.name.startswith("u") and f.name[1:].isdigit():
            out.add(int(f.name[1:]))
    return out


def _existing_hash(root: Path) -> str | None:
    lp = root / LAYOUT
    if lp.is_file():
        with contextlib.suppress(Exception):
            return Layout.from_json(lp.read_text()).spec_hash
    if (root / STORE).exists():
        with contextlib.suppress(Exception):
            import zarr

            return str(zarr.open_group(str(root / STORE), mode="r").attrs["spec_hash"])
        # Unreadable: a skeleton killed while being written (we made progress/ first)
        # starts over; anything else is not ours to overwrite.
        return None if (root / PROGRESS).is_dir() else "?"
    return None


def _prepare(root: Path, plan: Plan, layout: Layout, *, resume: bool, force: bool) -> Layout:
    """Process 0: check and (re)initialise the folder; returns the layout to use.

    A ``layout`` with ``spec_hash == ""`` afterwards means: start fresh."""
    new = plan.loaded.hash
    old = _existing_hash(root)
    if old is not None and old != new and not force:
        raise SpecError(
            f"out = {json.dumps(str(root))}: holds results of a different spec "
            f"(spec_hash {old}, this spec {new}); choose another --out or pass --force "
            "to overwrite"
        )
    if resume and old == new and (root / LAYOUT).is_file():
        return Layout.from_json((root / LAYOUT).read_text())
    for p in (root / LAYOUT, root / PROGRESS, root / STORE):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    (root / PROGRESS).mkdir(parents=True, exist_ok=True)
    return replace(layout, spec_hash="")


def _fill(dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.array(np.nan, dtype)
    return np.zeros((), dtype)


def _dims_of(plan: Plan) -> dict[str, tuple[str, ...]]:
    d = dict(VAR_DIMS)
    for rec in plan.recorders:
        d.update(rec.dims)
    return d


def _write_skeleton(store: Path, plan: Plan, layout: Layout, first: dict) -> None:
    flat = {
        k: np.broadcast_to(_fill(v.dtype), (plan.n_runs, *v.shape[1:])) for k, v in first.items()
    }
    ds = to_dataset(plan, flat)
    enc = {k: {"chunks": layout.chunks(v.shape[1:])} for k, v in first.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(store), mode="w", encoding=enc, consolidated=True)


def _write_unit(store: Path, plan: Plan, layout: Layout, u: int, data: dict, names) -> None:
    import xarray as xr

    lo, hi, region, cidx = layout.unit(u)
    dims_of = _dims_of(plan)
    shape = tuple(s.stop - s.start for s in region.values())
    data_vars = {
        k: (layout.dims + dims_of[k], v.reshape(shape + v.shape[1:]))
        for k, v in data.items()
        if k in names
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset(data_vars).to_zarr(str(store), region=region, mode="r+", consolidated=False)
    # Durable before the marker: fsync the unit's chunk file of every variable.
    for k, v in data_vars.items():
        ntrail = len(v[0]) - len(layout.dims)
        f = store / k / "c" / Path(*[str(i) for i in (*cidx, *(0,) * ntrail)])
        if f.exists():
            _fsync_path(f)
            _fsync_path(f.parent)


# --- running ------------------------------------------------------------------


def _pad_sizes(plan: Plan, layout: Layout, ndev: int) -> list[int]:
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
    simulate call per group and unit). Made once per run: recorders cache by group."""
    return [
        g if g.chunk >= pad else replace(g, chunk=pad)
        for g, pad in zip(plan.groups, pads, strict=True)
    ]


def run_unit(plan: Plan, layout: Layout, u: int, pads, runner, progress=None, groups=None) -> dict:
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
    from ._shard import make_runner

    name = plan.spec["name"]
    root = Path(out) / name
    key = f"adamjax/{name}/{plan.loaded.hash}"
    if runner is None:
        runner = make_runner()
    ndev = getattr(runner, "device_count", 1)
    if explicit_chunk is None:
        explicit_chunk = plan.spec["run"]["chunk"] is not None
    lead = (*plan.shape, plan.seeds)
    dims = (*[n for n, _ in plan.axes], "seed")
    layout = make_layout(lead, dims, unit_target(plan, ndev, explicit_chunk), plan.loaded.hash)

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
    import xarray as xr

    name = plan.spec["name"]
    store = root / STORE
    pidx, pcount = dist.process_index(), dist.process_count()
    if pidx == 0:
        try:
            held.enter_context(folder_lock(root))
            layout = _prepare(root, plan, layout, resume=resume, force=force)
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
        layout = Layout.from_json(msg)
    fresh = layout.spec_hash == ""
    layout = replace(layout, spec_hash=plan.loaded.hash)

    done = set() if fresh else done_units(root)
    mine = [u for u in range(layout.n_units) if u % pcount == pidx and u not in done]
    pads = _pad_sizes(plan, layout, ndev)
    groups = unit_groups(plan, pads)
    runs_left = sum(layout.unit(u)[1] - layout.unit(u)[0] for u in mine)
    desc = name if pcount == 1 else f"{name} [{pidx}/{pcount}]"
    if progress is not False:
        nd = len(done)
        print(
            f"adamjax: {desc}: {plan.n_runs} runs × {plan.steps} steps in {layout.n_units} "
            f"chunks of ≤ {layout.unit_runs} runs ({nd} done{', resumed' if nd else ''}; "
            f"{len(mine)} to run here on {ndev} device(s)), "
            f"{'' if fresh else 'resuming '}into {store}",
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
                    _write_skeleton(store, plan, layout, data)
                    _write_atomic(root / LAYOUT, layout.to_json())
                    dist.publish(key + "/skeleton", "ok")
                elif fresh:
                    dist.receive(key + "/skeleton")
                names = set(_store_vars(store))
            _write_unit(store, plan, layout, u, data, names)
            lo, hi, _, _ = layout.unit(u)
            _write_atomic(
                _marker(root, u),
                json.dumps(
                    {
                        "unit": u,
                        "runs": [lo, hi],
                        "process": pidx,
                        "seconds": round(time.monotonic() - t0, 3),
                    }
                ),
            )
    finally:
        bar.close()
    if fresh and not mine and pidx == 0:  # nothing to run here (cannot happen: unit 0 is ours)
        raise AssertionError("process 0 had no unit to write the skeleton from")
    dist.barrier(key + "/done")
    missing = layout.n_units - len(done_units(root))
    if missing:
        raise RuntimeError(f"{missing} of {layout.n_units} units are not marked complete")
    if pidx == 0:
        _postprocess(store, plan)
    dist.barrier(key + "/post")
    return xr.open_zarr(str(store))


def _postprocess(store: Path, plan: Plan) -> None:
    """Dataset-level results of the recorders (``Recorder.postprocess``, e.g. fitted
    rates) from the complete store; written over the skeleton's placeholders."""
    import xarray as xr
    import zarr

    from ._run import Recorder

    recs = [r for r in plan.recorders if type(r).postprocess is not Recorder.postprocess]
    if not recs:
        return
    ds = xr.open_zarr(str(store))
    before_attrs = dict(ds.attrs)
    post = ds.copy()
    for rec in recs:
        post = rec.postprocess(plan, post)
    unit_vars = set(_dims_of(plan))
    new = [k for k in post.data_vars if k not in unit_vars]
    attrs = {k: v for k, v in post.attrs.items() if not _same(before_attrs.get(k), v)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if new:
            # mode "a" replaces the group's attributes with the written dataset's.
            out = post[new].load()
            out = out.drop_vars(list(out.coords))
            out.attrs = dict(post.attrs)
            out.to_zarr(str(store), mode="a", consolidated=False)
        elif attrs:
            zarr.open_group(str(store), mode="r+").attrs.update(
                {k: (v.item() if hasattr(v, "item") else v) for k, v in attrs.items()}
            )
        zarr.consolidate_metadata(str(store))


def _same(a, b) -> bool:
    try:
        return bool(np.all(np.asarray(a) == np.asarray(b))) and type(a) is type(b)
    except Exception:  # noqa: BLE001
        return False


def _store_vars(store: Path) -> list[str]:
    import zarr

    g = zarr.open_group(str(store), mode="r")
    return [k for k, _ in g.arrays()]
