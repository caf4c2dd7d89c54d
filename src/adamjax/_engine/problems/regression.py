"""Overparametrised regression with a tanh network (DJK 2025, §2)."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ..params import INT, Param, in_range
from ..pytree import split_flat
from .base import AbstractLayeredProblem
from .builtin import Builtin, device_array


class Regression(AbstractLayeredProblem):
    """Overparametrised ERM (Dereich, Jentzen & Kassing 2025, §2): N points with
    distinct inputs, targets from a teacher network of the same architecture
    (so zero training loss is attainable), a student with dim > N parameters.
    ℓ_i(θ) = ½ (net_θ(x_i) − y_i)², net_θ(x) = tanh(W1 x + b1)·w2 + b2."""

    data: Any
    dim: int = eqx.field(static=True)
    input_dim: int = eqx.field(static=True, default=1)
    width: int = eqx.field(static=True, default=8)
    init: Any = None
    # The teacher embedded in the student's layout (extra hidden units switched
    # off): a point of zero training loss, i.e. on the set of global minima.
    teacher: Any = None

    def shapes(self):
        return ((self.width, self.input_dim), (self.width,), (self.width,), ())

    @staticmethod
    def _net(parts, x):
        w1, b1, w2, b2 = parts
        return jnp.tanh(w1 @ x + b1) @ w2 + b2

    def predict(self, theta, x):
        """The network's output net_θ(x) for one input ``x`` of shape (input_dim,)."""
        return self._net(self.unflatten(theta), x)

    def parts_loss(self, parts, example):
        x, y = example
        return 0.5 * (self._net(parts, x) - y) ** 2

    def unflatten(self, theta):
        return split_flat(theta, self.shapes())

    def default_theta0(self, key=None):
        return self.init


def param_count(input_dim: int, width: int) -> int:
    """Parameters of the network input_dim → width → 1."""
    return width * input_dim + 2 * width + 1


def _build(p: dict, dtype) -> Regression:
    n_points, width = p["n_points"], p["width"]
    inp, tw = p["input_dim"], p["teacher_width"]
    rng = np.random.default_rng(p["data_seed"])
    x = rng.normal(size=(n_points, inp))
    teacher = rng.normal(size=param_count(inp, tw))
    teacher[: tw * inp] /= np.sqrt(inp)
    w1 = teacher[: tw * inp].reshape(tw, inp)
    b1 = teacher[tw * inp : tw * inp + tw]
    w2 = teacher[tw * inp + tw : tw * inp + 2 * tw] / np.sqrt(tw)
    b2 = teacher[tw * inp + 2 * tw]
    y = np.tanh(x @ w1.T + b1) @ w2 + b2
    # Student initialisation (LeCun-normal), deterministic in data_seed.
    init = np.concatenate(
        [
            rng.normal(size=width * inp) / np.sqrt(inp),
            np.zeros(width),
            rng.normal(size=width) / np.sqrt(width),
            np.zeros(1),
        ]
    )
    emb = np.zeros(param_count(inp, width))
    emb[: tw * inp] = w1.reshape(-1)
    emb[width * inp : width * inp + tw] = b1
    emb[width * inp + width : width * inp + width + tw] = w2
    emb[width * inp + 2 * width] = b2
    return Regression(
        data=(device_array(x, dtype), device_array(y, dtype)),
        dim=param_count(inp, width),
        input_dim=inp,
        width=width,
        init=device_array(init, dtype),
        teacher=device_array(emb, dtype),
    )


def _check(p: dict) -> str | None:
    if p["teacher_width"] > p["width"]:
        return (
            f"problem.teacher_width = {p['teacher_width']}: must be ≤ problem.width = "
            f"{p['width']} (the student must be able to fit the teacher)"
        )
    return None


ENTRY = Builtin(
    kind="regression",
    params={
        "n_points": Param(INT, 16, in_range(1), "training points N"),
        "input_dim": Param(INT, 1, in_range(1), "input dimension"),
        "width": Param(INT, 32, in_range(1), "hidden units of the student"),
        "teacher_width": Param(INT, 4, in_range(1), "hidden units of the teacher (≤ width)"),
        "data_seed": Param(INT, 0, in_range(0), "seed of the data and the initialisation"),
    },
    build=_build,
    dim=lambda p: param_count(p["input_dim"], p["width"]),
    check=_check,
)
