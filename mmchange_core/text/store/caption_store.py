"""``CaptionStore``: one dataset's captions and text embeddings, read from and appended to its log."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmchange_core.errors import InputError, MMChangeError
from mmchange_core.io.atomic import refuse_unsafe
from mmchange_core.text.config import settings_id
from mmchange_core.text.store.index import MissingCaptionsError, StaleCaptionsError, StoreIndex, caption_command
from mmchange_core.text.store.log import LogScan, append_records, store_lock
from mmchange_core.text.store.records import (
    STORE_FILENAME,
    CaptionRecord,
    Item,
    caption_sha256,
    normalise_description,
    run_record,
    sha256_bytes,
    sha256_file,
    sha256_files,
)
from mmchange_core.text.store.shards import merge_shards, shard_files, shard_path
from mmchange_core.text.store.update import CaptionReport, update_index

if TYPE_CHECKING:
    from mmchange_core.text.pipeline import TextPipeline


class CaptionStore:
    """Captions and text embeddings of a dataset's images, persisted as append-only JSONL."""

    def __init__(self, path: str | Path, dataset_root: str | Path | None = None) -> None:
        self.path = Path(path)
        self.dataset_root = Path(dataset_root) if dataset_root is not None else None
        #: One-line notes about what was found when reading (skipped lines, repaired tail).
        self.warnings: list[str] = []
        self._append_path = self.path
        self._pending_run: dict[str, Any] | None = None
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
    def reload(self) -> None:
        """(Re)read the file; a truncated last line is ignored, malformed lines are skipped with a note."""
        self._index = StoreIndex(self.path)
        self._records = self._valid_bytes = self._valid_lines = 0
        scan = LogScan(self.path)
        for record in scan:
            self._index.ingest(record)
        self._records, self._valid_bytes, self._valid_lines = scan.records, scan.valid_bytes, scan.valid_lines
        for note in scan.notes:
            self._note(note)

    def _note(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    @property
    def records(self) -> int:
        """Number of valid records in the file."""
        return self._records

    def latest_description(self) -> dict[str, dict[str, Any]] | None:
        """The captioner and encoder settings of the most recent caption run, or None."""
        return self._index.latest_description()

    def text_description(self) -> dict[str, dict[str, Any]]:
        """Same shape as :meth:`TextPipeline.describe` for the active (most recent) settings."""
        description = self.latest_description()
        if description is None:
            raise MissingCaptionsError(f"no captions in {self.path}; run: "
                                       f"{caption_command(self.dataset_root, self.path, None)}")
        return description

    def caption_record(self, key: str, captioner_id: str) -> CaptionRecord | None:
        """The latest caption record of image ``key`` under the captioner settings ``captioner_id``."""
        return self._index.captions.get((key, captioner_id))

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
        records = [self._index.captions.get((key, cap_id)) for key in keys]
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
            rec = self._index.captions.get((key, cap_id))
            if rec is None:
                missing.append(key)
                continue
            vector = self._index.embeddings.get((rec.caption_sha256, enc_id))
            if vector is None:
                without_embedding.append(key)
                continue
            out[row] = vector
        if missing:
            raise self._missing(missing, len(keys), "caption", resolved)
        if without_embedding:
            raise self._missing(without_embedding, len(keys), "text embedding", resolved)
        return out

    def verify(self, images: Sequence[tuple[str, Path]], description: dict[str, Any] | None = None, *,
               accept_stale: bool = False) -> list[str]:
        """Keys of ``images`` (key, file) whose caption for ``description`` was made from other bytes (sha256).

        Raises :class:`StaleCaptionsError` (counting and naming the first ones, with the command that
        re-captions them) unless ``accept_stale``. Images without a caption are left to the lookups.
        Each file is hashed once per process while its size and mtime stay the same.
        """
        resolved, cap_id, _ = self._resolve(description)
        known = [(key, path, rec) for key, path in images if (rec := self._index.captions.get((key, cap_id)))]
        digests = sha256_files([path for _, path, _ in known])
        unreadable = [(path, d) for (_, path, _), d in zip(known, digests) if isinstance(d, OSError)]
        if unreadable:
            path, exc = unreadable[0]
            raise InputError(f"cannot read {path} ({exc.strerror or exc})")
        stale = [key for (key, _, rec), digest in zip(known, digests) if rec.sha256 != digest]
        if stale and not accept_stale:
            other = " (none matches: is this the caption store of another dataset?)" if len(stale) == len(known) else ""
            raise StaleCaptionsError(
                f"{len(stale)} of {len(known)} captioned image(s) changed since they were captioned in {self.path}"
                f"{other} (e.g. {', '.join(stale[:3])}); re-caption them with: "
                f"{caption_command(self.dataset_root, self.path, resolved)} "
                f"(or pass --accept-stale-captions to use the old captions)")
        return stale

    def identity(self) -> dict[str, Any]:
        """``{"path", "records", "sha256", "captioner", "encoder"}``: which store (and state) was used."""
        digest = sha256_file(self.path, self._valid_bytes) if self.path.exists() else sha256_bytes(b"")
        description = self.latest_description() or {"captioner": None, "encoder": None}
        return {"path": str(self.path.resolve()), "records": self._records, "sha256": digest,
                "captioner": description["captioner"], "encoder": description["encoder"]}

    # ----------------------------------------------------------------------------------- writing
    def _append(self, records: list[dict[str, Any]]) -> None:
        """Append ``records`` (after a pending run record) in one fsynced write under the store's lock; index them.

        Under the lock, the records other processes appended since this store was read are indexed
        first and whatever they already hold is dropped, so concurrent writers never duplicate records.
        """
        if not records:
            return
        if self._pending_run is not None:
            records = [self._pending_run, *records]
        shard = self._append_path != self.path
        with store_lock(self._append_path):
            if not shard:
                self._catch_up()
            records = [record for record in records if not self._index.has(record)]
            if not records:
                self._pending_run = None
                return
            wrote_header, note = append_records(self._append_path, records)
            if not shard:
                self._records += len(records) + int(wrote_header)
                self._valid_bytes = self.path.stat().st_size
                self._valid_lines += len(records) + int(wrote_header)
        if note is not None:  # one note per torn line: the repair replaces the note of its reading
            self.warnings = [w for w in self.warnings if not w.startswith(f"{self._append_path}: ignoring a truncated")]
            self._note(note)
        self._pending_run = None
        for record in records:
            if shard and record["type"] == "run":
                continue  # a shard's run record becomes active when rank 0 merges it
            self._index.ingest(record)

    def _catch_up(self) -> None:
        """Index the records appended to the file since it was read (by other processes)."""
        if not self.path.exists() or self.path.stat().st_size == self._valid_bytes:
            return
        if self.path.stat().st_size < self._valid_bytes:  # replaced or cut by hand: read it again
            self.reload()
            return
        scan = LogScan(self.path, self._valid_bytes, self._valid_lines + 1)
        for record in scan:
            self._index.ingest(record)
        self._records += scan.records
        self._valid_bytes, self._valid_lines = scan.valid_bytes, scan.valid_lines

    def record_run(self, description: dict[str, Any]) -> None:
        """Make ``description`` the active settings; its run record goes out with the next append.

        Nothing is written until there is something to store, so a store that already holds all
        captions can be read-only.
        """
        resolved = normalise_description(description)
        self._pending_run = None if self.latest_description() == resolved else run_record(resolved)

    def update(self, items: Sequence[Item], pipeline: TextPipeline, *, overwrite: bool = False,
               on_failure: Callable[[str, str], None] | None = None,
               progress: Callable[[int, int], None] | None = None, prefetch: int = 4) -> CaptionReport:
        """Caption and embed what ``items`` lack, appending one batch at a time.

        An image whose key already has a caption with the same sha256 and settings is skipped; an
        image whose content was already captioned under another key reuses that caption; the rest
        are loaded (``prefetch`` threads read the next batch while the current one is captioned),
        captioned in batches of the captioner's batch size and appended with their embeddings.
        With ``on_failure`` a loader's :class:`MMChangeError` is reported and the image left out;
        without it the error propagates. ``overwrite`` re-captions all.
        """
        refuse_unsafe(self._append_path, "caption store")  # a link or FIFO at its name: refused before any work
        self.record_run(pipeline.describe())
        report, _ = update_index(self._index, self._append, items, pipeline, overwrite=overwrite,
                                 on_failure=on_failure, progress=progress, prefetch=prefetch)
        return report

    def ensure(self, items: Sequence[Item], pipeline: TextPipeline) -> np.ndarray:
        """[N, dim] embeddings of ``items``, captioning and embedding (and storing) what is missing."""
        refuse_unsafe(self._append_path, "caption store")
        self.record_run(pipeline.describe())
        _, captions = update_index(self._index, self._append, items, pipeline)
        enc_id = settings_id(pipeline.describe()["encoder"])
        out = np.zeros((len(items), pipeline.encoder_config.dim), dtype=np.float32)
        for row, caption in enumerate(captions):
            vector = None if caption is None else self._index.embeddings.get((caption_sha256(caption), enc_id))
            if vector is None:  # pragma: no cover - update_index stores every embedding
                raise MMChangeError(f"no embedding for {items[row][0]} in {self.path}")
            out[row] = vector
        return out

    # --------------------------------------------------------------------- multi-process shards
    def shard_path(self, rank: int) -> Path:
        """The file rank ``rank`` of a multi-process run appends to (merged by rank 0)."""
        return shard_path(self.path, rank)

    def shard_view(self, rank: int) -> CaptionStore:
        """A view that reads this store's index but appends to :meth:`shard_path` of ``rank``."""
        view = copy.copy(self)
        view._append_path = self.shard_path(rank)
        return view

    def merge_shards(self) -> int:
        """Append the records of leftover or finished rank shard files that the store lacks; delete them.

        Records already present are not copied again, so a merge interrupted after its append and
        rerun duplicates nothing. Returns the number of records appended.
        """
        shards = shard_files(self.path)
        if not shards:
            return 0
        self.reload()
        return merge_shards(shards, self._index, self._append, self.warnings)
