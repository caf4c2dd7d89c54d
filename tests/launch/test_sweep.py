"""Every data variable is bit-identical whatever the device count and the chunk size
(1, 3 or 4 forced host devices × automatic, 7 or 32 runs per chunk × 31 or 32 seeds),
and a resume on another device count records both counts."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

from clihelp import cli_env

# The regression network (tanh, float64) is the most sensitive problem: before every
# compiled batch was a multiple of 128 runs, its θ after 300 steps differed between
# 64- and 128-run programs, and the snapshot losses by 1 ulp across device counts.
# The 1-D quadratic's losses are computed without the blocks of runs (nothing reduces:
# ``_engine.reductions``), which must give the same bits too.
SCRIPT = textwrap.dedent(
    """
    import sys, adamjax
    out = sys.argv[1]
    PROBLEMS = [("s", {"kind": "regression"}, "float64"),
                ("q", {"kind": "quadratic", "dim": 1, "noise": "exponential"}, "float32")]
    for seeds in (31, 32):
        for chunk in (None, 7, 32):
            for pre, problem, dtype in PROBLEMS:
                spec = {"name": f"{pre}{seeds}c{chunk}", "seed": 5, "problem": problem,
                        "run": {"steps": 150, "seeds": seeds, "dtype": dtype},
                        "record": {"snapshots": 16},
                        "sweep": {"optimizer.b2": [0.9, 0.99],
                                  "optimizer.b1": [0.0, 0.5, 0.8, 0.9]}}
                adamjax.run(spec, out=out, chunk=chunk, progress=False)
    """
)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("inv")
    (tmp / "inv.py").write_text(SCRIPT)
    procs = {}
    for n in (1, 3, 4):
        env = cli_env(XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        procs[n] = subprocess.Popen(
            [sys.executable, "inv.py", f"d{n}"], cwd=tmp, env=env, stderr=subprocess.PIPE
        )
    for p in procs.values():
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err.decode()
    return tmp


@pytest.mark.parametrize("pre", ["s", "q"])
def test_every_variable_identical_across_devices_and_chunks(stores, pre):
    for seeds in (31, 32):
        ref = xr.open_zarr(stores / "d1" / f"{pre}{seeds}cNone" / "results.zarr").load()
        assert ref.sizes["seed"] == seeds and ref.attrs["device_counts"] == [1]
        for n in (1, 3, 4):
            for chunk in (None, 7, 32):
                ds = xr.open_zarr(stores / f"d{n}" / f"{pre}{seeds}c{chunk}" / "results.zarr")
                ds = ds.load()
                assert ds.attrs["device_counts"] == [n]
                for k in ref.data_vars:
                    np.testing.assert_array_equal(
                        ds[k].values, ref[k].values, err_msg=f"{k}: {n} devices, chunk {chunk}"
                    )


def test_resume_on_another_device_count_records_both(stores, tmp_path):
    """Finished units from 4 devices, the rest on 1: the data equal a 1-device run and
    ``device_counts`` lists both launches."""
    import shutil

    from adamjax._launch import store as _store

    src = stores / "d4" / "s32c7"
    root = tmp_path / "s32c7"
    shutil.copytree(src, root)
    done = sorted(_store.done_units(root))
    _store.forget_units(root, done[len(done) // 2 :])
    script = SCRIPT.replace("for seeds in (31, 32):", "for seeds in (32,):").replace(
        "for chunk in (None, 7, 32):", "for chunk in (7,):"
    ).replace("progress=False)", "progress=False, resume=True)")  # fmt: skip
    (tmp_path / "resume.py").write_text(script)
    r = subprocess.run(
        [sys.executable, "resume.py", str(tmp_path)], cwd=tmp_path, env=cli_env(),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    ds = xr.open_zarr(root / "results.zarr").load()
    assert ds.attrs["device_counts"] == [4, 1]
    ref = xr.open_zarr(stores / "d1" / "s32c7" / "results.zarr").load()
    xr.testing.assert_identical(ds.drop_attrs(), ref.drop_attrs())
    assert json.loads((root / "layout.json").read_text())["spec_hash"] == ref.attrs["spec_hash"]
