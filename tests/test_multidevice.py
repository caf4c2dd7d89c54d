"""Multi-device (``shard_map`` over 4 fake CPU devices) and multi-process
(``jax.distributed``, two local CPU processes) runs give the same dataset as one
device in one process (launcher issue)."""

import socket

import pytest
import xarray as xr

from clihelp import cli_env, popen, write_spec
from helpers import base_spec


def spec_md():
    # 3 × 2 grid points × 5 seeds = 30 runs: not a multiple of the device count, and
    # batch_size splits the sweep into two compiled programs interleaved in run order.
    spec = base_spec(name="md", seed=7, **{"run.steps": 400, "run.seeds": 5})
    spec["problem"] = {"kind": "zhang", "n": 6}
    spec["sweep"] = {"optimizer.b2": [0.4, 0.9, 0.99], "sampling.batch_size": [1, 2]}
    return spec


class _Reference:
    """One device, one process, through the command line (started at once, so that it
    runs while a test starts its own processes)."""

    def __init__(self, tmp):
        write_spec(tmp / "md.toml", spec_md())
        self.tmp = tmp
        self.proc = popen("run", "md.toml", "--out", "ref", "--no-progress", cwd=tmp)
        self.ds = None

    def get(self):
        if self.ds is None:
            _check(self.proc)
            self.ds = xr.open_zarr(self.tmp / "ref" / "md" / "results.zarr").load()
            assert self.ds.attrs["device_count"] == 1
        return self.ds


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _Reference(tmp_path_factory.mktemp("ref"))


def assert_same_data(a, b):
    xr.testing.assert_identical(a.load().drop_attrs(), b.load().drop_attrs())
    assert a.attrs["spec_hash"] == b.attrs["spec_hash"]


def _check(proc):
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return out, err


def test_four_devices_identical_to_one(tmp_path, reference):
    write_spec(tmp_path / "md.toml", spec_md())
    env = cli_env(XLA_FLAGS="--xla_force_host_platform_device_count=4")
    p = popen(
        "run", "md.toml", "--out", "out", "--chunk", "10", "--no-progress", cwd=tmp_path, env=env
    )
    _check(p)
    ds = xr.open_zarr(tmp_path / "out" / "md" / "results.zarr")
    assert ds.attrs["device_count"] == 4
    assert_same_data(reference.get(), ds)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_identical_to_one(tmp_path, reference):
    write_spec(tmp_path / "md.toml", spec_md())
    port = _free_port()
    procs = []
    for pid in range(2):
        env = cli_env(
            XLA_FLAGS="--xla_force_host_platform_device_count=2",
            JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
            JAX_NUM_PROCESSES=2,
            JAX_PROCESS_ID=pid,
        )
        procs.append(
            popen(
                "run",
                "md.toml",
                "--out",
                "out",
                "--chunk",
                "5",
                "--distributed",
                "--no-progress",
                cwd=tmp_path,
                env=env,
            )
        )
    outs = [_check(p)[0] for p in procs]
    assert "wrote" in outs[0] and outs[1] == ""  # process 0 reports
    root = tmp_path / "out" / "md"
    ds = xr.open_zarr(root / "results.zarr")
    assert ds.attrs["device_count"] == 4
    assert_same_data(reference.get(), ds)
    import json

    writers = {json.loads(f.read_text())["process"] for f in (root / "progress").iterdir()}
    assert writers == {0, 1}
