"""docs/spec.md and docs/results.md are what the code generates (``adamjax docs``), cover
every key, and no user-facing file points outside the repository."""

from pathlib import Path

import adamjax
from adamjax._engine.problems.registry import BUILTINS
from adamjax._launch.schema import SCHEMA

ROOT = Path(__file__).resolve().parents[2]


def test_docs_are_generated_from_the_code():
    for name, text in adamjax.reference().items():
        assert (ROOT / "docs" / name).read_text() == text, (
            f"docs/{name} is stale: run `adamjax docs --out docs`"
        )


def test_spec_reference_lists_every_key():
    text = adamjax.reference()["spec.md"]
    for table, keys in SCHEMA.items():
        for k in keys:
            assert f"| `{k}` |" in text, (table, k)
    for kind, entry in BUILTINS.items():
        assert f'### kind = "{kind}"' in text
        for k in entry.params:
            assert f"| `{k}` |" in text, (kind, k)


def test_no_user_facing_file_points_outside_the_repository():
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "experiments").glob("*")]
    for f in files:
        if f.is_file() and f.suffix in (".md", ".toml", ".py"):
            text = f.read_text()
            assert "../shared" not in text and "SPEC.md" not in text and "SPEC §" not in text, f
