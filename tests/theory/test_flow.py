"""The diffrax flow of θ' = −f(θ) (issue 3)."""

import jax.numpy as jnp
import numpy as np

import adamjax
from adamjax import flow, vector_field

F64 = jnp.float64


def _quad(noise, eps_dim=1):
    return adamjax.make_problem({"kind": "quadratic", "dim": eps_dim, "noise": noise}, F64)


def test_flow_noiseless_matches_closed_form():
    """θ' = −θ/(ε+|θ|): for θ > 0, ε·log θ + θ = ε·log θ0 + θ0 − t (implicit solution)."""
    eps = 0.1
    vf = vector_field(_quad("none"), b1=0.9, b2=0.99, eps=eps)
    starts = jnp.array([[0.5], [1.0], [2.0], [3.0]], F64)
    ts = jnp.linspace(0.0, 0.4, 9)
    sol = flow(vf, starts, ts, rtol=1e-10, atol=1e-12)
    assert sol.ys.shape == (4, 9, 1) and sol.ok.all()
    y = sol.ys[..., 0]
    lhs = eps * np.log(y) + y
    rhs = eps * np.log(np.asarray(starts)) + np.asarray(starts) - np.asarray(ts)[None, :]
    np.testing.assert_allclose(lhs, rhs, atol=1e-8)
    # Batched leading axes are kept.
    sol2 = flow(vf, starts.reshape(2, 2, 1), ts, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sol2.ys.reshape(4, 9, 1), sol.ys, atol=1e-14)


def test_flow_failure_is_flagged_not_raised():
    vf = vector_field(_quad("none"), b1=0.9, b2=0.99, eps=0.1)
    sol = flow(vf, jnp.array([[1.0], [2.0]], F64), jnp.linspace(0, 1, 5), max_steps=2)
    assert not sol.ok.any()
    assert np.all(sol.num_steps <= 2)
    assert np.isnan(sol.ys).all()


def test_tabulated_flow_matches_direct_and_stays_in_range():
    """Flow of the CRN estimate: the Hermite table gives the same flow as the estimator;
    from the zero of f the flow stays put; 1-D flows do not cross the zero."""
    vf = vector_field(_quad("exponential"), b1=0.9, b2=0.99, samples=2**15)
    tab = vf.tabulate(-0.6, 1.1, 65)
    starts = jnp.array([[-0.5], [0.2], [1.0]], F64)
    ts = jnp.linspace(0.0, 1.0, 11)
    a = flow(vf, starts, ts, rtol=1e-9, atol=1e-11)
    b = flow(tab, starts, ts, rtol=1e-9, atol=1e-11)
    assert a.ok.all() and b.ok.all()
    np.testing.assert_allclose(a.ys, b.ys, atol=1e-6)
    z = adamjax.vf_zero(vf, [0.0])
    c = flow(tab, jnp.asarray(z.theta[None, :]), ts, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c.ys[0, :, 0], z.theta[0], atol=1e-8)
    ys = a.ys[..., 0]
    assert np.all(np.diff(ys[2]) < 0) and np.all(ys[2] > z.theta[0])
    assert np.all(np.diff(ys[0]) > 0) and np.all(ys[0] < z.theta[0])


def test_fixed_step_solver():
    vf = vector_field(_quad("none"), b1=0.9, b2=0.99, eps=0.1)
    ts = jnp.linspace(0.0, 0.5, 6)
    a = flow(vf, jnp.array([[2.0]], F64), ts, solver="heun", rtol=None, dt0=1e-3)
    b = flow(vf, jnp.array([[2.0]], F64), ts, rtol=1e-10, atol=1e-12)
    assert a.ok.all()
    np.testing.assert_allclose(a.ys, b.ys, atol=1e-5)


def test_flow_progress_bar_shows_the_solve_and_changes_nothing(capsys):
    """``progress=True``: diffrax's meter draws a bar of the (slowest) solve in t; the
    values and step counts are those of the solve without it."""
    vf = vector_field(_quad("none"), b1=0.9, b2=0.99, eps=0.1)
    starts, ts = jnp.array([[0.5], [3.0]], F64), jnp.linspace(0.0, 0.4, 5)
    with_bar = flow(vf, starts, ts, rtol=1e-10, atol=1e-12, progress=True)
    assert "100.00%" in capsys.readouterr().err
    plain = flow(vf, starts, ts, rtol=1e-10, atol=1e-12)
    assert capsys.readouterr().err == ""
    np.testing.assert_array_equal(with_bar.ys, plain.ys)
    np.testing.assert_array_equal(with_bar.num_steps, plain.num_steps)


def test_flows_batched_keeps_and_reuses_finished_batches(monkeypatch):
    """With ``saved``, every finished batch is kept under its name and read back instead
    of solved again; the values are those of a run without it."""
    import adamjax._theory.flow as flow_mod
    from adamjax._theory.apt import FieldOptions

    monkeypatch.setattr(flow_mod, "FLOW_BATCH", 2)
    vf = vector_field(_quad("none"), b1=0.9, b2=0.99, eps=0.1)
    starts = np.array([[0.5], [1.0], [2.0], [3.0], [4.0]])
    ts, opts = np.linspace(0.0, 0.4, 5), FieldOptions(rtol=1e-10, atol=1e-12)
    ticks = []
    plain = flow_mod.flows_batched(vf, starts, ts, opts, F64, ticks.append)
    assert ticks == [2, 4, 5]
    saved = {}
    kept = flow_mod.flows_batched(vf, starts, ts, opts, F64, lambda n: None, saved=saved)
    assert sorted(saved) == ["flows.0.2", "flows.2.2", "flows.4.2"]
    for a, b in zip(plain, kept, strict=True):
        np.testing.assert_array_equal(a, b)
    # Read back: a solve would fail now (no step allowed), the kept values come back.
    saved.pop("flows.2.2")
    again = flow_mod.flows_batched(
        vf, starts, ts, opts._replace(max_steps=1), F64, ticks.append, saved=saved
    )
    np.testing.assert_array_equal(again[0][[0, 1, 4]], plain[0][[0, 1, 4]])
    assert not again[1][2:4].any() and again[1][[0, 1, 4]].all()
