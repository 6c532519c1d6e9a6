"""One windowing: ``predict`` and ``eval --save-pred`` write bit-identical masks for the same pair,
checkpoint, threshold and tile size, at any image size, and both window at the checkpoint's crop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.io.images import read_mask
from mmchange_core.models import read_checkpoint_meta
from mmchange_core.training.loop import train
from tests.data_helpers import synth_dataset, tiny_config, write_image

#: (height, width): neither side a multiple of 32 nor of the 64 px training crop; one is smaller than a tile.
SIZES = {"odd.png": (150, 221), "thin.png": (97, 45)}

#: Windows per image, worked out by hand from the README's rule (windows spread evenly, neighbours overlapping by
#: at least the overlap, the last one flush with the border; a side no longer than the tile gets one window):
#: a side of L pixels gets 1 + ceil((L - tile) / (tile - overlap)) windows when L > tile, else 1.
#: At the checkpoint's crop, tile 64 and overlap 32 (stride 32):
#:   odd  150 x 221: rows 1 + ceil(86 / 32) = 1 + 3 = 4, columns 1 + ceil(157 / 32) = 1 + 5 = 6 -> 24 windows
#:   thin  97 x  45: rows 1 + ceil(33 / 32) = 1 + 2 = 3, columns 1 (45 <= 64)                 -> 3 windows
WINDOWS_AT_CROP_64 = {"odd.png": 4 * 6, "thin.png": 3 * 1}
#: With --tile-size 96 --overlap 16 (stride 80), odd 150 x 221:
#:   rows 1 + ceil(54 / 80) = 1 + 1 = 2, columns 1 + ceil(125 / 80) = 1 + 2 = 3 -> 6 windows
WINDOWS_ODD_TILE_96_OVERLAP_16 = 2 * 3


@pytest.fixture(scope="module")
def crop64_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint really trained (a few iterations) at crop 64."""
    tmp = tmp_path_factory.mktemp("crop64")
    result = train(tiny_config(synth_dataset(tmp / "data", pairs=8), tmp / "runs", iters=2))
    assert result.last_checkpoint is not None
    assert read_checkpoint_meta(result.last_checkpoint).tile_size == 64
    return result.last_checkpoint


@pytest.fixture(scope="module")
def odd_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("odd") / "ds"
    rng = np.random.default_rng(1)
    for name, (h, w) in SIZES.items():
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([np.sin(yy / 7.0), np.cos(xx / 5.0), np.sin((xx + yy) / 11.0)], -1) * 70 + 128
        image_a = np.clip(base + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)
        image_b = image_a.copy()
        image_b[h // 5:h // 2, w // 4:3 * w // 4] = (210, 200, 180)
        label = np.zeros((h, w), np.uint8)
        label[h // 5:h // 2, w // 4:3 * w // 4] = 255
        write_image(root / "test" / "A" / name, image_a)
        write_image(root / "test" / "B" / name, image_b)
        write_image(root / "test" / "label" / name, label)
    return root


def median_threshold(checkpoint: Path, dataset: Path) -> str:
    """A threshold at the median probability, so that many pixels lie close to it and any drift shows."""
    detector = ChangeDetector.from_checkpoint(checkpoint, device="cpu")
    prob = detector.predict(dataset / "test" / "A" / "odd.png", dataset / "test" / "B" / "odd.png").probability
    return repr(float(np.median(prob)))


def test_predict_and_eval_write_identical_masks(crop64_checkpoint: Path, odd_dataset: Path, tmp_path: Path,
                                                cli) -> None:
    preds = tmp_path / "eval_pred"
    threshold = ("--threshold", median_threshold(crop64_checkpoint, odd_dataset))
    result = cli("eval", "-c", crop64_checkpoint, "-d", odd_dataset, "--save-pred", preds, "--device", "cpu",
                 "-w", "0", "--project", tmp_path / "runs", "--json", *threshold)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tile_size"] == 64  # the checkpoint's crop, not a fixed 256

    folder = cli("predict", odd_dataset / "test" / "A", odd_dataset / "test" / "B", "-o", tmp_path / "folder",
                 "-c", crop64_checkpoint, "--device", "cpu", *threshold)
    assert folder.exit_code == 0, folder.output
    for name, (h, w) in SIZES.items():
        single = cli("predict", odd_dataset / "test" / "A" / name, odd_dataset / "test" / "B" / name,
                     "-o", tmp_path / f"single_{name}", "-c", crop64_checkpoint, "--device", "cpu", "--json",
                     *threshold)
        assert single.exit_code == 0, single.output
        assert json.loads(single.stdout)["windows"] == WINDOWS_AT_CROP_64[name]
        from_eval = read_mask(preds / name)
        assert from_eval.shape == (h, w)
        if name == "odd.png":
            assert 0.3 < from_eval.mean() < 0.7  # both classes, many pixels near the threshold
        np.testing.assert_array_equal(read_mask(tmp_path / f"single_{name}"), from_eval)
        np.testing.assert_array_equal(read_mask(tmp_path / "folder" / name), from_eval)


def test_tile_size_override_reaches_both_commands(crop64_checkpoint: Path, odd_dataset: Path, tmp_path: Path,
                                                  cli) -> None:
    name = "odd.png"
    threshold = median_threshold(crop64_checkpoint, odd_dataset)
    args = ("--tile-size", "96", "--overlap", "16", "--threshold", threshold, "--batch-size", "3")
    result = cli("eval", "-c", crop64_checkpoint, "-d", odd_dataset, "--save-pred", tmp_path / "p", "--device", "cpu",
                 "-w", "0", "--project", tmp_path / "runs", "--json", *args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["tile_size"], summary["overlap"], summary["threshold"]) == (96, 16, float(threshold))
    single = cli("predict", odd_dataset / "test" / "A" / name, odd_dataset / "test" / "B" / name,
                 "-o", tmp_path / "m.png", "-c", crop64_checkpoint, "--device", "cpu", "--json", *args)
    assert single.exit_code == 0, single.output
    assert json.loads(single.stdout)["windows"] == WINDOWS_ODD_TILE_96_OVERLAP_16
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), read_mask(tmp_path / "p" / name))
