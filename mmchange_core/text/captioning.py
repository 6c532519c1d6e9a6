"""``caption_dataset``: caption every image of both dates of a dataset into its caption store.

This is the library call behind ``mmchange caption``. The dataset layout is detected exactly as for
training; every image of the chosen splits is hashed (sha256 of its bytes) and the store is updated:
images already captioned with the same content and settings are skipped, changed images are
captioned again, unreadable images are reported and left out. Under ``torchrun`` each rank captions
a disjoint shard and rank 0 merges (see :mod:`mmchange_core.distributed`).
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from mmchange_core.data.layouts import detect_layout
from mmchange_core.distributed import distributed_session
from mmchange_core.errors import InputError, MMChangeError
from mmchange_core.io.imagery import Imagery
from mmchange_core.io.images import check_regular_file
from mmchange_core.io.raster import read_composite
from mmchange_core.io.outputs import OutputPlan
from mmchange_core.progress import ProgressCallback, report
from mmchange_core.text.config import CaptionerConfig, TextEncoderConfig, settings_id
from mmchange_core.text.pipeline import TextPipeline
from mmchange_core.text.store import CaptionReport, CaptionStore, Item
from mmchange_core.text.store.records import STORE_FILENAME, sha256_files

#: Ranks can finish their shards far apart (uneven images, slow disks): barriers wait up to a day.
BARRIER_TIMEOUT = datetime.timedelta(hours=24)


def _image_keys(root: Path, layout: Any, splits: Sequence[str]) -> list[tuple[str, Path]]:
    seen: dict[str, Path] = {}
    for split in splits:
        for pair in layout.pairs(split):
            for path, key in zip((pair.image_a, pair.image_b), pair.relative(root)):
                seen.setdefault(key, path)
    return list(seen.items())


def _hash_all(paths: Sequence[Path], progress: ProgressCallback | None) -> list[str | Exception]:
    """sha256 of every file (threads; I/O bound); an :class:`InputError` in place of a hash that failed."""
    def done(count: int) -> None:
        if count % 64 == 0 or count == len(paths):
            report(progress, "hashing", count, len(paths))

    report(progress, "hashing", 0, len(paths))
    return [InputError(f"cannot read {path} ({digest.strerror or digest})") if isinstance(digest, OSError) else digest
            for path, digest in zip(paths, sha256_files(paths, done))]


def check_store_path(root: str | Path, store: str | Path | None = None) -> None:
    """Refuse, before anything opens it, a caption store that is a FIFO, device or socket (reading one blocks).

    ``root`` and ``store`` as :meth:`CaptionStore.open` takes them; a store that does not exist yet is fine.
    """
    path = Path(root) / STORE_FILENAME if store is None else Path(store).expanduser()
    if path.is_dir():
        path = path / STORE_FILENAME
    if path.exists():
        check_regular_file(path, "caption store")


def _load(path: Path, warn: Callable[[str], None] | None, imagery: Imagery | None = None) -> np.ndarray:
    """The picture a captioner sees: the image's red, green and blue bands under ``imagery`` (8-bit RGB as is)."""
    return read_composite(path, warn, imagery)


def caption_dataset(root: str | Path, *, captioner: CaptionerConfig, encoder: TextEncoderConfig,
                    splits: Sequence[str] | None = None, store: str | Path | None = None,
                    overwrite: bool = False, device: str = "auto", progress: ProgressCallback | None = None,
                    warn: Callable[[str], None] | None = None, imagery: Imagery | None = None) -> CaptionReport:
    """Caption (and embed) every image of both dates of ``splits`` (default: all) of the dataset at ``root``.

    Resumable and append-only (see :class:`CaptionStore`). ``warn`` receives one-line notes
    (image conversions, store repairs); ``progress`` gets events of the tasks ``hashing`` and ``captioning``.
    Failed images are listed in the report, not raised; the CLI exits non-zero for them.
    """
    started = time.perf_counter()
    layout = detect_layout(root)
    root = layout.root  # a pair list's folder: its caption store and keys live there
    chosen = list(splits) if splits else list(layout.splits)
    for split in chosen:
        layout.pairs(split)  # one-line error for an unknown or empty split
    keys = _image_keys(root, layout, chosen)
    check_store_path(root, store)
    caption_store = CaptionStore.open(root, store)
    labels = [pair.label for split in chosen for pair in layout.pairs(split)]
    OutputPlan([*(path for _, path in keys), *labels]).add(caption_store.path, "caption store")
    captioner.validate()
    encoder.validate()

    with distributed_session(device, backend="gloo", timeout=BARRIER_TIMEOUT) as ctx:
        if ctx.is_main:
            caption_store.merge_shards()  # leftovers of an interrupted multi-process run
        ctx.barrier()
        caption_store.reload()
        pipeline = TextPipeline(captioner, encoder, device=ctx.device)
        mine = keys[ctx.rank::ctx.world_size]
        hashes = _hash_all([path for _, path in mine], progress if ctx.is_main else None)
        items: list[Item] = []
        failed: list[tuple[str, str]] = []
        for (key, path), digest in zip(mine, hashes):
            if isinstance(digest, Exception):
                failed.append((key, str(digest)))
            else:
                items.append((key, digest, partial(_load, path, warn, imagery)))
        writer = caption_store.shard_view(ctx.rank) if ctx.enabled else caption_store
        report_progress = (lambda done, total: report(progress, "captioning", done, total)) if ctx.is_main else None
        try:
            result = writer.update(items, pipeline, overwrite=overwrite, progress=report_progress,
                                   on_failure=lambda key, reason: None)
            error = None
        except MMChangeError as exc:  # every rank must reach the barrier, then the error is raised
            result, error = CaptionReport(), exc
        partial_reports = ctx.gather({
            "captioned": result.captioned, "reused": result.reused, "skipped": result.skipped,
            "encoded": result.encoded, "failed": failed + result.failed, "seconds": result.caption_seconds,
            "error": str(error) if error else None})
        ctx.barrier()
        if ctx.is_main and ctx.enabled:
            caption_store.merge_shards()
        ctx.barrier()
    if error is not None:
        raise error
    other_errors = [p["error"] for p in partial_reports if p["error"]]
    if other_errors:
        raise MMChangeError(other_errors[0])

    caption_store.reload()
    description = pipeline.describe()
    cap_id = settings_id(description["captioner"])
    captions = [rec.caption for key, _ in keys if (rec := caption_store.caption_record(key, cap_id)) is not None]
    outcome = CaptionReport(
        root=str(root), layout=layout.kind, store=str(caption_store.path), splits=chosen, images=len(keys),
        captioned=sum(p["captioned"] for p in partial_reports), reused=sum(p["reused"] for p in partial_reports),
        skipped=sum(p["skipped"] for p in partial_reports), encoded=sum(p["encoded"] for p in partial_reports),
        failed=sorted(tuple(f) for p in partial_reports for f in p["failed"]),
        mean_words=float(np.mean([len(c.split()) for c in captions])) if captions else 0.0,
        distinct_captions=len(set(captions)), seconds=time.perf_counter() - started,
        caption_seconds=max(p["seconds"] for p in partial_reports), world_size=ctx.world_size,
        captioner=description["captioner"], encoder=description["encoder"], warnings=list(caption_store.warnings))
    if warn is not None:
        for note in outcome.warnings:
            warn(note)
    return outcome
