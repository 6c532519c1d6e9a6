"""eval --save-vis pictures: the three error colours tinted on date B, with the colour key in the picture."""

from __future__ import annotations

import numpy as np
import pytest

from mmchange_core.reporting.visualize import FN_COLOUR, FP_COLOUR, MIN_WIDTH, TINT, TP_COLOUR, error_map, error_overlay


def test_errors_are_tinted_on_the_image_with_a_key() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 300, 3), dtype=np.uint8)
    pred = np.zeros((40, 300), bool)
    target = np.zeros((40, 300), bool)
    pred[:, :100] = target[:, :100] = True           # true change
    target[:, 100:200] = True                        # missed
    pred[:, 200:250] = True                          # false alarm; 250: correctly unchanged
    picture = error_overlay(pred, target, image)
    body, key = picture[:40], picture[40:]
    expected = lambda colour, part: np.rint((1 - TINT) * part + TINT * np.asarray(colour, float))  # noqa: E731
    np.testing.assert_array_equal(body[:, :100], expected(TP_COLOUR, image[:, :100].astype(float)))
    np.testing.assert_array_equal(body[:, 100:200], expected(FN_COLOUR, image[:, 100:200].astype(float)))
    np.testing.assert_array_equal(body[:, 200:250], expected(FP_COLOUR, image[:, 200:250].astype(float)))
    np.testing.assert_array_equal(body[:, 250:], image[:, 250:])      # the image shows where all is well
    assert key.shape[0] >= 12
    for colour in (TP_COLOUR, FN_COLOUR, FP_COLOUR):                    # solid swatches of the three colours
        assert (key == colour).all(axis=2).sum() >= 25, colour
    np.testing.assert_array_equal(error_map(pred, target, image), body)


def test_narrow_pictures_are_enlarged_and_shapes_checked() -> None:
    image = np.zeros((32, 64, 3), np.uint8)
    picture = error_overlay(np.zeros((32, 64), bool), np.ones((32, 64), bool), image)
    assert picture.shape[1] == MIN_WIDTH and (picture[:128] == np.rint(TINT * np.asarray(FN_COLOUR))).all()
    with pytest.raises(ValueError, match="shapes differ"):
        error_overlay(np.zeros((32, 64), bool), np.zeros((32, 64), bool), np.zeros((30, 64, 3), np.uint8))
