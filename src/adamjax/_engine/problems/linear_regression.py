"""Linear least squares, with (D0 > 0) or without (D0 = 0) label noise."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import numpy as np

from ..params import FLOAT, INT, Param, in_range
from .base import AbstractFiniteSumProblem
from .builtin import Builtin, device_array


class LinearRegression(AbstractFiniteSumProblem):
    """ℓ_i(θ) = ½ (a_i·θ − y_i)², y = Aθ* + σ ξ. With σ = 0 every ℓ_i is minimised at
    θ* (interpolation, D0 = 0); with σ > 0 and N > dim it is not (D0 > 0), so no
    minimiser is reported."""

    data: Any
    dim: int = eqx.field(static=True)
    theta_star: Any = None

    def example_loss(self, theta, example):
        a, y = example
        return 0.5 * (a @ theta - y) ** 2


def _build(p: dict, dtype) -> LinearRegression:
    rng = np.random.default_rng(p["data_seed"])
    a = rng.normal(size=(p["n_points"], p["dim"]))
    ts = rng.normal(size=p["dim"])
    y = a @ ts + p["label_noise"] * rng.normal(size=p["n_points"])
    return LinearRegression(
        data=(device_array(a, dtype), device_array(y, dtype)),
        dim=p["dim"],
        theta_star=device_array(ts, dtype),
    )


ENTRY = Builtin(
    kind="linear_regression",
    params={
        "n_points": Param(INT, 32, in_range(1), "data points N"),
        "dim": Param(INT, 8, in_range(1), "dimension of θ"),
        "label_noise": Param(FLOAT, 0.0, in_range(0.0), "σ ≥ 0 (0: interpolation, D0 = 0)"),
        "data_seed": Param(INT, 0, in_range(0), "seed of the data"),
    },
    build=_build,
    dim=lambda p: p["dim"],
)
