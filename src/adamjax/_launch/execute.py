"""Running a plan's groups: one simulate call per group (and unit), results as flat arrays."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .._engine.driver import simulate
from .._engine.simulate import RunResult
from .outcome import classify, mid_index
from .plan import Group, Plan


def run_group(plan: Plan, group: Group, *, runner=None, progress=None, sl=slice(None)):
    """Simulate the runs ``sl`` of one group; returns ``{var: array}`` (leading run axis)
    with the engine's variables and those of the plan's recorders."""
    params = jax.tree_util.tree_map(lambda a: a[sl], group.params)
    res = simulate(group.cfg, params, chunk=group.chunk, runner=runner, progress=progress)
    out = {
        "theta_final": res.theta,
        "loss_final": res.loss,
        "grad_norm_final": res.grad_norm,
        "t_final": res.t,
        "diverged": res.diverged,
        "diverged_step": res.diverged_step,
        "theta": res.snapshots,
        "loss": res.snapshot_loss,
    }
    if plan.has_minimizer:
        m = np.asarray(group.cfg.problem.minimizer)
        out["gap_final"] = np.linalg.norm(res.theta - m[None, :], axis=-1)
    out["outcome"] = _outcome(plan, group, np.asarray(params.theta0), res)
    for rec in plan.recorders:
        out.update(rec.finalize(group, res))
    return out


def execute(plan: Plan, *, progress=None) -> dict[str, np.ndarray]:
    """Run every group in memory; returns flat arrays indexed by flat run index.
    ``progress(k)`` is told of every k run-steps done."""
    flat: dict[str, np.ndarray] = {}
    for g in plan.groups:
        out = run_group(plan, g, progress=None if progress is None else _steps(progress, plan))
        for k, v in out.items():
            if k not in flat:
                flat[k] = np.zeros((plan.n_runs, *v.shape[1:]), v.dtype)
            flat[k][g.index] = v
    return flat


def _steps(progress, plan: Plan):
    return lambda runs: progress(runs * plan.steps)


def _initial_loss(problem, theta0: np.ndarray, chunk: int) -> np.ndarray:
    loss = jax.jit(jax.vmap(problem.loss))
    n, width = len(theta0), max(1, min(chunk, len(theta0)))
    out = []
    for lo in range(0, n, width):
        part = theta0[lo : lo + width]
        pad = np.concatenate([part, np.repeat(part[:1], width - len(part), 0)])
        out.append(np.asarray(loss(jnp.asarray(pad)))[: len(part)])
    return np.concatenate(out)


def _outcome(plan: Plan, group: Group, theta0: np.ndarray, res: RunResult) -> np.ndarray:
    """``outcome`` of the runs (see ``outcome``): q is the distance to the minimiser
    where it is known, else the loss."""
    problem = group.cfg.problem
    mid = mid_index(plan.snapshot_steps, plan.steps)
    if plan.has_minimizer:
        m = np.asarray(problem.minimizer, np.float64)

        def q(theta):
            return np.linalg.norm(np.asarray(theta, np.float64) - m, axis=-1)

        q0, q_last = q(theta0), q(res.theta)
        q_mid = None if mid is None else q(res.snapshots[:, mid])
    else:
        if len(plan.snapshot_steps) and plan.snapshot_steps[0] == 0:
            q0 = res.snapshot_loss[:, 0]  # step 0 is recorded: L(θ0)
        else:  # evaluated in chunks of one compiled shape, as the runs were
            q0 = _initial_loss(problem, theta0, group.chunk)
        q_last = res.loss
        q_mid = None if mid is None else res.snapshot_loss[:, mid]
        bad = ~np.isfinite(q0)
        if problem.has_loss and bad.any():
            # A loss broken at the start (e.g. a log of 0) makes its runs blow up at once:
            # they would read as Adam diverging. (Constant text: one warning per run.)
            warnings.warn(
                f"problem.kind = {group.point['problem']['kind']!r}: the loss at θ0 is not "
                f"finite ({q0[bad][0]:g}): runs starting there blow up at their first steps "
                "and read as diverging; check the problem's loss at θ0",
                RuntimeWarning,
                stacklevel=2,
            )
    rec = plan.spec["record"]
    return classify(q0, q_mid, q_last, res.diverged, margin=rec["margin"], ratio=rec["ratio"])
