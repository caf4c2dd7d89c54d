"""Predicting the phase diagram from the vector field: where Adam diverges, which batch
size is large enough, without running Adam.

For each (β1, β2[, batch size]) the Adam vector field f (Dereich, Jentzen & Kassing
2025, Def. 1.3; its reshuffled or cyclic analogue for those schemes) is estimated at
the points ``at`` on common random numbers, and the **drift toward the minimiser**

    s(θ) = ⟨f(θ), θ − θ*⟩ / ‖θ − θ*‖      (the flow θ' = −f moves toward θ* iff s > 0)

(or, without a known minimiser, the Lyapunov quantity ⟨∇L(θ), f(θ)⟩) decides:
**diverging** if s < −3 SE at some point, **converging** if s > 3 SE at every point,
**undecided** otherwise. On Zhang et al.'s counterexample every ℓ_i is linear for
x ≥ −1, so there f is one constant F and the rule is exact for the flow: F < 0 sends
it to +∞, F > 0 into x < −1 and to x* = −2; near x* every gradient is c_i (x + 2),
so f = sign(x + 2)·F and the same sign says whether L is a Lyapunov function near
the minimum (DJK Thm 2.1/2.4). In general it is a heuristic: a local statement at
the chosen points about the ODE, which Adam follows asymptotically (Thm 1.5).
"""

from __future__ import annotations

import math

import numpy as np

from .._engine.errors import SpecError
from .._engine.problems.base import Problem
from .._theory.phase import field_grid
from .._theory.vector_field import vector_field as _theory_vf
from .outcome import CONVERGED, DIVERGING, UNDECIDED
from .plan import run_dtype, spec_folder
from .problems import Problems
from .spec import grid_points, load_spec

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
    """The predicted outcome of Adam over a (β1, β2[, batch size]) grid (module docstring).

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

    problem, defaults = _problem_of(spec_or_problem, point)
    scheme = scheme or defaults.get("scheme", "iid")
    eps = defaults.get("eps", 1e-8) if eps is None else eps
    sizes = batch_size if batch_size is not None else defaults.get("batch_size", 1)
    sizes = [int(b) for b in np.atleast_1d(sizes)]
    b1v = np.asarray(b1, np.float64).reshape(-1)
    b2v = np.asarray(b2, np.float64).reshape(-1)
    if np.any((b1v < 0) | (b1v >= 1)) or np.any((b2v < 0) | (b2v >= 1)):
        raise SpecError("phase_diagram: b1 and b2 must lie in [0, 1)")
    pts = _points(problem, at, defaults.get("theta0"))
    mini = problem.minimizer
    if mini is None and not problem.has_loss:
        raise SpecError("phase_diagram: the problem has neither a minimiser nor a loss")
    g1, g2 = (a.reshape(-1) for a in np.meshgrid(b1v, b2v, indexing="ij"))
    corr = 1.0 / (1.0 - max(b1v.max(), b2v.max()))
    # Each of the batch means spans ≥ 10 correlation times 1/(1 − β) (at most 2**22).
    m_min = min(2**22, max(2**16, int(math.ceil(batches * 10 * corr))))
    out_f, out_se = [], []
    used = []
    for b in sizes:
        m = samples or m_min
        if target_se is not None and samples is None:
            m = _pilot(problem, b, scheme, eps, batches, seed, dtype, g1, g2, pts, m, target_se)
        vf = _theory_vf(
            problem, b1=0.0, b2=0.0, eps=eps, batch_size=b, samples=m, batches=batches,
            seed=seed, scheme=scheme, fast=False, method="chain", dtype=dtype,
            check_samples=False,
        )  # fmt: skip
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


def _problem_of(spec_or_problem, point: int) -> tuple[Problem, dict]:
    if isinstance(spec_or_problem, Problem):
        return spec_or_problem, {}
    loaded = load_spec(spec_or_problem)
    p = list(grid_points(loaded.spec))[point]
    problem = Problems(spec_folder(loaded))(p["problem"], run_dtype(p["run"]["dtype"]))
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


def _pilot(problem, b, scheme, eps, batches, seed, dtype, g1, g2, pts, m0, target_se):
    corners = [0, len(g1) - 1]
    vf = _theory_vf(
        problem, b1=0.0, b2=0.0, eps=eps, batch_size=b, samples=m0, batches=batches,
        seed=seed, scheme=scheme, fast=False, method="chain", dtype=dtype,
        check_samples=False,
    )  # fmt: skip
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
                      "diverging if drift < −3 SE at some point, else undecided"),
        "theta": ("points θ where the drift is judged", "the argument at"),
        "optimizer.b1": ("optimizer.b1", "β1 = α"),
        "optimizer.b2": ("optimizer.b2", "β2 = β"),
        "sampling.batch_size": ("sampling.batch_size", "mini-batch size b"),
    }  # fmt: skip
    for k, (long_name, desc) in attrs.items():
        if k in ds.variables:
            ds[k].attrs.update(long_name=long_name, units="1", description=desc)
    ds["predicted"].attrs.update(
        flag_values=np.array([CONVERGED, DIVERGING, UNDECIDED], np.int8),
        flag_meanings=FLAG_MEANINGS,
    )
