"""Evaluation: every pixel counted once across tiles and padding, hooks, overlays, threshold tuning."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmchange_core.data.layouts import detect_layout
from mmchange_core.data.normalize import to_tensor
from mmchange_core.evaluation.evaluate import evaluate
from mmchange_core.inference.settings import DetectorSettings
from mmchange_core.evaluation.run import EvalOptions, run_evaluation
from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.reporting.visualize import FN_COLOUR, FP_COLOUR, TINT, TP_COLOUR, error_overlay
from mmchange_core.errors import InputError
from mmchange_core.io.images import read_mask, read_rgb
from mmchange_core.metrics import ConfusionStats, confusion_stats
from mmchange_core.models import CheckpointMeta, build_model, read_checkpoint_meta, save_checkpoint
from tests.data_helpers import write_image

SIZES = {"wide.png": (96, 160), "square.png": (64, 64), "small.png": (40, 40)}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Test and val pairs of awkward sizes: tiled with overlap, exact, and smaller than a tile."""
    root = tmp_path_factory.mktemp("eval") / "ds"
    rng = np.random.default_rng(0)
    for split in ("test", "val"):
        for name, (h, w) in SIZES.items():
            write_image(root / split / "A" / name, rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
            write_image(root / split / "B" / name, rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
            label = np.zeros((h, w), np.uint8)
            label[h // 4: h // 2, w // 3: w // 2] = 255
            write_image(root / split / "label" / name, label)
    return root


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("resnet18", "image-only")


def detector_for(model: torch.nn.Module, tile_size: int = 64, **options) -> ChangeDetector:
    return ChangeDetector(model, device="cpu", tile_size=tile_size, **options)


def test_every_pixel_counted_once_with_tiles_and_padding(mixed: Path, model) -> None:
    layout = detect_layout(mixed)
    everything = evaluate(detector_for(model, batch_size=3), layout, "test", threshold=0.0)
    labels = {p.name: read_mask(p.label) for p in layout.pairs("test")}
    assert everything.stats.total == sum(h * w for h, w in SIZES.values())
    # threshold 0: every pixel is predicted as change, so TP counts exactly the label pixels
    assert everything.stats.tp == sum(int(m.sum()) for m in labels.values())
    assert everything.stats.fn == everything.stats.tn == 0
    assert sum((r.stats for r in everything.per_image), ConfusionStats()) == everything.stats
    assert [r.pair.name for r in everything.per_image] == [p.name for p in layout.pairs("test")]
    # the tile size changes the context the network sees, never which pixels are counted
    tiled = evaluate(detector_for(model, 64), layout, "test")
    whole = evaluate(detector_for(model, 192), layout, "test")
    assert tiled.stats.total == whole.stats.total


def test_matches_a_direct_forward_pass(mixed: Path, model) -> None:
    layout = detect_layout(mixed)
    pair = next(p for p in layout.pairs("test") if p.name == "square.png")
    detector = detector_for(model)
    result = evaluate(detector, layout, "test", pairs=[pair], threshold=0.5, collect_histogram=True)
    a = to_tensor(read_rgb(pair.image_a))[None]
    b = to_tensor(read_rgb(pair.image_b))[None]
    prob = detector.runner.probabilities(a, b)[0, 0]
    assert result.stats == confusion_stats(prob > 0.5, read_mask(pair.label))
    assert result.histogram is not None and int(result.histogram.positive.sum()) == int(read_mask(pair.label).sum())


def test_image_transform_hook_and_text_requirement(mixed: Path, model) -> None:
    layout = detect_layout(mixed)
    seen: list[int] = []

    def swap_dates(image_a: np.ndarray, image_b: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        seen.append(index)
        return np.zeros_like(image_a), np.zeros_like(image_b)

    detector = detector_for(model)
    blank = evaluate(detector, layout, "test", image_transform=swap_dates, collect_histogram=True)
    assert sorted(seen) == [0, 1, 2]
    normal = evaluate(detector, layout, "test", collect_histogram=True)
    # the transform reached the network: the probabilities differ
    assert not torch.equal(blank.histogram.negative, normal.histogram.negative)
    text_model = detector_for(build_model("resnet18", "full", text_dim=64))
    with pytest.raises(InputError, match="uses text"):
        evaluate(text_model, layout, "test")

    def provider(pairs):
        return np.zeros((len(pairs), 64), np.float32), np.ones((len(pairs), 64), np.float32)

    assert evaluate(text_model, layout, "test", text_provider=provider).stats.total > 0


def test_error_overlay_colours() -> None:
    pred = np.array([[1, 1], [0, 0]], bool)
    target = np.array([[1, 0], [1, 0]], bool)
    out = error_overlay(pred, target, np.zeros((2, 2, 3), np.uint8))    # tinted on a black image
    tint = lambda colour: np.rint(TINT * np.asarray(colour)).tolist()  # noqa: E731
    enlarged = out.shape[1] // 2
    assert out[0, 0].tolist() == tint(TP_COLOUR)
    assert out[0, enlarged].tolist() == tint(FP_COLOUR)
    assert out[enlarged, 0].tolist() == tint(FN_COLOUR)
    assert out[enlarged, enlarged].tolist() == [0, 0, 0]  # TN: the image as it is


def test_eval_run_writes_outputs_and_tunes_threshold(mixed: Path, model, tmp_path: Path) -> None:
    checkpoint = save_checkpoint(tmp_path / "m.safetensors", model, CheckpointMeta(model=model.config, tile_size=64))
    report = run_evaluation(EvalOptions(checkpoint=str(checkpoint), dataset=str(mixed), save_vis=True, project=str(tmp_path / "runs"), detector=DetectorSettings(device="cpu", workers=0)))
    assert report.run_dir == tmp_path / "runs" / "eval" / "exp"
    summary = json.loads((report.run_dir / "metrics.json").read_text())
    assert summary["metrics"] == report.metrics() and summary["tile_size"] == 64
    with open(report.run_dir / "per_image.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["name"] for r in rows) == sorted(SIZES)
    assert sum(int(r["tp"]) + int(r["fp"]) + int(r["fn"]) + int(r["tn"]) for r in rows) == report.result.stats.total
    vis = sorted(p.name for p in (report.run_dir / "vis").iterdir())
    assert vis == sorted(SIZES)
    vis_image = read_rgb(report.run_dir / "vis" / "wide.png")   # 96x160 enlarged 2x, the colour key below
    assert vis_image.shape[1:] == (320, 3) and vis_image.shape[0] > 2 * 96

    tuned = run_evaluation(EvalOptions(checkpoint=str(checkpoint), dataset=str(mixed), tune_threshold=True, project=str(tmp_path / "runs"), detector=DetectorSettings(device="cpu", workers=0)))
    meta = read_checkpoint_meta(checkpoint)
    assert tuned.tuned is not None and meta.threshold == tuned.tuned["threshold"] == tuned.result.threshold
    assert meta.threshold_tuning is not None and meta.threshold_tuning["split"] == "val"
    assert tuned.tuned["f1"] >= tuned.tuned["f1_at_0.5"]
    with pytest.raises(InputError, match="exclude each other"):
        run_evaluation(EvalOptions(checkpoint=str(checkpoint), dataset=str(mixed), tune_threshold=True, detector=DetectorSettings(threshold=0.3)))
