"""Sliding windows split by window rows (how torchrun processes share one image) and the writer thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mmchange_core.data.windows import TileGrid
from mmchange_core.inference.sliding_window import contributing_rows, sliding_window_logits, written_behind


def batch_dependent_network(batch_a: np.ndarray, batch_b: np.ndarray) -> np.ndarray:
    """Logits that change with the batch they are computed in, as CPU kernels do in their last bits."""
    diff = batch_a.astype(np.float32).mean(-1) - batch_b.astype(np.float32).mean(-1)
    return diff / 7.3 + np.float32(batch_a.astype(np.float32).mean() * 1e-3)


@pytest.mark.parametrize("height, width, tile, overlap, batch", [(300, 250, 64, 32, 3), (260, 130, 64, 40, 5),
                                                                  (97, 333, 32, 16, 7), (200, 200, 64, 0, 4)])
def test_row_ranges_give_the_rows_of_a_full_pass_bit_for_bit(height, width, tile, overlap, batch) -> None:
    rng = np.random.default_rng(height)
    image_a = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    image_b = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    grid = TileGrid.plan(height, width, tile, overlap)
    read_a, read_b = (lambda y, h: image_a[y:y + h]), (lambda y, h: image_b[y:y + h])
    full = np.full((height, width), np.nan, np.float32)
    sliding_window_logits(batch_dependent_network, grid, read_a, read_b,
                          lambda y0, rows: full.__setitem__(slice(y0, y0 + len(rows)), rows), batch_size=batch)
    for cuts in ([grid.rows // 2], [1, grid.rows - 1], list(range(1, grid.rows))):
        parts = np.full((height, width), np.nan, np.float32)
        hits = np.zeros(height, int)

        def emit(y0: int, rows: np.ndarray) -> None:
            parts[y0:y0 + len(rows)] = rows
            hits[y0:y0 + len(rows)] += 1

        for start, stop in zip([0, *cuts], [*cuts, grid.rows]):  # the later blocks first, as another process may
            sliding_window_logits(batch_dependent_network, grid, read_a, read_b, emit, batch_size=batch,
                                  rows=range(start, stop), write_behind=2)
        assert (hits == 1).all()  # every image row emitted exactly once
        np.testing.assert_array_equal(parts, full)


def test_contributing_rows_reach_back_over_deep_overlaps() -> None:
    grid = TileGrid.plan(500, 64, 64, 48)  # rows start at 0, 16, 31, 47, 62, 78...: four overlap each row
    assert grid.ys[1:6] == (16, 31, 47, 62, 78)
    assert contributing_rows(grid, range(5, 7)) == range(1, 7)  # 16 + 64 > 78 but 0 + 64 <= 78
    assert contributing_rows(grid, range(0, 3)) == range(0, 3)


def test_written_behind_keeps_order_copies_rows_and_raises_the_writers_error() -> None:
    seen: list[tuple[int, float, str]] = []

    def emit(y0: int, rows: np.ndarray) -> None:
        seen.append((y0, float(rows[0, 0]), threading.current_thread().name))

    buffer = np.zeros((2, 3), np.float32)
    with written_behind(emit, depth=2) as (sink, timings):
        for y0 in range(0, 20, 2):
            buffer[:] = y0
            sink(y0, buffer)  # the caller reuses its buffer at once
    assert [(y, v) for y, v, _ in seen] == [(y, float(y)) for y in range(0, 20, 2)]
    assert {name for _, _, name in seen} == {"mmchange-writer"}

    def broken(y0: int, rows: np.ndarray) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), written_behind(broken, depth=2) as (sink, _):
        for y0 in range(50):
            sink(y0, buffer)
