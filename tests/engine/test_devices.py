"""One JAX device per CPU core (``_engine/devices``): the count chosen, the user's own
setting respected, and ``simulate`` on several devices bit-identical to one device."""

import subprocess
import sys

import numpy as np
import pytest

import adamjax
from adamjax._engine import devices
from clihelp import cli_env


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3", 3), ("1", None), ("off", None), (" AUTO ", "cores"), ("", "cores")],
)
def test_requested_count(monkeypatch, value, expected):
    monkeypatch.setenv(devices.ENV, value)
    if expected == "cores":
        n = min(devices.cpu_cores(), devices.MAX_DEVICES)
        expected = n if n > 1 else None
    assert devices.requested_cpu_devices() == expected


@pytest.mark.parametrize("value", ["bad", "-2", "1.5"])
def test_bad_value_is_one_line(monkeypatch, value):
    monkeypatch.setenv(devices.ENV, value)
    with pytest.raises(adamjax.SpecError, match=f"{devices.ENV} = .*positive integer"):
        devices.requested_cpu_devices()


def _device_count(env_extra: dict, before: str = "") -> tuple[int, str]:
    code = f"import jax\n{before}\nimport adamjax\nprint(jax.device_count())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=cli_env(**env_extra), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip()), out.stderr


def test_count_set_at_import_and_user_settings_win():
    assert _device_count({devices.ENV: "3"})[0] == 3
    # The user's XLA flag, and a JAX that already ran something, are left alone.
    flag = {devices.ENV: "3", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert _device_count(flag)[0] == 2
    assert _device_count({devices.ENV: "3"}, before="jax.numpy.ones(1)")[0] == 1
    n, err = _device_count({devices.ENV: "many"})
    assert n == 1 and f"{devices.ENV} = 'many'" in err and "Traceback" not in err


_SIM = """
import sys, numpy as np, jax.numpy as jnp, adamjax
from adamjax import OptHParams, RunParams, SchedHParams, SimConfig
prob = adamjax.make_problem({"kind": "quadratic", "dim": 2, "noise": "exponential"}, jnp.float32)
n = 300
def col(v):
    return np.broadcast_to(np.asarray(v, np.float32), (n,)).copy()
p = RunParams(key=np.asarray(adamjax.run_keys(5, np.arange(n))),
              theta0=np.tile(np.float32([1.0, -2.0]), (n, 1)),
              opt=OptHParams(col(0.9), np.linspace(0.5, 0.999, n, dtype=np.float32), col(1e-8),
                             col(0.0), col(0.1)),
              sched=SchedHParams(col(0.05), col(0.6), col(0.0)))
cfg = SimConfig(problem=prob, steps=500, record_steps=(0, 10, 499))
res = adamjax.simulate(cfg, p, chunk=int(sys.argv[2]))
np.savez(sys.argv[1], **{k: np.asarray(v) for k, v in res._asdict().items() if v is not None})
"""


@pytest.mark.parametrize("chunk", [200, 100])
def test_simulate_on_three_devices_identical_to_one(tmp_path, chunk):
    """Chunks of 256 padded runs use 2 of the 3 devices, chunks of 128 one device."""
    files = {}
    for n in (1, 3):
        files[n] = tmp_path / f"d{n}.npz"
        out = subprocess.run(
            [sys.executable, "-c", _SIM, str(files[n]), str(chunk)],
            env=cli_env(**{devices.ENV: str(n)}),
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
    one, three = np.load(files[1]), np.load(files[3])
    assert set(one) == set(three)
    for k in one:
        np.testing.assert_array_equal(one[k], three[k], err_msg=k)
    assert not np.all(one["theta"] == one["theta"][0])  # the runs differ


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("max 100000", None), ("200000 100000", 2), ("50000 100000", 1), ("garbage", None)],
)
def test_cgroup_quota_caps_the_cores(tmp_path, text, cpus):
    f = tmp_path / "cpu.max"
    f.write_text(text + "\n")
    assert devices._cgroup_quota(str(f)) == cpus
    assert devices._cgroup_quota(str(tmp_path / "absent")) is None


def test_cpu_memory_budget_is_shared_by_the_devices():
    code = "import adamjax\nprint(adamjax.default_budget())"
    for n in (1, 2):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=cli_env(**{devices.ENV: str(n)}),
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        assert float(out.stdout) == 2**30 / n
