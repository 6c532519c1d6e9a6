"""Real samples (skipped when ../shared/data/real is absent): datasets, tiling and evaluation on them."""

from __future__ import annotations

from pathlib import Path

import torch

from mmchange_core.data.dataset import ChangeDetectionDataset
from mmchange_core.data.layouts import detect_layout
from mmchange_core.data.windows import TileGrid
from mmchange_core.evaluation.evaluate import evaluate
from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.io.images import image_size
from mmchange_core.models import build_model


def test_egy_bcd_split_folders_train_and_evaluate(real_data: Path) -> None:
    layout = detect_layout(real_data / "EGY-BCD-samples")
    train = ChangeDetectionDataset(layout, "train", crop_size=256)
    sample = train[(0, 0)]
    assert sample["image_a"].shape == (3, 256, 256)
    assert set(sample["label"].unique().tolist()) <= {0.0, 1.0}
    torch.manual_seed(0)
    detector = ChangeDetector(build_model("resnet18", "image-only"), device="cpu", tile_size=256)
    result = evaluate(detector, layout, "test")
    assert result.stats.total == 2 * 256 * 256 and len(result.per_image) == 2
    assert result.stats.tp + result.stats.fn > 0  # the real labels contain change


def test_oscd_sizes_are_tiled_to_cover_every_pixel(real_data: Path) -> None:
    layout = detect_layout(real_data / "OSCD-rgb")
    ds = ChangeDetectionDataset(layout, "all", crop_size=256)
    expected = sum(len(TileGrid.plan(*image_size(p.image_a), 256, overlap=0)) for p in layout.pairs("all"))
    assert len(ds) == expected > len(layout.pairs("all"))
    last = ds[len(ds) - 1]
    assert last["image_a"].shape == (3, 256, 256) and last["label"].shape == (1, 256, 256)


def test_levir_samples_flat_prefixed(real_data: Path) -> None:
    layout = detect_layout(real_data / "LEVIR-CD-samples")
    assert layout.kind == "flat-prefixed"
    ds = ChangeDetectionDataset(layout, "test", crop_size=256)
    assert not ds.tiled and ds[0]["label"].max() <= 1.0
