"""Figure zhang-phase: Adam diverges for small β2 on a fixed problem; the divergence region
in the (β1, β2) plane grows with n; large β2 (with β1 < √β2) converges.

Source: Zhang et al. 2022 counterexample (2.5); talk 'Converge or Diverge?', phase-diagram
slides. Spec: ``zhang-phase.toml``; build: ``python experiments/figurekit.py zhang-phase``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.colors import LogNorm

import adamjax
import figurekit as kit

NAME = "zhang-phase"
CLAIM = (
    "Adam diverges for small β2 on a fixed problem; the divergence region in the (β1, β2) "
    "plane grows with n; large β2 (with β1 < √β2) converges."
)
SOURCE = "Zhang et al. 2022 counterexample (2.5); talk 'Converge or Diverge?', phase-diagram slides"


def make(spec: dict, fig: dict, scale: str):
    ds = kit.run_quiet(spec)
    x0 = float(spec["run"]["theta0"])
    gap = ds["gap_final"].median("seed").transpose("problem.n", "optimizer.b1", "optimizer.b2")
    start_gap = abs(x0 - (-2.0))
    # Divergence on this problem is x → +∞ at rate √k (η_k ∝ 1/√k): the gap grows past its
    # starting value. Overflow (engine flag) also counts.
    away = (ds["gap_final"] > start_gap) | ds["diverged"]
    div = away.mean("seed").transpose(*gap.dims) > 0.5
    ns = [int(v) for v in gap["problem.n"].values]
    b1 = gap["optimizer.b1"].values
    b2 = gap["optimizer.b2"].values
    area = {n: float(div.sel({"problem.n": n}).mean()) for n in ns}
    # Critical β2 at each β1: the smallest grid β2 from which on every larger β2 converges.
    crit = {}
    for n in ns:
        d = div.sel({"problem.n": n}).values  # (b1, b2)
        c = []
        for i in range(len(b1)):
            bad = np.nonzero(d[i])[0]
            c.append(
                float(b2[bad.max() + 1])
                if bad.size and bad.max() + 1 < len(b2)
                else (float("nan") if bad.size else float(b2[0]))
            )
        crit[n] = np.asarray(c)

    # The prediction of the vector field (adamjax.phase_diagram) on the same grid, for the
    # same sampling order and start: where the drift toward x* changes sign.
    scheme = spec["sampling"].get("scheme", "iid")
    oc = ds["outcome"].transpose("problem.n", "optimizer.b1", "optimizer.b2", "seed").values
    sim = np.where(
        (oc == adamjax.DIVERGING).mean(-1) > 0.5,
        adamjax.DIVERGING,
        np.where((oc == adamjax.CONVERGED).mean(-1) > 0.5, adamjax.CONVERGED, adamjax.UNDECIDED),
    )
    pred, drift, drift_se, agree = {}, {}, {}, {}
    for k, n in enumerate(ns):
        problem = adamjax.make_problem({"kind": "zhang", "n": n}, np.float32)
        pdg = adamjax.phase_diagram(
            problem, b1=b1, b2=b2, at=[[x0]], scheme=scheme,
            batch_size=spec["sampling"].get("batch_size", 1),
            samples=fig.get("samples"), seed=int(fig.get("seed", 0)),
        )  # fmt: skip
        pred[n] = pdg["predicted"].values
        drift[n] = pdg["drift"].values[..., 0]
        drift_se[n] = pdg["drift_se"].values[..., 0]
        both = (pred[n] != adamjax.UNDECIDED) & (sim[k] != adamjax.UNDECIDED)
        agree[n] = (float(np.mean(pred[n][both] == sim[k][both])), int(both.sum()))

    steps = spec["run"]["steps"]
    f, axes = plt.subplots(1, len(ns), figsize=(5.2 * len(ns) + 0.8, 4.6), constrained_layout=True)
    axes = np.atleast_1d(axes)
    vals = gap.values[np.isfinite(gap.values) & (gap.values > 0)]
    norm = LogNorm(vmin=max(vals.min(), 1e-6), vmax=vals.max())
    y = 1.0 - b2
    for ax, n in zip(axes, ns, strict=True):
        g = gap.sel({"problem.n": n}).values
        mesh = ax.pcolormesh(
            b1, y, np.clip(g, norm.vmin, None).T, norm=norm, cmap="viridis", shading="nearest"
        )
        ii, jj = np.nonzero(div.sel({"problem.n": n}).values)
        ax.plot(
            b1[ii],
            y[jj],
            "x",
            color="red",
            ms=3.5 if len(b1) > 15 else 6,
            mew=0.9,
            label="diverging: |x_K − x*| > |x_0 − x*|",
        )
        bb = np.linspace(0.0, min(b1.max(), math.sqrt(1 - y.min())), 200)
        ax.plot(bb, 1 - bb**2, "w--", lw=2, label="β1 = √β2")
        # Predicted boundary (drift = 0) and the band where |drift| < 3 SE.
        dr, dse = drift[n].T, drift_se[n].T
        if np.nanmin(dr) < 0 < np.nanmax(dr):
            ax.contour(b1, y, dr, levels=[0.0], colors="orange", linewidths=2.2)
        band = (np.abs(dr) < 3 * dse).astype(float)
        if band.any():
            ax.contourf(b1, y, band, levels=[0.5, 1.5], colors="none", hatches=["////"])
        ax.plot([], [], "-", color="orange", lw=2.2, label="predicted boundary: drift of f = 0")
        ax.set_yscale("log")
        ax.set_ylim(y.max() * 1.15, y.min() / 1.15)
        ticks = [t for t in (0.5, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001) if y.min() <= t <= y.max()]
        ax.set_yticks(ticks)
        ax.set_yticklabels([f"{1 - t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("β1 (momentum, dimensionless)")
        ax.set_ylabel("β2 (log scale in 1 − β2)")
        a, m = agree[n]
        ax.set_title(
            f"n = {n}: diverging in {100 * area[n]:.0f}% of the grid\nthe vector field's "
            f"prediction agrees in {100 * a:.0f}% of {m} decided cells",
            fontsize=9,
        )
        ax.legend(loc="upper left", fontsize=8, framealpha=0.85)
    f.colorbar(mesh, ax=axes, label="optimality gap |x_K − x*| (x* = −2), log scale")
    f.suptitle(
        f"Zhang et al. counterexample (2.5), a = 1/(n−1)²: Adam after K = {steps} steps, "
        f"{kit.schedule_text(spec)}, x_0 = {x0:g}, {spec['sampling']['scheme']} sampling, "
        f"{len(b1)}×{len(b2)} grid, median of {spec['run']['seeds']} seed(s)",
        fontsize=9.5,
    )
    data = xr.Dataset(
        {
            "gap": gap.astype("float64"),
            "diverging": div.astype("int8"),
            "critical_b2": (("problem.n", "optimizer.b1"), np.stack([crit[n] for n in ns])),
            "predicted": (
                ("problem.n", "optimizer.b1", "optimizer.b2"),
                np.stack([pred[n] for n in ns]).astype("int8"),
            ),
            "drift": (
                ("problem.n", "optimizer.b1", "optimizer.b2"),
                np.stack([drift[n] for n in ns]),
            ),
        }  # fmt: skip
    )
    results = {}
    for n in ns:
        results[f"diverging_fraction_n{n}"] = area[n]
        results[f"critical_b2_at_b1_0_n{n}"] = float(crit[n][0])
        results[f"prediction_agreement_n{n}"] = agree[n][0]
        conv = np.nonzero(pred[n][0] == adamjax.CONVERGED)[0]
        results[f"predicted_critical_b2_at_b1_0_n{n}"] = (
            float(b2[conv.min()]) if conv.size and (pred[n][0][conv.min():] == 0).all() else
            float("nan")
        )  # fmt: skip
    return data, f, results
