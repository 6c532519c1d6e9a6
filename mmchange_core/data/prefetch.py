"""Background prefetching: read the next window batches while the network works on the current one.

Reading strips (image decoding, GeoTIFF windows) and cutting windows release the GIL for most of
their time, so a single producer thread hides them behind the network on GPUs and multi-core CPUs.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

_ITEM, _END, _ERROR = range(3)


def prefetched(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Yield ``items`` in order, produced up to ``depth`` ahead by a background thread.

    An exception raised while producing is raised here, at the item where it happened. Closing the
    returned generator (or leaving it through an exception) stops and joins the thread, so the
    sources it reads can be closed right after. ``depth`` 0 produces in the caller's thread.
    """
    if depth <= 0:
        yield from items
        return
    slots: queue.Queue[tuple[int, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[int, object]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((_ITEM, item)):
                    return
            put((_END, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            put((_ERROR, exc))

    thread = threading.Thread(target=produce, name="mmchange-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            kind, payload = slots.get()
            if kind == _END:
                return
            if kind == _ERROR:
                assert isinstance(payload, BaseException)
                raise payload
            yield payload  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
