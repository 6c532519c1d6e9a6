"""Class-aware (K-class) evaluation: one K x K confusion over every pixel, per-class outputs of ``eval`` and
``robustness``, class palette masks, and label sets refused before any output is written."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmchange_core.data.layouts import detect_layout
from mmchange_core.errors import InputError
from mmchange_core.evaluation.evaluate import class_gallery_score, evaluate
from mmchange_core.metrics import ConfusionStats, change_stats
from mmchange_core.evaluation.robustness import RobustnessConfig, run_robustness
from mmchange_core.evaluation.run import EvalOptions, run_evaluation
from mmchange_core.inference.detector import ChangeDetector
from mmchange_core.inference.settings import DetectorSettings
from mmchange_core.io.classes import ChangeClass, ClassScheme
from mmchange_core.models import CheckpointMeta, build_model, save_checkpoint
from mmchange_core.models.config import ModelConfig
from mmchange_core.models.mmchange import MMChange
from tests.data_helpers import write_image

SIDE = 64
NAMES = ("p0.png", "p1.png", "p2.png")
#: The class file of the tests: values that are not 0..K-1, so values and indices cannot be confused.
SCHEME = ClassScheme((ChangeClass(0, "no change", (0, 0, 0)), ChangeClass(3, "new building", (230, 25, 75)),
                      ChangeClass(7, "demolished", (0, 130, 200))))
CPU = DetectorSettings(device="cpu", workers=0)


def class_label(seed: int, values: tuple[int, ...] = (0, 3, 7)) -> np.ndarray:
    """A 64 x 64 label with a block of each change value (sizes vary with ``seed``)."""
    label = np.full((SIDE, SIDE), values[0], np.uint8)
    label[4:20 + 4 * seed, 6:30] = values[1]
    if len(values) > 2:
        label[36:60, 10 + 5 * seed:58] = values[2]
    return label


def write_dataset(root: Path, values: tuple[int, ...] = (0, 3, 7), splits: tuple[str, ...] = ("test", "val")) -> Path:
    """Pairs of random images in ``<split>/{A,B,label}`` with grey class labels holding ``values``."""
    rng = np.random.default_rng(1)
    for split in splits:
        for seed, name in enumerate(NAMES):
            write_image(root / split / "A" / name, rng.integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8))
            write_image(root / split / "B" / name, rng.integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8))
            write_image(root / split / "label" / name, class_label(seed, values))
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("kclass") / "ds")


@pytest.fixture(scope="module")
def net() -> MMChange:
    torch.manual_seed(0)
    return MMChange(ModelConfig("resnet18", "image-only", num_classes=3)).eval()


@pytest.fixture(scope="module")
def checkpoint(net: MMChange, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kclass_ckpt")
    return save_checkpoint(folder / "k.safetensors", net,
                           CheckpointMeta(model=net.config, classes=SCHEME, tile_size=64))


def detector(net: MMChange, scheme: ClassScheme = SCHEME) -> ChangeDetector:
    return ChangeDetector(net, CheckpointMeta(model=net.config, classes=scheme, tile_size=64), device="cpu")


def label_indices(path: Path) -> np.ndarray:
    """The class indices of a label, mapped by hand from the test's values (0, 3, 7) -> (0, 1, 2)."""
    values = np.asarray(Image.open(path))
    return np.select([values == 0, values == 3, values == 7], [0, 1, 2], -1)


def test_one_class_confusion_counts_every_pixel(dataset: Path, net: MMChange) -> None:
    det = detector(net)
    layout = detect_layout(dataset)
    result = evaluate(det, layout, "test", gallery=2, collect_histogram=True)
    assert result.multiclass and result.scheme == SCHEME
    matrix = result.confusion.matrix
    assert matrix.shape == (3, 3) and result.confusion.total == len(NAMES) * SIDE * SIDE
    # the rows are the label classes: their sums are the label's pixels of each class
    labels = [label_indices(p.label) for p in layout.pairs("test")]
    assert matrix.sum(axis=1).tolist() == np.bincount(np.concatenate([x.ravel() for x in labels]), minlength=3).tolist()
    # each pair: its confusion is the one of the detector's own decision, summed into the split's
    pair = layout.pairs("test")[1]
    from mmchange_core.io.images import read_rgb

    _, index = det.decision_map(read_rgb(pair.image_a), read_rgb(pair.image_b))
    by_hand = np.zeros((3, 3), np.int64)
    np.add.at(by_hand, (labels[1].ravel(), index.ravel()), 1)
    assert result.per_image[1].classes.matrix.tolist() == by_hand.tolist()
    assert sum(r.classes for r in result.per_image).matrix.tolist() == matrix.tolist()
    # binary statistics are any change against none, and the histogram counts changed label pixels
    assert result.stats == change_stats(result.confusion) == sum((r.stats for r in result.per_image), ConfusionStats())
    assert int(result.histogram.positive.sum()) == int(sum((x > 0).sum() for x in labels))
    metrics = result.metrics()
    assert metrics["f1"] == metrics["change_f1"] and "mean_f1" in metrics and "miou" in metrics
    # the gallery is ordered by the mean class F1 of each pair, worst first
    ranked = sorted(result.per_image, key=lambda r: (class_gallery_score(r.classes),
                                                     -(r.classes.total - int(np.trace(r.classes.matrix))), r.index))
    assert [g.pair.name for g in result.gallery] == [r.pair.name for r in ranked[:2]]
    assert result.gallery[0].pictures["label"].shape == (SIDE, SIDE, 3)  # drawn in the class colours
    # the threshold applies to 1 - p(no change): above every probability nothing is change, at 0 everything is
    none = evaluate(det, layout, "test", threshold=1.0)
    assert none.confusion.matrix[:, 1:].sum() == 0 and det.threshold == det.decision.threshold == 0.5
    every = evaluate(det, layout, "test", threshold=0.0)
    assert every.confusion.matrix[:, 0].sum() == 0


def test_eval_run_writes_per_class_outputs(dataset: Path, checkpoint: Path, tmp_path: Path) -> None:
    pred_dir = tmp_path / "pred"
    report = run_evaluation(EvalOptions(checkpoint=str(checkpoint), dataset=str(dataset), save_vis=True,
                                        save_pred=str(pred_dir), project=str(tmp_path / "runs"), detector=CPU))
    summary = json.loads((report.run_dir / "metrics.json").read_text())
    metrics = summary["metrics"]
    assert metrics == json.loads(json.dumps(report.metrics()))
    assert {"precision", "recall", "f1", "iou", "oa", "kappa", "tp", "fp", "fn", "tn", "change_f1", "mean_f1", "miou",
            "class_oa", "per_class", "confusion"} <= set(metrics)
    assert [(r["value"], r["name"]) for r in metrics["per_class"]] == [(0, "no change"), (3, "new building"),
                                                                       (7, "demolished")]
    assert metrics["confusion"]["classes"] == ["no change", "new building", "demolished"]
    assert summary["classes"][1] == {"value": 3, "name": "new building", "colour": [230, 25, 75]}
    # the means are those of the written matrix (reduced here by hand)
    m = np.asarray(metrics["confusion"]["matrix"])
    f1s = [2 * m[i, i] / (m[i, :].sum() + m[:, i].sum()) for i in (1, 2) if m[i, :].sum() + m[:, i].sum()]
    assert metrics["mean_f1"] == pytest.approx(sum(f1s) / len(f1s), abs=1e-12)
    assert metrics["class_oa"] == pytest.approx(np.trace(m) / m.sum(), abs=1e-12)
    # metrics.csv: one row per class, then the mean and any change; per_image.csv: mean F1 and F1 of each class
    with open(report.run_dir / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["value"], r["name"]) for r in rows] == [("0", "no change"), ("3", "new building"), ("7", "demolished"),
                                                       ("", "mean of change classes"), ("", "any change")]
    assert float(rows[1]["f1"]) == pytest.approx(metrics["per_class"][1]["f1"], abs=1e-6)
    assert float(rows[3]["f1"]) == pytest.approx(metrics["mean_f1"], abs=1e-6)
    assert float(rows[4]["f1"]) == pytest.approx(metrics["change_f1"], abs=1e-6)
    with open(report.run_dir / "per_image.csv", newline="") as handle:
        images = list(csv.DictReader(handle))
    assert {"mean_f1", "f1_new building", "f1_demolished"} <= set(images[0]) and len(images) == len(NAMES)
    # --json carries the same keys
    data = report.to_dict()
    assert data["mean_f1"] == metrics["mean_f1"] and data["per_class"] == report.metrics()["per_class"]
    # masks: palette PNGs of the class file's values, in its colours
    for name in NAMES:
        with Image.open(pred_dir / name) as mask:
            assert mask.mode == "P" and mask.getpalette()[9:12] == [230, 25, 75]
            assert set(np.unique(np.asarray(mask)).tolist()) <= {0, 3, 7}
    assert sorted(p.name for p in (report.run_dir / "vis").iterdir()) == sorted(NAMES)
    html = report.report.read_text(encoding="utf-8")
    assert "confusion matrix" in html and "demolished" in html and "mean class F1" in html


def test_a_label_value_outside_the_class_file_is_refused_before_any_output(dataset: Path, checkpoint: Path,
                                                                         tmp_path: Path) -> None:
    root = tmp_path / "ds"
    shutil.copytree(dataset, root)
    bad = class_label(2)
    bad[0, 0] = 5
    write_image(root / "test" / "label" / "p2.png", bad)
    with pytest.raises(InputError) as caught:
        run_evaluation(EvalOptions(checkpoint=str(checkpoint), dataset=str(root), save_pred=str(tmp_path / "pred"),
                                   save_vis=True, project=str(tmp_path / "runs"), detector=CPU))
    text = str(caught.value)
    assert "\n" not in text and "p2.png" in text and "value 5" in text
    assert not (tmp_path / "pred").exists() and not (tmp_path / "runs").exists()


def test_a_kclass_checkpoint_refuses_binary_labels(net: MMChange, checkpoint: Path, tmp_path: Path) -> None:
    binary = write_dataset(tmp_path / "binary", values=(0, 255), splits=("test",))
    with pytest.raises(InputError, match="value 255.*not in the class file"):
        run_evaluation(EvalOptions(checkpoint=str(checkpoint), dataset=str(binary), project=str(tmp_path / "runs"),
                                   detector=CPU))
    # 0/1 labels fit a class file 0, 1, 2, but a set of two values is a binary label set
    numbered = save_checkpoint(tmp_path / "n.safetensors", net, CheckpointMeta(
        model=net.config, classes=ClassScheme.numbered(3), tile_size=64))
    ones = write_dataset(tmp_path / "ones", values=(0, 1), splits=("test",))
    with pytest.raises(InputError, match="binary label set"):
        run_evaluation(EvalOptions(checkpoint=str(numbered), dataset=str(ones), project=str(tmp_path / "runs"),
                                   detector=CPU))
    assert not (tmp_path / "runs").exists()


def test_a_binary_checkpoint_refuses_class_labels(dataset: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model("resnet18", "image-only")
    binary = save_checkpoint(tmp_path / "b.safetensors", model, CheckpointMeta(model=model.config, tile_size=64))
    with pytest.raises(InputError, match="3 distinct values"):
        run_evaluation(EvalOptions(checkpoint=str(binary), dataset=str(dataset), project=str(tmp_path / "runs"),
                                   detector=CPU))
    assert not (tmp_path / "runs" / "eval" / "exp").exists()


def test_robustness_reports_per_class_f1(dataset: Path, checkpoint: Path, tmp_path: Path) -> None:
    report = run_robustness(RobustnessConfig(checkpoints=[str(checkpoint)], dataset=str(dataset), light=False,
                                             project=str(tmp_path / "runs"), detector=CPU))
    rows = json.loads(report.json_path.read_text())["rows"]
    assert [r["condition"] for r in rows] == ["clean", "noise"]
    for row in rows:
        assert [(c["value"], c["name"]) for c in row["per_class"]] == [(3, "new building"), (7, "demolished")]
        defined = [c["f1"] for c in row["per_class"]]
        assert 0.0 <= row["mean_f1"] <= 1.0 and min(defined) <= row["mean_f1"] <= max(defined)
    assert rows[0]["delta_mean_f1"] == 0.0
    assert rows[1]["delta_mean_f1"] == pytest.approx(rows[1]["mean_f1"] - rows[0]["mean_f1"], abs=1e-12)
    assert report.to_dict() == rows
    with open(report.csv_path, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert {"mean_f1", "delta_mean_f1", "f1_new building", "f1_demolished"} <= set(table[0])
    assert float(table[1]["f1_demolished"]) == pytest.approx(rows[1]["per_class"][1]["f1"], abs=1e-6)
    assert "F1 of each change class" in report.report.read_text(encoding="utf-8")


def test_cli_prints_the_per_class_tables(dataset: Path, checkpoint: Path, tmp_path: Path, cli) -> None:
    result = cli("eval", "--checkpoint", checkpoint, "--dataset", dataset, "--device", "cpu", "--workers", "0",
                 "--gallery", "0", "--project", tmp_path)
    assert result.exit_code == 0, result.output
    assert "per class (mean F1" in result.stdout and "new building" in result.stdout and "demolished" in result.stdout
    result = cli("robustness", "--checkpoint", checkpoint, "--dataset", dataset, "--noise", "--device", "cpu",
                 "--workers", "0", "--project", tmp_path)
    assert result.exit_code == 0, result.output
    assert "F1 per change class" in result.stdout and "demolished" in result.stdout
