"""Experiment specs: loading, validation, defaults, and sweep expansion.

A spec is data (a TOML file or the same content as a dict) — nothing in it is
evaluated. :func:`load_spec` returns a normalised spec (every key present, with
its default; the keys and defaults are those of ``schema``) or raises
:class:`SpecError` (a ``ValueError``) whose one-line message names the offending
key and value. The format is documented in ``docs/spec.md``.

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
import os
import re
import tomllib
import warnings
from dataclasses import dataclass
from typing import Any

from .._engine.errors import AssumptionWarning, SpecError, beta_warning_text
from .._engine.params import ANY, Param, closest, did_you_mean, fmt, plain
from .._engine.problems.registry import BUILTINS, problem_dim, resolve
from .problems import OBJECT_KIND, is_user_kind
from .schema import EXTRA_TABLES, NOT_SWEEPABLE, OPTIONAL_TABLES, SCHEMA, problem_params


def _param(key: str, kind: str):
    """The :class:`Param` of a dotted key (``[problem]`` keys: of problem ``kind``; any
    keyword argument of the user's callable)."""
    table, _, name = key.rpartition(".")
    if table == "problem" and name != "kind":
        if kind == OBJECT_KIND:
            return None  # the problem is an object: nothing of [problem] applies
        if is_user_kind(kind):
            return Param(ANY)
        return BUILTINS[kind].params.get(name)
    return SCHEMA.get(table, {}).get(name) if table else None


def _top_level_hint(key: str) -> str:
    """For an unknown top-level key: the table key of that exact name (``steps`` →
    ``run.steps``), else the closest top-level key or table name."""
    exact = [f"{t}.{key}" for t in SCHEMA if t and key in SCHEMA[t]]
    if exact:
        return f"; did you mean {fmt(exact[0])} (in [{exact[0].partition('.')[0]}])?"
    return did_you_mean(key, [*SCHEMA[""], *(t for t in SCHEMA if t), "sweep", "zip"])


def _sweep_hint(key: str, kind: str) -> str:
    """For a sweep key no table has: the same name in the table that has it (``b2`` →
    ``optimizer.b2``), else the closest name within its own table (any key: one that
    cannot be swept is then refused as such)."""
    table, _, name = key.rpartition(".")
    tables = {t: list(SCHEMA[t]) for t in SCHEMA if t and t != "problem"}
    tables["problem"] = list(BUILTINS[kind].params) if kind in BUILTINS else []
    if table not in tables:
        exact = [f"{t}.{name}" for t, keys in tables.items() if name in keys]
        return f"; did you mean {fmt(exact[0])}?" if exact else did_you_mean(key, tables)
    cand = closest(name, tables[table])
    if cand is None:
        return ""
    return f"; did you mean {fmt(cand if '.' in cand else f'{table}.{cand}')}?"


def read_spec(spec) -> tuple[dict, str | None]:
    """A TOML path (str/PathLike) or a dict → (raw dict, TOML text or None)."""
    if isinstance(spec, dict):
        return plain(copy.deepcopy(spec)), None
    if isinstance(spec, str | os.PathLike):
        path = os.fspath(spec)
        if os.path.isdir(path):
            raise SpecError(f"spec = {fmt(path)}: is a folder, not a TOML file")
        if not os.path.isfile(path):
            raise SpecError(f"spec = {fmt(path)}: no such file")
        with open(path, "rb") as f:
            data = f.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            # TOML is UTF-8; replacing the bytes would store a spec text that is not
            # the file the user wrote.
            line = data[: e.start].count(b"\n") + 1
            raise SpecError(
                f"spec = {fmt(path)}: not UTF-8 text (byte 0x{data[e.start]:02x} on line "
                f"{line}); save the file as UTF-8"
            ) from None
        # Editors on Windows may save a byte-order mark; TOML does not allow one.
        text = text.removeprefix("\ufeff")
        try:
            return tomllib.loads(text), text
        except tomllib.TOMLDecodeError as e:
            msg = " ".join(str(e).split())
            raise SpecError(f"spec = {fmt(path)}: invalid TOML: {msg}") from None
    raise SpecError(f"spec = {type(spec).__name__}: expected a path to a TOML file or a dict")


def _known(table: str) -> str:
    return ", ".join(k for k in SCHEMA[table])


def validate(raw: dict, *, problem_object: bool = False) -> dict:
    """Validate a raw spec dict and fill defaults; raises :class:`SpecError`.
    ``problem_object``: the problem is an object given beside the spec (its
    ``[problem]`` table, if any, is not used)."""
    if not isinstance(raw, dict):
        raise SpecError("spec: expected a table of keys")
    spec: dict[str, Any] = {}
    for k, v in raw.items():
        if k in SCHEMA and k != "" or k in ("sweep", "zip"):
            if not isinstance(v, dict):
                raise SpecError(f"{k} = {fmt(v)}: expected a table [{k}]")
            continue
        if k in EXTRA_TABLES and isinstance(v, dict):
            continue
        if k not in SCHEMA[""]:
            raise SpecError(
                f"{k} = {fmt(v)}: unknown key (known: {_known('')}, and tables "
                f"{', '.join(t for t in SCHEMA if t)}, sweep, zip)" + _top_level_hint(k)
            )
        spec[k] = SCHEMA[""][k].parse(k, v)
    if "name" not in spec:
        raise SpecError("name: missing (a required string naming the output folder)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", spec["name"]):
        raise SpecError(f"name = {fmt(spec['name'])}: use letters, digits, '_', '-', '.'")
    for k, p in SCHEMA[""].items():
        spec.setdefault(k, p.default)

    for table in SCHEMA:
        if not table:
            continue
        given = raw.get(table)
        if given is None and table in OPTIONAL_TABLES:
            spec[table] = None
            continue
        given = given or {}
        if table == "problem" and problem_object:
            spec[table] = {"kind": OBJECT_KIND}
            continue
        if table == "problem":
            kind = SCHEMA["problem"]["kind"].parse("problem.kind", given.get("kind", "quadratic"))
            if is_user_kind(kind):  # the user's keyword arguments, as written
                spec[table] = {**plain(given), "kind": kind}
            else:
                spec[table] = resolve({**given, "kind": kind})
            continue
        out = {}
        for k, v in given.items():
            if k not in SCHEMA[table]:
                raise SpecError(
                    f"{table}.{k} = {fmt(v)}: unknown key (known: {_known(table)})"
                    + did_you_mean(k, SCHEMA[table])
                )
            out[k] = SCHEMA[table][k].parse(f"{table}.{k}", v)
        for k, p in SCHEMA[table].items():
            out.setdefault(k, p.default)
        spec[table] = out

    kind = spec["problem"]["kind"]
    spec["sweep"] = _validate_axes(_dotted(raw.get("sweep") or {}, "sweep"), "sweep", kind)
    spec["zip"] = _validate_axes(_dotted(raw.get("zip") or {}, "zip"), "zip", kind)
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

    # Cross-key checks on every grid point (cheap: the grid is data).
    for point in grid_points(spec):
        check_point(point, warn=False)
    return spec


def beta_notes(spec: dict) -> tuple[str, ...]:
    """The β1² ≥ β2 warning of a validated spec, once for the whole grid (or none)."""
    points = list(grid_points(spec))
    outside = [p for p in points if _outside_theory(p["optimizer"])]
    if not outside:
        return ()
    opt = outside[0]["optimizer"]
    return (beta_warning_text(opt["b1"], opt["b2"], len(outside), len(points)),)


def issue_notes(notes) -> None:
    """Warn (:class:`AssumptionWarning`) with the texts of :func:`beta_notes`."""
    for text in notes:
        warnings.warn(text, AssumptionWarning, stacklevel=3)


def _dotted(axes: dict, what: str, prefix: str = "") -> dict:
    """``[sweep]``/``[zip]`` with nested tables as dotted keys: in TOML an unquoted
    ``optimizer.b1 = [...]`` is the table ``{"optimizer": {"b1": [...]}}``, the same
    axis as the quoted ``"optimizer.b1"`` (and the same spec hash)."""
    if not isinstance(axes, dict):
        return axes
    out = {}
    for key, vals in axes.items():
        name = f"{prefix}{key}"
        flat = _dotted(vals, what, name + ".") if isinstance(vals, dict) else {name: vals}
        for k, v in flat.items():
            if k in out:
                raise SpecError(f"{what}.{k}: given twice (quoted and unquoted)")
            out[k] = v
    return out


def _validate_axes(axes: dict, what: str, kind: str) -> dict:
    out = {}
    for key, vals in axes.items():
        param = _param(key, kind)
        if param is None:
            table = key.rpartition(".")[0]
            if table == "problem" and kind == OBJECT_KIND:
                hint = "the problem is an object given to adamjax.run; sweep its own arguments"
            elif table == "problem":
                hint = (
                    f"not a parameter of problem {kind!r} (its parameters: "
                    f"{', '.join(sorted(problem_params([kind])))})"
                )
            else:
                hint = 'not a sweepable key (use a dotted key such as "optimizer.b1")'
                hint += _sweep_hint(key, kind)

            raise SpecError(f"{what}.{key} = {fmt(vals)}: {hint}")
        if key in NOT_SWEEPABLE:
            raise SpecError(f"{what}.{key} = {fmt(vals)}: cannot be swept")
        if not isinstance(vals, list) or not vals:
            raise SpecError(f"{what}.{key} = {fmt(vals)}: expected a non-empty list of values")
        try:
            checked = [param.parse(key, v) for v in vals]
        except SpecError as e:
            raise SpecError(f"{what}.{e}") from None
        if len({json.dumps(v) for v in checked}) != len(checked):
            raise SpecError(f"{what}.{key} = {fmt(vals)}: values repeat")
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
    """Yield the fully resolved spec of every grid point, in C order of :func:`axes_of`.

    Each point has its own tables (a swept key is set in them); the values inside are
    shared with ``spec`` and never changed by adamjax (a user's problem gets a copy of
    its table); a deep copy per point took 0.6 s for a 32 × 32 sweep.
    """
    sweep = list(spec["sweep"].items())
    zlen = len(next(iter(spec["zip"].values()))) if spec["zip"] else None
    ranges = [range(len(v)) for _, v in sweep] + ([range(zlen)] if zlen else [])
    for idx in itertools.product(*ranges):
        point = {
            k: dict(v) if isinstance(v, dict) else v
            for k, v in spec.items()
            if k not in ("sweep", "zip")
        }
        for (key, vals), i in zip(sweep, idx, strict=False):
            _set(point, key, vals[i])
        if zlen:
            for key, vals in spec["zip"].items():
                _set(point, key, vals[idx[-1]])
        yield point


def _set(point: dict, key: str, value):
    table, _, name = key.rpartition(".")
    point[table][name] = value


def check_point(point: dict, *, warn: bool = True) -> bool:
    """Cross-key checks of one resolved grid point; raises :class:`SpecError`.

    Returns whether the point is outside the theory's assumption (β1² ≥ β2 for
    Adam/AMSGrad), warning about it when ``warn``.
    """
    prob, opt, samp, run = point["problem"], point["optimizer"], point["sampling"], point["run"]
    if not is_user_kind(prob["kind"]):  # a user's problem is checked when it is built
        prob = point["problem"] = resolve(prob)  # the problem's own cross-key checks
        check_theta0(run["theta0"], problem_dim(prob))
    if not is_user_kind(prob["kind"]) and BUILTINS[prob["kind"]].stream and samp["scheme"] != "iid":
        raise SpecError(
            f"sampling.scheme = {fmt(samp['scheme'])}: problem {prob['kind']!r} draws "
            f'fresh noise every step, so only "iid" applies'
        )
    outside = _outside_theory(opt)
    if outside and warn:
        warnings.warn(beta_warning_text(opt["b1"], opt["b2"]), AssumptionWarning, stacklevel=3)
    return outside


def _outside_theory(opt: dict) -> bool:
    """β1² ≥ β2 for Adam or AMSGrad: outside the ODE theory's assumption α < √β."""
    return opt["kind"] in ("adam", "amsgrad") and opt["b1"] ** 2 >= opt["b2"]


def check_theta0(th, d: int) -> None:
    """``run.theta0`` is a number or ``d`` numbers."""
    if isinstance(th, list) and len(th) != d:
        raise SpecError(
            f"run.theta0 = {fmt(th)}: expected a number or {d} values (the problem's dimension)"
        )


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
    """SHA-256 of the normalised spec (what the results depend on), axis order included."""
    # ``sort_keys`` loses the order of the [sweep] and [zip] keys, which orders the runs:
    # a spec whose axes are not in sorted order adds it (sorted ones keep their hash).
    order = {t: list(spec.get(t) or {}) for t in ("sweep", "zip")}
    if any(keys != sorted(keys) for keys in order.values()):
        spec = {**spec, "axis_order": order}
    blob = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class LoadedSpec:
    spec: dict  # normalised
    text: str  # TOML text
    hash: str
    path: str | None = None  # the spec file, if any (user problem modules live beside it)
    # The hash of the spec alone: ``hash`` until ``make_plan`` adds the digest of a user
    # problem to ``hash`` (known once built); a store keeps both, so that a re-run into an
    # unfinished folder is refused before the problem is built (``adamjax.run``).
    text_hash: str = ""
    # Warnings not yet issued (``load_spec(..., warn=False)``): ``make_plan`` issues them
    # once the problem is built, so that an error in it is the only line a user reads.
    deferred: tuple[str, ...] = ()


def load_spec(
    spec,
    *,
    scale: str | None = None,
    overrides=(),
    problem_object: bool = False,
    warn: bool = True,
) -> LoadedSpec:
    """Read and validate a spec.

    Args:
        spec: a path to a TOML file, or the same content as a dict.
        scale: apply the spec's ``[scale.NAME]`` table of dotted overrides
            (``"run.steps" = 3000``, ``"sweep.optimizer.b1" = [0.0, 0.9]``).
        overrides: ``"KEY=VALUE"`` strings (the CLI's ``--set``) or ``(key, value)``
            pairs applied after the scale; a VALUE is read as TOML (``3000``,
            ``[0.9, 0.99]``, ``"iid"``), and as a plain string if it is not TOML.
        problem_object: the problem is an object given beside the spec
            (``adamjax.run(spec, problem=…)``); ``[problem]`` is not used.
        warn: issue the β1² ≥ β2 warning of the grid now; with False it is kept in
            ``deferred`` (:func:`~adamjax.make_plan` issues it once the problem stands).

    Returns:
        A :class:`LoadedSpec`: the normalised spec, its TOML text (the file's text, or
        the effective spec rendered as TOML when something was overridden) and hash.
    """
    raw, text = read_spec(spec)
    if scale is not None:
        scales = raw.get("scale") or {}
        if not isinstance(scales.get(scale), dict):
            have = ", ".join(sorted(k for k, v in scales.items() if isinstance(v, dict)))
            raise SpecError(
                f"scale = {fmt(scale)}: the spec has no [scale.{scale}] table"
                + (f" (it has: {have})" if have else "")
            )
        for key, value in scales[scale].items():
            set_dotted(raw, key, copy.deepcopy(value))
    for item in overrides:
        key, value = _parse_override(item) if isinstance(item, str) else item
        set_dotted(raw, key, value)
    if scale is not None or overrides:
        text = None
    norm = validate(raw, problem_object=problem_object)
    path = os.fspath(spec) if isinstance(spec, str | os.PathLike) else None
    notes = beta_notes(norm)
    if warn:
        issue_notes(notes)
    digest = spec_hash(norm)
    return LoadedSpec(
        spec=norm,
        text=text if text is not None else spec_toml(raw),
        hash=digest,
        text_hash=digest,
        path=path,
        deferred=() if warn else notes,
    )


def _parse_override(item: str) -> tuple[str, Any]:
    key, eq, value = item.partition("=")
    key = key.strip()
    if not eq or not key:
        raise SpecError(f"--set = {fmt(item)}: expected KEY=VALUE, e.g. run.steps=3000")
    try:
        return key, tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value.strip()


def set_dotted(raw: dict, key: str, value) -> None:
    """Set a dotted key in a raw spec: ``"run.steps"``, ``"name"``; in ``sweep``, ``zip``,
    ``scale`` and ``figure`` the rest of the key is one key (``"sweep.optimizer.b1"``)."""
    table, sep, rest = key.partition(".")
    if not sep:
        raw[key] = value
        return
    sub = raw.setdefault(table, {})
    if not isinstance(sub, dict):
        raise SpecError(f"{table} = {fmt(sub)}: expected a table [{table}]")
    if table in ("sweep", "zip", *EXTRA_TABLES) or "." not in rest:
        sub[rest] = value
    else:
        set_dotted(sub, rest, value)
