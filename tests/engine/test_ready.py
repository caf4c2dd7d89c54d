"""Waiting for results so that Ctrl-C / SIGTERM get through (``_engine/ready.py``)."""

import signal
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adamjax._engine.ready import ENV, call_interruptibly, ready


@pytest.fixture
def interruptible(monkeypatch):
    monkeypatch.setenv(ENV, "1")  # what the ``adamjax`` command sets


class _Alarm(Exception):
    pass


def test_ready_returns_the_tree_once_computed():
    x = jax.jit(lambda a: jnp.cumsum(a) * 2)(jnp.arange(1000.0))
    tree = {"x": x, "n": 3, "s": "label"}
    out = ready(tree)
    assert out is tree and out["x"].is_ready()
    np.testing.assert_allclose(np.asarray(out["x"])[-1], 2 * 999 * 1000 / 2)


@pytest.mark.parametrize("on", ["0", "1"])
def test_call_interruptibly_returns_the_value_or_raises_the_error(monkeypatch, on):
    monkeypatch.setenv(ENV, on)
    assert call_interruptibly(lambda a, b=0: a + b, 2, b=3) == 5
    with pytest.raises(ZeroDivisionError):
        call_interruptibly(lambda: 1 / 0)
    # Off (the library default), the call stays in the caller's thread and contexts.
    here = call_interruptibly(threading.current_thread) is threading.current_thread()
    assert here == (on == "0")


@pytest.mark.filterwarnings("ignore:Explicitly requested dtype")
def test_call_interruptibly_keeps_the_callers_x64_context(interruptible):
    def dtype():
        return jnp.zeros(1, jnp.float64).dtype

    with jax.enable_x64(True):
        assert call_interruptibly(dtype) == jnp.float64
    with jax.enable_x64(False):
        assert call_interruptibly(dtype) == jnp.float32


def test_a_signal_interrupts_the_wait_at_once(interruptible):
    """The handler's exception reaches the caller within a fraction of a second, while
    the call itself (5 s) is still running."""

    def alarm(signum, frame):
        raise _Alarm

    saved = signal.signal(signal.SIGALRM, alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        t0 = time.monotonic()
        with pytest.raises(_Alarm):
            call_interruptibly(time.sleep, 5.0)
        assert time.monotonic() - t0 < 1.5
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, saved)
