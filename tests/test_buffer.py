"""The intake buffer under concurrent use."""

from __future__ import annotations

import signal
import sys
import threading
import time

import pytest

from sprockets_influxdb.buffer import ENTRY_SIZE, Buffer, entries
from tests.test_speedups import PURE_PYTHON, speedups


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


def test_every_entry_put_from_many_threads_is_taken_once_in_order() -> None:
    # put() (compiled or not) and take() under the same lock: an entry put
    # while the writer swaps the deque out lands in one of the two, never
    # in a deque already taken.
    buffer = Buffer(max_size=10**6, trigger_size=10**6)
    producers, each = 4, 3000
    done = threading.Event()
    taken: list[object] = []

    def produce(index: int) -> None:
        for count in range(each):
            buffer.put('db', 'm', {'p': str(index)}, {'n': count}, 1.0)

    def consume() -> None:
        while not done.is_set():
            taken.extend(buffer.take())

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        consumer = threading.Thread(target=consume)
        consumer.start()
        threads = [
            threading.Thread(target=produce, args=(index,))
            for index in range(producers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done.set()
        consumer.join()
    finally:
        sys.setswitchinterval(interval)
    taken.extend(buffer.take())
    got = list(entries(taken))
    assert [entry[0] for entry in got] == list(range(1, producers * each + 1))
    for index in range(producers):
        counts = [e[4]['n'] for e in got if e[3] == {'p': str(index)}]
        assert counts == list(range(each))


def test_put_waits_while_another_thread_holds_the_lock() -> None:
    buffer = Buffer(max_size=10, trigger_size=5)
    finished = threading.Event()

    def put() -> None:
        buffer.put('db', 'm', {}, {'f': 1}, 1.0)
        finished.set()

    with buffer._lock:
        thread = threading.Thread(target=put)
        thread.start()
        # However long it is given, it cannot finish while this holds it.
        assert not finished.wait(0.2)
        assert len(buffer) == 0
    thread.join()
    assert finished.is_set()
    assert len(buffer) == 1


def test_the_compiled_buffer_has_its_own_lock() -> None:
    buffer = Buffer(max_size=10, trigger_size=5)
    compiled = speedups()  # fails, never skips, when it was not built
    if PURE_PYTHON:
        assert type(buffer._lock) is type(threading.Lock())
        lock = compiled.BufferLock()
    else:
        lock = buffer._lock
        assert type(lock) is compiled.BufferLock
    assert not lock.locked()
    with lock:
        assert lock.locked()
    assert not lock.locked()
    assert lock.acquire() is True
    lock.release()
    with pytest.raises(RuntimeError, match='release unlocked lock'):
        lock.release()
    with pytest.raises(TypeError, match='no arguments'):
        compiled.BufferLock(True)
    # A lock dropped while held is freed all the same.
    held = compiled.BufferLock()
    held.acquire()
    del held


def test_a_signal_handler_ends_a_put_waiting_for_the_lock() -> None:
    # As with a threading.Lock: a put that waits for a lock another thread
    # keeps (a stuck thread, a finalizer of that thread) can be ended by a
    # Ctrl-C, the main thread's signal handlers running while it waits.
    buffer = Buffer(max_size=10, trigger_size=5)
    held, release = threading.Event(), threading.Event()

    class SignalledError(Exception):
        pass

    def hold() -> None:
        with buffer._lock:
            held.set()
            # Bounded: a put that cannot be interrupted finishes then.
            release.wait(10)

    def interrupt(signum: int, frame: object) -> None:
        raise SignalledError

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.2)
        with pytest.raises(SignalledError):
            buffer.put('db', 'm', {}, {'f': 1}, 1.0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        release.set()
        holder.join()
    assert len(buffer) == 0
    # The lock is free again, and works.
    assert buffer.put('db', 'm', {}, {'f': 1}, 1.0) == 1
    assert len(buffer) == 1
