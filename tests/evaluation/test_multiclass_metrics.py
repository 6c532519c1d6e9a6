"""K-class metrics: a hand-written confusion reduced by hand (one-vs-rest P/R/F1/IoU, means over the change
classes, any change against none, overall accuracy), accumulation with ``+`` and the gallery score."""

from __future__ import annotations

import numpy as np
import pytest

from mmchange_core.evaluation.evaluate import class_gallery_score
from mmchange_core.metrics import (
    ClassConfusion,
    ConfusionStats,
    change_stats,
    class_accuracy,
    class_confusion,
    class_stats,
    mean_f1,
    mean_iou,
    per_class,
    summarize_classes,
)

#: rows = label, columns = prediction, written by hand:
#:   label 0: 5 right, 1 as class 1;  label 1: 2 as no change, 3 right, 1 as class 2;  label 2: 1 as class 1, 4 right
HAND = [[5, 1, 0],
        [2, 3, 1],
        [0, 1, 4]]


def pixels(matrix: list[list[int]], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, label) index maps holding exactly ``matrix`` (shuffled, as a 1 x N image)."""
    truth = np.concatenate([np.full(n, t) for t, row in enumerate(matrix) for p, n in enumerate(row)])
    pred = np.concatenate([np.full(n, p) for t, row in enumerate(matrix) for p, n in enumerate(row)])
    order = np.random.default_rng(seed).permutation(truth.size)
    return pred[order].astype(np.uint8)[None], truth[order].astype(np.uint8)[None]


def test_confusion_is_counted_with_label_rows_and_prediction_columns() -> None:
    pred, truth = pixels(HAND)
    c = class_confusion(pred, truth, 3)
    assert c.matrix.tolist() == HAND and c.matrix.dtype == np.int64 and c.total == 17 and c.classes == 3
    # adding two halves gives the whole; sum() starts from 0
    half = truth.shape[1] // 2
    parts = [class_confusion(pred[:, :half], truth[:, :half], 3), class_confusion(pred[:, half:], truth[:, half:], 3)]
    assert sum(parts) == c and parts[0] + parts[1] == c
    assert ClassConfusion.from_tensor(c.as_tensor()) == c
    with pytest.raises(ValueError, match="outside 0..2"):
        class_confusion(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="shape"):
        class_confusion(np.zeros((2, 2)), np.zeros(4), 3)


def test_one_vs_rest_metrics_match_hand_computed_values() -> None:
    c = ClassConfusion(np.array(HAND))
    # class 0: tp 5, fp 2 (label 1 predicted 0), fn 1 (predicted 1), tn 17 - 8 = 9
    assert class_stats(c, 0) == ConfusionStats(5, 2, 1, 9)
    # class 1: tp 3, fp 1 + 1, fn 2 + 1, tn 17 - 8
    assert class_stats(c, 1) == ConfusionStats(3, 2, 3, 9)
    # class 2: tp 4, fp 1, fn 1, tn 11
    assert class_stats(c, 2) == ConfusionStats(4, 1, 1, 11)
    rows = per_class(c, ("no change", "new building", "demolished"), (0, 3, 7))
    expected = [  # (precision, recall, f1, iou) by hand
        (5 / 7, 5 / 6, 10 / 13, 5 / 8),
        (3 / 5, 1 / 2, 6 / 11, 3 / 8),
        (4 / 5, 4 / 5, 4 / 5, 2 / 3),
    ]
    for row, (p, r, f, i), value, name, support, predicted in zip(
            rows, expected, (0, 3, 7), ("no change", "new building", "demolished"), (6, 6, 5), (7, 5, 5)):
        assert (row["precision"], row["recall"], row["f1"], row["iou"]) == pytest.approx((p, r, f, i), abs=1e-12)
        assert (row["value"], row["name"], row["support"], row["predicted"]) == (value, name, support, predicted)
    assert mean_f1(c) == pytest.approx((6 / 11 + 4 / 5) / 2, abs=1e-12)   # 37/55: no change left out
    assert mean_iou(c) == pytest.approx((3 / 8 + 2 / 3) / 2, abs=1e-12)   # 25/48
    assert class_accuracy(c) == pytest.approx(12 / 17, abs=1e-12)
    # any change against none: tn = 5, fp = 1 (no change predicted as class 1), fn = 2, tp = 17 - 8 = 9
    assert change_stats(c) == ConfusionStats(9, 1, 2, 5)


def test_summary_keeps_the_binary_keys_and_adds_the_class_keys() -> None:
    c = ClassConfusion(np.array(HAND))
    summary = summarize_classes(c, ("no change", "new building", "demolished"), (0, 3, 7))
    assert summary["f1"] == summary["change_f1"] == pytest.approx(18 / 21, abs=1e-12)
    assert (summary["tp"], summary["fp"], summary["fn"], summary["tn"]) == (9, 1, 2, 5)
    assert summary["oa"] == pytest.approx(14 / 17, abs=1e-12)
    assert summary["mean_f1"] == pytest.approx(37 / 55, abs=1e-12)
    assert summary["miou"] == pytest.approx(25 / 48, abs=1e-12)
    assert summary["class_oa"] == pytest.approx(12 / 17, abs=1e-12)
    assert [r["name"] for r in summary["per_class"]] == ["no change", "new building", "demolished"]
    assert summary["confusion"] == {"rows": "label", "columns": "prediction",
                                    "classes": ["no change", "new building", "demolished"], "values": [0, 3, 7],
                                    "matrix": HAND}
    assert {"precision", "recall", "iou", "kappa"} <= set(summary)


def test_absent_change_classes_are_left_out_of_the_means() -> None:
    # class 3 is in neither label nor prediction: the means are those of classes 1 and 2 (by hand: F1 1 and 0)
    c = ClassConfusion(np.array([[4, 0, 1, 0],
                                 [0, 2, 0, 0],
                                 [0, 0, 0, 0],
                                 [0, 0, 0, 0]]))
    assert mean_f1(c) == pytest.approx((1.0 + 0.0) / 2, abs=1e-12)
    assert mean_iou(c) == pytest.approx((1.0 + 0.0) / 2, abs=1e-12)
    nothing = ClassConfusion(np.array([[9, 0, 0], [0, 0, 0], [0, 0, 0]]))
    assert mean_f1(nothing) == mean_iou(nothing) == 0.0  # no change class defined: 0 by convention
    assert class_gallery_score(nothing) == 1.0            # nothing to find and nothing found ranks as perfect
    assert class_gallery_score(c) == pytest.approx(0.5, abs=1e-12)
