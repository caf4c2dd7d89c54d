"""Plots of any sweep (``adamjax plot`` and ``adamjax.plot``), each a matplotlib Figure.

* :func:`phase` — a phase diagram: a statistic over seeds of one variable as a heat map
  over two sweep axes (β-like axes on a log(1 − β) scale with the swept values as
  ticks, the curve β1 = √β2 where both betas are swept, cells marked by their
  majority ``outcome``), one panel per value of a third axis;
* :func:`curves` — the loss (or θ) over the snapshot steps, log–log, median and
  10–90 % band over seeds, one curve per grid point;
* :func:`apt` — the APT error per window start with the fitted decay and the √γ_n
  reference (Dereich, Jentzen & Kassing 2025, Thm 1.5);
* :func:`auto` — what the dataset holds: a phase diagram for two or more sweep axes,
  else curves (and the APT panel with ``[flow]``).

Titles carry the spec's parameters; every axis is labelled.
"""

from __future__ import annotations

import json
import math
import tomllib
import warnings

import numpy as np

from .._engine.errors import SpecError
from .._engine.optimizers import BETAS
from .outcome import CONVERGED, DIVERGING, UNDECIDED
from .schema import SCHEMA
from .summary import B1, B2, fmt_value, require_complete, sweep_axes

STATS = ("median", "mean", "fraction")

__all__ = ["STATS", "apt", "auto", "curves", "phase", "reduce", "save", "spec_of", "title"]


def spec_of(ds) -> dict:
    """The spec a results dataset was made from (its ``spec`` attribute), or {}."""
    text = ds.attrs.get("spec", "")
    for load in (tomllib.loads, json.loads):
        try:
            return load(text)
        except (ValueError, TypeError):
            continue
    return {}


def title(ds, extra: str = "") -> str:
    """The spec's parameters that are not swept, in lines of at most ~90 characters."""
    s = spec_of(ds)
    # Swept and zipped keys (a zipped key may be a coordinate, not a dim) are on axes.
    axes = set(sweep_axes(ds)) | set(s.get("sweep", {})) | set(s.get("zip", {}))
    parts = [str(s.get("name", ""))]
    prob = s.get("problem", {})
    parts.append(
        ", ".join(
            [str(prob.get("kind", "quadratic"))]
            + [f"{k}={v}" for k, v in prob.items() if k != "kind" and f"problem.{k}" not in axes]
        )
    )
    opt = s.get("optimizer", {})
    kind = str(opt.get("kind", "adam"))
    # A β held fixed is named even where the spec left it at its default.
    o = [kind]
    o += [
        f"{k}={_given(opt, 'optimizer', k)}"
        for k in BETAS.get(kind, ())
        if f"optimizer.{k}" not in axes
    ]
    parts.append(" ".join(o))
    sch = s.get("schedule", {})
    # A swept c or r appears by its symbol (its values are on an axis).
    c = _given(sch, "schedule", "c") if "schedule.c" not in axes else "c"
    if sch.get("kind", "power") == "power":
        r = _given(sch, "schedule", "r") if "schedule.r" not in axes else "r"
        parts.append(f"γ_n = {c}·n^-{r}")
    elif sch.get("kind") == "constant":
        parts.append(f"γ_n = {c}")
    samp = s.get("sampling", {})
    if samp:
        scheme = samp.get("scheme", "iid") if "sampling.scheme" not in axes else ""
        b = f"b={samp.get('batch_size', 1)}" if "sampling.batch_size" not in axes else ""
        parts.append(" ".join(x for x in (scheme, b) if x))
    run = s.get("run", {})
    parts.append(f"{run.get('steps', '?')} steps × {ds.sizes.get('seed', '?')} seeds")
    lines = [""]
    for p in (p for p in parts if p):  # two or more lines of ≤ ~90 characters
        joined = f"{lines[-1]}; {p}" if lines[-1] else p
        if lines[-1] and len(joined) > 90:
            lines.append(p)
        else:
            lines[-1] = joined
    line = "\n".join(lines)
    return f"{extra}\n{line}" if extra else line


def _given(table: dict, name: str, key: str):
    """``table[key]``, else the schema's default of ``name.key``."""
    return table.get(key, SCHEMA[name][key].default)


def _is_beta(key: str) -> bool:
    return key.endswith(".b1") or key.endswith(".b2")


def _positions(key: str, values: np.ndarray):
    """Cell centres of an axis and how its ticks read: (positions, tick labels, label,
    the map from values to positions)."""
    labels = [f"{v:g}" if isinstance(v, float | np.floating) else str(v) for v in values]
    if values.dtype.kind in "fi":
        v = values.astype(np.float64)
        # A β axis is drawn in log(1 − β) once 1 − β spans a decade (β2 = 0.3 … 0.99,
        # 0.9 … 0.999, β1 = 0 … 0.9: where Adam's behaviour changes), else plainly
        # (β1 = 0 … 0.5): one rule, so that the same values always give the same axis.
        if _is_beta(key) and np.all((v >= 0) & (v < 1)):
            if (1 - v.min()) / (1 - v.max()) >= 10 * (1 - 1e-9):  # 0.1/0.01 is 9.99…
                return -np.log10(1 - v), labels, f"{key} (log scale in 1 − β)", _log1m
            return v, labels, key, _same
        if np.all(v > 0) and _more_even(np.log10(v), v):
            return np.log10(v), labels, f"{key} (log scale)", np.log10
        return v, labels, key, _same
    return np.arange(len(values), dtype=np.float64), labels, key, None


def _log1m(v):
    return -np.log10(1 - np.asarray(v, np.float64))


def _same(v):
    return np.asarray(v, np.float64)


def _more_even(transformed: np.ndarray, plain: np.ndarray) -> bool:
    if len(plain) < 3:  # too few values to compare spacings: log when they span a decade
        t = np.sort(transformed)
        return len(t) == 2 and t[1] - t[0] >= 1

    def spread(x):
        d = np.diff(np.sort(x))
        return np.std(d) / np.mean(d) if np.mean(d) > 0 else np.inf

    return spread(transformed) < spread(plain)


def _ticks(ax, which: str, pos, labels):
    """Every swept value as a tick; labels thinned to at most 12."""
    step = max(1, -(-len(labels) // 12))
    shown = [lab if i % step == 0 else "" for i, lab in enumerate(labels)]
    if which == "x":
        ax.set_xticks(pos, shown, rotation=90 if len(labels) > 8 else 0, fontsize=8)
    else:
        ax.set_yticks(pos, shown, fontsize=8)


def _edges(c: np.ndarray) -> np.ndarray:
    if len(c) == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def reduce(ds, var: str, stat: str):
    """``stat`` over seeds of ``var``: ``median``, ``mean``, or ``fraction`` (of runs
    flagged: ``outcome`` diverging, or a boolean variable True)."""
    if stat not in STATS:
        raise SpecError(f"--stat = {stat!r}: must be one of {', '.join(STATS)}")
    if var not in ds:
        have = ", ".join(k for k in ds.data_vars if "seed" in ds[k].dims)
        raise SpecError(f"--var = {var!r}: not in the results (have: {have})")
    v = ds[var]
    if "seed" not in v.dims:
        return v
    if stat == "fraction":
        if var == "outcome":
            return (v == DIVERGING).mean("seed")
        if v.dtype != bool:
            raise SpecError(f"--stat = 'fraction': needs a flag variable, not {var!r}")
        return v.mean("seed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return v.astype("float64").median("seed") if stat == "median" else v.mean("seed")


def default_var(ds) -> str:
    return "gap_final" if "gap_final" in ds else "loss_final"


CURVE_VARS = ("loss", "theta")


def _is_flag(ds, var: str) -> bool:
    return var == "outcome" or (var in ds and ds[var].dtype == bool)


def _default_stat(ds, var: str, stat: str | None) -> str:
    """``stat``, or by default the fraction for ``outcome`` and flags, else the median."""
    if stat is None:
        return "fraction" if _is_flag(ds, var) else "median"
    if var == "outcome" and stat != "fraction":
        raise SpecError(
            f"--stat = {stat!r}: outcome is a category (converged, diverging, undecided); "
            "use --stat fraction (of runs diverging)"
        )
    return stat


def phase(ds, x: str | None = None, y: str | None = None, var=None, stat=None):
    """A phase diagram of ``stat`` over seeds of ``var`` over the sweep axes ``x``, ``y``
    (default: β1, β2 when both are swept, else the first two axes), one panel per value
    of a third axis; further axes are held at their first value (said in the title).
    ``stat`` defaults to the fraction of runs for ``outcome`` (diverging) and flags, else
    the median."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.lines import Line2D

    require_complete(ds, "plot")
    axes = sweep_axes(ds)
    if len(axes) < 2:
        raise SpecError(f"plot: a phase diagram needs two sweep axes, the results have {axes}")
    if x is None and y is None and B1 in axes and B2 in axes:
        x, y = B1, B2
    rest = [a for a in axes if a not in (x, y)]
    x = x or rest.pop(0)
    y = y or rest.pop(0)
    for key in (x, y):
        if key not in axes:
            raise SpecError(f"--x/--y = {key!r}: not a sweep axis (axes: {', '.join(axes)})")
    if x == y:
        raise SpecError(f"--x = --y = {x!r}: a phase diagram needs two different sweep axes")
    var = var or default_var(ds)
    stat = _default_stat(ds, var, stat)
    facet = rest[0] if rest else None
    held = {a: ds[a].values[0] for a in rest[1:]}
    sub = ds.isel({a: 0 for a in held})
    z = reduce(sub, var, stat)
    # One number per cell: a size-1 extra dim (θ of a 1-D problem) is dropped.
    z = z.squeeze([d for d in z.dims if d not in (x, y, facet) and z.sizes[d] == 1])
    extra = [d for d in z.dims if d not in (x, y, facet)]
    if extra:
        hint = "; curves over steps: --var loss without --x/--y" if "snapshot" in extra else ""
        raise SpecError(
            f"--var = {var!r}: has {', '.join(extra)} besides the sweep axes and seed; a "
            f"phase diagram needs one number per run (e.g. loss_final){hint}"
        )
    oc = sub.get("outcome")
    fvals = list(sub[facet].values) if facet else [None]
    fig, axs = plt.subplots(
        1, len(fvals), figsize=(4.8 * len(fvals) + 1.4, 4.4), squeeze=False, constrained_layout=True
    )
    px, xl, xlab, fx = _positions(x, ds[x].values)
    py, yl, ylab, fy = _positions(y, ds[y].values)
    vals = np.asarray(z.values, np.float64)
    fin = vals[np.isfinite(vals)]
    pos = fin[fin > 0]
    if stat == "fraction":  # a fraction is in [0, 1], whatever the cells hold
        norm = Normalize(0, 1)
    elif pos.size == fin.size and pos.size and pos.max() / pos.min() > 100:
        norm = LogNorm(pos.min(), pos.max())
    else:
        norm = Normalize(*(fin.min(), fin.max()) if fin.size else (0, 1))
    mesh = None
    all_converged = True
    for ax, fv in zip(axs[0], fvals, strict=True):
        zz = z.sel({facet: fv}) if facet else z
        grid = zz.transpose(y, x).values.astype(np.float64)
        mesh = ax.pcolormesh(_edges(px), _edges(py), grid, norm=norm, cmap="viridis")
        if oc is not None:
            o = oc.sel({facet: fv}) if facet else oc
            all_converged &= _mark_outcomes(ax, o, x, y, px, py)
        if {x, y} == {B1, B2} and fx is not None and fy is not None:
            _sqrt_curve(ax, x, ds, fx, fy)
        _ticks(ax, "x", px, xl)
        _ticks(ax, "y", py, yl)
        ax.set_xlim(_edges(px)[[0, -1]])
        ax.set_ylim(_edges(py)[[0, -1]])
        ax.set_xlabel(xlab)
        ax.set_ylabel(ylab)
        if facet:
            ax.set_title(f"{facet} = {fv}", fontsize=10)
    # The legend of every panel (each entry once): a marker shown in any panel is listed.
    legend = {}
    for ax in axs[0]:
        legend.update(zip(*ax.get_legend_handles_labels()[::-1], strict=True))
    if oc is not None and all_converged:
        legend["every cell: most runs converged"] = Line2D([], [], ls="none")
    if legend:  # below the panels, so that it hides no cell and no panel title
        # Three columns only where they fit the width (the β1 = √β2 entry is long).
        wide = sum(map(len, legend)) > 30 * len(fvals) + 40
        fig.legend(
            list(legend.values()),
            list(legend),
            loc="outside lower center",
            ncol=2 if wide else 3,
            fontsize=8,
            frameon=False,
        )
    lv = ds[var].attrs.get("long_name", var)
    units = ds[var].attrs.get("units", "1")
    unit = "" if units in ("1", "") else f" [{units}]"  # "1": dimensionless
    n = ds.sizes["seed"]
    if stat == "fraction" and var == "outcome":
        label, what = "fraction of runs diverging", f"fraction of {n} seeds diverging"
    elif stat == "fraction":
        label, what = f"fraction of runs: {lv}", f"fraction of {n} seeds with {var}"
    else:
        label, what = f"{stat} of {lv}{unit}", f"{stat} over {n} seeds of {var}"
    fig.colorbar(mesh, ax=axs[0].tolist(), label=label)
    hold = f" ({', '.join(f'{k} = {v}' for k, v in held.items())})" if held else ""
    fig.suptitle(title(ds, f"{what}{hold}"), fontsize=9)
    return fig


def _mark_outcomes(ax, o, x, y, px, py) -> bool:
    """Markers on cells whose runs mostly diverge (red ×) or stay undecided (grey ·);
    whether most runs of every cell converged."""
    o = o.transpose(y, x, "seed").values
    div = (o == DIVERGING).mean(-1) > 0.5
    und = ((o == UNDECIDED).mean(-1) > 0.5) & ~div
    conv = (o == CONVERGED).mean(-1) > 0.5
    gx, gy = np.meshgrid(px, py)
    ms = 4 if len(px) * len(py) > 400 else 7
    if div.any():
        ax.plot(gx[div], gy[div], "x", color="red", ms=ms, mew=1, label="most runs diverging")
    if und.any():
        ax.plot(gx[und], gy[und], ".", color="0.6", ms=ms, label="most runs undecided")
    return bool(conv.all())


def _sqrt_curve(ax, x, ds, fx, fy):
    """β1 = √β2, mapped to the axes' coordinates by ``fx``, ``fy``."""
    b2 = 1 - np.geomspace(1, 1e-7, 600)[1:]
    b1 = np.sqrt(b2)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs, ys = (fx(b1), fy(b2)) if x == B1 else (fx(b2), fy(b1))
    lim_x, lim_y = ax.get_xlim(), ax.get_ylim()
    from matplotlib import patheffects

    halo = [patheffects.withStroke(linewidth=2.8, foreground="0.2")]
    ax.plot(xs, ys, "w--", lw=1.6, path_effects=halo)
    # The legend's entry drawn dark (a white dash vanishes on the legend's background),
    # saying on which side the theory's assumption β1 < √β2 fails.
    side = "below it" if x == B1 else "above it"
    label = f"β1 = √β2 ({side}: β1 ≥ √β2, outside the theory)"
    ax.plot([], [], "--", color="0.2", lw=1.6, label=label)
    ax.set_xlim(lim_x)
    ax.set_ylim(lim_y)


def _points(ds, max_points: int):
    axes = sweep_axes(ds)
    if not axes:
        return [({}, ds)]
    st = ds.stack(point=axes)
    n = st.sizes["point"]
    pick = np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int))
    out = []
    for i in pick:
        p = st.isel(point=i)
        label = ", ".join(f"{a.rpartition('.')[2]}={fmt_value(p[a].item())}" for a in axes)
        out.append((label, p))
    return out


def _quantiles(a, qs):
    """NaN-aware quantiles over the seeds (axis 0); all-NaN columns give NaN quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return [np.nanquantile(a, q, axis=0) for q in qs]


def curves(ds, var: str = "loss", ax=None, max_points: int = 8):
    """``var`` (``loss``, or ``theta``: its norm) over the snapshot steps, log–log: median
    and 10–90 % band over seeds, one curve per grid point (at most ``max_points``)."""
    import matplotlib.pyplot as plt

    require_complete(ds, "plot")
    if var not in CURVE_VARS or var not in ds:
        raise SpecError(f"--var = {var!r}: curves over steps need 'loss' or 'theta'")
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
    steps = ds["snapshot_step"].values
    keep = steps >= 1
    logy = True
    for label, p in _points(ds, max_points):
        v = p[var]
        if var == "theta":
            v = np.sqrt((v.astype("float64") ** 2).sum("dim"))
        a = np.asarray(v.transpose("seed", "snapshot").values, np.float64)[:, keep]
        med, lo, hi = _quantiles(a, (0.5, 0.1, 0.9))
        logy &= bool(np.all(lo[np.isfinite(lo)] > 0))
        (line,) = ax.plot(steps[keep], med, lw=1.5, label=label or "median")
        ax.fill_between(steps[keep], lo, hi, color=line.get_color(), alpha=0.18, lw=0)
    ax.set_xscale("log")
    ax.set_yscale("log" if logy else "linear")
    ax.set_xlabel("Adam step n")
    name = "‖Θ_n‖" if var == "theta" else ds[var].attrs.get("long_name", var)
    ax.set_ylabel(f"{name}\n(median and 10–90 % over seeds)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7)
    if fig is not None:
        fig.suptitle(title(ds), fontsize=9)
    return fig or ax.figure


def apt(ds, ax=None, max_points: int = 8):
    """The APT error per window start: median and interquartile band over seeds per grid
    point, the fitted decay n^p, and the √γ_n reference (slope −r/2) for a power
    schedule that is not swept."""
    import matplotlib.pyplot as plt

    require_complete(ds, "plot")
    if "apt_error" not in ds:
        raise SpecError("plot: the results have no apt_error (add a [flow] table to the spec)")
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
    n = ds["window_start"].values.astype(np.float64)
    last = None
    for label, p in _points(ds, max_points):
        e = np.asarray(p["apt_error"].transpose("seed", "window").values, np.float64)
        med, lo, hi = _quantiles(e, (0.5, 0.25, 0.75))
        (line,) = ax.plot(n, med, "o-", ms=3, lw=1.4, label=f"{label or 'median'}")
        ax.fill_between(n, lo, hi, color=line.get_color(), alpha=0.18, lw=0)
        pexp = float(p["apt_decay_exponent"]) if "apt_decay_exponent" in p else math.nan
        ok = np.isfinite(med) & (med > 0)
        if np.isfinite(pexp) and ok.sum() >= 2:
            c = np.mean(np.log(med[ok]) - pexp * np.log(n[ok]))
            ax.plot(
                n,
                np.exp(c) * n**pexp,
                ":",
                color=line.get_color(),
                lw=1.2,
                label=f"fit ∝ n^{pexp:.3f}",
            )
        last = med
    sch = spec_of(ds).get("schedule", {})
    axes = sweep_axes(ds)
    if (
        sch.get("kind", "power") == "power"
        and not any(a.startswith("schedule.") for a in axes)
        and last is not None
    ):
        c, r, n0 = (float(sch.get(k, d)) for k, d in (("c", 0.05), ("r", 0.5), ("n0", 0.0)))
        ref = np.sqrt(c * (n + n0) ** (-r))
        ok = np.isfinite(last) & (last > 0)
        if ok.any():
            scale = np.exp(np.mean(np.log(last[ok]) - np.log(ref[ok])))
            ax.plot(
                n, scale * ref, "--", color="C3", lw=1.2, label=f"∝ √γ_n (slope −r/2 = {-r / 2:g})"
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("window start n_j (Adam step)")
    T = ds["apt_error"].attrs.get("horizon", "T")
    ax.set_ylabel(f"APT error E_j(T), T = {T}\n(median and interquartile range)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    if fig is not None:
        fig.suptitle(title(ds), fontsize=9)
    return fig or ax.figure


def auto(ds, x=None, y=None, var=None, stat=None):
    """What the dataset holds: :func:`phase` for two or more sweep axes (or when ``x`` and
    ``y`` are given), else :func:`curves` of the loss, beside :func:`apt` with ``[flow]``;
    curves whatever the sweep when ``var`` is ``loss`` or ``theta`` and no axis is given."""
    import matplotlib.pyplot as plt

    curve = var in CURVE_VARS and not (x or y)
    if (len(sweep_axes(ds)) >= 2 or (x and y)) and not curve:
        return phase(ds, x, y, var, stat)
    if not (ds["snapshot_step"].values >= 1).any() and "apt_error" not in ds:
        raise SpecError(
            "plot: nothing to draw over steps (record.snapshots = 0 and no [flow]); "
            "rerun with snapshots, or sweep two keys for a phase diagram"
        )
    panels = 2 if "apt_error" in ds else 1
    fig, axs = plt.subplots(
        1, panels, figsize=(6.2 * panels, 4.4), squeeze=False, constrained_layout=True
    )
    curves(ds, var or "loss", ax=axs[0][0])
    if panels == 2:
        apt(ds, ax=axs[0][1])
    fig.suptitle(title(ds), fontsize=9)
    return fig


def save(fig, path) -> None:
    """Write ``fig`` (PNG, SVG or PDF by the extension of ``path``)."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=120)
    plt.close(fig)
