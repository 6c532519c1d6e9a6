"""Sliding-window inference: any image size through the network, window batches, blended logits.

:func:`sliding_window_logits` is the streaming core behind every command (strips in, finished
rows out); :class:`~mmchange_core.inference.detector.ChangeDetector` drives it for files and arrays.
The network runs through :class:`~mmchange_core.inference.runner.InferenceRunner`.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mmchange_core.data.normalize import IMAGENET_MEAN, IMAGENET_STD, normalize_batch
from mmchange_core.inference.runner import InferenceRunner
from mmchange_core.data.prefetch import prefetched
from mmchange_core.data.windows import (
    RowSink,
    StripBlender,
    StripReader,
    TileGrid,
    batch_span,
    iter_date_batches,
)
from mmchange_core.errors import InputError
from mmchange_core.progress import ProgressCallback, report



class WindowNetwork:
    """Turns uint8 NHWC window batches of the dates into float32 logits of each compared pair (numpy, CPU).

    ``comparisons`` lists the ``(earlier, later)`` date indices compared (a pair: ``[(0, 1)]``; a
    series: each interval, then first to last). Each date's batch is normalised once, whatever the
    number of comparisons it takes part in, and each comparison is one network call on the very
    batch a pair prediction runs, so an interval of a series equals the prediction of that pair bit
    for bit. The text embeddings (``[1, D]`` or ``[D]`` per date) are those of whole images, shared
    by all of their windows; ``None`` for image-only models. With ``fixed_batch`` a short last batch
    is padded to that size, so runners that capture one CUDA graph per shape capture only one.
    """

    def __init__(self, runner: InferenceRunner, texts: Sequence[torch.Tensor | None] | None = None, *,
                 comparisons: Sequence[tuple[int, int]] = ((0, 1),), fixed_batch: int | None = None,
                 mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        self.comparisons = [tuple(c) for c in comparisons]
        used = sorted({date for pair in self.comparisons for date in pair})
        if runner.uses_text and (texts is None or any(texts[d] is None for d in used)):
            raise InputError("this checkpoint uses text: give the text embeddings (or captions) of every date")
        self.runner = runner
        self.fixed_batch = fixed_batch
        self.mean, self.std = tuple(mean), tuple(std)
        self.texts = None if texts is None else [None if t is None else t.reshape(1, -1).to(runner.device)
                                                 for t in texts]

    @property
    def channels(self) -> int:
        """Logit channels per comparison (1: binary; K: a K-class network)."""
        return int(getattr(self.runner.config, "outputs", 1))

    def _images(self, batch: np.ndarray) -> torch.Tensor:
        pixels = torch.from_numpy(batch).to(self.runner.device, non_blocking=True)
        return normalize_batch(pixels.permute(0, 3, 1, 2).contiguous(), self.mean, self.std)

    def __call__(self, batches: Sequence[np.ndarray]) -> np.ndarray:
        """Logits ``[comparisons * channels, N, h, w]`` of the window batches of every date (one uint8 NHWC
        array each); a K-class network's channels of comparison ``k`` are entries ``k * K .. k * K + K - 1``."""
        count = n = batches[0].shape[0]
        if self.fixed_batch is not None and n < self.fixed_batch:
            pad = [(0, self.fixed_batch - n)] + [(0, 0)] * 3
            batches = [np.pad(batch, pad, mode="edge") for batch in batches]
        images = [self._images(batch) for batch in batches]
        channels = self.channels
        out = np.empty((len(self.comparisons) * channels, count, *batches[0].shape[1:3]), dtype=np.float32)
        for k, (i, j) in enumerate(self.comparisons):
            text_a = text_b = None
            if self.runner.uses_text:  # [1, D]: one TDE pass shared by all windows
                text_a, text_b = self.texts[i], self.texts[j]
            logits = self.runner.logits(images[i], images[j], text_a, text_b)
            if channels == 1:
                out[k] = logits[:count, 0].cpu().numpy()
            else:  # each class channel is blended as a comparison of its own: [C, N, h, w]
                out[k * channels:(k + 1) * channels] = logits[:count].transpose(0, 1).cpu().numpy()
        return out


def network_for(runner: InferenceRunner, texts: Sequence[torch.Tensor | None] | None,
                comparisons: Sequence[tuple[int, int]], batch_size: int,
                **normalization: tuple[float, ...]) -> WindowNetwork:
    """The :class:`WindowNetwork` for ``runner``: batches padded to ``batch_size`` when it replays CUDA graphs;
    ``normalization`` gives the input ``mean``/``std`` (default ImageNet's)."""
    fixed = batch_size if getattr(runner, "cuda_graphs", False) else None
    return WindowNetwork(runner, texts, comparisons=comparisons, fixed_batch=fixed, **normalization)


@dataclass
class WindowTimings:
    """Seconds spent waiting for windows (read), in the network, waiting for the writer, and in total."""

    # duplicates (deliberate): field declarations, alike in shape only to other result dataclasses
    windows: int = 0
    read: float = 0.0
    network: float = 0.0
    write: float = 0.0
    total: float = 0.0


def contributing_rows(grid: TileGrid, rows: range) -> range:
    """The window rows whose windows reach the image rows that window ``rows`` emit (``rows`` plus earlier ones
    that overlap them): the rows a process must blend to emit ``rows`` exactly as a full pass does."""
    if not rows:
        return rows
    top = grid.ys[rows.start]
    first = rows.start
    while first > 0 and grid.ys[first - 1] + grid.strip_height(first - 1) > top:
        first -= 1
    return range(first, rows.stop)


@contextlib.contextmanager
def written_behind(emit: RowSink, depth: int = 4, *, copy: bool = True) -> Iterator[tuple[RowSink, WindowTimings]]:
    """A :data:`RowSink` that copies rows and hands them to ``emit`` in a background thread, in order.

    Writing (probability, threshold, files) then overlaps the network. At most ``depth`` strips wait
    in the queue; an error raised by ``emit`` is raised at the next call or when the block ends, and
    the block waits for every queued strip. ``depth`` 0 calls ``emit`` directly. ``copy=False``: the caller
    hands over rows it no longer touches, queued as they are. The yielded timings' ``write`` is the time
    spent waiting for a free slot or for the last strips.
    """
    timings = WindowTimings()
    if depth <= 0:
        yield emit, timings
        return
    slots: queue.Queue[tuple[int, np.ndarray] | None] = queue.Queue(maxsize=depth)
    failure: list[BaseException] = []

    def work() -> None:
        while True:
            item = slots.get()
            if item is None:
                return
            if not failure:
                try:
                    emit(*item)
                except BaseException as exc:  # raised in the caller's thread
                    failure.append(exc)

    def put(y0: int, rows: np.ndarray) -> None:
        if failure:
            raise failure[0]
        t0 = time.perf_counter()
        slots.put((y0, np.array(rows, copy=True) if copy else rows))
        timings.write += time.perf_counter() - t0

    thread = threading.Thread(target=work, name="mmchange-writer", daemon=True)
    thread.start()
    try:
        yield put, timings
    finally:
        t0 = time.perf_counter()
        if failure:  # drain without writing so the thread sees the end marker
            with contextlib.suppress(queue.Empty):
                while True:
                    slots.get_nowait()
        slots.put(None)
        thread.join()
        timings.write += time.perf_counter() - t0
    if failure:
        raise failure[0]


def sliding_window_logits(network: Callable[[np.ndarray, np.ndarray], np.ndarray], grid: TileGrid,
                          read_a: StripReader, read_b: StripReader, emit: RowSink, **options: Any) -> WindowTimings:
    """:func:`sliding_dates_logits` for one pair: ``network(batch_a, batch_b) -> [N, h, w]`` and ``emit(y0, rows)``
    with float32 rows ``[h, W]``."""
    return sliding_dates_logits(lambda batches: network(batches[0], batches[1])[None], grid, [read_a, read_b],
                                lambda y0, rows: emit(y0, rows[0]), comparisons=1, **options)


class _RowGather:
    """Collects the rows each comparison's blender emits into one new array ``[comparisons, h, W]`` and hands it on
    when every comparison has given its rows (the blenders emit the same rows, one after the other)."""

    def __init__(self, count: int, emit: RowSink) -> None:
        self.count, self.emit = count, emit
        self.rows: dict[int, tuple[np.ndarray, set[int]]] = {}

    def part(self, index: int) -> RowSink:
        def add(y0: int, rows: np.ndarray) -> None:
            gathered, given = self.rows.setdefault(y0, (np.empty((self.count, *rows.shape), rows.dtype), set()))
            gathered[index] = rows  # copied: the blender reuses its buffer
            given.add(index)
            if len(given) == self.count:
                del self.rows[y0]
                self.emit(y0, gathered)
        return add


def sliding_dates_logits(network: Callable[[list[np.ndarray]], np.ndarray], grid: TileGrid,
                         readers: Sequence[StripReader], emit: RowSink, *, comparisons: int, batch_size: int = 4,
                         progress: ProgressCallback | None = None, prefetch: int = 2,
                         rows: range | None = None, write_behind: int = 0) -> WindowTimings:
    """Run ``network`` over the windows of ``grid`` and hand blended logits to ``emit`` row strip by row strip.

    ``readers`` give full-width uint8 rows of each date (each is read once per window row);
    ``network(batches) -> [comparisons, N, h, w]`` scores the window batches of all dates, and
    ``emit(y0, logits)`` receives float32 rows ``[comparisons, h, W]`` that are final (it must copy them
    if it keeps them). The next ``prefetch`` batches are read and cut in a background thread while the
    network runs (0: no thread), and with ``write_behind`` > 0 ``emit`` runs in a writer thread
    (:func:`written_behind`) with up to ``write_behind`` strips of one comparison waiting (a strip of
    several comparisons counts for each, at least one waits). Peak memory is a few strips of each date
    plus about two window rows of float logits per comparison, whatever the image height; ``read`` in
    the timings is the time spent waiting for windows.

    ``rows`` (window rows) emits only the image rows of those window rows, bit-identical to a full
    pass: the same batches are run (with the windows of neighbouring rows they contain) and the
    overlapping window rows above are blended in the same order. Several processes share one
    image this way, each emitting its own rows.
    """
    rows = range(grid.rows) if rows is None else rows
    needed = contributing_rows(grid, rows)
    top = grid.ys[rows.start] if rows else 0
    start = time.perf_counter()
    batches_in = batch_span(grid, batch_size, needed)
    total = sum(min(len(grid), (k + 1) * batch_size) - k * batch_size for k in batches_in)
    depth = max(1, write_behind // comparisons) if write_behind > 0 else 0
    with written_behind(emit, depth, copy=comparisons == 1) as (sink, timings):  # gathered rows are new arrays

        def own_rows(y0: int, logits: np.ndarray) -> None:
            if y0 >= top:  # rows above belong to an earlier window row (another block)
                sink(y0, logits)

        target = own_rows if needed.start < rows.start else sink
        if comparisons == 1:
            blenders = [StripBlender(grid, lambda y0, logits: target(y0, logits[None]), needed)]
        else:
            gather = _RowGather(comparisons, target)
            blenders = [StripBlender(grid, gather.part(k), needed) for k in range(comparisons)]
        with contextlib.closing(prefetched(iter_date_batches(grid, readers, batch_size, batches_in),
                                           depth=prefetch)) as batches:
            while True:
                t0 = time.perf_counter()
                batch = next(batches, None)
                timings.read += time.perf_counter() - t0
                if batch is None:
                    break
                t0 = time.perf_counter()
                logits = network(batch.images)
                timings.network += time.perf_counter() - t0
                for blender, scores in zip(blenders, logits):
                    blender.add(batch.rows, batch.cols, scores)
                timings.windows += len(batch)
                report(progress, "windows", timings.windows, total)
        for blender in blenders:
            blender.close()
    timings.total = time.perf_counter() - start
    return timings
