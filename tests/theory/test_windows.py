"""The APT's windows: starts geometric in n, every window inside the run."""

import numpy as np
import pytest

from adamjax import SpecError, window_starts
from adamjax._theory.windows import _times


def test_window_starts_geometric_and_inside_the_run():
    n = window_starts(20_000, 8, 1.0, "power", [(0.05, 0.6, 0.0)])
    assert len(n) == 8 and n[0] == 1 and np.all(np.diff(n) > 0)
    t = _times("power", (0.05, 0.6, 0.0), 20_000)
    assert t[-1] - t[n[-1]] >= 1.0  # the last window fits inside the run
    assert t[-1] - t[n[-1] + 1] < 1.0  # … and is the last that does
    r = n[1:] / n[:-1]
    assert r.max() / r.min() < 1.5
    with pytest.raises(SpecError, match="flow.horizon"):
        window_starts(100, 4, 1e3, "power", [(0.05, 0.6, 0.0)])
