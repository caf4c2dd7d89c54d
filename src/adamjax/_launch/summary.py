"""What a sweep says, per grid point: outcome fractions, losses, gaps, limits, APT errors,
critical β2.

:func:`summary` reduces a results dataset over ``seed`` to one row per grid point;
:func:`critical_b2` finds, for a (β1, β2) sweep, the smallest swept β2 from which
every larger swept β2 converges (a grid point converges when more than half of its
runs have ``outcome`` converged) — the threshold lies between the swept β2 below it
and it. :func:`summary_table` prints it for the CLI (``adamjax summary``).
"""

from __future__ import annotations

import warnings

import numpy as np

from .._engine.errors import SpecError
from .outcome import CONVERGED, DIVERGING, UNDECIDED

B1, B2 = "optimizer.b1", "optimizer.b2"


def sweep_axes(ds) -> list[str]:
    """The sweep dims of a results dataset (its lead dims before ``seed``)."""
    return [d for d in ds["loss_final"].dims if d != "seed"]


def require_complete(ds, what: str) -> None:
    """Refuse the store of an interrupted run (attribute ``complete`` 1 once its last
    unit is written, 0 before): its missing runs hold placeholders (outcome undecided, NaN)."""
    if not bool(ds.attrs.get("complete", 1)):
        raise SpecError(
            f"{what}: the results are incomplete (their run was interrupted before every "
            "chunk was written); `adamjax run SPEC --out … --resume` completes them"
        )


def summary(ds):
    """Per grid point of ``ds`` (an ``adamjax.run`` result): an ``xarray.Dataset`` over
    the sweep axes with the fractions of runs ``converged``, ``diverging``,
    ``undecided`` and ``diverged`` (numeric blow-up), the median and quartiles of
    ``loss_final`` (and of ``gap_final`` where the minimiser is known), the mean
    limit ``limit_mean`` (…, dim) with its standard error ``limit_se``; with ``[flow]``
    the median APT error over the seeds at the first and at the last window whose median
    is finite (``apt_first``, ``apt_last``, their window starts ``apt_first_n``,
    ``apt_last_n``) and the decay exponent; and, for a sweep of both β1 and β2,
    ``critical_b2`` over the other axes with ``critical_b2_below``, the largest swept β2
    below it (the threshold lies in (below, critical]; NaN: every swept β2 converges)
    (see :func:`critical_b2`)."""
    import xarray as xr

    require_complete(ds, "summary")
    out = xr.Dataset(coords={d: ds[d] for d in sweep_axes(ds)})
    oc = ds["outcome"]
    for name, flag in (("converged", CONVERGED), ("diverging", DIVERGING)):
        out[name] = (oc == flag).mean("seed")
    out["undecided"] = (oc == UNDECIDED).mean("seed")
    out["diverged"] = ds["diverged"].mean("seed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN grid points
        for var in ("loss_final", "gap_final"):
            if var in ds:
                v = ds[var].astype("float64")
                q = v.quantile([0.25, 0.5, 0.75], dim="seed", skipna=True)
                base = var.removesuffix("_final")
                for name, qq in (("q25", 0.25), ("median", 0.5), ("q75", 0.75)):
                    out[f"{base}_{name}"] = q.sel(quantile=qq, drop=True)
        ok = ~ds["diverged"]
        th = ds["theta_final"].astype("float64").where(ok)
        n = ok.sum("seed")
        out["limit_mean"] = th.mean("seed")
        out["limit_se"] = th.std("seed", ddof=1) / np.sqrt(n)
    out["runs"] = ds.sizes["seed"]
    for k in out.data_vars:
        base, _, stat = k.partition("_")
        long_name = _LONG.get(base, k) + (f" ({_STAT[stat]})" if stat in _STAT else "")
        out[k].attrs = {"long_name": long_name, "units": "1"}
    if "apt_error" in ds:
        _apt(ds, out)
    if B1 in out.dims and B2 in out.dims:
        out["critical_b2"] = critical_b2(out["converged"])
        out["critical_b2"].attrs = {
            "long_name": "critical β2",
            "units": "1",
            "description": "smallest swept β2 from which every larger swept β2 converges "
            "(more than half of the runs converged); NaN: none",
        }
        out["critical_b2_below"] = _swept_below(out["critical_b2"], out[B2].values)
        out["critical_b2_below"].attrs = {
            "long_name": "largest swept β2 below the critical β2",
            "units": "1",
            "description": "the threshold lies in (critical_b2_below, critical_b2]; NaN: "
            "the smallest swept β2 already converges (the threshold is ≤ critical_b2), "
            "or none converges (critical_b2 NaN too)",
        }
    return out


def _apt(ds, out) -> None:
    """Median APT error over the seeds at the first and the last window where it is
    finite (windows a run did not complete are NaN), and the fitted decay exponent."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows
        med = ds["apt_error"].astype("float64").median("seed", skipna=True)
    med = med.transpose(..., "window")
    n = np.asarray(ds["window_start"].values, np.float64)
    ok = np.isfinite(med.values)
    first = np.where(ok.any(-1), ok.argmax(-1), -1)
    last = np.where(ok.any(-1), ok.shape[-1] - 1 - np.flip(ok, -1).argmax(-1), -1)
    lead = med.isel(window=0, drop=True)
    for name, idx in (("first", first), ("last", last)):
        take = np.maximum(idx, 0)
        val = np.take_along_axis(med.values, take[..., None], -1)[..., 0]
        out[f"apt_{name}"] = lead.copy(data=np.where(idx >= 0, val, np.nan))
        out[f"apt_{name}"].attrs = {
            "long_name": f"median APT error, {name} window with a finite median",
            "units": "1",
        }
        out[f"apt_{name}_n"] = lead.copy(data=np.where(idx >= 0, n[take], np.nan))
        out[f"apt_{name}_n"].attrs = {"long_name": "start n of that window", "units": "1"}
    for k in ("apt_decay_exponent", "apt_decay_exponent_se"):
        if k in ds:
            out[k] = ds[k]


def _swept_below(crit, b2):
    """Per point of ``crit`` the largest value of ``b2`` below it (NaN: none, or crit NaN)."""
    b2 = np.sort(np.asarray(b2, np.float64))
    c = np.asarray(crit.values, np.float64)
    i = np.searchsorted(b2, np.where(np.isnan(c), -np.inf, c)) - 1
    below = np.where((i >= 0) & ~np.isnan(c), b2[np.maximum(i, 0)], np.nan)
    return crit.copy(data=below)


_STAT = {
    "q25": "first quartile",
    "median": "median",
    "q75": "third quartile",
    "mean": "mean over seeds",
    "se": "standard error of the mean",
}
_LONG = {
    "converged": "fraction of runs converged",
    "diverging": "fraction of runs diverging",
    "undecided": "fraction of runs undecided",
    "diverged": "fraction of runs that blew up numerically",
    "loss": "final loss",
    "gap": "final optimality gap",
    "limit": "final iterate (limit)",
    "runs": "runs per grid point",
}


def critical_b2(converged):
    """The smallest swept β2 from which every larger swept β2 converges, per β1 (and per
    value of any other axis): ``converged`` is the fraction of converged runs over the
    sweep axes (> 0.5 counts as converging). NaN where even the largest β2 does not."""
    conv = converged.transpose(..., B2) > 0.5
    b2 = conv[B2].values
    order = np.argsort(b2)
    c = conv.values[..., order]
    # suffix[i]: every β2 from index i on converges
    suffix = np.flip(np.logical_and.accumulate(np.flip(c, -1), -1), -1)
    first = np.where(suffix.any(-1), suffix.argmax(-1), -1)
    vals = np.where(first >= 0, b2[order][np.maximum(first, 0)], np.nan)
    return conv.isel({B2: 0}, drop=True).copy(data=vals)


def summary_table(ds, s) -> str:
    """The summary ``s`` of ``ds`` as a plain-text table (one row per grid point)."""
    axes = sweep_axes(ds)
    cols = [*axes, "runs", "conv", "div", "undec", "blow-up", "loss median [q25, q75]"]
    has_gap = "gap_median" in s
    if has_gap:
        cols.append("gap median [q25, q75]")
    dim = ds.sizes.get("dim", 0)
    if dim <= 3:
        cols.append("limit mean ± SE")
    rows = []
    for _, p in _points(s, axes):
        row = [fmt_value(p[a].item()) for a in axes]
        row += [str(int(s["runs"]))]
        row += [f"{100 * float(p[k]):.0f}%" for k in ("converged", "diverging", "undecided")]
        row += [f"{100 * float(p['diverged']):.0f}%"]
        row += [_q(p, "loss")]
        if has_gap:
            row += [_q(p, "gap")]
        if dim <= 3:
            m, se = p["limit_mean"].values, p["limit_se"].values
            row += [", ".join(f"{a:+.4g} ± {b:.2g}" for a, b in zip(m, se, strict=True))]
        rows.append(row)
    widths = [max(len(c), *(len(r[j]) for r in rows)) for j, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    if "apt_first" in s:
        lines += ["", _apt_lines(s, axes)]
    if "critical_b2" in s:
        lines += ["", *_critical_lines(s)]
    return "\n".join(lines)


def _points(ds, dims):
    """``(tag, selection)`` for every combination of ``dims`` (one if there are none), the
    tag reading ``"a = 1, b = 2"``."""
    flat = ds.stack(point=dims) if dims else ds.expand_dims("point")
    for i in range(flat.sizes["point"]):
        sub = flat.isel(point=i)
        yield ", ".join(f"{d} = {fmt_value(sub[d].item())}" for d in dims), sub


def _apt_lines(s, axes) -> str:
    """The APT errors per grid point: first → last window, and the decay exponent."""
    head = "APT error (median over seeds), first → last window, decay exponent ± SE:"
    rows = [head]
    for tag, p in _points(s, axes):
        a, b = float(p["apt_first"]), float(p["apt_last"])
        if np.isnan(a):
            txt = "no completed window"
        else:
            na, nb = int(p["apt_first_n"]), int(p["apt_last_n"])
            txt = f"{a:.3g} (n = {na}) → {b:.3g} (n = {nb})"
            if "apt_decay_exponent" in p and np.isfinite(float(p["apt_decay_exponent"])):
                e, se = float(p["apt_decay_exponent"]), float(p["apt_decay_exponent_se"])
                txt += f", exponent {e:+.3f} ± {se:.2g}"
        rows.append(f"  {tag + ': ' if tag else ''}{txt}")
    return "\n".join(rows)


def _critical_lines(s) -> list[str]:
    """Per β1 (and value of the other axes) where the critical β2 lies among the swept
    values, flagged where it is outside the theory (β1² ≥ β2)."""
    lines = ["critical β2 (between the largest swept β2 that does not converge and the"]
    lines.append("smallest from which every larger one converges; ≤: all swept converge):")
    cb = s[["critical_b2", "critical_b2_below"]]
    lo_swept = float(np.min(s[B2].values))
    hi_swept = float(np.max(s[B2].values))
    other = [d for d in cb["critical_b2"].dims if d != B1]
    outside = False
    for tag, sub in _points(cb, other):
        vals = []
        pairs = (sub["critical_b2"].values, sub["critical_b2_below"].values)
        for b1, c, lo in zip(sub[B1].values, *pairs, strict=True):
            if np.isnan(c):
                txt = f"none (> {fmt_value(hi_swept)})"
            elif np.isnan(lo):
                txt = f"≤ {fmt_value(lo_swept)}"
            else:
                txt = f"({fmt_value(float(lo))}, {fmt_value(float(c))}]"
            if not np.isnan(c) and float(b1) ** 2 >= c:
                txt += "*"
                outside = True
            vals.append(f"β1={fmt_value(float(b1))}: {txt}")
        lines.append(f"  {tag + ': ' if tag else ''}{'  '.join(vals)}")
    if outside:
        lines.append("  *: β1² ≥ β2 there, outside the ODE theory (α < √β)")
    if "gap_median" not in s:  # judged on the loss: see outcome.py
        lines.append(
            "  (no known minimiser: a run converges when its loss falls to record.ratio × "
            "its start; where the minimal loss is far from 0, no β2 may count as converging)"
        )
    return lines


def _q(p, base) -> str:
    med, lo, hi = (float(p[f"{base}_{k}"]) for k in ("median", "q25", "q75"))
    return f"{med:.4g} [{lo:.3g}, {hi:.3g}]"


def fmt_value(v) -> str:
    """A coordinate value as the tables and plot labels print it."""
    return f"{v:g}" if isinstance(v, float) else str(v)
