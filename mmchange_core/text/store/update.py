"""Caption and embed what a store lacks: skip known images, reuse known content, caption the rest.

:func:`update_index` does the work of :meth:`CaptionStore.update` on a :class:`StoreIndex` and an
append callback, and reports it as a :class:`CaptionReport`, the type ``mmchange caption`` returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mmchange_core.config import to_dict
from mmchange_core.errors import MMChangeError
from mmchange_core.text.config import settings_id
from mmchange_core.text.store.index import StoreIndex
from mmchange_core.text.store.records import Item, caption_record, caption_sha256, embedding_record

if TYPE_CHECKING:
    from mmchange_core.text.pipeline import TextPipeline

#: Receives the records to append (one write) and indexes them.
Append = Callable[[list[dict[str, Any]]], None]


@dataclass
class CaptionReport:
    """What a caption run did: counts from :meth:`CaptionStore.update`; the dataset fields (root,
    layout, splits, mean words, ...) are filled in by :func:`caption_dataset`."""

    root: str = ""
    layout: str = ""
    store: str = ""
    splits: list[str] = field(default_factory=list)
    images: int = 0
    captioned: int = 0
    reused: int = 0
    skipped: int = 0
    encoded: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    mean_words: float = 0.0
    distinct_captions: int = 0
    seconds: float = 0.0
    caption_seconds: float = 0.0
    world_size: int = 1
    captioner: dict[str, Any] = field(default_factory=dict)
    encoder: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        """Newly captioned images per second of captioning (0 when nothing was captioned)."""
        return self.captioned / self.caption_seconds if self.caption_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe view."""
        data = to_dict(self)
        data["failed"] = [{"image": key, "error": reason} for key, reason in self.failed]
        data["images_per_second"] = round(self.images_per_second, 3)
        return data


def embed_records(index: StoreIndex, captions: Sequence[str], pipeline: TextPipeline, encoder: dict[str, Any],
                  enc_id: str, force: bool = False) -> list[dict[str, Any]]:
    """Embedding records for the distinct ``captions`` that lack one (all of them with ``force``)."""
    todo: dict[str, str] = {}
    for caption in captions:
        digest = caption_sha256(caption)
        if force or (digest, enc_id) not in index.embeddings:
            todo.setdefault(digest, caption)
    if not todo:
        return []
    vectors = pipeline.encode(list(todo.values())).numpy()
    return [embedding_record(digest, vector, encoder, enc_id) for digest, vector in zip(todo, vectors)]


def update_index(index: StoreIndex, append: Append, items: Sequence[Item], pipeline: TextPipeline, *,
                 overwrite: bool = False, on_failure: Callable[[str, str], None] | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 prefetch: int = 4) -> tuple[CaptionReport, list[str | None]]:
    """Caption and embed what ``items`` lack in ``index``, passing one batch of records at a time to ``append``.

    Returns the report and each item's caption (None for an item whose loader failed); see
    :meth:`CaptionStore.update` for the rules.
    """
    description = pipeline.describe()
    captioner, encoder = description["captioner"], description["encoder"]
    cap_id, enc_id = settings_id(captioner), settings_id(encoder)
    report = CaptionReport(store=str(index.path), images=len(items), captioner=captioner, encoder=encoder)
    captions: list[str | None] = [None] * len(items)
    copies: list[dict[str, Any]] = []
    groups: dict[str, list[int]] = {}
    for number, (key, sha, _) in enumerate(items):
        record = None if overwrite else index.captions.get((key, cap_id))
        if record is not None and record.sha256 == sha:
            captions[number] = record.caption
            report.skipped += 1
            continue
        known = None if overwrite else index.by_content.get((sha, cap_id))
        if known is not None:
            captions[number] = known
            report.reused += 1
            copies.append(caption_record(key, sha, known, captioner, cap_id))
            continue
        groups.setdefault(sha, []).append(number)
    if copies:
        append(copies)

    batch_size = max(1, pipeline.captioner_config.batch_size)
    todo = list(groups.values())
    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    done = 0
    if progress is not None:
        progress(0, len(todo))
    with ThreadPoolExecutor(max_workers=max(1, prefetch)) as pool:
        def load(batch: list[list[int]]) -> list[Future[np.ndarray]]:
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
                    for member in group:
                        report.failed.append((items[member][0], str(exc)))
                        on_failure(items[member][0], str(exc))
            start = time.perf_counter()
            new = pipeline.caption(images) if images else []
            records: list[dict[str, Any]] = []
            for group, caption in zip(loaded, new):
                for member in group:
                    key, sha, _ = items[member]
                    captions[member] = caption
                    records.append(caption_record(key, sha, caption, captioner, cap_id))
                report.captioned += 1
                report.reused += len(group) - 1  # same bytes under another key in this run
            embeddings = embed_records(index, new, pipeline, encoder, enc_id, force=overwrite)
            report.encoded += len(embeddings)
            append(records + embeddings)
            report.caption_seconds += time.perf_counter() - start
            done += len(batch)
            if progress is not None:
                progress(done, len(todo))

    known_captions = [caption for caption in captions if caption is not None]
    for start in range(0, len(known_captions), 256):
        extra = embed_records(index, known_captions[start:start + 256], pipeline, encoder, enc_id)
        report.encoded += len(extra)
        append(extra)
    return report, captions
