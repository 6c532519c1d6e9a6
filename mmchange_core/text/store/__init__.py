"""The caption store: an append-only JSONL file of captions and their text embeddings.

One store belongs to one dataset (by default ``<dataset root>/mmchange_captions.jsonl``; use
``--captions PATH`` for read-only datasets). Every line is one JSON record:

- ``header``: format name and version (first line of a new store);
- ``run``: the captioner and encoder settings of a caption run (appended when they change); the
  latest one is the store's *active* description, used when a caller gives none;
- ``caption``: image key (path relative to the dataset root, '/' separated), sha256 of the image
  bytes, the caption, its sha256, the full captioner settings (captioner, model, revision, prompt,
  generation parameters) with their id, and a UTC timestamp;
- ``embedding``: sha256 of a caption, the encoder settings and id, and the float32 vector
  (little-endian, base64), so training and prediction never re-encode.

Modules, by concern: :mod:`.records` (record format, hashes, vectors), :mod:`.log` (tolerant
reading, locked append, tail repair), :mod:`.index` (lookup), :mod:`.update` (caption what is
missing), :mod:`.shards` (multi-process merge) and :mod:`.caption_store` (the facade).
"""

from mmchange_core.text.store.caption_store import CaptionStore
from mmchange_core.text.store.index import MissingCaptionsError, StaleCaptionsError, caption_command
from mmchange_core.text.store.records import (
    STORE_FILENAME,
    STORE_FORMAT,
    STORE_VERSION,
    CaptionRecord,
    Item,
    caption_sha256,
    normalise_description,
    sha256_bytes,
    sha256_file,
)
from mmchange_core.text.store.shards import SHARD_GLOB
from mmchange_core.text.store.update import CaptionReport

__all__ = [
    "SHARD_GLOB",
    "STORE_FILENAME",
    "STORE_FORMAT",
    "STORE_VERSION",
    "CaptionRecord",
    "CaptionReport",
    "CaptionStore",
    "Item",
    "MissingCaptionsError",
    "StaleCaptionsError",
    "caption_command",
    "caption_sha256",
    "normalise_description",
    "sha256_bytes",
    "sha256_file",
]
