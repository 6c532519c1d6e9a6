"""The caption store's record format: record builders, content hashes and float32 vector encoding.

Every line of a store is one JSON record of one of :data:`RECORD_TYPES` (see :mod:`..store`), checked
by a CRC-32 as its last member (:mod:`mmchange_core.io.logfile`); lines without it (older stores) are
still read.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmchange_core.errors import MMChangeError
# The content hashes live in io.hashing; the store's modules and users import them from here too.
from mmchange_core.io.hashing import cached_sha256_file, sha256_bytes, sha256_file, sha256_files  # noqa: F401
from mmchange_core.io.jsonio import strict_json
from mmchange_core.io.logfile import seal, unseal
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
    """One record as a compact UTF-8 JSON line with its checksum."""
    return seal(strict_json(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def parse(line: bytes) -> dict[str, Any] | None:
    """The record on ``line``, or None when it is not a whole, checked (or old-format) JSON line of a known type."""
    record = unseal(line)
    if record is None or record.get("type") not in RECORD_TYPES:
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
