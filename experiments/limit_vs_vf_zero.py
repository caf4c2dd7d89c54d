"""Figure limit-vs-vf-zero: if Adam converges, its limit is a zero of the Adam vector field
f, not a critical point of L: with asymmetric (exponential) noise the limit and the zero of
f coincide at a measurable distance from the minimiser; with symmetric (gaussian) noise
both are at it.

Source: Dereich, Jentzen & Kassing 2025, Cor. 1.10; Dereich & Jentzen 2024 (symmetric
noise). Spec: ``limit-vs-vf-zero.toml``; build:
``python experiments/figurekit.py limit-vs-vf-zero``.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

import adamjax
import figurekit as kit

NAME = "limit-vs-vf-zero"
CLAIM = (
    "If Adam converges, its limit is a zero of the Adam vector field f, not a critical point "
    "of L: with asymmetric (exponential) noise the limit and the zero of f coincide at a "
    "measurable distance from the minimiser; with symmetric (gaussian) noise both are at it."
)
SOURCE = "Dereich, Jentzen & Kassing 2025, Cor. 1.10; Dereich & Jentzen 2024 (symmetric noise)"


def make(spec: dict, fig: dict, scale: str):
    ds = kit.run_quiet(spec)
    th = ds["theta_final"].isel(dim=0).transpose("problem.noise", "optimizer.b2", "seed")
    noises = [str(v) for v in th["problem.noise"].values]
    b2s = [float(v) for v in th["optimizer.b2"].values]
    ok = ~ds["diverged"].transpose(*th.dims).values
    seeds = th.sizes["seed"]
    zero = np.full((len(noises), len(b2s)), np.nan)
    zero_se = np.full_like(zero, np.nan)
    mean = np.full_like(zero, np.nan)
    mean_se = np.full_like(zero, np.nan)
    results = {}
    for i, nz in enumerate(noises):
        problem = adamjax.make_problem({**spec["problem"], "noise": nz}, jnp.float32)
        for j, b2 in enumerate(b2s):
            x = th.values[i, j][ok[i, j]]
            mean[i, j] = x.mean()
            mean_se[i, j] = x.std(ddof=1) / math.sqrt(len(x))
            vf = adamjax.vector_field(
                problem,
                b1=spec["optimizer"]["b1"],
                b2=b2,
                eps=spec["optimizer"].get("eps", 1e-8),
                samples=int(fig.get("samples", 2**18)),
                batches=int(fig.get("batches", 32)),
                seed=int(fig.get("seed", 0)),
            )
            if fig.get("zero_method", "newton") == "newton":
                z = adamjax.vf_zero(vf, jnp.zeros(1))
                zero[i, j] = float(np.asarray(z.theta).reshape(-1)[0])
                zero_se[i, j] = float(np.asarray(z.se).reshape(-1)[0])
            else:
                zero[i, j], zero_se[i, j] = adamjax.bracket_zero(vf, -0.5, 0.5)
            results[f"limit_mean_{nz}_b2_{b2:g}"] = float(mean[i, j])
            results[f"limit_se_{nz}_b2_{b2:g}"] = float(mean_se[i, j])
            results[f"vf_zero_{nz}_b2_{b2:g}"] = float(zero[i, j])
            results[f"vf_zero_se_{nz}_b2_{b2:g}"] = float(zero_se[i, j])
    f, axes = plt.subplots(
        len(noises),
        len(b2s),
        figsize=(3.9 * len(b2s), 3.1 * len(noises)),
        constrained_layout=True,
        squeeze=False,
    )
    for i, nz in enumerate(noises):
        lo = min(np.quantile(th.values[i], 0.005), np.nanmin(zero[i]), 0.0)
        hi = max(np.quantile(th.values[i], 0.995), np.nanmax(zero[i]), 0.0)
        pad = 0.08 * (hi - lo)
        bins = np.linspace(lo - pad, hi + pad, 41)
        for j, b2 in enumerate(b2s):
            ax = axes[i, j]
            ax.hist(
                th.values[i, j][ok[i, j]],
                bins=bins,
                color="C0",
                alpha=0.55,
                label=f"Adam limits Θ_K ({seeds} runs)",
            )
            ax.axvline(0.0, color="k", lw=1.5, label="minimiser of L (θ* = 0)")
            ax.axvline(
                mean[i, j],
                color="C0",
                lw=1.5,
                label=f"mean limit {mean[i, j]:+.4f} ± {mean_se[i, j]:.1g}",
            )
            if np.isfinite(zero[i, j]):
                ax.axvline(
                    zero[i, j],
                    color="C3",
                    lw=1.5,
                    ls="--",
                    label=f"zero of f {zero[i, j]:+.4f} ± {zero_se[i, j]:.1g}",
                )
            ax.set_title(f"{nz} noise, β2 = {b2:g}", fontsize=10)
            ax.set_xlabel("θ (final iterate)")
            if j == 0:
                ax.set_ylabel("number of runs")
            ax.legend(fontsize=7, loc="upper left")
            ax.set_ylim(0, ax.get_ylim()[1] * 1.45)
    pr, o = spec["problem"], spec["optimizer"]
    f.suptitle(
        f"1-D quadratic ℓ(θ, x) = ½(θ − x)², x = mean-0 noise of scale {pr.get('noise_scale', 1)}"
        f" (exponential: Exp(1) − 1, asymmetric); Adam β1 = {o['b1']:g}, "
        f"{kit.schedule_text(spec)}, K = {spec['run']['steps']} steps, "
        f"θ_0 = {kit.fmt(spec['run']['theta0'])}",
        fontsize=9.5,
    )
    data = xr.Dataset(
        {
            "theta_final": th.astype("float64"),
            "limit_mean": (("problem.noise", "optimizer.b2"), mean),
            "limit_se": (("problem.noise", "optimizer.b2"), mean_se),
            "vf_zero": (("problem.noise", "optimizer.b2"), zero),
            "vf_zero_se": (("problem.noise", "optimizer.b2"), zero_se),
        }
    )
    return data, f, results
