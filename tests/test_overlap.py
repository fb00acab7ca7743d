import threading
import time

import pytest

from s3d.io.overlap import BackgroundSink, background_iter


def test_background_iter_keeps_order_and_raises_producer_errors():
    assert list(background_iter(range(50), maxsize=2)) == list(range(50))

    def broken():
        yield 1
        raise ValueError("decoder failed")

    it = background_iter(broken())
    assert next(it) == 1
    with pytest.raises(ValueError, match="decoder failed"):
        next(it)


def test_consumer_stopping_early_stops_the_producer():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    before = threading.active_count()
    it = background_iter(endless(), maxsize=2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    time.sleep(0.3)
    assert threading.active_count() == before and len(produced) <= 3 + 2 + 2  # bounded read-ahead


def test_sink_runs_in_order_and_raises_its_error_on_the_caller():
    seen = []
    with BackgroundSink(seen.append, maxsize=2) as sink:
        for i in range(20):
            sink.put(i)
    assert seen == list(range(20))

    def fail(item):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with BackgroundSink(fail) as sink:
            for i in range(10):
                sink.put(i)
                time.sleep(0.01)


def test_sink_stops_without_handling_the_rest_when_the_caller_fails():
    seen = []
    with pytest.raises(KeyboardInterrupt):
        with BackgroundSink(lambda x: (time.sleep(0.05), seen.append(x)), maxsize=2) as sink:
            for i in range(100):
                sink.put(i)
                if i == 3:
                    raise KeyboardInterrupt
    assert len(seen) < 10
