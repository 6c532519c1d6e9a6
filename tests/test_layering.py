"""The layering contract of ARCHITECTURE.md, enforced: the import-linter contracts in pyproject.toml,
plus checks built on grimp for what a ``layers`` contract cannot see (a cycle inside one layer, an
import of the package facade from inside the library)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mmchange_core", "mmchange_cli")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # TYPE_CHECKING imports count: a cycle through them still couples the modules.
    return grimp.build_graph(*PACKAGES, exclude_type_checking_imports=False, cache_dir=None)


def test_import_contracts_are_kept() -> None:
    """``lint-imports`` (layers, core never imports the CLI, acyclic siblings) exits 0."""
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                               "sys.exit(lint_imports_command())", "--no-cache", "--no-logo"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout, run.stdout


def test_no_import_cycle_between_modules(graph: grimp.ImportGraph) -> None:
    """No module reaches itself through its imports, within a layer or across layers."""
    cycles = set()
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                loop = (importer, *back[:-1])  # one cycle, whichever module it was found from
                start = loop.index(min(loop))
                cycles.add(" -> ".join(loop[start:] + loop[:start + 1]))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles))


def test_library_never_imports_its_facade(graph: grimp.ImportGraph) -> None:
    """Modules of ``mmchange_core`` import named modules, never the package ``mmchange_core`` itself,
    so the facade may export names from the top layer without closing a cycle."""
    importers = sorted(m for m in graph.find_modules_that_directly_import("mmchange_core")
                       if m.startswith("mmchange_core."))
    details = [f"{d['importer']}:{d['line_number']} {d['line_contents']}" for m in importers
               for d in graph.get_import_details(importer=m, imported="mmchange_core")]
    assert not importers, "import from the mmchange_core facade inside the library:\n" + "\n".join(details)
