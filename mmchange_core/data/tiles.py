"""Cutting large images into network-sized tiles.

Images larger than the crop size are cut into tiles of ``size`` x ``size`` on a regular grid with
stride ``size``, so tiles do not overlap: a LEVIR-CD 1024 x 1024 tile gives sixteen 256 x 256
crops, exactly the LEVIR-CD-256 patches of the paper. When a side is not a multiple of ``size``, one
more tile is aligned with the far border so that every pixel is covered; only that last tile
overlaps its neighbour (training sees those pixels twice, evaluation counts them once).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """A rectangle of an image: top-left corner and size, in pixels."""

    y: int
    x: int
    height: int
    width: int

    def slices(self) -> tuple[slice, slice]:
        """Row and column slices for numpy indexing."""
        return slice(self.y, self.y + self.height), slice(self.x, self.x + self.width)


def _starts(length: int, size: int) -> list[int]:
    if length <= size:
        return [0]
    starts = list(range(0, length - size + 1, size))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def tile_windows(height: int, width: int, size: int) -> list[Window]:
    """Tiles covering a ``height`` x ``width`` image; a side shorter than ``size`` gives one short tile."""
    if size <= 0:
        raise ValueError(f"tile size must be positive, got {size}")
    return [Window(y, x, min(size, height), min(size, width))
            for y in _starts(height, size) for x in _starts(width, size)]


def padded_size(length: int, multiple: int = 32) -> int:
    """``length`` rounded up to a multiple of ``multiple`` (the network needs multiples of 32)."""
    return -(-length // multiple) * multiple
