"""Figure zhang-phase: Adam diverges for small β2 on a fixed problem; the divergence region
in the (β1, β2) plane grows with n; large β2 (with β1 < √β2) converges; the vector field
predicts the boundary without running Adam.

Simulated outcome per cell: the majority of the seeds' ``outcome`` (adamjax's documented
rule on the distance to x* at the start, a quarter of the way and the end). Predicted:
``adamjax.phase_diagram`` at x_0 (on this problem f is one constant F for x ≥ −1, so the
sign of the drift decides exactly) and ``adamjax.critical_b2`` at β1 = 0.

Source: Zhang et al. 2022 counterexample (2.5); talk 'Converge or Diverge?', phase-diagram
slides. Spec: ``zhang-phase.toml``; build: ``python experiments/figurekit.py zhang-phase``.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib import patheffects
from matplotlib.colors import LogNorm

import adamjax
import figurekit as kit

NAME = "zhang-phase"
CLAIM = (
    "Adam diverges for small β2 on a fixed problem; the divergence region in the (β1, β2) "
    "plane grows with n; large β2 (with β1 < √β2) converges."
)
SOURCE = "Zhang et al. 2022 counterexample (2.5); talk 'Converge or Diverge?', phase-diagram slides"


EDGE = [patheffects.withStroke(linewidth=3.2, foreground="0.2")]
DIMS = ("problem.n", "sampling.scheme", "optimizer.b1", "optimizer.b2")


def _majority(ds) -> np.ndarray:
    """Per cell: DIVERGING / CONVERGED where most seeds say so (``outcome``), else UNDECIDED."""
    oc = ds["outcome"].transpose(*DIMS, "seed").values
    div, conv = (oc == adamjax.DIVERGING).mean(-1), (oc == adamjax.CONVERGED).mean(-1)
    return np.where(
        div > 0.5, adamjax.DIVERGING, np.where(conv > 0.5, adamjax.CONVERGED, adamjax.UNDECIDED)
    ).astype(np.int8)


def _sim_critical(b2: np.ndarray, flags: np.ndarray) -> tuple[float, float]:
    """The simulated critical β2 as a bracket (a, c): the largest β2 whose runs diverge and
    the smallest larger β2 whose runs converge (a = 0 where none diverges)."""
    div = np.nonzero(flags == adamjax.DIVERGING)[0]
    start = div.max() + 1 if div.size else 0
    conv = np.nonzero(flags[start:] == adamjax.CONVERGED)[0]
    return (float(b2[div.max()]) if div.size else 0.0,
            float(b2[start + conv.min()]) if conv.size else 1.0)  # fmt: skip


def make(spec: dict, fig: dict, scale: str):
    ds = kit.run_quiet(spec)
    x0 = float(spec["run"]["theta0"])
    gap = ds["gap_final"].median("seed").transpose(*DIMS)
    sim = _majority(ds)  # (n, scheme, b1, b2)
    ns = [int(v) for v in gap["problem.n"].values]
    schemes = [str(v) for v in gap["sampling.scheme"].values]
    b1 = gap["optimizer.b1"].values
    b2 = gap["optimizer.b2"].values
    samples, seed = fig.get("samples"), int(fig.get("seed", 0))
    batch = spec["sampling"].get("batch_size", 1)

    # The prediction of the vector field (adamjax.phase_diagram) on the same grid, for the
    # same sampling scheme and start: where the drift toward x* changes sign; and the
    # critical β2 at β1 = 0 (adamjax.critical_b2: bisection on the same CRN field).
    pred, drift, drift_se, agree, crit, crit_sim, area = {}, {}, {}, {}, {}, {}, {}
    for i, n in enumerate(ns):
        problem = adamjax.make_problem({"kind": "zhang", "n": n}, np.float32)
        for j, s in enumerate(schemes):
            pdg = adamjax.phase_diagram(
                problem, b1=b1, b2=b2, at=[[x0]], scheme=s, batch_size=batch,
                samples=samples, seed=seed,
            )  # fmt: skip
            k = (n, s)
            pred[k] = pdg["predicted"].values
            drift[k] = pdg["drift"].values[..., 0]
            drift_se[k] = pdg["drift_se"].values[..., 0]
            both = (pred[k] != adamjax.UNDECIDED) & (sim[i, j] != adamjax.UNDECIDED)
            agree[k] = (float(np.mean(pred[k][both] == sim[i, j][both])), int(both.sum()))
            area[k] = float(np.mean(sim[i, j] == adamjax.DIVERGING))
            cb = adamjax.critical_b2(
                problem, b1=0.0, at=[[x0]], scheme=s, batch_size=batch, samples=samples,
                seed=seed, hi=float(b2.max()),
            )  # fmt: skip
            crit[k] = (float(cb["critical_b2"]), float(cb["critical_b2_se"]))
            crit_sim[k] = _sim_critical(b2, sim[i, j, 0])

    steps = spec["run"]["steps"]
    f, axes = plt.subplots(
        len(schemes), len(ns), figsize=(4.9 * len(ns) + 1.2, 4.3 * len(schemes) + 0.5),
        constrained_layout=True, squeeze=False,
    )  # fmt: skip
    vals = gap.values[np.isfinite(gap.values) & (gap.values > 0)]
    norm = LogNorm(vmin=max(vals.min(), 1e-6), vmax=vals.max())
    y = 1.0 - b2
    big = len(b1) > 15
    for j, s in enumerate(schemes):
        for i, n in enumerate(ns):
            ax, k = axes[j, i], (n, s)
            g = gap.sel({"problem.n": n, "sampling.scheme": s}).values
            mesh = ax.pcolormesh(b1, y, np.clip(g, norm.vmin, None).T, norm=norm,
                                 cmap="viridis", shading="nearest")  # fmt: skip
            for flag, mk, col, lab in (
                (adamjax.DIVERGING, "x", "red", "simulated: diverging"),
                (adamjax.UNDECIDED, ".", "0.75", "simulated: undecided"),
            ):
                ii, jj = np.nonzero(sim[i, j] == flag)
                ax.plot(b1[ii], y[jj], mk, color=col, ms=3.5 if big else 6, mew=0.9, label=lab)
            bb = np.linspace(0.0, min(b1.max(), math.sqrt(1 - y.min())), 200)
            ax.plot(
                bb,
                np.maximum(1 - bb**2, y.min()),
                "w--",
                lw=1.8,
                path_effects=EDGE,
                label="β1 = √β2 (right of it: outside the theory, no prediction)",
            )
            # Predicted boundary (drift = 0) and the band where |drift| < 3 SE.
            # Only inside the theory (β1² < β2); outside, phase_diagram predicts nothing.
            dr = np.where(b1[None, :] ** 2 < b2[:, None], drift[k].T, np.nan)
            dse = drift_se[k].T
            if np.nanmin(dr) < 0 < np.nanmax(dr):
                ax.contour(b1, y, dr, levels=[0.0], colors="orange", linewidths=2.2)
            band = (np.abs(dr) < 3 * dse).astype(float)  # NaN compares False: outside
            if band.any():
                ax.contourf(b1, y, band, levels=[0.5, 1.5], colors="none", hatches=["////"])
            ax.plot([], [], "-", color="orange", lw=2.2, label="predicted boundary (f = 0)")
            ax.set_yscale("log")
            ax.set_ylim(y.max() * 1.15, y.min() / 1.15)
            ticks = [t for t in (1.0, 0.5, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
                     if y.min() <= t <= y.max()]  # fmt: skip
            ax.set_yticks(ticks)
            ax.set_yticklabels([f"{1 - t:g}" for t in ticks])
            ax.minorticks_off()
            ax.set_xlabel("β1 (momentum, dimensionless)")
            ax.set_ylabel("β2 (log scale in 1 − β2)")
            a, m = agree[k]
            c, cse = crit[k]
            lo, hi = crit_sim[k]
            ax.set_title(
                f"n = {n}, {s} sampling: {100 * area[k]:.0f}% of the grid diverging\n"
                f"prediction agrees in {100 * a:.0f}% of {m} decided cells\ncritical β2 at "
                f"β1 = 0: field {c:.3f} ± {cse:.1g}, simulated [{lo:.3g}, {hi:.3g}]",
                fontsize=8.5,
            )
    h, lab = axes[0, 0].get_legend_handles_labels()
    f.legend(h, lab, loc="outside lower center", ncol=len(lab), fontsize=8.5)
    f.colorbar(mesh, ax=axes, label="optimality gap |x_K − x*| (x* = −2), log scale", shrink=0.8)
    f.suptitle(
        f"Zhang et al. counterexample (2.5), a = 1/(n−1)², x* = −2: Adam after K = {steps} "
        f"steps, {kit.schedule_text(spec)}, x_0 = {x0:g}, batch size {batch}\n{len(b1)}×{len(b2)}"
        f" grid, majority of {spec['run']['seeds']} seed(s) per cell; the field's prediction "
        f"at x_0 drawn on top (hatched: |drift| < 3 SE)",
        fontsize=9.5,
    )
    ks = [(n, s) for n in ns for s in schemes]
    d2 = ("problem.n", "sampling.scheme")

    def per(fn):
        return np.array([fn(k) for k in ks]).reshape(len(ns), len(schemes))

    data = xr.Dataset(
        {
            "gap": gap.astype("float64"),
            "simulated": (DIMS, sim),
            "predicted": (DIMS, np.stack([pred[k] for k in ks]).reshape(sim.shape)),
            "drift": (DIMS, np.stack([drift[k] for k in ks]).reshape(sim.shape)),
            "drift_se": (DIMS, np.stack([drift_se[k] for k in ks]).reshape(sim.shape)),
            "critical_b2_field": (d2, per(lambda k: crit[k][0])),
            "critical_b2_field_se": (d2, per(lambda k: crit[k][1])),
            "critical_b2_sim_lo": (d2, per(lambda k: crit_sim[k][0])),
            "critical_b2_sim_hi": (d2, per(lambda k: crit_sim[k][1])),
        }  # fmt: skip
    )
    results = {}
    for n, s in ks:
        t = f"n{n}_{s}"
        results[f"diverging_fraction_{t}"] = area[n, s]
        results[f"prediction_agreement_{t}"] = agree[n, s][0]
        results[f"decided_cells_{t}"] = agree[n, s][1]
        results[f"critical_b2_at_b1_0_field_{t}"] = crit[n, s][0]
        results[f"critical_b2_at_b1_0_field_se_{t}"] = crit[n, s][1]
        results[f"critical_b2_at_b1_0_sim_lo_{t}"] = crit_sim[n, s][0]
        results[f"critical_b2_at_b1_0_sim_hi_{t}"] = crit_sim[n, s][1]
    return data, f, results
