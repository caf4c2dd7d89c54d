"""Figure reddi: on Reddi et al.'s example Adam with fixed (β1, β2) ends at the wrong end
θ = +1 under cyclic and random order even with η_k ∝ 1/√k; AMSGrad goes to the optimum
θ* = −1.

Source: Reddi, Kale & Kumar 2018, Thm 1-3; talk 'Converge or Diverge?', Reddi slides.
Spec: ``reddi.toml``; build: ``python experiments/figurekit.py reddi``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

import figurekit as kit

NAME = "reddi"
CLAIM = (
    "On Reddi et al.'s example Adam with fixed (β1, β2) ends at the wrong end θ = +1 under "
    "cyclic and random order even with η_k ∝ 1/√k; AMSGrad goes to the optimum θ* = −1."
)
SOURCE = "Reddi, Kale & Kumar 2018, Thm 1-3; talk 'Converge or Diverge?', Reddi slides"


def make(spec: dict, fig: dict, scale: str):
    ds = kit.run_quiet(spec)
    th = ds["theta"].isel(dim=0).transpose("sampling.scheme", "optimizer.kind", "seed", "snapshot")
    k = ds["snapshot_step"].values
    keep = k >= 1
    schemes = [str(s) for s in th["sampling.scheme"].values]
    kinds = [str(s) for s in th["optimizer.kind"].values]
    names = {
        "cyclic": "cyclic order",
        "iid": "random order (i.i.d.)",
        "reshuffle": "random reshuffling",
    }
    colors = {"adam": "C3", "amsgrad": "C0"}
    f, axes = plt.subplots(
        1, len(schemes), figsize=(5.2 * len(schemes), 4.0), sharey=True, constrained_layout=True
    )
    axes = np.atleast_1d(axes)
    results = {}
    for ax, s in zip(axes, schemes, strict=True):
        for kind in kinds:
            y = th.sel({"sampling.scheme": s, "optimizer.kind": kind}).values[:, keep]
            kit.band(
                ax,
                k[keep],
                y,
                0,
                {"adam": "Adam", "amsgrad": "AMSGrad"}.get(kind, kind),
                colors.get(kind),
            )
            fin = ds["theta_final"].sel({"sampling.scheme": s, "optimizer.kind": kind}).values
            results[f"theta_final_median_{kind}_{s}"] = float(np.median(fin))
        ax.axhline(-1, color="k", lw=0.8, ls=":")
        ax.axhline(1, color="k", lw=0.8, ls=":")
        ax.text(k[keep][0], -0.93, "optimum θ* = −1", fontsize=8, va="bottom")
        ax.set_xscale("log")
        ax.set_xlabel("iteration k")
        ax.set_title(names.get(s, s))
        ax.set_ylim(-1.1, 1.1)
        ax.legend(loc="center left", fontsize=8)
    axes[0].set_ylabel("θ_k (projected onto [−1, 1])")
    n = spec["problem"]["n"]
    o = spec["optimizer"]
    f.suptitle(
        f"Reddi et al. example: ℓ_0 = {n}θ, ℓ_i = −θ (i = 1…{n - 1}), θ ∈ [−1, 1]; "
        f"β1 = {o['b1']:g}, β2 = {o['b2']:g}, {kit.schedule_text(spec)}; "
        f"median and 10–90 % band of {spec['run']['seeds']} seeds",
        fontsize=9.5,
    )
    data = xr.Dataset(
        {"theta": th.isel(snapshot=np.nonzero(keep)[0]).astype("float64")},
        coords={"k": ("snapshot", k[keep])},
    ).drop_vars("snapshot_step", errors="ignore")
    return data, f, results
