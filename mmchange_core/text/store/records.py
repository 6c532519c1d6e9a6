"""The caption store's record format: record builders, content hashes and float32 vector encoding.

Every line of a store is one JSON record of one of :data:`RECORD_TYPES` (see :mod:`..store`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmchange_core.errors import MMChangeError
from mmchange_core.io.jsonio import strict_json
from mmchange_core.text.config import captioner_from_settings, encoder_from_settings, settings_id

STORE_FILENAME = "mmchange_captions.jsonl"
STORE_FORMAT = "mmchange-caption-store"
STORE_VERSION = 1
RECORD_TYPES = ("header", "run", "caption", "embedding")

#: An image to caption: (key, sha256 of its bytes, loader returning uint8 HxWx3 RGB).
Item = tuple[str, str, Callable[[], np.ndarray]]


@dataclass(frozen=True)
class CaptionRecord:
    """The caption of one image under one captioner setting."""

    key: str
    sha256: str
    caption: str
    caption_sha256: str
    captioner_id: str
    time: str


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, size: int | None = None) -> str:
    """Hex sha256 of a file's bytes, or of its first ``size`` bytes (streamed)."""
    digest = hashlib.sha256()
    remaining = size
    with open(path, "rb") as handle:
        while remaining is None or remaining > 0:
            chunk = handle.read(1 << 20 if remaining is None else min(remaining, 1 << 20))
            if not chunk:
                break
            digest.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return digest.hexdigest()


#: sha256 of files already hashed in this process, by (path, device, inode, size, mtime_ns).
_FILE_HASHES: dict[tuple[str, int, int, int, int], str] = {}


def cached_sha256_file(path: str | Path) -> str:
    """:func:`sha256_file`, computed once per process for a file whose path, inode, size and mtime stay the same."""
    info = os.stat(path)
    key = (os.fspath(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    digest = _FILE_HASHES.get(key)
    if digest is None:
        digest = _FILE_HASHES[key] = sha256_file(path)
    return digest


def sha256_files(paths: Sequence[Path], done: Callable[[int], None] | None = None,
                 workers: int = 8) -> list[str | OSError]:
    """:func:`cached_sha256_file` of every path (threads, I/O bound); the ``OSError`` in place of a failed one.

    ``done(count)`` is called as hashes complete, in order.
    """
    def one(path: Path) -> str | OSError:
        try:
            return cached_sha256_file(path)
        except OSError as exc:
            return exc

    results: list[str | OSError] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for digest in pool.map(one, paths):
            results.append(digest)
            if done is not None:
                done(len(results))
    return results


def caption_sha256(caption: str) -> str:
    """The key of a caption's embeddings."""
    return sha256_bytes(caption.encode("utf-8"))


def normalise_description(description: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A ``{"captioner", "encoder"}`` description with defaults resolved (the form the store keys on)."""
    if not isinstance(description, dict) or "captioner" not in description or "encoder" not in description:
        raise MMChangeError(f"invalid text description {description!r}; expected {{'captioner': ..., 'encoder': ...}}")
    return {"captioner": captioner_from_settings(description["captioner"]).settings(),
            "encoder": encoder_from_settings(description["encoder"]).settings()}


def utc_now() -> str:
    """The record timestamp: UTC, to the second, ISO 8601."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def encode_vector(vector: np.ndarray) -> str:
    """A vector as base64 of its little-endian float32 bytes."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def decode_vector(text: str, dim: int) -> np.ndarray:
    """Inverse of :func:`encode_vector`; a ``ValueError`` when the length is not ``dim``."""
    vector = np.frombuffer(base64.b64decode(text), dtype="<f4")
    if vector.size != dim:
        raise ValueError(f"embedding has {vector.size} values, expected {dim}")
    return vector.astype(np.float32)


def dumps(record: dict[str, Any]) -> bytes:
    """One record as a compact UTF-8 JSON line."""
    return strict_json(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def parse(line: bytes) -> dict[str, Any] | None:
    """The record on ``line``, or None when it is not (whole) JSON of a known record type."""
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict) or record.get("type") not in RECORD_TYPES:
        return None
    return record


def header_record() -> dict[str, Any]:
    """The first record of a new store file."""
    return {"type": "header", "format": STORE_FORMAT, "version": STORE_VERSION, "created": utc_now()}


def run_record(description: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The record that makes a (normalised) description the store's active settings."""
    return {"type": "run", **description, "captioner_id": settings_id(description["captioner"]),
            "encoder_id": settings_id(description["encoder"]), "time": utc_now()}


def caption_record(key: str, sha: str, caption: str, captioner: dict[str, Any], cap_id: str) -> dict[str, Any]:
    """The record of image ``key`` (content ``sha``) captioned ``caption`` under ``captioner``."""
    return {"type": "caption", "key": key, "sha256": sha, "caption": caption,
            "caption_sha256": caption_sha256(caption), "captioner": captioner, "captioner_id": cap_id,
            "time": utc_now()}


def embedding_record(caption_hash: str, vector: np.ndarray, encoder: dict[str, Any], enc_id: str) -> dict[str, Any]:
    """The record of the embedding of the caption with sha256 ``caption_hash`` under ``encoder``."""
    return {"type": "embedding", "caption_sha256": caption_hash, "encoder": encoder, "encoder_id": enc_id,
            "dim": int(vector.shape[0]), "dtype": "float32", "vector": encode_vector(vector)}
