"""Figure batch-threshold: near the minimiser, L is a Lyapunov function of the Adam flow
(⟨∇L, f⟩ > 0) only above a critical β2 that falls with the mini-batch size; Adam runs
started near x* are captured above it and escape below it.

Source: DJK Thm 2.1/2.4 (L is a Lyapunov function near the minima, and Adam converges,
for mini-batches large enough); talk 'Converge or Diverge?', tuning recipe ('smaller
batches need larger β2'). Spec: ``batch-threshold.toml``; build:
``python experiments/figurekit.py batch-threshold``.

On Zhang et al.'s counterexample every gradient is c_i·(x + 2) near x* = −2, so there
f(x) = sign(x + 2)·F(β1, β2, b) and the sign of ⟨∇L, f⟩ is the sign of one number F.
``adamjax.critical_b2`` finds where F changes sign (bisection on the common-random-number
field, SE by the delta method); the simulations find it independently by bisection on
the majority outcome of Adam runs (a grid, then ``refine`` values inside each bracket).
"""

from __future__ import annotations

import copy

import jax
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.colors import SymLogNorm

import adamjax
import figurekit as kit

NAME = "batch-threshold"
CLAIM = (
    "Near the minimiser L is a Lyapunov function of the Adam flow (⟨∇L, f⟩ > 0) only above "
    "a critical β2 that falls with the batch size; Adam runs started there are captured "
    "above it and escape below it, and the simulated threshold agrees with the field's."
)
SOURCE = (
    "DJK Thm 2.1/2.4 (Lyapunov near the minima for large enough mini-batches); talk "
    "'Converge or Diverge?', tuning recipe ('smaller batches need larger β2')"
)
DIMS = ("problem.n", "sampling.scheme", "sampling.batch_size", "optimizer.b2")


def _majority(ds, fixed=None) -> xr.DataArray:
    """Per cell: DIVERGING / CONVERGED where most seeds say so, else UNDECIDED. ``fixed``:
    the (n, scheme, b) of a run that does not sweep them."""
    oc = ds["outcome"]
    if "optimizer.b1" in oc.dims:
        oc = oc.squeeze("optimizer.b1", drop=True)
    div = (oc == adamjax.DIVERGING).mean("seed")
    conv = (oc == adamjax.CONVERGED).mean("seed")
    out = xr.where(div > 0.5, adamjax.DIVERGING, xr.where(conv > 0.5, adamjax.CONVERGED, 2))
    dims = DIMS if fixed is None else ("optimizer.b2",)
    return out.transpose(*dims).astype("int8")


def _bracket(b2: np.ndarray, flags: np.ndarray) -> tuple[float, float]:
    """(a, c): the largest β2 whose runs diverge and the smallest larger β2 whose runs
    converge (0 where none diverges; 1 where none above a converges)."""
    order = np.argsort(b2)
    b2, flags = b2[order], flags[order]
    div = np.nonzero(flags == adamjax.DIVERGING)[0]
    start = div.max() + 1 if div.size else 0
    conv = np.nonzero(flags[start:] == adamjax.CONVERGED)[0]
    a = float(b2[div.max()]) if div.size else 0.0
    c = float(b2[start + conv.min()]) if conv.size else 1.0
    return a, c


def _simulated_brackets(spec, ds, refine: int, rounds: int):
    """Bisection on simulations: per round, each (n, scheme, b) runs ``refine`` more β2
    values, evenly in log(1 − β2) strictly inside its current bracket (a sweep of its own:
    the brackets differ)."""
    maj = _majority(ds)
    seen = {key: (maj["optimizer.b2"].values, maj.sel(dict(zip(DIMS[:3], key, strict=True))).values)
            for key in _keys(maj)}  # fmt: skip
    for _ in range(rounds):
        for key, (b2, fl) in seen.items():
            a, c = _bracket(b2, fl)
            if not (c < 1.0 and c > a):
                continue
            u = np.linspace(np.log1p(-a), np.log1p(-c), refine + 2)[1:-1]
            s = copy.deepcopy(spec)
            s["sweep"] = {"optimizer.b2": [float(v) for v in np.round(-np.expm1(u), 6)]}
            s["problem"]["n"] = int(key[0])
            s["sampling"].update(scheme=str(key[1]), batch_size=int(key[2]))
            got = _majority(kit.run_quiet(s), fixed=key)
            seen[key] = (np.concatenate([b2, got["optimizer.b2"].values]),
                         np.concatenate([fl, got.values.reshape(-1)]))  # fmt: skip
    return {key: _bracket(*v) for key, v in seen.items()}


def _keys(maj):
    return [(n, s, b) for n in maj["problem.n"].values for s in maj["sampling.scheme"].values
            for b in maj["sampling.batch_size"].values]  # fmt: skip


def make(spec: dict, fig: dict, scale: str):
    jax.config.update("jax_enable_x64", True)
    ds = kit.run_quiet(spec)
    maj = _majority(ds)
    ns = [int(v) for v in maj["problem.n"].values]
    schemes = [str(v) for v in maj["sampling.scheme"].values]
    bs = [int(v) for v in maj["sampling.batch_size"].values]
    b2_grid = maj["optimizer.b2"].values
    x = float(fig.get("point", spec["run"]["theta0"]))
    brackets = _simulated_brackets(spec, ds, int(fig.get("refine", 8)), int(fig.get("rounds", 1)))

    # The field: the critical β2 per (n, scheme, b), and ⟨∇L, f⟩ at x over (b, β2) for n₀.
    crit, crit_se, lyap = {}, {}, {}
    b2_fine = 1.0 - np.geomspace(1.0, 1e-3, 48)
    for n in ns:
        problem = adamjax.make_problem({"kind": "zhang", "n": n}, np.float64)
        dl = float(np.asarray(problem.grad(np.array([x])))[0])
        for s in schemes:
            cb = adamjax.critical_b2(
                problem, b1=0.0, batch_size=bs, at=[[x]], scheme=s, samples=fig.get("samples"),
                seed=int(fig.get("seed", 0)),
            )  # fmt: skip
            crit[n, s] = cb["critical_b2"].values
            crit_se[n, s] = cb["critical_b2_se"].values
            if n == ns[-1]:
                pdg = adamjax.phase_diagram(
                    problem, b1=[0.0], b2=b2_fine, at=[[x]], batch_size=bs, scheme=s,
                    samples=fig.get("samples"), seed=int(fig.get("seed", 0)),
                )  # fmt: skip
                lyap[s] = dl * pdg["f"].values[0, :, :, 0, 0]  # (β2, b)

    agree = {}
    for key, (a, c) in brackets.items():
        n, s, b = int(key[0]), str(key[1]), int(key[2])
        v, e = crit[n, s][bs.index(b)], crit_se[n, s][bs.index(b)]
        hi_c = c
        agree[n, s, b] = bool(v - 3 * e <= hi_c and v + 3 * e >= a)

    f = plt.figure(figsize=(15.5, 4.8), constrained_layout=True)
    ratios = [1] * len(schemes) + [1.15]
    axes = f.subplots(1, len(schemes) + 1, gridspec_kw={"width_ratios": ratios})
    n0 = ns[-1]  # the panels: the largest n (the widest region)
    y = lambda b2: 1.0 - np.asarray(b2)  # noqa: E731 - the axis variable, 1 − β2
    norm = SymLogNorm(linthresh=1e-4, vmin=-np.max(np.abs([*lyap.values()])),
                      vmax=np.max(np.abs([*lyap.values()])))  # fmt: skip
    for ax, s in zip(axes[: len(schemes)], schemes, strict=True):
        mesh = ax.pcolormesh(bs, y(b2_fine), lyap[s], cmap="RdBu", norm=norm, shading="nearest")
        ax.plot(bs, y(crit[n0, s]), "-", color="k", lw=1.8, label="field: critical β2 (F = 0)")
        m = maj.sel({"problem.n": n0, "sampling.scheme": s}).values  # (b, β2)
        for flag, mk, lab in ((adamjax.CONVERGED, "o", "Adam captured (converged)"),
                              (adamjax.DIVERGING, "x", "Adam escaped (diverging)"),
                              (2, ".", "undecided")):  # fmt: skip
            ii, jj = np.nonzero(m == flag)
            ax.plot(np.asarray(bs)[ii], y(b2_grid[jj]), mk, color="k", ms=5, mfc="none",
                    mew=1.0, label=lab)  # fmt: skip
        ax.set_yscale("log")
        ax.set_ylim(1.15, 1e-3 / 1.15)
        _b2_ticks(ax)
        ax.set_xticks(bs)
        ax.set_xlabel("mini-batch size b")
        ax.set_ylabel("β2 (log scale in 1 − β2)")
        ax.set_title(f"n = {n0}, {s} sampling: sign of ⟨∇L, f⟩ at x = {x:g}\n"
                     f"red: L is not a Lyapunov function there", fontsize=9)  # fmt: skip
        ax.legend(loc="upper right", fontsize=7, framealpha=0.85)
    f.colorbar(mesh, ax=axes[: len(schemes)], label="⟨∇L, f⟩ at x (symlog)", shrink=0.9)

    ax = axes[-1]
    colors = dict(zip(ns, ("C0", "C3", "C2", "C1"), strict=False))
    for n in ns:
        for k, s in enumerate(schemes):
            ls = "-" if s == "iid" else "--"
            c = crit[n, s]
            ax.plot(bs, y(c), ls, color=colors[n], lw=1.6, label=f"field, n = {n}, {s}")
            ax.fill_between(bs, y(c - 3 * crit_se[n, s]), y(c + 3 * crit_se[n, s]),
                            color=colors[n], alpha=0.25, lw=0)  # fmt: skip
            for b in bs:
                a, cc = brackets[(n, s, b)]
                lo_y, hi_y = y(a), y(min(cc, 0.999))
                xb = b + (k - 0.5) * 0.18
                ax.plot([xb, xb], [lo_y, hi_y], "-", color=colors[n], lw=2.5,
                        marker="_", ms=8, mew=2, alpha=0.9 if s == "iid" else 0.55)  # fmt: skip
    ax.plot([], [], "-", color="grey", lw=2.5, marker="_", ms=8, mew=2,
            label="simulated bracket (bisection; left iid, right reshuffle)")  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylim(1.15, 1e-3 / 1.15)
    _b2_ticks(ax)
    ax.set_xticks(bs)
    ax.set_xlabel("mini-batch size b")
    ax.set_ylabel("critical β2 (log scale in 1 − β2)")
    n_ok = sum(agree.values())
    ax.set_title(f"critical β2 at β1 = 0: field (±3 SE) vs simulation\nagree in {n_ok} of "
                 f"{len(agree)} (n, sampling, b)", fontsize=9)  # fmt: skip
    ax.legend(loc="upper right", fontsize=7, framealpha=0.85)
    f.suptitle(
        f"Zhang et al. counterexample (2.5), a = 1/(n−1)², x* = −2: Adam β1 = 0, "
        f"{kit.schedule_text(spec)}, K = {spec['run']['steps']} steps from x_0 = "
        f"{spec['run']['theta0']:g}, {spec['run']['seeds']} seeds per cell (majority)",
        fontsize=9.5,
    )

    keys = [(n, s, b) for n in ns for s in schemes for b in bs]
    shape = (len(ns), len(schemes), len(bs))
    cells = lambda fn: np.array([fn(k) for k in keys]).reshape(shape)  # noqa: E731
    coords = {"problem.n": ns, "sampling.scheme": schemes, "sampling.batch_size": bs}
    d3 = DIMS[:3]
    data = xr.Dataset(
        {
            "critical_b2_field": (d3, cells(lambda k: crit[k[0], k[1]][bs.index(k[2])])),
            "critical_b2_field_se": (d3, cells(lambda k: crit_se[k[0], k[1]][bs.index(k[2])])),
            "critical_b2_sim_lo": (d3, cells(lambda k: brackets[k][0])),
            "critical_b2_sim_hi": (d3, cells(lambda k: brackets[k][1])),
            "agree": (d3, cells(lambda k: agree[k]).astype("int8")),
            "simulated": maj,
            "lyapunov": (("sampling.scheme", "b2_fine", "sampling.batch_size"),
                         np.stack([lyap[s] for s in schemes])),
        },
        coords={**coords, "b2_fine": b2_fine},
    )  # fmt: skip
    results = {"agreement": n_ok / len(agree), "cases": len(agree)}
    for n, s, b in keys:
        if b in (bs[0], bs[-1]):
            a, c = brackets[(n, s, b)]
            tag = f"n{n}_{s}_b{b}"
            results[f"critical_b2_field_{tag}"] = float(crit[n, s][bs.index(b)])
            results[f"critical_b2_field_se_{tag}"] = float(crit_se[n, s][bs.index(b)])
            # scalars: netCDF stores a list attribute as an array
            results[f"critical_b2_sim_lo_{tag}"] = a
            results[f"critical_b2_sim_hi_{tag}"] = c
    for n in ns:
        for s in schemes:
            c = crit[n, s]
            results[f"critical_b2_falls_with_b_n{n}_{s}"] = int(np.all(np.diff(c) <= 3 * (
                crit_se[n, s][1:] + crit_se[n, s][:-1])))  # fmt: skip
    return data, f, results


def _b2_ticks(ax) -> None:
    ticks = (1.0, 0.5, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
    ax.set_yticks(ticks)
    ax.set_yticklabels([f"{1 - t:g}" for t in ticks])
    ax.minorticks_off()
