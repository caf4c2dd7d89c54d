"""JAX's persistent compilation cache: on by default in the user's cache folder, off with
``ADAMJAX_COMPILATION_CACHE=off``, moved by a path, and a folder given to JAX itself is
left alone (each case in a fresh interpreter: the setting is made at import)."""

import os
import subprocess
import sys

import pytest

SNIPPET = "import adamjax; print(adamjax.compilation_cache_dir())"


def _cache_dir(env: dict) -> str:
    base = {k: v for k, v in os.environ.items() if "COMPILATION_CACHE" not in k}
    out = subprocess.run(
        [sys.executable, "-c", SNIPPET],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "env,expected",
    [
        ({"ADAMJAX_COMPILATION_CACHE": "off"}, "None"),
        ({"ADAMJAX_COMPILATION_CACHE": "{tmp}/c"}, "{tmp}/c"),
        ({"JAX_COMPILATION_CACHE_DIR": "{tmp}/j"}, "{tmp}/j"),
        ({"XDG_CACHE_HOME": "{tmp}/x"}, "{tmp}/x/adamjax/jax"),
    ],
)
def test_compilation_cache_setting(tmp_path, env, expected):
    env = {k: v.format(tmp=tmp_path) for k, v in env.items()}
    assert _cache_dir(env) == expected.format(tmp=tmp_path)


def test_second_run_loads_from_the_cache(tmp_path):
    """The cache folder fills on the first run of a spec and is what the second reads."""
    code = (
        "import adamjax\n"
        "spec = {'name': 'c', 'problem': {'kind': 'quadratic'}, 'run': {'steps': 50}}\n"
        "adamjax.run(spec, progress=False)\n"
    )
    env = {
        **{k: v for k, v in os.environ.items() if "COMPILATION_CACHE" not in k},
        "ADAMJAX_COMPILATION_CACHE": str(tmp_path),
    }
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    first = sorted(p.name for p in tmp_path.iterdir())
    assert first, "nothing was cached"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == first  # hits: nothing new written
