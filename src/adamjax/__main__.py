"""The ``adamjax`` command (``python -m adamjax``): :func:`adamjax.cli.main`, then exit.

The exit is ``os._exit``, without the interpreter's teardown: it took ~0.4 s of every
call (the XLA client, ~1 500 modules), and after Ctrl-C or SIGTERM it would first wait
for an XLA computation still running (a batch of stiff flows: minutes). By then the
results are stored (every write is synchronous and fsynced) and the output is flushed
here; a multi-process run still shuts ``jax.distributed`` down (its peers wait for it).
"""

import contextlib
import logging
import os
import sys

import jax

from .cli import EXIT_INTERRUPTED, EXIT_TERMINATED, main


def console() -> None:
    """Run :func:`~adamjax.cli.main` and leave with its exit code."""
    # Long XLA calls (flow solves) wait in a worker thread that Ctrl-C can leave.
    os.environ.setdefault("ADAMJAX_INTERRUPTIBLE", "1")
    try:
        code = main()
    except SystemExit as e:  # argparse's --help; a message is printed as Python would
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
        code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    if code not in (EXIT_INTERRUPTED, EXIT_TERMINATED) and jax.distributed.is_initialized():
        try:
            jax.distributed.shutdown()
        except Exception as e:  # a lost peer: the run's own outcome is already reported
            print(f"adamjax: warning: jax.distributed.shutdown: {e}", file=sys.stderr)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # a closed pipe must not keep us waiting
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    console()
