"""Waiting for device results in a way that Ctrl-C and SIGTERM can interrupt.

Python runs signal handlers only between its own instructions. Reading a JAX array
that is still being computed (``np.asarray``) blocks inside XLA until the computation
ends, and a program with host callbacks (diffrax's and equinox's checks in a flow
solve) even executes synchronously, inside the call. A batch of stiff flows or a long
chunk would then ignore Ctrl-C for minutes. :func:`ready` waits for an asynchronously
dispatched result by polling; :func:`call_interruptibly` runs a synchronous call in a
worker thread and waits for it the same way — where ``ADAMJAX_INTERRUPTIBLE=1`` (the
``adamjax`` command sets it). It is opt-in because the computation runs on after an
interrupt (the command line leaves without waiting for it; a notebook would keep it
busy) and because JAX's thread-local contexts other than x64 (``jax.default_device``,
``jax.disable_jit``, ``jax.debug_nans`` …) do not follow a call into another thread.
"""

from __future__ import annotations

import os
import threading
import time

import jax

from .devices import OFF_VALUES

ENV = "ADAMJAX_INTERRUPTIBLE"

_MAX_SLEEP = 0.05  # a long computation is checked 20 times a second


def _wait(done) -> None:
    """Sleep until ``done()`` (from 0.1 ms, doubling: a short wait costs nothing
    measurable); signal handlers run between the sleeps."""
    pause = 1e-4
    while not done():
        time.sleep(pause)
        pause = min(2 * pause, _MAX_SLEEP)


def ready(tree):
    """``tree`` once every JAX array in it is computed."""
    for x in jax.tree_util.tree_leaves(tree):
        if isinstance(x, jax.Array):
            _wait(x.is_ready)
    return tree


def call_interruptibly(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``; with ``ADAMJAX_INTERRUPTIBLE=1`` run in a worker thread
    (its result or its exception) waited for in a loop that signal handlers interrupt."""
    if os.environ.get(ENV, "").strip().lower() in ("", *OFF_VALUES):
        return ready(fn(*args, **kwargs))
    # JAX's x64 context is thread-local: the worker traces under the caller's setting.
    x64 = bool(jax.config.jax_enable_x64)
    box: dict = {}
    done = threading.Event()

    def work():
        try:
            with jax.enable_x64(x64):
                box["out"] = ready(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - handed to the caller as is
            box["err"] = e
        finally:
            done.set()

    # A daemon thread: an interrupted caller's process can still exit.
    threading.Thread(target=work, name="adamjax-xla-call", daemon=True).start()
    _wait(done.is_set)
    if "err" in box:
        raise box["err"]
    return box["out"]
