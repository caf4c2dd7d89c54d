"""The eight figures of ``experiments/`` regenerate at smoke scale, and a second run gives
identical data files. ``experiments/`` is not a package: figurekit is loaded by file path."""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"

NAMES = (
    "ode-vs-adam",
    "limit-vs-vf-zero",
    "overparam-erm",
    "zhang-phase",
    "reddi",
    "d0-neighbourhood",
    "beta2-batchsize",
    "batch-threshold",
)


@pytest.fixture(scope="module")
def kit():
    """``experiments/figurekit.py``, registered as ``figurekit`` (the figure modules import it)
    while this test module runs."""
    saved = sys.modules.get("figurekit")
    spec = importlib.util.spec_from_file_location("figurekit", EXPERIMENTS / "figurekit.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["figurekit"] = mod
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        if saved is None:
            sys.modules.pop("figurekit", None)
        else:
            sys.modules["figurekit"] = saved


def test_registry_and_specs(kit):
    assert tuple(kit.FIGURES) == NAMES
    for name in NAMES:
        assert kit.module_path(name).parent == EXPERIMENTS
        mod = kit.load_figure(name)
        assert name == mod.NAME
        assert mod.CLAIM and mod.SOURCE and callable(mod.make)
        assert mod.__doc__ and mod.__doc__.startswith(f"Figure {name}:")
        for scale in kit.SCALES:
            spec, fig = kit.load_figure_spec(name, scale)
            assert spec["name"] == name
            assert "scale" not in spec and "figure" not in spec
            assert isinstance(fig, dict)


def test_scale_overrides_apply(kit):
    smoke, _ = kit.load_figure_spec("zhang-phase", "smoke")
    paper, _ = kit.load_figure_spec("zhang-phase", "paper")
    assert smoke["run"]["steps"] < paper["run"]["steps"] == 50000
    assert len(paper["sweep"]["optimizer.b1"]) >= 30 and len(paper["sweep"]["optimizer.b2"]) >= 30
    assert paper["sweep"]["problem.n"] == [10, 50, 100]
    _, fig = kit.load_figure_spec("limit-vs-vf-zero", "smoke")
    assert fig["zero_method"] == "grid"  # a [figure] key overridden by [scale.smoke]
    with pytest.raises(ValueError, match="must be one of"):
        kit.load_figure_spec("zhang-phase", "huge")


def test_unknown_figure_exit_code(kit, tmp_path, capsys):
    assert kit.main(["no-such-figure", "--out", str(tmp_path)]) == 2
    assert "unknown figure" in capsys.readouterr().err


def test_list(kit, capsys):
    assert kit.main(["--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == list(NAMES)


def _private_adamjax_imports(path: Path) -> list[str]:
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            mods = [node.module or ""]
            if node.module == "adamjax":
                mods += [f"adamjax.{a.name}" for a in node.names]
        else:
            continue
        for m in mods:
            parts = m.split(".")
            if parts[0] == "adamjax" and any(p.startswith("_") for p in parts[1:]):
                bad.append(f"{path.name}:{node.lineno}: {m}")
    return bad


def test_experiments_use_public_adamjax_only():
    files = sorted(EXPERIMENTS.glob("*.py"))
    assert {f.stem for f in files} >= {n.replace("-", "_") for n in NAMES} | {"figurekit"}
    bad = [b for f in files for b in _private_adamjax_imports(f)]
    assert not bad, "private adamjax modules imported:\n" + "\n".join(bad)


def test_private_import_check_catches_all_forms(tmp_path):
    p = tmp_path / "x.py"
    p.write_text(
        "import adamjax._apt\nfrom adamjax._theory.apt import fit_decay\n"
        "from adamjax import _figures, run\nimport adamjax\nfrom adamjax import fit_decay\n"
    )
    assert len(_private_adamjax_imports(p)) == 3


def _datasets(folder):
    out = {}
    for name in NAMES:
        with xr.open_dataset(folder / f"{name}.nc") as ds:
            out[name] = ds.load()
    return out


@pytest.fixture(scope="module")
def two_smoke_runs(kit, tmp_path_factory):
    a = tmp_path_factory.mktemp("figs-a")
    b = tmp_path_factory.mktemp("figs-b")
    assert kit.main(["--scale", "smoke", "--out", str(a)]) == 0
    assert kit.main(["--scale", "smoke", "--out", str(b), "--experiments", str(EXPERIMENTS)]) == 0
    return a, b


def test_smoke_regenerates_all_eight(two_smoke_runs):
    a, _ = two_smoke_runs
    results = json.loads((a / "results-smoke.json").read_text())
    assert set(results) == set(NAMES)
    for name in NAMES:
        png = a / f"{name}.png"
        assert png.stat().st_size > 10_000
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with xr.open_dataset(a / f"{name}.nc") as ds:
            assert ds.attrs["figure"] == name
            assert ds.attrs["scale"] == "smoke"
            assert ds.attrs["spec"].startswith("name = ")
            assert "created" not in ds.attrs
            assert len(ds.data_vars) >= 1


def test_two_runs_give_identical_data(two_smoke_runs):
    a, b = two_smoke_runs
    da, db = _datasets(a), _datasets(b)
    for name in NAMES:
        xr.testing.assert_identical(da[name], db[name])
        assert da[name].attrs == db[name].attrs
        for k in da[name].data_vars:
            np.testing.assert_array_equal(da[name][k].values, db[name][k].values)
    assert (a / "results-smoke.json").read_bytes() == (b / "results-smoke.json").read_bytes()


def test_smoke_claims_hold(two_smoke_runs):
    """The qualitative claims that already show at smoke scale."""
    a, _ = two_smoke_runs
    r = json.loads((a / "results-smoke.json").read_text())
    reddi = r["reddi"]
    for scheme in ("cyclic", "iid"):
        assert reddi[f"theta_final_median_adam_{scheme}"] > 0.9
        assert reddi[f"theta_final_median_amsgrad_{scheme}"] < -0.9
    z = r["zhang-phase"]
    for scheme in ("iid", "reshuffle"):
        assert z[f"diverging_fraction_n50_{scheme}"] > z[f"diverging_fraction_n10_{scheme}"]
        # the field's prediction agrees with the simulated outcome where both decide
        assert z[f"prediction_agreement_n10_{scheme}"] >= 0.95
    # the critical β2 of the field falls with the batch size and lies in the bracket of
    # the bisection on simulated runs (±3 SE), i.i.d. and reshuffled
    bt = r["batch-threshold"]
    assert bt["agreement"] == 1.0
    for scheme in ("iid", "reshuffle"):
        assert bt[f"critical_b2_falls_with_b_n10_{scheme}"] == 1
        b1, b4 = bt[f"critical_b2_field_n10_{scheme}_b1"], bt[f"critical_b2_field_n10_{scheme}_b4"]
        assert b1 > b4 + 0.3
    lim = r["limit-vs-vf-zero"]
    # Asymmetric noise, β2 = 0.9: the limit and the zero of f agree, both away from 0.
    m, se = lim["limit_mean_exponential_b2_0.9"], lim["limit_se_exponential_b2_0.9"]
    zf = lim["vf_zero_exponential_b2_0.9"]
    assert m < -5 * se and zf < 0
    assert abs(m - zf) < 5 * se + 5 * lim["vf_zero_se_exponential_b2_0.9"]
