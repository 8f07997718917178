"""Lines a real InfluxDB refuses (400): found cheaply, counted exactly.

InfluxDB 1.x answers a body with refused lines with 400 and stores the
others.  For lines it cannot parse (a series key over 64 KB, say) it names
each one (``unable to parse '<line>': <reason>``); for points its storage
engine refuses (a field type conflict, ``max-values-per-tag``) it gives
the first reason and a count (``dropped=N``).  Every test reads back what
the server stored and compares it with ``stats()``.
"""

from __future__ import annotations

import logging
import typing

import pytest

from sprockets_influxdb import Client, Measurement
from tests.servers import (
    FORWARD,
    FaultServer,
    InfluxServer,
    RecordedRequest,
    Response,
)

Factory = typing.Callable[..., Client]

LONG_KEY = 70_000  # a series key over InfluxDB's limit of 65,535 bytes


@pytest.fixture
def client_factory() -> typing.Iterator[Factory]:
    clients: list[Client] = []

    def factory(url: str, **settings: typing.Any) -> Client:
        settings.setdefault('submission_interval', 60000)
        settings.setdefault('tag_hostname', False)
        settings.setdefault('backoff_base', 0.05)
        settings.setdefault('backoff_max', 0.2)
        settings.setdefault('max_batch_size', 20_000)
        settings.setdefault('trigger_size', 20_000)
        settings.setdefault('max_buffer_size', 50_000)
        client = Client(url, **settings)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.shutdown(timeout=1).result(timeout=10)


def point(index: int, **tags: str) -> Measurement:
    measurement = Measurement('db', 'm')
    measurement.tags.clear()
    measurement.set_tags(tags)
    measurement.set_field('i', index)
    measurement.set_timestamp(1_700_000_000 + index / 1000)
    return measurement


def seed_integer_field(server: InfluxServer) -> None:
    """Make ``i`` an integer field in the shard the points go to.

    (A first write that makes a shard and conflicts there is refused
    whole, without a count: the server stores none of it.)
    """
    server.write('db', 'm i=0i 1700000000000')


def spread(count: int, total: int) -> list[int]:
    """*count* indexes spread evenly through ``range(total)``."""
    return [7 + index * (total // count) for index in range(count)]


def sent_bytes(server: FaultServer) -> list[int]:
    return [len(request.body) for request in server.requests]


def rejected_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.ERROR and 'rejected' in record.message
    ]


@pytest.mark.parametrize('placement', ['clustered', 'spread'])
def test_lines_the_server_cannot_parse_are_named_in_its_answer(
    placement: str,
    fault_server: FaultServer,
    influxdb: InfluxServer,
    client_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    influxdb.create_database('db')
    client = client_factory(fault_server.url)
    total = 10_064
    if placement == 'clustered':
        bad = set(range(10_000, total))
    else:
        bad = set(spread(64, total))
    for index in range(total):
        if index in bad:
            client.add_measurement(point(index, t='x' * LONG_KEY))
        else:
            client.add_measurement(point(index))
    with caplog.at_level(logging.ERROR, logger='sprockets_influxdb'):
        assert client.flush().result(timeout=60)

    stored = influxdb.count('db', 'm')
    assert stored == 10_000
    stats = client.stats()
    assert stats.written == stored
    assert stats.dropped['rejected'] == 64
    assert stats.added == stats.written + stats.dropped_total
    # The answer to the first request names every refused line.
    assert len(fault_server.requests) <= 4
    logs = rejected_logs(caplog)
    assert logs
    assert all('max key length exceeded' in log for log in logs)
    assert sum(len(log) for log in logs) < 20_000  # not the 4 MB lines


def test_field_type_conflicts_are_counted_as_the_server_stored_them(
    fault_server: FaultServer,
    influxdb: InfluxServer,
    client_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The engine counts what it refused but names none: halving, bounded.

    Each resent body stores its good lines again (the same points), so
    the bytes resent are bounded, and the count comes from what the
    server said about each part when the search stops.
    """
    influxdb.create_database('db')
    seed_integer_field(influxdb)
    client = client_factory(fault_server.url)
    total = 10_000
    bad = set(spread(16, total))
    for index in range(1, total):
        measurement = point(index)
        if index in bad:
            measurement.set_field('i', index + 0.5)
        client.add_measurement(measurement)
    with caplog.at_level(logging.ERROR, logger='sprockets_influxdb'):
        assert client.flush().result(timeout=60)

    stored = influxdb.count('db', 'm') - 1
    assert stored == total - 1 - len(bad)
    stats = client.stats()
    assert stats.written == stored
    assert stats.dropped['rejected'] == len(bad)
    sizes = sent_bytes(fault_server)
    assert sum(sizes[1:]) <= 2 * sizes[0]
    assert all('field type conflict' in log for log in rejected_logs(caplog))


def test_one_conflict_is_found_alone_and_cheaply(
    fault_server: FaultServer,
    influxdb: InfluxServer,
    client_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    influxdb.create_database('db')
    seed_integer_field(influxdb)
    client = client_factory(fault_server.url)
    bad = 6_113
    for index in range(1, 10_001):
        measurement = point(index)
        if index == bad:
            measurement.set_field('i', 0.5)
        client.add_measurement(measurement)
    with caplog.at_level(logging.ERROR, logger='sprockets_influxdb'):
        assert client.flush().result(timeout=60)

    assert influxdb.count('db', 'm') - 1 == 9_999
    stats = client.stats()
    assert (stats.written, stats.dropped['rejected']) == (9_999, 1)
    (log,) = rejected_logs(caplog)
    assert 'field type conflict' in log
    assert f'i=0.5 {1_700_000_000 + bad // 1000}' in log
    sizes = sent_bytes(fault_server)
    # When the first half goes through, the second is split unsent.
    assert len(sizes) <= 1 + 2 * 14
    assert sum(sizes[1:]) <= 2 * sizes[0]


def test_unparsable_lines_hidden_behind_a_conflict_are_counted(
    fault_server: FaultServer,
    influxdb: InfluxServer,
    client_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An engine error hides the parse errors of the same body."""
    influxdb.create_database('db')
    seed_integer_field(influxdb)
    client = client_factory(fault_server.url)
    for index in range(1, 401):
        if index in (50, 350):
            client.add_measurement(point(index, t='x' * LONG_KEY))
            continue
        measurement = point(index)
        if index in (120, 300):
            measurement.set_field('i', 0.5)
        client.add_measurement(measurement)
    with caplog.at_level(logging.ERROR, logger='sprockets_influxdb'):
        assert client.flush().result(timeout=60)

    stored = influxdb.count('db', 'm') - 1
    assert stored == 396
    stats = client.stats()
    assert stats.written == stored
    assert stats.dropped['rejected'] == 4


def test_a_400_naming_no_line_is_resolved_by_halving(
    fault_server: FaultServer,
    influxdb: InfluxServer,
    client_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 400 that stores nothing and says nothing (a proxy, say)."""
    influxdb.create_database('db')
    fault_server.set_rule(
        lambda request: (
            Response(400, 'Bad Request', {'Content-Type': 'text/plain'})
            if any('bad=' in line for line in request.lines)
            else FORWARD
        )
    )
    client = client_factory(fault_server.url)
    bad = set(spread(3, 1000))
    for index in range(1000):
        if index in bad:
            client.add_measurement(point(index, bad='yes'))
        else:
            client.add_measurement(point(index))
    with caplog.at_level(logging.ERROR, logger='sprockets_influxdb'):
        assert client.flush().result(timeout=60)

    assert influxdb.count('db', 'm') == 997
    stats = client.stats()
    assert (stats.written, stats.dropped['rejected']) == (997, 3)
    assert len(rejected_logs(caplog)) == 3
    sizes = sent_bytes(fault_server)
    assert sum(sizes[1:]) <= 4 * sizes[0]


def test_a_budget_spent_settles_the_rest_by_the_servers_count(
    fault_server: FaultServer,
    influxdb: InfluxServer,
    client_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    influxdb.create_database('db')
    seed_integer_field(influxdb)
    client = client_factory(fault_server.url)
    total = 10_000
    bad = set(spread(500, total))  # more than the budget can single out
    for index in range(1, total):
        measurement = point(index)
        if index in bad:
            measurement.set_field('i', 0.5)
        client.add_measurement(measurement)
    with caplog.at_level(logging.ERROR, logger='sprockets_influxdb'):
        assert client.flush().result(timeout=60)

    stored = influxdb.count('db', 'm') - 1
    assert stored == total - 1 - len(bad)
    stats = client.stats()
    assert (stats.written, stats.dropped['rejected']) == (stored, len(bad))
    sizes = sent_bytes(fault_server)
    assert sum(sizes[1:]) <= 2 * sizes[0]
    assert any('could not single' in log for log in rejected_logs(caplog))


def test_a_write_refused_whole_is_sent_again_to_store_the_good_lines(
    fault_server: FaultServer,
    influxdb: InfluxServer,
    client_factory: Factory,
) -> None:
    """A conflict in a shard the write creates: nothing stored, no count."""
    influxdb.create_database('db')
    influxdb.write('db', 'm i=0i 1')  # another shard: 1970
    client = client_factory(fault_server.url)
    bad = set(spread(3, 1000))
    for index in range(1, 1000):
        measurement = point(index)
        if index in bad:
            measurement.set_field('i', 0.5)
        client.add_measurement(measurement)
    assert client.flush().result(timeout=60)

    assert fault_server.requests[0].status == 400
    stored = influxdb.count('db', 'm') - 1
    assert stored == 999 - len(bad)
    stats = client.stats()
    assert (stats.written, stats.dropped['rejected']) == (stored, len(bad))


def test_named_lines_are_recognised_whatever_they_hold(
    fault_server: FaultServer,
    influxdb: InfluxServer,
    client_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Quotes, ``': `` and line feeds in a line do not confuse the list."""
    influxdb.create_database('db')
    client = client_factory(fault_server.url)
    awkward = "it's': \"quoted\"\nunable to parse 'x': <&>"
    bad = {3, 4, 90}
    for index in range(100):
        tags = {'t': 'x' * LONG_KEY} if index in bad else {}
        measurement = point(index, **tags)
        measurement.set_field('s', awkward)
        client.add_measurement(measurement)
    with caplog.at_level(logging.ERROR, logger='sprockets_influxdb'):
        assert client.flush().result(timeout=60)

    rows = influxdb.rows('db', 'm')
    assert len(rows) == 97
    assert {row['s'] for row in rows} == {awkward}
    stats = client.stats()
    assert (stats.written, stats.dropped['rejected']) == (97, 3)
    assert len(fault_server.requests) == 1
    assert len(rejected_logs(caplog)) == 3


def test_lines_after_a_list_cut_short_are_asked_about_again(
    bare_fault_server: FaultServer, client_factory: Factory
) -> None:
    """An answer longer than what is read names the lines it gets to."""

    def answer(request: RecordedRequest) -> Response:
        lines = request.lines
        if len(lines) == 10:
            # Cut short by the read limit inside the second line named.
            message = (
                f"partial write: unable to parse '{lines[2]}': bad\n"
                f"unable to parse '{lines[5]}{'y' * 200_000}"
            )
        else:
            message = f"partial write: unable to parse '{lines[2]}': bad"
        return Response.from_json(400, {'error': f'{message} dropped=0'})

    bare_fault_server.set_rule(answer)
    client = client_factory(bare_fault_server.url)
    for index in range(10):
        client.add_measurement(point(index))
    assert client.flush().result(timeout=60)

    first, second = bare_fault_server.requests
    assert len(first.lines) == 10
    assert second.lines == first.lines[3:]
    stats = client.stats()
    assert (stats.written, stats.dropped['rejected']) == (8, 2)
