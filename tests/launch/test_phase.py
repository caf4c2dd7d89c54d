"""The vector field predicts the phase diagram: on Zhang et al.'s counterexample the
predicted outcome agrees with simulated Adam runs; the reshuffled and cyclic fields
agree with a brute-force average over independent long chains; the divergence region
shrinks with the batch size."""

import warnings

import jax
import numpy as np
import pytest

import adamjax

B1 = [float(x) for x in np.linspace(0.0, 0.9, 8)]
B2 = [float(x) for x in np.linspace(0.1, 0.99, 8)]


def _zhang_spec(scheme="iid"):
    return {
        "name": "phase",
        "problem": {"kind": "zhang", "n": 10},
        "schedule": {"c": 0.1, "r": 0.5},
        "sampling": {"scheme": scheme},
        "run": {"steps": 20_000, "seeds": 4, "theta0": 0.0},
        "record": {"snapshots": 16},
        "sweep": {"optimizer.b1": B1, "optimizer.b2": B2},
    }


def test_prediction_agrees_with_simulation():
    """8 × 8 (β1, β2) grid, i.i.d. sampling, 20 000 steps from x0 = 0: where both the
    prediction and the simulation (majority of 4 seeds) are decided they agree in ≥ 95 %
    of the cells, and the simulation decides ≥ 80 % of the predicted cells (the rest
    are runs still on their way after 20 000 steps)."""
    jax.config.update("jax_enable_x64", True)
    spec = _zhang_spec()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", adamjax.AssumptionWarning)
        pd = adamjax.phase_diagram(spec, b1=B1, b2=B2)
        ds = adamjax.run(spec, progress=False)
    pred = pd["predicted"].values
    div = (ds["outcome"] == adamjax.DIVERGING).mean("seed").values
    conv = (ds["outcome"] == adamjax.CONVERGED).mean("seed").values
    sim = np.where(div > 0.5, adamjax.DIVERGING, np.where(conv > 0.5, adamjax.CONVERGED, 2))
    decided = pred != adamjax.UNDECIDED
    both = decided & (sim != adamjax.UNDECIDED)
    # β1² ≥ β2 lies outside the theory: never predicted; inside it nearly every cell is
    theory = np.square(B1)[:, None] < np.asarray(B2)[None, :]
    assert not decided[~theory].any()
    assert decided[theory].mean() > 0.9 and both.sum() >= 0.8 * decided.sum()
    assert np.mean(pred[both] == sim[both]) >= 0.95, (pred, sim)
    # both outcomes occur: small β2 diverges (at β1 = 0), large β2 converges
    assert (pred[0, :3] == adamjax.DIVERGING).all() and (pred[:, -1] == adamjax.CONVERGED).all()
    assert pd["predicted"].attrs["flag_meanings"] == "converging diverging undecided"


def _brute(scheme, b1, b2, n=10, chains=256, burn=3000, steps=3000, seed=1):
    """f at x ∈ [−1, ∞) of Zhang's problem by independent chains of Adam's frozen-θ
    moment recursions along the scheme's index stream, averaged after a burn-in."""
    a = 1.0 / (n - 1) ** 2
    grads = np.array([1 + (n - 1) * a] + [-a] * (n - 1))  # ℓ_i'(x) for x ≥ −1
    rng = np.random.default_rng(seed)
    m = np.zeros(chains)
    v = np.zeros(chains)
    acc = np.zeros(chains)
    offset = rng.integers(0, n, chains)  # the cyclic stream's phase
    perms = np.argsort(rng.random((chains, n)), axis=1)
    for k in range(burn + steps):
        if scheme == "reshuffle":
            if k % n == 0:
                perms = np.argsort(rng.random((chains, n)), axis=1)
            idx = perms[:, k % n]
        else:
            idx = (offset + k) % n
        g = grads[idx]
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        if k >= burn:
            acc += m / (1e-8 + np.sqrt(v))
    est = acc / steps
    return est.mean(), est.std(ddof=1) / np.sqrt(chains)


@pytest.mark.parametrize("scheme", ["reshuffle", "cyclic"])
def test_reshuffled_and_cyclic_fields_agree_with_brute_force(scheme):
    jax.config.update("jax_enable_x64", True)
    problem = adamjax.make_problem({"kind": "zhang", "n": 10}, np.float64)
    b1, b2 = 0.5, 0.8
    vf = adamjax.vector_field(problem, b1=b1, b2=b2, samples=2**17, scheme=scheme)
    f, se = (float(np.asarray(x).reshape(-1)[0]) for x in vf(np.array([[0.0]])))
    ref, ref_se = _brute(scheme, b1, b2)
    assert abs(f - ref) <= 3 * np.hypot(se, ref_se) + 1e-6, (f, se, ref, ref_se)
    iid = float(np.asarray(adamjax.vector_field(problem, b1=b1, b2=b2, samples=2**17)(
        np.array([[0.0]]))[0]).reshape(-1)[0])  # fmt: skip
    assert abs(iid - f) > 3 * se  # the scheme matters: a different field


def test_larger_batches_shrink_the_divergence_region():
    jax.config.update("jax_enable_x64", True)
    problem = adamjax.make_problem({"kind": "zhang", "n": 10}, np.float64)
    pd = adamjax.phase_diagram(
        problem, b1=[0.0, 0.5], b2=np.linspace(0.1, 0.95, 10), at=[[0.0]], batch_size=[1, 4]
    )
    assert pd["predicted"].dims == ("optimizer.b1", "optimizer.b2", "sampling.batch_size")
    frac = (pd["predicted"] == adamjax.DIVERGING).mean(("optimizer.b1", "optimizer.b2"))
    assert frac.values[1] < frac.values[0], frac.values


@pytest.mark.parametrize(("scheme", "b"), [("cyclic", 2), ("reshuffle", 4), ("reshuffle", 3)])
def test_control_variate_is_unbiased_for_every_scheme(scheme, b):
    """With and without the control variates the estimate agrees within its SE (the
    second-moment control is used only where E[G²] is known for the scheme)."""
    jax.config.update("jax_enable_x64", True)
    data = {"x": np.linspace(-1.0, 2.0, 6)}
    problem = adamjax.finite_sum_problem(lambda w, ex: 0.5 * (w - ex["x"]) ** 2, data, 0.0)
    kw = dict(b1=0.5, b2=0.8, batch_size=b, samples=2**16, scheme=scheme, dtype=np.float64)
    with_cv = adamjax.vector_field(problem, **kw)
    without = adamjax.vector_field(problem, control_variate=False, **kw)
    theta = np.array([[0.0]])
    f1, s1 = (float(np.asarray(a).reshape(-1)[0]) for a in with_cv(theta))
    f0, s0 = (float(np.asarray(a).reshape(-1)[0]) for a in without(theta))
    assert abs(f1 - f0) <= 4 * max(s0, s1) + 1e-9, (f1, s1, f0, s0)


def test_critical_b2_is_where_the_drift_changes_sign(capsys):
    """critical_b2 at β1 = 0 on Zhang's problem: the drift of the same CRN field is < 0
    a few SE below it and > 0 a few SE above it; it falls with the batch size (the
    talk's 'smaller batches need larger β2'); a range without a sign change gives lo.
    With ``progress`` it reports every evaluation of the field (2 × (30 + 2))."""
    jax.config.update("jax_enable_x64", True)
    problem = adamjax.make_problem({"kind": "zhang", "n": 10}, np.float64)
    kw = dict(at=[[0.0]], samples=2**17, scheme="iid")
    cb = adamjax.critical_b2(problem, b1=0.0, batch_size=[1, 4], progress="log", **kw)
    log = capsys.readouterr().err.splitlines()
    assert log[0].startswith("adamjax: critical_b2: 0/64 evals"), log
    assert log[-1].startswith("adamjax: critical_b2: 64/64 evals (100%)"), log
    assert cb["critical_b2"].dims == ("sampling.batch_size",)
    c, se = cb["critical_b2"].values, cb["critical_b2_se"].values
    assert np.all(se > 0) and np.all(se < 0.01), se
    assert c[0] > c[1] > 0, c
    d = 0.02
    pd = adamjax.phase_diagram(problem, b1=[0.0], b2=[c[0] - d, c[0] + d], batch_size=1, **kw)
    drift = pd["drift"].values[0, :, 0]
    assert drift[0] < 0 < drift[1], drift
    # n = 10, β1 = 0, i.i.d.: the constant F changes sign near β2 ≈ 0.71 (the simulated
    # bracket of the batch-threshold figure); no sign change above 0.8 → lo
    assert 0.6 < c[0] < 0.8
    high = adamjax.critical_b2(problem, b1=0.0, batch_size=1, lo=0.8, grid=8, **kw)
    assert float(high["critical_b2"]) == 0.8 and float(high["critical_b2_se"]) == 0.0
    with pytest.raises(adamjax.SpecError, match="lo < hi"):
        adamjax.critical_b2(problem, lo=0.9, hi=0.5)


def test_user_finite_sum_problem_is_predicted():
    """A user's problem (``finite_sum_problem``, no minimiser known: the Lyapunov
    quantity ⟨∇L, f⟩ decides): least squares far from its minimum converges for every
    (β1, β2) inside the theory, and ``critical_b2`` finds no threshold (returns lo)."""
    jax.config.update("jax_enable_x64", True)
    data = {"x": np.linspace(-1.0, 2.0, 6)}
    problem = adamjax.finite_sum_problem(lambda w, ex: 0.5 * (w - ex["x"]) ** 2, data, 0.0)
    pd = adamjax.phase_diagram(problem, b1=[0.0, 0.5], b2=[0.5, 0.9], at=[[4.0]], samples=2**15)
    assert (pd["predicted"].values == adamjax.CONVERGED).all(), pd["predicted"].values
    assert (pd["drift"].values > 0).all()
    cb = adamjax.critical_b2(problem, b1=0.0, at=[[4.0]], lo=0.1, grid=6, samples=2**15)
    assert float(cb["critical_b2"]) == 0.1


def test_bad_arguments_are_one_line_errors():
    """Arguments a user gets wrong are named, before any estimate is computed."""
    spec = _zhang_spec()
    for bad in (0, [], 2.5):
        with pytest.raises(adamjax.SpecError, match=r"batch_size = .*: must be whole numbers"):
            adamjax.phase_diagram(spec, b1=[0.0], b2=[0.9], batch_size=bad)
    with pytest.raises(adamjax.SpecError, match=r"scheme = 'shuffle': must be one of iid"):
        adamjax.phase_diagram(spec, b1=[0.0], b2=[0.9], scheme="shuffle")
