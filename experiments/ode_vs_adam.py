"""Figure ode-vs-adam: Adam's interpolated path is an asymptotic pseudo-trajectory of the
flow of θ' = −f(θ) (f = Adam vector field): sample paths follow the ODE from the same
start, and the APT error E_n(T) decays to 0 like √γ_n (slope −r/2 in log–log for
γ_n = c·n^−r).

Source: Dereich, Jentzen & Kassing 2025, Thm 1.5 (ODE approximation), Cor. 1.9 (rate).
Spec: ``ode-vs-adam.toml``; build: ``python experiments/figurekit.py ode-vs-adam``.
"""

from __future__ import annotations

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

import adamjax
import figurekit as kit

NAME = "ode-vs-adam"
CLAIM = (
    "Adam's interpolated path is an asymptotic pseudo-trajectory of the flow of θ' = −f(θ): "
    "sample paths follow the ODE from the same start, and the APT error E_n(T) decays to 0 "
    "like √γ_n (slope −r/2 in log–log for γ_n = c·n^−r)."
)
SOURCE = "Dereich, Jentzen & Kassing 2025, Thm 1.5 (ODE approximation), Cor. 1.9 (rate)"


def make(spec: dict, fig: dict, scale: str):
    ds = kit.run_quiet(spec)
    o, sch, pr = spec["optimizer"], spec["schedule"], spec["problem"]
    k = ds["snapshot_step"].values
    th = ds["theta"].values  # (seed, snapshot, dim)
    n_paths = int(fig.get("paths", 3))
    starts = th[:n_paths, 0, :]
    times = np.asarray(
        adamjax.training_times(
            sch.get("kind", "power"),
            adamjax.SchedHParams(c=sch.get("c", 0.05), r=sch.get("r", 0.6), n0=sch.get("n0", 0.0)),
            int(k.max()),
        ),
        np.float64,
    )
    t_snap = np.where(k > 0, times[np.maximum(k - 1, 0)], 0.0)
    results = {}
    problem = adamjax.make_problem(pr, jnp.float32)
    vf = adamjax.vector_field(
        problem,
        b1=o["b1"],
        b2=o["b2"],
        eps=o.get("eps", 1e-8),
        samples=int(fig.get("samples", 2**18)),
        batches=int(fig.get("batches", 32)),
        seed=int(fig.get("seed", 0)),
    )
    lim = float(np.abs(th[:n_paths]).max()) * 1.2 + 0.1
    field = vf.tabulate(-lim, lim, int(fig.get("nodes", 257)))
    solver = dict(solver=fig.get("solver", "tsit5"))
    if "dt0" in fig:  # fixed steps (cheaper to compile) where the field is smooth
        solver.update(rtol=None, dt0=float(fig["dt0"]))
    dt = vf.dtype  # float64 when x64 is enabled, else float32
    fr = adamjax.flow(field, jnp.asarray(starts, dt), jnp.asarray(t_snap, dt), **solver)
    flow_ys = np.asarray(fr.ys, np.float64)

    f, (ax0, ax1) = plt.subplots(1, 2, figsize=(11.5, 4.6), constrained_layout=True)
    for i in range(n_paths):
        (line,) = ax0.plot(
            th[i, :, 0], th[i, :, 1], "-", lw=0.9, alpha=0.85, label=f"Adam path, seed {i}"
        )
        ax0.plot(
            flow_ys[i, :, 0],
            flow_ys[i, :, 1],
            "--",
            color="k",
            lw=1.4,
            label="ODE flow Φ_t(θ_0) (same start)" if i == 0 else None,
        )
        ax0.plot(*starts[i], "o", color=line.get_color(), ms=6)
    ax0.plot(0, 0, "*", color="C3", ms=12, label="minimiser θ* = 0")
    ax0.set_xlabel("θ₁ (flat direction, curvature " + f"{kit.fmt(pr['curvature'][0])})")
    ax0.set_ylabel("θ₂ (steep direction, curvature " + f"{kit.fmt(pr['curvature'][1])})")
    ax0.set_title(
        f"sample paths over training time t ∈ [0, {t_snap[-1]:.3g}] (K = {int(k.max())} steps)",
        fontsize=9.5,
    )
    ax0.legend(fontsize=7.5)
    ax0.set_aspect("equal", adjustable="datalim")
    ax0.grid(True, alpha=0.3)

    data = xr.Dataset(
        {
            "adam_path": (("path", "snapshot", "dim"), th[:n_paths].astype(np.float64)),
            "flow_path": (("path", "snapshot", "dim"), flow_ys),
        },
        coords={"n": ("snapshot", k), "t": ("snapshot", t_snap)},
    )
    # The APT error of every run per window (the spec's [flow] table).
    n = ds["window_start"].values
    err = ds["apt_error"].values.astype(np.float64)  # (seed, window)
    med, _, _ = kit.band(
        ax1,
        n,
        err,
        0,
        f"APT error E_n(T), T = {kit.fmt(spec['flow']['horizon'])}"
        f" (median, 10–90 % over {err.shape[0]} runs)",
        "C0",
    )
    fit = adamjax.fit_decay(n, med, full=True)
    slope, icpt = fit.exponent, fit.log_prefactor
    r = float(sch.get("r", 0.6))
    ax1.plot(
        n,
        np.exp(icpt) * n**slope,
        ":",
        color="C0",
        lw=1.2,
        label=f"fit, all windows: slope {slope:.3f}",
    )
    # The rate is asymptotic: fit the later half of the windows as well.
    fit_late = adamjax.fit_decay(n, med, first=len(n) // 2, full=True)
    slope_late, icpt_late = fit_late.exponent, fit_late.log_prefactor
    late = np.isfinite(med) & (med > 0) & (np.arange(len(n)) >= fit_late.first)
    ax1.plot(
        n[late],
        np.exp(icpt_late) * n[late] ** slope_late,
        "-.",
        color="k",
        lw=1.2,
        label=f"fit, later half of the windows: slope {slope_late:.3f}",
    )
    gam = sch.get("c", 0.05) * (n + sch.get("n0", 0.0)) ** (-r)
    ref = np.sqrt(gam) * np.exp(np.mean(np.log(med[late]) - np.log(np.sqrt(gam[late]))))
    ax1.plot(n, ref, "--", color="C3", lw=1.2, label=f"∝ √γ_n (slope −r/2 = {-r / 2:.2f})")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("window start n (Adam step)")
    ax1.set_ylabel("sup over window of |Θ̄(t_n + t) − Φ_t(Θ_n)|")
    ax1.set_title("APT error against window start", fontsize=9.5)
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8)
    data["apt_error"] = (("seed", "window"), err)
    data = data.assign_coords(window_start=("window", n))
    results["apt_slope_fit"] = float(slope)
    results["apt_slope_fit_late"] = float(slope_late)
    results["apt_slope_theory"] = -r / 2
    results["apt_error_median_first"] = float(med[0])
    results["apt_error_median_last"] = float(med[-1])
    f.suptitle(
        f"2-D anisotropic quadratic, curvatures {pr['curvature']}, {pr['noise']} noise of scale "
        f"{kit.fmt(pr.get('noise_scale', 1.0))}; Adam β1 = {o['b1']:g}, β2 = {o['b2']:g}, "
        f"{kit.schedule_text(spec)}; starts θ_0 = {spec['run']['theta0']} + "
        f"{kit.fmt(spec['run'].get('theta0_std', 0.0))}·N(0, I)",
        fontsize=9.5,
    )
    return data, f, results
