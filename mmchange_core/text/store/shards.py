"""Multi-process caption runs: each rank appends to its own shard file and rank 0 merges them.

A shard of store ``captions.jsonl`` is ``captions.jsonl.rank<N>.jsonl`` beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmchange_core.text.store.index import StoreIndex
from mmchange_core.text.store.log import LogScan
from mmchange_core.text.store.update import Append

#: Shard files written by the ranks of a multi-process run, merged by rank 0.
SHARD_GLOB = ".rank*.jsonl"


def shard_path(store_path: Path, rank: int) -> Path:
    """The file rank ``rank`` of a multi-process run appends to."""
    return store_path.with_name(f"{store_path.name}.rank{rank}.jsonl")


def shard_files(store_path: Path) -> list[Path]:
    """The shard files beside ``store_path``, leftovers of an interrupted run included, by rank."""
    return sorted(store_path.parent.glob(store_path.name + SHARD_GLOB))


def merge_shards(shards: list[Path], index: StoreIndex, append: Append, notes: list[str]) -> int:
    """Append the records of the ``shards`` that ``index`` lacks; delete the shard files.

    Records already present (see :meth:`StoreIndex.has`) are not copied again, so a merge
    interrupted after its append and rerun duplicates nothing. Each shard is checked as a store
    first (a malformed record stops the merge with a one-line error); its read notes are added to
    ``notes``. Returns the number of records appended.
    """
    appended = 0
    for shard_file in shards:
        scan = LogScan(shard_file)
        checked = StoreIndex(shard_file)
        shard_records: list[dict[str, Any]] = []
        for record in scan:
            checked.ingest(record)
            shard_records.append(record)
        records = [record for record in shard_records if not index.has(record)]
        append(records)
        appended += len(records)
        for note in scan.notes:
            if note not in notes:
                notes.append(note)
        shard_file.unlink()
    return appended
