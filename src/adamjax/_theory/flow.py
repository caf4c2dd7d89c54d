"""The flow Φ_t of the Adam ODE θ'(t) = −f(θ(t)) with diffrax, vmapped over starts.

Dereich, Jentzen & Kassing (2025), Thm 1.5: Adam's interpolated path is an
asymptotic pseudo-trajectory of this flow. :func:`flow` integrates it from many
starting points at once (``vmap`` over starts of one ``diffeqsolve``) and
evaluates Φ_t at arbitrary times ``ts`` through ``SaveAt(ts=...)`` (the solver's
dense interpolant — no extra steps). ``throw=False``: a start whose solve fails
(step budget exhausted, non-finite values) is reported in ``FlowResult.ok`` /
``result`` and its values are NaN — never a silent failure.

Under ``vmap`` an adaptive solver runs until the slowest start finishes, so
groups of similar starts (one window of many runs) are the natural unit.
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._engine.pytree import is_flat
from .._engine.ready import call_interruptibly
from .field import AbstractField
from .hermite import central_slopes

# diffrax solvers by name (the class names in diffrax); all adaptive (PID controller)
# except ``euler``. diffrax itself is imported on first use: it is a third of the
# package's import time, and most runs never integrate a flow.
SOLVERS = {
    "tsit5": "Tsit5",
    "dopri5": "Dopri5",
    "dopri8": "Dopri8",
    "bosh3": "Bosh3",
    "heun": "Heun",
    "midpoint": "Midpoint",
    "ralston": "Ralston",
    "euler": "Euler",
}
# The solvers a spec's ``flow.solver`` may name (the APT comparison is adaptive).
ADAPTIVE_SOLVERS = tuple(k for k in SOLVERS if k != "euler")


class FlowResult(NamedTuple):
    """``ys`` (…, len(ts), dim): Φ_{ts}(θ0) (NaN where the solve failed); ``ok`` (…)
    bool: diffrax's ``is_successful`` of the solve; ``num_steps`` (…) solver steps."""

    ys: Any
    ok: Any
    num_steps: Any


def _value_fn(field):
    if isinstance(field, AbstractField):
        return field.value
    return lambda y: field(y)[0]


@eqx.filter_jit
def _solve(field, y0, ts, solver: str, rtol, atol, dt0, max_steps: int, adaptive: bool, bar: bool):
    import diffrax

    fv = _value_fn(field)
    term = diffrax.ODETerm(lambda t, y, args: -fv(y))
    t1 = ts[-1]
    ctrl = diffrax.PIDController(rtol=rtol, atol=atol) if adaptive else diffrax.ConstantStepSize()
    # Under vmap diffrax's meter shows the slowest start's progress in t (a callback every
    # ``refresh_steps`` solver steps; the values do not change).
    meter = diffrax.TqdmProgressMeter(refresh_steps=50) if bar else diffrax.NoProgressMeter()

    def one(y):
        sol = diffrax.diffeqsolve(
            term,
            getattr(diffrax, SOLVERS[solver])(),
            t0=jnp.zeros((), ts.dtype),
            t1=t1,
            dt0=dt0,
            y0=y,
            saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=ctrl,
            max_steps=max_steps,
            throw=False,
            progress_meter=meter,
        )
        ok = diffrax.is_successful(sol.result)
        ys = jnp.where(ok, sol.ys, jnp.nan)
        return ys, ok, sol.stats["num_steps"]

    return jax.vmap(one)(y0)


def flow(
    field,
    theta0,
    ts,
    *,
    solver: str = "tsit5",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    dt0: float | None = None,
    max_steps: int = 4096,
    progress: bool | None = None,
) -> FlowResult:
    """Φ_t(θ0) of the Adam ODE θ'(t) = −f(θ(t)) for every start and every time.

    Args:
        field: an :class:`~adamjax.AbstractField` (a :class:`~adamjax.VectorField`, a
            :class:`~adamjax.TabulatedField`) or any callable θ ↦ (f, se).
        theta0: starts, shape (…, dim); or, for a :class:`~adamjax.VectorField` of a
            problem with PyTree parameters, a PyTree with leading axes … (then ``ys``
            comes back as that PyTree with leading axes (…, len(ts))).
        ts: increasing times ≥ 0 at which Φ is returned (the solver's dense
            interpolant; no extra steps).
        solver: ``tsit5`` (default), ``dopri5``, ``dopri8``, ``bosh3``, ``heun``,
            ``midpoint``, ``ralston`` (adaptive, PID controller with ``rtol``/``atol``)
            or ``euler``; pass ``dt0`` with ``rtol=None`` for fixed steps.
        max_steps: solver steps per start; a start that needs more is flagged
            (``ok`` False, values NaN), never raised.
        progress: show a terminal bar of the solve (how far in t the slowest start is;
            diffrax's ``TqdmProgressMeter``); default: when stderr is a terminal. The
            values are the same either way.

    Returns:
        A :class:`FlowResult`: ``ys`` (…, len(ts), dim), ``ok`` (…), ``num_steps`` (…).

    Reference: Dereich, Jentzen & Kassing (2025), Thm 1.5 (the ODE θ' = −f(θ)).
    """
    restore = None
    if isinstance(field, AbstractField):
        given_flat = is_flat(theta0)
        theta0, back = field.to_flat(theta0)  # also checks θ's dimension
        restore = None if given_flat else back
    if progress is None:
        progress = sys.stderr is not None and sys.stderr.isatty()
    if solver not in SOLVERS:
        raise ValueError(f"flow.solver = {solver!r}: must be one of {', '.join(SOLVERS)}")
    theta0 = jnp.asarray(theta0)
    lead, d = theta0.shape[:-1], theta0.shape[-1]
    ts = jnp.asarray(ts, theta0.dtype)
    if ts.ndim != 1 or ts.shape[0] < 1:
        raise ValueError("flow: ts must be a non-empty 1-D array of times")
    if float(ts[0]) < 0 or bool(jnp.any(jnp.diff(ts) < 0)):
        raise ValueError("flow: ts must be non-decreasing and ≥ 0")
    adaptive = rtol is not None and solver != "euler"
    if not adaptive and dt0 is None:
        raise ValueError("flow: fixed-step integration needs dt0")
    if float(ts[-1]) == 0:
        ys = jnp.broadcast_to(theta0[..., None, :], (*lead, ts.shape[0], d))
        return FlowResult(np.asarray(ys), np.ones(lead, bool), np.zeros(lead, np.int32))
    flat = theta0.reshape(-1, d)
    r = jnp.asarray(rtol if adaptive else 0.0, theta0.dtype)
    a = jnp.asarray(atol if adaptive else 0.0, theta0.dtype)
    # The solve executes synchronously (host callbacks): in a worker thread, so that
    # Ctrl-C / SIGTERM get through while a (possibly stiff) batch integrates.
    ys, ok, steps = call_interruptibly(
        _solve, field, flat, ts, solver, r, a, dt0, int(max_steps), adaptive, bool(progress)
    )
    ys = np.asarray(ys).reshape(*lead, ts.shape[0], d)
    return FlowResult(
        ys=ys if restore is None else jax.tree_util.tree_map(np.asarray, restore(ys)),
        ok=np.asarray(ok).reshape(lead),
        num_steps=np.asarray(steps).reshape(lead),
    )


# Flows integrated per diffrax call by ``flows_batched`` (the last call padded to the
# same size: one compilation); progress is reported between calls.
FLOW_BATCH = 4096
FLOW_BATCH_BYTES = 2**28  # the field's working memory per call, over all its flows


def flows_batched(
    field,
    starts: np.ndarray,
    ts,
    opts,
    dt,
    tick,
    bar: bool = False,
    saved: MutableMapping | None = None,
    key: str = "flows",
):
    """Flows from ``starts`` (P, d) in calls of :data:`FLOW_BATCH` (padded: one shape), with
    the solver options of ``opts`` (``solver``, ``rtol``, ``atol``, ``max_steps``);
    ``tick(done)`` after each call, and with ``bar`` a terminal bar of each call's solve
    (a stiff batch otherwise shows no progress until it ends). Returns values (P, K, d)
    (NaN where the solve failed), success (P,) and the field's SE at the starts (P, d).

    ``saved``: finished calls are kept there (under ``key``, the call's first start and
    the batch size, with the starts they solved from) and taken from there instead of
    solved again where the starts are the same — a run stopped in the middle of minutes
    or hours of stiff flows resumes after its last finished call.
    """
    P = len(starts)
    # Under diffrax's vmap every start evaluates the field at once: bound the batch by
    # the field's memory per evaluation.
    per = field.eval_bytes() if isinstance(field, AbstractField) else 0
    nb = max(1, min(FLOW_BATCH, P, FLOW_BATCH_BYTES // max(per, 1)))
    ys, oks, ses = [], [], []
    for i in range(0, P, nb):
        n = min(nb, P - i)
        name = f"{key}.{i}.{nb}"
        done = None if saved is None else saved.get(name)
        if done is not None and same_bits(done.get("starts"), starts[i : i + n]):
            ys.append(done["ys"])
            oks.append(done["ok"])
            ses.append(done["se"])
            tick(i + n)
            continue
        part = starts[i : i + nb]
        pad = nb - len(part)
        if pad:
            part = np.concatenate([part, np.repeat(part[:1], pad, 0)])
        x = jnp.asarray(part, dt)
        sol = flow(
            field,
            x,
            jnp.asarray(ts, dt),
            solver=opts.solver,
            rtol=opts.rtol,
            atol=opts.atol,
            max_steps=opts.max_steps,
            progress=bar,
        )
        ys.append(np.asarray(sol.ys)[:n])
        oks.append(np.asarray(sol.ok)[:n])
        ses.append(np.asarray(field(x)[1])[:n])
        if saved is not None:
            saved[name] = {"starts": starts[i : i + n], "ys": ys[-1], "ok": oks[-1], "se": ses[-1]}
        tick(i + n)
    return np.concatenate(ys), np.concatenate(oks), np.concatenate(ses)


def same_bits(a, b) -> bool:
    """The same array, bit for bit (shape and dtype included); False for None."""
    if a is None:
        return False
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def grid_slopes(y: np.ndarray, h: float) -> np.ndarray:
    """dy/dτ along axis −2 of values on a uniform grid of spacing ``h``: fourth-order
    differences (central inside, one-sided at the two ends and their neighbours; second
    order below five points)."""
    K = y.shape[-2]
    if K < 5:
        return np.gradient(y, h, axis=-2, edge_order=2)
    out = np.empty_like(y)
    out[..., 2:-2, :] = central_slopes(y, h)
    # One-sided stencils at each end (on the reversed grid the spacing is −h).
    out[..., 0, :], out[..., 1, :] = _end_slopes(y[..., :5, :], h)
    out[..., -1, :], out[..., -2, :] = _end_slopes(y[..., ::-1, :][..., :5, :], -h)
    return out


# Fourth-order one-sided weights for the slope at the first and the second of five points.
_END_WEIGHTS = np.array([[-25, 48, -36, 16, -3], [-3, -10, 18, -6, 1]], np.float64) / 12


def _end_slopes(a: np.ndarray, h: float):
    """Slopes at the first two of the five grid values ``a`` (…, 5, d), spacing ``h``."""
    w = np.einsum("jk,...kd->j...d", _END_WEIGHTS, a) / h
    return w[0], w[1]
