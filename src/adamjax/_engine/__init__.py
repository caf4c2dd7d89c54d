"""The engine layer: many independent Adam-family runs under one compilation.

Modules (imports point only down this list's dependencies, never up to
``adamjax._theory`` or ``adamjax._launch``):

* ``errors``     — :class:`SpecError` and :class:`AssumptionWarning`, shared by every layer;
* ``rng``        — threefry with a fused hash (bit-identical to ``jax.random``);
* ``optimizers`` — the Adam family as optax-style ``init``/``update`` pairs;
* ``schedules``  — step sizes γ_n (and their defaults);
* ``sampling``   — per-run keys and the iid / reshuffle / cyclic schemes;
* ``problems``   — the problem classes, the built-ins and their registry;
* ``simulate``   — one run → ``vmap`` → chunks; the :class:`Observer` hook;
* ``shard``      — the per-chunk runner over local devices (``jax.shard_map``);
* ``ready``      — waiting for device results so that Ctrl-C / SIGTERM get through.
"""
