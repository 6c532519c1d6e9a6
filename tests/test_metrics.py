"""Metrics against hand-computed confusion matrices, including images without any change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmchange_core.metrics import (
    ConfusionStats,
    ProbabilityHistogram,
    confusion_stats,
    f1,
    iou,
    kappa,
    overall_accuracy,
    precision,
    recall,
    summarize,
)


def test_hand_computed_case() -> None:
    pred = np.array([[1, 1, 1, 0], [0, 0, 0, 0]])
    target = np.array([[1, 1, 0, 1], [0, 0, 0, 0]])
    s = confusion_stats(pred, target)
    assert s == ConfusionStats(tp=2, fp=1, fn=1, tn=4)
    assert precision(s) == pytest.approx(2 / 3)
    assert recall(s) == pytest.approx(2 / 3)
    assert f1(s) == pytest.approx(2 / 3)
    assert iou(s) == pytest.approx(0.5)
    assert overall_accuracy(s) == pytest.approx(0.75)
    # kappa: po = 0.75, pe = (3*3 + 5*5) / 64
    pe = 34 / 64
    assert kappa(s) == pytest.approx((0.75 - pe) / (1 - pe))
    summary = summarize(s)
    assert summary["tp"] == 2 and summary["tn"] == 4 and isinstance(summary["fp"], int)
    assert set(summary) == {"precision", "recall", "f1", "iou", "oa", "kappa", "tp", "fp", "fn", "tn"}


def test_empty_change_image_gives_zero_not_nan() -> None:
    s = confusion_stats(np.zeros((4, 4), bool), np.zeros((4, 4), bool))
    assert s == ConfusionStats(0, 0, 0, 16)
    assert (precision(s), recall(s), f1(s), iou(s), kappa(s)) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert overall_accuracy(s) == 1.0
    # false alarms on an unchanged image: precision 0, OA drops, F1 stays defined
    pred = np.zeros((4, 4), bool)
    pred[0, :2] = True
    s = confusion_stats(pred, np.zeros((4, 4), bool))
    assert s == ConfusionStats(0, 2, 0, 14)
    assert f1(s) == 0.0 and overall_accuracy(s) == pytest.approx(14 / 16)
    assert kappa(s) == pytest.approx(0.0)  # po = pe = 14/16
    assert summarize(ConfusionStats())["oa"] == 0.0  # nothing counted


def test_perfect_prediction() -> None:
    t = np.eye(5, dtype=bool)
    s = confusion_stats(t, t)
    assert f1(s) == iou(s) == precision(s) == recall(s) == overall_accuracy(s) == kappa(s) == 1.0


def test_accumulation_is_global_not_a_per_image_mean() -> None:
    # image 1: one small object found; image 2: large object half missed
    p1, t1 = np.array([1, 0, 0, 0]), np.array([1, 0, 0, 0])
    p2, t2 = np.array([1, 1, 0, 0, 0, 0, 0, 0]), np.array([1, 1, 1, 1, 0, 0, 0, 0])
    s1, s2 = confusion_stats(p1, t1), confusion_stats(p2, t2)
    total = s1 + s2
    assert total == confusion_stats(np.concatenate([p1, p2]), np.concatenate([t1, t2]))
    assert sum([s1, s2]) == total
    assert f1(total) == pytest.approx(2 * 3 / (2 * 3 + 0 + 2))  # 0.75
    assert (f1(s1) + f1(s2)) / 2 == pytest.approx((1 + 2 / 3) / 2)  # 0.833..., not the protocol's number


def test_tensor_inputs_and_shape_errors() -> None:
    pred = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    target = torch.tensor([[0, 1], [0, 0]], dtype=torch.uint8)
    assert confusion_stats(pred, target) == ConfusionStats(1, 1, 0, 2)
    assert ConfusionStats.from_tensor(ConfusionStats(1, 2, 3, 4).as_tensor()) == ConfusionStats(1, 2, 3, 4)
    with pytest.raises(ValueError, match="shape"):
        confusion_stats(np.zeros((2, 2)), np.zeros((2, 3)))


def test_probability_histogram_matches_direct_counts_and_tunes() -> None:
    gen = torch.Generator().manual_seed(0)
    prob = torch.rand(64, 64, generator=gen)
    target = torch.rand(64, 64, generator=gen) < prob  # calibrated-ish
    hist = ProbabilityHistogram()
    hist.update(prob[:32], target[:32])
    other = ProbabilityHistogram()
    other.update(prob[32:], target[32:])
    hist += other
    for t in (0.25, 0.5, 0.8):
        assert hist.stats_at(t) == confusion_stats(prob > t, target)
    # separable case: changed pixels at 0.3051, unchanged at 0.1049 -> any threshold in between is perfect
    sep = ProbabilityHistogram()
    sep.update(torch.tensor([0.3051, 0.3051, 0.1049, 0.1049, 0.1049]), torch.tensor([1, 1, 0, 0, 0]))
    threshold, stats = sep.best_threshold()
    assert 0.1049 < threshold < 0.3051
    assert f1(stats) == 1.0 and stats == ConfusionStats(2, 0, 0, 3)
