"""Figure d0-neighbourhood: with η_k = 0.1/√k, Adam converges to stationary points when
D0 = 0 but only to a neighbourhood of size O((1 − β2)·D0) when D0 > 0; SGD converges in
both cases.

Source: Zhang et al. 2022, convergence theorem under affine variance; talk slides
'converges to the neighborhood of stationary points with size O((1 − β2)D0)' / D0 = 0 case.
Spec: ``d0-neighbourhood.toml``; build: ``python experiments/figurekit.py d0-neighbourhood``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

import adamjax
import figurekit as kit

NAME = "d0-neighbourhood"
CLAIM = (
    "With η_k = 0.1/√k, Adam converges to stationary points when D0 = 0 but only to a "
    "neighbourhood of size O((1 − β2)·D0) when D0 > 0; SGD converges in both cases."
)
SOURCE = (
    "Zhang et al. 2022, convergence theorem under affine variance; talk slides 'converges to "
    "the neighborhood of stationary points with size O((1 − β2)D0)' / D0 = 0 case"
)


def _grad_norms(problem_table: dict, theta):
    """‖∇L(θ)‖ for θ of shape (..., dim), in float64 NumPy."""
    p = adamjax.make_problem(problem_table, jnp.float32)
    flat = jnp.asarray(np.asarray(theta, np.float32).reshape(-1, theta.shape[-1]))
    g = jax.jit(jax.vmap(p.grad))(flat)
    return np.asarray(jnp.linalg.norm(g, axis=-1), np.float64).reshape(theta.shape[:-1]), p


def make(spec: dict, fig: dict, scale: str):
    ds = kit.run_quiet(spec)
    th = ds["theta"].transpose(
        "problem.label_noise", "optimizer.kind", "optimizer.b2", "seed", "snapshot", "dim"
    )
    k = ds["snapshot_step"].values
    keep = k >= 1
    noises = [float(v) for v in th["problem.label_noise"].values]
    b2s = [float(v) for v in th["optimizer.b2"].values]
    gn = np.zeros(th.shape[:-1])
    d0, problems = {}, {}
    for i, s in enumerate(noises):
        table = {**spec["problem"], "label_noise": s}
        gn[i], p = _grad_norms(table, th.values[i])
        problems[s] = p
        # D0 = (1/N) Σ ‖∇ℓ_i(θ̂) − ∇L(θ̂)‖² at the least-squares solution θ̂.
        a, yv = (np.asarray(x, np.float64) for x in p.data)
        that = np.linalg.lstsq(a, yv, rcond=None)[0]
        eg = np.asarray(p.example_grads(jnp.asarray(that, jnp.float32)), np.float64)
        d0[s] = float(np.mean(np.sum((eg - eg.mean(0)) ** 2, -1)))
    gn = xr.DataArray(gn, dims=th.dims[:-1], coords={c: th.coords[c] for c in th.dims[:-2]})
    gn = gn.isel(snapshot=np.nonzero(keep)[0]).assign_coords(k=("snapshot", k[keep]))
    kk = k[keep]
    f, axes = plt.subplots(
        1, len(noises), figsize=(5.4 * len(noises), 4.2), sharey=True, constrained_layout=True
    )
    axes = np.atleast_1d(axes)
    results = {}
    cmap = plt.get_cmap("plasma")
    # ‖∇L‖ at the seed-averaged iterate (∇L is affine, so this is ‖E∇L(θ_k)‖ estimated):
    # zero-mean fluctuations average out, a systematic offset (Adam's limit) does not.
    gm = np.zeros(th.shape[:3] + (th.shape[4],))
    for i, s in enumerate(noises):
        mean_th = th.values[i].mean(axis=2)  # (kind, b2, snapshot, dim)
        gm[i] = _grad_norms({**spec["problem"], "label_noise": s}, mean_th)[0]
    gm = xr.DataArray(
        gm, dims=(*th.dims[:3], "snapshot"), coords={c: th.coords[c] for c in th.dims[:3]}
    )
    gm = gm.isel(snapshot=np.nonzero(keep)[0])
    n_seeds = th.sizes["seed"]
    for ax, s in zip(axes, noises, strict=True):
        sub = gn.sel({"problem.label_noise": s})
        subm = gm.sel({"problem.label_noise": s})
        tag = "D0pos" if d0[s] > 1e-8 else "D0zero"
        curves = [("sgd", float(b2s[0]), "SGD", "k")]
        for j, b2 in enumerate(b2s):
            col = cmap(0.15 + 0.7 * j / max(len(b2s) - 1, 1))
            curves.append(("adam", b2, f"Adam, β1 = {spec['optimizer']['b1']:g}, β2 = {b2:g}", col))
        for kind, b2, label, col in curves:
            sel = {"optimizer.kind": kind, "optimizer.b2": b2}
            med, _, _ = kit.band(ax, kk, sub.sel(sel).values, 0, label, col)
            ax.plot(kk, subm.sel(sel).values, "--", color=col, lw=0.9, alpha=0.9)
            name = "sgd" if kind == "sgd" else f"adam_b2_{b2:g}"
            results[f"grad_norm_final_{name}_{tag}"] = float(med[-1])
            results[f"grad_norm_at_seed_mean_final_{name}_{tag}"] = float(subm.sel(sel)[-1])
        if tag == "D0zero":  # Adam's steps are ~η_k in size: exact convergence at rate η_k
            last = float(np.median(sub.sel({"optimizer.kind": "adam"}).values[..., -1]))
            c, r = spec["schedule"]["c"], spec["schedule"]["r"]
            ref = last * (kk / kk[-1]) ** (-r)
            late = kk >= 100
            ax.plot(
                kk[late],
                ref[late],
                ":",
                color="gray",
                lw=1.5,
                label=f"∝ η_k = {kit.fmt(c)}/√k (reference slope)",
            )
        ax.plot(
            [],
            [],
            "--",
            color="gray",
            lw=0.9,
            label=f"dashed: ‖∇L(mean of the {n_seeds} seeds' θ_k)‖",
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("iteration k")
        tag = "D0 = 0 (interpolation)" if d0[s] < 1e-8 else f"D0 ≈ {d0[s]:.2g} > 0"
        ax.set_title(f"label noise σ = {s:g}: {tag}")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    axes[0].set_ylabel("‖∇L(θ_k)‖ (median, 10–90 % band)")
    pr = spec["problem"]
    f.suptitle(
        f"Linear least squares, N = {pr['n_points']} points in dimension {pr['dim']}, "
        f"batch size {spec['sampling'].get('batch_size', 1)} ({spec['sampling']['scheme']}); "
        f"η_k = {kit.fmt(spec['schedule']['c'])}/√k; {spec['run']['seeds']} seeds; "
        f"{spec['run'].get('dtype', 'float32')} (SGD's floor near 1e-5 is round-off)",
        fontsize=9.5,
    )
    data = xr.Dataset(
        {
            "grad_norm": gn.drop_vars("snapshot_step", errors="ignore"),
            "grad_norm_at_seed_mean": gm.drop_vars("snapshot_step", errors="ignore"),
        }
    )
    data["D0"] = ("problem.label_noise", [d0[s] for s in noises])
    return data, f, results
