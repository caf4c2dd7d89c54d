"""The launcher's entry points: :func:`run` (spec → results) and :func:`vector_field`
of a spec's grid point."""

from __future__ import annotations

from pathlib import Path

from .._engine.problems.base import Problem
from .._theory import vector_field as _vf
from . import distributed as dist
from .checkpoint import PrepareFolder
from .dataset import adamjax_version, preload, to_dataset
from .execute import execute
from .plan import make_plan, point_problem
from .problems import is_user_kind
from .progress import Progress
from .recorders import PASS_2
from .spec import grid_points, load_spec
from .store import (
    STORE,
    existing_text_hash,
    finished_here,
    refuse_links,
    refuse_other_spec,
    refuse_unfinished,
    remove_prepared,
)
from .sweep import run_to_store, say_finished


def run(
    spec,
    out=None,
    *,
    progress: bool | None = None,
    chunk: int | None = None,
    resume: bool = False,
    force: bool = False,
    budget: float | None = None,
    scale: str | None = None,
    overrides=(),
    problem: Problem | None = None,
):
    """Run an experiment spec (TOML path or dict) and return its results.

    Returns an ``xarray.Dataset`` with the layout of ``docs/results.md``: one dim per
    sweep axis (named by its dotted key), ``seed``, ``snapshot``, ``dim`` (and
    ``window`` with ``[flow]``); variables ``theta_final``, ``loss_final``,
    ``grad_norm_final``, ``t_final``, ``diverged``, ``diverged_step``, ``theta``,
    ``loss``, ``outcome`` (converged / diverging / undecided), ``gap_final`` where
    the minimiser is known; coordinates ``snapshot_step``, ``param`` and the sweep
    values. Bad input raises ``ValueError`` (:class:`SpecError`) naming the key
    and the value.

    Args:
        spec: a path to a TOML spec, or the same content as a dict.
        out: a folder: the results are also stored under ``out/<name>/results.zarr``
            (unit by unit, see ``docs/results.md``) and the returned dataset reads
            from there.
        progress: None (a bar on a terminal), True or False.
        chunk: runs per chunk; overrides ``run.chunk`` and the automatic size from
            ``budget`` (bytes per device; default a quarter of the device memory,
            1 GiB on CPU shared by its devices).
        resume: with ``out``, skip the units an interrupted run of the same spec
            completed. (With ``[flow]``, pass 1 and the finished batches of flows kept in
            ``out/<name>/prepare/`` are read back unless ``force``: for a built-in problem
            in any case, for a user's problem only with ``resume``.)
        force: with ``out``, overwrite a folder holding another spec's results or an
            unfinished run of this one (without ``resume`` or ``force`` such a run is
            refused, so that its finished units are not lost), or run a spec again whose
            finished results the folder holds (without ``force`` they are returned).
        scale: apply the spec's ``[scale.NAME]`` overrides (e.g. ``"smoke"``).
        overrides: ``"KEY=VALUE"`` strings or (key, value) pairs applied last, as the
            CLI's ``--set`` (see :func:`~adamjax.load_spec`).
        problem: a problem object (e.g. :func:`~adamjax.finite_sum_problem`) that
            replaces the spec's ``[problem]``.
    """
    mode = ("bar" if _isatty() else "off") if progress is None else progress
    # The spec's warning (β1² ≥ β2) waits until the plan stands (``make_plan`` issues
    # it): an error in the spec or the user's problem is then the only line one reads.
    loaded = load_spec(
        spec, scale=scale, overrides=overrides, problem_object=problem is not None, warn=False
    )
    if out is not None:  # before planning (with [flow]: minutes), and before its warnings
        root = Path(out) / loaded.spec["name"]
        old = existing_text_hash(root)
        kinds = {p["problem"]["kind"] for p in grid_points(loaded.spec)}
        user = problem is not None or any(map(is_user_kind, kinds))
        changed = " (--force as well if your problem changed since)" if user else ""
        refuse_unfinished(
            root, loaded.text_hash, resume=resume, force=force, old=old, changed=changed
        )
        # Finished already by this adamjax: nothing to plan or run. (Built-in problems
        # only; several processes decide together, under the folder lock, in ``sweep``.)
        if (
            not (resume or force or user)
            and dist.process_count() == 1
            and finished_here(root, loaded.hash, adamjax_version())
        ):
            say_finished(loaded.spec["name"], root / STORE)
            remove_prepared(root)  # left by a run stopped after its results were complete
            import xarray as xr

            return xr.open_zarr(str(root / STORE))
        if not user and dist.process_count() == 1:
            # Another spec's results: refused now, not after [flow]'s preparation (a
            # user's problem enters the hash only once built; ``sweep`` checks it then).
            refuse_other_spec(root, loaded.hash, loaded.text_hash, force=force)
    # With an output folder the preparation's finished parts ([flow]: pass 1 and each
    # batch of flows) are kept there until the results are complete (``checkpoint``).
    prepare = None
    if out is not None:
        refuse_links(root)  # before [flow]'s parts are read or written there
        single = dist.process_count() == 1
        prepare = PrepareFolder(
            root, adamjax_version(), resume, force, writer=dist.process_index() == 0, refuse=single
        )
    plan = make_plan(
        loaded,
        chunk=chunk,
        budget=budget,
        problem=problem,
        progress=progress if out is not None else mode,
        prepare=prepare,
    )
    preload(store=out is not None)
    if out is not None:
        explicit = chunk is not None or plan.spec["run"]["chunk"] is not None
        return run_to_store(
            plan, out, progress=progress, resume=resume, force=force, explicit_chunk=explicit
        )
    desc = plan.spec["name"]
    if plan.recorders:  # [flow]: this is the APT's second pass over the runs
        desc += f": {PASS_2}"
    bar = Progress(plan.n_runs * plan.steps, 0, desc, mode)
    try:
        flat = execute(plan, progress=bar.update)
    finally:
        bar.close()
    ds = to_dataset(plan, flat)
    for rec in plan.recorders:
        ds = rec.summarize(ds)
    return ds


def _isatty() -> bool:
    import sys

    return sys.stderr.isatty()


def vector_field(spec_or_problem, *, point: int = 0, **kwargs) -> _vf.VectorField:
    """The Adam vector field f of a :class:`Problem`, or of a spec's grid point ``point``.

    With a spec, the problem (in the spec's ``run.dtype``, cast to the field's dtype),
    the optimiser kind, (β1, β2, ε, ε_root) and the batch size come from the grid
    point unless given in ``kwargs``. Every other argument is that of the theory
    layer's estimator; see the module docstring of ``_theory.vector_field``:

    Args:
        b1, b2, eps, eps_root, optimizer, batch_size: the hyperparameters.
        samples, target_se, at, max_samples, batches: the accuracy (chain length M, or a
            target SE reached from a pilot at the points ``at``).
        control_variate, method, fast, scan, seed, dtype: see ``_theory.vector_field``.

    Returns:
        A :class:`VectorField`: ``vf(theta) -> (f, se)`` for θ of shape (…, dim).

    Reference: Dereich, Jentzen & Kassing (2025), Def. 1.3 and eq. (6).
    """
    # None means "the default" for every argument (as in the estimator's signature).
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if isinstance(spec_or_problem, Problem):
        return _vf.vector_field(spec_or_problem, **kwargs)
    problem, p = point_problem(spec_or_problem, point)
    o = p["optimizer"]
    given = {
        "optimizer": o["kind"],
        "b1": o["b1"],
        "b2": o["b2"],
        "eps": o["eps"],
        "eps_root": o["eps_root"],
        "batch_size": p["sampling"]["batch_size"],
        "scheme": p["sampling"]["scheme"],
    }
    return _vf.vector_field(problem, **{**given, **kwargs})
