"""The on-disk store (launcher issue): ``OUT/<name>/results.zarr`` chunk by chunk,
identical to the in-memory result, resumable after a crash or SIGKILL, never
mixing specs, bounded units."""

import json
import os
import re
import signal
import subprocess
import time
import warnings

import jax
import numpy as np
import pytest
import xarray as xr

import adamjax
from adamjax import SpecError, make_plan
from adamjax._launch import store as _store
from adamjax._launch import sweep as _sweep
from clihelp import cli_cmd, cli_env, popen, run_cli, write_spec
from helpers import assert_same, base_spec


@pytest.fixture
def no_x64():
    """Run as the command line does (x64 off): finite-sum sampling draws differently
    with x64 on, and the references must match the CLI's processes."""
    old = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


def small_spec(name="st", **over):
    spec = base_spec(name=name, **{"run.steps": 300, "run.seeds": 5, **over})
    spec["problem"] = {"kind": "zhang", "n": 5}
    spec["sweep"] = {"optimizer.b1": [0.0, 0.5, 0.9], "optimizer.b2": [0.6, 0.99]}
    return spec


@pytest.mark.parametrize(
    "lead, target",
    [((3, 2, 8), 8), ((3, 2, 8), 5), ((3, 2, 8), 20), ((7,), 3), ((20, 20, 64), 2048), ((5, 3), 1)],
)
def test_units_tile_the_runs(lead, target):
    lay = _store.make_layout(lead, [f"d{i}" for i in range(len(lead))], target)
    seen = np.zeros(int(np.prod(lead)), int)
    flat = np.arange(seen.size).reshape(lead)
    for u in range(lay.n_units):
        lo, hi, region, _ = lay.unit(u)
        assert hi - lo <= max(target, lay.stride)
        block = flat[tuple(region[d] for d in lay.dims)]
        # A unit is both a contiguous run range and an axis-aligned region.
        np.testing.assert_array_equal(block.ravel(), np.arange(lo, hi))
        seen[lo:hi] += 1
    assert (seen == 1).all()


def test_units_bounded_by_memory_budget():
    spec = small_spec(**{"run.seeds": 64})
    plan = make_plan(spec, budget=300_000)  # a few hundred runs per chunk
    chunk = plan.groups[0].chunk
    assert chunk < plan.n_runs
    lay = _store.make_layout(
        (*plan.shape, plan.seeds), ["a", "b", "seed"], _sweep.unit_target(plan, 1, False)
    )
    assert lay.n_units > 1
    assert max(lay.unit(u)[1] - lay.unit(u)[0] for u in range(lay.n_units)) <= chunk


def test_store_identical_to_memory_and_refuses_other_spec(tmp_path, no_x64):
    spec = small_spec()
    # chunk = 5 = seeds: units of one grid point; the same program shape as in memory.
    mem = adamjax.run(spec, progress=False, chunk=5)
    ds = adamjax.run(spec, out=tmp_path, chunk=5, progress=False)
    assert_same(mem, ds)
    root = tmp_path / "st"
    lay = _store.Layout.from_json((root / "layout.json").read_text())
    assert lay.n_units > 1 and len(_store.done_units(root)) == lay.n_units
    opened = xr.open_zarr(root / "results.zarr")
    assert list(opened["optimizer.b1"].values) == [0.0, 0.5, 0.9]
    assert opened.attrs["spec_hash"] == mem.attrs["spec_hash"]
    # Every attribute survives netCDF (no booleans), and the summary reads it back.
    mem.to_netcdf(tmp_path / "mem.nc")
    with xr.open_dataset(tmp_path / "mem.nc") as nc:
        assert nc.attrs["complete"] == 1
        adamjax.summary(nc)
    # Another spec into the same folder: refused, unless forced.
    other = small_spec(seed=1)
    with pytest.raises(SpecError, match="different spec"):
        adamjax.run(other, out=tmp_path, progress=False)
    assert_same(mem, xr.open_zarr(root / "results.zarr"))
    adamjax.run(other, out=tmp_path, force=True, progress=False, chunk=5)
    assert xr.open_zarr(root / "results.zarr").attrs["spec_hash"] != mem.attrs["spec_hash"]


def test_crash_between_write_and_marker_then_resume(tmp_path, monkeypatch, capsys, no_x64):
    """A unit whose data was written but not marked is redone; marked units are not."""
    spec = small_spec(name="crash")
    mem = adamjax.run(spec, progress=False, chunk=5)
    real = _store.write_atomic
    calls = {"markers": 0}

    class Crash(Exception):
        pass

    def flaky(path, text):
        if path.parent.name == _store.PROGRESS:
            calls["markers"] += 1
            if calls["markers"] == 3:
                raise Crash
        real(path, text)

    monkeypatch.setattr(_store, "write_atomic", flaky)
    with pytest.raises(Crash):
        adamjax.run(spec, out=tmp_path, chunk=5, progress=False)
    monkeypatch.setattr(_store, "write_atomic", real)
    assert len(_store.done_units(tmp_path / "crash")) == 2
    # The interrupted store says so: summaries and plots refuse its placeholder runs, and
    # running the spec again without --resume would discard the finished units.
    part = xr.open_zarr(tmp_path / "crash" / "results.zarr")
    assert part.attrs["complete"] == 0
    with pytest.raises(SpecError, match="summary: the results are incomplete"):
        adamjax.summary(part)
    with pytest.raises(SpecError, match="plot: the results are incomplete"):
        adamjax.plot.phase(part)
    with warnings.catch_warnings(record=True) as w:  # refused before planning: no β warning
        warnings.simplefilter("always")
        with pytest.raises(SpecError, match=r"unfinished run of this spec \(2 of 6 chunks"):
            adamjax.run(spec, out=tmp_path, chunk=5, progress=False)
    assert not [x for x in w if issubclass(x.category, adamjax.AssumptionWarning)]
    assert len(_store.done_units(tmp_path / "crash")) == 2

    ran = []
    real_unit = _sweep.run_unit
    monkeypatch.setattr(
        _sweep,
        "run_unit",
        lambda p, lay, u, *a, **k: (ran.append(u), real_unit(p, lay, u, *a, **k))[1],
    )
    ds = adamjax.run(spec, out=tmp_path, chunk=5, resume=True, progress=False)
    assert sorted(ran) == [2, 3, 4, 5]  # units 0, 1 were complete
    # Without progress output the resume is still announced, in one line.
    said = capsys.readouterr().err.splitlines()
    assert [x for x in said if "resuming" in x] == [
        f"adamjax: crash: resuming into {tmp_path / 'crash' / 'results.zarr'}: "
        "2 of 6 chunks done, 4 to run here"
    ], said
    assert_same(mem, ds)
    assert ds.attrs["complete"] == 1
    adamjax.summary(ds)
    # Killed after the last unit but before the final summary: not complete, not ok,
    # refused without --resume; --resume only finishes it.
    import zarr

    zarr.open_group(str(tmp_path / "crash" / "results.zarr"), mode="r+").attrs["complete"] = 0
    r = _store.check_store(tmp_path / "crash")
    assert not r["ok"] and not r["complete"] and r["unfinished"] == []
    with pytest.raises(SpecError, match=r"\(6 of 6 chunks finished\)"):
        adamjax.run(spec, out=tmp_path, chunk=5, progress=False)
    ran.clear()
    ds = adamjax.run(spec, out=tmp_path, chunk=5, resume=True, progress=False)
    assert ran == [] and ds.attrs["complete"] == 1
    assert _store.check_store(tmp_path / "crash")["ok"]
    assert_same(mem, ds)


def _wait_for(pred, proc, timeout=240):
    t0 = time.monotonic()
    while not pred():
        if proc.poll() is not None:
            return False
        if time.monotonic() - t0 > timeout:
            raise TimeoutError
        time.sleep(0.005)
    return True


def _victim_sweep(tmp_path, name):
    """A six-point sweep of 2-run chunks to interrupt: its store folder, the CLI arguments
    of the run, and an uninterrupted reference run started now into ``ref``."""
    spec = small_spec(name=name, **{"run.steps": 2000, "run.seeds": 4})
    spec["sweep"]["optimizer.b1"] = [0.0, 0.3, 0.5, 0.7, 0.9, 0.95]
    write_spec(tmp_path / f"{name}.toml", spec)
    args = ("run", f"{name}.toml", "--out", "res", "--chunk", "2", "--no-progress")
    ref = popen("run", f"{name}.toml", "--out", "ref", "--no-progress", cwd=tmp_path)
    return tmp_path / "res" / name, args, ref


def test_sigkill_twice_then_resume_is_identical(tmp_path):
    # Reference: uninterrupted, in another folder (concurrently with the first victim).
    root, args, ref = _victim_sweep(tmp_path, "killed")
    kills = 0
    for attempt in range(2):
        before = len(_store.done_units(root))
        p = popen(*args, *(("--resume",) if attempt else ()), cwd=tmp_path)
        if _wait_for(lambda b=before: len(_store.done_units(root)) > b, p):
            os.kill(p.pid, signal.SIGKILL)
            kills += 1
        p.communicate(timeout=240)
    n_units = _store.Layout.from_json((root / "layout.json").read_text()).n_units
    done = len(_store.done_units(root))
    assert kills == 2 and 0 < done < n_units, (kills, done, n_units)
    r = run_cli(*args, "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ref.communicate(timeout=240)
    assert ref.returncode == 0
    assert_same(
        xr.open_zarr(tmp_path / "ref" / "killed" / "results.zarr"),
        xr.open_zarr(root / "results.zarr"),
    )
    markers = [json.loads(f.read_text()) for f in (root / "progress").iterdir()]
    assert sorted(m["unit"] for m in markers) == list(range(n_units))


@pytest.mark.slow  # compiles the APT comparison (diffrax): about a minute on 2 CPU cores
def test_store_with_flow_recorder_identical(tmp_path):
    """Recorder variables (extra ``window`` dim) and dataset-level postprocessing
    (``apt_decay_exponent``) land in the store as in memory."""
    spec = base_spec(name="fl", **{"run.steps": 400, "run.seeds": 3})
    spec["flow"] = {"horizon": 0.5, "windows": 3}
    mem = adamjax.run(spec, progress=False, chunk=3)
    ds = adamjax.run(spec, out=tmp_path, chunk=3, progress=False)
    assert "apt_error" in ds and "window" in ds["apt_error"].dims
    assert_same(mem, ds)
    assert ds.attrs.get("apt_decay_exponent") == mem.attrs.get("apt_decay_exponent")


def test_concurrent_launch_into_same_folder_is_refused(tmp_path):
    """While one launch holds OUT/<name>, a second one (another process) fails with a
    one-line error and touches nothing; once the first is gone the folder is usable."""
    spec = small_spec(name="lk")
    write_spec(tmp_path / "lk.toml", spec)
    root = tmp_path / "out" / "lk"
    with _store.folder_lock(root):
        (root / "sentinel").write_text("x")
        r = run_cli("run", "lk.toml", "--out", "out", "--no-progress", "--force", cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        assert "another adamjax run" in r.stderr and str(os.getpid()) in r.stderr
        errors = [ln for ln in r.stderr.splitlines() if not ln.startswith("adamjax: warning")]
        assert "Traceback" not in r.stderr and len(errors) == 1, r.stderr
        assert (root / "sentinel").exists() and not (root / "results.zarr").exists()
    r = run_cli("run", "lk.toml", "--out", "out", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (root / "results.zarr").is_dir()


# --- hostile folders, damage, stray files (reliability issue) ----------------------


@pytest.mark.parametrize("name", [".lock", "progress", "results.zarr", "layout.json", "prepare"])
def test_symlinks_in_the_output_folder_are_refused(tmp_path, name):
    """A link planted in OUT/<name> (pointing at a file the victim may write, or
    dangling) is refused in one line with exit 2; the link's target is untouched."""
    spec = small_spec(name="ln")
    write_spec(tmp_path / "ln.toml", spec)
    root = tmp_path / "out" / "ln"
    root.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (root / name).symlink_to(victim if name != "results.zarr" else tmp_path / "nowhere")
    r = run_cli("run", "ln.toml", "--out", "out", "--no-progress", "--resume", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if not ln.startswith("adamjax: warning")]
    assert len(errors) == 1 and "symbolic link" in errors[0] and "Traceback" not in r.stderr
    assert victim.read_text() == "precious\n"


def test_lock_is_not_followed_even_if_planted_after_the_check(tmp_path, monkeypatch):
    """The lock is opened with O_NOFOLLOW: a link that appears between the check and
    the open still fails (never truncates or writes the target)."""
    root = tmp_path / "lk"
    root.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    monkeypatch.setattr(_store, "refuse_links", lambda r: None)  # lose the race
    (root / ".lock").symlink_to(victim)
    with pytest.raises(OSError), _store.folder_lock(root):
        pass
    assert victim.read_text() == "precious\n"


def test_stray_temporary_files_are_removed_on_the_next_launch(tmp_path, no_x64):
    spec = small_spec(name="tmpf")
    adamjax.run(spec, out=tmp_path, chunk=5, progress=False)
    root = tmp_path / "tmpf"
    strays = [root / "progress" / ".u000003.4242.tmp", root / ".layout.json.4242.tmp"]
    for f in strays:
        f.write_text("{")
    (root / "progress" / "u000003").unlink()
    adamjax.run(spec, out=tmp_path, chunk=5, progress=False, resume=True)
    assert not any(f.exists() for f in strays)
    assert adamjax.check_store(root)["ok"]


def _chunk_files(root, unit):
    marker = json.loads((root / "progress" / f"u{unit:06d}").read_text())
    return [root / "results.zarr" / rel for rel, d in marker["files"].items() if d is not None]


def test_damaged_chunk_is_detected_and_recomputed_on_resume(tmp_path, no_x64):
    """Truncate or delete a chunk file of a finished unit: ``adamjax check`` reports it
    (exit 1), ``--resume`` says so in one line, runs that unit again, and the dataset
    equals an uninterrupted run."""
    spec = small_spec(name="dmg")
    mem = adamjax.run(spec, progress=False, chunk=5)
    write_spec(tmp_path / "dmg.toml", spec)
    args = ("run", "dmg.toml", "--out", "out", "--chunk", "5", "--no-progress")
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    root = tmp_path / "out" / "dmg"
    f = _chunk_files(root, 2)[0]  # truncated in unit 2, deleted in unit 4
    f.write_bytes(f.read_bytes()[: max(1, f.stat().st_size // 2)])
    _chunk_files(root, 4)[1].unlink()
    r = run_cli("check", "out/dmg", cwd=tmp_path)
    assert r.returncode == 1 and "damaged (units 2, 4)" in r.stderr, r.stderr
    assert adamjax.check_store(root)["damaged"] == [2, 4]
    r = run_cli(*args, "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warn = [ln for ln in r.stderr.splitlines() if "no longer hold" in ln]
    assert len(warn) == 1 and "units 2, 4" in warn[0], r.stderr
    assert_same(mem, xr.open_zarr(root / "results.zarr"))
    r = run_cli("check", "out/dmg", cwd=tmp_path)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_a_finished_spec_is_not_run_again(tmp_path, monkeypatch, capsys, no_x64):
    """The spec run again into the folder holding its finished results (same adamjax):
    nothing runs, one line says so, the stored dataset is returned; --force runs it
    again, and so does a store written by another adamjax version."""
    spec = small_spec(name="again")
    first = adamjax.run(spec, out=tmp_path, chunk=5, progress=False)
    capsys.readouterr()

    def no_unit(*a, **k):
        raise AssertionError("a unit ran")

    monkeypatch.setattr(_sweep, "run_unit", no_unit)
    ds = adamjax.run(spec, out=tmp_path, chunk=5, progress=False)
    xr.testing.assert_identical(ds, first)
    said = capsys.readouterr().err.strip().splitlines()
    assert said == [
        f"adamjax: again: {tmp_path / 'again' / 'results.zarr'} already holds the finished "
        "results of this spec: nothing to run (--force runs it again)"
    ], said
    with pytest.raises(AssertionError, match="a unit ran"):
        adamjax.run(spec, out=tmp_path, chunk=5, progress=False, force=True)
    monkeypatch.undo()
    adamjax.run(spec, out=tmp_path, chunk=5, progress=False)  # finished again
    f = _chunk_files(tmp_path / "again", 2)[0]  # a damaged chunk: not finished any more
    f.write_bytes(f.read_bytes()[: max(1, f.stat().st_size // 2)])
    monkeypatch.setattr(_sweep, "run_unit", no_unit)
    with pytest.raises(AssertionError, match="a unit ran"):
        adamjax.run(spec, out=tmp_path, chunk=5, progress=False)
    monkeypatch.undo()
    adamjax.run(spec, out=tmp_path, chunk=5, progress=False)  # finished again
    import zarr

    zarr.open_group(str(tmp_path / "again" / "results.zarr"), mode="r+").attrs[
        "adamjax_version"
    ] = "0.0.1"
    ran = []
    real = _sweep.run_unit
    monkeypatch.setattr(_sweep, "run_unit", lambda *a, **k: (ran.append(1), real(*a, **k))[1])
    adamjax.run(spec, out=tmp_path, chunk=5, progress=False)
    assert len(ran) == 6  # another version's results: computed again


def test_check_reports_unfinished_units(tmp_path, no_x64):
    spec = small_spec(name="unf")
    adamjax.run(spec, out=tmp_path, chunk=5, progress=False)
    root = tmp_path / "unf"
    _store.forget_units(root, [0, 4])
    r = adamjax.check_store(root / "results.zarr")
    assert not r["ok"] and r["unfinished"] == [0, 4] and r["damaged"] == []
    with pytest.raises(SpecError, match="not a results folder"):
        adamjax.check_store(tmp_path)


def test_a_run_stopped_before_its_first_chunk_is_said_so(tmp_path, monkeypatch, capsys):
    """Stopped before any chunk finished, the folder holds no store yet: check, summary
    and plot say so in one line (they said 'not a results folder'), and the spec runs
    again into it, with --resume or without."""
    from adamjax import cli

    class Stop(Exception):
        pass

    def stop(*a, **k):
        raise Stop

    spec = small_spec(name="early")
    monkeypatch.setattr(_sweep, "run_unit", stop)
    with pytest.raises(Stop):
        adamjax.run(spec, out=tmp_path, chunk=5, progress=False)
    monkeypatch.undo()
    root = tmp_path / "early"
    with pytest.raises(SpecError, match="stopped here before its first chunk finished"):
        adamjax.check_store(root)
    for cmd, where in (("summary", root), ("plot", root / "results.zarr"), ("check", root)):
        assert cli.main([cmd, str(where)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "nothing is stored yet" in err[0], (cmd, err)
    ds = adamjax.run(spec, out=tmp_path, chunk=5, progress=False, resume=True)
    assert ds.attrs["complete"] == 1


def test_full_disk_reports_one_line(tmp_path, monkeypatch, capsys, no_x64):
    """An OSError from the store (here ENOSPC while writing a unit) ends the command
    with one line naming the path, exit 1, no traceback."""
    import errno

    from adamjax import cli

    spec = small_spec(name="full")
    write_spec(tmp_path / "full.toml", spec)

    def full(store, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(store / "theta_final"))

    monkeypatch.setattr(_store, "write_unit", full)
    rc = cli.main(["run", str(tmp_path / "full.toml"), "--out", str(tmp_path / "o"),
                   "--no-progress"])  # fmt: skip
    err = [ln for ln in capsys.readouterr().err.splitlines() if "warning" not in ln]
    assert rc == 1 and len(err) == 1, err
    assert "No space left on device" in err[0] and "theta_final" in err[0]


@pytest.mark.parametrize(
    ("sig", "rc", "word"),
    [
        (signal.SIGTERM, 143, "terminated"),
        # the same handler path as SIGTERM; slow only to keep CI short
        pytest.param(signal.SIGINT, 130, "interrupted", marks=pytest.mark.slow),
    ],
)
def test_sigterm_and_sigint_are_one_line_and_resumable(tmp_path, sig, rc, word):
    """SIGTERM (a scheduler's stop) ends the run like Ctrl-C: exit 128 + signal, one line
    saying how to resume, finished units kept; ``--resume`` completes an identical
    dataset."""
    root, args, ref = _victim_sweep(tmp_path, "term")
    p = popen(*args, cwd=tmp_path)
    assert _wait_for(lambda: len(_store.done_units(root)) > 0, p)
    os.kill(p.pid, sig)
    _, err = p.communicate(timeout=240)
    assert p.returncode == rc, err
    assert err.splitlines()[-1] == f"adamjax: error: {word} (resume with --resume)", err
    assert "Traceback" not in err
    r = run_cli(*args, "--resume", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ref.communicate(timeout=240)
    assert_same(
        xr.open_zarr(tmp_path / "ref" / "term" / "results.zarr"),
        xr.open_zarr(root / "results.zarr"),
    )


def test_sigterm_during_a_long_flow_batch_exits_at_once(tmp_path):
    """A batch of stiff flows (the regression network's: minutes) runs as one XLA call;
    SIGTERM still ends the command within seconds, in one line, instead of after the
    batch (the wait polls, and the command leaves without waiting for XLA)."""
    spec = {
        "name": "stiff",
        "problem": {"kind": "regression"},
        "optimizer": {"b1": 0.9, "b2": 0.999},
        "schedule": {"c": 0.01, "r": 0.5},
        "run": {"steps": 4000, "seeds": 4},
        "flow": {"windows": 4, "target_se": 1e-3, "rtol": 1e-4, "atol": 1e-6},
    }
    write_spec(tmp_path / "stiff.toml", spec)
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        p = subprocess.Popen(
            cli_cmd("run", "stiff.toml", "--out", "res", "--progress"),
            cwd=tmp_path, env=cli_env(), stdout=subprocess.DEVNULL, stderr=err, text=True,
        )  # fmt: skip
        try:
            assert _wait_for(lambda: "APT flows" in log.read_text(), p), log.read_text()
            time.sleep(8.0)  # past the flows' compilation, inside the first batch
            os.kill(p.pid, signal.SIGTERM)
            t0 = time.monotonic()
            p.wait(timeout=30)
            waited = time.monotonic() - t0
        finally:
            p.kill()
    text = log.read_text()
    assert p.returncode == 143, text
    # (tqdm's carriage returns: a bar may still draw after the message)
    errors = [ln for ln in re.split(r"[\r\n]", text) if ln.startswith("adamjax: error")]
    # Stopped inside [flow]'s flows, before any chunk was stored: pass 1 is kept.
    kept = tmp_path / "res" / "stiff" / "prepare"
    assert errors == [
        "adamjax: error: terminated in the preparation: its finished part is kept in "
        "res/stiff/prepare (resume with --resume)"
    ], text
    assert "pass1.npz" in [p.name for p in kept.rglob("*.npz")]
    assert "Traceback" not in text and waited < 10, (waited, text)
