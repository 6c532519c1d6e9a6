"""The in-memory index of a caption store: latest caption per image and settings, embeddings, runs.

The latest record for an image key and captioner settings wins, so re-captioning a changed image
is an append too. Lookups that find nothing raise :class:`MissingCaptionsError` with the exact
``mmchange caption`` command that fills the gap.
"""

from __future__ import annotations

import copy
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from mmchange_core.errors import InputError, MMChangeError
from mmchange_core.text.config import (
    DEFAULT_CAPTIONER_MODELS,
    DEFAULT_CAPTIONER_REVISIONS,
    CaptionerConfig,
    TextEncoderConfig,
)
from mmchange_core.text.prompts import DEFAULT_PROMPT
from mmchange_core.text.store.records import STORE_FILENAME, STORE_FORMAT, CaptionRecord, decode_vector


class MissingCaptionsError(MMChangeError):
    """Some images have no caption (or no embedding) for the requested settings in the store."""


class StaleCaptionsError(MMChangeError):
    """Some images differ (sha256) from the images their captions in the store were made from."""


class StoreIndex:
    """Captions by (image key, captioner id) and by (content sha256, captioner id), embeddings by
    (caption sha256, encoder id), and the run descriptions in file order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.captions: dict[tuple[str, str], CaptionRecord] = {}
        self.by_content: dict[tuple[str, str], str] = {}
        self.embeddings: dict[tuple[str, str], np.ndarray] = {}
        self.runs: list[dict[str, dict[str, Any]]] = []

    def ingest(self, record: dict[str, Any]) -> None:
        """Index one parsed record; a one-line error names a record that lacks fields or a foreign header."""
        kind = record["type"]
        try:
            if kind == "caption":
                rec = CaptionRecord(record["key"], record["sha256"], record["caption"], record["caption_sha256"],
                                    record["captioner_id"], record.get("time", ""))
                self.captions[(rec.key, rec.captioner_id)] = rec
                self.by_content[(rec.sha256, rec.captioner_id)] = rec.caption
            elif kind == "embedding":
                vector = decode_vector(record["vector"], int(record["dim"]))
                self.embeddings[(record["caption_sha256"], record["encoder_id"])] = vector
            elif kind == "run":
                self.runs.append({"captioner": record["captioner"], "encoder": record["encoder"]})
            elif kind == "header" and record.get("format") != STORE_FORMAT:
                raise InputError(f"{self.path} is not an mmchange caption store (format {record.get('format')!r})")
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{self.path}: malformed {kind} record ({exc}); the store was edited by hand or by "
                             f"another program; move it aside and rerun 'mmchange caption'") from exc

    def latest_description(self) -> dict[str, dict[str, Any]] | None:
        """The captioner and encoder settings of the most recent run record, or None."""
        return copy.deepcopy(self.runs[-1]) if self.runs else None

    def has(self, record: dict[str, Any]) -> bool:
        """Whether ``record`` (caption, embedding or run) would add nothing to this index."""
        kind = record["type"]
        if kind == "caption":
            existing = self.captions.get((record["key"], record["captioner_id"]))
            return existing is not None and (existing.sha256, existing.caption) == (record["sha256"], record["caption"])
        if kind == "embedding":
            return (record["caption_sha256"], record["encoder_id"]) in self.embeddings
        if kind == "run":
            return self.latest_description() == {"captioner": record["captioner"], "encoder": record["encoder"]}
        return kind == "header"


def caption_command(dataset_root: Path | None, store_path: Path, description: dict[str, Any] | None) -> str:
    """The exact ``mmchange caption`` command that fills ``store_path`` for ``description``."""
    root = dataset_root if dataset_root is not None else Path("DATASET_ROOT")
    parts = ["mmchange", "caption", shlex.quote(str(root))]
    if description is not None:
        cap, enc = description["captioner"], description["encoder"]
        name = cap["name"]
        parts += ["--captioner", name]
        if cap.get("model") != DEFAULT_CAPTIONER_MODELS[name]:
            parts += ["--model", shlex.quote(str(cap["model"]))]
        if cap.get("revision") and cap["revision"] != DEFAULT_CAPTIONER_REVISIONS[name]:
            parts += ["--revision", shlex.quote(str(cap["revision"]))]
        if name == "vlm":
            defaults = CaptionerConfig()
            if cap["prompt"] != DEFAULT_PROMPT:
                parts += ["--prompt", shlex.quote(cap["prompt"])]
            if cap["max_new_tokens"] != defaults.max_new_tokens:
                parts += ["--max-new-tokens", str(cap["max_new_tokens"])]
            if cap["seed"] != defaults.seed:
                parts += ["--seed", str(cap["seed"])]
            for key in ("temperature", "top_p"):
                if cap[key] != getattr(defaults, key):
                    parts += ["--set", f"captioner.{key}={cap[key]}"]
        parts += ["--text-encoder", enc["name"]]
        if enc["name"] == "clip":
            defaults_enc = TextEncoderConfig()
            if enc["model"] != defaults_enc.model:
                parts += ["--text-model", shlex.quote(str(enc["model"]))]
            if enc["pretrained"] and enc["pretrained"] != defaults_enc.pretrained:
                parts += ["--text-pretrained", shlex.quote(str(enc["pretrained"]))]
        if enc["dim"] != TextEncoderConfig().dim:
            parts += ["--set", f"encoder.dim={enc['dim']}"]
    default_path = (dataset_root / STORE_FILENAME) if dataset_root is not None else None
    if default_path is None or Path(store_path).resolve() != default_path.resolve():
        parts += ["--captions", shlex.quote(str(store_path))]
    return " ".join(parts)
