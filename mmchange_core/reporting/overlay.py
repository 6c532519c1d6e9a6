"""The predicted change outlined on both dates, side by side (A | B), under a header that names them.

The overlay is a picture to look at, not a raster for GIS (use the mask, probability or vector
outputs for that): scenes larger than :data:`OVERLAY_MAX_SIDE` are area-averaged down (each source
read through its thumbnail, the mask pooled strip by strip so that any changed pixel survives),
small images are enlarged by an integer factor so the header stays readable. The class map of a K-class
network is drawn by class: each change class tinted and outlined in its class file colour, with a key of
the class colours and names under the picture.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from mmchange_core.io.classes import ClassScheme
from mmchange_core.io.raster import RasterSource, write_image
from mmchange_core.reporting.legend import fit_text, font_size_for, legend_strip

#: Outline colour (RGB).
OUTLINE_COLOR = (255, 0, 0)
#: Longest side of each date in the picture; larger scenes are downsampled to it.
OVERLAY_MAX_SIDE = 2048
#: Shorter images are enlarged (nearest neighbour, integer factor) to at least this longest side.
OVERLAY_MIN_SIDE = 256
#: White gap between the two dates, in pixels.
GAP = 8
#: Source rows pooled at a time when the mask is downsampled.
STRIP_ROWS = 512
#: How strongly a class colour tints its pixels in a K-class overlay (0: outline only, 1: solid colour).
CLASS_TINT = 0.35


def outline_thickness(height: int, width: int) -> int:
    """Line width that stays visible when the image is viewed whole: 1 px per 512 px of the long side."""
    return max(1, round(max(height, width) / 512))


def _shift_or(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a (2r+1)^2 square, separably, with numpy shifts."""
    out = mask.copy()
    for axis in (0, 1):
        grown = out.copy()
        for step in range(1, radius + 1):
            if axis == 0:
                grown[step:] |= out[:-step]
                grown[:-step] |= out[step:]
            else:
                grown[:, step:] |= out[:, :-step]
                grown[:, :-step] |= out[:, step:]
        out = grown
    return out


def outlines(mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Boundary pixels of the change regions (inner edge, ``thickness`` pixels wide)."""
    mask = np.asarray(mask, dtype=bool)
    eroded = ~_shift_or(~np.pad(mask, 1, mode="edge"), 1)[1:-1, 1:-1]
    edge = mask & ~eroded
    return _shift_or(edge, thickness - 1) & mask if thickness > 1 else edge


def overlay_geometry(height: int, width: int) -> tuple[int, int, int]:
    """``(out_height, out_width, enlarge)`` of each date in the picture: downsampled to at most
    :data:`OVERLAY_MAX_SIDE` (rounded like :meth:`RasterSource.thumbnail`), or enlarged ``enlarge`` times."""
    side = max(height, width)
    if side > OVERLAY_MAX_SIDE:
        scale = OVERLAY_MAX_SIDE / side
        return max(1, round(height * scale)), max(1, round(width * scale)), 1
    enlarge = max(1, math.ceil(OVERLAY_MIN_SIDE / side)) if side < OVERLAY_MIN_SIDE else 1
    return height * enlarge, width * enlarge, enlarge


def _edges(size: int, out: int) -> np.ndarray:
    return (np.arange(out, dtype=np.int64) * size) // out


def pool_any(mask: np.ndarray, out_height: int, out_width: int) -> np.ndarray:
    """``mask`` reduced to ``[out_height, out_width]`` (each output pixel: any changed pixel in its area), read
    :data:`STRIP_ROWS` output rows at a time so a memory-mapped mask is never copied whole."""
    height, width = mask.shape
    rows, cols = _edges(height, out_height), _edges(width, out_width)
    out = np.zeros((out_height, out_width), dtype=bool)
    for r0 in range(0, out_height, STRIP_ROWS):
        r1 = min(out_height, r0 + STRIP_ROWS)
        y0, y1 = rows[r0], (rows[r1] if r1 < out_height else height)
        strip = np.asarray(mask[y0:y1]) > 0
        pooled = np.logical_or.reduceat(strip, cols, axis=1)
        out[r0:r1] = np.logical_or.reduceat(pooled, rows[r0:r1] - y0, axis=0)
    return out


def pool_classes(values: np.ndarray, out_height: int, out_width: int, order: tuple[int, ...]) -> np.ndarray:
    """A class map reduced to ``[out_height, out_width]`` (uint8 values): an output pixel takes the last value of
    ``order`` present in its area (0 where none is), so that a small region of any class stays visible."""
    height, width = values.shape
    rows, cols = _edges(height, out_height), _edges(width, out_width)
    out = np.zeros((out_height, out_width), dtype=np.uint8)
    for r0 in range(0, out_height, STRIP_ROWS):
        r1 = min(out_height, r0 + STRIP_ROWS)
        y0, y1 = rows[r0], (rows[r1] if r1 < out_height else height)
        strip = np.asarray(values[y0:y1])
        for value in order:
            hit = strip == value
            if hit.any():
                pooled = np.logical_or.reduceat(np.logical_or.reduceat(hit, cols, axis=1), rows[r0:r1] - y0, axis=0)
                out[r0:r1][pooled] = value
    return out


def class_picture_map(values: np.ndarray, out_height: int, out_width: int, enlarge: int,
                      classes: ClassScheme) -> np.ndarray:
    """The class map at picture size: enlarged ``enlarge`` times, pooled by :func:`pool_classes`, or as it is."""
    if enlarge > 1:
        return np.repeat(np.repeat(np.asarray(values), enlarge, axis=0), enlarge, axis=1)
    if (out_height, out_width) != values.shape:
        return pool_classes(values, out_height, out_width, tuple(c.value for c in classes.change_classes))
    return np.asarray(values)


def paint_classes(view: np.ndarray, small: np.ndarray, classes: ClassScheme, thickness: int) -> None:
    """Tint each change class's pixels of ``view`` (uint8 RGB, in place) with its colour and outline its regions."""
    for cls in classes.change_classes:
        where = small == cls.value
        if not where.any():
            continue
        colour = np.asarray(cls.colour, np.float32)
        view[where] = np.rint((1 - CLASS_TINT) * view[where] + CLASS_TINT * colour).astype(np.uint8)
        view[outlines(where, thickness)] = cls.colour


def _view(source: RasterSource, out_h: int, out_w: int, enlarge: int) -> np.ndarray:
    """One date at picture size (uint8 RGB)."""
    if enlarge > 1:
        image = np.asarray(source.read_rows(0, source.height))
        return np.repeat(np.repeat(image, enlarge, axis=0), enlarge, axis=1)
    image = np.asarray(source.thumbnail(max(out_h, out_w)))
    return image if image.shape[:2] == (out_h, out_w) else _resize(image, out_h, out_w)


def _resize(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((out_w, out_h), Image.Resampling.BOX))


def overlay_picture(image_a: RasterSource, image_b: RasterSource, mask: np.ndarray, *,
                    labels: tuple[str, str] | None = None, thickness: int | None = None,
                    color: tuple[int, int, int] = OUTLINE_COLOR, classes: ClassScheme | None = None) -> np.ndarray:
    """uint8 RGB picture: a header naming the dates, then A | B with the outlines of ``mask``, then a colour key.

    With ``classes`` (a K-class network), ``mask`` is its class map (the class file's values, 0 = no change):
    each change class is tinted and outlined in its colour, and the key lists the class colours and names.
    """
    height, width = mask.shape
    out_h, out_w, enlarge = overlay_geometry(height, width)
    thickness = thickness or outline_thickness(out_h, out_w)
    if classes is not None:
        small = class_picture_map(mask, out_h, out_w, enlarge, classes)
    elif enlarge > 1:
        small = np.repeat(np.repeat(np.asarray(mask) > 0, enlarge, axis=0), enlarge, axis=1)
    elif (out_h, out_w) != (height, width):
        small = pool_any(mask, out_h, out_w)
    else:
        small = np.asarray(mask) > 0
    edge = outlines(small, thickness) if classes is None else None
    halves = []
    for source in (image_a, image_b):
        view = np.array(_view(source, out_h, out_w, enlarge), copy=True)
        if classes is None:
            view[edge] = color
        else:
            paint_classes(view, small, classes, thickness)
        halves.append(view)
    size = font_size_for(out_w)
    names = labels or (f"A (before): {image_a.name}", f"B (after): {image_b.name}")
    titles = [legend_strip(out_w, [(None, fit_text(name, out_w - size, size))], size=size) for name in names]
    gap = np.full((out_h, GAP, 3), 255, np.uint8)
    top = np.concatenate([titles[0], np.full((titles[0].shape[0], GAP, 3), 255, np.uint8), titles[1]], axis=1)
    body = np.concatenate([halves[0], gap, halves[1]], axis=1)
    changed = float(np.count_nonzero(np.asarray(mask))) / max(1, height * width)
    scale = (f"shown at {out_w / width:.2g}x of {width}x{height} px" if (out_w, out_h) != (width, height)
             else f"{width}x{height} px")
    marks = ([(color, "predicted change (outline)")] if classes is None
             else [(cls.colour, cls.name) for cls in classes.change_classes])
    key = legend_strip(body.shape[1], [*marks, (None, f"{100 * changed:.1f}% of pixels changed"), (None, scale)],
                       size=size)
    return np.concatenate([top, body, key], axis=0)


def write_overlay(path: str | Path, image_a: RasterSource, image_b: RasterSource, mask: np.ndarray, *,
                  labels: tuple[str, str] | None = None, thickness: int | None = None,
                  color: tuple[int, int, int] = OUTLINE_COLOR, classes: ClassScheme | None = None) -> Path:
    """Write :func:`overlay_picture` (PNG/JPEG/TIFF, atomically; not georeferenced: it is a picture)."""
    return write_image(path, overlay_picture(image_a, image_b, mask, labels=labels, thickness=thickness, color=color,
                                             classes=classes))
