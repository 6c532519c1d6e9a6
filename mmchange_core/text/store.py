"""The caption store: an append-only JSONL file of captions and their text embeddings.

One store belongs to one dataset (by default ``<dataset root>/mmchange_captions.jsonl``; use
``--store PATH`` for read-only datasets). Every line is one JSON record:

- ``header``: format name and version (first line of a new store);
- ``run``: the captioner and encoder settings of a caption run (appended when they change); the
  latest one is the store's *active* description, used when a caller gives none;
- ``caption``: image key (path relative to the dataset root, '/' separated), sha256 of the image
  bytes, the caption, its sha256, the full captioner settings (captioner, model, revision, prompt,
  generation parameters) with their id, and a UTC timestamp;
- ``embedding``: sha256 of a caption, the encoder settings and id, and the float32 vector
  (little-endian, base64), so training and prediction never re-encode.

Records are only ever appended, one batch per ``write`` followed by flush and fsync, under an
exclusive lock. A crash can only leave a truncated last line: readers ignore it and the next append
cuts it off (or completes it with the missing newline when the JSON is whole). The latest record
for an image key and captioner settings wins, so re-captioning a changed image is an append too.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import os
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmchange_core.errors import InputError, MMChangeError
from mmchange_core.text.config import (
    DEFAULT_CAPTIONER_MODELS,
    DEFAULT_CAPTIONER_REVISIONS,
    CaptionerConfig,
    TextEncoderConfig,
    captioner_from_settings,
    encoder_from_settings,
    settings_id,
)
from mmchange_core.text.prompts import DEFAULT_PROMPT

if TYPE_CHECKING:
    from mmchange_core.text.pipeline import TextPipeline

try:  # POSIX advisory locks keep concurrent appenders from interleaving
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

STORE_FILENAME = "mmchange_captions.jsonl"
STORE_FORMAT = "mmchange-caption-store"
STORE_VERSION = 1
#: Shard files written by the ranks of a multi-process run, merged by rank 0.
SHARD_GLOB = ".rank*.jsonl"

#: An image to caption: (key, sha256 of its bytes, loader returning uint8 HxWx3 RGB).
Item = tuple[str, str, Callable[[], np.ndarray]]


class MissingCaptionsError(MMChangeError):
    """Some images have no caption (or no embedding) for the requested settings in the store."""


@dataclass(frozen=True)
class CaptionRecord:
    """The caption of one image under one captioner setting."""

    key: str
    sha256: str
    caption: str
    caption_sha256: str
    captioner_id: str
    time: str


@dataclass
class UpdateResult:
    """What :meth:`CaptionStore.update` did."""

    captions: list[str | None]
    captioned: int = 0
    reused: int = 0
    skipped: int = 0
    encoded: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    caption_seconds: float = 0.0


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (streamed)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def caption_sha256(caption: str) -> str:
    """The key of a caption's embeddings."""
    return sha256_bytes(caption.encode("utf-8"))


def normalise_description(description: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A ``{"captioner", "encoder"}`` description with defaults resolved (the form the store keys on)."""
    if not isinstance(description, dict) or "captioner" not in description or "encoder" not in description:
        raise MMChangeError(f"invalid text description {description!r}; expected {{'captioner': ..., 'encoder': ...}}")
    return {"captioner": captioner_from_settings(description["captioner"]).settings(),
            "encoder": encoder_from_settings(description["encoder"]).settings()}


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")


def _decode_vector(text: str, dim: int) -> np.ndarray:
    vector = np.frombuffer(base64.b64decode(text), dtype="<f4")
    if vector.size != dim:
        raise ValueError(f"embedding has {vector.size} values, expected {dim}")
    return vector.astype(np.float32)


def _dumps(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


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
        parts += ["--store", shlex.quote(str(store_path))]
    return " ".join(parts)


class CaptionStore:
    """Captions and text embeddings of a dataset's images, persisted as append-only JSONL."""

    def __init__(self, path: str | Path, dataset_root: str | Path | None = None) -> None:
        self.path = Path(path)
        self.dataset_root = Path(dataset_root) if dataset_root is not None else None
        #: One-line notes about what was found when reading (skipped lines, repaired tail).
        self.warnings: list[str] = []
        self._append_path = self.path
        self._pending_run: dict[str, Any] | None = None
        self._reset()
        self.reload()

    @classmethod
    def open(cls, dataset_root: str | Path, store: str | Path | None = None) -> CaptionStore:
        """The store of ``dataset_root``: ``<root>/mmchange_captions.jsonl``, or ``store`` (file or folder)."""
        root = Path(dataset_root)
        if store is None:
            path = root / STORE_FILENAME
        else:
            path = Path(store).expanduser()
            if path.is_dir():
                path = path / STORE_FILENAME
        return cls(path, root)

    # ----------------------------------------------------------------------------------- reading
    def _reset(self) -> None:
        self._captions: dict[tuple[str, str], CaptionRecord] = {}
        self._by_content: dict[tuple[str, str], str] = {}
        self._embeddings: dict[tuple[str, str], np.ndarray] = {}
        self._runs: list[dict[str, dict[str, Any]]] = []
        self._settings: dict[str, dict[str, Any]] = {}
        self._records = 0
        self._valid_bytes = 0

    def reload(self) -> None:
        """(Re)read the file; a truncated last line is ignored, malformed lines are skipped with a note."""
        self._reset()
        if not self.path.exists():
            return
        if self.path.is_dir():
            raise InputError(f"caption store {self.path} is a folder; pass a .jsonl file path or its parent folder")
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        offset = 0
        bad = 0
        for index, line in enumerate(lines):
            last = index == len(lines) - 1
            end = offset + len(line) + (0 if last else 1)
            if line.strip():
                record = self._parse(line)
                if record is None:
                    if last:
                        self._note(f"{self.path}: ignoring a truncated last line ({len(line)} bytes); "
                                             f"it is removed at the next write")
                    else:
                        bad += 1
                else:
                    self._ingest(record)
                    self._records += 1
                    self._valid_bytes = end
            elif not last:
                self._valid_bytes = end
            offset = end
        if bad:
            self._note(f"{self.path}: skipped {bad} malformed line(s)")
        if data.strip() and self._records == 0:
            raise InputError(f"{self.path} is not an mmchange caption store (no valid records); "
                             f"pass another --store path")

    def _note(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    @staticmethod
    def _parse(line: bytes) -> dict[str, Any] | None:
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(record, dict) or record.get("type") not in ("header", "run", "caption", "embedding"):
            return None
        return record

    def _ingest(self, record: dict[str, Any]) -> None:
        kind = record["type"]
        try:
            if kind == "caption":
                rec = CaptionRecord(record["key"], record["sha256"], record["caption"], record["caption_sha256"],
                                    record["captioner_id"], record.get("time", ""))
                self._captions[(rec.key, rec.captioner_id)] = rec
                self._by_content[(rec.sha256, rec.captioner_id)] = rec.caption
                self._settings.setdefault(rec.captioner_id, record.get("captioner", {}))
            elif kind == "embedding":
                vector = _decode_vector(record["vector"], int(record["dim"]))
                self._embeddings[(record["caption_sha256"], record["encoder_id"])] = vector
                self._settings.setdefault(record["encoder_id"], record.get("encoder", {}))
            elif kind == "run":
                self._runs.append({"captioner": record["captioner"], "encoder": record["encoder"]})
            elif kind == "header" and record.get("format") != STORE_FORMAT:
                raise InputError(f"{self.path} is not an mmchange caption store (format {record.get('format')!r})")
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{self.path}: malformed {kind} record ({exc}); the store was edited by hand or by "
                             f"another program; move it aside and rerun 'mmchange caption'") from exc

    @property
    def records(self) -> int:
        """Number of valid records in the file."""
        return self._records

    def latest_description(self) -> dict[str, dict[str, Any]] | None:
        """The captioner and encoder settings of the most recent caption run, or None."""
        return copy.deepcopy(self._runs[-1]) if self._runs else None

    def text_description(self) -> dict[str, dict[str, Any]]:
        """Same shape as :meth:`TextPipeline.describe` for the active (most recent) settings."""
        description = self.latest_description()
        if description is None:
            raise MissingCaptionsError(f"no captions in {self.path}; run: "
                                       f"{caption_command(self.dataset_root, self.path, None)}")
        return description

    def caption_record(self, key: str, captioner_id: str) -> CaptionRecord | None:
        """The latest caption record of image ``key`` under the captioner settings ``captioner_id``."""
        return self._captions.get((key, captioner_id))

    def embedding(self, caption: str, encoder_id: str) -> np.ndarray | None:
        """The stored embedding of ``caption`` under the encoder settings ``encoder_id``."""
        return self._embeddings.get((caption_sha256(caption), encoder_id))

    def _resolve(self, description: dict[str, Any] | None) -> tuple[dict[str, dict[str, Any]], str, str]:
        resolved = self.text_description() if description is None else normalise_description(description)
        return resolved, settings_id(resolved["captioner"]), settings_id(resolved["encoder"])

    def _missing(self, missing: list[str], total: int, what: str, description: dict[str, Any]) -> MissingCaptionsError:
        cap, enc = description["captioner"], description["encoder"]
        return MissingCaptionsError(
            f"{len(missing)} of {total} image(s) have no {what} in {self.path} for captioner {cap['name']} "
            f"({cap['model']}) and text encoder {enc['name']} (e.g. {missing[0]}); run: "
            f"{caption_command(self.dataset_root, self.path, description)}")

    def captions_for(self, keys: Sequence[str], description: dict[str, Any] | None = None) -> list[str]:
        """Captions of image ``keys`` (paths relative to the dataset root) for ``description``."""
        resolved, cap_id, _ = self._resolve(description)
        records = [self._captions.get((key, cap_id)) for key in keys]
        missing = [key for key, rec in zip(keys, records) if rec is None]
        if missing:
            raise self._missing(missing, len(keys), "caption", resolved)
        return [rec.caption for rec in records]  # type: ignore[union-attr]

    def embeddings_for(self, keys: Sequence[str], description: dict[str, Any] | None = None) -> np.ndarray:
        """[N, dim] float32 text embeddings of image ``keys`` for ``description`` (default: the active one)."""
        resolved, cap_id, enc_id = self._resolve(description)
        dim = int(resolved["encoder"]["dim"])
        out = np.zeros((len(keys), dim), dtype=np.float32)
        missing: list[str] = []
        without_embedding: list[str] = []
        for row, key in enumerate(keys):
            rec = self._captions.get((key, cap_id))
            if rec is None:
                missing.append(key)
                continue
            vector = self._embeddings.get((rec.caption_sha256, enc_id))
            if vector is None:
                without_embedding.append(key)
                continue
            out[row] = vector
        if missing:
            raise self._missing(missing, len(keys), "caption", resolved)
        if without_embedding:
            raise self._missing(without_embedding, len(keys), "text embedding", resolved)
        return out

    def identity(self) -> dict[str, Any]:
        """``{"path", "records", "sha256", "captioner", "encoder"}``: which store (and state) was used."""
        digest = hashlib.sha256()
        if self.path.exists():
            with open(self.path, "rb") as handle:
                remaining = self._valid_bytes
                while remaining > 0:
                    chunk = handle.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    digest.update(chunk)
                    remaining -= len(chunk)
        description = self.latest_description() or {"captioner": None, "encoder": None}
        return {"path": str(self.path.resolve()), "records": self._records, "sha256": digest.hexdigest(),
                "captioner": description["captioner"], "encoder": description["encoder"]}

    # ----------------------------------------------------------------------------------- writing
    @contextlib.contextmanager
    def _locked_append(self) -> Iterator[tuple[Any, bool]]:
        path = self._append_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+b") as handle:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                self._repair_tail(handle, path)
                header = handle.seek(0, os.SEEK_END) == 0
                if header:
                    handle.write(_dumps({"type": "header", "format": STORE_FORMAT, "version": STORE_VERSION,
                                         "created": _utc_now()}))
                yield handle, header
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                if fcntl is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _repair_tail(self, handle: Any, path: Path) -> None:
        """Cut off a truncated last line (or add the newline a complete last record lacks)."""
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        start = size
        block = 1 << 16
        while start > 0:
            begin = max(0, start - block)
            handle.seek(begin)
            chunk = handle.read(start - begin)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                start = begin + cut + 1
                break
            start = begin
        handle.seek(start)
        tail = handle.read(size - start)
        if self._parse(tail) is not None:
            handle.write(b"\n")
        else:
            handle.truncate(start)
            self._note(f"{path}: removed a truncated last line ({len(tail)} bytes)")
        handle.seek(0, os.SEEK_END)

    def _append(self, records: list[dict[str, Any]]) -> None:
        """Append ``records`` (after a pending run record) in one write, flushed and fsynced; index them."""
        if not records:
            return
        if self._pending_run is not None:
            records = [self._pending_run, *records]
        payload = b"".join(_dumps(r) for r in records)
        with self._locked_append() as (handle, wrote_header):
            handle.write(payload)
        self._pending_run = None
        shard = self._append_path != self.path
        for record in records:
            if shard and record["type"] == "run":
                continue  # a shard's run record becomes active when rank 0 merges it
            self._ingest(record)
        if not shard:
            self._records += len(records) + int(wrote_header)
            self._valid_bytes = self.path.stat().st_size

    def record_run(self, description: dict[str, Any]) -> None:
        """Make ``description`` the active settings; its run record goes out with the next append.

        Nothing is written until there is something to store, so a store that already holds all
        captions can be read-only.
        """
        resolved = normalise_description(description)
        if self.latest_description() == resolved:
            self._pending_run = None
            return
        self._pending_run = {"type": "run", **resolved, "captioner_id": settings_id(resolved["captioner"]),
                             "encoder_id": settings_id(resolved["encoder"]), "time": _utc_now()}

    def _caption_record(self, key: str, sha: str, caption: str, captioner: dict[str, Any], cap_id: str) -> dict[str, Any]:
        return {"type": "caption", "key": key, "sha256": sha, "caption": caption,
                "caption_sha256": caption_sha256(caption), "captioner": captioner, "captioner_id": cap_id,
                "time": _utc_now()}

    @staticmethod
    def _embedding_record(caption_hash: str, vector: np.ndarray, encoder: dict[str, Any], enc_id: str) -> dict[str, Any]:
        return {"type": "embedding", "caption_sha256": caption_hash, "encoder": encoder, "encoder_id": enc_id,
                "dim": int(vector.shape[0]), "dtype": "float32", "vector": _encode_vector(vector)}

    def _embed_records(self, captions: Sequence[str], pipeline: TextPipeline, encoder: dict[str, Any],
                       enc_id: str, force: bool = False) -> list[dict[str, Any]]:
        """Embedding records for the distinct ``captions`` that lack one (all of them with ``force``)."""
        todo: dict[str, str] = {}
        for caption in captions:
            digest = caption_sha256(caption)
            if force or (digest, enc_id) not in self._embeddings:
                todo.setdefault(digest, caption)
        if not todo:
            return []
        vectors = pipeline.encode(list(todo.values())).numpy()
        return [self._embedding_record(digest, vector, encoder, enc_id)
                for digest, vector in zip(todo, vectors)]

    def update(self, items: Sequence[Item], pipeline: TextPipeline, *, overwrite: bool = False,
               on_failure: Callable[[str, str], None] | None = None,
               progress: Callable[[int, int], None] | None = None, prefetch: int = 4) -> UpdateResult:
        """Caption and embed what ``items`` lack, appending one batch at a time.

        An image whose key already has a caption with the same sha256 and settings is skipped; an
        image whose content was already captioned under another key reuses that caption; the rest
        are loaded (``prefetch`` threads read the next batch while the current one is captioned),
        captioned in batches of the captioner's batch size and appended with their embeddings.
        With ``on_failure`` a loader's :class:`MMChangeError` is reported and the image left out
        (its caption stays None); without it the error propagates. ``overwrite`` re-captions all.
        """
        description = pipeline.describe()
        captioner, encoder = description["captioner"], description["encoder"]
        cap_id, enc_id = settings_id(captioner), settings_id(encoder)
        self.record_run(description)
        result = UpdateResult(captions=[None] * len(items))
        copies: list[dict[str, Any]] = []
        groups: dict[str, list[int]] = {}
        for index, (key, sha, _) in enumerate(items):
            record = None if overwrite else self._captions.get((key, cap_id))
            if record is not None and record.sha256 == sha:
                result.captions[index] = record.caption
                result.skipped += 1
                continue
            known = None if overwrite else self._by_content.get((sha, cap_id))
            if known is not None:
                result.captions[index] = known
                result.reused += 1
                copies.append(self._caption_record(key, sha, known, captioner, cap_id))
                continue
            groups.setdefault(sha, []).append(index)
        if copies:
            self._append(copies)

        batch_size = max(1, pipeline.captioner_config.batch_size)
        todo = list(groups.values())
        batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
        total = len(todo)
        done = 0
        if progress is not None:
            progress(0, total)
        with ThreadPoolExecutor(max_workers=max(1, prefetch)) as pool:
            def load(batch: list[list[int]]) -> list[Any]:
                return [pool.submit(items[group[0]][2]) for group in batch]

            pending = load(batches[0]) if batches else []
            for number, batch in enumerate(batches):
                futures = pending
                pending = load(batches[number + 1]) if number + 1 < len(batches) else []
                images, loaded = [], []
                for group, future in zip(batch, futures):
                    try:
                        images.append(future.result())
                        loaded.append(group)
                    except MMChangeError as exc:
                        if on_failure is None:
                            raise
                        for index in group:
                            result.failed.append((items[index][0], str(exc)))
                            on_failure(items[index][0], str(exc))
                start = time.perf_counter()
                captions = pipeline.caption(images) if images else []
                records: list[dict[str, Any]] = []
                for group, caption in zip(loaded, captions):
                    for index in group:
                        key, sha, _ = items[index]
                        result.captions[index] = caption
                        records.append(self._caption_record(key, sha, caption, captioner, cap_id))
                    result.captioned += 1
                    result.reused += len(group) - 1  # same bytes under another key in this run
                embedding_records = self._embed_records(captions, pipeline, encoder, enc_id, force=overwrite)
                result.encoded += len(embedding_records)
                self._append(records + embedding_records)
                result.caption_seconds += time.perf_counter() - start
                done += len(batch)
                if progress is not None:
                    progress(done, total)

        known_captions = [c for c in result.captions if c is not None]
        for start in range(0, len(known_captions), 256):
            extra = self._embed_records(known_captions[start:start + 256], pipeline, encoder, enc_id)
            result.encoded += len(extra)
            self._append(extra)
        return result

    def ensure(self, items: Sequence[Item], pipeline: TextPipeline) -> np.ndarray:
        """[N, dim] embeddings of ``items``, captioning and embedding (and storing) what is missing."""
        result = self.update(items, pipeline)
        enc_id = settings_id(pipeline.describe()["encoder"])
        dim = pipeline.encoder_config.dim
        out = np.zeros((len(items), dim), dtype=np.float32)
        for row, caption in enumerate(result.captions):
            vector = self._embeddings.get((caption_sha256(caption or ""), enc_id))
            if caption is None or vector is None:  # pragma: no cover - update() stores every embedding
                raise MMChangeError(f"no embedding for {items[row][0]} in {self.path}")
            out[row] = vector
        return out

    # --------------------------------------------------------------------- multi-process shards
    def shard_path(self, rank: int) -> Path:
        """The file rank ``rank`` of a multi-process run appends to (merged by rank 0)."""
        return self.path.with_name(f"{self.path.name}.rank{rank}.jsonl")

    def shard_view(self, rank: int) -> CaptionStore:
        """A view that reads this store's index but appends to :meth:`shard_path` of ``rank``."""
        view = copy.copy(self)
        view._append_path = self.shard_path(rank)
        return view

    def merge_shards(self) -> int:
        """Append the records of leftover or finished rank shard files that the store lacks; delete them.

        Caption records already present (same key, settings, sha256 and caption) and embeddings
        already present are not copied again, so a merge interrupted after its append and rerun
        duplicates nothing. Returns the number of records appended.
        """
        shards = sorted(self.path.parent.glob(self.path.name + SHARD_GLOB))
        if not shards:
            return 0
        self.reload()
        appended = 0
        for shard_file in shards:
            shard = CaptionStore(shard_file)
            records: list[dict[str, Any]] = []
            for line in shard_file.read_bytes().split(b"\n"):
                record = self._parse(line) if line.strip() else None
                if record is None or record["type"] == "header":
                    continue
                if record["type"] == "caption":
                    existing = self._captions.get((record["key"], record["captioner_id"]))
                    if existing is not None and (existing.sha256, existing.caption) == (record["sha256"],
                                                                                        record["caption"]):
                        continue
                elif record["type"] == "embedding":
                    if (record["caption_sha256"], record["encoder_id"]) in self._embeddings:
                        continue
                elif record["type"] == "run":
                    latest = self.latest_description()
                    if latest == {"captioner": record["captioner"], "encoder": record["encoder"]}:
                        continue
                records.append(record)
            self._append(records)
            appended += len(records)
            for note in shard.warnings:
                self._note(note)
            shard_file.unlink()
        return appended
