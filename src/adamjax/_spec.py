"""Experiment specs: loading, validation, defaults, and sweep expansion.

A spec is data (a TOML file or the same content as a dict) — nothing in it is
evaluated. :func:`load_spec` returns a normalised spec (every key present, with
defaults) or raises :class:`SpecError` (a ``ValueError``) whose one-line message
names the offending key and value. Format: ``../shared/SPEC.md`` §3.

Sweeps: ``[sweep]`` maps dotted keys (``"optimizer.b1"``) to lists; the grid is
their Cartesian product in the order written. ``[zip]`` maps dotted keys to
lists of one common length that vary together along a single axis (named by the
first key). Every grid point runs ``run.seeds`` seeds; seed s sees the same
random stream at every grid point (common random numbers), so differences
between grid points come from the hyperparameters alone.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import re
import tomllib
import warnings
from dataclasses import dataclass
from typing import Any

from ._optimizers import OPTIMIZERS
from ._problems import NOISES, PROBLEMS
from ._sampling import SCHEMES
from ._schedules import SCHEDULES


class SpecError(ValueError):
    """A bad spec or input: the message is one line naming the key and the value."""


class AssumptionWarning(UserWarning):
    """Hyperparameters outside the theory's assumptions (e.g. β1² ≥ β2)."""


# --- schema -------------------------------------------------------------------
# Each key: (type, default, check) where check(value) -> error text or None.

_INT, _FLOAT, _STR, _BOOL, _FLOATS = "int", "float", "str", "bool", "float|list"


def _rng(lo=None, hi=None, lo_open=False, hi_open=False):
    def check(v):
        if isinstance(v, list):
            bad = [x for x in v if check(x)]
            return check(bad[0]) if bad else None
        if lo is not None and (v < lo or (lo_open and v == lo)):
            return f"must be {'>' if lo_open else '≥'} {lo}"
        if hi is not None and (v > hi or (hi_open and v == hi)):
            return f"must be {'<' if hi_open else '≤'} {hi}"
        return None

    return check


def _one_of(options):
    def check(v):
        return None if v in options else f"must be one of {', '.join(options)}"

    return check


_BETA = _rng(0.0, 1.0, hi_open=True)
FLOW_SOLVERS = ("tsit5", "dopri5", "dopri8", "bosh3", "heun", "midpoint", "ralston")

SCHEMA: dict[str, dict[str, tuple[str, Any, Any]]] = {
    "": {
        "name": (_STR, None, None),
        "seed": (_INT, 0, _rng(0)),
        "description": (_STR, "", None),
    },
    "problem": {
        "kind": (_STR, "quadratic", _one_of(PROBLEMS)),
        "dim": (_INT, None, _rng(1)),
        "curvature": (_FLOATS, 1.0, _rng(0.0, lo_open=True)),
        "noise": (_STR, "gaussian", _one_of(NOISES)),
        "noise_scale": (_FLOAT, 1.0, _rng(0.0)),
        "n": (_INT, None, _rng(2)),
        "a": (_FLOAT, None, _rng(0.0, lo_open=True)),
        "n_points": (_INT, None, _rng(1)),
        "input_dim": (_INT, 1, _rng(1)),
        "width": (_INT, 32, _rng(1)),
        "teacher_width": (_INT, 4, _rng(1)),
        "label_noise": (_FLOAT, 0.0, _rng(0.0)),
        "data_seed": (_INT, 0, _rng(0)),
    },
    "optimizer": {
        "kind": (_STR, "adam", _one_of(OPTIMIZERS)),
        "b1": (_FLOAT, 0.9, _BETA),
        "b2": (_FLOAT, 0.999, _BETA),
        "eps": (_FLOAT, 1e-8, _rng(0.0)),
        "eps_root": (_FLOAT, 0.0, _rng(0.0)),
        "bias_correction": (_BOOL, None, None),
        "initial_accumulator": (_FLOAT, 0.1, _rng(0.0)),
    },
    "schedule": {
        "kind": (_STR, "power", _one_of(SCHEDULES)),
        "c": (_FLOAT, 0.05, _rng(0.0, lo_open=True)),
        "r": (_FLOAT, 0.5, _rng(0.0, 1.0, lo_open=True)),
        "n0": (_FLOAT, 0.0, _rng(0.0)),
    },
    "sampling": {
        "scheme": (_STR, "iid", _one_of(SCHEMES)),
        "batch_size": (_INT, 1, _rng(1)),
    },
    "run": {
        "steps": (_INT, 1000, _rng(1)),
        "seeds": (_INT, 1, _rng(1)),
        "theta0": (_FLOATS, None, None),
        "theta0_std": (_FLOAT, 0.0, _rng(0.0)),
        "dtype": (_STR, "float32", _one_of(("float32", "float64"))),
        "bound": (_FLOAT, 1e12, _rng(0.0, lo_open=True)),
        "chunk": (_INT, None, _rng(1)),
        "block": (_INT, None, _rng(1)),
        "fast_pow": (_BOOL, True, None),
    },
    "record": {
        "snapshots": (_INT, 64, _rng(0)),
    },
    "flow": {
        "horizon": (_FLOAT, 1.0, _rng(0.0, lo_open=True)),
        "windows": (_INT, 12, _rng(1)),
        "first": (_INT, None, _rng(1)),
        "grid": (_INT, 64, _rng(4, 4096)),
        "samples": (_INT, None, _rng(1024)),
        "target_se": (_FLOAT, 2e-4, _rng(0.0, lo_open=True)),
        "batches": (_INT, 32, _rng(8, 4096)),
        "nodes": (_INT, 65, _rng(8, 65536)),
        "solver": (_STR, "tsit5", _one_of(FLOW_SOLVERS)),
        "rtol": (_FLOAT, 1e-7, _rng(0.0, lo_open=True)),
        "atol": (_FLOAT, 1e-9, _rng(0.0, lo_open=True)),
        "max_steps": (_INT, 4096, _rng(1)),
    },
}

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
OPTIONAL_TABLES = ("flow",)
NOT_SWEEPABLE = {"run.seeds", "run.chunk", "run.block"} | {
    f"flow.{k}"
    for k in (
        "horizon",
        "windows",
        "first",
        "grid",
        "samples",
        "target_se",
        "batches",
        "nodes",
        "solver",
        "rtol",
        "atol",
        "max_steps",
    )
}


def _fmt(v) -> str:
    return json.dumps(v) if isinstance(v, str) else repr(v)


def _coerce(key: str, v, typ: str):
    """Check the type of one value (ints are accepted for floats); return it normalised."""
    if typ == _INT:
        if isinstance(v, bool) or not isinstance(v, int):
            raise SpecError(f"{key} = {_fmt(v)}: expected an integer")
        return v
    if typ == _FLOAT:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise SpecError(f"{key} = {_fmt(v)}: expected a number")
        v = float(v)
        if not math.isfinite(v):
            raise SpecError(f"{key} = {_fmt(v)}: expected a finite number")
        return v
    if typ == _FLOATS:
        if isinstance(v, list):
            if not v:
                raise SpecError(f"{key} = []: expected a number or a non-empty list of numbers")
            return [_coerce(key, x, _FLOAT) for x in v]
        return _coerce(key, v, _FLOAT)
    if typ == _STR:
        if not isinstance(v, str):
            raise SpecError(f"{key} = {_fmt(v)}: expected a string")
        return v
    if typ == _BOOL:
        if not isinstance(v, bool):
            raise SpecError(f"{key} = {_fmt(v)}: expected true or false")
        return v
    raise AssertionError(typ)


def _check_value(key: str, v):
    table, _, name = key.rpartition(".")
    typ, _, check = SCHEMA[table][name]
    v = _coerce(key, v, typ)
    if check is not None:
        msg = check(v)
        if msg:
            raise SpecError(f"{key} = {_fmt(v)}: {msg}")
    return v


def read_spec(spec) -> tuple[dict, str | None]:
    """A TOML path (str/PathLike) or a dict → (raw dict, TOML text or None)."""
    if isinstance(spec, dict):
        return copy.deepcopy(spec), None
    if isinstance(spec, str | os.PathLike):
        path = os.fspath(spec)
        if not os.path.isfile(path):
            raise SpecError(f"spec = {_fmt(path)}: no such file")
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
        try:
            return tomllib.loads(text), text
        except tomllib.TOMLDecodeError as e:
            msg = " ".join(str(e).split())
            raise SpecError(f"spec = {_fmt(path)}: invalid TOML: {msg}") from None
    raise SpecError(f"spec = {type(spec).__name__}: expected a path to a TOML file or a dict")


def _known(table: str) -> str:
    return ", ".join(k for k in SCHEMA[table])


def validate(raw: dict) -> dict:
    """Validate a raw spec dict and fill defaults; raises :class:`SpecError`."""
    if not isinstance(raw, dict):
        raise SpecError("spec: expected a table of keys")
    spec: dict[str, Any] = {}
    for k, v in raw.items():
        if k in SCHEMA and k != "":
            if not isinstance(v, dict):
                raise SpecError(f"{k} = {_fmt(v)}: expected a table [{k}]")
            continue
        if k in ("sweep", "zip"):
            if not isinstance(v, dict):
                raise SpecError(f"{k} = {_fmt(v)}: expected a table [{k}]")
            continue
        if k in ("figure", "scale") and isinstance(v, dict):
            continue  # figure specs (adamjax._figures): plot parameters and scale overrides
        if k not in SCHEMA[""]:
            raise SpecError(
                f"{k} = {_fmt(v)}: unknown key (known: {_known('')}, and tables "
                f"{', '.join(t for t in SCHEMA if t)}, sweep, zip)"
            )
        spec[k] = _top(k, v)
    if "name" not in spec:
        raise SpecError("name: missing (a required string naming the output folder)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", spec["name"]):
        raise SpecError(f"name = {_fmt(spec['name'])}: use letters, digits, '_', '-', '.'")
    for k, (_, d, _) in SCHEMA[""].items():
        spec.setdefault(k, d)

    for table in SCHEMA:
        if not table:
            continue
        given = raw.get(table)
        if given is None and table in OPTIONAL_TABLES:
            spec[table] = None
            continue
        given = given or {}
        out = {}
        for k, v in given.items():
            if k not in SCHEMA[table]:
                raise SpecError(f"{table}.{k} = {_fmt(v)}: unknown key (known: {_known(table)})")
            out[k] = _check_value(f"{table}.{k}", v)
        for k, (_, d, _) in SCHEMA[table].items():
            out.setdefault(k, d)
        spec[table] = out

    spec["sweep"] = _validate_axes(raw.get("sweep") or {}, "sweep")
    spec["zip"] = _validate_axes(raw.get("zip") or {}, "zip")
    if spec["zip"]:
        lens = {len(v) for v in spec["zip"].values()}
        if len(lens) > 1:
            k = list(spec["zip"])[0]
            raise SpecError(
                f"zip: lists of different lengths ({sorted(lens)}); {k} has {len(spec['zip'][k])}"
            )
    both = set(spec["sweep"]) & set(spec["zip"])
    if both:
        raise SpecError(f"sweep.{sorted(both)[0]}: also in [zip]")

    # Cross-key checks on every grid point (cheap: the grid is data). The β1² ≥ β2
    # warning is issued once per spec, not once per grid point.
    outside = [point for point in grid_points(spec) if check_point(point, warn=False)]
    if outside:
        opt = outside[0]["optimizer"]
        n = len(list(grid_points(spec))) if spec["sweep"] or spec["zip"] else 1
        where = f" ({len(outside)} of {n} grid points)" if n > 1 else ""
        warnings.warn(
            f"optimizer.b1 = {opt['b1']}, optimizer.b2 = {opt['b2']}: β1² ≥ β2 is outside "
            f"the assumption α < √β of the ODE theory{where} (runs anyway)",
            AssumptionWarning,
            stacklevel=3,
        )
    return spec


def _top(k, v):
    typ, _, check = SCHEMA[""][k]
    v = _coerce(k, v, typ)
    if check is not None and (msg := check(v)):
        raise SpecError(f"{k} = {_fmt(v)}: {msg}")
    return v


def _validate_axes(axes: dict, what: str) -> dict:
    out = {}
    for key, vals in axes.items():
        table, _, name = key.rpartition(".")
        if not table or table not in SCHEMA or name not in SCHEMA[table] or not table:
            raise SpecError(
                f"{what}.{key} = {_fmt(vals)}: not a sweepable key (use a dotted "
                f'key such as "optimizer.b1")'
            )
        if key in NOT_SWEEPABLE:
            raise SpecError(f"{what}.{key} = {_fmt(vals)}: cannot be swept")
        if not isinstance(vals, list) or not vals:
            raise SpecError(f"{what}.{key} = {_fmt(vals)}: expected a non-empty list of values")
        try:
            checked = [_check_value(key, v) for v in vals]
        except SpecError as e:
            raise SpecError(f"{what}.{e}") from None
        if len({json.dumps(v) for v in checked}) != len(checked):
            raise SpecError(f"{what}.{key} = {_fmt(vals)}: values repeat")
        out[key] = checked
    return out


def axes_of(spec: dict) -> list[tuple[str, list]]:
    """Result dims other than ``seed``: one per ``[sweep]`` key, then one for ``[zip]``."""
    axes = [(k, v) for k, v in spec["sweep"].items()]
    if spec["zip"]:
        first = next(iter(spec["zip"]))
        axes.append((first, spec["zip"][first]))
    return axes


def grid_points(spec: dict):
    """Yield the fully resolved spec of every grid point, in C order of :func:`axes_of`."""
    sweep = list(spec["sweep"].items())
    zlen = len(next(iter(spec["zip"].values()))) if spec["zip"] else None
    ranges = [range(len(v)) for _, v in sweep] + ([range(zlen)] if zlen else [])
    for idx in itertools.product(*ranges):
        point = copy.deepcopy({k: v for k, v in spec.items() if k not in ("sweep", "zip")})
        for (key, vals), i in zip(sweep, idx, strict=False):
            _set(point, key, vals[i])
        if zlen:
            for key, vals in spec["zip"].items():
                _set(point, key, vals[idx[-1]])
        yield point


def _set(point: dict, key: str, value):
    table, _, name = key.rpartition(".")
    point[table][name] = value


_PROBLEM_DEFAULTS = {
    "quadratic": {"dim": 1},
    "zhang": {"n": 10},
    "reddi": {"n": 3},
    "regression": {"n_points": 16},
    "linear_regression": {"n_points": 32, "dim": 8},
    "digits": {"n_points": 1797},
}


def resolve_problem(p: dict) -> dict:
    """The problem table with its kind-specific defaults filled in (None → value)."""
    out = dict(p)
    for k, v in _PROBLEM_DEFAULTS[p["kind"]].items():
        if out.get(k) is None:
            out[k] = v
    if p["kind"] == "zhang" and out.get("a") is None:
        out["a"] = 1.0 / (out["n"] - 1) ** 2
    return out


def problem_dim(p: dict) -> int:
    """Dimension of θ for a problem table (without building the problem)."""
    p = resolve_problem(p)
    kind = p["kind"]
    if kind in ("zhang", "reddi"):
        return 1
    if kind == "regression":
        w, i = p["width"], p["input_dim"]
        return w * i + 2 * w + 1
    if kind == "digits":
        return 64 * p["width"] + p["width"] + 10 * p["width"] + 10
    return int(p["dim"])


def check_point(point: dict, *, warn: bool = True) -> bool:
    """Cross-key checks of one resolved grid point; raises :class:`SpecError`.

    Returns whether the point is outside the theory's assumption (β1² ≥ β2 for
    Adam/AMSGrad), warning about it when ``warn``.
    """
    prob, opt, samp, run = point["problem"], point["optimizer"], point["sampling"], point["run"]
    kind = prob["kind"]
    allowed = {
        "quadratic": {"kind", "dim", "curvature", "noise", "noise_scale"},
        "zhang": {"kind", "n", "a"},
        "reddi": {"kind", "n"},
        "regression": {"kind", "n_points", "input_dim", "width", "teacher_width", "data_seed"},
        "linear_regression": {"kind", "n_points", "dim", "label_noise", "data_seed"},
        "digits": {"kind", "n_points", "width", "data_seed"},
    }[kind]
    defaults = {k: d for k, (_, d, _) in SCHEMA["problem"].items()}
    for k, v in prob.items():
        if k not in allowed and v != defaults[k]:
            raise SpecError(
                f"problem.{k} = {_fmt(v)}: not a parameter of problem "
                f"{kind!r} (its parameters: {', '.join(sorted(allowed - {'kind'}))})"
            )
    d = problem_dim(prob)
    if kind == "quadratic" and isinstance(prob["curvature"], list) and len(prob["curvature"]) != d:
        raise SpecError(
            f"problem.curvature = {_fmt(prob['curvature'])}: expected {d} values "
            f"(problem.dim = {d})"
        )
    if kind in ("zhang",) and prob["n"] is not None and prob["n"] < 3:
        raise SpecError(f"problem.n = {prob['n']}: must be ≥ 3")
    th = run["theta0"]
    if isinstance(th, list) and len(th) != d:
        raise SpecError(
            f"run.theta0 = {_fmt(th)}: expected a number or {d} values (the problem's dimension)"
        )
    if kind != "regression" and th is None:
        pass  # default θ0 = 1 (set at build time)
    stream = kind == "quadratic"
    if stream and samp["scheme"] != "iid":
        raise SpecError(
            f"sampling.scheme = {_fmt(samp['scheme'])}: problem {kind!r} draws "
            f'fresh noise every step, so only "iid" applies'
        )
    outside = opt["kind"] in ("adam", "amsgrad") and opt["b1"] ** 2 >= opt["b2"]
    if outside and warn:
        warnings.warn(
            f"optimizer.b1 = {opt['b1']}, optimizer.b2 = {opt['b2']}: β1² ≥ β2 is outside "
            "the assumption α < √β of the ODE theory (runs anyway)",
            AssumptionWarning,
            stacklevel=3,
        )
    return outside


def spec_toml(raw: dict) -> str:
    """Render a spec dict as TOML text (for the ``spec`` attribute of results)."""
    try:
        import tomli_w
    except ImportError:  # pragma: no cover - minimal installs (e.g. accelerator images)
        return json.dumps(raw, indent=1, sort_keys=True)

    def strip(d):
        return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items() if v is not None}

    return tomli_w.dumps(strip(raw))


def spec_hash(spec: dict) -> str:
    """SHA-256 of the normalised spec (what the results depend on)."""
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class LoadedSpec:
    spec: dict  # normalised
    text: str  # TOML text
    hash: str


def load_spec(spec) -> LoadedSpec:
    """Read and validate a spec (path or dict)."""
    raw, text = read_spec(spec)
    norm = validate(raw)
    return LoadedSpec(
        spec=norm, text=text if text is not None else spec_toml(raw), hash=spec_hash(norm)
    )
