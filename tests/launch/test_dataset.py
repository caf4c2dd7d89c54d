"""Self-describing results: every variable and coordinate carries long_name and units
(CF conventions), over the datasets of all shipped specs at smoke scale; the snapshot
and window dims have index coordinates; the APT attributes are recorded."""

import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import adamjax
from helpers import base_spec

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
SPECS = sorted(EXPERIMENTS.glob("*.toml"))


def _small(path: Path):
    raw = tomllib.loads(path.read_text())
    scale = "smoke" if "smoke" in (raw.get("scale") or {}) else None
    steps = min(raw.get("run", {}).get("steps", 1000), 400)
    over = [("run.steps", steps), ("run.seeds", 2)]
    if "flow" in raw:
        over.append(("flow.windows", 3))
    return adamjax.load_spec(path, scale=scale, overrides=over)


def assert_described(ds):
    for name in ds.variables:
        attrs = ds[name].attrs
        assert attrs.get("long_name") and "units" in attrs, (name, attrs)
        assert attrs.get("description"), name


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_variable_of_every_shipped_spec_is_described(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = _run(_small(path))
    assert_described(ds)
    np.testing.assert_array_equal(ds["snapshot"].values, ds["snapshot_step"].values)
    assert "snapshot" in ds.indexes


def _run(loaded):
    # The effective spec (scale and overrides applied) as a dict.
    return adamjax.run(tomllib.loads(loaded.text), progress=False)


def test_store_keeps_the_attributes_and_the_apt_fit(tmp_path):
    spec = base_spec(name="meta", **{"run.steps": 600, "run.seeds": 3})
    spec["flow"] = {"horizon": 0.5, "windows": 4}
    adamjax.run(spec, out=tmp_path, progress=False)
    ds = xr.open_zarr(tmp_path / "meta" / "results.zarr")
    assert_described(ds)
    assert ds["apt_error"].attrs["horizon"] == 0.5
    assert "window" in ds.indexes and ds.sel(window=ds["window_start"].values[1])
    fit = ds["apt_decay_exponent"].attrs
    assert fit["fit_first_window"] == 0 and fit["fit_last_window"] == 3
    assert np.isfinite(float(ds.attrs["apt_decay_exponent_se"]))
    assert ds.attrs["apt_decay_exponent"] == float(ds["apt_decay_exponent"])


def test_preload_imports_xarray_in_the_background():
    """``preload`` (called by ``run`` before compiling) leaves xarray imported."""
    code = (
        "import sys, adamjax\n"
        "from adamjax._launch.dataset import preload\n"
        "assert 'xarray' not in sys.modules\n"
        "t = preload(store=False)\n"
        "t.join(60)\n"
        "assert 'xarray' in sys.modules and 'zarr' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_preload_cut_short_by_exit_is_silent():
    """An error right after ``run`` started the import: the interpreter exits while the
    thread imports; nothing from the thread reaches the user."""
    code = (
        "import atexit, time, adamjax\n"
        "from adamjax._launch.dataset import preload\n"
        "atexit.register(time.sleep, 0.8)\n"
        "preload(store=True)\n"
        "raise SystemExit(3)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 3
    assert "Traceback" not in out.stderr and "adamjax-preload" not in out.stderr
