"""Bring your own problem: ``problem.kind = "module:callable"`` in a spec (found beside
the spec), ``adamjax.run(spec, problem=obj)``, one-line errors for every way the user's
code can fail, streams without a loss through the whole product, NumPy values."""

import signal
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

import adamjax
from clihelp import popen, run_cli, write_spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples"

USER_MODULE = """
import jax.numpy as jnp
import adamjax

def problem(n=8, scale=1.0):
    data = {"x": jnp.linspace(-1.0, 1.0, n)}
    return adamjax.finite_sum_problem(
        lambda p, ex: 0.5 * (p["a"] * ex["x"] - scale * ex["x"]) ** 2 + 0.5 * jnp.sum(p["c"] ** 2),
        data,
        {"a": jnp.zeros(()), "c": jnp.ones(2)},
    )

def boom(**kw):
    raise RuntimeError("the user's bug")

def not_a_problem(**kw):
    return 42

NOT_CALLABLE = 3
"""


def _user_spec(kind, **problem):
    return {
        "name": "user",
        "problem": {"kind": kind, **problem},
        "schedule": {"c": 0.2},
        "sampling": {"scheme": "cyclic"},
        "run": {"steps": 1000, "seeds": 2},
        "record": {"snapshots": 4},
    }


def test_user_callable_beside_the_spec(tmp_path):
    (tmp_path / "mymod.py").write_text(USER_MODULE)
    spec = _user_spec("mymod:problem", n=8)
    spec["sweep"] = {"problem.scale": [1.0, 2.0]}
    path = write_spec(tmp_path / "s.toml", spec)
    ds = adamjax.run(path, progress=False)
    a = ds["theta_final"].sel(dim=list(ds["param"].values).index("a"))
    # ℓ is minimised at a = scale: Adam gets there at both grid points
    np.testing.assert_allclose(a.mean("seed").values, [1.0, 2.0], atol=0.1)
    assert ds.attrs["problem_module"] == str((tmp_path / "mymod.py").resolve())
    assert len(ds.attrs["problem_source_sha256"]) == 64


FAILURES = {
    "import": ("nomod:problem", 'problem.kind = "nomod:problem": no module'),
    "attribute": ("mymod:nothere", "has no attribute 'nothere'"),
    "exception": ("mymod:boom", "boom(…) raised RuntimeError: the user's bug (at mymod.py:"),
    "return type": ("mymod:not_a_problem", "returned int, expected an adamjax problem"),
    "not callable": ("mymod:NOT_CALLABLE", "is not callable"),
    "syntax": ("broken:problem", "importing broken: SyntaxError"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_user_callable_failures_are_one_line(tmp_path, case):
    kind, needle = FAILURES[case]
    (tmp_path / "mymod.py").write_text(USER_MODULE)
    (tmp_path / "broken.py").write_text("def problem(:\n")
    write_spec(tmp_path / "s.toml", _user_spec(kind))
    r = run_cli("run", "s.toml", "--out", "out", "--no-progress", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if not ln.startswith("adamjax: warning")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert needle in lines[0], lines[0]


def test_problem_object_and_its_hash(tmp_path):
    data = {"x": jnp.linspace(-1.0, 1.0, 8)}
    prob = adamjax.finite_sum_problem(lambda p, ex: 0.5 * (p - ex["x"]) ** 2, data, jnp.zeros(()))
    spec = {"name": "obj", "run": {"steps": 100, "seeds": 2}, "sampling": {"scheme": "cyclic"}}
    a = adamjax.run(spec, problem=prob, out=tmp_path, progress=False)
    assert a["theta_final"].shape == (2, 1)
    other = adamjax.finite_sum_problem(
        lambda p, ex: 0.5 * (p - ex["x"]) ** 2, {"x": data["x"] + 1}, jnp.zeros(())
    )
    with pytest.raises(adamjax.SpecError, match="results of this spec with another problem"):
        adamjax.run(spec, problem=other, out=tmp_path, progress=False)


def test_stream_without_a_loss_everywhere():
    """G(θ, x) = θ − x with x ~ Exp(1) − 1 and no loss: the paper's general setting."""
    jax.config.update("jax_enable_x64", True)
    prob = adamjax.StreamProblem(
        innovation_fn=lambda th, x: th - x,
        sampler=lambda key, shape: jax.random.exponential(key, (*shape, 1)) - 1.0,
        dim=1,
    )
    spec = {"name": "stream", "optimizer": {"b2": 0.99}, "run": {"steps": 2000, "seeds": 4},
            "flow": {"windows": 3, "horizon": 0.5, "samples": 65536}}  # fmt: skip
    ds = adamjax.run(spec, problem=prob, progress=False)
    assert np.isnan(ds["loss_final"]).all() and np.isnan(ds["loss"]).all()
    assert not ds["diverged"].any() and np.isfinite(ds["theta_final"]).all()
    assert (ds["outcome"] == 2).all()  # no loss, no minimiser: undecided
    assert np.isfinite(ds["apt_error"]).all()
    vf = adamjax.vector_field(prob, b1=0.9, b2=0.99, samples=2**16)
    z = adamjax.vf_zero(vf, [0.0])
    assert z.success and np.isnan(z.grad_loss).all()
    # Adam's limit is the zero of f (Cor. 1.10), not the mean 0 of the noise
    assert abs(float(ds["theta_final"].mean()) - float(z.theta[0])) < 0.05
    sol = adamjax.flow(vf, jnp.ones((2, 1)), jnp.linspace(0, 1, 4))
    assert sol.ok.all()


def test_numpy_values_in_a_spec():
    spec = {
        "name": "np",
        "problem": {"kind": "quadratic", "dim": np.int64(2)},
        "run": {"steps": np.int64(300), "seeds": 2, "theta0": np.array([1.0, -1.0])},
        "sweep": {"optimizer.b2": np.linspace(0.9, 0.99, 3)},
    }
    s = adamjax.load_spec(spec).spec
    assert s["run"]["steps"] == 300 and s["run"]["theta0"] == [1.0, -1.0]
    assert adamjax.load_spec({"name": "f", "run": {"steps": 1e5}}).spec["run"]["steps"] == 100000
    with pytest.raises(adamjax.SpecError, match=r"^run.steps = 10.5: expected an integer$"):
        adamjax.load_spec({"name": "f", "run": {"steps": 10.5}})
    assert adamjax.run(spec, progress=False)["theta_final"].shape == (3, 2, 2)


def test_example_from_the_cli_resumes_and_matches_python(tmp_path):
    """The worked example at smoke scale: the CLI writes a store with a param-named θ
    coordinate; killed after its first unit and resumed, it equals adamjax.run."""
    spec = EXAMPLE / "digits-mlp.toml"
    args = ("run", spec, "--scale", "smoke", "--out", tmp_path, "--chunk", "4", "--no-progress")
    p = popen(*args)
    root = tmp_path / "digits-mlp"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 240 and p.poll() is None:
        if (root / "progress").is_dir() and any((root / "progress").glob("u*")):
            p.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    p.wait()
    r = run_cli(*args, "--resume")
    assert r.returncode == 0, r.stderr
    ds = xr.open_zarr(root / "results.zarr").load()
    assert "w1[3,17]" in set(ds["param"].values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", adamjax.AssumptionWarning)
        mem = adamjax.run(spec, scale="smoke", progress=False, chunk=4)
    for k in mem.data_vars:
        np.testing.assert_array_equal(mem[k].values, ds[k].values, err_msg=k)


def test_problem_hash_sees_code_and_data():
    from adamjax._launch.problems import problem_hash

    data = {"x": jnp.linspace(-1.0, 1.0, 8)}
    a = adamjax.finite_sum_problem(lambda p, ex: 0.5 * (p - ex["x"]) ** 2, data, jnp.zeros(()))
    b = adamjax.finite_sum_problem(lambda p, ex: 0.5 * (p + ex["x"]) ** 2, data, jnp.zeros(()))
    c = adamjax.finite_sum_problem(lambda p, ex: 0.5 * (p - ex["x"]) ** 2, data, jnp.zeros(()))
    assert problem_hash(a) != problem_hash(b) and problem_hash(a) == problem_hash(c)


def test_finite_sum_problem_input_errors():
    with pytest.raises(ValueError, match="share a leading axis"):
        adamjax.finite_sum_problem(lambda p, e: p, {"x": jnp.ones(3), "y": jnp.ones(4)}, 0.0)
    with pytest.raises(ValueError, match="must be a scalar"):
        adamjax.finite_sum_problem(lambda p, e: p * e["x"], {"x": jnp.ones((3, 2))}, jnp.zeros(2))


GROW_MODULE = """
import jax.numpy as jnp
import adamjax

def grow(sizes, scale=1.0):
    sizes.append(0)  # the user's code changes its argument in place
    n = len(sizes)
    return adamjax.finite_sum_problem(
        lambda p, ex: 0.5 * jnp.sum((p - scale * ex["x"]) ** 2), {"x": jnp.ones((4, n))},
        jnp.zeros(n),
    )
"""


def test_user_callable_gets_its_own_copy_of_the_table(tmp_path):
    """Grid points share the spec's values; a factory that changes its argument in place
    must not change the next point's problem (here: its dimension)."""
    (tmp_path / "growmod.py").write_text(GROW_MODULE)
    spec = _user_spec("growmod:grow", sizes=[7])
    spec["sampling"] = {"scheme": "iid"}
    spec["run"] = {"steps": 50, "seeds": 1}
    spec["sweep"] = {"problem.scale": [1.0, 2.0, 3.0]}
    ds = adamjax.run(write_spec(tmp_path / "s.toml", spec), progress=False)
    assert ds.sizes["dim"] == 2


def test_unfinished_folder_is_refused_before_the_user_problem_is_built(tmp_path, capsys):
    """A user problem's digest is known only once built, but a re-run into an unfinished
    folder of the same spec is refused before: the user's code is not run (with
    ``[flow]`` that would be minutes of pass 1 first); ``--resume`` finishes it. Once the
    module's data change, the folder holds 'this spec with another problem'."""
    from adamjax._launch import store as _store

    (tmp_path / "mymod.py").write_text(USER_MODULE)
    path = write_spec(tmp_path / "s.toml", _user_spec("mymod:problem", n=8))
    out = tmp_path / "out"
    full = adamjax.run(path, out=out, chunk=1, progress=False)
    root = out / "user"
    marker = sorted((root / _store.PROGRESS).iterdir())[-1]
    marker.unlink()  # as if killed before the last chunk was marked finished
    # Any call of the user's problem now fails loudly: the refusal must come first.
    (tmp_path / "mymod.py").write_text(USER_MODULE + "\nproblem = boom\n")
    with pytest.raises(adamjax.SpecError, match=r"unfinished run of this spec \(1 of 2 chunks"):
        adamjax.run(path, out=out, chunk=1, progress=False)
    with pytest.raises(adamjax.SpecError, match=r"--force as well if your problem changed"):
        adamjax.run(path, out=out, chunk=1, progress=False)
    # Resumed with the module as it was: the same dataset as the uninterrupted run.
    (tmp_path / "mymod.py").write_text(USER_MODULE)
    ds = adamjax.run(path, out=out, chunk=1, progress=False, resume=True)
    xr.testing.assert_identical(ds.drop_attrs(), full.drop_attrs())
    # Finished, and run again: computed again (unlike a built-in problem's results, a
    # user problem may depend on code that no hash covers, e.g. another module).
    capsys.readouterr()
    adamjax.run(path, out=out, chunk=1, progress=False)
    assert "already holds" not in capsys.readouterr().err
    # The same spec after the module's data changed: said so, not "a different spec".
    (tmp_path / "mymod.py").write_text(USER_MODULE.replace("linspace(-1.0", "linspace(-2.0"))
    with pytest.raises(adamjax.SpecError, match="results of this spec with another problem"):
        adamjax.run(path, out=out, chunk=1, progress=False)


def test_a_loss_broken_at_the_start_is_one_warning(tmp_path):
    """A loss that is NaN at θ0 (here log of a negative number) makes every run blow up
    at once: the runs read as diverging, and one warning says the loss is at fault."""
    (tmp_path / "nanmod.py").write_text(
        "import jax.numpy as jnp, adamjax\n"
        "def problem():\n"
        "    data = {'x': jnp.linspace(1.0, 2.0, 8)}\n"
        "    return adamjax.finite_sum_problem(\n"
        "        lambda p, ex: jnp.log(p['a'] - ex['x']) ** 2, data, {'a': jnp.zeros(())})\n"
    )
    path = write_spec(tmp_path / "s.toml", _user_spec("nanmod:problem"))
    with pytest.warns(RuntimeWarning, match=r"the loss at θ0 is not finite \(nan\)") as w:
        ds = adamjax.run(path, progress=False)
    assert len([x for x in w if "θ0 is not finite" in str(x.message)]) == 1
    assert (ds["outcome"] == adamjax.DIVERGING).all()


def test_problem_hash_is_the_same_in_every_process(tmp_path):
    """A loss holding a nested function (a lambda inside it) hashes alike in two
    processes: its code object was hashed by its repr, which holds a memory address, so
    that no run of such a problem could be resumed."""
    import subprocess
    import sys

    (tmp_path / "lam.py").write_text(
        "import jax.numpy as jnp, adamjax\n"
        "def problem():\n"
        "    def loss(p, ex):\n"
        "        sq = lambda z: z * z\n"
        "        return 0.5 * sq(p - ex['x'])\n"
        "    return adamjax.finite_sum_problem(loss, {'x': jnp.arange(4.0)}, jnp.zeros(()))\n"
    )
    code = (
        "import sys; sys.path.insert(0, '.'); import lam\n"
        "from adamjax._launch.problems import problem_hash\n"
        "print(problem_hash(lam.problem()))"
    )
    hashes = {
        subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(hashes) == 1 and len(hashes.pop()) == 16
