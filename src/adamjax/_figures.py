"""Reproducible figures: every claim of the two source documents from a spec in ``experiments/``.

``adamjax figures [NAME…] [--scale smoke|paper] [--out DIR]`` (and ``make figures``)
call :func:`main`. Each figure ``NAME`` has

* a spec ``experiments/NAME.toml``: an ordinary adamjax spec (SPEC §3) plus two
  optional tables that are data, not code — ``[figure]`` (plot parameters, e.g.
  how many sample paths to draw or the vector-field sample size) and
  ``[scale.smoke]`` / ``[scale.paper]``, whose dotted keys override the spec
  (``"run.steps" = 2000``, ``"sweep.optimizer.b1" = [0.0, 0.5]``,
  ``"figure.samples" = 65536``);
* a plot function here that uses only the public API of adamjax;
* outputs ``OUT/NAME.png`` and ``OUT/NAME.nc`` (netCDF: exactly the data that is
  plotted, the effective spec as TOML text in the ``spec`` attribute, and the
  measured results as ``result_*`` attributes). The data files are deterministic:
  fixed seeds, no time stamps or versions that change between runs.

The figures (source documents in ``../shared/seeds``; restated in SPEC §1):

==================  ============================================================
ode-vs-adam         Adam paths vs the ODE flow θ' = −f(θ); APT error vs window
                    start (Dereich, Jentzen & Kassing 2025, Thm 1.5, Cor. 1.9)
limit-vs-vf-zero    Adam's limits vs the zero of f vs the minimiser (Cor. 1.10)
overparam-erm       overparametrised regression: loss vs steps per batch size,
                    Lyapunov fraction ⟨∇L, f⟩ > 0 near the minima (Thm 2.1, 2.4)
zhang-phase         |x − x*| over (β1, β2) on Zhang et al.'s counterexample
reddi               Adam vs AMSGrad on Reddi et al.'s example
d0-neighbourhood    Adam vs SGD, D0 > 0 vs D0 = 0 (Zhang et al. 2022)
beta2-batchsize     final loss over (batch size, β2) on scikit-learn's digits
==================  ============================================================
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
import tomllib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCALES = ("smoke", "paper")
_EXTRA_TABLES = ("figure", "scale")


@dataclass(frozen=True)
class Figure:
    name: str
    claim: str
    source: str
    make: Callable  # (spec: dict, fig: dict, scale: str) -> (xr.Dataset, matplotlib Figure, dict)


FIGURES: dict[str, Figure] = {}


def _register(name: str, claim: str, source: str):
    def deco(fn):
        FIGURES[name] = Figure(name=name, claim=claim, source=source, make=fn)
        return fn

    return deco


# --- specs ------------------------------------------------------------------------------


def experiments_dir() -> Path:
    """``$ADAMJAX_EXPERIMENTS``, else ``experiments/`` of the source checkout, else of the cwd."""
    env = os.environ.get("ADAMJAX_EXPERIMENTS")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parents[2] / "experiments"
    if here.is_dir():
        return here
    return Path.cwd() / "experiments"


def _set_dotted(d: dict, key: str, value) -> None:
    table, sep, rest = key.partition(".")
    if not sep:
        d[key] = value
        return
    d.setdefault(table, {})
    if table in ("sweep", "zip", "figure"):
        d[table][rest] = value
    else:
        _set_dotted(d[table], rest, value)


def load_figure_spec(name: str, scale: str = "paper", directory=None) -> tuple[dict, dict]:
    """``experiments/NAME.toml`` at ``scale`` → (adamjax run spec, ``[figure]`` table)."""
    if scale not in SCALES:
        raise ValueError(f"--scale = {scale!r}: must be one of {', '.join(SCALES)}")
    path = Path(directory or experiments_dir()) / f"{name}.toml"
    with open(path, "rb") as f:
        raw = tomllib.load(f)
    scales = raw.pop("scale", {}) or {}
    unknown = set(scales) - set(SCALES)
    if unknown:
        raise ValueError(f"{path}: scale.{sorted(unknown)[0]}: unknown scale")
    for key, value in (scales.get(scale) or {}).items():
        _set_dotted(raw, key, copy.deepcopy(value))
    fig = raw.pop("figure", {}) or {}
    return raw, fig


def _toml(spec: dict) -> str:
    import tomli_w

    return tomli_w.dumps(spec)


def _run(spec: dict):
    """``adamjax.run`` without progress bars; intended β1² ≥ β2 grid points stay quiet."""
    import adamjax

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", adamjax.AssumptionWarning)
        return adamjax.run(spec, progress=False)


def _theory(*names):
    """The theory-layer functions ``names`` from adamjax, or None when not available."""
    import adamjax

    fns = [getattr(adamjax, n, None) for n in names]
    return None if any(f is None for f in fns) else fns


def _q(a, q, axis):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanquantile(a, q, axis=axis)


def _band(ax, x, y, axis, label, color=None, ls="-"):
    """Median line and 10–90 % band of ``y`` over ``axis``."""
    med = _q(y, 0.5, axis)
    lo, hi = _q(y, 0.1, axis), _q(y, 0.9, axis)
    (line,) = ax.plot(x, med, ls, color=color, label=label, lw=1.6)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, lw=0)
    return med, lo, hi


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _schedule_text(spec: dict) -> str:
    s = spec.get("schedule", {})
    if s.get("kind", "power") == "constant":
        return f"γ = {_fmt(s.get('c', 0.05))}"
    c, r, n0 = s.get("c", 0.05), s.get("r", 0.5), s.get("n0", 0.0)
    base = "n" if not n0 else f"(n+{_fmt(n0)})"
    return f"γ_n = {_fmt(c)}·{base}^−{_fmt(r)}"


# --- figures ----------------------------------------------------------------------------


@_register(
    "ode-vs-adam",
    "Adam's interpolated path is an asymptotic pseudo-trajectory of the flow of θ' = −f(θ): "
    "sample paths follow the ODE from the same start, and the APT error E_n(T) decays to 0 "
    "like √γ_n (slope −r/2 in log–log for γ_n = c·n^−r).",
    "Dereich, Jentzen & Kassing 2025, Thm 1.5 (ODE approximation), Cor. 1.9 (rate)",
)
def _ode_vs_adam(spec, fig, scale):
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import xarray as xr

    import adamjax

    ds = _run(spec)
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
    theory = _theory("vector_field", "flow")
    results = {}
    flow_ys = np.full((n_paths, len(k), th.shape[-1]), np.nan)
    if theory is not None:
        vector_field, flow = theory
        problem = adamjax.make_problem(pr, jnp.float32)
        vf = vector_field(
            problem,
            b1=o["b1"],
            b2=o["b2"],
            eps=o.get("eps", 1e-8),
            samples=int(fig.get("samples", 2**18)),
            batches=int(fig.get("batches", 32)),
            seed=int(fig.get("seed", 0)),
        )
        lim = float(np.abs(th[:n_paths]).max()) * 1.2 + 0.1
        field = (
            vf.tabulate(-lim, lim, int(fig.get("nodes", 257))) if hasattr(vf, "tabulate") else vf
        )
        solver = dict(solver=fig.get("solver", "tsit5"))
        if "dt0" in fig:  # fixed steps (cheaper to compile) where the field is smooth
            solver.update(rtol=None, dt0=float(fig["dt0"]))
        dt = vf.dtype  # float64 when x64 is enabled, else float32
        fr = flow(field, jnp.asarray(starts, dt), jnp.asarray(t_snap, dt), **solver)
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
    ax0.set_xlabel("θ₁ (flat direction, curvature " + f"{_fmt(pr['curvature'][0])})")
    ax0.set_ylabel("θ₂ (steep direction, curvature " + f"{_fmt(pr['curvature'][1])})")
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
    if "apt_error" in ds:
        n = ds["window_start"].values
        err = ds["apt_error"].values.astype(np.float64)  # (seed, window)
        med, _, _ = _band(
            ax1,
            n,
            err,
            0,
            f"APT error E_n(T), T = {_fmt(spec['flow']['horizon'])}"
            f" (median, 10–90 % over {err.shape[0]} runs)",
            "C0",
        )
        ok = np.isfinite(med) & (med > 0)
        slope, icpt = np.polyfit(np.log(n[ok]), np.log(med[ok]), 1)
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
        late = ok & (np.arange(len(n)) >= len(n) // 2)
        slope_late, icpt_late = np.polyfit(np.log(n[late]), np.log(med[late]), 1)
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
    else:
        ax1.text(
            0.5,
            0.5,
            "APT error needs the theory layer ([flow] → apt_error)",
            ha="center",
            va="center",
            transform=ax1.transAxes,
        )
        ax1.set_axis_off()
    f.suptitle(
        f"2-D anisotropic quadratic, curvatures {pr['curvature']}, {pr['noise']} noise of scale "
        f"{_fmt(pr.get('noise_scale', 1.0))}; Adam β1 = {o['b1']:g}, β2 = {o['b2']:g}, "
        f"{_schedule_text(spec)}; starts θ_0 = {spec['run']['theta0']} + "
        f"{_fmt(spec['run'].get('theta0_std', 0.0))}·N(0, I)",
        fontsize=9.5,
    )
    return data, f, results


@_register(
    "zhang-phase",
    "Adam diverges for small β2 on a fixed problem; the divergence region in the (β1, β2) "
    "plane grows with n; large β2 (with β1 < √β2) converges.",
    "Zhang et al. 2022 counterexample (2.5); talk 'Converge or Diverge?', phase-diagram slides",
)
def _zhang_phase(spec, fig, scale):
    import matplotlib.pyplot as plt
    import xarray as xr
    from matplotlib.colors import LogNorm

    ds = _run(spec)
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
        ax.set_yscale("log")
        ax.set_ylim(y.max() * 1.15, y.min() / 1.15)
        ticks = [t for t in (0.5, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001) if y.min() <= t <= y.max()]
        ax.set_yticks(ticks)
        ax.set_yticklabels([f"{1 - t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("β1 (momentum, dimensionless)")
        ax.set_ylabel("β2 (log scale in 1 − β2)")
        ax.set_title(f"n = {n}: diverging in {100 * area[n]:.0f}% of the grid")
        ax.legend(loc="upper left", fontsize=8, framealpha=0.85)
    f.colorbar(mesh, ax=axes, label="optimality gap |x_K − x*| (x* = −2), log scale")
    f.suptitle(
        f"Zhang et al. counterexample (2.5), a = 1/(n−1)²: Adam after K = {steps} steps, "
        f"{_schedule_text(spec)}, x_0 = {x0:g}, {spec['sampling']['scheme']} sampling, "
        f"{len(b1)}×{len(b2)} grid, median of {spec['run']['seeds']} seed(s)",
        fontsize=9.5,
    )
    data = xr.Dataset(
        {
            "gap": gap.astype("float64"),
            "diverging": div.astype("int8"),
            "critical_b2": (("problem.n", "optimizer.b1"), np.stack([crit[n] for n in ns])),
        }
    )
    results = {}
    for n in ns:
        results[f"diverging_fraction_n{n}"] = area[n]
        results[f"critical_b2_at_b1_0_n{n}"] = float(crit[n][0])
    return data, f, results


@_register(
    "reddi",
    "On Reddi et al.'s example Adam with fixed (β1, β2) ends at the wrong end θ = +1 under "
    "cyclic and random order even with η_k ∝ 1/√k; AMSGrad goes to the optimum θ* = −1.",
    "Reddi, Kale & Kumar 2018, Thm 1-3; talk 'Converge or Diverge?', Reddi slides",
)
def _reddi(spec, fig, scale):
    import matplotlib.pyplot as plt
    import xarray as xr

    ds = _run(spec)
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
            _band(
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
        f"β1 = {o['b1']:g}, β2 = {o['b2']:g}, {_schedule_text(spec)}; "
        f"median and 10–90 % band of {spec['run']['seeds']} seeds",
        fontsize=9.5,
    )
    data = xr.Dataset(
        {"theta": th.isel(snapshot=np.nonzero(keep)[0]).astype("float64")},
        coords={"k": ("snapshot", k[keep])},
    ).drop_vars("snapshot_step", errors="ignore")
    return data, f, results


def _grad_norms(problem_table: dict, theta):
    """‖∇L(θ)‖ for θ of shape (..., dim), in float64 NumPy."""
    import jax
    import jax.numpy as jnp

    import adamjax

    p = adamjax.make_problem(problem_table, jnp.float32)
    flat = jnp.asarray(np.asarray(theta, np.float32).reshape(-1, theta.shape[-1]))
    g = jax.jit(jax.vmap(p.grad))(flat)
    return np.asarray(jnp.linalg.norm(g, axis=-1), np.float64).reshape(theta.shape[:-1]), p


@_register(
    "d0-neighbourhood",
    "With η_k = 0.1/√k, Adam converges to stationary points when D0 = 0 but only to a "
    "neighbourhood of size O((1 − β2)·D0) when D0 > 0; SGD converges in both cases.",
    "Zhang et al. 2022, convergence theorem under affine variance; talk slides 'converges to "
    "the neighborhood of stationary points with size O((1 − β2)D0)' / D0 = 0 case",
)
def _d0(spec, fig, scale):
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import xarray as xr

    ds = _run(spec)
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
            med, _, _ = _band(ax, kk, sub.sel(sel).values, 0, label, col)
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
                label=f"∝ η_k = {_fmt(c)}/√k (reference slope)",
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
        f"η_k = {_fmt(spec['schedule']['c'])}/√k; {spec['run']['seeds']} seeds; "
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


@_register(
    "beta2-batchsize",
    "Smaller mini-batches need a larger β2: the β2 with the lowest final training loss "
    "increases as the batch size decreases.",
    "Talk 'Converge or Diverge?', tuning-recipe slide ('first tune up β2, then β1 < √β2'); "
    "β2 threshold 1 − O(1/n^3.5) grows with the number n of mini-batches (SPEC §1)",
)
def _beta2_batchsize(spec, fig, scale):
    import matplotlib.pyplot as plt
    import xarray as xr
    from matplotlib.colors import LogNorm

    ds = _run(spec)
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
        f"64–{pr.get('width', 16)}–10, Adam β1 = {o['b1']:g}, {_schedule_text(spec)}, "
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


@_register(
    "overparam-erm",
    "In an overparametrised regression (interpolation, noise vanishing at the minima) Adam "
    "drives the training loss to 0, and L is a Lyapunov function of the Adam flow near the "
    "minima (⟨∇L, f⟩ > 0) for large enough mini-batches.",
    "Dereich, Jentzen & Kassing 2025, Thm 2.1 (Lyapunov) and Thm 2.4 (convergence)",
)
def _overparam(spec, fig, scale):
    import matplotlib.pyplot as plt
    import xarray as xr

    ds = _run(spec)
    loss = ds["loss"].transpose("sampling.batch_size", "seed", "snapshot")
    k = ds["snapshot_step"].values
    keep = k >= 1
    bs = [int(v) for v in loss["sampling.batch_size"].values]
    theory = _theory("vector_field", "lyapunov")
    f, axes = plt.subplots(1, 2, figsize=(11.5, 4.3), constrained_layout=True)
    ax0, ax1 = axes
    cmap = plt.get_cmap("viridis")
    results = {}
    for i, b in enumerate(bs):
        y = loss.sel({"sampling.batch_size": b}).values[:, keep]
        med, _, _ = _band(ax0, k[keep], y, 0, f"batch size b = {b}", cmap(i / max(len(bs) - 1, 1)))
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
    if theory is None:
        ax1.text(
            0.5,
            0.5,
            "Lyapunov check needs the theory layer\n(adamjax.vector_field, adamjax.lyapunov)",
            ha="center",
            va="center",
            transform=ax1.transAxes,
        )
        ax1.set_axis_off()
    else:
        import jax
        import jax.numpy as jnp

        import adamjax

        vector_field, lyapunov = theory
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
            vf = vector_field(
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
                ly = lyapunov(vf, pts)
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
        f"β2 = {o['b2']:g}, {_schedule_text(spec)}, {spec['sampling']['scheme']} mini-batches, "
        f"{spec['run']['seeds']} seeds",
        fontsize=9.5,
    )
    return data, f, results


def _zero_on_grid(vf, lo: float, hi: float, nodes: int = 33, rounds: int = 3):
    """Zero of a 1-D increasing f̂ by bracketing on grids (one vectorised call per round)
    and linear interpolation; SE = SE(f̂)/f̂' (delta method)."""
    for _ in range(rounds):
        x = np.linspace(lo, hi, nodes)
        fv, se = (np.asarray(a, np.float64).reshape(-1) for a in vf(x[:, None]))
        k = np.nonzero((fv[:-1] <= 0) & (fv[1:] > 0))[0]
        if not k.size:
            return float("nan"), float("nan")
        k = int(k[0])
        lo, hi = x[k], x[k + 1]
    w = fv[k] / (fv[k] - fv[k + 1])
    z = x[k] + w * (x[k + 1] - x[k])
    slope = (fv[k + 1] - fv[k]) / (x[k + 1] - x[k])
    return float(z), float(((1 - w) * se[k] + w * se[k + 1]) / slope)


@_register(
    "limit-vs-vf-zero",
    "If Adam converges, its limit is a zero of the Adam vector field f, not a critical point "
    "of L: with asymmetric (exponential) noise the limit and the zero of f coincide at a "
    "measurable distance from the minimiser; with symmetric (gaussian) noise both are at it.",
    "Dereich, Jentzen & Kassing 2025, Cor. 1.10; Dereich & Jentzen 2024 (symmetric noise)",
)
def _limit(spec, fig, scale):
    import jax.numpy as jnp
    import matplotlib.pyplot as plt
    import xarray as xr

    import adamjax

    ds = _run(spec)
    th = ds["theta_final"].isel(dim=0).transpose("problem.noise", "optimizer.b2", "seed")
    noises = [str(v) for v in th["problem.noise"].values]
    b2s = [float(v) for v in th["optimizer.b2"].values]
    ok = ~ds["diverged"].transpose(*th.dims).values
    theory = _theory("vector_field", "vf_zero")
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
            if theory is not None:
                vector_field, vf_zero = theory
                vf = vector_field(
                    problem,
                    b1=spec["optimizer"]["b1"],
                    b2=b2,
                    eps=spec["optimizer"].get("eps", 1e-8),
                    samples=int(fig.get("samples", 2**18)),
                    batches=int(fig.get("batches", 32)),
                    seed=int(fig.get("seed", 0)),
                )
                if fig.get("zero_method", "newton") == "newton":
                    z = vf_zero(vf, jnp.zeros(1))
                    zero[i, j] = float(np.asarray(z.theta).reshape(-1)[0])
                    zero_se[i, j] = float(np.asarray(z.se).reshape(-1)[0])
                else:
                    zero[i, j], zero_se[i, j] = _zero_on_grid(vf, -0.5, 0.5)
            results[f"limit_mean_{nz}_b2_{b2:g}"] = float(mean[i, j])
            results[f"limit_se_{nz}_b2_{b2:g}"] = float(mean_se[i, j])
            if theory is not None:
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
    if theory is None:
        f.text(
            0.5,
            0.5,
            "zero of f missing: needs adamjax.vector_field / vf_zero",
            ha="center",
            color="C3",
        )
    pr, o = spec["problem"], spec["optimizer"]
    f.suptitle(
        f"1-D quadratic ℓ(θ, x) = ½(θ − x)², x = mean-0 noise of scale {pr.get('noise_scale', 1)}"
        f" (exponential: Exp(1) − 1, asymmetric); Adam β1 = {o['b1']:g}, {_schedule_text(spec)},"
        f" K = {spec['run']['steps']} steps, θ_0 = {_fmt(spec['run']['theta0'])}",
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


ORDER = (
    "ode-vs-adam",
    "limit-vs-vf-zero",
    "overparam-erm",
    "zhang-phase",
    "reddi",
    "d0-neighbourhood",
    "beta2-batchsize",
)
FIGURES = {k: FIGURES[k] for k in ORDER}


# --- driver -----------------------------------------------------------------------------


def _clean_attrs(results: dict) -> dict:
    out = {}
    for k, v in results.items():
        out[f"result_{k}"] = float(v) if isinstance(v, float | np.floating) else v
    return out


def _for_netcdf(ds):
    """Bools as int8 (netCDF has no bool); everything else as is."""
    for k in list(ds.data_vars) + list(ds.coords):
        if ds[k].dtype == bool:
            ds[k] = ds[k].astype("int8")
    return ds


def make_figure(name: str, scale: str = "smoke", out=None, directory=None) -> dict:
    """Build one figure; writes ``OUT/NAME.png`` and ``OUT/NAME.nc``; returns its results."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if name not in FIGURES:
        raise ValueError(f"figure {name!r}: unknown (known: {', '.join(FIGURES)})")
    fg = FIGURES[name]
    spec, fig = load_figure_spec(name, scale, directory)
    out = Path(out or "figures-out")
    out.mkdir(parents=True, exist_ok=True)
    data, f, results = fg.make(copy.deepcopy(spec), fig, scale)
    data = _for_netcdf(data)
    data.attrs = {
        "figure": name,
        "claim": fg.claim,
        "source": fg.source,
        "scale": scale,
        "spec": _toml(spec),
        "figure_params": json.dumps(fig, sort_keys=True),
        **_clean_attrs(results),
    }
    nc = out / f"{name}.nc"
    if nc.exists():
        nc.unlink()
    data.to_netcdf(nc)
    f.savefig(out / f"{name}.png", dpi=int(fig.get("dpi", 100)), metadata={"Software": None})
    plt.close(f)
    return results


def main(argv=None) -> int:
    """``adamjax figures [NAME…] [--scale smoke|paper] [--out DIR]``; returns an exit code."""
    ap = argparse.ArgumentParser(
        prog="adamjax figures", description="Regenerate the figures (PNG + netCDF data)."
    )
    ap.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"figures to build (default: all): {', '.join(FIGURES)}",
    )
    ap.add_argument("--scale", choices=SCALES, default="paper")
    ap.add_argument("--out", default="figures-out", help="output folder (default figures-out)")
    ap.add_argument(
        "--experiments",
        default=None,
        help="folder of the figure specs (default: the checkout's experiments/)",
    )
    ap.add_argument("--list", action="store_true", help="list the figures and exit")
    args = ap.parse_args(argv)
    if args.list:
        for fg in FIGURES.values():
            print(f"{fg.name:18s} {fg.claim}")
        return 0
    names = args.names or list(FIGURES)
    bad = [n for n in names if n not in FIGURES]
    if bad:
        print(
            f"adamjax figures: unknown figure {bad[0]!r} (known: {', '.join(FIGURES)})",
            file=sys.stderr,
        )
        return 2
    summary = {}
    total = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        try:
            results = make_figure(name, args.scale, args.out, args.experiments)
        except (ValueError, OSError) as e:
            print(f"adamjax figures: {name}: {e}", file=sys.stderr)
            return 2
        dt = time.perf_counter() - t0
        summary[name] = results
        shown = ", ".join(f"{k} = {_fmt(v)}" for k, v in results.items())
        print(f"{name} ({args.scale}, {dt:.1f} s): {shown}", flush=True)
    with open(Path(args.out) / f"results-{args.scale}.json", "w") as fh:
        json.dump(summary, fh, indent=1, sort_keys=True)
    print(f"all done in {time.perf_counter() - total:.1f} s → {args.out}", flush=True)
    return 0
