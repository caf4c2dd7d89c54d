"""adamjax.run: the results layout (docs/results.md) and its bad-input contract (engine issue)."""

import warnings

import numpy as np
import pytest

import adamjax
from helpers import base_spec

BAD_RUN_INPUT = [
    ({"optimizer.b1": 1.0}, "optimizer.b1", "1.0"),
    ({"optimizer.b2": -0.1}, "optimizer.b2", "-0.1"),
    ({"run.steps": 0}, "run.steps", "0"),
    ({"run.steps": -5}, "run.steps", "-5"),
    ({"problem.dim": 2, "run.theta0": [1.0, 2.0, 3.0]}, "run.theta0", "[1.0, 2.0, 3.0]"),
    ({"problem.kind": "rosenbrock"}, "problem.kind", "rosenbrock"),
    ({"optimizer.kind": "lion"}, "optimizer.kind", "lion"),
    ({"schedule.c": -0.05}, "schedule.c", "-0.05"),
]


@pytest.mark.parametrize("over,key,value", BAD_RUN_INPUT)
def test_bad_input_raises_value_error_naming_key_and_value(over, key, value):
    with pytest.raises(ValueError) as e:
        adamjax.run(base_spec(**over))
    assert key in str(e.value) and value in str(e.value)


def test_beta1_squared_above_beta2_warns_but_runs():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = adamjax.run(base_spec(**{"optimizer.b1": 0.9, "optimizer.b2": 0.5, "run.steps": 50}))
    assert any(issubclass(x.category, adamjax.AssumptionWarning) for x in w)
    assert np.isfinite(ds.theta_final.values).all()


def test_dataset_layout_and_provenance(tmp_path):
    spec = base_spec(**{"run.steps": 100, "run.seeds": 3, "record.snapshots": 5})
    spec["sweep"] = {"optimizer.b1": [0.0, 0.5], "optimizer.b2": [0.9, 0.99, 0.999]}
    path = tmp_path / "s.toml"
    import tomli_w

    path.write_text(tomli_w.dumps(spec))
    ds = adamjax.run(str(path))
    assert ds.theta_final.dims == ("optimizer.b1", "optimizer.b2", "seed", "dim")
    assert ds.theta.dims == ("optimizer.b1", "optimizer.b2", "seed", "snapshot", "dim")
    assert ds.loss.dims == ("optimizer.b1", "optimizer.b2", "seed", "snapshot")
    assert ds.diverged.dtype == bool and ds.diverged_step.dtype.kind == "i"
    np.testing.assert_array_equal(ds["optimizer.b2"].values, [0.9, 0.99, 0.999])
    assert int(ds.snapshot_step.values[0]) == 0 and int(ds.snapshot_step.values[-1]) == 100
    for attr in (
        "spec",
        "spec_hash",
        "adamjax_version",
        "jax_version",
        "backend",
        "device_count",
        "created",
    ):
        assert attr in ds.attrs, attr
    assert 'name = "t"' in ds.attrs["spec"]
    # the dict and the TOML file describe the same experiment
    assert adamjax.run(spec).attrs["spec_hash"] == ds.attrs["spec_hash"]
    # each grid point got its own β: the first step of Adam is −γ·sign(g) for every β,
    # but later steps differ
    th = ds.theta.values[..., -1, 0]
    assert len(np.unique(th)) == th.size


def test_zip_over_vector_theta0_labels_the_axis(tmp_path):
    spec = base_spec(**{"problem.dim": 2, "run.theta0": None, "run.steps": 20, "run.seeds": 2})
    spec["run"].pop("theta0")
    spec["zip"] = {"run.theta0": [[1.0, 0.0], [0.0, 1.0]], "optimizer.b1": [0.5, 0.8]}
    ds = adamjax.run(spec)
    assert list(ds["run.theta0"].values) == ["[1.0, 0.0]", "[0.0, 1.0]"]
    np.testing.assert_array_equal(ds["optimizer.b1"].values, [0.5, 0.8])
    np.testing.assert_array_equal(ds.theta.values[:, 0, 0], [[1.0, 0.0], [0.0, 1.0]])
    stored = adamjax.run(spec, out=tmp_path)
    np.testing.assert_array_equal(stored.theta_final.values, ds.theta_final.values)


def test_a_mini_batch_longer_than_an_epoch_is_one_warning():
    """Under a reshuffled (or cyclic) order a mini-batch of more than N examples spans
    epochs and repeats examples: said once, the plan goes on (it was silent)."""
    import warnings

    spec = {
        "name": "wrap",
        "problem": {"kind": "zhang", "n": 10},
        "sampling": {"scheme": "reshuffle"},
        "run": {"steps": 100, "seeds": 2},
        "sweep": {"sampling.batch_size": [4, 20, 30]},
    }
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        adamjax.make_plan(spec)
    said = [str(x.message) for x in w if "spans epochs" in str(x.message)]
    assert said == [
        "sampling.batch_size = 20: more than the problem's 10 examples; under reshuffle "
        "order a mini-batch then spans epochs and repeats examples"
    ], said
