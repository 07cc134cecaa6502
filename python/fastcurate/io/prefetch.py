"""Run an iterator a few items ahead on a background thread."""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

__all__ = ["prefetch"]

T = TypeVar("T")


def prefetch(it: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``it`` in a background thread, ``depth`` items ahead, so that decoding (which
    releases the GIL in pyarrow) overlaps the consumer's work. Exceptions reach the consumer; a
    consumer that stops early stops the producer."""
    q: "queue.Queue[tuple]" = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(x: tuple) -> bool:
        # Every put gives up once the consumer has stopped: a blocking put into a full queue that
        # nobody reads any more would never return, and the consumer's join() would wait forever
        # (seen: a consumer closed after the last item was read but before the end marker fit).
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in it:
                if not put((None, item)):
                    return
            put((None, end))
        except BaseException as e:  # handed to the consumer
            put((e, None))

    th = threading.Thread(target=run, name="fastcurate-prefetch", daemon=True)
    th.start()
    try:
        while True:
            err, item = q.get()
            if err is not None:
                raise err
            if item is end:
                return
            yield item
    finally:
        stop.set()
        th.join()
