"""What a sweep says, per grid point: outcome fractions, losses, gaps, limits, critical β2.

:func:`summary` reduces a results dataset over ``seed`` to one row per grid point;
:func:`critical_b2` finds, for a (β1, β2) sweep, the smallest swept β2 from which
every larger swept β2 converges (a grid point converges when more than half of its
runs have ``outcome`` converged). :func:`summary_table` prints it for the CLI
(``adamjax summary``).
"""

from __future__ import annotations

import warnings

import numpy as np

from .outcome import CONVERGED, DIVERGING, UNDECIDED

B1, B2 = "optimizer.b1", "optimizer.b2"


def sweep_axes(ds) -> list[str]:
    """The sweep dims of a results dataset (its lead dims before ``seed``)."""
    return [d for d in ds["loss_final"].dims if d != "seed"]


def summary(ds):
    """Per grid point of ``ds`` (an ``adamjax.run`` result): an ``xarray.Dataset`` over
    the sweep axes with the fractions of runs ``converged``, ``diverging``,
    ``undecided`` and ``diverged`` (numeric blow-up), the median and quartiles of
    ``loss_final`` (and of ``gap_final`` where the minimiser is known), the mean
    limit ``limit_mean`` (…, dim) with its standard error ``limit_se``, and, for a
    sweep of both β1 and β2, ``critical_b2`` over the other axes (see
    :func:`critical_b2`)."""
    import xarray as xr

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
    if B1 in out.dims and B2 in out.dims:
        out["critical_b2"] = critical_b2(out["converged"])
        out["critical_b2"].attrs = {
            "long_name": "critical β2",
            "units": "1",
            "description": "smallest swept β2 from which every larger swept β2 converges "
            "(more than half of the runs converged); NaN: none",
        }
    return out


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
    flat = s.stack(point=axes) if axes else s.expand_dims("point")
    for i in range(flat.sizes["point"]):
        p = flat.isel(point=i)
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
    if "critical_b2" in s:
        lines.append("")
        lines.append("critical β2 (smallest swept β2 from which every larger one converges):")
        cb = s["critical_b2"]
        other = [d for d in cb.dims if d != B1]
        cbf = cb.stack(rest=other) if other else cb.expand_dims("rest")
        for j in range(cbf.sizes["rest"]):
            sub = cbf.isel(rest=j)
            tag = ", ".join(f"{d} = {fmt_value(sub[d].item())}" for d in other)
            vals = "  ".join(
                f"β1={fmt_value(b)}: {'none' if np.isnan(v) else fmt_value(v)}"
                for b, v in zip(sub[B1].values, sub.values, strict=True)
            )
            lines.append(f"  {tag + ': ' if tag else ''}{vals}")
    return "\n".join(lines)


def _q(p, base) -> str:
    med, lo, hi = (float(p[f"{base}_{k}"]) for k in ("median", "q25", "q75"))
    return f"{med:.4g} [{lo:.3g}, {hi:.3g}]"


def fmt_value(v) -> str:
    """A coordinate value as the tables and plot labels print it."""
    return f"{v:g}" if isinstance(v, float) else str(v)
