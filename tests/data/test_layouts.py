"""Dataset layout detection for every supported layout, and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmchange_core.data.layouts import detect_layout, resolve_dataset_root
from mmchange_core.errors import InputError


def _img(path: Path, value: int = 0, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(path)


def _make(root: Path, split_dirs: dict[str, tuple[str, str]], names: dict[str, list[str]]) -> None:
    for split, (a, b) in split_dirs.items():
        base = root / split if split else root
        for name in names[split]:
            _img(base / a / name, 10)
            _img(base / b / name, 20)
            _img(base / "label" / name, 255)


def test_split_folders(tmp_path: Path) -> None:
    _make(tmp_path, {"train": ("A", "B"), "val": ("A", "B"), "test": ("A", "B")},
          {"train": ["1.png", "2.png"], "val": ["3.png"], "test": ["4.png"]})
    layout = detect_layout(tmp_path)
    assert layout.kind == "split-folders"
    assert {s: len(p) for s, p in layout.splits.items()} == {"train": 2, "val": 1, "test": 1}
    pair = layout.pairs("train")[0]
    assert pair.relative(tmp_path) == ("train/A/1.png", "train/B/1.png")
    assert pair.label == tmp_path / "train" / "label" / "1.png"


def test_sysu_layout(tmp_path: Path) -> None:
    _make(tmp_path, {"train": ("time1", "time2"), "test": ("time1", "time2")},
          {"train": ["00001.png"], "test": ["00002.png"]})
    layout = detect_layout(tmp_path)
    assert layout.kind == "sysu" and set(layout.splits) == {"train", "test"}
    assert layout.pairs("test")[0].image_b.parent.name == "time2"


def test_flat_lists_layout(tmp_path: Path) -> None:
    _make(tmp_path, {"": ("A", "B")}, {"": ["a.png", "b.png", "c.png"]})
    (tmp_path / "list").mkdir()
    (tmp_path / "list" / "train.txt").write_text("a.png\nb.png\n")
    (tmp_path / "list" / "test.txt").write_text("c\n")
    layout = detect_layout(tmp_path)
    assert layout.kind == "flat-lists"
    assert [p.name for p in layout.pairs("train")] == ["a.png", "b.png"]
    assert [p.name for p in layout.pairs("test")] == ["c.png"]
    with pytest.raises(InputError, match="split 'val' not found"):
        layout.pairs("val")


def test_flat_prefixed_and_unsplit(tmp_path: Path) -> None:
    _make(tmp_path / "p", {"": ("A", "B")}, {"": ["train_1.png", "val_1.png", "test_1.png", "test_2.png"]})
    layout = detect_layout(tmp_path / "p")
    assert layout.kind == "flat-prefixed" and len(layout.pairs("test")) == 2
    _make(tmp_path / "u", {"": ("A", "B")}, {"": ["x.png", "y.png"]})
    layout = detect_layout(tmp_path / "u")
    assert layout.kind == "flat" and len(layout.pairs("test")) == 2


def test_missing_pairs_and_bad_roots(tmp_path: Path) -> None:
    _make(tmp_path, {"": ("A", "B")}, {"": ["x.png"]})
    _img(tmp_path / "A" / "only_a.png")
    with pytest.raises(InputError, match="only_a.png has no matching image"):
        detect_layout(tmp_path)
    with pytest.raises(InputError, match="no change-detection layout"):
        detect_layout(tmp_path / "A")
    with pytest.raises(InputError, match="dataset 'levir' not found"):
        import os
        os.environ["MMCHANGE_DATA"] = str(tmp_path / "nowhere")
        try:
            resolve_dataset_root("levir")
        finally:
            del os.environ["MMCHANGE_DATA"]


def test_missing_labels_reported(tmp_path: Path) -> None:
    _img(tmp_path / "A" / "x.png")
    _img(tmp_path / "B" / "x.png")
    layout = detect_layout(tmp_path)
    assert layout.pairs("all")[0].label is None
    with pytest.raises(InputError, match="have no label"):
        layout.require_labels("test")


def test_real_samples(real_data: Path) -> None:
    levir = detect_layout(real_data / "LEVIR-CD-samples")
    assert levir.kind == "flat-prefixed" and len(levir.pairs("test")) >= 1
    egy = detect_layout(real_data / "EGY-BCD-samples")
    assert egy.kind == "split-folders" and set(egy.splits) == {"train", "val", "test"}
    assert len(detect_layout(real_data / "OSCD-rgb").pairs("test")) == 14
