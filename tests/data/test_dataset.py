"""Datasets: tiling of large images, size/readability/empty-split errors naming the file, sampler resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmchange_core.data.dataset import ChangeDetectionDataset, EpochSampler
from mmchange_core.data.layouts import detect_layout
from mmchange_core.data.windows import TileGrid
from mmchange_core.data.transforms import paper_augmentation
from mmchange_core.errors import InputError
from tests.data_helpers import write_image


def _pair(root: Path, split: str, name: str, size: tuple[int, int], label_value: int = 255,
          label_size: tuple[int, int] | None = None) -> None:
    h, w = size
    rng = np.random.default_rng(len(name))
    write_image(root / split / "A" / name, rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    write_image(root / split / "B" / name, rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    lh, lw = label_size or size
    label = np.zeros((lh, lw), np.uint8)
    label[: lh // 2, : lw // 2] = label_value  # 0/label_value: the larger value is change
    write_image(root / split / "label" / name, label)


def tile_windows(height: int, width: int, size: int):
    """The training tiler's crops: the one window planner with no overlap."""
    return TileGrid.plan(height, width, size, overlap=0).windows()


def test_tile_windows_cover_without_overlap_when_divisible() -> None:
    wins = tile_windows(1024, 1024, 256)
    assert len(wins) == 16
    covered = np.zeros((1024, 1024), int)
    for w in wins:
        covered[w.slices()] += 1
    assert (covered == 1).all()
    # a side that is not a multiple: the last tile aligns with the border and every pixel is covered
    wins = tile_windows(300, 200, 128)
    covered = np.zeros((300, 200), int)
    for w in wins:
        covered[w.slices()] += 1
        assert (w.height, w.width) == (128, 128)
    assert covered.min() == 1 and len(wins) == 3 * 2
    assert [(w.height, w.width) for w in tile_windows(40, 50, 64)] == [(40, 50)]  # one short tile


def test_large_images_are_cut_into_crops_and_labels_thresholded(tmp_path: Path) -> None:
    _pair(tmp_path, "train", "big.png", (128, 128), label_value=200)
    _pair(tmp_path, "train", "small.png", (64, 64))
    ds = ChangeDetectionDataset(detect_layout(tmp_path), "train", crop_size=64)
    assert len(ds) == 4 + 1 and ds.tiled
    assert ds.describe() == "train: 2 pairs (2 sizes) -> 5 tiles of 64x64"
    first = ds[0]
    assert first["image_a"].shape == (3, 64, 64) and first["label"].shape == (1, 64, 64)
    # big.png label (0/200): the top-left quarter is change -> the first tile is all change
    assert first["label"].min() == 1.0
    assert ds[3]["label"].max() == 0.0  # bottom-right tile: no change
    assert ds.load(1)["image_a"].dtype == torch.float32


def test_size_mismatch_names_the_file(tmp_path: Path) -> None:
    _pair(tmp_path, "train", "x.png", (64, 64), label_size=(64, 96))
    with pytest.raises(InputError, match=r"label[/\\]x\.png is 96x64 but .*A[/\\]x\.png is 64x64"):
        ChangeDetectionDataset(detect_layout(tmp_path), "train", crop_size=64)


def test_a_file_changed_after_the_dataset_was_built_is_named(tmp_path: Path) -> None:
    _pair(tmp_path, "train", "x.png", (64, 64))
    ds = ChangeDetectionDataset(detect_layout(tmp_path), "train", crop_size=64)
    write_image(tmp_path / "train" / "B" / "x.png", np.zeros((32, 64, 3), np.uint8))
    with pytest.raises(InputError, match=r"B[/\\]x\.png is 64x32 but .*A[/\\]x\.png is 64x64"):
        ds.load(0)


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    _pair(tmp_path, "train", "x.png", (64, 64))
    (tmp_path / "train" / "B" / "x.png").write_bytes(b"not a png at all")
    with pytest.raises(InputError, match=r"cannot read image .*B[/\\]x\.png"):
        ChangeDetectionDataset(detect_layout(tmp_path), "train", crop_size=64)


def test_too_small_missing_labels_and_empty_split(tmp_path: Path) -> None:
    _pair(tmp_path, "train", "x.png", (32, 32))
    with pytest.raises(InputError, match="smaller than the crop size 64"):
        ChangeDetectionDataset(detect_layout(tmp_path), "train", crop_size=64)
    with pytest.raises(InputError, match="multiple of 32"):
        ChangeDetectionDataset(detect_layout(tmp_path), "train", crop_size=50)
    (tmp_path / "val" / "A").mkdir(parents=True)
    (tmp_path / "val" / "B").mkdir(parents=True)
    with pytest.raises(InputError, match="split 'val' .* is empty"):
        ChangeDetectionDataset(detect_layout(tmp_path), "val", crop_size=32)
    (tmp_path / "train" / "label" / "x.png").unlink()
    with pytest.raises(InputError, match="have no label"):
        ChangeDetectionDataset(detect_layout(tmp_path), "train", crop_size=32)


def test_samples_are_reproducible_and_sampler_resumes_mid_epoch(tmp_path: Path) -> None:
    for i in range(6):
        _pair(tmp_path, "train", f"{i}.png", (64, 64))
    # pair i's text: +(i + 1) for date A, -(i + 1) for date B
    codes = np.arange(1, 7, dtype=np.float32)[:, None].repeat(64, 1)
    ds = ChangeDetectionDataset(detect_layout(tmp_path), "train", crop_size=32, transform=paper_augmentation(),
                                text=(codes, -codes), seed=7)
    assert ds.text_dim == 64 and len(ds) == 24
    a, b = ds[(5, 3)], ds[(5, 3)]
    assert all(torch.equal(a[k], b[k]) for k in a)
    # every tile carries its own pair's text, and the temporal swap exchanges the two texts (the
    # transform tests check that it exchanges the images in the same draw)
    plain = ChangeDetectionDataset(detect_layout(tmp_path), "train", crop_size=32, text=(codes, -codes))
    swaps = 0
    for k in range(24):
        pair_code = ds.tiles[k].pair + 1
        sample, reference = ds[(k, 0)], plain.load(k)
        if float(sample["text_a"][0]) == -pair_code:
            swaps += 1
            assert torch.equal(sample["text_b"], reference["text_a"])
        else:
            assert float(sample["text_a"][0]) == pair_code and float(sample["text_b"][0]) == -pair_code
    assert 0 < swaps < 24
    sampler = EpochSampler(ds, seed=7)
    sampler.set_position(2)
    full = list(sampler)
    assert len(full) == 24 and {e for _, e in full} == {2}
    sampler.set_position(2, start=10)
    assert list(sampler) == full[10:] and len(sampler) == 14
    sampler.set_position(3)
    assert [i for i, _ in sampler] != [i for i, _ in full]
    shards = [EpochSampler(ds, num_replicas=2, rank=r, seed=7) for r in (0, 1)]
    for s in shards:
        s.set_position(2)
    assert sorted(i for s in shards for i, _ in s) == sorted(i for i, _ in full)
