"""The preparation's finished parts kept on disk: a [flow] run stopped in its flows
continues after its last finished batch, with the same numbers (``_launch.checkpoint``)."""

import numpy as np
import pytest

import adamjax
import adamjax._theory.apt as apt_mod
import adamjax._theory.flow as flow_mod
from adamjax import SpecError
from adamjax._launch.checkpoint import Checkpoint, PrepareFolder
from helpers import assert_same, base_spec


def test_parts_round_trip_and_the_read_write_switches(tmp_path):
    kept = Checkpoint(tmp_path / "c").part("g0")
    assert "a" not in kept and list(kept) == [] and len(kept) == 0
    kept["a"] = {"x": np.arange(3.0), "ok": np.array([True, False])}
    got = kept["a"]
    assert set(got) == {"x", "ok"} and np.array_equal(got["x"], np.arange(3.0))
    assert got["ok"].dtype == bool and list(kept) == ["a"]
    assert not list((tmp_path / "c" / "g0").glob(".*"))  # no temporary file left
    assert kept.get("b") is None
    # A damaged part (cut short by a full disk, say) counts as missing.
    (tmp_path / "c" / "g0" / "b.npz").write_bytes(b"PK\x03\x04 not a zip")
    assert kept.get("b") is None and "b" not in kept
    # A run that starts over reads nothing back; a process other than 0 writes nothing.
    assert Checkpoint(tmp_path / "c", read=False).part("g0").get("a") is None
    quiet = Checkpoint(tmp_path / "q", write=False)
    quiet["a"] = {"x": np.zeros(1)}
    assert not (tmp_path / "q").exists()
    with pytest.raises(KeyError):
        del Checkpoint(tmp_path / "c", write=False).part("g0")["a"]
    # Never written through a symbolic link below the folder adamjax owns; a link above
    # it (an output folder on a linked disk, /tmp on macOS) is the user's choice.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    owned = Checkpoint(tmp_path / "link" / "prepare")
    owned.part("g0")["a"] = {"x": np.zeros(1)}
    assert (tmp_path / "elsewhere" / "prepare" / "g0" / "a.npz").is_file()
    (tmp_path / "elsewhere" / "prepare" / "g1").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(SpecError, match="symbolic link"):
        owned.part("g1")["a"] = {"x": np.zeros(1)}
    assert not (tmp_path / "elsewhere" / "a.npz").exists()


def test_user_problems_read_back_only_on_resume(tmp_path):
    def opened(user, **kw):
        return PrepareFolder(tmp_path, "v", **kw).open("h", user)

    # A built-in problem's parts are what the run computes: read back unless --force.
    assert opened(False).read and opened(False, resume=True).read
    assert not opened(False, force=True).read
    assert opened(True, resume=True).read and not opened(True, resume=True, force=True).read
    assert not opened(True).read  # nothing kept yet: nothing to refuse
    opened(False).part("g")["p"] = {"x": np.zeros(1)}
    (folder,) = (tmp_path / "prepare").iterdir()
    assert folder.name.startswith("h-adamjaxv-jax") and (folder / "g" / "p.npz").is_file()
    # A user's problem run again over kept parts, without --resume: refused, not lost
    # (in one process: with several, each would decide on its own while process 0 writes).
    with pytest.raises(SpecError, match=r"1 finished part.*--resume to continue it"):
        opened(True)
    assert not opened(True, force=True).read and not opened(True, refuse=False).read
    # Parts beside complete results (a stop just before their removal): nothing to keep.
    adamjax.run(base_spec(name="done"), out=tmp_path / "o", progress=False)
    done = PrepareFolder(tmp_path / "o" / "done", "v")
    done.open("h", False).part("g")["p"] = {"x": np.zeros(1)}
    assert not done.open("h", True).read


def test_flow_run_stopped_in_its_flows_resumes_after_the_last_batch(tmp_path, monkeypatch, capsys):
    """Stopped (Ctrl-C) inside the second of three batches of flows: the rerun neither
    simulates pass 1 again nor integrates the first batch again, and its results are
    those of an uninterrupted run; the kept parts are gone once the results are complete.
    A part solved from other starts, or another batch size, is solved again."""
    spec = base_spec(name="fl", **{"run.steps": 400, "run.seeds": 4})
    spec["flow"] = {"horizon": 0.5, "windows": 3}  # 12 flows: 3 batches of 4
    monkeypatch.setattr(flow_mod, "FLOW_BATCH", 4)
    mem = adamjax.run(spec, progress=False)
    real_flow, real_sim = flow_mod.flow, apt_mod.simulate
    flows, sims, stop = [], [], [True]

    def flow(*a, **k):
        flows.append(1)
        if stop[0] and len(flows) == 2:
            raise KeyboardInterrupt
        return real_flow(*a, **k)

    monkeypatch.setattr(flow_mod, "flow", flow)
    monkeypatch.setattr(apt_mod, "simulate", lambda *a, **k: (sims.append(1), real_sim(*a, **k))[1])
    outs = iter(tmp_path / f"out{i}" for i in range(10))  # a fresh folder per stop

    def killed(**kw):
        out = next(outs)
        stop[0] = True
        flows.clear(), sims.clear()
        with pytest.raises(KeyboardInterrupt):
            adamjax.run(spec, out=out, progress=False, **kw)
        stop[0] = False
        flows.clear(), sims.clear()
        return out, sorted(p.name for p in (out / "fl" / "prepare").rglob("*.npz"))

    def finished(out, **kw):
        ds = adamjax.run(spec, out=out, progress=False, **kw)
        assert not (out / "fl" / "prepare").exists()
        assert_same(mem, ds)
        return len(flows), len(sims)

    out, parts = killed()
    assert parts == ["flows0.0.4.npz", "pass1.npz"]
    capsys.readouterr()
    assert finished(out, resume=True) == (2, 0)  # batches 2 and 3 only; pass 1 read back
    said = [ln for ln in capsys.readouterr().err.splitlines() if "continues" in ln]
    assert len(said) == 1 and said[0].startswith(
        f"adamjax: fl: [flow] continues its preparation from {out / 'fl' / 'prepare'}/"
    ), said
    assert said[0].endswith(": 2 finished part(s) found (pass 1, batches of flows)")
    assert finished(killed()[0]) == (2, 0)  # a built-in problem's: also without --resume
    assert finished(killed()[0], force=True) == (3, 1)  # --force starts over
    # A part whose starts are not the run's (another pass 1): solved again.
    out = killed()[0]
    (part,) = out.rglob("flows0.0.4.npz")
    bad = Checkpoint(part.parent)
    bad["flows0.0.4"] = {**bad["flows0.0.4"], "starts": bad["flows0.0.4"]["starts"] + 1}
    assert finished(out) == (3, 0)
    # Pass 1 of other runs (another run count under the same name): simulated again.
    out = killed()[0]
    bad = Checkpoint(next(out.rglob("pass1.npz")).parent)
    bad["pass1"] = {k: v[:2] for k, v in bad["pass1"].items() if k != "starts"} | {
        "starts": bad["pass1"]["starts"]
    }
    assert finished(out) == (2, 1)
    # Another batch size: every batch solved again, pass 1 still read back.
    out = killed()[0]
    monkeypatch.setattr(flow_mod, "FLOW_BATCH", 6)
    assert finished(out) == (2, 0)
    # Another spec into this folder of finished results: refused before pass 1.
    other = {**spec, "flow": {"horizon": 0.5, "windows": 2}}
    with pytest.raises(SpecError, match="holds results of a different spec"):
        adamjax.run(other, out=out, progress=False)
    assert sims == [] and not (out / "fl" / "prepare").exists()
