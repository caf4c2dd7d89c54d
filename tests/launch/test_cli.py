"""The ``adamjax`` command line (launcher issue).

Each kind of bad input exits with code 2 and exactly one stderr line
``adamjax: error: <key> = <value>: <reason>`` — no traceback. The subprocesses
of the bad-input cases run concurrently (one fixture), so the whole file costs a
few seconds of wall time.
"""

import os
import subprocess
import sys

import pytest

from clihelp import cli_env, popen, run_cli, write_spec
from helpers import base_spec

# kind -> (spec dict, or a raw TOML text, or None for a missing file; expected text)
BAD = {
    "unknown key": (base_spec(**{"optimizer.beta1": 0.9}), "optimizer.beta1 = 0.9: unknown key"),
    "wrong type": (base_spec(**{"run.steps": "many"}), 'run.steps = "many": expected an integer'),
    "out of range": (base_spec(**{"optimizer.b2": 1.5}), "optimizer.b2 = 1.5: must be < 1"),
    "unknown problem kind": (
        base_spec(**{"problem.kind": "banana"}),
        'problem.kind = "banana": must be one of',
    ),
    "unknown optimizer kind": (
        base_spec(**{"optimizer.kind": "adamw2"}),
        'optimizer.kind = "adamw2": must be one of',
    ),
    "unknown schedule kind": (
        base_spec(**{"schedule.kind": "cosine"}),
        'schedule.kind = "cosine": must be one of',
    ),
    "unknown sampling scheme": (
        base_spec(**{"sampling.scheme": "random"}),
        'sampling.scheme = "random": must be one of',
    ),
    "bad sweep key": (
        {**base_spec(), "sweep": {"optimizer.beta9": [0.1, 0.2]}},
        "sweep.optimizer.beta9 = [0.1, 0.2]: not a sweepable key",
    ),
    "malformed TOML": ('name = "x"\n[run\nsteps = 3\n', 'spec = "spec.toml": invalid TOML'),
    "missing file": (None, 'spec = "spec.toml": no such file'),
    "seeds = 0": (base_spec(**{"run.seeds": 0}), "run.seeds = 0: must be ≥ 1"),
    "theta0 of wrong length": (
        base_spec(**{"problem.dim": 2, "run.theta0": [1.0, 2.0, 3.0]}),
        "run.theta0 = [1.0, 2.0, 3.0]: expected a number or 2 values",
    ),
    "bad command line": ("--chunk", "argument --chunk: expected one argument"),
    # Absurd sizes are refused before anything is allocated (reliability issue).
    "seed beyond 64 bits": (base_spec(seed=2**64), "seed = 18446744073709551616: must be ≤"),
    "absurd seeds": (base_spec(**{"run.seeds": 10**12}), "run.seeds = 1000000000000: must be ≤"),
    "absurd steps": (base_spec(**{"run.steps": 10**15}), "run.steps = 1000000000000000: must"),
    "absurd block": (base_spec(**{"run.block": 10**9}), "run.block = 1000000000: must be ≤"),
    "absurd flow.samples": (
        {**base_spec(), "flow": {"samples": 2**32}},
        "flow.samples = 4294967296: must be ≤ 16777216",
    ),
    "runs beyond the counter": (
        {**base_spec(**{"run.seeds": 2**31 - 1}), "sweep": {"optimizer.b2": [0.9, 0.99, 0.999]}},
        "runs: at most 2**32 − 1",
    ),
    "absurd dimension": (base_spec(**{"problem.dim": 10**9}), "of host memory"),
    "one run beyond the budget": (base_spec(**{"problem.dim": 10**7}), "run: one run needs"),
    "absurd finite sum": (
        {**base_spec(), "problem": {"kind": "zhang", "n": 10**9}},
        "do not fit in device memory",
    ),
    "non-UTF-8 spec": (b'name = "x"\ndescription = "caf\xe9"\n', "not UTF-8 text (byte 0xe9"),
}
# Refused only when XLA fails to allocate, after the output folder was made.
AT_RUNTIME = {"absurd finite sum"}


def _prepare(d, kind):
    spec = BAD[kind][0]
    if kind == "bad command line":
        return ["run", "spec.toml", "--chunk"]
    if isinstance(spec, dict):
        write_spec(d / "spec.toml", spec)
    elif isinstance(spec, str):
        (d / "spec.toml").write_text(spec)
    elif isinstance(spec, bytes):
        (d / "spec.toml").write_bytes(spec)
    return ["run", "spec.toml", "--out", str(d / "out")]


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_input_exit_2_one_line_no_traceback(tmp_path, monkeypatch, capsys, kind):
    """In process: ``main`` returns 2 (an escaping exception would fail the test)."""
    from adamjax.cli import main

    monkeypatch.chdir(tmp_path)
    rc = main(_prepare(tmp_path, kind))
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if kind in AT_RUNTIME:  # the run's header and progress line came first
        lines = [ln for ln in lines if ln.startswith("adamjax: error: ")]
    assert rc == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("adamjax: error: "), err
    assert BAD[kind][1] in lines[0]
    assert out == ""
    assert kind in AT_RUNTIME or not (tmp_path / "out").exists()


SUBPROCESS_KINDS = ["malformed TOML", "seeds = 0"]


def test_bad_input_in_a_real_process(tmp_path):
    """The console command itself: exit code 2, one stderr line, no traceback (run
    concurrently to keep the cost of the interpreter start-ups down)."""
    procs = {}
    for kind in SUBPROCESS_KINDS:
        d = tmp_path / kind.replace(" ", "_")
        d.mkdir()
        procs[kind] = popen(*_prepare(d, kind), cwd=d)
    for kind, p in procs.items():
        out, err = p.communicate(timeout=300)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert p.returncode == 2, (kind, err)
        assert len(lines) == 1 and lines[0].startswith("adamjax: error: "), (kind, err)
        assert BAD[kind][1] in lines[0]
        assert "Traceback" not in err and out == ""


def test_run_writes_store_and_warns_one_line(tmp_path, monkeypatch, capsys):
    spec = {
        **base_spec(name="cli-ok", **{"run.steps": 50, "run.seeds": 3}),
        "sweep": {"optimizer.b1": [0.0, 0.95], "optimizer.b2": [0.5, 0.99]},
    }
    write_spec(tmp_path / "ok.toml", spec)
    r = run_cli("run", "ok.toml", "--out", "res", "--chunk", "4", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warn = [ln for ln in r.stderr.splitlines() if "warning" in ln]
    assert len(warn) == 1, warn
    assert warn[0].startswith(
        "adamjax: warning: 1 of 4 grid points (the first: optimizer.b1 = 0.95, "
        "optimizer.b2 = 0.5): β1² ≥ β2 is outside"
    ), warn[0]
    assert "Traceback" not in r.stderr
    assert "results in res/cli-ok/results.zarr" in r.stdout
    import xarray as xr

    ds = xr.open_zarr(tmp_path / "res" / "cli-ok" / "results.zarr")
    assert dict(ds.sizes) == {
        "optimizer.b1": 2,
        "optimizer.b2": 2,
        "seed": 3,
        "dim": 1,
        "snapshot": ds.sizes["snapshot"],
    }
    assert list(ds["optimizer.b2"].values) == [0.5, 0.99]
    assert ds.attrs["spec_hash"] and "cli-ok" in ds.attrs["spec"]

    # A different spec into the same folder is refused (exit 2, one line) unless --force
    # (in process: the refusal comes before any simulation).
    from adamjax.cli import main

    spec["run"]["steps"] = 60
    write_spec(tmp_path / "other.toml", spec)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["run", "other.toml", "--out", "res", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    err = [ln for ln in err if not ln.startswith("adamjax: warning")]
    assert len(err) == 1 and "different spec" in err[0] and "--force" in err[0], err


def test_list_info_bench(tmp_path, monkeypatch, capsys):
    from adamjax.cli import main

    exp = tmp_path / "experiments"
    exp.mkdir()
    write_spec(exp / "mine.toml", {**base_spec(name="mine"), "description": "my experiment"})
    (exp / "broken.toml").write_text("name = \n")
    monkeypatch.chdir(tmp_path)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mine" in out and "my experiment" in out and "broken" in out
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("jax", "backend", "devices", "memory"):
        assert word in out
    # bench: benchmarks/run.py of the current folder, else of the repository.
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "run.py").write_text(
        "def main(argv):\n    print('bench', argv)\n    return 0\n"
    )
    assert main(["bench", "--quick"]) == 0
    assert "bench ['--quick']" in capsys.readouterr().out
    # ``python -m adamjax.cli`` is the command too (it used to do nothing).
    r = subprocess.run(
        [sys.executable, "-m", "adamjax.cli", "list"],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and "mine" in r.stdout and "my experiment" in r.stdout, r


def test_figures_without_scripts_is_one_line(tmp_path, capsys, monkeypatch):
    from adamjax.cli import main

    monkeypatch.setenv("ADAMJAX_EXPERIMENTS", str(tmp_path))
    assert main(["figures", "--list"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("adamjax: error: figures = ")
    assert "figurekit.py" in err[0] and "not found" in err[0]


def test_parse_size():
    from adamjax.cli import parse_size

    assert parse_size("512M") == 512 * 2**20
    assert parse_size("1.5GiB") == 1.5 * 2**30
    assert parse_size("1000") == 1000
    with pytest.raises(ValueError, match="--budget"):
        parse_size("lots")


def test_misspelt_experiment_name_suggests(capsys):
    from adamjax.cli import main

    assert main(["run", "zhang-swep", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean zhang-sweep" in err[0]


# case -> (what main returns or raises, jax.distributed initialised, shutdown expected,
#          exit code, text on stderr)
CONSOLE = {
    "ok, one process": (0, False, False, 0, ""),
    "ok, distributed": (0, True, True, 0, ""),
    "bad input, distributed": (2, True, True, 2, ""),
    "Ctrl-C, distributed": (130, True, False, 130, ""),
    "--help": (SystemExit(None), False, False, 0, ""),
    "exit message": (SystemExit("--only: unknown"), False, False, 1, "--only: unknown"),
}


def _console(monkeypatch, main, distributed, shutdown_error=None) -> list:
    """Run ``adamjax.__main__.console`` with ``main``, jax.distributed (initialised or
    not; its shutdown raising ``shutdown_error``), ``os._exit`` and ``logging.shutdown``
    replaced; returns the calls in order: ("shutdown",), ("logging",), ("exit", code)."""
    import logging
    import os

    import jax

    import adamjax.__main__ as entry

    calls = []

    def shutdown():
        calls.append(("shutdown",))
        if shutdown_error is not None:
            raise shutdown_error

    monkeypatch.setenv("ADAMJAX_INTERRUPTIBLE", "0")  # console() sets it only if unset
    monkeypatch.setattr(entry, "main", main)
    monkeypatch.setattr(os, "_exit", lambda c: calls.append(("exit", c)))
    monkeypatch.setattr(logging, "shutdown", lambda: calls.append(("logging",)))
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: distributed)
    monkeypatch.setattr(jax.distributed, "shutdown", shutdown)
    entry.console()
    return calls


@pytest.mark.parametrize("case", list(CONSOLE))
def test_console_leaves_through_os_exit(monkeypatch, capsys, case):
    """``adamjax`` leaves through ``os._exit`` (no interpreter teardown) with main's code,
    after logging and the output are flushed and, in a multi-process run that was not
    interrupted, jax.distributed is shut down (its peers wait for it)."""
    outcome, distributed, shutdown, code, err = CONSOLE[case]

    def fake_main():
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    calls = _console(monkeypatch, fake_main, distributed)
    assert calls == [("shutdown",)] * shutdown + [("logging",), ("exit", code)]
    assert err in capsys.readouterr().err


def test_console_a_failing_distributed_shutdown_is_one_warning(monkeypatch, capsys):
    calls = _console(monkeypatch, lambda: 0, True, RuntimeError("barrier timed out"))
    assert [c for c in calls if c[0] == "exit"] == [("exit", 0)]
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["adamjax: warning: jax.distributed.shutdown: barrier timed out"]


def test_interrupted_before_any_chunk_says_nothing_to_resume(tmp_path, monkeypatch, capsys):
    """Ctrl-C before the first chunk is stored (e.g. in [flow]'s pass 1): the line says
    there is nothing to resume, instead of advising --resume."""
    import adamjax
    from adamjax.cli import EXIT_INTERRUPTED, main

    write_spec(tmp_path / "s.toml", base_spec(name="early"))

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(adamjax, "run", stop)
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o")]) == EXIT_INTERRUPTED
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "adamjax: error: interrupted before any chunk was stored: nothing to resume (run the "
        "spec again)"
    ], err
    # A part kept by an earlier run (another spec or version) is not this run's.
    kept = tmp_path / "o" / "early" / "prepare"
    (kept / "old" / "recorder0" / "group0").mkdir(parents=True)
    old = kept / "old" / "recorder0" / "group0" / "pass1.npz"
    old.write_bytes(b"")
    os.utime(old, (0, 0))
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o")]) == EXIT_INTERRUPTED
    assert "nothing to resume" in capsys.readouterr().err

    # Stopped in [flow]'s preparation after a part of it was kept (``checkpoint``).
    def stop_in_flows(*a, **k):
        (kept / "h-v").mkdir(exist_ok=True)
        (kept / "h-v" / "pass1.npz").write_bytes(b"")
        raise KeyboardInterrupt

    monkeypatch.setattr(adamjax, "run", stop_in_flows)
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o")]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip() == (
        f"adamjax: error: interrupted in the preparation: its finished part is kept in {kept} "
        "(resume with --resume)"
    )
    (tmp_path / "o" / "early" / "layout.json").write_text("{}")  # a chunk was stored
    assert main(["run", str(tmp_path / "s.toml"), "--out", str(tmp_path / "o")]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip() == "adamjax: error: interrupted (resume with --resume)"
