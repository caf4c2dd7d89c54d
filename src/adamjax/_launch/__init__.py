"""The launch layer: from a declarative spec to stored, labelled results.

May import the engine and the theory layer; neither imports it. Modules, in the
order of a spec's path through them:

* ``schema``      — every spec key with its type, default (read from the code it
  configures) and range;
* ``spec``        — loading, validation, sweep expansion, the spec hash;
* ``problems``    — the problem of a grid point: built-in, user ``module:callable``, object;
* ``recorders``   — per-run outputs beyond the engine's (the ``[flow]`` APT error);
* ``plan``        — groups of runs that share one compiled program, recorders prepared;
* ``checkpoint``  — the preparation's finished parts kept on disk ([flow]: pass 1, flows);
* ``execute``     — running groups into flat arrays; ``outcome``: converged / diverging;
* ``dataset``     — flat arrays → the labelled ``xarray.Dataset`` with provenance;
* ``progress``    — the one progress display;
* ``store``       — the on-disk layout, folder lock and durable writes (storage only);
* ``sweep``       — units → processes → store (resume, multi-process);
* ``distributed`` — ``jax.distributed`` start-up and coordination;
* ``run``         — :func:`adamjax.run` and the spec form of :func:`adamjax.vector_field`;
* ``cache``       — JAX's persistent compilation cache (on by default);
* ``summary``, ``plot`` — reading any sweep; ``reference`` — docs/spec.md, docs/results.md.
"""
