"""``mmchange caption`` end to end with the offline basic captioner: layouts, JSON, errors, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from mmchange_core.text import CaptionStore
from tests.fifo_helpers import released
from tests.text_helpers import make_dataset

OFFLINE = ("--captioner", "basic", "--text-encoder", "hashing")


def test_caption_sysu_layout_json(cli, tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "sysu", layout="sysu", pairs=2)
    result = cli("caption", "-d", root, *OFFLINE, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["layout"] == "sysu" and data["splits"] == ["train", "test"]
    assert (data["images"], data["captioned"], data["failed"]) == (8, 8, [])
    assert data["captioner"]["name"] == "basic" and data["encoder"]["name"] == "hashing"
    keys = ["train/time1/train_0.png", "test/time2/test_1.png"]
    assert CaptionStore.open(root).embeddings_for(keys).shape == (2, 512)


def test_caption_flat_layout_with_a_separate_store_and_table(cli, tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "flat", layout="flat", pairs=3)
    store = tmp_path / "stores"
    store.mkdir()
    result = cli("caption", "-d", root, *OFFLINE, "--captions", store, "--batch-size", "4")
    assert result.exit_code == 0, result.output
    assert "captioned" in result.stdout and "distinct captions" in result.stdout
    assert (store / "mmchange_captions.jsonl").is_file() and not (root / "mmchange_captions.jsonl").exists()
    again = cli("caption", "-d", root, *OFFLINE, "--captions", store, "--json")
    data = json.loads(again.stdout)
    assert (data["layout"], data["splits"], data["skipped"], data["captioned"]) == ("flat", ["all"], 6, 0)
    assert CaptionStore.open(root, store).captions_for(["A/tile_0.png"])[0].startswith(("Mostly", "Mixed", "Mainly"))


def test_caption_corrupt_image_exits_nonzero_and_lists_it(cli, tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", pairs=2)
    (root / "train" / "B" / "train_1.png").write_bytes(b"\x89PNG broken")
    result = cli("caption", "-d", root, *OFFLINE, "--splits", "train")
    assert result.exit_code == 1
    assert "train/B/train_1.png" in result.stdout and "could not be read" in result.stderr
    assert "Traceback" not in result.output
    data = json.loads(cli("caption", "-d", root, *OFFLINE, "--splits", "train", "--json").stdout)
    assert (data["skipped"], [f["image"] for f in data["failed"]]) == (3, ["train/B/train_1.png"])


def test_caption_config_file_and_overrides(cli, tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", pairs=1)
    cfg = tmp_path / "caption.yaml"
    cfg.write_text("captioner:\n  name: basic\nencoder:\n  name: hashing\n  dim: 128\nsplits: [test]\n")
    result = cli("caption", "-d", root, "--config", cfg, "--set", "encoder.dim=256", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["encoder"]["dim"] == 256 and data["splits"] == ["test"] and data["images"] == 2


def test_caption_one_line_errors(cli, tmp_path: Path) -> None:
    result = cli("caption", "-d", tmp_path / "missing", *OFFLINE)
    assert result.exit_code == 1 and "dataset folder not found" in result.output
    root = make_dataset(tmp_path / "ds", pairs=1)
    result = cli("caption", "-d", root, *OFFLINE, "--splits", "val")
    assert result.exit_code == 1 and "split 'val' not found" in result.output
    result = cli("caption", "-d", root, "--captioner", "gpt4")
    assert result.exit_code == 1 and "unknown captioner 'gpt4'" in result.output
    assert "Traceback" not in result.output


def test_a_caption_store_that_is_a_fifo_is_refused_before_it_is_opened(cli, tmp_path: Path) -> None:
    """Opening a FIFO to read it blocks until a writer comes: the store is checked with stat first."""
    import os
    import stat

    root = make_dataset(tmp_path / "ds", pairs=1)
    store_folder = tmp_path / "stores"
    store_folder.mkdir()
    for given, fifo in ((tmp_path / "captions.jsonl", tmp_path / "captions.jsonl"),
                        (store_folder, store_folder / "mmchange_captions.jsonl"),
                        (None, root / "mmchange_captions.jsonl")):
        os.mkfifo(fifo)
        with released(fifo) as blocked:
            result = cli("caption", "-d", root, *OFFLINE, *(("--captions", given) if given else ()))
        assert not blocked, f"caption blocked reading the FIFO {fifo}"
        assert result.exit_code == 1, result.output
        assert result.output == (f"error: {fifo} is not a regular file (a FIFO, device or socket); give the path of "
                                 f"the caption store file\n")
        assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
        fifo.unlink()
