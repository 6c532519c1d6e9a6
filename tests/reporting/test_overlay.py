"""The predict overlay: the outline on both dates side by side, a header naming them, big scenes downsampled."""

from __future__ import annotations

import numpy as np
from PIL import Image

from mmchange_core.io.raster import ArraySource
from mmchange_core.reporting.overlay import (
    GAP,
    OUTLINE_COLOR,
    OVERLAY_MAX_SIDE,
    overlay_geometry,
    overlay_picture,
    pool_any,
    write_overlay,
)

DARK, BRIGHT = (20, 40, 60), (230, 220, 200)


def _source(height: int, width: int, colour: tuple[int, int, int], name: str) -> ArraySource:
    return ArraySource(np.full((height, width, 3), colour, np.uint8), name)


def _body(picture: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The two halves of the picture (found as the first rows where the left half is the dark date)."""
    dark = (picture[:, :width] == DARK).all(axis=2).mean(axis=1)
    top = int(np.argmax(dark > 0.5))
    return picture[top:top + height, :width], picture[top:top + height, width + GAP:2 * width + GAP], top


def test_outline_on_both_dates_with_a_header(tmp_path) -> None:
    mask = np.zeros((300, 400), np.uint8)
    mask[100:200, 150:300] = 255
    path = write_overlay(tmp_path / "overlay.png", _source(300, 400, DARK, "before.png"),
                         _source(300, 400, BRIGHT, "after.png"), mask)
    picture = np.asarray(Image.open(path))
    assert picture.shape[1] == 2 * 400 + GAP
    left, right, top = _body(picture, 300, 400)
    assert top > 10                                                  # a header strip above the images
    header = picture[:top]
    assert (header == 255).all(axis=2).mean() > 0.8 and (header < 100).all(axis=2).any()   # white with dark text
    assert picture.shape[0] > top + 300                              # and a colour key below
    for half, colour in ((left, DARK), (right, BRIGHT)):
        red = (half == OUTLINE_COLOR).all(axis=2)
        assert red.any() and (red <= (mask > 0)).all()               # outline only on changed pixels
        assert ((half == colour).all(axis=2) | red).all()            # everything else is that date
        assert not red[150, 225]                                     # the inside is left as it was
    np.testing.assert_array_equal((left == OUTLINE_COLOR).all(axis=2), (right == OUTLINE_COLOR).all(axis=2))


def test_big_scenes_are_downsampled_and_small_changes_survive() -> None:
    height, width = 4500, 1200
    mask = np.zeros((height, width), np.uint8)
    mask[3000:3002, 600:602] = 1                                     # 2x2 pixels in a 4500 px scene
    out_h, out_w, enlarge = overlay_geometry(height, width)
    assert out_h == OVERLAY_MAX_SIDE and enlarge == 1
    pooled = pool_any(mask, out_h, out_w)
    assert pooled.sum() >= 1 and abs(np.argwhere(pooled)[0][0] - 3000 * out_h / height) <= 1
    picture = overlay_picture(_source(height, width, DARK, "a"), _source(height, width, BRIGHT, "b"), mask)
    assert picture.shape[1] == 2 * out_w + GAP and picture.shape[0] < out_h + 200
    left, right, _ = _body(picture, out_h, out_w)
    assert (left == OUTLINE_COLOR).all(axis=2).any() and (right == OUTLINE_COLOR).all(axis=2).any()


def test_small_images_are_enlarged() -> None:
    assert overlay_geometry(64, 96) == (64 * 3, 96 * 3, 3)
    mask = np.zeros((64, 96), bool)
    mask[10:30, 20:50] = True
    picture = overlay_picture(_source(64, 96, DARK, "a"), _source(64, 96, BRIGHT, "b"), mask)
    left, right, _ = _body(picture, 192, 288)
    assert (right == BRIGHT).all(axis=2).mean() > 0.9 and (left == OUTLINE_COLOR).all(axis=2).any()
