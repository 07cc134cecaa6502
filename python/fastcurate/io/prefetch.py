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

    def run() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put((None, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((None, end))
        except BaseException as e:  # handed to the consumer
            q.put((e, None))

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
