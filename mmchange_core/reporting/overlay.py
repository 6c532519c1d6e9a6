"""Change outlines drawn on the second date, strip by strip (large scenes stay within memory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmchange_core.io.raster import RasterSource, open_row_writer

#: Outline colour (RGB).
OUTLINE_COLOR = (255, 0, 0)
#: Rows per overlay strip.
STRIP_ROWS = 512


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


def write_overlay(path: str | Path, image: RasterSource, mask: np.ndarray, thickness: int | None = None,
                  color: tuple[int, int, int] = OUTLINE_COLOR) -> Path:
    """Draw the outlines of ``mask`` on ``image`` (the second date) and write it (PNG/JPEG/TIFF, georeferenced
    like ``image`` when it is a GeoTIFF)."""
    height, width = mask.shape
    thickness = thickness or outline_thickness(height, width)
    halo = thickness + 1
    writer = open_row_writer(path, height, width, bands=3, georef=image.georef)
    try:
        for y0 in range(0, height, STRIP_ROWS):
            y1 = min(height, y0 + STRIP_ROWS)
            lo, hi = max(0, y0 - halo), min(height, y1 + halo)
            edge = outlines(mask[lo:hi], thickness)[y0 - lo:y0 - lo + (y1 - y0)]
            rows = np.array(image.read_rows(y0, y1 - y0), copy=True)
            rows[edge] = color
            writer.write(y0, rows)
    except BaseException:
        writer.abort()
        raise
    return writer.close()
