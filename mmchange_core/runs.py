"""Run folders: ``<project>/<command>/<name>``, auto-incremented so runs never overwrite each other."""

from __future__ import annotations

from pathlib import Path


def next_run_dir(project: str | Path, command: str, name: str | None = None) -> Path:
    """Create and return a fresh run folder: ``exp``, ``exp2``, ``exp3``... (or ``name``, ``name2``...)."""
    base = Path(project) / command
    stem = name or "exp"
    candidate = base / stem
    index = 2
    while candidate.exists():
        candidate = base / f"{stem}{index}"
        index += 1
    candidate.mkdir(parents=True)
    return candidate
