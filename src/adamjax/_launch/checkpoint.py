"""The finished parts of a run's preparation, kept on disk until its results are complete.

With ``[flow]`` a run first simulates every run to its window starts (the APT's pass 1)
and integrates a flow from each start: on a stiff problem minutes to hours of work before
the first chunk of results is stored. :class:`Checkpoint` keeps every finished part of
it — pass 1's window starts, each batch of flows (``_theory.apt.apt_prepare``) — as one
``.npz`` file under ``OUT/<name>/prepare/<spec hash>-<versions>/``, written durably
(``store.write_atomic``: a temporary file, then a rename), so that a stopped run
continues after its last finished part. The parts are deterministic functions of the
spec (seeds, the problem and its data: all in the spec hash) and of the software (the
adamjax and JAX versions and the x64 mode, in the folder name); each part also holds
the inputs it was computed from, which the reader compares (``apt_prepare``), so a
part read back is the part the run would compute. Process 0 writes, every process
reads; the folder is removed once the results are complete (``sweep``).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from .._engine.errors import SpecError
from .store import PREPARE, results_complete, write_atomic

_SUFFIX = ".npz"


class Checkpoint(MutableMapping):
    """A folder of named parts, each a dict of NumPy arrays (one ``.npz`` file).

    ``read=False``: nothing is found (a run that starts over); ``write=False``: nothing
    is kept (the processes of a multi-process run other than process 0). A part that
    cannot be read (damaged, cut short) counts as missing: it is computed again.
    """

    def __init__(
        self, folder: Path, *, read: bool = True, write: bool = True, base: Path | None = None
    ):
        self.folder, self.read, self.write = Path(folder), read, write
        # The folder adamjax owns (``OUT/<name>/prepare``): no link is followed below it.
        self.base = self.folder if base is None else Path(base)

    def part(self, name: str) -> Checkpoint:
        """The sub-folder ``name`` (one per recorder and group of runs)."""
        return Checkpoint(self.folder / name, read=self.read, write=self.write, base=self.base)

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}{_SUFFIX}"

    def __getitem__(self, key: str) -> dict[str, np.ndarray]:
        path = self._path(key)
        if not (self.read and path.is_file()) or path.is_symlink():
            raise KeyError(key)
        try:
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            raise KeyError(key) from None

    def __setitem__(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        if not self.write:
            return
        for d in [self.folder, *self.folder.parents]:
            if d.is_symlink():  # never write through a link (``store.refuse_links``)
                raise SpecError(f"{d}: a symbolic link; adamjax does not follow links there")
            if d == self.base:
                break
        self.folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        write_atomic(self._path(key), buf.getbuffer())

    def __delitem__(self, key: str) -> None:
        if not (self.write and self._path(key).is_file()):
            raise KeyError(key)
        self._path(key).unlink()

    def __iter__(self) -> Iterator[str]:
        if not (self.read and self.folder.is_dir()):
            return iter(())
        return iter(sorted(p.name[: -len(_SUFFIX)] for p in self.folder.glob(f"*{_SUFFIX}")))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def software_tag(adamjax_version: str) -> str:
    """What the parts' numbers depend on besides the spec: the adamjax and JAX versions
    and the x64 mode (the flows' dtype follows it)."""
    x64 = "x64" if jax.config.jax_enable_x64 else "x32"
    return f"adamjax{adamjax_version}-jax{jax.__version__}-{x64}"


@dataclass(frozen=True)
class PrepareFolder:
    """Where a run into ``OUT/<name>`` keeps its preparation (``root/prepare``).

    Args:
        root: the run's folder ``OUT/<name>``.
        version: the adamjax version (with JAX's and the x64 mode, :func:`software_tag`).
        resume: the run was asked to resume (``--resume``).
        force: the run starts over (``--force``): nothing is read back.
        writer: this process keeps the parts (process 0 of a multi-process run).
        refuse: refuse to throw kept parts away (a single process: with several, each
            would decide on its own while process 0 writes).
    """

    root: Path
    version: str
    resume: bool = False
    force: bool = False
    writer: bool = True
    refuse: bool = True

    def open(self, spec_hash: str, user_problem: bool) -> Checkpoint:
        """The checkpoint of the spec of hash ``spec_hash`` (the hash that includes a user
        problem's code and data), once the plan's problems are built (the x64 mode set).

        A built-in problem's parts are read back unless ``force`` (they are what the run
        would compute). A user's problem may call code outside its module, which no hash
        sees: its parts are read back on ``--resume`` only, and running it again over kept
        parts without ``--resume`` or ``--force`` is refused (as for an unfinished store)
        rather than throwing them away.
        """
        base = self.root / PREPARE
        folder = base / f"{spec_hash}-{software_tag(self.version)}"
        n = sum(1 for _ in folder.rglob(f"*{_SUFFIX}")) if folder.is_dir() else 0
        # (Parts beside complete results were left by a stop just before their removal.)
        if (
            self.refuse
            and user_problem
            and not (self.resume or self.force)
            and n
            and not results_complete(self.root)
        ):
            raise SpecError(
                f"out = {json.dumps(str(self.root))}: holds the unfinished preparation of "
                f"this spec ({n} finished part(s) of [flow]'s pass 1 and flows in "
                f"{PREPARE}/); pass --resume to continue it or --force to start over "
                "(--force as well if your problem changed since)"
            )
        read = not self.force and (self.resume or not user_problem)
        return Checkpoint(folder, read=read, write=self.writer, base=base)
