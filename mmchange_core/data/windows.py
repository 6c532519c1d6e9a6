"""Windowing, the one implementation: where the windows go, how edges are padded and how logits blend.

Every command that cuts images into network-sized windows uses :class:`TileGrid`: ``predict``,
``eval`` (and training validation), ``robustness``, the drift check and the training-set tiler
(which plans with ``overlap=0``, so LEVIR-CD's 1024 x 1024 tiles give the paper's sixteen 256 x 256
crops).

Windows have one fixed shape (batchable); along each axis they are spread evenly from the first to
the last pixel, so every neighbouring pair overlaps by at least the requested amount and no window
hangs over the border. An image smaller than the tile gets a window of its size rounded up to a
multiple of 32 (the network's constraint), filled by reflection. Logits are blended with separable
linear ramps across each overlap, normalised so the weights sum to one at every pixel; image
borders keep full weight, so a single window is returned unchanged (bit-exact).

Rows are produced strip by strip (:class:`StripBlender`): the accumulator holds one window row of
float logits, and rows that no later window touches are handed on at once, so memory does not grow
with the image height.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from mmchange_core.config import SIZE, SIZE_MULTIPLE, check_value
from mmchange_core.errors import MMChangeError

# SIZE_MULTIPLE (the network's size rule, defined in config) is re-exported here for the windowing code.

#: Default minimum overlap of neighbouring windows (pixels), the same for every command.
DEFAULT_OVERLAP = 32


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


def _positions(length: int, window: int, overlap: int) -> tuple[int, ...]:
    """Window starts along one axis: evenly spread, first at 0, last flush with the end."""
    if length <= window:
        return (0,)
    stride = window - overlap
    count = math.ceil((length - window) / stride) + 1
    return tuple(round(i * (length - window) / (count - 1)) for i in range(count))


def _axis_weights(length: int, window: int, starts: tuple[int, ...]) -> np.ndarray:
    """Per-window blending weights along one axis, ``[n, window]``, summing to 1 at every pixel."""
    n = len(starts)
    weights = np.ones((n, window), dtype=np.float64)
    if n > 1:
        ramp_len = window - max(b - a for a, b in zip(starts, starts[1:]))
        if ramp_len > 0:
            ramp = (np.arange(ramp_len, dtype=np.float64) + 0.5) / ramp_len
            for i in range(n):
                if i > 0:
                    weights[i, :ramp_len] *= ramp
                if i < n - 1:
                    weights[i, window - ramp_len:] *= ramp[::-1]
    total = np.zeros(max(length, window), dtype=np.float64)
    for i, start in enumerate(starts):
        total[start:start + window] += weights[i]
    for i, start in enumerate(starts):
        weights[i] /= total[start:start + window]
    return weights.astype(np.float32)


@dataclass(frozen=True)
class TileGrid:
    """The sliding-window layout for an image of ``height`` x ``width`` pixels.

    ``tile_h`` x ``tile_w`` is the window shape given to the network (multiples of 32); ``ys`` and
    ``xs`` are the window origins. ``weights_y[r]`` / ``weights_x[c]`` are the blending weights of
    window row ``r`` / column ``c``.
    """

    height: int
    width: int
    tile_h: int
    tile_w: int
    ys: tuple[int, ...]
    xs: tuple[int, ...]
    weights_y: np.ndarray
    weights_x: np.ndarray

    @classmethod
    def plan(cls, height: int, width: int, tile: int = 256, overlap: int = DEFAULT_OVERLAP) -> TileGrid:
        """Lay out windows of ``tile`` pixels overlapping by at least ``overlap`` pixels."""
        check_value("tile_size", tile, SIZE)
        if not 0 <= overlap < tile:
            raise MMChangeError(f"--overlap must be between 0 and the tile size minus one ({tile - 1}); got {overlap}")
        if height < 1 or width < 1:
            raise MMChangeError(f"cannot tile an empty image ({width}x{height})")
        tile_h = min(tile, math.ceil(height / SIZE_MULTIPLE) * SIZE_MULTIPLE)
        tile_w = min(tile, math.ceil(width / SIZE_MULTIPLE) * SIZE_MULTIPLE)
        ys = _positions(height, tile_h, overlap)
        xs = _positions(width, tile_w, overlap)
        return cls(height, width, tile_h, tile_w, ys, xs,
                   _axis_weights(height, tile_h, ys), _axis_weights(width, tile_w, xs))

    @property
    def rows(self) -> int:
        """Number of window rows."""
        return len(self.ys)

    @property
    def columns(self) -> int:
        """Number of window columns."""
        return len(self.xs)

    def __len__(self) -> int:
        return self.rows * self.columns

    def windows(self) -> list[Window]:
        """The windows in grid order (row-major), clipped to the image."""
        return [Window(y, x, min(self.tile_h, self.height - y), min(self.tile_w, self.width - x))
                for y in self.ys for x in self.xs]

    def strip_height(self, row: int) -> int:
        """Image rows covered by window row ``row`` (less than ``tile_h`` only for padded images)."""
        return min(self.tile_h, self.height - self.ys[row])

    def finished_until(self, row: int) -> int:
        """First image row still open once window row ``row`` is blended (rows above it are final)."""
        return self.ys[row + 1] if row + 1 < self.rows else self.height


def pad_to(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad ``array`` (``[h, w, ...]``) at the bottom/right to ``height`` x ``width`` by reflection."""
    pad_h, pad_w = height - array.shape[0], width - array.shape[1]
    if pad_h <= 0 and pad_w <= 0:
        return array
    pads = [(0, max(pad_h, 0)), (0, max(pad_w, 0))] + [(0, 0)] * (array.ndim - 2)
    # reflection needs the padding to be shorter than the side; symmetric covers tiny images
    mode = "reflect" if pad_h < array.shape[0] and pad_w < array.shape[1] else "symmetric"
    return np.pad(array, pads, mode=mode)


@dataclass
class WindowBatch:
    """A batch of windows of every date: ``rows``/``cols`` index the grid, ``images`` one uint8 NHWC array per date."""

    rows: list[int]
    cols: list[int]
    images: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def image_a(self) -> np.ndarray:
        """The first date's windows."""
        return self.images[0]

    @property
    def image_b(self) -> np.ndarray:
        """The second date's windows."""
        return self.images[1]


StripReader = Callable[[int, int], np.ndarray]
"""``read(y0, height) -> uint8 [height, width, 3]``: full-width rows of one date."""


def batch_span(grid: TileGrid, batch_size: int, rows: range) -> range:
    """Indices of the batches (as :func:`iter_window_batches` groups them) holding the windows of window ``rows``."""
    first, last = rows.start * grid.columns, rows.stop * grid.columns
    return range(first // batch_size, -(-last // batch_size)) if last > first else range(0)


def iter_window_batches(grid: TileGrid, read_a: StripReader, read_b: StripReader,
                        batch_size: int, batches: range | None = None) -> Iterator[WindowBatch]:
    """The windows of a pair of dates in batches: :func:`iter_date_batches` with two readers."""
    return iter_date_batches(grid, [read_a, read_b], batch_size, batches)


def iter_date_batches(grid: TileGrid, readers: Sequence[StripReader], batch_size: int,
                      batches: range | None = None) -> Iterator[WindowBatch]:
    """Cut every date into the grid's windows, strip by strip, and group them into batches.

    Only one strip per date (``tile_h`` full-width rows) is read at a time, and each date once per
    window row however many comparisons use it; batches may span two strips so that narrow images
    still fill the batch. ``batches`` keeps only those batch indices (the same groups of windows as
    a full pass, so the network sees identical batches) and reads only the strips they need:
    several processes can share one image by batches.
    """
    if batch_size < 1:
        raise MMChangeError(f"--batch-size must be at least 1; got {batch_size}")
    first, last = 0, len(grid)
    if batches is not None:
        first, last = batches.start * batch_size, min(batches.stop * batch_size, len(grid))
    rows: list[int] = []
    cols: list[int] = []
    wins: list[list[np.ndarray]] = [[] for _ in readers]
    padded_w = max(grid.width, grid.tile_w)
    for r in range(first // grid.columns, -(-last // grid.columns)):
        y, h = grid.ys[r], grid.strip_height(r)
        strips = [pad_to(read(y, h), grid.tile_h, padded_w) for read in readers]
        for c, x in enumerate(grid.xs):
            if not first <= r * grid.columns + c < last:
                continue
            rows.append(r)
            cols.append(c)
            for date, strip in enumerate(strips):
                wins[date].append(strip[:, x:x + grid.tile_w])
            if len(rows) == batch_size:
                yield WindowBatch(rows, cols, [np.stack(w) for w in wins])
                rows, cols, wins = [], [], [[] for _ in readers]
    if rows:
        yield WindowBatch(rows, cols, [np.stack(w) for w in wins])


RowSink = Callable[[int, np.ndarray], None]
"""``emit(y0, logits)``: blended float32 logits for full-width image rows ``y0 .. y0 + len(logits)``."""


class StripBlender:
    """Accumulates weighted window logits one window row at a time and emits finished image rows.

    Windows must arrive in grid order (row-major, as :func:`iter_window_batches` yields them).
    ``rows`` limits the blending to those window rows (windows of other rows are ignored and
    :meth:`close` stops after the last): the rows it emits for window row ``r`` are final only when
    ``rows`` starts at (or before) the first window row that reaches ``grid.ys[r]``.
    """

    def __init__(self, grid: TileGrid, emit: RowSink, rows: range | None = None) -> None:
        self.grid = grid
        self.emit = emit
        self.rows = range(grid.rows) if rows is None else rows
        self.row = self.rows.start
        self.acc = np.zeros((grid.tile_h, grid.width), dtype=np.float32)
        self.closed = False

    def add(self, rows: list[int], cols: list[int], logits: np.ndarray) -> None:
        """Blend ``logits`` (``[N, tile_h, tile_w]`` float32) of the windows at ``rows``/``cols``."""
        grid = self.grid
        weights = grid.weights_y[rows][:, :, None] * grid.weights_x[cols][:, None, :]
        weighted = logits * weights
        for i, (r, c) in enumerate(zip(rows, cols)):
            if r not in self.rows:
                continue
            if r < self.row:
                raise ValueError(f"window row {r} arrived after row {self.row} was emitted")
            while r > self.row:
                self._finish_row()
            x = grid.xs[c]
            h = grid.strip_height(r)
            w = min(grid.tile_w, grid.width - x)
            self.acc[:h, x:x + w] += weighted[i, :h, :w]

    def _finish_row(self) -> None:
        grid = self.grid
        start = grid.ys[self.row]
        end = grid.finished_until(self.row)
        done = end - start
        self.emit(start, self.acc[:done])
        keep = grid.strip_height(self.row) - done
        if keep > 0:
            self.acc[:keep] = self.acc[done:done + keep]
        self.acc[max(keep, 0):] = 0.0
        self.row += 1

    def close(self) -> None:
        """Emit the remaining rows; every window must have been added."""
        if self.closed:
            return
        while self.row < self.rows.stop:
            self._finish_row()
        self.closed = True
