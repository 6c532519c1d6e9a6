"""Sliding-window geometry and blending, without the network."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mmchange_core.data.prefetch import prefetched
from mmchange_core.inference.sliding_window import sliding_window_logits
from mmchange_core.data.windows import StripBlender, TileGrid, iter_window_batches, pad_to
from mmchange_core.errors import MMChangeError


@pytest.mark.parametrize("height,width,tile,overlap", [
    (256, 256, 256, 32), (1000, 700, 256, 32), (700, 1000, 256, 0), (100, 70, 256, 32),
    (257, 513, 128, 64), (33, 2000, 64, 16), (1, 1, 32, 0),
])
def test_grid_covers_image_and_weights_sum_to_one(height, width, tile, overlap) -> None:
    grid = TileGrid.plan(height, width, tile, overlap)
    assert grid.tile_h % 32 == 0 and grid.tile_w % 32 == 0
    assert grid.tile_h <= tile and grid.tile_w <= tile
    for starts, length, window, weights in ((grid.ys, height, grid.tile_h, grid.weights_y),
                                            (grid.xs, width, grid.tile_w, grid.weights_x)):
        assert starts[0] == 0
        assert starts[-1] == max(0, length - window)            # last window flush with the border
        steps = np.diff(starts)
        assert (steps <= window - overlap).all() and (steps > 0).all()
        total = np.zeros(max(length, window))
        for i, s in enumerate(starts):
            total[s:s + window] += weights[i]
        np.testing.assert_allclose(total[:length], 1.0, atol=1e-6)
        assert (weights > 0).all()


def test_single_window_has_unit_weights() -> None:
    grid = TileGrid.plan(256, 256, 256, 64)
    assert len(grid) == 1
    assert (grid.weights_y == 1).all() and (grid.weights_x == 1).all()


@pytest.mark.parametrize("tile,overlap,message", [
    (0, 0, "positive multiple of 32"), (100, 0, "positive multiple of 32"),
    (256, 256, "--overlap must be between 0 and"), (256, -1, "--overlap must be between 0 and"),
])
def test_bad_tile_or_overlap(tile, overlap, message) -> None:
    with pytest.raises(MMChangeError, match=message):
        TileGrid.plan(500, 500, tile, overlap)


def test_blending_reconstructs_a_smooth_field_strip_by_strip() -> None:
    """If every window predicts the true field, blending returns it exactly, row strip by row strip."""
    height, width = 610, 333
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    field = np.sin(yy / 37.0) + np.cos(xx / 23.0)
    grid = TileGrid.plan(height, width, 128, 48)
    out = np.full((height, width), np.nan, dtype=np.float32)
    emitted = []

    def emit(y0, rows):
        assert np.isnan(out[y0:y0 + len(rows)]).all(), "rows emitted twice"
        out[y0:y0 + len(rows)] = rows
        emitted.append((y0, len(rows)))

    blender = StripBlender(grid, emit)
    for r, y in enumerate(grid.ys):
        for c, x in enumerate(grid.xs):
            blender.add([r], [c], field[None, y:y + grid.tile_h, x:x + grid.tile_w])
    blender.close()
    np.testing.assert_allclose(out, field, atol=1e-5)
    assert len(emitted) == grid.rows and sum(n for _, n in emitted) == height
    assert blender.acc.shape == (grid.tile_h, width)           # one window row of floats, not the image


def test_window_batches_read_strips_once_and_span_rows() -> None:
    rng = np.random.default_rng(0)
    image_a = rng.integers(0, 255, (300, 200, 3), dtype=np.uint8)
    image_b = 255 - image_a
    grid = TileGrid.plan(300, 200, 128, 32)
    reads = []

    def read_a(y, h):
        reads.append((y, h))
        return image_a[y:y + h]

    batches = list(iter_window_batches(grid, read_a, lambda y, h: image_b[y:y + h], batch_size=5))
    assert reads == [(y, grid.tile_h) for y in grid.ys]
    assert [len(b) for b in batches] == [5] * (len(grid) // 5) + ([len(grid) % 5] if len(grid) % 5 else [])
    assert len(set(batches[0].rows)) > 1                          # a batch spans window rows
    first = batches[0]
    y, x = grid.ys[first.rows[3]], grid.xs[first.cols[3]]
    np.testing.assert_array_equal(first.image_a[3], image_a[y:y + 128, x:x + 128])
    np.testing.assert_array_equal(first.image_b[3], image_b[y:y + 128, x:x + 128])


def test_small_image_is_padded_and_cropped_back() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (45, 70, 3), dtype=np.uint8)
    grid = TileGrid.plan(45, 70, 256, 32)
    assert (grid.tile_h, grid.tile_w) == (64, 96)
    padded = pad_to(image, 64, 96)
    np.testing.assert_array_equal(padded[:45, :70], image)
    np.testing.assert_array_equal(padded[45, :70], image[43])     # reflection
    out = {}

    def network(a, b):
        assert a.shape[1:3] == (64, 96)
        return a[..., 0].astype(np.float32) - b[..., 0].astype(np.float32)

    sliding_window_logits(network, grid, lambda y, h: image[y:y + h], lambda y, h: image[y:y + h] // 2,
                          lambda y0, rows: out.setdefault(y0, rows.copy()))
    np.testing.assert_array_equal(out[0], image[..., 0].astype(np.float32) - image[..., 0] // 2)


def test_prefetched_keeps_order_and_raises_where_production_failed() -> None:
    assert list(prefetched(range(50), depth=3)) == list(range(50))
    assert list(prefetched(iter([]), depth=2)) == []

    def failing():
        yield 1
        yield 2
        raise OSError("strip 3 unreadable")

    got = []
    with pytest.raises(OSError, match="strip 3 unreadable"):
        for item in prefetched(failing(), depth=2):
            got.append(item)
    assert got == [1, 2]


def test_closing_prefetched_stops_the_reader_thread() -> None:
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    stream = prefetched(endless(), depth=2)
    assert next(stream) == 0
    stream.close()
    count = len(produced)
    assert count <= 4                                             # at most depth ahead (+ the one in hand)
    assert not any(t.name == "mmchange-prefetch" for t in threading.enumerate())
    assert len(produced) == count                                 # nothing produced after close


def test_sliding_window_with_and_without_prefetch_agree_and_network_errors_stop_reading() -> None:
    rng = np.random.default_rng(2)
    image_a = rng.integers(0, 255, (400, 300, 3), dtype=np.uint8)
    image_b = rng.integers(0, 255, (400, 300, 3), dtype=np.uint8)
    grid = TileGrid.plan(400, 300, 128, 32)

    def network(a, b):
        return a[..., 1].astype(np.float32) - b[..., 2].astype(np.float32)

    results = []
    for depth in (0, 2):
        out = np.zeros((400, 300), np.float32)
        sliding_window_logits(network, grid, lambda y, h: image_a[y:y + h], lambda y, h: image_b[y:y + h],
                              lambda y0, rows: out.__setitem__(slice(y0, y0 + len(rows)), rows),
                              batch_size=3, prefetch=depth)
        results.append(out)
    np.testing.assert_array_equal(results[0], results[1])

    def broken(a, b):
        raise RuntimeError("network failed")

    with pytest.raises(RuntimeError, match="network failed"):
        sliding_window_logits(broken, grid, lambda y, h: image_a[y:y + h], lambda y, h: image_b[y:y + h],
                              lambda y0, rows: None, batch_size=3)
    assert not any(t.name == "mmchange-prefetch" for t in threading.enumerate())
