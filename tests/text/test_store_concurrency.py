"""Two processes appending to one caption store at once neither interleave nor duplicate records."""

from __future__ import annotations

import json
import multiprocessing
from collections import Counter
from pathlib import Path

from mmchange_core.text.store import STORE_FILENAME
from tests.text_helpers import make_dataset


def _caption_after_barrier(root: str, barrier) -> None:
    """Read the (empty) store, wait until the other process has read it too, then caption everything."""
    from functools import partial

    import numpy as np
    from PIL import Image

    from mmchange_core.data.layouts import detect_layout
    from mmchange_core.text import CaptionerConfig, CaptionStore, TextEncoderConfig, TextPipeline
    from mmchange_core.text.store import sha256_file

    dataset = Path(root)
    layout = detect_layout(dataset)
    paths = {k: p for s in layout.splits for pair in layout.pairs(s)
             for k, p in zip(pair.relative(dataset), (pair.image_a, pair.image_b))}
    items = [(key, sha256_file(path), partial(lambda p: np.asarray(Image.open(p).convert("RGB")), path))
             for key, path in paths.items()]
    store = CaptionStore.open(dataset)
    pipeline = TextPipeline(CaptionerConfig(name="basic", batch_size=2), TextEncoderConfig(name="hashing"), "cpu")
    barrier.wait(timeout=120)
    store.update(items, pipeline)


def test_two_processes_captioning_one_store_write_each_record_once(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_caption_after_barrier, args=(str(root), barrier)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [worker.exitcode for worker in workers] == [0, 0]

    lines = (root / STORE_FILENAME).read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line whole JSON: no interleaved writes
    kinds = Counter(r["type"] for r in records)
    assert kinds["header"] == 1 and kinds["run"] == 1 and kinds["caption"] == 12
    assert Counter(r["key"] for r in records if r["type"] == "caption").most_common(1)[0][1] == 1
    embeddings = Counter(r["caption_sha256"] for r in records if r["type"] == "embedding")
    assert embeddings.most_common(1)[0][1] == 1 and kinds["embedding"] == 12
