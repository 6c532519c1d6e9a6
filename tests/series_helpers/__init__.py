"""Helpers of the time-series tests: a small detector trained on the synthetic data in the test setup
(:mod:`tests.series_helpers.trained`) and its session fixture (:mod:`tests.series_helpers.fixtures`)."""

from tests.series_helpers.trained import (
    SIZE,
    held_out_metrics,
    train_synthetic_detector,
    trained_detector,
)

__all__ = ["SIZE", "held_out_metrics", "train_synthetic_detector", "trained_detector"]
