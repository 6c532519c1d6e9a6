"""The caption store: resume, truncated lines, changed images, overwrite, ensure, shards and errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mmchange_core.data.layouts import detect_layout
from mmchange_core.text import (
    CaptionerConfig,
    CaptionStore,
    MissingCaptionsError,
    TextEncoderConfig,
    TextPipeline,
    caption_dataset,
)
from mmchange_core.text.captioners.basic import BasicCaptioner
from mmchange_core.errors import InputError
from mmchange_core.text.store import STORE_FILENAME, sha256_bytes
from tests.text_helpers import land_cover_image, make_dataset, write_image

BASIC = CaptionerConfig(name="basic", batch_size=2)
HASHING = TextEncoderConfig(name="hashing")


def _run(root: Path, **kwargs):
    return caption_dataset(root, captioner=kwargs.pop("captioner", BASIC), encoder=HASHING, device="cpu", **kwargs)


def _records(path: Path, kind: str) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["type"] == kind]


def _all_keys(root: Path) -> list[str]:
    layout = detect_layout(root)
    return [k for s in layout.splits for p in layout.pairs(s) for k in p.relative(root)]


def test_caption_dataset_writes_captions_and_embeddings(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    report = _run(root)
    keys = _all_keys(root)
    assert (report.images, report.captioned, report.skipped, report.failed) == (12, 12, 0, [])
    assert report.distinct_captions == 12 and report.mean_words > 20 and report.layout == "split-folders"
    store = CaptionStore.open(root)
    assert store.path == root / STORE_FILENAME
    captions = store.captions_for(keys)
    assert captions[0] == BasicCaptioner().caption([np.asarray(__import__("PIL.Image").Image.open(root / keys[0]))])[0]
    emb = store.embeddings_for(keys)
    assert emb.shape == (12, 512) and emb.dtype == np.float32
    assert np.allclose(emb, TextPipeline(BASIC, HASHING, "cpu").encode(captions).numpy())
    record = _records(store.path, "caption")[0]
    assert record["sha256"] == sha256_bytes((root / record["key"]).read_bytes())
    assert record["captioner"]["name"] == "basic" and record["time"].endswith("Z")
    assert store.text_description() == TextPipeline(BASIC, HASHING).describe()
    ident = store.identity()
    assert ident["records"] == len(store.path.read_text().splitlines())
    assert ident["captioner"]["name"] == "basic" and len(ident["sha256"]) == 64


def test_resume_after_interruption_loses_and_duplicates_nothing(tmp_path: Path, monkeypatch) -> None:
    root = make_dataset(tmp_path / "ds", pairs=4)
    calls = {"n": 0}
    original = BasicCaptioner.caption

    def dies_on_third_batch(self, images):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of a batch
        return original(self, images)

    monkeypatch.setattr(BasicCaptioner, "caption", dies_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        _run(root)
    assert len(_records(root / STORE_FILENAME, "caption")) == 4  # two finished batches of 2
    monkeypatch.setattr(BasicCaptioner, "caption", original)
    report = _run(root)
    assert (report.skipped, report.captioned) == (4, 12)
    records = _records(root / STORE_FILENAME, "caption")
    assert Counter(r["key"] for r in records) == Counter(_all_keys(root))  # each image exactly once
    distinct = {r["caption_sha256"] for r in records}
    assert sorted(r["caption_sha256"] for r in _records(root / STORE_FILENAME, "embedding")) == sorted(distinct)
    assert CaptionStore.open(root).embeddings_for(_all_keys(root)).shape == (16, 512)
    assert _run(root).skipped == 16


def test_truncated_last_line_is_tolerated_and_repaired(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    _run(root)
    path = root / STORE_FILENAME
    lines = path.read_bytes().splitlines(keepends=True)
    caption_lines = [i for i, line in enumerate(lines) if b'"type":"caption"' in line]
    # Drop everything after the last caption record and cut that record in half (a killed write).
    last = caption_lines[-1]
    lost_key = json.loads(lines[last])["key"]
    path.write_bytes(b"".join(lines[:last]) + lines[last][: len(lines[last]) // 2])
    store = CaptionStore.open(root)
    assert any("truncated last line" in w for w in store.warnings)
    with pytest.raises(MissingCaptionsError, match=r"1 of 12 image\(s\) have no caption"):
        store.embeddings_for(_all_keys(root))
    report = _run(root)
    assert (report.captioned, report.skipped) == (1, 11)
    assert any("removed a truncated last line" in w for w in report.warnings)
    for line in path.read_text().splitlines():
        json.loads(line)  # every line is whole again
    assert [r["key"] for r in _records(path, "caption")].count(lost_key) == 1
    CaptionStore.open(root).embeddings_for(_all_keys(root))


def test_complete_last_record_without_newline_is_kept(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", pairs=1)
    _run(root)
    path = root / STORE_FILENAME
    path.write_bytes(path.read_bytes().rstrip(b"\n"))
    before = CaptionStore.open(root).records
    write_image(root / "train" / "A" / "train_0.png", land_cover_image({"water": 1.0}, seed=9))
    assert _run(root).captioned == 1
    assert CaptionStore.open(root).records > before


def test_changed_image_is_captioned_again(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    _run(root)
    key = "train/B/train_1.png"
    old = CaptionStore.open(root).captions_for([key])[0]
    write_image(root / key, land_cover_image({"water": 0.9, "bare": 0.1}, seed=5))
    report = _run(root)
    assert (report.captioned, report.skipped) == (1, 11)
    new = CaptionStore.open(root).captions_for([key])[0]
    assert new != old and "water about 90 percent" in new
    assert [r["key"] for r in _records(root / STORE_FILENAME, "caption")].count(key) == 2  # history kept


def test_identical_content_reuses_the_caption(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", pairs=1)
    (root / "train" / "B" / "train_0.png").write_bytes((root / "train" / "A" / "train_0.png").read_bytes())
    report = _run(root, splits=["train"])
    assert (report.captioned, report.reused) == (1, 1) and report.splits == ["train"]
    store = CaptionStore.open(root)
    assert store.captions_for(["train/A/train_0.png"]) == store.captions_for(["train/B/train_0.png"])


def test_overwrite_redoes_everything(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", pairs=1)
    _run(root)
    report = _run(root, overwrite=True)
    assert (report.captioned, report.skipped, report.encoded) == (4, 0, 4)


def test_corrupt_image_is_listed_and_the_rest_captioned(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds")
    (root / "test" / "A" / "test_1.png").write_bytes(b"not a png")
    report = _run(root)
    assert report.captioned == 11
    assert [key for key, _ in report.failed] == ["test/A/test_1.png"]
    assert "cannot read image" in report.failed[0][1]
    with pytest.raises(MissingCaptionsError, match="test/A/test_1.png"):
        CaptionStore.open(root).embeddings_for(_all_keys(root))


def test_missing_captions_error_names_the_exact_command(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", pairs=1)
    store_path = tmp_path / "elsewhere" / "caps.jsonl"
    with pytest.raises(MissingCaptionsError, match="no captions in"):
        CaptionStore.open(root, store_path).text_description()
    _run(root, store=store_path)
    store = CaptionStore.open(root, store_path)
    vlm = TextPipeline(CaptionerConfig(prompt="prompt2", max_new_tokens=32), TextEncoderConfig()).describe()
    with pytest.raises(MissingCaptionsError) as info:
        store.embeddings_for(["train/A/train_0.png"], vlm)
    message = str(info.value)
    assert "\n" not in message
    assert message.endswith(f"run: mmchange caption {root} --captioner vlm --prompt 'What is the geographical type "
                            f"of this map?' --max-new-tokens 32 --text-encoder clip --captions {store_path}")
    assert not (root / STORE_FILENAME).exists()


def test_ensure_captions_once_and_caches(tmp_path: Path) -> None:
    store = CaptionStore(tmp_path / "robustness" / "blur.jsonl")
    pipe = TextPipeline(BASIC, HASHING, "cpu")
    images = [land_cover_image(m, seed=i) for i, m in enumerate([{"water": 1.0}, {"built": 1.0}, {"water": 1.0}])]
    loads = Counter()

    def item(key: str, image: np.ndarray):
        def loader() -> np.ndarray:
            loads[key] += 1
            return image
        return key, sha256_bytes(image.tobytes()), loader

    items = [item(f"img{i}", im) for i, im in enumerate(images)]
    first = store.ensure(items, pipe)
    assert first.shape == (3, 512) and np.allclose(first, pipe.encode(pipe.caption(images)).numpy())
    again = CaptionStore(store.path).ensure(items, pipe)
    assert np.array_equal(first, again) and sum(loads.values()) == 3
    assert len(_records(store.path, "run")) == 1


def test_merge_of_rank_shards_is_idempotent(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", pairs=1)
    store = CaptionStore.open(root)
    pipe = TextPipeline(BASIC, HASHING, "cpu")
    keys = _all_keys(root)
    for rank in (0, 1):
        view = store.shard_view(rank)
        view.update([(k, sha256_bytes((root / k).read_bytes()), lambda k=k: np.asarray(
            __import__("PIL.Image").Image.open(root / k).convert("RGB"))) for k in keys[rank::2]], pipe)
    shard0 = store.shard_path(0).read_bytes()
    assert store.merge_shards() > 0 and not store.shard_path(0).exists()
    store.shard_path(0).write_bytes(shard0)  # a merge that was killed before deleting its shard
    assert store.merge_shards() == 0
    assert Counter(r["key"] for r in _records(store.path, "caption")) == Counter(keys)
    assert len(_records(store.path, "run")) == 1
    assert CaptionStore.open(root).embeddings_for(keys).shape == (len(keys), 512)


def test_not_a_store(tmp_path: Path) -> None:
    bogus = tmp_path / "x.jsonl"
    bogus.write_text('{"hello": 1}\n')
    with pytest.raises(InputError, match="not an mmchange caption store"):
        CaptionStore(bogus)


_SLOW_CAPTION = """
import sys, time
from mmchange_core.text import CaptionerConfig, TextEncoderConfig, caption_dataset
from mmchange_core.text.captioners.basic import BasicCaptioner
original = BasicCaptioner.caption
def slow(self, images):
    time.sleep(0.3)
    return original(self, images)
BasicCaptioner.caption = slow
caption_dataset(sys.argv[1], captioner=CaptionerConfig(name="basic", batch_size=1),
                encoder=TextEncoderConfig(name="hashing"), device="cpu")
"""


def test_killed_run_resumes_without_loss_or_duplicates(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    root = make_dataset(tmp_path / "ds", pairs=4)
    store = root / STORE_FILENAME
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_CAPTION, str(root)], cwd=repo,
                            env={**os.environ, "PYTHONPATH": str(repo)})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not store.exists() or store.read_text().count('"type":"caption"') < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lines = store.read_text().splitlines()
    if not store.read_text().endswith("\n"):
        lines = lines[:-1]  # a write cut short by the kill: ignored on reading, repaired on the next write
    done = sum(json.loads(line)["type"] == "caption" for line in lines)
    assert 3 <= done < 16
    report = _run(root)
    assert (report.skipped, report.captioned) == (done, 16 - done)
    assert Counter(r["key"] for r in _records(store, "caption")) == Counter(_all_keys(root))
