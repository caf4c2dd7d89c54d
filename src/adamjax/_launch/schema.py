"""The spec schema: every key of every table, with its type, default and range.

Defaults are not written here but read from the code they configure — the
optimiser defaults from :class:`~adamjax.OptHParams`, the schedule's from
:class:`~adamjax.SchedHParams`, the ``[flow]`` options from the theory layer's
``WindowOptions`` / ``FieldOptions``, the solvers from ``flow.ADAPTIVE_SOLVERS``,
the bound from :class:`~adamjax.SimConfig` — and the ``[problem]`` keys from the
problem registry (each built-in problem declares its own keys).
"""

from __future__ import annotations

from .._engine.optimizers import OPTIMIZERS, OptHParams
from .._engine.params import BOOL, FLOAT, FLOATS, INT, STR, Param, in_range, one_of
from .._engine.problems.registry import BUILTINS, unknown_kind
from .._engine.sampling import SCHEMES, SEED_MAX
from .._engine.schedules import SCHEDULES, SchedHParams
from .._engine.simulate import SimConfig
from .._theory.apt import FieldOptions
from .._theory.flow import ADAPTIVE_SOLVERS
from .._theory.vector_field import MAX_BATCHES, MAX_SAMPLES
from .._theory.windows import WindowOptions


class ProblemKind:
    """The check of ``problem.kind``: a registered built-in, or ``"module:callable"``."""

    def __call__(self, v):
        if ":" in v:
            return None if all(v.partition(":")[::2]) else 'expected "module:callable"'
        return None if v in BUILTINS else unknown_kind(v)

    def __str__(self):
        return f"{one_of(BUILTINS)}, or `module:callable` (your own)"


_OPT, _SCHED = OptHParams(), SchedHParams()
_WIN, _FIELD = WindowOptions(), FieldOptions()
_BETA = in_range(0.0, 1.0, hi_open=True)
_POSITIVE = in_range(0.0, lo_open=True)

SCHEMA: dict[str, dict[str, Param]] = {
    "": {
        "name": Param(STR, None, None, "required: names the output folder OUT/<name>"),
        "seed": Param(INT, 0, in_range(0, SEED_MAX), "base seed of every random stream (64-bit)"),
        "description": Param(STR, "", None, "free text"),
    },
    # Only ``kind``: the other keys are the chosen problem's (see ``problem_params``).
    "problem": {
        "kind": Param(STR, "quadratic", ProblemKind(), "a built-in problem, or the user's"),
    },
    "optimizer": {
        "kind": Param(STR, "adam", one_of(OPTIMIZERS), "one of " + ", ".join(OPTIMIZERS)),
        "b1": Param(FLOAT, _OPT.b1, _BETA, "β1 = α, momentum"),
        "b2": Param(FLOAT, _OPT.b2, _BETA, "β2 = β, second moment"),
        "eps": Param(FLOAT, _OPT.eps, in_range(0.0), "ε, outside the root"),
        "eps_root": Param(FLOAT, _OPT.eps_root, in_range(0.0), "added inside the root"),
        "bias_correction": Param(
            BOOL, None, None, "the 1 − βⁿ factors (default: on for adam, amsgrad)"
        ),
        "initial_accumulator": Param(
            FLOAT, _OPT.initial_accumulator, in_range(0.0), "AdaGrad's start"
        ),
    },
    "schedule": {
        "kind": Param(STR, "power", one_of(SCHEDULES), "power: γ_n = c (n + n0)^−r"),
        "c": Param(FLOAT, _SCHED.c, _POSITIVE, "step-size constant c > 0"),
        "r": Param(FLOAT, _SCHED.r, in_range(0.0, 1.0, lo_open=True), "exponent 0 < r ≤ 1"),
        "n0": Param(FLOAT, _SCHED.n0, in_range(0.0), "shift n0 ≥ 0"),
    },
    "sampling": {
        "scheme": Param(STR, "iid", one_of(SCHEMES), "one of " + ", ".join(SCHEMES)),
        "batch_size": Param(INT, 1, in_range(1), "mini-batch size b"),
    },
    "run": {
        "steps": Param(INT, 1000, in_range(1, 2**30), "Adam steps per run (int32 counters)"),
        "seeds": Param(INT, 1, in_range(1, 2**31 - 1), "runs per grid point"),
        "theta0": Param(
            FLOATS, None, None, "start θ0: a number or dim numbers (default: the problem's, else 1)"
        ),
        "theta0_std": Param(FLOAT, 0.0, in_range(0.0), "std of a Gaussian perturbation of θ0"),
        "dtype": Param(STR, "float32", one_of(("float32", "float64")), "float32 or float64"),
        "bound": Param(FLOAT, SimConfig.bound, _POSITIVE, "divergence: |θ| beyond this"),
        "chunk": Param(INT, None, in_range(1), "runs per chunk (default: memory budget)"),
        "block": Param(INT, None, in_range(1, 2**20), "steps per noise block"),
        "fast_pow": Param(BOOL, True, None, "powers by exp/log (a few ulp)"),
    },
    "record": {
        "snapshots": Param(INT, 64, in_range(0), "log-spaced snapshots of θ and the loss"),
        "margin": Param(FLOAT, 0.1, in_range(0.0), "outcome: growth margin m (× the start)"),
        "ratio": Param(FLOAT, 0.5, in_range(0.0, 1.0), "outcome: converged below ρ × the start"),
    },
    "flow": {
        "horizon": Param(FLOAT, _WIN.horizon, _POSITIVE, "T, in training time"),
        "windows": Param(INT, _WIN.windows, in_range(1), "window starts, geometric in n"),
        "first": Param(INT, _WIN.first, in_range(1), "first window start"),
        "grid": Param(INT, _FIELD.grid, in_range(4, 4096), "flow grid points in [0, T]"),
        "samples": Param(
            INT, _FIELD.samples, in_range(1024, MAX_SAMPLES), "vector-field chain length"
        ),
        "target_se": Param(
            FLOAT, _FIELD.target_se, _POSITIVE, "or: its target SE (unused with samples)"
        ),
        "batches": Param(INT, _FIELD.batches, in_range(8, MAX_BATCHES), "batch means for the SE"),
        "nodes": Param(
            INT, _FIELD.nodes, in_range(8, 65536), "table nodes per axis (1-D field; 2-D: ≤ 1024)"
        ),
        "solver": Param(STR, _FIELD.solver, one_of(ADAPTIVE_SOLVERS), "diffrax solver"),
        "rtol": Param(FLOAT, _FIELD.rtol, _POSITIVE, "solver rtol"),
        "atol": Param(FLOAT, _FIELD.atol, _POSITIVE, "solver atol"),
        "max_steps": Param(INT, _FIELD.max_steps, in_range(1), "solver steps per start"),
    },
}

# Tables a spec may carry for tools built on adamjax (plot parameters, named scale
# overrides); adamjax keeps them in the stored spec text and reads nothing in them.
EXTRA_TABLES = ("figure", "scale")

OPTIONAL_TABLES = ("flow",)

# Keys whose values change the compiled program; the rest are per-run arrays.
PER_RUN_KEYS = {
    "optimizer.b1",
    "optimizer.b2",
    "optimizer.eps",
    "optimizer.eps_root",
    "optimizer.initial_accumulator",
    "schedule.c",
    "schedule.r",
    "schedule.n0",
    "run.theta0",
    "run.theta0_std",
}
NOT_SWEEPABLE = (
    {"run.seeds", "run.chunk", "run.block", "run.steps", "record.snapshots", "run.dtype"}
    | {"problem.kind", "record.margin", "record.ratio"}
    | {f"flow.{k}" for k in SCHEMA["flow"]}
)


def problem_params(kinds) -> dict[str, Param]:
    """The ``[problem]`` keys of the problem kinds ``kinds`` (first declaration wins)."""
    out: dict[str, Param] = {}
    for kind in kinds:
        for k, p in BUILTINS[kind].params.items():
            out.setdefault(k, p)
    return out
