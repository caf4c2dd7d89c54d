"""The ``adamjax`` command line.

::

    adamjax run SPEC.toml [--out DIR] [--resume] [--force] [--chunk N] [--budget SIZE]
                          [--set KEY=VALUE]… [--scale NAME]
                          [--distributed] [--progress | --no-progress]
    adamjax plot RESULTS [--x KEY] [--y KEY] [--var NAME] [--stat median|mean|fraction]
                         [--out FILE]
    adamjax summary RESULTS [--json]
    adamjax check RESULTS [--json]        verify a store: every chunk finished and intact
    adamjax docs [--out DIR]              write docs/spec.md and docs/results.md
    adamjax list                          experiments shipped in experiments/
    adamjax info                          versions, backend, devices, memory
    adamjax bench [ARGS…]                 benchmarks/run.py
    adamjax figures [NAME…] [--scale smoke|paper] [--out DIR]
    adamjax demo [ARGS…]

The command line is an application of the public API: it imports ``adamjax`` and
nothing private. Bad input (a bad spec, a missing file, a folder holding another
spec's results) prints one line ``adamjax: error: <key> = <value>: <reason>`` on
stderr and exits with code 2 — never a traceback. Warnings (β1² ≥ β2) print one
line each and the run goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import importlib.util
import json
import os
import re
import signal
import sys
import threading
import time
import tomllib
import warnings
from pathlib import Path

EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention
EXIT_TERMINATED = 128 + signal.SIGTERM

_REPO = Path(__file__).resolve().parents[2]


class _Usage(Exception):
    """A bad command line (argparse error), reported like bad input."""


class _Terminated(BaseException):
    """SIGTERM (a scheduler's or ``kill``'s stop): handled like Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # noqa: D401 - argparse hook
        raise _Usage(message)


def _one_line(msg) -> str:
    return " ".join(str(msg).split())


def _err(msg) -> None:
    print(f"adamjax: error: {_one_line(msg)}", file=sys.stderr, flush=True)


def _showwarning(message, category, filename, lineno, file=None, line=None):
    print(f"adamjax: warning: {_one_line(message)}", file=sys.stderr, flush=True)


# --- parser -------------------------------------------------------------------

_DELEGATED = ("figures", "demo", "bench")
# The results folder of the current ``adamjax run`` (what an interruption can keep).
_RUN_FOLDER: list[Path] = []
_RUN_T0: list[float] = [0.0]  # when it started (wall clock, as file times)
_FIGUREKIT = "figurekit.py"  # the figure scripts' entry point in experiments/


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="adamjax",
        description="Massively parallel Adam runs: sweeps, the Adam vector field ODE, APT errors.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="run an experiment spec into OUT/<name>/results.zarr")
    r.add_argument("spec", help="a TOML spec file, or the name of an experiment in experiments/")
    r.add_argument("--out", default="results", help="output folder (default: results)")
    r.add_argument("--resume", action="store_true", help="continue a killed run of this spec")
    r.add_argument(
        "--force",
        action="store_true",
        help="overwrite a folder holding another spec's results or an unfinished run",
    )
    r.add_argument("--chunk", type=int, help="runs per chunk (default: from the memory budget)")
    r.add_argument(
        "--budget", help="memory budget per device for one chunk, e.g. 512M, 2G (default: auto)"
    )
    r.add_argument(
        "--distributed",
        action="store_true",
        help="start jax.distributed (automatic under SLURM srun or JAX_COORDINATOR_ADDRESS)",
    )
    r.add_argument("--coordinator", help="coordinator address host:port (with --distributed)")
    r.add_argument("--num-processes", type=int, help="number of processes (with --distributed)")
    r.add_argument("--process-id", type=int, help="this process's rank (with --distributed)")
    r.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec key (repeatable; VALUE in TOML): --set run.steps=3000 "
        "--set sweep.optimizer.b2=[0.9,0.99]",
    )
    r.add_argument("--scale", help="apply the spec's [scale.NAME] table, e.g. smoke")
    g = r.add_mutually_exclusive_group()
    g.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="always show a progress bar",
    )
    g.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress output (a resumed run still says so in one line)",
    )

    pl = sub.add_parser("plot", help="plot the results of a run (phase diagram, curves, APT)")
    pl.add_argument("results", help="OUT/<name>/results.zarr (or the folder OUT/<name>)")
    pl.add_argument("--x", help="sweep axis on x (default: β1, or the first axis)")
    pl.add_argument("--y", help="sweep axis on y (default: β2, or the second axis)")
    pl.add_argument(
        "--var",
        help="variable (phase diagram: default gap_final, else loss_final; curves: loss or theta)",
    )
    pl.add_argument(
        "--stat",
        default=None,
        choices=("median", "mean", "fraction"),
        help="over seeds (default: fraction of runs for outcome (diverging) and flags "
        "such as diverged, else median)",
    )
    pl.add_argument("--out", help="PNG, SVG or PDF file (default: plot.png beside the store)")
    sm = sub.add_parser("summary", help="a table per grid point; critical β2 per β1")
    sm.add_argument("results", help="OUT/<name>/results.zarr (or the folder OUT/<name>)")
    sm.add_argument("--json", action="store_true", help="machine-readable output")

    ck = sub.add_parser("check", help="verify a results folder without running anything")
    ck.add_argument("results", help="OUT/<name> (or OUT/<name>/results.zarr)")
    ck.add_argument("--json", action="store_true", help="machine-readable output")

    dc = sub.add_parser("docs", help="write the spec and results reference (docs/spec.md, …)")
    dc.add_argument("--out", default="docs", help="folder (default: docs)")

    sub.add_parser("list", help="experiments shipped in experiments/")
    sub.add_parser("info", help="versions, backend, devices, memory")
    sub.add_parser("bench", help="run the benchmarks (benchmarks/run.py)", add_help=False)
    sub.add_parser(
        "figures",
        help="regenerate figures: [NAME…] [--scale smoke|paper] [--out DIR]",
        add_help=False,
    )
    sub.add_parser("demo", help="a short end-to-end demonstration", add_help=False)
    return p


# --- helpers ------------------------------------------------------------------


def experiments_dir() -> Path:
    """Where the shipped experiments live (specs and figure scripts):
    ``$ADAMJAX_EXPERIMENTS``, else ``./experiments``, else the checkout's ``experiments/``."""
    env = os.environ.get("ADAMJAX_EXPERIMENTS")
    if env:
        return Path(env)
    here = Path.cwd() / "experiments"
    if here.is_dir():
        return here
    return _REPO / "experiments"


def _resolve_spec(arg: str) -> str:
    """A path, or the name of an experiment in experiments/ (``zhang-sweep``); a name
    that is neither gets the closest experiment names in its error."""
    if os.path.exists(arg) or os.sep in arg or arg.endswith(".toml"):
        return arg
    d = experiments_dir()
    cand = d / f"{arg}.toml"
    if cand.is_file():
        return str(cand)
    names = sorted(f.stem for f in d.glob("*.toml")) if d.is_dir() else []
    close = difflib.get_close_matches(arg, names, n=3)
    hint = f" (did you mean {' or '.join(close)}?)" if close else " (adamjax list shows them)"
    raise ValueError(f"spec = {json.dumps(arg)}: no such file or experiment{hint}")


def _open_results(arg: str):
    """The dataset of ``OUT/<name>/results.zarr`` (the folder ``OUT/<name>`` also works)."""
    import xarray as xr

    import adamjax

    path = Path(arg)
    if (path / "results.zarr").is_dir():
        path = path / "results.zarr"
    if not (path / "zarr.json").is_file() and not (path / ".zgroup").is_file():
        folder = path.parent if path.name == "results.zarr" else path
        if (folder / "progress").is_dir():  # the results folder of a run stopped early
            adamjax.check_store(folder)  # raises, saying so
        raise ValueError(
            f"results = {json.dumps(arg)}: not a results store (OUT/<name>/results.zarr)"
        )
    return xr.open_zarr(str(path)), path


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> float:
    """``"512M"``, ``"2G"``, ``"1.5GiB"``, ``"1000000"`` → bytes (powers of 1024)."""
    m = _SIZE.match(text or "")
    if not m:
        raise ValueError(f"--budget = {text!r}: expected a size such as 512M or 2G")
    unit = (m.group(2) or "").lower()[:1]
    mult = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[unit]
    val = float(m.group(1)) * mult
    if val <= 0:
        raise ValueError(f"--budget = {text!r}: must be > 0")
    return val


# --- commands -----------------------------------------------------------------


def _stopped(word: str) -> str:
    """What a stopped command kept: a run's folder holds its layout once a chunk is stored;
    before that, [flow]'s finished pass 1 and batches of flows (``OUT/<name>/prepare``)."""
    if _RUN_FOLDER and not (_RUN_FOLDER[0] / "layout.json").is_file():
        kept, new = _RUN_FOLDER[0] / "prepare", False
        # Parts this command wrote (not a stopped run's of another spec or version).
        with contextlib.suppress(OSError):
            new = any(p.stat().st_mtime >= _RUN_T0[0] for p in kept.rglob("*.npz"))
        if kept.is_dir() and new:
            return (
                f"{word} in the preparation: its finished part is kept in {kept} "
                "(resume with --resume)"
            )
        return f"{word} before any chunk was stored: nothing to resume (run the spec again)"
    return f"{word} (resume with --resume)"


def cmd_run(a) -> int:
    import adamjax

    if a.chunk is not None and a.chunk < 1:
        raise ValueError(f"--chunk = {a.chunk}: must be ≥ 1")
    budget = parse_size(a.budget) if a.budget is not None else None
    distributed = adamjax.initialize_distributed(
        coordinator=a.coordinator,
        num_processes=a.num_processes,
        process_id=a.process_id,
        required=a.distributed,
    )
    out = Path(a.out)
    spec = _resolve_spec(a.spec)
    with contextlib.suppress(Exception):  # a bad spec is reported by adamjax.run below
        loaded = adamjax.load_spec(spec, scale=a.scale, overrides=a.overrides, warn=False)
        _RUN_FOLDER[:] = [out / loaded.spec["name"]]
        _RUN_T0[0] = time.time() - 1.0  # file times may be coarse
    t0 = time.perf_counter()
    ds = adamjax.run(
        spec,
        out=out,
        progress=a.progress,
        chunk=a.chunk,
        resume=a.resume,
        force=a.force,
        budget=budget,
        scale=a.scale,
        overrides=a.overrides,
    )
    wall = time.perf_counter() - t0
    import jax

    if jax.process_index() == 0:
        sweep = [d for d in ds["theta_final"].dims if d not in ("seed", "dim")]
        shape = " × ".join(f"{d}={ds.sizes[d]}" for d in sweep) or "1 point"
        runs = int(ds["loss_final"].size)
        div = int(ds["diverged"].values.sum())
        outcome = ds["outcome"].values
        counts = ", ".join(
            f"{int((outcome == flag).sum())} {name}"
            for flag, name in (
                (adamjax.CONVERGED, "converged"),
                (adamjax.DIVERGING, "diverging"),
                (adamjax.UNDECIDED, "undecided"),
            )
        )
        store = out / _name_of(ds) / "results.zarr"
        procs = f", {jax.process_count()} processes" if distributed else ""
        print(
            f"adamjax: results in {store}: {shape} × seed={ds.sizes['seed']} ({runs} runs: "
            f"{counts}; {div} blew up) on {ds.attrs.get('device_count')} {ds.attrs.get('backend')} "
            f"device(s){procs} in {wall:.1f} s"
        )
    return 0


def cmd_check(a) -> int:
    import adamjax

    r = adamjax.check_store(a.results)
    if a.json:
        print(json.dumps(r, indent=1))
    elif r["ok"]:
        print(f"adamjax: {r['path']}: ok, {r['units']} of {r['units']} chunks finished and intact")
    else:
        parts = []
        if r["damaged"]:
            parts.append(f"{len(r['damaged'])} finished chunk(s) damaged (units "
                         f"{_few(r['damaged'])})")  # fmt: skip
        if r["unfinished"]:
            parts.append(f"{len(r['unfinished'])} of {r['units']} chunks unfinished")
        elif not r["complete"]:
            parts.append("every chunk finished, the final summary not written")
        _err(f"{r['path']}: " + "; ".join(parts) + " (adamjax run … --resume recomputes them)")
    return 0 if r["ok"] else EXIT_UNAVAILABLE


def _few(units, most: int = 8) -> str:
    return ", ".join(map(str, units[:most])) + (", …" if len(units) > most else "")


def cmd_plot(a) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import adamjax

    ds, path = _open_results(a.results)
    out = Path(a.out) if a.out else path.parent / "plot.png"
    if out.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ValueError(f"--out = {json.dumps(str(out))}: use a .png, .svg or .pdf file")
    fig = adamjax.plot.auto(ds, x=a.x, y=a.y, var=a.var, stat=a.stat)
    adamjax.plot.save(fig, out)
    print(f"adamjax: wrote {out}")
    return 0


def cmd_summary(a) -> int:
    import adamjax

    ds, _ = _open_results(a.results)
    s = adamjax.summary(ds)
    if a.json:
        print(json.dumps(_jsonable(s), indent=1))
    else:
        print(adamjax.plot.title(ds))
        print(adamjax.summary_table(ds, s))
    return 0


def _jsonable(s) -> dict:
    """The summary dataset as ``{"axes": [...], "points": [{axis: value, var: value}]}``."""
    import numpy as np

    axes = [d for d in s.dims if d != "dim"]
    flat = s.stack(point=axes) if axes else s.expand_dims("point")
    points = []
    for i in range(flat.sizes["point"]):
        p = flat.isel(point=i)
        row = {a: p[a].item() for a in axes}
        for k in s.data_vars:
            v = np.asarray(p[k].values, np.float64)
            clean = np.where(np.isfinite(v), v, np.nan).astype(object)
            clean[~np.isfinite(v)] = None  # JSON has no NaN
            row[k] = clean.tolist() if v.ndim else clean.item()
        points.append(row)
    return {"axes": axes, "points": points}


def cmd_docs(a) -> int:
    import adamjax

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in adamjax.reference().items():
        (out / name).write_text(text)
        print(f"adamjax: wrote {out / name}")
    return 0


def _name_of(ds) -> str:
    import adamjax

    return str(adamjax.plot.spec_of(ds).get("name", ""))


def cmd_list(a) -> int:
    d = experiments_dir()
    files = sorted(d.glob("*.toml")) if d.is_dir() else []
    if not files:
        print(f"no experiments in {d}")
        return 0
    rows = []
    for f in files:
        try:
            with open(f, "rb") as fh:
                spec = tomllib.load(fh)
            desc = _one_line(spec.get("description", "")) or "-"
            name = spec.get("name", f.stem)
        except (OSError, tomllib.TOMLDecodeError) as e:
            name, desc = f.stem, f"(unreadable: {_one_line(e)})"
        rows.append((f.stem, name, desc))
    w = max(len(r[0]) for r in rows)
    print(f"experiments in {d} (run one with `adamjax run NAME`):")
    for stem, name, desc in rows:
        label = stem if name == stem else f"{stem} ({name})"
        print(f"  {label:<{w}}  {desc}")
    return 0


def cmd_info(a) -> int:
    from . import info

    return info.main()


def _load_script(path: Path, name: str):
    """Import a script of the checkout (benchmarks/, experiments/) by its path."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(path.parent))
    return mod


def cmd_bench(argv) -> int:
    cands = [Path.cwd() / "benchmarks" / "run.py", _REPO / "benchmarks" / "run.py"]
    path = next((p for p in cands if p.is_file()), None)
    if path is None:
        _err("bench = benchmarks/run.py: not found (run from the repository root)")
        return EXIT_UNAVAILABLE
    return int(_load_script(path, "adamjax_benchmarks_run").main(list(argv)) or 0)


def cmd_figures(argv) -> int:
    path = experiments_dir() / _FIGUREKIT
    if not path.is_file():
        hint = "set ADAMJAX_EXPERIMENTS or run from the checkout"
        _err(f"figures = {str(path)!r}: not found ({hint})")
        return EXIT_UNAVAILABLE
    return int(_load_script(path, "adamjax_figurekit").main(list(argv)) or 0)


def cmd_demo(argv) -> int:
    from . import demo

    return int(demo.main(list(argv)) or 0)


# --- entry point --------------------------------------------------------------


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _RUN_FOLDER.clear()
    saved, warnings.showwarning = warnings.showwarning, _showwarning
    # SIGTERM ends a run like Ctrl-C: finished chunks are kept, one line says how to
    # resume (signal handlers can only be set from the main thread).
    main_thread = threading.current_thread() is threading.main_thread()
    saved_term = signal.signal(signal.SIGTERM, _on_sigterm) if main_thread else None
    try:
        if argv and argv[0] in _DELEGATED:
            cmd, rest = argv[0], argv[1:]
            return {"bench": cmd_bench, "figures": cmd_figures, "demo": cmd_demo}[cmd](rest)
        a = _parser().parse_args(argv)
        if a.command is None:
            _parser().print_help()
            return EXIT_BAD_INPUT
        commands = {
            "run": cmd_run,
            "plot": cmd_plot,
            "summary": cmd_summary,
            "check": cmd_check,
            "docs": cmd_docs,
            "list": cmd_list,
            "info": cmd_info,
        }
        return commands[a.command](a)
    except _Usage as e:
        _err(f"{e} (see adamjax -h)")
        return EXIT_BAD_INPUT
    except (
        ValueError,
        FileNotFoundError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
    ) as e:
        # SpecError and tomllib.TOMLDecodeError are ValueErrors.
        if isinstance(e, OSError) and e.filename:
            _err(f"{e.filename} : {e.strerror}".replace(" :", ":"))
        else:
            _err(e)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _err(_stopped("interrupted"))
        return EXIT_INTERRUPTED
    except _Terminated:
        _err(_stopped("terminated"))
        return EXIT_TERMINATED
    except BrokenPipeError:
        return 0
    except RuntimeError as e:
        if "RESOURCE_EXHAUSTED" not in str(e):
            raise
        # XLA could not allocate: a chunk or the problem is too large for the device.
        _err(
            "the runs do not fit in device memory (XLA: "
            f"{_one_line(str(e).split(':', 2)[-1])[:120]}); lower --chunk or --budget, "
            "run.block, record.snapshots or the problem size"
        )
        return EXIT_BAD_INPUT
    except OSError as e:
        # No space, a read-only file system, …: the environment, not the input.
        _err(f"{e.filename}: {e.strerror}" if e.filename else (e.strerror or e))
        return EXIT_UNAVAILABLE
    finally:
        warnings.showwarning = saved
        if saved_term is not None:
            signal.signal(signal.SIGTERM, saved_term)


if __name__ == "__main__":  # ``python -m adamjax.cli`` is ``python -m adamjax``
    import runpy

    runpy.run_module("adamjax", run_name="__main__")
