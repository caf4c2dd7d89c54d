"""Tables of the vector field (``_theory/tabulated.py``): the two-parameter bicubic table."""

import jax.numpy as jnp
import numpy as np
import pytest

import adamjax
from adamjax import GridField, vector_field
from adamjax._theory.tabulated import flow_table

F64 = jnp.float64


def _linreg2():
    spec = {"kind": "linear_regression", "dim": 2, "n_points": 16, "label_noise": 0.5}
    return adamjax.make_problem(spec, F64)


def test_grid_table_converges_to_the_estimator_at_fourth_order():
    """The bicubic table of a (non-separable) two-parameter field agrees with the CRN
    estimator inside its box, the error falling ≥ 10× per halving of h (O(h⁴): 16×);
    the SE is interpolated, and ``contains`` tells the box."""
    vf = vector_field(_linreg2(), b1=0.9, b2=0.99, samples=2**15)
    pts = np.random.default_rng(1).uniform(-1, 2, size=(200, 2))
    f, se = (np.asarray(a) for a in vf(pts))
    errs = []
    for nodes in (33, 65):
        tab = vf.tabulate([-1.0, -1.0], [2.0, 2.0], nodes)
        assert isinstance(tab, GridField)
        errs.append(np.abs(np.asarray(tab.value(pts)) - f).max())
    assert errs[1] < 2e-5 and errs[0] / errs[1] > 10, errs
    tf, tse = (np.asarray(a) for a in tab(pts))
    np.testing.assert_array_equal(tf, np.asarray(tab.value(pts)))
    np.testing.assert_allclose(tse, se, atol=1e-5)
    assert tab.contains(pts[:, None, :]).all()
    assert not tab.contains(np.array([[[0.0, 0.0], [2.5, 0.0]]]))[0]


def test_grid_table_refuses_what_it_cannot_tabulate():
    vf = vector_field(_linreg2(), b1=0.9, b2=0.99, samples=2**15)
    with pytest.raises(ValueError, match="lo < hi"):
        vf.tabulate([0.0, 1.0], [1.0, 1.0], 9)
    with pytest.raises(ValueError, match="nodes = 2000"):
        vf.tabulate(0.0, 1.0, 2000)
    spec3 = {"kind": "linear_regression", "dim": 3, "n_points": 16, "label_noise": 0.5}
    vf3 = vector_field(adamjax.make_problem(spec3, F64), b1=0.9, b2=0.99, samples=2**15)
    with pytest.raises(ValueError, match="two parameters"):
        vf3.tabulate(0.0, 1.0, 9)


def test_apt_grid_table_only_where_it_resolves_the_field():
    """The APT's table of a two-parameter field (``tabulated.flow_table``): a table for starts
    close together where, with the estimator's SE, it stays within the target SE (the
    APT's default 2·10⁻⁴); not where it would add more than the estimator's own SE
    (no target) or where the box (here widened by a far-off start) would leave the
    field under-resolved."""
    vf = vector_field(_linreg2(), b1=0.9, b2=0.99, samples=2**15)
    near = np.random.default_rng(0).normal(size=(32, 2)) * 0.5
    tab = flow_table(vf, near, 65, 1.0, F64, target_se=2e-4)
    assert isinstance(tab, GridField)
    pts = jnp.asarray(near)
    gap = np.abs(np.asarray(tab.value(pts)) - np.asarray(vf.value(pts))).max()
    med = np.median(np.asarray(vf(pts)[1]))
    assert med < gap < 2e-4  # the case the target admits: more than the SE alone would
    assert flow_table(vf, near, 65, 1.0, F64) is vf
    far = np.concatenate([near, [[1e4, -1e4]]])
    assert flow_table(vf, far, 65, 1.0, F64, target_se=2e-4) is vf
