"""Timestamps: no point replaces another, across processes and under load.

InfluxDB keys a point by its series and its time: a second point of a
series at a time already stored replaces the first.  These tests record
one identical series from many processes at once, forked as gunicorn forks
its workers and started independently as ``uvicorn --workers`` starts
them, with default settings, and count what the real server stored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import typing

import pytest

from sprockets_influxdb import Client, Measurement, clock
from sprockets_influxdb.clock import Clock
from tests.helpers import (
    both_modes,
    clean_environment,
    run_in_mode,
    run_script,
)
from tests.servers import InfluxServer

PROCESSES = 8
POINTS = 5000

# Each process records POINTS points of one series (the same measurement
# and tags in every process) as fast as it can, then shuts down.
RECORD = """
def record(number):
    for index in range(POINTS):
        measurement = influxdb.Measurement('db', 'load')
        measurement.set_tag('endpoint', '/')
        measurement.set_field('process', number)
        measurement.set_field('index', index)
        influxdb.add_measurement(measurement)
    return influxdb.shutdown().result(timeout=120)
"""


def stored(influxdb: InfluxServer) -> list[tuple[int, int]]:
    rows = influxdb.rows('db', 'load')
    return sorted((int(row['process']), int(row['index'])) for row in rows)  # type: ignore[call-overload]


def expected(processes: int = PROCESSES) -> list[tuple[int, int]]:
    return [(n, i) for n in range(processes) for i in range(POINTS)]


def test_processes_forked_from_one_parent_never_replace_points(
    influxdb: InfluxServer,
) -> None:
    influxdb.create_database('db')
    source = f"""
        import os
        import sprockets_influxdb as influxdb
        POINTS = {POINTS}
        {textwrap.indent(RECORD, ' ' * 8).strip()}
        influxdb.install()  # in the parent, as gunicorn --preload does
        children = []
        for number in range({PROCESSES}):
            pid = os.fork()
            if pid == 0:
                try:
                    os._exit(0 if record(number) else 3)
                except BaseException:
                    os._exit(2)
            children.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                 for pid in children]
        assert codes == [0] * {PROCESSES}, codes
    """
    result = run_script(
        source, env={'INFLUXDB_URL': influxdb.url}, timeout=240
    )
    assert result.returncode == 0, result.stderr
    assert stored(influxdb) == expected()


def test_processes_started_independently_never_replace_points(
    influxdb: InfluxServer,
) -> None:
    influxdb.create_database('db')
    # Every process waits for the same moment, so that they record at
    # once, as the workers of one server do.
    start = time.time() + 3.0
    source = f"""
        import sys
        import time
        import sprockets_influxdb as influxdb
        POINTS = {POINTS}
        {textwrap.indent(RECORD, ' ' * 8).strip()}
        while time.time() < {start!r}:
            time.sleep(0.001)
        sys.exit(0 if record(int(sys.argv[1])) else 3)
    """
    environ = clean_environment(INFLUXDB_URL=influxdb.url)
    processes = [
        subprocess.Popen(
            [sys.executable, '-c', textwrap.dedent(source), str(number)],
            env=environ,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number in range(PROCESSES)
    ]
    errors = [process.communicate(timeout=240)[1] for process in processes]
    assert [process.returncode for process in processes] == [0] * PROCESSES, (
        errors
    )
    assert stored(influxdb) == expected()


def test_a_series_recorded_20000_times_a_second_keeps_real_times(
    influxdb: InfluxServer,
) -> None:
    """Every point keeps the time it was recorded at, within 1 µs."""
    influxdb.create_database('db')
    client = Client(influxdb.url, tag_hostname=False)
    moments: list[tuple[int, int]] = []
    count = 20_000
    begin = time.perf_counter()
    for index in range(count):
        # Paced to 20,000 points a second.
        while time.perf_counter() - begin < index / count:
            pass
        before = time.time_ns()
        measurement = Measurement('db', 'paced')
        after = time.time_ns()
        measurement.set_tag('endpoint', '/')
        measurement.set_field('index', index)
        client.add_measurement(measurement)
        moments.append((before, after))
    assert client.shutdown().result(timeout=60) is True
    payload = influxdb.query('SELECT "index" FROM paced', 'db', epoch='ns')
    (series,) = payload['results'][0]['series']
    times = {int(index): int(stamp) for stamp, index in series['values']}
    assert len(times) == count
    late = [
        (index, times[index] - after)
        for index, (before, after) in enumerate(moments)
        if not before - 1000 < times[index] <= after
    ]
    assert late == []


def test_clock_discriminator_is_the_process_id_even_after_a_fork() -> None:
    result = run_script(
        """
        import json, os, sys
        from sprockets_influxdb import Measurement
        def residues():
            return sorted({Measurement('db', 'm').time_ns % 1000
                           for _ in range(100)})
        parent = residues()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(write, json.dumps([os.getpid(), residues()]).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        child_pid, child = json.loads(os.read(read, 1000))
        print(json.dumps({'parent': [os.getpid(), parent],
                          'child': [child_pid, child]}))
        """
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    for pid, residues in seen.values():
        assert residues == [pid % 1000]


def test_an_arrival_is_its_moment_on_the_process_lattice() -> None:
    """clock.arrival: a time.time() moment rounded down to end in the
    discriminator; moments two microseconds apart (a float of seconds
    holds about a quarter of one) give different times; what is no time
    gives None."""
    now = time.time()
    for moment in (now, now + 2e-6, now + 0.5, 1_700_000_000.0):
        stamp = clock.arrival(moment)
        assert stamp is not None
        assert stamp % 1000 == clock.discriminator()
        assert 0 <= int(moment * 1e9) - stamp < 1000
    first, second = clock.arrival(now), clock.arrival(now + 2e-6)
    assert first is not None
    assert second is not None
    assert 1000 <= second - first <= 3000
    for bad in (0.0, -1.0, 1e12, float('nan'), float('inf')):
        assert clock.arrival(bad) is None


def test_library_times_in_one_process_are_all_distinct() -> None:
    times = [Measurement('db', 'm').time_ns for _ in range(50_000)]
    assert len(set(times)) == len(times)
    assert times == sorted(times)


Factory = typing.Callable[..., Client]


def point(index: int, seconds: float, *, unique: bool = False) -> Measurement:
    measurement = Measurement('db', 'm')
    measurement.tags.clear()
    measurement.set_tag('endpoint', '/')
    measurement.set_field('i', index)
    measurement.set_timestamp(seconds, unique=unique)
    return measurement


@pytest.mark.parametrize('unique', [False, True])
def test_given_times_are_written_as_given_unless_asked(
    influxdb: InfluxServer, unique: bool
) -> None:
    influxdb.create_database('db')
    client = Client(influxdb.url, tag_hostname=False)
    for index in range(3):
        client.add_measurement(point(index, 1_700_000_000.5, unique=unique))
    assert client.shutdown().result(timeout=10) is True
    payload = influxdb.query('SELECT i FROM m', 'db', epoch='ns')
    rows = payload['results'][0]['series'][0]['values']
    if unique:
        # Ending in this process's digits, one microsecond apart.
        base = 1_700_000_000_500_000_000 + os.getpid() % 1000
        assert rows == [[base + step * 1000, step] for step in range(3)]
    else:  # InfluxDB keeps the last point of a series at one time
        assert rows == [[1_700_000_000_500_000_000, 2]]


class Script:
    """A system clock that reads the times it is given, then fails."""

    def __init__(self, *readings: int) -> None:
        self.readings = list(readings)

    def __call__(self) -> int:
        return self.readings.pop(0)


def test_the_clock_waits_for_the_next_microsecond() -> None:
    read = Script(5_000_042, 5_000_300, 5_000_999, 5_001_042, 5_001_500)
    clock = Clock(read, resolution=1, offset=42)
    assert clock() == 5_000_042
    # Two readings in the same microsecond are skipped, never moved on.
    assert clock() == 5_001_042
    assert read.readings == [5_001_500]


def test_the_clock_steps_within_the_tick_of_a_coarse_clock() -> None:
    tick = 15_625_000  # a Windows clock before Python 3.13
    read = Script(tick, tick, tick, 2 * tick)
    clock = Clock(read, resolution=tick, offset=7)
    start = tick - 1000 + 7
    assert [clock(), clock(), clock()] == [start, start + 1000, start + 2000]
    assert clock() == 2 * tick - 1000 + 7


def test_the_clock_follows_the_system_clock_set_back() -> None:
    read = Script(9_000_000_000, 1_000_000_000)
    clock = Clock(read, resolution=1, offset=0)
    assert clock() == 9_000_000_000
    assert clock() == 1_000_000_000


def test_the_clock_hands_out_a_time_given_back_again() -> None:
    read = Script(5_000_042, 5_000_300, 5_000_500, 5_001_042)
    clock = Clock(read, resolution=1, offset=42)
    assert clock() == 5_000_042
    clock.give_back(5_000_042)
    # Nobody holds it any more: the same microsecond serves again...
    assert clock() == 5_000_042
    # ...but only once.
    assert clock() == 5_001_042
    assert read.readings == []


def test_the_clock_keeps_a_time_given_back_after_a_later_one() -> None:
    read = Script(5_000_042, 5_001_042, 5_001_500, 5_002_042)
    clock = Clock(read, resolution=1, offset=42)
    first, second = clock(), clock()
    clock.give_back(first)  # later times were handed out since: kept
    assert [first, second, clock()] == [5_000_042, 5_001_042, 5_002_042]


# Points built with times of their own give the clock's back (so that they
# do not wait for it); a time that was read or queued must never be
# handed out again.  Each round: a point queued with the clock's time, then
# given a time of its own and queued again; another point takes a time of
# the clock, reads it, and gets a time of its own at the end of the round.
# Each step follows the one before within a microsecond or so, so that a
# time given back wrongly would be handed out again at once.  In pure
# Python, where the steps take longer, the clock runs 20 times slower.
REUSE = """
import json, sys, time
import sprockets_influxdb as influxdb
from sprockets_influxdb import clock

if not clock.COMPILED:
    start = time.time_ns()
    clock._python_clock._read = lambda: start + (time.time_ns() - start) // 20

client = influxdb.Client(sys.argv[1], tag_hostname=False)
ROUNDS = int(sys.argv[2])
read = []
for index in range(ROUNDS):
    measurement = influxdb.Measurement('db', 'reused')
    measurement.set_field('index', index)
    client.add_measurement(measurement)
    measurement.set_timestamp(1_700_000_000 + index / 1000)
    other = influxdb.Measurement('db', 'read')
    read.append(other.time_ns)
    measurement.set_field('index', ROUNDS + index)
    client.add_measurement(measurement)
    other.set_timestamp(1.0)
delivered = client.shutdown().result(timeout=60)
print(json.dumps({'compiled': clock.COMPILED, 'delivered': delivered,
                  'read': read}))
"""


# A point given a time of its own as soon as it is made gives the clock's
# back: the next time is the same one.  On a clock of a coarse resolution
# the times within a tick are handed out a microsecond apart, ahead of the
# system clock, which makes them known in advance: 20,000 of them put the
# compiled clock 20 ms ahead (in pure Python, the system clock stands
# still).
GIVEN_BACK = """
import copy, json
import sprockets_influxdb as influxdb
from sprockets_influxdb import clock

if clock.COMPILED:
    from sprockets_influxdb import _speedups
    _speedups.configure_clock(clock.discriminator(), 10**15)
else:
    clock._python_clock._resolution = 10**15
    frozen = clock._python_clock._read()
    clock._python_clock._read = lambda: frozen
influxdb.Measurement('db', 'm').set_timestamp(1.0)  # validated once
ahead = [clock.now_ns() for _ in range(20_000)][-1]
influxdb.Measurement('db', 'm').set_timestamp(1.0)
again = clock.now_ns()
read = influxdb.Measurement('db', 'm')
seen = read.time_ns
read.set_timestamp(1.0)
after = clock.now_ns()
# Given as unique, a time that rounds to the one it was lent: kept.
unique = influxdb.Measurement('db', 'm')
unique.set_timestamp((after + 1000) // 1000 / 1e6, unique=True)
following = clock.now_ns()
# A copy holds the time too: kept (the compiled measurement has no copy).
original = influxdb.Measurement('db', 'm')
try:
    duplicate = copy.copy(original)
except TypeError:
    copied = None
else:
    original.set_timestamp(1.0)
    copied = clock.now_ns() - duplicate.time_ns
print(json.dumps({'compiled': clock.COMPILED, 'again': again - ahead,
                  'after': after - seen,
                  'unique': [unique.time_ns - after, following - after],
                  'copied': copied}))
"""


@both_modes
def test_a_point_given_its_own_time_at_once_gives_the_clocks_back(
    pure: str,
) -> None:
    assert run_in_mode(GIVEN_BACK, pure) == {
        'again': 1000,  # the time the point was lent, handed out again
        'after': 1000,  # a time read is kept: the next one follows it
        'unique': [1000, 2000],  # the time it was lent, kept
        'copied': None if pure == '0' else 1000,
    }


@both_modes
def test_a_time_read_or_queued_is_never_handed_out_again(
    influxdb: InfluxServer, pure: str
) -> None:
    influxdb.create_database('db')
    rounds = 20_000
    answer = run_in_mode(
        REUSE, pure, args=(influxdb.url, str(rounds)), timeout=120
    )
    assert answer['delivered'] is True
    payload = influxdb.query('SELECT "index" FROM reused', 'db', epoch='ns')
    (series,) = payload['results'][0]['series']
    # Every point stored: none replaced another of its series...
    assert sorted(int(index) for _, index in series['values']) == list(
        range(2 * rounds)
    )
    # ...and no time the clock chose was handed out twice.
    chosen = [stamp for stamp, index in series['values'] if index < rounds]
    times = chosen + answer['read']
    assert len(set(times)) == len(times) == 2 * rounds


def test_a_measurement_reads_its_time_in_seconds_and_nanoseconds() -> None:
    before = time.time_ns()
    measurement = Measurement('db', 'm')
    after = time.time_ns()
    assert before - 1000 < measurement.time_ns <= after
    assert measurement.timestamp == measurement.time_ns / 1e9
    measurement.timestamp = 1_700_000_000.25  # as set_timestamp()
    assert measurement.time_ns == 1_700_000_000_250_000_000
    assert measurement.timestamp == 1_700_000_000.25
    with pytest.raises(ValueError, match='not finite'):
        measurement.timestamp = float('nan')
