"""Error maps: where a prediction agrees with its label, drawn on the second date with a colour key.

True change, missed change (false negative) and false alarm (false positive) are tinted over the
image; pixels correctly left unchanged show the image as it is. The three colours stay apart for
the common colour-vision deficiencies (yellow, blue and vermilion differ in hue and lightness).
The eval report's gallery uses the same colours (:func:`error_map`).
"""

from __future__ import annotations

import math

import numpy as np

from mmchange_core.io.classes import ClassScheme
from mmchange_core.reporting.legend import class_entries, font_size_for, legend_strip
from mmchange_core.reporting.thumbnails import class_colours

#: Tint of correctly detected change (true positive).
TP_COLOUR = (255, 221, 0)
#: Tint of missed change (false negative).
FN_COLOUR = (0, 114, 255)
#: Tint of false alarms (false positive).
FP_COLOUR = (230, 60, 0)
#: Weight of the tint over the image (1: solid colour).
TINT = 0.6
#: Narrower pictures are enlarged (nearest neighbour, integer factor) to at least this width, so the key is readable.
MIN_WIDTH = 256
#: The colour key drawn under :func:`error_overlay`.
ERROR_KEY = [(TP_COLOUR, "true change"), (FN_COLOUR, "missed"), (FP_COLOUR, "false alarm")]


def error_map(pred: np.ndarray, target: np.ndarray, image: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, 3]``: ``image`` (RGB, the second date) with TP, FN and FP pixels tinted."""
    pred = np.asarray(pred).astype(bool)
    target = np.asarray(target).astype(bool)
    image = np.asarray(image)
    if image.shape[:2] != pred.shape or pred.shape != target.shape:
        raise ValueError(f"shapes differ: prediction {pred.shape}, label {target.shape}, image {image.shape[:2]}")
    out = image[..., :3].astype(np.float32)
    for where, colour in ((pred & target, TP_COLOUR), (~pred & target, FN_COLOUR), (pred & ~target, FP_COLOUR)):
        out[where] = (1 - TINT) * out[where] + TINT * np.asarray(colour, np.float32)
    return np.rint(out).astype(np.uint8)


def error_overlay(pred: np.ndarray, target: np.ndarray, image: np.ndarray) -> np.ndarray:
    """:func:`error_map` (enlarged to at least :data:`MIN_WIDTH` px wide) with a colour key strip below it."""
    picture = error_map(pred, target, image)
    enlarge = max(1, math.ceil(MIN_WIDTH / picture.shape[1]))
    if enlarge > 1:
        picture = np.repeat(np.repeat(picture, enlarge, axis=0), enlarge, axis=1)
    width = picture.shape[1]
    return np.concatenate([picture, legend_strip(width, ERROR_KEY, size=font_size_for(width))], axis=0)


def class_overlay(values: np.ndarray, image: np.ndarray, classes: ClassScheme) -> np.ndarray:
    """``image`` (RGB, the second date) with the predicted change classes (a class map of label values) tinted in
    their colours (enlarged to at least :data:`MIN_WIDTH` px wide), with the classes' colour key below (the
    ``--save-vis`` picture of K classes)."""
    out = image[..., :3].astype(np.float32)
    change = values > 0
    out[change] = (1 - TINT) * out[change] + TINT * class_colours(values[change], classes).astype(np.float32)
    picture = np.rint(out).astype(np.uint8)
    enlarge = max(1, math.ceil(MIN_WIDTH / picture.shape[1]))
    if enlarge > 1:
        picture = np.repeat(np.repeat(picture, enlarge, axis=0), enlarge, axis=1)
    width = picture.shape[1]
    change_classes = classes.change_classes
    key = class_entries([c.name for c in change_classes], [c.colour for c in change_classes])
    return np.concatenate([picture, legend_strip(width, key, size=font_size_for(width))], axis=0)
