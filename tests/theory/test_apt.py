"""The APT error pipeline and the [flow] spec integration (issue 3)."""

import functools

import numpy as np
import pytest

import adamjax
import adamjax._theory.apt as apt_mod
from adamjax import SpecError, fit_decay, window_starts
from adamjax._theory.flow import grid_slopes
from helpers import base_spec


def test_fit_decay():
    n = np.array([10, 100, 1000, 10000])
    assert fit_decay(n, 3.0 * n**-0.3) == pytest.approx(-0.3)
    e = np.stack([2.0 * n**-0.5, 4.0 * n**-0.5, np.full(4, np.nan)])
    assert fit_decay(n, e) == pytest.approx(-0.5)


def test_apt_noiseless_is_order_gamma():
    """Without noise the APT error is O(γ_n) at every window: E_j ≤ C·γ_{n_j} with a
    constant C that grows like 1/(1−β2) (the memory of v in steps). Two hyperparameter
    sets run as two runs of one compiled program (per-run β, ε, θ0)."""
    from adamjax import make_plan

    spec = base_spec(
        **{
            "problem.dim": 2,
            "problem.curvature": [1.0, 3.0],
            "problem.noise": "none",
            "run.theta0": [5.0, -3.0],
            "run.seeds": 2,
            "run.steps": 20_000,
            "run.dtype": "float64",
            "record.snapshots": 0,
        }
    )
    g = make_plan(spec).groups[0]
    p = g.params
    p = p._replace(
        opt=p.opt._replace(
            b1=np.array([0.5, 0.9]), b2=np.array([0.9, 0.99]), eps=np.array([1.0, 1.0])
        )
    )
    r = adamjax.apt_error(g.cfg, p, horizon=1.0, windows=10)
    gam = 0.05 * r.window_start.astype(float) ** -0.6
    ratio = r.error / gam
    assert np.all(np.isfinite(r.error)) and r.flow_ok.all()
    assert np.all(r.vf_se == 0)
    assert np.all(ratio[0] < 3.0), ratio[0]
    assert np.all(ratio[1] < 50.0), ratio[1]
    assert np.all(r.error[:, -1] < r.error[:, 0])


def _hermite(ys, dys, h, tau):
    """NumPy cubic Hermite interpolation of (ys, dys) (K, d) on the grid k·h at tau."""
    K = ys.shape[0]
    i = min(max(int(np.floor(tau / h)), 0), K - 2)
    u = tau / h - i
    return (
        (2 * u**3 - 3 * u**2 + 1) * ys[i]
        + (u**3 - 2 * u**2 + u) * h * dys[i]
        + (3 * u**2 - 2 * u**3) * ys[i + 1]
        + (u**3 - u**2) * h * dys[i + 1]
    )


def test_apt_observer_matches_a_numpy_reference_on_the_full_trajectory():
    """The block-vectorised observer (``APTObserver.update_block``) against (a) an
    independent float64 NumPy evaluation of E_j = max |Θ_n − Φ_{t_n − t_{n_j}}(Θ_{n_j})|
    on the whole recorded trajectory, with per-run step sizes, and (b) the per-step
    path (``Observer.update_block``'s default, a scan of ``update``)."""
    from adamjax import APTObserver, Observer, SimConfig, make_plan, simulate
    from adamjax import apt_errors_from as errors_from
    from adamjax import apt_prepare as prepare

    steps, horizon = 3000, 0.5
    spec = base_spec(
        **{
            "problem.dim": 2,
            "problem.curvature": [1.0, 2.0],
            "run.theta0": [1.0, -0.5],
            "run.seeds": 3,
            "run.steps": steps,
            "run.dtype": "float64",
            "record.snapshots": 0,
        }
    )
    g = make_plan(spec).groups[0]
    c = np.array([0.05, 0.08, 0.03])
    params = g.params._replace(sched=g.params.sched._replace(c=c))
    starts = window_starts(steps, 6, horizon, "power", [(x, 0.6, 0.0) for x in c])
    obs, args, _ = prepare(g.cfg, params, starts, horizon)
    fields = {f: getattr(g.cfg, f) for f in g.cfg.__dataclass_fields__}
    res = simulate(SimConfig(**{**fields, "observer": obs}), params._replace(obs_args=args))
    err = errors_from(res, starts)[0]

    class PerStep(APTObserver):
        update_block = Observer.update_block

    per = PerStep(obs.starts, obs.ends, obs.schedule, obs.fast_pow)
    res1 = simulate(SimConfig(**{**fields, "observer": per}), params._replace(obs_args=args))
    np.testing.assert_allclose(errors_from(res1, starts)[0], err, rtol=1e-10, atol=1e-14)

    full = simulate(
        SimConfig(**{**fields, "record_steps": tuple(range(steps + 1))}), params._replace()
    )
    theta = np.asarray(full.snapshots)  # (R, steps + 1, d): Θ_0 … Θ_steps
    n = np.arange(1, steps + 1)
    K = args.ys.shape[2]
    ref = np.zeros_like(err)
    for r in range(len(c)):
        t = np.concatenate([[0.0], np.cumsum(c[r] * n**-0.6)])
        for j, s in enumerate(starts):
            tau = t[s:] - t[s]
            win = np.nonzero(tau <= horizon)[0]
            assert s + win[-1] < steps, "the window must end inside the run"
            ys, dys = args.ys[r, j], args.dys[r, j]
            phi = np.stack([_hermite(ys, dys, horizon / (K - 1), tau[k]) for k in win])
            ref[r, j] = np.max(np.linalg.norm(theta[r, s + win] - phi, axis=-1))
    assert np.all(ref > 0)
    np.testing.assert_allclose(err, ref, rtol=1e-9, atol=1e-13)


def test_apt_small_scale_decay_and_dataset_layout():
    """Asymmetric quadratic, 64 runs: the median APT error decays; variables, dims,
    attribute; the pass-2 trajectories equal a plain run (same keys ⇒ same runs)."""
    spec = base_spec(
        **{
            "run.steps": 20_000,
            "run.seeds": 64,
            "record.snapshots": 4,
            "flow.horizon": 1.0,
            "flow.windows": 6,
            "flow.samples": 2**17,
        }
    )
    ds = adamjax.run(spec)
    assert ds["apt_error"].dims == ("seed", "window")
    assert ds["vf_se"].dims == ("seed", "window", "dim")
    assert ds["window_start"].dims == ("window",)
    assert ds["flow_ok"].values.all()
    med = np.nanmedian(ds["apt_error"].values, 0)
    assert med[-1] < med[0] / 3, med
    assert ds.attrs["apt_decay_exponent"] < -0.1
    assert float(ds["apt_decay_exponent"]) == ds.attrs["apt_decay_exponent"]
    assert np.nanmax(ds["vf_se"].values) < 1e-3
    plain = base_spec(**{"run.steps": 20_000, "run.seeds": 64, "record.snapshots": 4})
    ds0 = adamjax.run(plain)
    np.testing.assert_array_equal(ds0["theta_final"].values, ds["theta_final"].values)


def test_flow_spec_errors():
    with pytest.raises(SpecError, match="flow.solver"):
        adamjax.load_spec(base_spec(**{"flow.solver": "rk99"}))
    with pytest.raises(SpecError, match="flow.target_se"):
        adamjax.load_spec(base_spec(**{"flow.target_se": -1.0}))
    swept = base_spec(**{"flow.horizon": 1.0})
    swept["sweep"] = {"flow.horizon": [1.0, 2.0]}
    with pytest.raises(SpecError, match="flow.horizon"):
        adamjax.load_spec(swept)
    with pytest.raises(SpecError, match="flow.horizon"):
        adamjax.run(base_spec(**{"run.steps": 50, "flow.horizon": 100.0}))


def test_flow_samples_refused_before_any_simulation(monkeypatch):
    """A ``flow.samples`` too short for its batch means is a one-line spec error naming the
    key and the minimum, raised while planning — before pass 1 simulates anything."""

    def no_simulation(*a, **k):
        raise AssertionError("simulated before validating [flow]")

    monkeypatch.setattr(apt_mod, "simulate", no_simulation)
    spec = base_spec(**{"run.steps": 5000, "flow.samples": 2048, "flow.batches": 32})
    with pytest.raises(SpecError, match=r"flow.samples = 2048: .* flow.samples ≥ 32000"):
        adamjax.make_plan(spec)
    with pytest.raises(SpecError, match="optimizer.kind = 'sgd'"):
        adamjax.make_plan(base_spec(**{"optimizer.kind": "sgd", "flow.windows": 4}))
    both = base_spec(**{"run.steps": 5000, "flow.samples": 2**16, "flow.target_se": 1e-4})
    unused = r"flow.target_se = 0.0001 is not used: flow.samples"
    with pytest.warns(UserWarning, match=unused), pytest.raises(AssertionError, match="before"):
        adamjax.make_plan(both)  # the checks pass: pass 1 is next
    # Thm 1.5 needs γ_n → 0: a constant step size is an assumption warning, not silence.
    const = base_spec(**{"run.steps": 5000, "schedule.kind": "constant", "flow.windows": 4})
    with (
        pytest.warns(adamjax.AssumptionWarning, match=r"only for step sizes γ_n → 0"),
        pytest.raises(AssertionError, match="before"),
    ):
        adamjax.make_plan(const)


def test_grid_slopes_exact_for_quartics():
    h = 0.1
    tau = h * np.arange(9)
    y = np.stack([tau**4 - 2 * tau**3 + tau, 3 * tau**2], -1)[None]  # (1, K, 2)
    exact = np.stack([4 * tau**3 - 6 * tau**2 + 1, 6 * tau], -1)
    np.testing.assert_allclose(grid_slopes(y, h)[0], exact, atol=1e-10)


def _zhang_flow_spec(**over):
    spec = base_spec(**{"run.steps": 2000, "run.seeds": 8, "record.snapshots": 0, **over})
    spec["problem"] = {"kind": "zhang", "n": 10}
    spec["flow"] = {"windows": 6, **spec.get("flow", {})}
    return spec


def test_flow_on_a_finite_sum_problem_with_progress(capsys):
    """[flow] on Zhang et al.'s example (a finite sum, 1-D: the field is tabulated from
    its finite-sum fast path): every flow succeeds, no NaN, and each stage of the
    preparation reports progress."""
    ds = adamjax.run(_zhang_flow_spec(), progress="log")
    err = capsys.readouterr().err
    for stage in ("APT pass 1", "APT vector fields", "APT flows", "APT pass 2", "run-steps"):
        assert stage in err, err
    assert ds.attrs["flow_failed"] == 0
    assert ds["flow_ok"].values.all() and np.isfinite(ds["apt_error"].values).all()
    assert np.nanmax(ds["vf_se"].values) < 1e-3


def test_failed_flows_and_a_missed_target_se_reported_once_each(monkeypatch):
    """Failed flows are counted and reported in one warning; a ``flow.target_se`` the
    field did not reach (here: M capped at 2^17) in one more, the chain lengths used in
    the attribute ``flow_samples``."""
    capped = functools.partial(apt_mod.vector_field, max_samples=2**17)
    monkeypatch.setattr(apt_mod, "vector_field", capped)
    spec = _zhang_flow_spec(**{"flow.max_steps": 1, "flow.target_se": 1e-6})
    with pytest.warns(RuntimeWarning, match=r"flows failed") as rec:
        ds = adamjax.run(spec)
    texts = [str(w.message) for w in rec]
    assert len([t for t in texts if "flows failed" in t]) == 1
    se_warnings = [t for t in texts if "standard error reaches" in t]
    assert len(se_warnings) == 1 and "flow.target_se = 1e-06" in se_warnings[0], texts
    assert not [t for t in texts if t.startswith("target_se = ")]  # the API's own warning
    assert ds.attrs["flow_samples"] and max(ds.attrs["flow_samples"]) <= 2**17
    assert np.nanmax(ds["vf_se"].values) > 2e-6
    failed = ds.attrs["flow_failed"]
    assert failed == int((~ds["flow_ok"].values).sum()) > 0
    assert np.isnan(ds["apt_error"].values[~ds["flow_ok"].values]).all()


@pytest.mark.slow
def test_apt_decay_acceptance_scale():
    """Acceptance scale: 512 runs × 2·10⁵ steps, T = 1: median falls ≥ 5× first → last."""
    spec = base_spec(
        **{
            "run.steps": 200_000,
            "run.seeds": 512,
            "record.snapshots": 0,
            "flow.horizon": 1.0,
            "flow.windows": 12,
        }
    )
    ds = adamjax.run(spec)
    med = np.nanmedian(ds["apt_error"].values, 0)
    assert med[0] / med[-1] >= 5, med


def _linreg2_flow_spec(**over):
    spec = base_spec(**{"run.steps": 2000, "run.seeds": 16, "record.snapshots": 0, **over})
    spec["problem"] = {"kind": "linear_regression", "dim": 2, "n_points": 16, "label_noise": 0.5}
    spec["run"]["theta0"] = [1.5, -1.0]
    spec["flow"] = {"windows": 4, **spec.get("flow", {})}
    return spec


def _estimator_only(monkeypatch):
    """Make the APT integrate every flow with the estimator (no table)."""
    orig = apt_mod._field_for

    def direct(*a):
        vf = orig(*a)[1]
        return vf, vf

    monkeypatch.setattr(apt_mod, "_field_for", direct)


def test_flow_on_a_two_parameter_problem_is_tabulated(monkeypatch):
    """[flow] on a two-parameter (non-separable) finite sum integrates the flows on a
    bicubic table of the field: the APT errors are those of the flows of the estimator
    itself, to far below the field's SE."""
    built = []
    monkeypatch.setattr(
        apt_mod.GridField, "contains", lambda self, y: built.append(1) or np.ones(len(y), bool)
    )
    tab = adamjax.run(_linreg2_flow_spec())
    assert built  # the table was used
    monkeypatch.undo()
    _estimator_only(monkeypatch)
    ref = adamjax.run(_linreg2_flow_spec())
    a, b = tab["apt_error"].values, ref["apt_error"].values
    assert np.isfinite(a).all() and tab["flow_ok"].values.all()
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-6)
    assert np.abs(a - b).max() < 0.1 * np.nanmax(tab["vf_se"].values)


def test_flows_leaving_the_table_are_integrated_with_the_estimator(monkeypatch):
    """A flow whose values leave the table's box is integrated again with the estimator:
    with a box that holds no flow, every APT error is the estimator's."""
    orig = apt_mod._field_for

    def tiny_box(cfg, hp, starts, opts, horizon):
        vf = orig(cfg, hp, starts, opts, horizon)[1]
        return vf.tabulate(starts.min(0), starts.min(0) + 1e-3, 8), vf

    monkeypatch.setattr(apt_mod, "_field_for", tiny_box)
    boxed = adamjax.run(_linreg2_flow_spec(**{"run.seeds": 4}))
    monkeypatch.undo()
    _estimator_only(monkeypatch)
    ref = adamjax.run(_linreg2_flow_spec(**{"run.seeds": 4}))
    # (The same flows, integrated in batches of another composition: to the solver tolerance.)
    np.testing.assert_allclose(boxed["apt_error"].values, ref["apt_error"].values, rtol=1e-5)


def test_flow_nodes_beyond_a_two_parameter_table_fail_before_simulating():
    with pytest.raises(SpecError, match=r"flow.nodes = 2048: .* at most 1024"):
        adamjax.run(_linreg2_flow_spec(**{"flow.nodes": 2048}))


def test_window_starts_of_diverged_runs_have_no_flow(monkeypatch):
    """A run frozen by divergence before a window start has no flow there and takes no
    part in the field's table (its frozen θ may be far off)."""
    seen = []
    orig = apt_mod._field_for

    def spy(cfg, hp, starts, opts, horizon):
        seen.append(len(starts))
        return orig(cfg, hp, starts, opts, horizon)

    monkeypatch.setattr(apt_mod, "_field_for", spy)
    spec = _linreg2_flow_spec(**{"run.seeds": 2})
    spec["sweep"] = {"schedule.c": [0.05, 1e13]}  # the second blows up at step 1
    ds = adamjax.run(spec)
    div, n = ds["diverged"].values, ds["window_start"].values
    assert div[1].all() and not div[0].any()
    assert (ds["diverged_step"].values[1] == 1).all() and n[0] == 1 < n[1]
    # The 2 healthy runs × 4 windows, and the window at step 1 of the 2 that blew up there.
    assert seen == [2 * 4 + 2]
    assert np.isnan(ds["apt_error"].values[1]).all()
    assert np.isfinite(ds["apt_error"].values[0]).all()
