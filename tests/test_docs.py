"""The documentation names code that exists: every dotted module or object and every file path in README.md and
ARCHITECTURE.md resolves."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "ARCHITECTURE.md")
#: A dotted name of the package (``mmchange_core.inference.detector.ChangeDetector``).
DOTTED = re.compile(r"\bmmchange_(?:core|cli)(?:\.[A-Za-z_][A-Za-z0-9_]*)*\b")
#: A file path in backticks (``io/cog.py``, ``tests/test_layering.py``).
FILE = re.compile(r"`([A-Za-z0-9_./-]+\.py)`")
#: Where a short path such as ``io/cog.py`` may live.
BASES = ("", "mmchange_core", "mmchange_cli", "mmchange_core/inference")


def _mentions(pattern: re.Pattern[str], group: int = 0) -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for match in pattern.finditer((ROOT / doc).read_text(encoding="utf-8")):
            found.append((doc, match.group(group)))
    return sorted(set(found))


def resolve_dotted(name: str) -> object:
    """The module or object ``name`` names: the longest importable module prefix, then attributes."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)  # AttributeError: the docs name something that is not there
        return obj
    raise ModuleNotFoundError(name)


def test_the_docs_name_code() -> None:
    assert len(_mentions(DOTTED)) > 10  # the pattern finds the names (a broken pattern would pass vacuously)


@pytest.mark.parametrize("doc, name", _mentions(DOTTED))
def test_every_dotted_name_in_the_docs_imports(doc: str, name: str) -> None:
    try:
        resolve_dotted(name)
    except (ModuleNotFoundError, AttributeError) as exc:
        pytest.fail(f"{doc} names {name}, which does not exist ({exc})")


@pytest.mark.parametrize("doc, path", _mentions(FILE, 1))
def test_every_file_path_in_the_docs_exists(doc: str, path: str) -> None:
    assert any((ROOT / base / path).is_file() for base in BASES), f"{doc} names {path}, which does not exist"


def test_the_architecture_says_where_each_shared_concept_lives() -> None:
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for module in ("data/windows.py", "inference/settings.py", "models/checkpoint.py", "inference/backends.py",
                   "inference/predict.py", "reporting/report.py"):
        assert f"`{module}`" in text, f"ARCHITECTURE.md does not say what {module} holds"
