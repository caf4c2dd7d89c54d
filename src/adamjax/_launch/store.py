"""On-disk results: the layout of ``OUT/<name>/``, its lock, and durable writes.

This module stores; it does not run anything (``sweep`` runs units into it).

Layout of ``OUT/<name>/``::

    results.zarr/     the dataset (docs/results.md), readable with ``xarray.open_zarr``
    layout.json       spec hash + how the runs are cut into units (written after
                      the skeleton: its presence means the skeleton is complete)
    progress/u000017  completion marker of unit 17 (written after its data is durable)
    prepare/          with [flow], the finished parts of the preparation until the
                      results are complete (``checkpoint``)

**Units.** The lead dims of every variable are ``(*sweep axes, seed)`` and runs
are numbered in C order over them. A *unit* is a block of runs that is one
zarr chunk of every variable: size 1 on the outer lead axes, a block of
``size`` on one axis, everything on the inner ones — so a unit is a contiguous
range of run numbers and an axis-aligned region of the arrays. Distinct units
touch distinct chunk files, so units can be written in any order and by any
number of processes at once. A unit holds at most the memory-budget chunk
(``make_plan``'s ``group.chunk``, times the local device count), so a sweep of
any size runs with bounded memory.

**Protocol** (carried out by ``sweep``). Process 0 checks the folder (a different
spec is refused unless forced; ``resume`` keeps the done units), runs unit 0,
writes the skeleton
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
import errno
import json
import math
import os
import shutil
import warnings
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .._engine.errors import SpecError

STORE = "results.zarr"
LAYOUT = "layout.json"
PROGRESS = "progress"
PREPARE = "prepare"  # the preparation's finished parts until the results are complete
LOCK = ".lock"
# What ``check`` / ``summary`` / ``plot`` say of a folder whose run stopped too early.
NOTHING_STORED = (
    "a run stopped here before its first chunk finished: nothing is stored yet; "
    "run the spec again (with --resume or without)"
)


def refuse_links(root: Path) -> None:
    """Refuse (one line) an output folder whose lock, progress folder, layout or store is
    a symbolic link: adamjax writes, truncates and deletes there, and a link planted by
    anyone who can write into a shared folder would redirect that to the link's target."""
    for name in (LOCK, PROGRESS, LAYOUT, STORE, PREPARE):
        p = root / name
        if p.is_symlink():
            raise SpecError(
                f"out = {json.dumps(str(root))}: {name} is a symbolic link (to "
                f"{json.dumps(os.readlink(p))}); adamjax does not follow links in its output "
                "folder: remove it"
            )


@contextlib.contextmanager
def folder_lock(root: Path):
    """Hold an exclusive advisory lock on ``root`` for a whole launch (process 0 only).

    A second launch into the same folder while one is running would wipe or overwrite
    its units; it is refused with a one-line error instead. ``flock`` is released by the
    kernel when the holder dies, so a killed run never leaves a stale lock behind. The
    lock file is opened without following a symbolic link (``O_NOFOLLOW``) and must be
    a regular file; the holder's pid is written in one fixed-width ``pwrite`` (never
    truncated), so a reader sees the old or the new pid, not an empty file.
    """
    import fcntl
    import stat

    root.mkdir(parents=True, exist_ok=True)
    refuse_links(root)
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(root / LOCK, flags, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:  # a link planted between the check and the open
            refuse_links(root)
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SpecError(f"out = {json.dumps(str(root))}: {LOCK} is not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise SpecError(
                f"out = {json.dumps(str(root))}: another adamjax run (pid {holder}) is "
                "writing this folder; wait for it to finish or choose another --out"
            ) from None
        os.pwrite(fd, f"{os.getpid():<20d}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


# --- units --------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """How the lead dims ``(*sweep axes, seed)`` are cut into units (see module doc)."""

    lead: tuple[int, ...]
    dims: tuple[str, ...]
    axis: int
    size: int
    spec_hash: str = ""
    text_hash: str = ""  # the spec's alone (``LoadedSpec.text_hash``); "" in older stores

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
            text_hash=d.get("text_hash", ""),
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


TMP_SUFFIX = ".tmp"


def write_atomic(path: Path, text: str | bytes | memoryview) -> None:
    """Write ``text`` (or bytes) to ``path`` durably: a temporary file, fsync, rename, fsync
    of the folder.

    The temporary file is created exclusively and without following links (anything
    already under its name, a link included, is removed first, never written
    through); ``rename`` replaces a link at ``path`` itself rather than writing
    through it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")
    with contextlib.suppress(FileNotFoundError):
        if tmp.is_symlink() or tmp.is_file():  # ours, left by a killed process of this pid
            tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "w" if isinstance(text, str) else "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, a stop: no temporary file left behind
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_path(path.parent)


def remove_prepared(root: Path) -> None:
    """Drop the preparation's kept parts (``checkpoint``): the results are complete."""
    if not (root / PREPARE).is_symlink():
        shutil.rmtree(root / PREPARE, ignore_errors=True)


def remove_stray_tmp(root: Path) -> int:
    """Delete the temporary files a process killed between writing and renaming a
    marker or the layout left behind (process 0, under the folder lock, before any
    unit runs); returns how many."""
    n = 0
    for d in (root, root / PROGRESS):
        if not d.is_dir() or d.is_symlink():
            continue
        for f in d.iterdir():
            if f.name.startswith(".") and f.name.endswith(TMP_SUFFIX) and not f.is_dir():
                f.unlink()
                n += 1
    return n


def _marker(root: Path, u: int) -> Path:
    return root / PROGRESS / f"u{u:06d}"


def mark_done(root: Path, u: int, info: dict) -> None:
    """Mark unit ``u`` complete (call only after its data is durable, see :func:`write_unit`)."""
    write_atomic(_marker(root, u), json.dumps({"unit": u, **info}))


def write_layout(root: Path, layout: Layout) -> None:
    """Record the layout (its presence means the skeleton is complete)."""
    write_atomic(root / LAYOUT, layout.to_json())


def done_units(root: Path) -> set[int]:
    """The units marked complete in ``root``."""
    d = root / PROGRESS
    if not d.is_dir():
        return set()
    out = set()
    for f in d.iterdir():
        if f.name.startswith("u") and f.name[1:].isdigit():
            out.add(int(f.name[1:]))
    return out


def existing_hash(root: Path) -> str | None:
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


def existing_text_hash(root: Path) -> str | None:
    """The hash of the spec alone of the run in ``root`` (its spec hash in a store that
    predates ``text_hash``: the same for the built-in problems)."""
    lp = root / LAYOUT
    with contextlib.suppress(Exception):
        if lp.is_file():
            return Layout.from_json(lp.read_text()).text_hash or existing_hash(root)
    return existing_hash(root)


def refuse_unfinished(
    root: Path, new: str, *, resume: bool, force: bool, old=None, changed: str = ""
) -> None:
    """Refuse to start over in a folder holding an unfinished run of the spec of hash
    ``new`` (without ``resume`` or ``force``): its finished chunks would be thrown away.
    ``adamjax.run`` also calls this before planning, with the spec's ``text_hash`` and
    ``old = existing_text_hash(root)``, so that the refusal comes first (before a user
    problem is built and before ``[flow]``'s pass 1); ``changed`` ends the message (there:
    what to do if the user's problem changed since)."""
    old = existing_hash(root) if old is None else old
    if old != new or resume or force or not (root / LAYOUT).is_file():
        return
    n_units = Layout.from_json((root / LAYOUT).read_text()).n_units
    n_done = len(done_units(root) & set(range(n_units)))
    # All units done but not marked complete: killed in the final summary step.
    if 0 < n_done < n_units or (n_done == n_units and not _marked_complete(root)):
        raise SpecError(
            f"out = {json.dumps(str(root))}: holds an unfinished run of this spec "
            f"({n_done} of {n_units} chunks finished); pass --resume to finish it or "
            f"--force to start over{changed}"
        )


def refuse_other_spec(root: Path, new: str, text_hash: str, *, force: bool, old=None) -> None:
    """Refuse (unless ``force``) a folder holding the results of another spec than the one
    of hash ``new`` (``text_hash``: of its text alone, to say when only the problem
    changed). ``adamjax.run`` also calls this before planning (a built-in problem's hash
    is known then), so that [flow]'s preparation is not computed only to be refused."""
    old = existing_hash(root) if old is None else old
    if old is None or old == new or force:
        return
    if text_hash and existing_text_hash(root) == text_hash:
        raise SpecError(
            f"out = {json.dumps(str(root))}: holds results of this spec with another "
            "problem (the problem's code or data changed since: spec_hash "
            f"{old}, now {new}); choose another --out or pass --force to overwrite"
        )
    raise SpecError(
        f"out = {json.dumps(str(root))}: holds results of a different spec "
        f"(spec_hash {old}, this spec {new}); choose another --out or pass --force "
        "to overwrite"
    )


def prepare_folder(root: Path, layout: Layout, *, resume: bool, force: bool) -> Layout:
    """Process 0: check and (re)initialise the folder for ``layout`` (whose ``spec_hash``
    is the new spec's); returns the layout to use.

    A returned layout with ``spec_hash == ""`` means: start fresh."""
    refuse_links(root)
    remove_stray_tmp(root)
    new = layout.spec_hash
    old = existing_hash(root)
    refuse_other_spec(root, new, layout.text_hash, force=force, old=old)
    refuse_unfinished(root, new, resume=resume, force=force, old=old)
    if resume and old == new and (root / LAYOUT).is_file():
        bad = damaged_units(root, done_units(root))
        if bad:
            forget_units(root, bad)
            warnings.warn(
                f"{root / STORE}: {len(bad)} finished chunk(s) no longer hold what was "
                f"written (units {_units_text(bad)}): running them again",
                RuntimeWarning,
                stacklevel=2,
            )
        return Layout.from_json((root / LAYOUT).read_text())
    for p in (root / LAYOUT, root / PROGRESS, root / STORE):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    (root / PROGRESS).mkdir(parents=True, exist_ok=True)
    return replace(layout, spec_hash="")


def finished_here(root: Path, new: str, version: str) -> bool:
    """Whether ``root`` holds the finished, intact results of the spec of hash ``new``,
    written by adamjax ``version`` (the same engine: its jax version and backend are not
    compared). Only for built-in problems: a user's problem may depend on code that its
    hash does not cover."""
    if existing_hash(root) != new or not (root / LAYOUT).is_file():
        return False
    refuse_links(root)
    n_units = Layout.from_json((root / LAYOUT).read_text()).n_units
    done = done_units(root) & set(range(n_units))
    import zarr

    attrs = {}
    with contextlib.suppress(Exception):
        attrs = dict(zarr.open_group(str(root / STORE), mode="r").attrs)
    if len(done) < n_units or not attrs.get("complete", 1):
        return False
    # Reading every chunk (the CRC check) last, once the cheap conditions hold.
    return attrs.get("adamjax_version") == version and not damaged_units(root, done)


def results_complete(root: Path) -> bool:
    """Whether ``root`` holds a store whose last unit and final summary were written."""
    return (root / LAYOUT).is_file() and _marked_complete(root)


def _marked_complete(root: Path) -> bool:
    """The store's ``complete`` attribute (1 in stores made before it existed)."""
    import zarr

    with contextlib.suppress(Exception):
        return bool(zarr.open_group(str(root / STORE), mode="r").attrs.get("complete", 1))
    return True


def _units_text(units, most: int = 8) -> str:
    shown = ", ".join(str(u) for u in units[:most])
    return shown + (f", … ({len(units)} in all)" if len(units) > most else "")


def check_store(path) -> dict:
    """Verify a results folder ``OUT/<name>`` (or its ``results.zarr``) without running
    anything: every unit marked finished, every finished unit's chunk files as written.

    Returns:
        ``{"path", "units", "finished", "unfinished": [u…], "damaged": [u…], "complete",
        "ok"}``; ``ok`` is True when every unit is finished, none is damaged and the store
        is marked complete (its final summary written). A folder that is
        not a results folder raises :class:`SpecError`.
    """
    root = Path(path)
    if root.name == STORE:
        root = root.parent
    refuse_links(root)
    if not (root / LAYOUT).is_file() or not (root / STORE).is_dir():
        if (root / PROGRESS).is_dir():
            raise SpecError(f"results = {json.dumps(str(path))}: {NOTHING_STORED}")
        raise SpecError(
            f"results = {json.dumps(str(path))}: not a results folder (OUT/<name> with "
            f"{LAYOUT} and {STORE})"
        )
    layout = Layout.from_json((root / LAYOUT).read_text())
    done = done_units(root) & set(range(layout.n_units))
    damaged = damaged_units(root, done)
    unfinished = sorted(set(range(layout.n_units)) - done)
    complete = _marked_complete(root)
    return {
        "path": str(root),
        "units": layout.n_units,
        "finished": len(done) - len(damaged),
        "unfinished": unfinished,
        "damaged": damaged,
        "complete": complete,
        "ok": not unfinished and not damaged and complete,
    }


def _fill(dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.array(np.nan, dtype)
    return np.zeros((), dtype)


def skeleton_arrays(first: dict, n_runs: int, fills: dict | None = None) -> dict:
    """Placeholders for every run, shaped like the unit results ``first``: ``fills[k]``
    where given, else NaN / 0 / False."""
    fills = fills or {}

    def fill(k, v):
        value = np.asarray(fills[k], v.dtype) if k in fills else _fill(v.dtype)
        return np.broadcast_to(value, (n_runs, *v.shape[1:]))

    return {k: fill(k, v) for k, v in first.items()}


def write_skeleton(store: Path, ds, layout: Layout) -> None:
    """Write the whole dataset ``ds`` of placeholders, chunked by units, with its
    coordinates, attributes and consolidated metadata."""
    lead = len(layout.dims)
    enc = {k: {"chunks": layout.chunks(ds[k].shape[lead:])} for k in ds.data_vars}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(store), mode="w", encoding=enc, consolidated=True)


def write_unit(store: Path, layout: Layout, u: int, data: dict, dims_of: dict, names) -> dict:
    """Write unit ``u``'s results ``data`` (flat over its runs; trailing dims ``dims_of``)
    into its region of every stored variable in ``names``, durably (fsync of its chunk
    files) before returning; returns ``{chunk file: [size, CRC-32] or None}`` for the
    unit's marker."""
    import xarray as xr

    lo, hi, region, cidx = layout.unit(u)
    shape = tuple(s.stop - s.start for s in region.values())
    data_vars = {
        k: (layout.dims + dims_of[k], v.reshape(shape + v.shape[1:]))
        for k, v in data.items()
        if k in names
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.Dataset(data_vars).to_zarr(str(store), region=region, mode="r+", consolidated=False)
    # Durable before the marker: fsync the unit's chunk file of every variable; the
    # marker records each file's size and CRC-32 (None: no file, the chunk is all fill).
    files = {}
    for k, v in data_vars.items():
        ntrail = len(v[0]) - len(layout.dims)
        f = store / k / "c" / Path(*[str(i) for i in (*cidx, *(0,) * ntrail)])
        if f.exists():
            _fsync_path(f)
            _fsync_path(f.parent)
        files[f.relative_to(store).as_posix()] = _digest(f)
    return files


def _digest(path: Path) -> list[int] | None:
    """``[size, CRC-32]`` of a file, None if there is none."""
    crc, size = 0, 0
    try:
        with open(path, "rb") as f:
            while piece := f.read(1 << 20):
                crc, size = zlib.crc32(piece, crc), size + len(piece)
    except FileNotFoundError:
        return None
    return [size, crc]


def damaged_units(root: Path, units) -> list[int]:
    """The units among ``units`` whose marker is unreadable or whose chunk files no
    longer have the size and CRC-32 recorded when they were written (truncated,
    deleted, overwritten)."""
    store = root / STORE
    bad = []
    for u in sorted(units):
        try:
            files = json.loads(_marker(root, u).read_text())["files"]
            ok = isinstance(files, dict) and all(
                _digest(store / rel) == (None if d is None else list(d)) for rel, d in files.items()
            )
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            bad.append(u)
    return bad


def forget_units(root: Path, units) -> None:
    """Remove the markers of ``units`` (they will be run again)."""
    for u in units:
        with contextlib.suppress(FileNotFoundError):
            _marker(root, u).unlink()


def store_vars(store: Path) -> list[str]:
    """The variables of a store."""
    import zarr

    g = zarr.open_group(str(store), mode="r")
    return [k for k, _ in g.arrays()]


def write_summary(store: Path, new, attrs: dict) -> None:
    """Add dataset-level variables ``new`` (an ``xarray.Dataset`` without coordinates,
    written with ``attrs`` as the group attributes) or, with none, update the group
    attributes by ``attrs``; then consolidate the metadata."""
    import zarr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if new is not None and new.data_vars:
            # mode "a" replaces the group's attributes with the written dataset's.
            new.attrs = dict(attrs)
            new.to_zarr(str(store), mode="a", consolidated=False)
        elif attrs:
            zarr.open_group(str(store), mode="r+").attrs.update(attrs)
        zarr.consolidate_metadata(str(store))
