"""Overlap decoding, inference and encoding: a producer thread and a consumer thread with bounded queues.

PyAV and PyTorch release the GIL in their heavy calls, so a decoder thread, the inference on the main
thread and an encoder thread run at once; bounded queues keep memory flat. An error (or Ctrl-C, which
arrives on the main thread) stops every thread and is raised on the main thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def background_iter(items: Iterable[T], maxsize: int = 2) -> Iterator[T]:
    """Iterate ``items`` in a thread, up to ``maxsize`` ahead; its exceptions surface here."""
    q: queue.Queue = queue.Queue(maxsize)
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((None, item)):
                    return
            put((None, _DONE))
        except BaseException as err:  # handed to the consumer, which raises it
            put((err, None))

    thread = threading.Thread(target=work, name="s3d-decode", daemon=True)
    thread.start()
    try:
        while True:
            err, item = q.get()
            if err is not None:
                raise err
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=10)


class BackgroundSink:
    """Call ``fn(item)`` on a thread for each item :meth:`put`, in order, ``maxsize`` at most waiting.

    As a context manager: a clean exit waits for the last item and raises the thread's error, if any;
    an exit by exception stops the thread without handling what is left.
    """

    def __init__(self, fn: Callable[[T], None], maxsize: int = 2):
        self.fn, self.error = fn, None
        self.q: queue.Queue = queue.Queue(maxsize)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._work, name="s3d-encode", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while True:
            item = self.q.get()
            if item is _DONE:
                return
            if self.error is not None or self.stopped.is_set():
                continue  # keep draining so that put() never blocks for good
            try:
                self.fn(item)
            except BaseException as err:
                self.error = err

    def _raise(self) -> None:
        if self.error is not None:
            err, self.error = self.error, None
            self.stopped.set()
            raise err

    def put(self, item: T) -> None:
        self._raise()
        self.q.put(item)

    def __enter__(self) -> BackgroundSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.stopped.set()
        self.q.put(_DONE)
        self.thread.join()
        if exc_type is None:
            self._raise()
