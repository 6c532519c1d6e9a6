"""Small pictures for the HTML reports: downsampled images and masks, encoded bytes.

Reports embed their pictures, so every picture is downsampled to at most :data:`THUMB_SIDE` pixels
on its long side and compressed (JPEG for photographs, PNG for masks and flat colours). Masks are
downsampled with "any change in the block" so a small change stays visible.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from mmchange_core.io.classes import ClassScheme
from mmchange_core.reporting.overlay import pool_any, pool_classes

#: Longest side of a report picture, in pixels.
THUMB_SIDE = 320

#: The three colours of an error overlay drawn on the image (Okabe-Ito, distinct under colour blindness);
#: used by the reports' galleries and by ``eval --save-vis`` (:mod:`~mmchange_core.reporting.visualize`).
ERROR_COLOURS: dict[str, tuple[int, int, int]] = {
    "true change": (240, 228, 66),   # yellow: changed, and predicted as change
    "missed": (86, 180, 233),        # sky blue: changed, predicted as unchanged (false negative)
    "false alarm": (213, 94, 0),     # vermillion: unchanged, predicted as change (false positive)
}
#: Tint of change pixels given the wrong change class in a K-class error picture (Okabe-Ito reddish purple).
WRONG_CLASS_COLOUR = (204, 121, 167)


def fit(height: int, width: int, max_side: int = THUMB_SIDE) -> tuple[int, int]:
    """``(height, width)`` scaled down (never up) so the long side is at most ``max_side``."""
    scale = min(1.0, max_side / max(height, width, 1))
    return max(1, round(height * scale)), max(1, round(width * scale))


def thumbnail(image: np.ndarray, max_side: int = THUMB_SIDE) -> np.ndarray:
    """A uint8 image (``[H, W]`` or ``[H, W, 3]``) downsampled by area average to at most ``max_side``."""
    image = np.ascontiguousarray(image)
    h, w = fit(*image.shape[:2], max_side)
    if (h, w) == image.shape[:2]:
        return image
    return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BOX))


def mask_thumbnail(mask: np.ndarray, max_side: int = THUMB_SIDE) -> np.ndarray:
    """A bool mask downsampled to at most ``max_side``: a thumbnail pixel is set when any pixel of its block is."""
    h, w = fit(*np.shape(mask), max_side)
    if (h, w) == np.shape(mask):
        return np.asarray(mask) > 0
    return pool_any(mask, h, w)


def class_colours(values: np.ndarray, classes: ClassScheme) -> np.ndarray:
    """A class map (uint8 label values) as an RGB picture in the class colours (no change black)."""
    return np.asarray(classes.palette(), dtype=np.uint8).reshape(256, 3)[values]


def class_thumbnail(values: np.ndarray, classes: ClassScheme, max_side: int = THUMB_SIDE) -> np.ndarray:
    """A class map (label values) as a colour picture of at most ``max_side``: a thumbnail pixel shows a change
    class present in its block (the last listed when several are), so a small change stays visible as in
    :func:`mask_thumbnail`."""
    h, w = fit(*values.shape, max_side)
    if (h, w) != values.shape:
        values = pool_classes(values, h, w, tuple(c.value for c in classes.change_classes))
    return class_colours(values, classes)


def error_blend(image: np.ndarray, pred: np.ndarray, target: np.ndarray, alpha: float = 0.65) -> np.ndarray:
    """``image`` (uint8 RGB) with true change, missed and false-alarm pixels tinted in :data:`ERROR_COLOURS`."""
    pred, target = np.asarray(pred).astype(bool), np.asarray(target).astype(bool)
    out = image.astype(np.float32)
    for where, colour in ((pred & target, ERROR_COLOURS["true change"]), (~pred & target, ERROR_COLOURS["missed"]),
                          (pred & ~target, ERROR_COLOURS["false alarm"])):
        out[where] = (1 - alpha) * out[where] + alpha * np.asarray(colour, np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def class_error_blend(image: np.ndarray, pred: np.ndarray, target: np.ndarray, alpha: float = 0.65) -> np.ndarray:
    """:func:`error_blend` of any change, with change pixels given the wrong change class tinted in
    :data:`WRONG_CLASS_COLOUR` instead of as true change (``pred``, ``target``: class maps, 0 = no change)."""
    out = error_blend(image, pred > 0, target > 0, alpha)
    wrong = (pred > 0) & (target > 0) & (pred != target)
    tinted = (1 - alpha) * image[wrong].astype(np.float32) + alpha * np.asarray(WRONG_CLASS_COLOUR, np.float32)
    out[wrong] = np.clip(np.rint(tinted), 0, 255).astype(np.uint8)
    return out


def encode(image: np.ndarray, fmt: str = "auto", quality: int = 82) -> tuple[bytes, str]:
    """``(bytes, mime type)`` of a uint8/bool image: JPEG for photographs, PNG for masks (``fmt='auto'``)."""
    image = np.asarray(image)
    if image.dtype == np.bool_:
        image = image.astype(np.uint8) * 255
    if fmt == "auto":
        fmt = "png" if image.ndim == 2 or len(np.unique(image.reshape(-1, image.shape[-1])[::7], axis=0)) <= 16 \
            else "jpeg"
    buffer = io.BytesIO()
    picture = Image.fromarray(np.ascontiguousarray(image))
    if fmt == "jpeg":
        picture.convert("RGB").save(buffer, format="JPEG", quality=quality, optimize=True)
        return buffer.getvalue(), "image/jpeg"
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue(), "image/png"
