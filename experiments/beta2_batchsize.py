"""Figure beta2-batchsize: smaller mini-batches need a larger β2: the β2 with the lowest
final training loss increases as the batch size decreases.

Source: talk 'Converge or Diverge?', tuning-recipe slide ('first tune up β2, then
β1 < √β2'); the β2 threshold 1 − O(1/n^3.5) grows with the number n of mini-batches.
Spec: ``beta2-batchsize.toml``; build: ``python experiments/figurekit.py beta2-batchsize``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.colors import LogNorm

import figurekit as kit

NAME = "beta2-batchsize"
CLAIM = (
    "Smaller mini-batches need a larger β2: the β2 with the lowest final training loss "
    "increases as the batch size decreases."
)
SOURCE = (
    "Talk 'Converge or Diverge?', tuning-recipe slide ('first tune up β2, then β1 < √β2'); "
    "β2 threshold 1 − O(1/n^3.5) grows with the number n of mini-batches"
)


def make(spec: dict, fig: dict, scale: str):
    ds = kit.run_quiet(spec)
    loss = ds["loss_final"].where(~ds["diverged"])
    med = loss.median("seed").transpose("sampling.batch_size", "optimizer.b2")
    bs = [int(v) for v in med["sampling.batch_size"].values]
    b2 = med["optimizer.b2"].values
    best = med.fillna(np.inf).argmin("optimizer.b2").values
    best_b2 = {b: float(b2[i]) for b, i in zip(bs, best, strict=True)}
    f, (ax0, ax1) = plt.subplots(
        1, 2, figsize=(11.5, 4.4), constrained_layout=True, gridspec_kw={"width_ratios": [1.15, 1]}
    )
    v = med.values
    finite = v[np.isfinite(v)]
    norm = LogNorm(vmin=finite.min(), vmax=finite.max())
    mesh = ax0.imshow(v, norm=norm, cmap="viridis_r", aspect="auto", origin="lower")
    for i in range(len(bs)):
        for j in range(len(b2)):
            if np.isfinite(v[i, j]):
                ax0.text(
                    j,
                    i,
                    f"{v[i, j]:.2g}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="w" if norm(v[i, j]) > 0.5 else "k",
                )
            else:
                ax0.text(j, i, "div", ha="center", va="center", fontsize=7, color="r")
        ax0.add_patch(plt.Rectangle((best[i] - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
    ax0.set_xticks(range(len(b2)), [f"{x:g}" for x in b2], rotation=45)
    ax0.set_yticks(range(len(bs)), [str(b) for b in bs])
    ax0.set_xlabel("β2")
    ax0.set_ylabel("mini-batch size b (examples per step)")
    ax0.set_title("final training loss (median over seeds); red box: best β2 per b", fontsize=9)
    f.colorbar(mesh, ax=ax0, label="training cross-entropy (nats), log scale")
    x = 1.0 - b2
    cmap = plt.get_cmap("viridis")
    for i, b in enumerate(bs):
        rel = v[i] / np.nanmin(v[i])
        col = cmap(i / max(len(bs) - 1, 1))
        ax1.plot(x, rel, "o-", color=col, label=f"b = {b}: best β2 = {best_b2[b]:g}")
        ax1.plot(x[best[i]], rel[best[i]], "*", color=col, ms=14, mec="k")
    ax1.set_xscale("log")
    ax1.invert_xaxis()
    ticks = x
    ax1.set_xticks(ticks, [f"{1 - t:g}" for t in ticks], rotation=45)
    ax1.minorticks_off()
    ax1.set_xlabel("β2 (log scale in 1 − β2)")
    ax1.set_ylabel("final loss / best final loss at this b")
    ax1.set_title("loss relative to the best β2 of each batch size", fontsize=9)
    ax1.legend(fontsize=8)
    ax1.grid(True, alpha=0.3)
    pr, o = spec["problem"], spec["optimizer"]
    f.suptitle(
        f"scikit-learn digits (N = {pr.get('n_points', 1797)} images, 8×8), tanh MLP "
        f"64–{pr.get('width', 16)}–10, Adam β1 = {o['b1']:g}, {kit.schedule_text(spec)}, "
        f"{spec['run']['steps']} steps, {spec['sampling']['scheme']} batches, "
        f"{spec['run']['seeds']} seeds",
        fontsize=9.5,
    )
    data = xr.Dataset(
        {
            "loss": med.astype("float64"),
            "best_b2": ("sampling.batch_size", [best_b2[b] for b in bs]),
            "diverged_fraction": ds["diverged"].mean("seed").astype("float64"),
        }
    )
    results = {f"best_b2_batch{b}": best_b2[b] for b in bs}
    return data, f, results
