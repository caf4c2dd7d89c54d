"""Run the ``adamjax`` command in a subprocess (shared by the launcher tests)."""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import tomli_w
except ImportError:  # pragma: no cover
    tomli_w = None


# One persistent compilation cache for all subprocesses of a test session: each
# process still starts Python and JAX, but compiles a given program only once.
_CACHE = tempfile.mkdtemp(prefix="adamjax-test-jit-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)


def cli_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "SLURM_"))}
    env.pop("XLA_FLAGS", None)
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    env["ADAMJAX_LOG_INTERVAL"] = "1000"
    env["JAX_COMPILATION_CACHE_DIR"] = _CACHE
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def cli_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "adamjax", *[str(a) for a in args]]


def popen(*args, cwd=None, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        cli_cmd(*args),
        cwd=cwd,
        env=env or cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cli(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_cmd(*args),
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_spec(path, spec: dict):
    path.write_text(tomli_w.dumps(spec))
    return path
