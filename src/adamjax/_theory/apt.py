"""The asymptotic pseudo-trajectory (APT) error of every run, window by window.

Dereich, Jentzen & Kassing (2025), Thm 1.5: for the training times
t_n = γ_1 + … + γ_n and the flow Φ of θ' = −f(θ),

    E_n(T) = sup_{t ∈ [0, T]} | Θ̄(t_n + t) − Φ_t(Θ_n) |  →  0.

Here, for window starts n_1 < … < n_J (geometric in n, each window inside the
run), the error of window j is measured at every Adam step inside it::

    E_j = max { |Θ_n − Φ_{t_n − t_{n_j}}(Θ_{n_j})| : n ≥ n_j, t_n − t_{n_j} ≤ T }

(Euclidean norm; Θ̄ is the linear interpolation of the Θ_n and Φ is smooth, so
this is the sup over [0, T] up to O(γ_n²)).

Pipeline with memory O(runs × windows × grid), never whole trajectories:

1. pass 1 simulates every run up to n_J and records Θ_{n_j} (``record_steps``);
2. the flow from every Θ_{n_j} is integrated with diffrax (:func:`~adamjax.flow`)
   on a uniform grid of ``grid`` times in [0, T]; values and slopes −f(Φ) at the
   grid give a cubic Hermite interpolant (error O((T/grid)⁴));
3. pass 2 re-simulates the same runs (same keys ⇒ the same trajectory) with an
   :class:`APTObserver` that, once per noise block and vectorised over its steps,
   advances τ_j = t_n − t_{n_j} (compensated summation of γ_n in the run's dtype),
   interpolates Φ_{τ_j} and keeps the running maximum of the distance.

The vector field is the CRN estimator of ``vector_field`` (tabulated for
coordinate-separable problems and for problems of two parameters, exact without
noise); its SE at the window starts
is reported as ``vf_se``. :func:`fit_decay` fits the exponent p of
median_runs E_j ≈ C · n_j^p.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import MutableMapping
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._engine.driver import simulate
from .._engine.errors import SpecError
from .._engine.pytree import flatten, is_flat
from .._engine.schedules import SchedHParams, step_size
from .._engine.simulate import Observer, RunParams, RunResult, SimConfig
from .field import AbstractField
from .flow import flows_batched, grid_slopes, same_bits
from .hermite import hermite
from .tabulated import GridField, flow_table, grid_tabulable
from .vector_field import FIELD_OPTIMIZERS, default_dtype, vector_field
from .windows import WindowOptions, window_ends, window_starts

# --- the observer ---------------------------------------------------------------------


class APTArgs(NamedTuple):
    """Per-run observer inputs (leading run axis when batched)."""

    ys: Any  # (J, K, d): Φ on the grid
    dys: Any  # (J, K, d): dΦ/dτ = −f(Φ) on the grid
    horizon: Any  # ()
    sched: SchedHParams
    vf_se: Any  # (J, d): passed through to the result
    flow_ok: Any  # (J,)


class APTState(NamedTuple):
    # (J + 1,): window j's entry, and a spare one for padded writes
    tau: Any  # t_n − t_{n_j}
    comp: Any  # compensation of the summation
    err: Any  # running max
    last: Any  # last step compared (−1: none)
    vf_se: Any
    flow_ok: Any


class APTObserver(Observer):
    """Running max over each window of |Θ_n − Φ_{t_n − t_{n_j}}(Θ_{n_j})| (see module doc).

    ``starts``/``ends`` are static step ranges that contain every run's window j
    (``ends`` from the float64 training times of all schedules, with a margin). The
    step numbers are the same for every run, so the choice of windows sits under
    unbatched conditionals that stay real branches under ``vmap``: a block pays
    only for the windows that overlap it (one, except in the first few thousand
    steps), not for all J. The simulator calls :meth:`update_block`; the per-step
    :meth:`update` gives the same errors (to a few ulp) and is what the default
    ``Observer.update_block`` would scan.
    """

    starts: tuple[int, ...] = eqx.field(static=True)
    ends: tuple[int, ...] = eqx.field(static=True)
    schedule: str = eqx.field(static=True, default="power")
    fast_pow: bool = eqx.field(static=True, default=True)

    def init(self, theta0, args: APTArgs) -> APTState:
        J = len(self.starts)
        # One spare entry (index J) takes the padded writes of ``update_block``.
        z = jnp.zeros((J + 1,), theta0.dtype)
        return APTState(
            tau=z,
            comp=z,
            err=z,
            last=jnp.full((J + 1,), -1, jnp.int32),
            vf_se=args.vf_se,
            flow_ok=args.flow_ok,
        )

    def _window(self, j: int, state: APTState, n, theta, active, args: APTArgs, gamma):
        dt = theta.dtype
        tau0, comp0 = state.tau[j], state.comp[j]
        step = (n > self.starts[j]) & active
        # Kahan summation of γ_n: τ stays accurate to a few ulp over 10⁵ steps.
        y = gamma - comp0
        tn = tau0 + y
        comp = jnp.where(step, (tn - tau0) - y, comp0)
        tau = jnp.where(step, tn, tau0)
        T = args.horizon.astype(dt)
        inwin = (tau <= T) & active
        ys, dys = args.ys[j], args.dys[j]  # (K, d)
        K = ys.shape[0]
        h = T / (K - 1)
        pos = tau / h
        i = jnp.clip(jnp.floor(pos), 0, K - 2).astype(jnp.int32)
        u = pos - i
        phi = hermite(ys[i], ys[i + 1], dys[i], dys[i + 1], u, h)
        e = jnp.sqrt(jnp.sum((theta - phi) ** 2))
        err = jnp.where(inwin, jnp.maximum(state.err[j], e), state.err[j])
        last = jnp.where(inwin, n, state.last[j])
        return state._replace(
            tau=state.tau.at[j].set(tau),
            comp=state.comp.at[j].set(comp),
            err=state.err.at[j].set(err),
            last=state.last.at[j].set(last),
        )

    def update(self, state: APTState, n, t, theta, active, args: APTArgs) -> APTState:
        gamma = step_size(self.schedule, args.sched, n.astype(theta.dtype), self.fast_pow)
        for j in range(len(self.starts)):
            live = (n >= self.starts[j]) & (n <= self.ends[j])
            state = jax.lax.cond(
                live,
                lambda st, j=j: self._window(j, st, n, theta, active, args, gamma),
                lambda st: st,
                state,
            )
        return state

    def _block_windows(self, js, st: APTState, ns, thetas, actives, args: APTArgs, gammas):
        """The windows ``js`` (W,) over one block of B steps, vectorised over (W, B).
        Index J is a scratch slot (padding): its range is empty and it writes to the
        state's spare entry."""
        dt = thetas.dtype
        J = len(self.starts)
        s = jnp.asarray(self.starts + (2**31 - 1,), jnp.int32)[js][:, None]  # (W, 1)
        e = jnp.asarray(self.ends + (-1,), jnp.int32)[js][:, None]
        inr = (ns >= s) & (ns <= e)  # (W, B)
        step = inr & (ns > s) & actives
        # τ_n inside the block: pairwise partial sums of the block's γ_n (error
        # O(log B) ulp of the block's sum) on top of τ at the block's start, which is
        # carried across blocks by Kahan summation of the block sums.
        local = jax.lax.associative_scan(jnp.add, jnp.where(step, gammas, 0), axis=1)
        tau0, comp0 = st.tau[js], st.comp[js]  # (W,)
        tau = tau0[:, None] + (local - comp0[:, None])
        y = local[:, -1] - comp0
        tn = tau0 + y
        moved = jnp.any(step, axis=1)
        comp = jnp.where(moved, (tn - tau0) - y, comp0)
        tau_end = jnp.where(moved, tn, tau0)
        T = args.horizon.astype(dt)
        inwin = inr & actives & (tau <= T)
        jc = jnp.minimum(js, J - 1)
        ys, dys = args.ys[jc], args.dys[jc]  # (W, K, d)
        K = ys.shape[1]
        h = T / (K - 1)
        pos = tau / h
        i = jnp.clip(jnp.floor(pos), 0, K - 2).astype(jnp.int32)[..., None]  # (W, B, 1)
        u = pos[..., None] - i

        def at(a, k):
            return jnp.take_along_axis(a, k, axis=1)  # (W, B, d)

        phi = hermite(at(ys, i), at(ys, i + 1), at(dys, i), at(dys, i + 1), u, h)
        dist = jnp.sqrt(jnp.sum((thetas - phi) ** 2, -1))  # (W, B)
        err = jnp.maximum(st.err[js], jnp.max(jnp.where(inwin, dist, 0), axis=1))
        last = jnp.maximum(st.last[js], jnp.max(jnp.where(inwin, ns, -1), axis=1))
        return st._replace(
            tau=st.tau.at[js].set(tau_end),
            comp=st.comp.at[js].set(comp),
            err=st.err.at[js].set(err),
            last=st.last.at[js].set(last),
        )

    def update_block(self, state: APTState, ns, ts, thetas, actives, args: APTArgs):
        """All windows of one block at once, vectorised over the block's steps.

        Which windows overlap block b is static; the block's list, padded to W, is
        read from a table, and one unbatched ``lax.switch`` picks a body vectorised
        over (W, B): W = 1, or W = the widest block — two bodies whatever J is. (The
        per-step :meth:`update`, a cond per window at every step, spent 4× the
        simulation's own time on loop overhead, and one body per window set took
        10 s to compile.)
        The result differs from :meth:`update` only in the summation order of τ
        inside a block (pairwise instead of Kahan; a few ulp either way).
        """
        B = ns.shape[0]
        J = len(self.starts)
        nb = max(self.ends) // B + 1
        spans = list(zip(self.starts, self.ends, strict=True))
        live = [
            [j for j, (s, e) in enumerate(spans) if s <= (b + 1) * B and e > b * B]
            for b in range(nb)
        ] + [[]]
        # Two bodies: W = 1 (most blocks, once the windows stop overlapping) and W =
        # the widest block (the few early blocks where windows overlap). Each body
        # costs ~1 s of compilation on CPU; padding a few blocks costs far less.
        wmax = max(len(x) for x in live)
        widths = sorted({1 if len(x) == 1 else wmax for x in live if x})
        table = np.full((nb + 1, max(wmax, 1)), J, np.int32)
        branch = np.zeros(nb + 1, np.int32)
        for b, x in enumerate(live):
            table[b, : len(x)] = x
            if x:
                branch[b] = 1 + widths.index(1 if len(x) == 1 else wmax)
        b = jnp.minimum((ns[0] - 1) // B, nb)
        js = jnp.asarray(table)[b]

        def make(W):
            def advance(st):
                n = ns.astype(thetas.dtype)
                gammas = step_size(self.schedule, args.sched, n, self.fast_pow)
                return self._block_windows(js[:W], st, ns, thetas, actives, args, gammas)

            return advance

        return jax.lax.switch(
            jnp.asarray(branch)[b], [lambda st: st] + [make(W) for W in widths], state
        )


# --- the pipeline -------------------------------------------------------------------------


class FieldOptions(NamedTuple):
    """How the flow's vector field is estimated and integrated (spec table ``[flow]``):
    ``samples`` or ``target_se`` (see :func:`~adamjax.vector_field`), ``batches`` of the
    batch means, the CRN ``seed``, ``nodes`` of a table of a separable field, the
    diffrax ``solver`` with ``rtol``/``atol``/``max_steps``, and ``grid`` points of
    the flow in [0, T] (cubic Hermite between them)."""

    samples: int | None = None
    target_se: float | None = 2e-4
    batches: int = 32
    seed: int = 0
    nodes: int = 65
    solver: str = "tsit5"
    rtol: float = 1e-7
    atol: float = 1e-9
    max_steps: int = 4096
    grid: int = 64


def _field_for(cfg: SimConfig, hp, starts: np.ndarray, opts: FieldOptions, horizon: float):
    """The field used to integrate the flow from ``starts`` (…, d) with hyperparameters
    hp over [0, horizon]: a table where the problem allows one, else the estimator."""
    b1, b2, eps, eps_root = (float(x) for x in hp)
    kind = cfg.optimizer
    if kind not in FIELD_OPTIMIZERS:
        raise SpecError(
            f"optimizer.kind = {kind!r}: the APT error needs the vector field of "
            + ", ".join(FIELD_OPTIMIZERS)
        )
    dt = default_dtype()
    finite = starts[np.all(np.isfinite(starts), -1)]
    at = None
    if len(finite):
        # Pilot points for the sample size: a spread of the starts (the zero region
        # has the largest SE).
        idx = np.linspace(0, len(finite) - 1, min(16, len(finite))).astype(int)
        at = np.sort(finite, axis=0)[idx]
    with warnings.catch_warnings():
        # The APT reports the SE it reached at every window start instead (one warning).
        warnings.filterwarnings("ignore", "target_se = ", RuntimeWarning)
        vf = vector_field(
            cfg.problem,
            b1=b1,
            b2=b2,
            eps=eps,
            eps_root=eps_root,
            optimizer=kind,
            batch_size=cfg.batch_size,
            samples=opts.samples,
            target_se=None if opts.samples else opts.target_se,
            at=at,
            batches=opts.batches,
            seed=opts.seed,
            dtype=dt,
        )
    if vf.method == "chain" and cfg.problem.separable and len(finite):
        # Each coordinate solves a 1-D autonomous ODE, which is monotone and cannot
        # cross a zero of f: the flow stays within the range of its starts. A margin
        # covers the solver's trial stages.
        lo, hi = float(np.min(finite)), float(np.max(finite))
        pad = 0.05 * (hi - lo) + 1e-3 * max(1.0, abs(lo), abs(hi))
        return vf.tabulate(lo - pad, hi + pad, opts.nodes), vf
    if vf.method == "chain" and grid_tabulable(cfg.problem) and len(finite):
        target = None if opts.samples else opts.target_se
        return flow_table(vf, finite, opts.nodes, horizon, dt, target), vf
    return vf, vf


class APTResult(NamedTuple):
    """``window_start`` (J,); ``error`` (runs, J) (NaN for windows not completed, e.g.
    after divergence); ``vf_se`` (runs, J, d); ``flow_ok`` (runs, J); ``result`` the
    :class:`RunResult` of pass 2; ``samples`` the vector-field sample counts used."""

    window_start: Any
    error: Any
    vf_se: Any
    flow_ok: Any
    result: RunResult
    samples: list


def apt_prepare(
    cfg: SimConfig,
    params: RunParams,
    starts,
    horizon: float,
    opts: FieldOptions | None = None,
    chunk: int | None = None,
    progress=None,
    flow_bar: bool = False,
    saved: MutableMapping | None = None,
):
    """Pass 1 and the flows: returns ``(observer, obs_args, samples_used)`` for pass 2.

    ``progress(stage, done, total)``, if given, is called as the work advances: stage
    ``"pass 1"`` in run-steps, ``"field"`` in vector fields built (one per distinct
    (β1, β2, ε, ε_root) of the runs), ``"flows"`` in flows integrated. ``flow_bar``: also
    a terminal bar inside each batch of flows (see ``flow.flows_batched``). ``saved``:
    where the finished work is kept (pass 1's window starts, each batch of flows) and
    taken from instead of computed again (a mapping of names to dicts of arrays; the
    launcher's is a folder, so that a stopped run resumes where it stopped).
    """
    opts = FieldOptions() if opts is None else opts
    report = progress or (lambda stage, done, total: None)
    params = _flat_theta0(params)
    starts = np.asarray(starts, np.int64)
    J = len(starts)
    cfg1 = dataclasses.replace(
        cfg, steps=int(starts[-1]), record_steps=tuple(int(s) for s in starts), observer=None
    )
    p1 = params._replace(obs_args=None)
    R0 = int(np.asarray(params.theta0).shape[0])
    total1, done1 = R0 * int(starts[-1]), [0]
    report("pass 1", 0, total1)

    def tick(n):  # ``simulate`` reports runs finished
        done1[0] += int(n) * int(starts[-1])
        report("pass 1", done1[0], total1)

    kept = None if saved is None else saved.get("pass1")
    if kept is not None and same_bits(kept.get("starts"), starts) and len(kept["theta"]) == R0:
        th, dstep, div = kept["theta"], kept["diverged_step"], kept["diverged"]
        report("pass 1", total1, total1)
    else:
        res1 = simulate(cfg1, p1, chunk=chunk, progress=tick)
        th = np.asarray(res1.snapshots)  # (R, J, d)
        dstep, div = np.asarray(res1.diverged_step), np.asarray(res1.diverged)
        if saved is not None:
            saved["pass1"] = dict(starts=starts, theta=th, diverged_step=dstep, diverged=div)
    R, _, d = th.shape
    dt = default_dtype()
    K = int(opts.grid)
    ts = np.linspace(0.0, horizon, K)
    o = params.opt
    hp = np.stack(
        [np.broadcast_to(np.asarray(a, np.float64), (R,)) for a in (o.b1, o.b2, o.eps, o.eps_root)],
        -1,
    )
    uniq, inv = np.unique(hp, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    rows_of = [np.nonzero(inv == u)[0] for u in range(len(uniq))]
    # (R, J): the window start was reached by a run that had not diverged before it (a
    # diverged run is frozen at its last finite θ, possibly far off: no flow, and no part
    # in the box of a field table). Strictly before: pass 1's own last step may carry the
    # divergence of a loss that overflowed at a finite θ (``simulate._finish``).
    good = np.all(np.isfinite(th), -1) & ~(div[:, None] & (dstep[:, None] < starts[None, :]))
    fields = []
    report("field", 0, len(uniq))
    for u, rows in enumerate(rows_of):
        st = th[rows][good[rows]].astype(np.float64)
        fields.append(_field_for(cfg, uniq[u], st, opts, horizon))
        report("field", u + 1, len(uniq))
    ys = np.zeros((R, J, K, d))
    dys = np.zeros((R, J, K, d))
    vf_se = np.full((R, J, d), np.nan)
    ok = np.zeros((R, J), bool)
    report("flows", 0, R * J)
    done = 0
    for u, ((field, vf), rows) in enumerate(zip(fields, rows_of, strict=True)):
        st = np.where(good[rows][..., None], th[rows], 0.0).reshape(-1, d)
        y, fine, se = flows_batched(
            field,
            st,
            ts,
            opts,
            dt,
            lambda n, base=done: report("flows", base + n, R * J),
            bar=flow_bar,
            saved=saved,
            key=f"flows{u}",
        )
        done += len(st)
        # The slopes dΦ/dτ = −f(Φ) on the grid: the field itself where an evaluation is
        # cheap (a table, the exact field), else fourth-order differences of the flow's
        # values (an evaluation of the chain estimator at every grid point would cost
        # `grid` times the flow's starts).
        if field is not vf or vf.method == "exact":
            dy = -np.nan_to_num(np.asarray(_values(field, y.reshape(-1, d))).reshape(y.shape))
        else:
            dy = grid_slopes(y, horizon / (K - 1))
        if isinstance(field, GridField):
            # Flows that left the table's box (where it holds its boundary values) or
            # failed (NaN): again with the estimator itself.
            out = np.nonzero(~field.contains(y) & good[rows].reshape(-1))[0]
            if len(out):
                y[out], fine[out], se[out] = flows_batched(
                    vf, st[out], ts, opts, dt, lambda n: None, flow_bar, saved, f"retry{u}"
                )
                dy[out] = grid_slopes(y[out], horizon / (K - 1))
        y = y.reshape(len(rows), J, K, d)
        ys[rows] = y
        dys[rows] = dy.reshape(y.shape)
        ok[rows] = fine.reshape(len(rows), J) & good[rows]
        vf_se[rows] = se.reshape(len(rows), J, d)
    ys = np.where(ok[..., None, None], ys, 0.0)
    dys = np.where(ok[..., None, None], np.nan_to_num(dys), 0.0)
    npd = np.asarray(params.theta0).dtype
    s = params.sched
    rows = np.stack([np.broadcast_to(np.asarray(a, np.float64), (R,)) for a in s], -1)
    ends = window_ends(starts, horizon, cfg.schedule, np.unique(rows, axis=0), cfg.steps)
    obs = APTObserver(
        tuple(int(x) for x in starts), tuple(int(x) for x in ends), cfg.schedule, cfg.fast_pow
    )
    args = APTArgs(
        ys=ys.astype(npd),
        dys=dys.astype(npd),
        horizon=np.full((R,), horizon, npd),
        sched=SchedHParams(*(np.broadcast_to(np.asarray(a, npd), (R,)) for a in s)),
        vf_se=vf_se,
        flow_ok=ok,
    )
    return obs, args, [vf.samples for _, vf in fields]


def _flat_theta0(params: RunParams) -> RunParams:
    """θ0 given as a PyTree (leading run axis) → its flat vectors."""
    if is_flat(params.theta0):
        return params
    return params._replace(theta0=np.asarray(flatten(params.theta0, lead=1)[0]))


def _values(field, y):
    if isinstance(field, AbstractField):
        return field.value(jnp.asarray(y))
    return field(jnp.asarray(y))[0]


def apt_errors_from(result: RunResult, starts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(apt_error, vf_se, flow_ok) from a pass-2 result: NaN where a window was not
    completed (the run diverged before its end) or its flow failed."""
    st: APTState = result.observer
    J = len(starts)
    err = np.asarray(st.err, np.float64)[..., :J]
    last = np.asarray(st.last)[..., :J]
    dstep = np.asarray(result.diverged_step)[:, None]
    div = np.asarray(result.diverged)[:, None]
    bad = (last < 0) | (div & (dstep <= last + 1)) | ~np.asarray(st.flow_ok)
    return np.where(bad, np.nan, err), np.asarray(st.vf_se), np.asarray(st.flow_ok)


def apt_error(
    cfg: SimConfig,
    params: RunParams,
    *,
    horizon: float = WindowOptions().horizon,
    windows: int = WindowOptions().windows,
    first: int | None = WindowOptions().first,
    starts=None,
    options: FieldOptions | None = None,
    chunk: int | None = None,
) -> APTResult:
    """APT error E_j = max_{n in window j} |Θ_n − Φ_{t_n − t_{n_j}}(Θ_{n_j})| of every run.

    See the module docstring for the definition and the two-pass pipeline.

    Args:
        cfg, params: the runs, as for :func:`~adamjax.simulate`.
        horizon: T, the window length in training time.
        windows, first: J window starts, geometric in n from ``first``
            (:func:`window_starts`), unless ``starts`` gives them.
        options: the field's accuracy (``target_se`` or ``samples``), the table
            resolution, the diffrax solver and tolerances, the time grid.
        chunk: runs per simulate call.

    Returns:
        An :class:`APTResult`: ``window_start`` (J,), ``error`` (runs, J) (NaN where a
        window was not completed or its flow failed), ``vf_se``, ``flow_ok``, pass 2's
        :class:`RunResult` (the ordinary simulation result of the runs) and the
        vector-field sample counts used.

    Reference: Dereich, Jentzen & Kassing (2025), Thm 1.5 (APT), Def. 1.3 (field).
    """
    params = _flat_theta0(params)
    if starts is None:
        s = params.sched
        R = int(np.asarray(params.theta0).shape[0])
        rows = np.stack([np.broadcast_to(np.asarray(a, np.float64), (R,)) for a in s], -1)
        scheds = [tuple(r) for r in np.unique(rows, axis=0)]
        starts = window_starts(cfg.steps, windows, horizon, cfg.schedule, scheds, first)
    starts = np.asarray(starts, np.int64)
    obs, args, used = apt_prepare(cfg, params, starts, horizon, options, chunk)
    cfg2 = dataclasses.replace(cfg, observer=obs)
    res = simulate(cfg2, params._replace(obs_args=args), chunk=chunk)
    err, se, ok = apt_errors_from(res, starts)
    return APTResult(window_start=starts, error=err, vf_se=se, flow_ok=ok, result=res, samples=used)
