"""The intake buffer under concurrent use."""

from __future__ import annotations

import sys
import threading
import time

from sprockets_influxdb.buffer import ENTRY_SIZE, Buffer, entries


def test_the_oldest_is_a_sequence_while_another_thread_overflows() -> None:
    # A full buffer drops its oldest entry value by value: a reader must
    # never see the middle of that.
    buffer = Buffer(max_size=10, trigger_size=5)
    stop = threading.Event()

    def produce() -> None:
        while not stop.is_set():
            buffer.put('db', 'm', {'k': 'v'}, {'f': 1}, 1.0)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    producer = threading.Thread(target=produce)
    producer.start()
    seen = set()
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            seen.add(type(buffer.oldest_sequence()))
    finally:
        stop.set()
        producer.join()
        sys.setswitchinterval(interval)
    assert seen <= {int, type(None)}
    assert int in seen
    assert buffer.overflowed > 0


def test_take_returns_whole_entries_in_order() -> None:
    buffer = Buffer(max_size=3, trigger_size=2)
    for index in range(5):
        buffer.put('db', f'm{index}', {}, {'i': index}, float(index))
    taken = buffer.take()
    assert len(taken) == 3 * ENTRY_SIZE
    assert [entry[2] for entry in entries(taken)] == ['m2', 'm3', 'm4']
    assert [entry[0] for entry in entries(taken)] == [3, 4, 5]
    assert buffer.overflowed == 2
    assert len(buffer) == 0
    assert buffer.oldest_sequence() is None
