"""Predicting the phase diagram from the vector field: where Adam diverges, which batch
size is large enough, without running Adam.

For each (β1, β2[, batch size]) the Adam vector field f (Dereich, Jentzen & Kassing
2025, Def. 1.3; its reshuffled or cyclic analogue for those schemes) is estimated at
the points ``at`` on common random numbers, and the **drift toward the minimiser**

    s(θ) = ⟨f(θ), θ − θ*⟩ / ‖θ − θ*‖      (the flow θ' = −f moves toward θ* iff s > 0)

(or, without a known minimiser, the Lyapunov quantity ⟨∇L(θ), f(θ)⟩) decides:
**diverging** if s < −3 SE at some point, **converging** if s > 3 SE at every point,
**undecided** otherwise, and wherever β1² ≥ β2 (outside the theory, which assumes
β1 < √β2: there m/√v is unbounded and the field need not describe Adam). On Zhang et
al.'s counterexample every ℓ_i is linear for x ≥ −1, so there f is one constant F
and the rule is exact for the flow: F < 0 sends it to +∞, F > 0 into x < −1 and to
x* = −2; near x* every gradient is c_i (x + 2), so f = sign(x + 2)·F and the same
sign says whether L is a Lyapunov function near the minimum (DJK Thm 2.1/2.4). In
general it is a heuristic: a local statement at the chosen points about the ODE,
which Adam follows asymptotically (Thm 1.5).
"""

from __future__ import annotations

import math

import numpy as np

from .._engine.errors import SpecError
from .._engine.problems.base import Problem
from .._engine.sampling import SCHEMES
from .._theory.phase import field_grid
from .._theory.vector_field import vector_field as _theory_vf
from .outcome import CONVERGED, DIVERGING, UNDECIDED
from .plan import point_problem
from .progress import Progress

FLAG_MEANINGS = "converging diverging undecided"


def phase_diagram(
    spec_or_problem,
    *,
    b1,
    b2,
    at=None,
    batch_size=None,
    scheme: str | None = None,
    samples: int | None = None,
    target_se: float | None = None,
    batches: int = 32,
    eps: float | None = None,
    seed: int = 0,
    point: int = 0,
    dtype=None,
):
    """The predicted outcome of Adam over a (β1, β2[, batch size]) grid.

    Per cell, the drift toward the minimiser s(θ) = ⟨f(θ), θ − θ*⟩ / ‖θ − θ*‖ of the
    Adam vector field f at the points ``at`` (without a known minimiser ⟨∇L(θ), f(θ)⟩):
    **diverging** if s < −3 SE at some point, **converging** if s > 3 SE at every point,
    **undecided** otherwise and wherever β1² ≥ β2 (outside the theory). Exact for the
    flow on Zhang et al.'s counterexample (f is one constant for x ≥ −1), a local
    statement about the ODE in general (Dereich, Jentzen & Kassing 2025, Thm 1.5, 2.1).

    Args:
        spec_or_problem: a spec (its grid point ``point`` gives the problem, ε, the
            batch size, the scheme and θ0) or a :class:`~adamjax.Problem`.
        b1, b2: the values of β1 and β2 (the grid is their product).
        at: the points θ (P, dim) where the drift is judged (default: the spec's θ0,
            else the problem's default start, else 1).
        batch_size: an int or a list of batch sizes (a third grid axis).
        scheme: ``iid``, ``reshuffle`` or ``cyclic`` (default: the spec's, else iid).
        samples: chain length M (default: each of the ``batches`` batch means spans
            ≥ 10/(1 − β) for the largest β; at least 2**16, at most 2**22); or
            ``target_se`` from a pilot at two corners of the grid.
        batches, eps, seed, dtype: as for :func:`~adamjax.vector_field`.

    Returns:
        An ``xarray.Dataset`` over ``optimizer.b1``, ``optimizer.b2`` (and
        ``sampling.batch_size``), ``point`` and ``dim``: ``f`` and ``f_se``, the
        ``drift`` and its ``drift_se`` per point, and ``predicted`` (int8 CF flags
        ``converging diverging undecided``, values 0, 1, 2 as ``outcome``).
    """
    import xarray as xr

    problem, defaults, scheme, eps, sizes = _setup(spec_or_problem, point, scheme, eps, batch_size)
    b1v = np.asarray(b1, np.float64).reshape(-1)
    b2v = np.asarray(b2, np.float64).reshape(-1)
    if np.any((b1v < 0) | (b1v >= 1)) or np.any((b2v < 0) | (b2v >= 1)):
        raise SpecError("phase_diagram: b1 and b2 must lie in [0, 1)")
    pts = _points(problem, at, defaults.get("theta0"))
    mini = problem.minimizer
    if mini is None and not problem.has_loss:
        raise SpecError("phase_diagram: the problem has neither a minimiser nor a loss")
    g1, g2 = (a.reshape(-1) for a in np.meshgrid(b1v, b2v, indexing="ij"))
    m_min = _default_samples(max(b1v.max(), b2v.max()), batches)
    out_f, out_se = [], []
    used = []
    for b in sizes:
        m = samples or m_min
        if target_se is not None and samples is None:
            m = _pilot(problem, b, scheme, eps, batches, seed, dtype, g1, g2, pts, m, target_se)
        vf = _field(problem, b, scheme, eps, m, batches, seed, dtype)
        f, se = field_grid(vf, g1, g2, pts)
        out_f.append(np.asarray(f, np.float64))
        out_se.append(np.asarray(se, np.float64))
        used.append(vf.samples)
    f = np.stack(out_f, -3)  # (G, B, P, d)
    se = np.stack(out_se, -3)
    drift, drift_se = _drift(problem, pts, f, se)
    pred = np.full(drift.shape[:-1], UNDECIDED, np.int8)
    pred[np.all(drift > 3 * drift_se, -1)] = CONVERGED
    pred[np.any(drift < -3 * drift_se, -1)] = DIVERGING
    # Outside the theory (β1² ≥ β2) m/√v is unbounded and Adam need not follow the flow
    # (DJK assume α < √β): no prediction there.
    pred = np.where((g1**2 >= g2)[:, None], UNDECIDED, pred).astype(np.int8)
    shape = (len(b1v), len(b2v), len(sizes))
    lead = ("optimizer.b1", "optimizer.b2", "sampling.batch_size")
    ds = xr.Dataset(
        {
            "f": (lead + ("point", "dim"), f.reshape(*shape, *f.shape[-2:])),
            "f_se": (lead + ("point", "dim"), se.reshape(*shape, *se.shape[-2:])),
            "drift": (lead + ("point",), drift.reshape(*shape, -1)),
            "drift_se": (lead + ("point",), drift_se.reshape(*shape, -1)),
            "predicted": (lead, pred.reshape(shape)),
        },
        coords={
            "optimizer.b1": b1v,
            "optimizer.b2": b2v,
            "sampling.batch_size": sizes,
            "theta": (("point", "dim"), pts),
        },
        attrs={"scheme": scheme, "eps": eps, "samples": used, "batches": batches, "seed": seed},
    )
    if batch_size is None or np.ndim(batch_size) == 0:
        ds = ds.squeeze("sampling.batch_size", drop=False)
    _describe(ds, mini is not None)
    return ds


def critical_b2(
    spec_or_problem,
    *,
    b1=0.0,
    batch_size=None,
    at=None,
    scheme: str | None = None,
    lo: float = 0.0,
    hi: float = 0.999,
    grid: int = 48,
    iters: int = 30,
    samples: int | None = None,
    batches: int = 32,
    eps: float | None = None,
    seed: int = 0,
    point: int = 0,
    dtype=None,
    progress: bool | str | None = False,
):
    """The critical β2 above which the vector field predicts convergence, per β1 and batch size.

    Along β2, at fixed β1 and batch size b, let s(β2) be the smallest drift over the
    points ``at`` (as in :func:`phase_diagram`: s > 0 means the flow θ' = −f moves toward θ*).
    s is evaluated on ``grid`` values of β2 spaced evenly in log(1 − β2) from ``lo`` to
    ``hi``; the critical value β2* is the last sign change from s < 0 to s > 0 (above
    it the field predicts convergence up to ``hi``), refined by ``iters`` bisection
    steps on the same common-random-number estimator: for fixed samples f̂ is a smooth
    deterministic function of β2, so bisection finds the root of the estimate. Its
    standard error is by the delta method, SE(β2*) = SE(s)/|∂s/∂β2| at β2*, the slope by
    a central difference on the same samples.

    On Zhang et al.'s counterexample f is one constant F(β1, β2, b) for x ≥ −1 and
    sign(x + 2)·F near x* = −2, so β2* is exactly where the flow switches from running
    to +∞ to converging, and where L becomes a Lyapunov function of the flow near the
    minimum (DJK Thm 2.1/2.4; Zhang 2023: "smaller batches need larger β2"; README, References).

    Args:
        spec_or_problem, at, scheme, samples, batches, eps, seed, point, dtype: as for
            :func:`phase_diagram` (the default ``samples`` is sized for β = ``hi``).
        b1: a value or a list of β1.
        batch_size: an int or a list of batch sizes.
        lo, hi: the range of β2 searched, 0 ≤ lo < hi < 1.
        grid, iters: the number of grid values and of bisection steps.
        progress: progress in evaluations of the field (per batch size: the grid, each
            bisection step, the slope): True a bar, None a bar on a terminal and log
            lines otherwise (as for :func:`adamjax.run`), False (default) nothing.

    Returns:
        An ``xarray.Dataset`` over ``optimizer.b1`` and ``sampling.batch_size`` with
        ``critical_b2`` (``lo`` where the drift is positive on the whole range, NaN
        where it is negative at ``hi``) and ``critical_b2_se``.
    """
    import xarray as xr

    problem, defaults, scheme, eps, sizes = _setup(spec_or_problem, point, scheme, eps, batch_size)
    b1v = np.asarray(b1, np.float64).reshape(-1)
    if not 0.0 <= lo < hi < 1.0 or np.any((b1v < 0) | (b1v >= 1)):
        raise SpecError("critical_b2: need 0 ≤ lo < hi < 1 and every b1 in [0, 1)")
    if grid < 2 or iters < 0:
        raise SpecError("critical_b2: grid must be ≥ 2 and iters ≥ 0")
    pts = _points(problem, at, defaults.get("theta0"))
    if problem.minimizer is None and not problem.has_loss:
        raise SpecError("critical_b2: the problem has neither a minimiser nor a loss")
    b2g = 1.0 - np.geomspace(1.0 - lo, 1.0 - hi, grid)
    m = samples or _default_samples(max(b1v.max(), hi), batches)
    crit = np.full((len(b1v), len(sizes)), np.nan)
    crit_se = np.full_like(crit, np.nan)
    bar = Progress(len(sizes) * (iters + 2), 0, "critical_b2", progress, unit="eval")
    try:
        _critical_b2(problem, pts, sizes, scheme, eps, m, batches, seed, dtype, b1v, b2g,
                     lo, iters, crit, crit_se, bar.update)  # fmt: skip
    finally:
        bar.close()
    lead = ("optimizer.b1", "sampling.batch_size")
    ds = xr.Dataset(
        {"critical_b2": (lead, crit), "critical_b2_se": (lead, crit_se)},
        coords={"optimizer.b1": b1v, "sampling.batch_size": sizes,
                "theta": (("point", "dim"), pts)},
        attrs={"scheme": scheme, "eps": eps, "samples": m, "batches": batches, "seed": seed,
               "lo": lo, "hi": hi},
    )  # fmt: skip
    if np.ndim(b1) == 0:
        ds = ds.squeeze("optimizer.b1", drop=False)
    if batch_size is None or np.ndim(batch_size) == 0:
        ds = ds.squeeze("sampling.batch_size", drop=False)
    _describe(ds, problem.minimizer is not None)
    return ds


def _critical_b2(problem, pts, sizes, scheme, eps, m, batches, seed, dtype, b1v, b2g, lo,
                 iters, crit, crit_se, tick) -> None:  # fmt: skip
    """Fill ``crit``/``crit_se`` (β1, batch size) by the grid search and bisection of
    :func:`critical_b2`; ``tick(1)`` after every evaluation of the field."""
    grid = len(b2g)
    for j, b in enumerate(sizes):
        vf = _field(problem, b, scheme, eps, m, batches, seed, dtype)

        def drift(g1, g2, vf=vf):
            f, se = field_grid(vf, g1, g2, pts)
            d, dse = _drift(problem, pts, np.asarray(f, np.float64), np.asarray(se, np.float64))
            k = np.argmin(d, -1)[..., None]  # the point that decides: the smallest drift
            tick(1)
            return np.take_along_axis(d, k, -1)[..., 0], np.take_along_axis(dse, k, -1)[..., 0]

        g1, g2 = (a.reshape(-1) for a in np.meshgrid(b1v, b2g, indexing="ij"))
        s = drift(g1, g2)[0].reshape(len(b1v), grid)
        neg = s < 0
        last = np.where(neg.any(-1), grid - 1 - np.argmax(neg[:, ::-1], -1), -1)
        crit[last < 0, j] = lo
        crit_se[last < 0, j] = 0.0
        rows = (last >= 0) & (last < grid - 1)
        a = b2g[np.clip(last, 0, grid - 1)]  # s(a) < 0 < s(c)
        c = b2g[np.clip(last + 1, 0, grid - 1)]
        for _ in range(iters):
            mid = 0.5 * (a + c)
            below = drift(b1v, mid)[0] < 0
            a, c = np.where(below, mid, a), np.where(below, c, mid)
        root = 0.5 * (a + c)
        h = 1e-3 * (1.0 - root)
        s3, se3 = drift(np.tile(b1v, 3), np.concatenate([root, root - h, root + h]))
        s0, sm, sp = s3.reshape(3, -1)
        slope = (sp - sm) / (2 * h)
        crit[rows, j] = root[rows]
        crit_se[rows, j] = (se3[: len(b1v)] / np.maximum(np.abs(slope), 1e-300))[rows]


def _setup(spec_or_problem, point: int, scheme, eps, batch_size):
    """The problem and its spec defaults; the scheme, ε and the list of batch sizes,
    each the argument where given, else the spec's, else the estimator's default."""
    problem, defaults = _problem_of(spec_or_problem, point)
    scheme = scheme or defaults.get("scheme", "iid")
    eps = defaults.get("eps", 1e-8) if eps is None else eps
    sizes = batch_size if batch_size is not None else defaults.get("batch_size", 1)
    given = np.atleast_1d(sizes)
    if not given.size or any(int(b) != b or b < 1 for b in given.tolist()):
        raise SpecError(f"batch_size = {sizes!r}: must be whole numbers ≥ 1")
    sizes = [int(b) for b in given]
    if scheme not in SCHEMES:
        raise SpecError(f"scheme = {scheme!r}: must be one of {', '.join(SCHEMES)}")
    return problem, defaults, scheme, eps, sizes


def _problem_of(spec_or_problem, point: int) -> tuple[Problem, dict]:
    if isinstance(spec_or_problem, Problem):
        return spec_or_problem, {}
    problem, p = point_problem(spec_or_problem, point)
    th = p["run"]["theta0"]
    return problem, {
        "scheme": p["sampling"]["scheme"],
        "batch_size": p["sampling"]["batch_size"],
        "eps": p["optimizer"]["eps"],
        "theta0": th,
    }


def _points(problem: Problem, at, theta0) -> np.ndarray:
    d = int(problem.dim)
    if at is None:
        at = theta0
    if at is None:
        at = problem.default_theta0()
    if at is None:
        at = np.ones(d)
    pts = np.asarray(at, np.float64)
    if pts.ndim <= 1:
        pts = np.broadcast_to(pts.reshape(-1), (d,)).reshape(1, d) if pts.size in (1, d) else pts
    if pts.ndim != 2 or pts.shape[1] != d:
        raise SpecError(f"phase_diagram: at has shape {np.shape(at)}, expected (points, {d})")
    return pts


def _drift(problem: Problem, pts, f, se):
    """The drift toward θ* (or ⟨∇L, f⟩) per grid point and point, with its SE."""
    mini = problem.minimizer
    # The SE treats the coordinates of f̂ as independent (exact for dim = 1).
    if mini is not None:
        u = pts - np.asarray(mini, np.float64)
        norm = np.linalg.norm(u, axis=-1, keepdims=True)
        u = np.where(norm > 0, u / np.where(norm > 0, norm, 1), 0.0)
    else:
        import jax

        u = np.asarray(jax.vmap(problem.grad)(pts.astype(np.float32)), np.float64)
    drift = np.sum(f * u, -1)
    drift_se = np.sqrt(np.sum((se * u) ** 2, -1))
    return drift, drift_se


def _default_samples(beta_max: float, batches: int) -> int:
    """Each of the batch means spans ≥ 10 correlation times 1/(1 − β) (2**16 … 2**22)."""
    corr = 1.0 / (1.0 - beta_max)
    return min(2**22, max(2**16, int(math.ceil(batches * 10 * corr))))


def _field(problem, b, scheme, eps, m, batches, seed, dtype):
    """The CRN chain estimator for batch size ``b`` (its (β1, β2) are set per grid point)."""
    return _theory_vf(
        problem, b1=0.0, b2=0.0, eps=eps, batch_size=b, samples=m, batches=batches,
        seed=seed, scheme=scheme, fast=False, method="chain", dtype=dtype,
        check_samples=False,
    )  # fmt: skip


def _pilot(problem, b, scheme, eps, batches, seed, dtype, g1, g2, pts, m0, target_se):
    corners = [0, len(g1) - 1]
    vf = _field(problem, b, scheme, eps, m0, batches, seed, dtype)
    _, se = field_grid(vf, g1[corners], g2[corners], pts)
    worst = float(np.max(se))
    need = m0 * (worst / target_se) ** 2 * 1.1 if worst > 0 else m0
    return int(min(2**22, max(m0, need)))


def _describe(ds, has_min: bool) -> None:
    what = "⟨f, θ − θ*⟩/‖θ − θ*‖" if has_min else "⟨∇L, f⟩"
    attrs = {
        "f": ("Adam vector field f(θ)", "the CRN chain estimate at each point (Def. 1.3)"),
        "f_se": ("standard error of f", "batch means"),
        "drift": (f"drift {what}", "> 0: the flow θ' = −f moves toward the minimiser"),
        "drift_se": ("standard error of the drift", "from the SE of f per coordinate"),
        "predicted": ("predicted outcome", "converging if drift > 3 SE at every point, "
                      "diverging if drift < −3 SE at some point, undecided otherwise and "
                      "where β1² ≥ β2 (outside the theory)"),
        "theta": ("points θ where the drift is judged", "the argument at"),
        "optimizer.b1": ("optimizer.b1", "β1 = α"),
        "optimizer.b2": ("optimizer.b2", "β2 = β"),
        "sampling.batch_size": ("sampling.batch_size", "mini-batch size b"),
        "critical_b2": ("critical β2", "above it the drift is > 0 (predicted converging) "
                        "up to the searched hi; lo: everywhere, NaN: nowhere"),
        "critical_b2_se": ("standard error of the critical β2", "delta method: SE of the "
                           "drift over its slope in β2, on the same samples"),
    }  # fmt: skip
    for k, (long_name, desc) in attrs.items():
        if k in ds.variables:
            ds[k].attrs.update(long_name=long_name, units="1", description=desc)
    if "predicted" not in ds:
        return
    ds["predicted"].attrs.update(
        flag_values=np.array([CONVERGED, DIVERGING, UNDECIDED], np.int8),
        flag_meanings=FLAG_MEANINGS,
    )
