"""Build the paper figures: one module per figure next to this file, one spec per figure.

``python experiments/figurekit.py [NAME…] [--scale smoke|paper] [--out DIR]
[--experiments DIR] [--list]`` builds the figures. Each figure ``NAME`` has

* a spec ``NAME.toml`` in this folder: an ordinary adamjax spec (docs/spec.md) plus two
  optional tables that are data, not code — ``[figure]`` (plot parameters, e.g.
  how many sample paths to draw or the vector-field sample size) and
  ``[scale.smoke]`` / ``[scale.paper]``, whose dotted keys override the spec
  (``"run.steps" = 2000``, ``"sweep.optimizer.b1" = [0.0, 0.5]``,
  ``"figure.samples" = 65536``);
* a module ``NAME.py`` in this folder (``-`` → ``_``) with the strings ``NAME``, ``CLAIM``,
  ``SOURCE`` and ``make(spec, fig, scale) -> (xarray.Dataset, matplotlib Figure, results)``,
  which uses only the public API of adamjax and the helpers here;
* outputs ``OUT/NAME.png`` and ``OUT/NAME.nc`` (netCDF: exactly the data that is
  plotted, the effective spec as TOML text in the ``spec`` attribute, and the
  measured results as ``result_*`` attributes), and ``OUT/results-SCALE.json`` with the
  results of all figures built. The data files are deterministic: fixed seeds, no time
  stamps or versions that change between runs.

This folder is not a package: the figure modules are loaded by file path, and they
``import figurekit``, which :func:`load_figure` makes mean this module.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import time
import tomllib
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np

import adamjax

HERE = Path(__file__).resolve().parent
SCALES = ("smoke", "paper")
# The figures, in the order they are built and listed.
FIGURES = (
    "ode-vs-adam",
    "limit-vs-vf-zero",
    "overparam-erm",
    "zhang-phase",
    "reddi",
    "d0-neighbourhood",
    "beta2-batchsize",
    "batch-threshold",
)


# --- figure modules and specs -----------------------------------------------------------


def module_path(name: str) -> Path:
    """The figure module of ``name``: ``NAME.py`` (``-`` → ``_``) next to this file."""
    return HERE / f"{name.replace('-', '_')}.py"


def _load_by_path(module_name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(module_name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_figure(name: str) -> ModuleType:
    """The figure module of ``name`` (``NAME``, ``CLAIM``, ``SOURCE``, ``make``)."""
    if name not in FIGURES:
        raise ValueError(f"figure {name!r}: unknown (known: {', '.join(FIGURES)})")
    import matplotlib

    matplotlib.use("Agg", force=False)
    # The figure modules say ``import figurekit``: that is this module, however it was
    # loaded (as a script it is ``__main__``); loaded by path without being registered in
    # sys.modules, a copy of this file is.
    if "figurekit" not in sys.modules:
        this = sys.modules.get(__name__)
        sys.modules["figurekit"] = this or _load_by_path("figurekit", Path(__file__))
    return _load_by_path(f"figure_{name.replace('-', '_')}", module_path(name))


def _set_dotted(d: dict, key: str, value) -> None:
    table, sep, rest = key.partition(".")
    if not sep:
        d[key] = value
        return
    d.setdefault(table, {})
    if table in ("sweep", "zip", "figure"):
        d[table][rest] = value
    else:
        _set_dotted(d[table], rest, value)


def load_figure_spec(name: str, scale: str = "paper", directory=None) -> tuple[dict, dict]:
    """``DIRECTORY/NAME.toml`` (default: this folder) at ``scale`` → (adamjax run spec,
    ``[figure]`` table)."""
    if scale not in SCALES:
        raise ValueError(f"--scale = {scale!r}: must be one of {', '.join(SCALES)}")
    path = Path(directory or HERE) / f"{name}.toml"
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    scales = raw.pop("scale", {}) or {}
    unknown = set(scales) - set(SCALES)
    if unknown:
        raise ValueError(f"{path}: scale.{sorted(unknown)[0]}: unknown scale")
    for key, value in (scales.get(scale) or {}).items():
        _set_dotted(raw, key, copy.deepcopy(value))
    fig = raw.pop("figure", {}) or {}
    return raw, fig


# --- helpers shared by the figures ------------------------------------------------------


def run_quiet(spec: dict):
    """``adamjax.run`` without progress bars; intended β1² ≥ β2 grid points stay quiet."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", adamjax.AssumptionWarning)
        return adamjax.run(spec, progress=False)


def quantile(a, q, axis):
    """``np.nanquantile`` without the all-NaN warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanquantile(a, q, axis=axis)


def band(ax, x, y, axis, label, color=None, ls="-"):
    """Median line and 10–90 % band of ``y`` over ``axis``; returns (median, 10 %, 90 %)."""
    med = quantile(y, 0.5, axis)
    lo, hi = quantile(y, 0.1, axis), quantile(y, 0.9, axis)
    (line,) = ax.plot(x, med, ls, color=color, label=label, lw=1.6)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    return med, lo, hi


def fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def schedule_text(spec: dict) -> str:
    """The step-size schedule of ``spec`` as a formula for a title."""
    s = spec.get("schedule", {})
    if s.get("kind", "power") == "constant":
        return f"γ = {fmt(s.get('c', 0.05))}"
    c, r, n0 = s.get("c", 0.05), s.get("r", 0.5), s.get("n0", 0.0)
    base = "n" if not n0 else f"(n+{fmt(n0)})"
    return f"γ_n = {fmt(c)}·{base}^−{fmt(r)}"


# --- building -----------------------------------------------------------------------------


def _toml(spec: dict) -> str:
    import tomli_w

    return tomli_w.dumps(spec)


def _clean_attrs(results: dict) -> dict:
    out = {}
    for k, v in results.items():
        out[f"result_{k}"] = float(v) if isinstance(v, float | np.floating) else v
    return out


def _for_netcdf(ds):
    """Bools as int8 (netCDF has no bool); everything else as is."""
    for k in list(ds.data_vars) + list(ds.coords):
        if ds[k].dtype == bool:
            ds[k] = ds[k].astype("int8")
    return ds


def make_figure(name: str, scale: str = "smoke", out=None, directory=None) -> dict:
    """Build one figure; writes ``OUT/NAME.png`` and ``OUT/NAME.nc``; returns its results."""
    mod = load_figure(name)
    import matplotlib.pyplot as plt

    spec, fig = load_figure_spec(name, scale, directory)
    out = Path(out or "figures-out")
    out.mkdir(parents=True, exist_ok=True)
    data, f, results = mod.make(copy.deepcopy(spec), fig, scale)
    data = _for_netcdf(data)
    data.attrs = {
        "figure": name,
        "claim": mod.CLAIM,
        "source": mod.SOURCE,
        "scale": scale,
        "spec": _toml(spec),
        "figure_params": json.dumps(fig, sort_keys=True),
        **_clean_attrs(results),
    }
    nc = out / f"{name}.nc"
    if nc.exists():
        nc.unlink()
    data.to_netcdf(nc)
    f.savefig(out / f"{name}.png", dpi=int(fig.get("dpi", 100)), metadata={"Software": None})
    plt.close(f)
    return results


def main(argv=None) -> int:
    """``figurekit.py [NAME…] [--scale smoke|paper] [--out DIR]``; returns an exit code."""
    prog = "figurekit.py"
    ap = argparse.ArgumentParser(
        prog=prog, description="Regenerate the figures (PNG + netCDF data)."
    )
    ap.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"figures to build (default: all): {', '.join(FIGURES)}",
    )
    ap.add_argument("--scale", choices=SCALES, default="paper")
    ap.add_argument("--out", default="figures-out", help="output folder (default figures-out)")
    ap.add_argument(
        "--experiments",
        default=None,
        help=f"folder of the figure specs (default: {HERE})",
    )
    ap.add_argument("--list", action="store_true", help="list the figures and exit")
    args = ap.parse_args(argv)
    if args.list:
        for name in FIGURES:
            print(f"{name:18s} {load_figure(name).CLAIM}")
        return 0
    names = args.names or list(FIGURES)
    bad = [n for n in names if n not in FIGURES]
    if bad:
        print(
            f"{prog}: unknown figure {bad[0]!r} (known: {', '.join(FIGURES)})",
            file=sys.stderr,
        )
        return 2
    summary = {}
    total = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        try:
            results = make_figure(name, args.scale, args.out, args.experiments)
        except (ValueError, OSError) as e:
            print(f"{prog}: {name}: {e}", file=sys.stderr)
            return 2
        dt = time.perf_counter() - t0
        summary[name] = results
        shown = ", ".join(f"{k} = {fmt(v)}" for k, v in results.items())
        print(f"{name} ({args.scale}, {dt:.1f} s): {shown}", flush=True)
    with open(Path(args.out) / f"results-{args.scale}.json", "w") as fh:
        json.dump(summary, fh, indent=1, sort_keys=True)
    print(f"all done in {time.perf_counter() - total:.1f} s → {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
