"""Figure overparam-erm: in an overparametrised regression (interpolation, noise vanishing at
the minima) Adam drives the training loss to 0, and L is a Lyapunov function of the Adam
flow near the minima (⟨∇L, f⟩ > 0) for large enough mini-batches.

Source: Dereich, Jentzen & Kassing 2025, Thm 2.1 (Lyapunov) and Thm 2.4 (convergence).
Spec: ``overparam-erm.toml``; build: ``python experiments/figurekit.py overparam-erm``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

import adamjax
import figurekit as kit

NAME = "overparam-erm"
CLAIM = (
    "In an overparametrised regression (interpolation, noise vanishing at the minima) Adam "
    "drives the training loss to 0, and L is a Lyapunov function of the Adam flow near the "
    "minima (⟨∇L, f⟩ > 0) for large enough mini-batches."
)
SOURCE = "Dereich, Jentzen & Kassing 2025, Thm 2.1 (Lyapunov) and Thm 2.4 (convergence)"


def make(spec: dict, fig: dict, scale: str):
    ds = kit.run_quiet(spec)
    loss = ds["loss"].transpose("sampling.batch_size", "seed", "snapshot")
    k = ds["snapshot_step"].values
    keep = k >= 1
    bs = [int(v) for v in loss["sampling.batch_size"].values]
    f, axes = plt.subplots(1, 2, figsize=(11.5, 4.3), constrained_layout=True)
    ax0, ax1 = axes
    cmap = plt.get_cmap("viridis")
    results = {}
    for i, b in enumerate(bs):
        y = loss.sel({"sampling.batch_size": b}).values[:, keep]
        med, _, _ = kit.band(
            ax0, k[keep], y, 0, f"batch size b = {b}", cmap(i / max(len(bs) - 1, 1))
        )
        results[f"loss_final_median_b{b}"] = float(med[-1])
    ax0.set_xscale("log")
    ax0.set_yscale("log")
    ax0.set_xlabel("iteration n")
    ax0.set_ylabel("training loss L(Θ_n) (median, 10–90 % band)")
    ax0.grid(True, alpha=0.3)
    ax0.legend(fontsize=8)
    ax0.set_title("training loss over Adam steps", fontsize=10)
    data = xr.Dataset(
        {"loss": loss.isel(snapshot=np.nonzero(keep)[0]).astype("float64")},
        coords={"n": ("snapshot", k[keep])},
    ).drop_vars("snapshot_step", errors="ignore")

    radii = [float(r) for r in fig.get("radii", [0.01, 0.03, 0.1, 0.3])]
    problem = adamjax.make_problem(spec["problem"], jnp.float32)
    # Points near the global minima: each seed's final iterate (largest batch), pushed
    # further towards its minimum by full-batch gradient descent on L, then moved a
    # distance r in random directions.
    th = np.asarray(ds["theta_final"].isel({"sampling.batch_size": -1}).values, np.float32)
    lr = float(fig.get("gd_lr", 0.5))

    def descend(t):
        return jax.lax.fori_loop(
            0, int(fig.get("gd_steps", 200)), lambda _, x: x - lr * problem.grad(x), t
        )

    pts0 = jax.jit(jax.vmap(descend))(jnp.asarray(th))
    results["loss_at_minima_max"] = float(jnp.max(jax.vmap(problem.loss)(pts0)))
    key = jax.random.PRNGKey(int(fig.get("seed", 0)))
    n_dir = int(fig.get("directions", 8))
    dirs = jax.random.normal(key, (n_dir, *pts0.shape), jnp.float32)
    dirs = dirs / jnp.linalg.norm(dirs, axis=-1, keepdims=True)
    lyap_bs = [int(b) for b in fig.get("lyapunov_batch_sizes", bs)]
    frac = np.full((len(bs), len(radii)), np.nan)
    zmin = np.full((len(bs), len(radii)), np.nan)
    for i, b in enumerate(bs):
        if b not in lyap_bs:
            continue
        vf = adamjax.vector_field(
            problem,
            b1=spec["optimizer"].get("b1", 0.9),
            b2=spec["optimizer"].get("b2", 0.999),
            batch_size=b,
            samples=int(fig.get("samples", 2**14)),
            batches=int(fig.get("batches", 32)),
            seed=int(fig.get("seed", 0)),
        )
        for j, r in enumerate(radii):
            pts = (pts0[None] + r * dirs).reshape(-1, problem.dim)
            ly = adamjax.lyapunov(vf, pts)
            frac[i, j] = ly.fraction_positive
            zmin[i, j] = float(np.min(np.asarray(ly.values) / np.asarray(ly.se)))
            results[f"lyapunov_fraction_b{b}_r{r:g}"] = float(frac[i, j])
            results[f"lyapunov_min_z_b{b}_r{r:g}"] = zmin[i, j]
    markers = "osD^v<>"
    for i, b in enumerate(bs):
        if b not in lyap_bs:
            continue
        ax1.plot(
            radii,
            frac[i],
            "-",
            marker=markers[i % len(markers)],
            ms=11 - 3 * i,
            color=cmap(i / max(len(bs) - 1, 1)),
            alpha=0.9,
            label=f"b = {b} (min ⟨∇L, f⟩/SE = {np.nanmin(zmin[i]):.3g})",
        )
    ax1.set_xscale("log")
    ax1.set_ylim(-0.03, 1.03)
    ax1.set_xlabel("distance r from a global minimum (‖θ − θ_min‖)")
    ax1.set_ylabel("fraction of points with ⟨∇L(θ), f(θ)⟩ > 0")
    ax1.set_title(
        f"Lyapunov check near the minima ({pts0.shape[0]} minima × {n_dir} directions per r)",
        fontsize=10,
    )
    ax1.grid(True, alpha=0.3)
    ax1.legend(fontsize=8)
    data["lyapunov_fraction"] = (("sampling.batch_size", "radius"), frac)
    data["lyapunov_min_z"] = (("sampling.batch_size", "radius"), zmin)
    data = data.assign_coords(radius=radii)
    pr, o = spec["problem"], spec["optimizer"]
    f.suptitle(
        f"Overparametrised regression: N = {pr['n_points']} points, tanh student of width "
        f"{pr['width']} (teacher width {pr.get('teacher_width', 4)}), Adam β1 = {o['b1']:g}, "
        f"β2 = {o['b2']:g}, {kit.schedule_text(spec)}, {spec['sampling']['scheme']} "
        f"mini-batches, {spec['run']['seeds']} seeds",
        fontsize=9.5,
    )
    return data, f, results
