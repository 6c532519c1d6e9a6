"""Text strips (titles, colour keys) attached to pictures so that a picture explains itself."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

#: Strip background and text colours (RGB).
STRIP_BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (0, 0, 0)

#: One entry of a strip: a swatch colour (None: text only) and its text.
Entry = tuple[tuple[int, int, int] | None, str]


@lru_cache(maxsize=8)
def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def font_size_for(width: int) -> int:
    """A readable text size for a picture ``width`` pixels wide (12 px up to 24 px)."""
    return int(min(24, max(12, width // 60)))


def _lines(entries: list[Entry], width: int, size: int) -> list[list[tuple[Entry, int]]]:
    """Entries packed left to right into lines no wider than ``width`` (each entry with its pixel width)."""
    font, pad, swatch = _font(size), size, size
    lines: list[list[tuple[Entry, int]]] = [[]]
    used = pad // 2
    for entry in entries:
        colour, text = entry
        w = int(font.getlength(text)) + (swatch + size // 3 if colour is not None else 0)
        if lines[-1] and used + w > width:
            lines.append([])
            used = pad // 2
        lines[-1].append((entry, w))
        used += w + pad
    return lines


def legend_strip(width: int, entries: list[Entry], *, size: int | None = None) -> np.ndarray:
    """A white uint8 ``[h, width, 3]`` strip with the entries (swatch + text) wrapped onto as many lines as needed."""
    from PIL import Image, ImageDraw

    size = size or font_size_for(width)
    font, pad, swatch = _font(size), size, size
    lines = _lines(entries, width, size)
    line_h = size + size // 2
    image = Image.new("RGB", (width, line_h * len(lines) + size // 2), STRIP_BACKGROUND)
    draw = ImageDraw.Draw(image)
    y = size // 4
    for line in lines:
        x = pad // 2
        for (colour, text), w in line:
            if colour is not None:
                top = y + (line_h - swatch) // 2
                draw.rectangle([x, top, x + swatch - 1, top + swatch - 1], fill=colour, outline=TEXT_COLOUR)
                x += swatch + size // 3
            draw.text((x, y + (line_h - size) // 2), text, fill=TEXT_COLOUR, font=font)
            x += w - (swatch + size // 3 if colour is not None else 0) + pad
        y += line_h
    return np.asarray(image)


def fit_text(text: str, width: int, size: int) -> str:
    """``text`` shortened in the middle (with an ellipsis) so that it fits ``width`` pixels."""
    font = _font(size)
    if font.getlength(text) <= width:
        return text
    keep = len(text)
    while keep > 4:
        keep -= 1
        candidate = text[: keep // 2] + "…" + text[len(text) - (keep - keep // 2):]
        if font.getlength(candidate) <= width:
            return candidate
    return text[:4]


def class_entries(names: Sequence[str], colours: Sequence[tuple[int, int, int]],
                  values: Sequence[int] | None = None) -> list[Entry]:
    """The colour key of a class map: one swatch per class, ``"<value> <name>"`` (or the name alone)."""
    labels = [f"{v} {n}" for v, n in zip(values, names)] if values is not None else list(names)
    return [(tuple(int(c) for c in colour), label) for colour, label in zip(colours, labels)]  # type: ignore[misc]
