"""Spec validation (launcher issue): every kind of bad input is a one-line SpecError
naming the key and the value; β1² ≥ β2 warns once per spec; sweeps expand in C order."""

import warnings

import pytest

import adamjax
from adamjax._launch.spec import AssumptionWarning, SpecError, axes_of, grid_points, load_spec
from helpers import base_spec

BAD = {
    "unknown key": (base_spec(**{"optimizer.beta1": 0.9}), "optimizer.beta1 = 0.9"),
    "unknown top-level key": ({**base_spec(), "nmae": "x"}, 'nmae = "x"'),
    "wrong type": (base_spec(**{"run.steps": "many"}), 'run.steps = "many"'),
    "wrong type (bool for number)": (base_spec(**{"optimizer.eps": True}), "optimizer.eps = True"),
    "out of range": (base_spec(**{"optimizer.b2": 1.5}), "optimizer.b2 = 1.5"),
    "negative step constant": (base_spec(**{"schedule.c": -0.1}), "schedule.c = -0.1"),
    "unknown problem": (base_spec(**{"problem.kind": "banana"}), 'problem.kind = "banana"'),
    "unknown optimizer": (base_spec(**{"optimizer.kind": "adamw2"}), 'optimizer.kind = "adamw2"'),
    "unknown schedule": (base_spec(**{"schedule.kind": "cosine"}), 'schedule.kind = "cosine"'),
    "unknown sampling": (base_spec(**{"sampling.scheme": "random"}), 'sampling.scheme = "random"'),
    "bad sweep key": (
        {**base_spec(), "sweep": {"optimizer.beta9": [1, 2]}},
        "sweep.optimizer.beta9 = [1, 2]",
    ),
    "undotted sweep key": ({**base_spec(), "sweep": {"b1": [0.1]}}, "sweep.b1 = [0.1]"),
    "bad sweep value": (
        {**base_spec(), "sweep": {"optimizer.b1": [0.1, 2.0]}},
        "sweep.optimizer.b1 = 2.0",
    ),
    "unsweepable key": ({**base_spec(), "sweep": {"run.seeds": [1, 2]}}, "sweep.run.seeds"),
    "empty sweep list": ({**base_spec(), "sweep": {"optimizer.b1": []}}, "sweep.optimizer.b1 = []"),
    "seeds = 0": (base_spec(**{"run.seeds": 0}), "run.seeds = 0"),
    "theta0 of wrong length": (
        base_spec(**{"problem.dim": 2, "run.theta0": [1.0, 2.0, 3.0]}),
        "run.theta0 = [1.0, 2.0, 3.0]",
    ),
    "zip lengths differ": (
        {**base_spec(), "zip": {"optimizer.b1": [0.1, 0.2], "optimizer.b2": [0.9]}},
        "zip",
    ),
    "bad name": (base_spec(name="../evil"), 'name = "../evil"'),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_spec_is_one_line_naming_key_and_value(case):
    spec, needle = BAD[case]
    with pytest.raises(SpecError) as e:
        load_spec(spec)
    msg = str(e.value)
    assert needle in msg
    assert "\n" not in msg


def test_missing_file_and_malformed_toml(tmp_path):
    with pytest.raises(SpecError, match=r'^spec = ".*nope.toml": no such file$'):
        load_spec(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[run\nsteps = 3\n')
    with pytest.raises(SpecError, match=r'^spec = ".*bad.toml": invalid TOML: .*line 2') as e:
        load_spec(bad)
    assert "\n" not in str(e.value)


def test_assumption_warning_once_per_sweep():
    spec = {**base_spec(), "sweep": {"optimizer.b1": [0.0, 0.9, 0.95], "optimizer.b2": [0.5, 0.99]}}
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        load_spec(spec)
    aw = [x for x in w if issubclass(x.category, AssumptionWarning)]
    assert len(aw) == 1
    assert "2 of 6 grid points" in str(aw[0].message)


def test_assumption_warning_waits_for_the_plan_and_spares_the_theory_helpers(tmp_path):
    """adamjax.run issues the grid's warning only once the plan stands: a spec whose
    problem module is missing gives its error alone. vector_field of a spec takes β from
    its arguments and does not warn about the spec's grid."""
    sweep = {"optimizer.b1": [0.0, 0.95], "optimizer.b2": [0.5, 0.99]}
    broken = {**base_spec(), "problem": {"kind": "nomod:problem"}, "sweep": sweep}
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with pytest.raises(SpecError, match="no module 'nomod'"):
            adamjax.run(broken, progress=False)
        adamjax.vector_field({**base_spec(), "sweep": sweep}, b1=0.0, b2=0.9, samples=2**15)
    assert not [x for x in w if issubclass(x.category, AssumptionWarning)]
    loaded = load_spec({**base_spec(), "sweep": sweep}, warn=False)
    assert len(loaded.deferred) == 1 and "1 of 4 grid points" in loaded.deferred[0]
    with pytest.warns(AssumptionWarning, match="1 of 4 grid points"):
        adamjax.make_plan(loaded)


def test_sweep_and_zip_axes_in_c_order():
    spec = {
        **base_spec(),
        "sweep": {"optimizer.b1": [0.0, 0.5], "optimizer.b2": [0.9, 0.99, 0.999]},
        "zip": {"schedule.c": [0.1, 0.2], "schedule.r": [0.5, 0.6]},
    }
    s = load_spec(spec).spec
    assert [k for k, _ in axes_of(s)] == ["optimizer.b1", "optimizer.b2", "schedule.c"]
    pts = list(grid_points(s))
    assert len(pts) == 2 * 3 * 2
    assert [p["optimizer"]["b2"] for p in pts[:6]] == [0.9, 0.9, 0.99, 0.99, 0.999, 0.999]
    assert [(p["schedule"]["c"], p["schedule"]["r"]) for p in pts[:2]] == [(0.1, 0.5), (0.2, 0.6)]


def test_unquoted_dotted_sweep_keys_are_the_same_axes(tmp_path):
    """In TOML, unquoted ``optimizer.b1 = [...]`` under [sweep] is a nested table: the
    same axes and spec hash as the quoted keys (it used to be 'not a sweepable key')."""
    head = 'name = "t"\n[problem]\nkind = "zhang"\n'
    a = tmp_path / "a.toml"
    a.write_text(head + '[sweep]\n"optimizer.b1" = [0.0, 0.3]\n"schedule.c" = [0.1, 0.2]\n')
    b = tmp_path / "b.toml"
    b.write_text(head + "[sweep]\noptimizer.b1 = [0.0, 0.3]\nschedule.c = [0.1, 0.2]\n")
    la, lb = load_spec(a), load_spec(b)
    assert list(lb.spec["sweep"]) == ["optimizer.b1", "schedule.c"]
    assert la.hash == lb.hash
    nested = {"name": "t", "zip": {"optimizer": {"b1": [0.0, 0.3], "b2": [0.5, 0.9]}}}
    assert list(load_spec(nested).spec["zip"]) == ["optimizer.b1", "optimizer.b2"]
    with pytest.raises(SpecError, match=r"sweep\.optimizer\.bb = \[1\]: not a sweepable"):
        load_spec({"name": "t", "sweep": {"optimizer": {"bb": [1]}}})
    both = {"optimizer.b1": [0.1], "optimizer": {"b1": [0.2]}}
    with pytest.raises(SpecError, match=r"sweep\.optimizer\.b1: given twice"):
        load_spec({"name": "t", "sweep": both})


def test_axis_order_is_in_the_spec_hash():
    """The order of the sweep axes orders the runs (and a store's chunks): two orders are
    two specs (the hash sorts keys, so the order used to be lost)."""
    b1, b2 = ("optimizer.b1", [0.0, 0.5]), ("optimizer.b2", [0.5, 0.9])
    one = load_spec({"name": "t", "sweep": dict([b1, b2])}).hash
    two = load_spec({"name": "t", "sweep": dict([b2, b1])}).hash
    assert one != two


def test_spec_hash_ignores_formatting_not_content(tmp_path):
    a = tmp_path / "a.toml"
    a.write_text('name = "t"\n[run]\nsteps = 10\n')
    b = tmp_path / "b.toml"
    b.write_text('# comment\nname = "t"\n\n[run]\nsteps   = 10\n[record]\nsnapshots = 64\n')
    assert load_spec(a).hash == load_spec(b).hash
    assert load_spec(a).hash != load_spec({"name": "t", "run": {"steps": 11}}).hash


def test_overrides_and_scale(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        'name = "s"\n[run]\nsteps = 100\n[sweep]\n"optimizer.b1" = [0.0]\n'
        '[scale.smoke]\n"run.steps" = 10\n"sweep.optimizer.b1" = [0.0, 0.5]\n'
    )
    s = load_spec(path, scale="smoke").spec
    assert s["run"]["steps"] == 10 and s["sweep"]["optimizer.b1"] == [0.0, 0.5]
    # --set comes after the scale; values are TOML, bare words are strings.
    over = ["run.steps=3000", "sweep.optimizer.b2=[0.9, 0.99]", "problem.noise=gaussian"]
    loaded = load_spec(path, scale="smoke", overrides=over)
    s = loaded.spec
    assert s["run"]["steps"] == 3000 and s["sweep"]["optimizer.b2"] == [0.9, 0.99]
    assert s["problem"]["noise"] == "gaussian"
    assert "steps = 3000" in loaded.text  # the stored text is the effective spec
    with pytest.raises(SpecError, match=r'^scale = "paper": the spec has no \[scale.paper\]'):
        load_spec(path, scale="paper")
    with pytest.raises(SpecError, match=r'^--set = "run.steps": expected KEY=VALUE'):
        load_spec(path, overrides=["run.steps"])
    with pytest.raises(SpecError, match=r"^run.stesp = 5: unknown key"):
        load_spec(path, overrides=["run.stesp=5"])


def test_bom_and_folder(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes('\ufeffname = "b"\n[run]\nsteps = 7\n'.encode())
    assert load_spec(path).spec["run"]["steps"] == 7
    with pytest.raises(SpecError, match="is a folder, not a TOML file"):
        load_spec(tmp_path)


@pytest.mark.parametrize(
    ("key", "value", "hint"),
    [
        ("optimizer.beta1", 0.9, '; did you mean "b1"?'),  # the optax / PyTorch name
        ("optimizer.lr", 0.1, '; did you mean "schedule.c"?'),  # another table's key
        ("run.sedds", 3, '; did you mean "seeds"?'),
        ("optimzer", {"b1": 0.5}, '; did you mean "optimizer"?'),
        ("problem.kind", "quadratc", '; did you mean "quadratic"?'),
        ("sampling.scheme", "iis", '; did you mean "iid"?'),
        ("problem.nosie", "gaussian", '; did you mean "noise"?'),
        ("sweep.optimizer.beta2", [0.9], '; did you mean "optimizer.b2"?'),
        # A table's key written at the top level: the table's key, not a near top-level one.
        ("steps", 3, '; did you mean "run.steps" (in [run])?'),
        ("seeds", 100, '; did you mean "run.seeds" (in [run])?'),
        # Sweep keys: matched within their table (then refused as not sweepable), or the
        # table that has the name.
        ("sweep.run.seed", [1], '; did you mean "run.seeds"?'),
        ("sweep.b2", [0.9], '; did you mean "optimizer.b2"?'),
        ("sweep.optimizer.lr", [0.1], '; did you mean "schedule.c"?'),
    ],
)
def test_mistyped_keys_and_values_get_a_hint(key, value, hint):
    raw = base_spec()
    table, _, name = key.partition(".")
    if table == "sweep":
        raw["sweep"] = {name: value}
    elif name:
        raw.setdefault(table, {})[name] = value
    else:
        raw[table] = value
    with pytest.raises(SpecError) as e:
        load_spec(raw)
    assert str(e.value).endswith(hint), str(e.value)
    assert "\n" not in str(e.value)


def test_no_hint_without_a_close_key():
    raw = base_spec()
    raw["sweep"] = {"run.xyz": [1]}
    with pytest.raises(SpecError, match=r"not a sweepable key \(use a dotted key such as "
                       r'"optimizer.b1"\)$'):  # fmt: skip
        load_spec(raw)


def test_unknown_problem_kind_names_the_user_form():
    with pytest.raises(SpecError, match='or "module:callable" for your own problem$'):
        load_spec(base_spec(**{"problem.kind": "mymodule"}))
