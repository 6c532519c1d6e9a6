"""A Hugging Face Hub cache laid out on disk exactly as huggingface_hub writes one, for offline tests.

``models--OWNER--NAME/blobs/<hash>`` holds each file once, ``snapshots/<commit>/<file>`` links to its
blob, and ``refs/<branch or tag>`` holds the commit hash (no newline), as after ``hf_hub_download``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import pytest


def add_snapshot(cache: Path, repo_id: str, folder: Path, *, refs: Iterable[str] = ("main",),
                 commit: str | None = None) -> str:
    """Put ``folder``'s files into ``cache`` as commit ``commit`` of ``repo_id``; return the commit hash."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    files = sorted(p for p in folder.iterdir() if p.is_file())
    digest = hashlib.sha1()
    blobs = {}
    for path in files:
        data = path.read_bytes()
        # LFS files are named by their sha256, small git files by their git blob sha1
        blob = (hashlib.sha256(data).hexdigest() if len(data) > 10_000 else
                hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())
        blobs[path.name] = blob
        digest.update(path.name.encode() + blob.encode())
        (repo / "blobs").mkdir(parents=True, exist_ok=True)
        (repo / "blobs" / blob).write_bytes(data)
    commit = commit or digest.hexdigest()
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, blob in blobs.items():
        os.symlink(Path("..", "..", "blobs", blob), snapshot / name)
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return commit


def use_hub_cache(monkeypatch: pytest.MonkeyPatch, cache: Path, *, offline: bool = True,
                  endpoint: str | None = None) -> None:
    """Point huggingface_hub at ``cache`` (and ``endpoint``), offline or not, with no token.

    Sets the environment variables for subprocesses and, since huggingface_hub reads them once at
    import, the module's constants for this process.
    """
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HOME", str(cache.parent / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(cache.parent / "hf_home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(cache.parent / "hf_home" / "stored_tokens"))
    if endpoint is not None:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.setattr(constants, "ENDPOINT", endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                            endpoint + "/{repo_id}/resolve/{revision}/{filename}")
