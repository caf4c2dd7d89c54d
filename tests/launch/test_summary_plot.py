"""``adamjax summary`` and ``adamjax plot`` on small datasets with 0, 1, 2 and 3 sweep
axes and with [flow]: the numbers the summary states, and figures that are written,
labelled and titled with the spec's parameters."""

import json
import os
import shutil
import warnings

import matplotlib
import numpy as np
import pytest

import adamjax
from clihelp import run_cli
from helpers import base_spec

matplotlib.use("Agg")

# Copy the test figures here to look at them (ADAMJAX_KEEP_PLOTS=/some/folder).
KEEP = os.environ.get("ADAMJAX_KEEP_PLOTS")


def _zhang(sweep, steps=2000, seeds=4, **extra):
    spec = {
        "name": "zs",
        "problem": {"kind": "zhang", "n": 10},
        "optimizer": {"b1": 0.0},
        "schedule": {"c": 0.1, "r": 0.5},
        "sampling": {"scheme": "reshuffle"},
        "run": {"steps": steps, "seeds": seeds, "theta0": 0.0},
        "record": {"snapshots": 16},
        "sweep": sweep,
        **extra,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", adamjax.AssumptionWarning)
        return adamjax.run(spec, progress=False)


DATASETS = {
    "0 axes, flow": lambda: adamjax.run(
        {**base_spec(**{"run.steps": 600, "run.seeds": 6}), "flow": {"windows": 4}},
        progress=False,
    ),
    "1 axis": lambda: _zhang({"optimizer.b2": [0.3, 0.99]}),
    "2 axes": lambda: _zhang({"optimizer.b1": [0.0, 0.3, 0.5], "optimizer.b2": [0.3, 0.9, 0.99]}),
    "3 axes": lambda: _zhang(
        {"problem.n": [10, 20], "optimizer.b1": [0.0, 0.5], "optimizer.b2": [0.3, 0.99]}
    ),
}


@pytest.fixture(scope="module", params=list(DATASETS))
def case(request):
    return request.param, DATASETS[request.param]()


def test_summary(case):
    name, ds = case
    s = adamjax.summary(ds)
    axes = [d for d in ds["loss_final"].dims if d != "seed"]
    assert list(s["converged"].dims) == axes
    total = s["converged"] + s["diverging"] + s["undecided"]
    np.testing.assert_allclose(total.values, 1.0)
    table = adamjax.summary_table(ds, s)
    assert len(table.splitlines()) >= 1 + int(np.prod([ds.sizes[a] for a in axes]))
    if "optimizer.b1" in axes and "optimizer.b2" in axes:
        # β2 = 0.3 diverges, β2 = 0.99 converges at every β1: critical β2 = 0.99 or 0.9,
        # and the swept β2 below it is the one before it in the sweep.
        cb, below = s["critical_b2"], s["critical_b2_below"]
        assert np.all((cb.values >= 0.9) & (cb.values <= 0.99)), cb.values
        swept = np.sort(ds["optimizer.b2"].values)
        prev = swept[np.searchsorted(swept, cb.values) - 1]
        np.testing.assert_array_equal(below.values, prev)
        assert "critical β2" in table
        assert f"({prev.flat[0]:g}, {cb.values.flat[0]:g}]" in table
    if "apt_error" in ds:
        # Independent of summary's code: the median over seeds of each window.
        med = np.nanmedian(ds["apt_error"].values, axis=0)
        done = np.flatnonzero(np.isfinite(med))
        assert float(s["apt_first"]) == pytest.approx(med[done[0]])
        assert float(s["apt_last"]) == pytest.approx(med[done[-1]])
        assert int(s["apt_last_n"]) == int(ds["window_start"].values[done[-1]])
        assert "APT error" in table and f"{float(s['apt_last']):.3g}" in table


def _fake_sweep(converges):
    """A results dataset with the variables ``summary`` reads: ``converges(b1, b2)``
    decides every seed's outcome."""
    import xarray as xr

    b1, b2 = [0.0, 0.9], [0.3, 0.6, 0.9]
    oc = np.array([[[0 if converges(x, y) else 1] * 3 for y in b2] for x in b1], np.int8)
    dims = ("optimizer.b1", "optimizer.b2", "seed")
    return xr.Dataset(
        {
            "outcome": (dims, oc),
            "diverged": (dims, np.zeros(oc.shape, bool)),
            "loss_final": (dims, np.ones(oc.shape)),
            "theta_final": ((*dims, "dim"), np.zeros((*oc.shape, 1))),
        },
        coords={"optimizer.b1": b1, "optimizer.b2": b2},
    )


@pytest.mark.parametrize(
    "converges, want",
    [
        # Every swept β2 converges: the threshold is only bounded above.
        (lambda b1, b2: True, ["β1=0: ≤ 0.3", "β1=0.9: ≤ 0.3*", "outside the ODE theory"]),
        (lambda b1, b2: b2 >= 0.6, ["β1=0: (0.3, 0.6]", "β1=0.9: (0.3, 0.6]*"]),
        (lambda b1, b2: b1 == 0.0, ["β1=0: ≤ 0.3", "β1=0.9: none (> 0.9)"]),
    ],
)
def test_critical_b2_table_states_the_bracket(converges, want):
    ds = _fake_sweep(converges)
    table = adamjax.summary_table(ds, adamjax.summary(ds))
    for w in want:
        assert w in table, table
    if not any("*" in w for w in want):
        assert "outside the ODE theory" not in table
    # Without gap_final (no known minimiser) the table says what "converges" meant.
    assert "no known minimiser" in table
    ds["gap_final"] = ds["loss_final"]
    assert "no known minimiser" not in adamjax.summary_table(ds, adamjax.summary(ds))


def test_plot(case, tmp_path):
    name, ds = case
    fig = adamjax.plot.auto(ds)
    axes = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert axes and all(a.get_xlabel() and a.get_ylabel() for a in axes)
    title = fig._suptitle.get_text()
    assert ds.attrs["spec"] and "steps" in title and "seeds" in title
    path = tmp_path / f"{name.replace(' ', '_').replace(',', '')}.png"
    adamjax.plot.save(fig, path)
    assert path.stat().st_size > 10_000
    if KEEP:
        shutil.copy(path, KEEP)


def test_phase_marks_divergence_and_draws_sqrt_curve():
    ds = DATASETS["2 axes"]()
    fig = adamjax.plot.phase(ds)
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "most runs diverging" in labels
    assert "β1 = √β2 (below it: β1 ≥ √β2, outside the theory)" in labels
    assert "log scale in 1 − β" in fig.axes[0].get_ylabel()


def test_bad_plot_options_are_spec_errors():
    ds = DATASETS["1 axis"]()
    with pytest.raises(adamjax.SpecError, match="--stat"):
        adamjax.plot.reduce(ds, "loss_final", "mode")
    with pytest.raises(adamjax.SpecError, match="--var = 'nope'"):
        adamjax.plot.reduce(ds, "nope", "median")
    with pytest.raises(adamjax.SpecError, match="two sweep axes"):
        adamjax.plot.phase(ds)


def test_cli_run_plot_summary(tmp_path):
    """The acceptance path: run with --set, plot with no option, summary (text, json)."""
    r = run_cli(
        "run", "zhang-sweep", "--out", str(tmp_path), "--no-progress",
        "--set", "run.steps=1500", "--set", "run.seeds=4",
        "--set", "sweep.optimizer.b1=[0.0, 0.5]", "--set", "sweep.optimizer.b2=[0.3, 0.6, 0.99]",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    store = tmp_path / "zhang-sweep" / "results.zarr"
    r = run_cli("plot", store, "--out", tmp_path / "p.png")
    assert r.returncode == 0 and (tmp_path / "p.png").stat().st_size > 10_000, r.stderr
    if KEEP:
        shutil.copy(tmp_path / "p.png", os.path.join(KEEP, "cli-phase.png"))
    r = run_cli("summary", store)
    assert r.returncode == 0 and "critical β2" in r.stdout, r.stderr
    r = run_cli("summary", store, "--json")
    data = json.loads(r.stdout)
    assert data["axes"] == ["optimizer.b1", "optimizer.b2"] and len(data["points"]) == 6
    r = run_cli("plot", tmp_path, "--out", tmp_path / "p.txt")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a results store" in r.stderr


def test_title_leaves_out_swept_keys_and_wraps():
    """A swept key is on an axis, not in the title (batch size, c of γ_n); a long title
    is cut into lines of ≤ ~90 characters at its '; ' separators."""
    import xarray as xr

    spec = {
        "name": "a-rather-long-experiment-name",
        "problem": {"kind": "mymodule:problem", "n_points": 64, "dim": 3, "noise": 0.25},
        "optimizer": {"b1": 0.9, "b2": 0.999},
        "schedule": {"c": 0.05, "r": 0.5},
        "sampling": {"scheme": "reshuffle", "batch_size": 8},
        "run": {"steps": 2000},
        "sweep": {"sampling.batch_size": [1, 8], "schedule.c": [0.01, 0.1]},
    }
    dims = ("sampling.batch_size", "schedule.c", "seed")
    ds = xr.Dataset(
        {"loss_final": (dims, np.ones((2, 2, 3)))},
        coords={"sampling.batch_size": [1, 8], "schedule.c": [0.01, 0.1]},
        attrs={"spec": json.dumps(spec)},
    )
    t = adamjax.plot.title(ds)
    assert "b=8" not in t and "reshuffle" in t and "γ_n = c·n^-0.5" in t, t
    assert "b1=0.9" in t and "2000 steps × 3 seeds" in t, t
    lines = t.split("\n")
    assert len(lines) >= 2 and max(map(len, lines)) <= 90, lines
    # A β left at its default is named too (it is held fixed); a constant step size.
    spec = {"name": "d", "schedule": {"kind": "constant", "c": 0.2}}
    spec["sweep"] = {"optimizer.b2": [0.9, 0.99]}
    ds = xr.Dataset(
        {"loss_final": (("optimizer.b2", "seed"), np.ones((2, 3)))},
        coords={"optimizer.b2": [0.9, 0.99]},
        attrs={"spec": json.dumps(spec)},
    )
    t = adamjax.plot.title(ds)
    assert "adam b1=0.9;" in t and "b2=" not in t and "γ_n = 0.2;" in t, t


def test_plot_options_a_newcomer_tries():
    """On a (β1, β2) sweep: curves of the loss over steps; the outcome as the fraction of
    runs diverging by default (colour bar 0–1, said once); a 1-D θ as one number per
    run; one line for a variable with more dims, the same axis twice, a median of the
    outcome codes."""
    ds = DATASETS["2 axes"]()
    fig = adamjax.plot.auto(ds, var="loss")
    assert fig.axes[0].get_xlabel() == "Adam step n" and len(fig.axes[0].get_lines()) == 8
    fig = adamjax.plot.auto(ds, var="outcome")
    bar = fig.axes[-1]
    assert bar.get_ylabel() == "fraction of runs diverging" and bar.get_ylim() == (0, 1)
    assert fig._suptitle.get_text().startswith("fraction of 4 seeds diverging\n")
    adamjax.plot.phase(ds, var="theta_final")  # dim 1: one number per run
    with pytest.raises(adamjax.SpecError, match="outcome is a category"):
        adamjax.plot.phase(ds, var="outcome", stat="median")
    with pytest.raises(adamjax.SpecError, match="two different sweep axes"):
        adamjax.plot.phase(ds, x="optimizer.b2", y="optimizer.b2")
    with pytest.raises(adamjax.SpecError, match=r"has snapshot .* --var loss without --x/--y"):
        adamjax.plot.phase(ds, var="loss")


def test_phase_legend_covers_every_panel():
    """A marker drawn in any panel is in the legend; 'every cell converged' only if so
    in every panel (the legend used to come from the first panel alone)."""
    import xarray as xr

    from adamjax._launch.outcome import CONVERGED, UNDECIDED

    dims = ("problem.n", "optimizer.b1", "optimizer.b2", "seed")
    oc = np.full((2, 2, 2, 3), CONVERGED, np.int8)
    oc[1, 0, 0] = UNDECIDED  # one cell of the second panel
    ds = xr.Dataset(
        {"loss_final": (dims, np.ones(oc.shape)), "outcome": (dims, oc)},
        coords={"problem.n": [10, 20], "optimizer.b1": [0.0, 0.5], "optimizer.b2": [0.3, 0.9]},
        attrs={"spec": json.dumps({"name": "legend"})},
    )
    texts = [t.get_text() for t in adamjax.plot.phase(ds).legends[0].get_texts()]
    assert "most runs undecided" in texts and "every cell: most runs converged" not in texts
    ds["outcome"][:] = CONVERGED
    texts = [t.get_text() for t in adamjax.plot.phase(ds).legends[0].get_texts()]
    assert "every cell: most runs converged" in texts and "most runs undecided" not in texts
