"""Delivery against real InfluxDB servers: triggers, batching, faults.

Every test reads back what the server stored; faults are real (the server
stopped, restarted, frozen) or come from the scripted loopback server for
status codes a real server will not produce on demand.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import typing

import pytest

from sprockets_influxdb import Client, Measurement
from tests.helpers import both_modes, run_in_mode, wait_for
from tests.servers import (
    FORWARD,
    FaultServer,
    InfluxServer,
    Response,
    free_port,
)

Factory = typing.Callable[..., Client]


@pytest.fixture
def client_factory() -> typing.Iterator[Factory]:
    clients: list[Client] = []

    def factory(url: str, **settings: typing.Any) -> Client:
        settings.setdefault('submission_interval', 60000)
        settings.setdefault('tag_hostname', False)
        settings.setdefault('backoff_base', 0.05)
        settings.setdefault('backoff_max', 0.2)
        client = Client(url, **settings)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.shutdown(timeout=1).result(timeout=10)


def point(
    index: int, database: str = 'db', name: str = 'm', **tags: str
) -> Measurement:
    measurement = Measurement(database, name)
    measurement.tags.clear()
    measurement.set_tags(tags)
    measurement.set_field('i', index)
    measurement.set_timestamp(1_700_000_000 + index / 1000)
    return measurement


def indexes(server: InfluxServer, database: str = 'db') -> list[int]:
    return sorted(int(row['i']) for row in server.rows(database, 'm'))  # type: ignore[call-overload]


def test_round_trip_of_every_field_type(
    influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('db')
    client = client_factory(influxdb.url, base_tags={'service': 'billing'})
    measurement = Measurement('db', 'requests')
    measurement.set_tags({'method': 'GET', 'path': '/a b,c=d'})
    measurement.set_field('ok', True)
    measurement.set_field('count', 3)
    measurement.set_field('ratio', 0.1 + 0.2)
    measurement.set_field('note', 'say "hi"\\\nbye')
    measurement.set_field('digits', '0042')
    measurement.set_timestamp(1_700_000_000.123)
    client.add_measurement(measurement)
    assert client.flush().result(timeout=10) is True

    (row,) = influxdb.rows('db', 'requests')
    assert row == {
        'time': 1_700_000_000_123,
        'method': 'GET',
        'path': '/a b,c=d',
        'service': 'billing',
        'hostname': socket.gethostname(),  # a base tag of the default client
        'ok': True,
        'count': 3,
        'ratio': 0.30000000000000004,
        'note': 'say "hi"\\\nbye',
        'digits': '0042',
    }
    assert influxdb.field_types('db', 'requests') == {
        'ok': 'boolean',
        'count': 'integer',
        'ratio': 'float',
        'note': 'string',
        'digits': 'string',
    }
    stats = client.stats()
    assert (stats.added, stats.written, stats.buffered) == (1, 1, 0)


def test_later_changes_to_a_measurement_are_not_sent(
    influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('db')
    client = client_factory(influxdb.url)
    measurement = point(1, tag='before')
    client.add_measurement(measurement)
    measurement.set_tag('tag', 'after')
    measurement.set_field('i', 2)
    assert client.flush().result(timeout=10)
    assert influxdb.rows('db', 'm')[0]['tag'] == 'before'
    assert indexes(influxdb) == [1]


def test_a_measurement_changed_after_adding_in_every_way(
    influxdb: InfluxServer, client_factory: Factory
) -> None:
    # What is queued is what the measurement held when it was added,
    # whether it is changed afterwards through its setters, through its
    # dictionaries (taken before adding, too) or by replacing them, and
    # added again.
    influxdb.create_database('db')
    client = client_factory(influxdb.url)
    measurement = point(1, tag='a')
    tags, fields = measurement.tags, measurement.fields
    client.add_measurement(measurement)
    tags['tag'] = 'b'
    fields['i'] = 2
    measurement.set_timestamp(1_700_000_000.002)
    client.add_measurement(measurement)
    measurement.set_tag('tag', 'c')
    measurement.set_field('i', 3)
    measurement.set_timestamp(1_700_000_000.003)
    client.add_measurement(measurement)
    measurement.tags = {'tag': 'd'}
    measurement.fields = {'i': 4}
    measurement.set_timestamp(1_700_000_000.004)
    client.add_measurement(measurement)
    with measurement.duration('i'):
        pass
    measurement.tags.clear()
    measurement.set_tags({'tag': 'e'})
    assert client.flush().result(timeout=10)
    rows = influxdb.rows('db', 'm')
    assert [(row['tag'], row['i']) for row in rows] == [
        ('a', 1),
        ('b', 2),
        ('c', 3),
        ('d', 4),
    ]
    assert measurement.tags == {'tag': 'e'}
    assert isinstance(measurement.fields['i'], float)


# The module's add_measurement queues a measurement's dictionaries without
# copying them while no Python code holds them: what was queued must still
# be what the measurement held when it was added.
ADDED_AGAIN = """
import json, sys
import sprockets_influxdb as influxdb
from sprockets_influxdb import clock

influxdb.install(url=sys.argv[1], tag_hostname=False)
# The same names and values once first, so that what follows takes the
# compiled paths (a first use validates in Python).
for tag in 'acdefg':
    warm = influxdb.Measurement('db', 'm')
    warm.set_tag('tag', tag)
    warm.set_field('i', 0)
measurement = influxdb.Measurement('db', 'm')
measurement.set_tag('tag', 'a')
measurement.set_field('i', 1)
measurement.set_timestamp(1_700_000_000.001)
influxdb.add_measurement(measurement)
measurement.set_timestamp(1_700_000_000.002)
influxdb.add_measurement(measurement)  # unchanged, again
measurement.set_tag('tag', 'c')
measurement.set_field('i', 3)
measurement.set_timestamp(1_700_000_000.003)
influxdb.add_measurement(measurement)
tags, fields = measurement.tags, measurement.fields
tags['tag'] = 'd'
fields['i'] = 4
measurement.set_timestamp(1_700_000_000.004)
influxdb.add_measurement(measurement)
tags['tag'] = 'e'  # after adding, through dictionaries taken before
fields['i'] = 5
other = influxdb.Measurement('db', 'm')
other.set_tag('tag', 'f')
other.set_field('i', 6)
other.set_timestamp(1_700_000_000.006)
influxdb.add_measurement(other)
other.set_tag('tag', 'g')  # after adding, through the setters
other.set_field('i', 7)
print(json.dumps({
    'compiled': clock.COMPILED,
    'delivered': influxdb.shutdown().result(timeout=30),
    'held': [measurement.tags, measurement.fields, other.tags, other.fields],
}))
"""

# A test's mock of Client.add_measurement, on the default client or on the
# class, is what the module's add_measurement calls.
PATCHED = """
import json, sys
from unittest import mock
import sprockets_influxdb as influxdb
from sprockets_influxdb import Client, clock

influxdb.install(url=sys.argv[1], tag_hostname=False)
measurement = influxdb.Measurement('db', 'm')
measurement.set_field('i', 1)
influxdb.add_measurement(measurement)  # the compiled path, warmed up
client = influxdb.default_client()
with mock.patch.object(client, 'add_measurement') as on_client:
    influxdb.add_measurement(measurement)
with mock.patch.object(Client, 'add_measurement') as on_class:
    influxdb.add_measurement(measurement)
influxdb.add_measurement(measurement)
print(json.dumps({
    'compiled': clock.COMPILED,
    'calls': [on_client.call_count, on_class.call_count],
    'added': influxdb.stats().added,
}))
"""


@both_modes
def test_a_mock_of_add_measurement_is_called_by_the_module_api(
    influxdb: InfluxServer, pure: str
) -> None:
    influxdb.create_database('db')
    answer = run_in_mode(
        PATCHED, pure, {'INFLUXDB_TAGS': ''}, args=(influxdb.url,)
    )
    assert answer == {'calls': [1, 1], 'added': 2}


@both_modes
def test_a_measurement_added_again_and_changed_through_the_module_api(
    influxdb: InfluxServer, pure: str
) -> None:
    influxdb.create_database('db')
    answer = run_in_mode(
        ADDED_AGAIN, pure, {'INFLUXDB_TAGS': ''}, args=(influxdb.url,)
    )
    assert answer == {
        'delivered': True,
        'held': [{'tag': 'e'}, {'i': 5}, {'tag': 'g'}, {'i': 7}],
    }
    rows = influxdb.rows('db', 'm')
    assert [(row['tag'], row['i']) for row in rows] == [
        ('a', 1),
        ('a', 1),
        ('c', 3),
        ('d', 4),
        ('f', 6),
    ]


def test_a_measurement_without_fields_is_refused(
    client_factory: Factory,
) -> None:
    client = client_factory('http://127.0.0.1:9')
    with pytest.raises(ValueError, match='no fields'):
        client.add_measurement(Measurement('db', 'm'))
    assert client.stats().added == 0


def test_the_submission_interval_writes_without_a_flush(
    influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('db')
    client = client_factory(influxdb.url, submission_interval=100)
    client.add_measurement(point(1))
    wait_for(lambda: influxdb.count('db', 'm') == 1, message='the interval')


def test_the_trigger_size_writes_without_a_flush(
    influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('db')
    client = client_factory(influxdb.url, trigger_size=25)
    for index in range(24):
        client.add_measurement(point(index))
    time.sleep(0.3)
    assert influxdb.count('db', 'm') == 0
    client.add_measurement(point(24))
    wait_for(lambda: influxdb.count('db', 'm') == 25, message='the trigger')


def test_batches_are_bounded_and_grouped_by_database(
    fault_server: FaultServer, influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('one')
    influxdb.create_database('two')
    client = client_factory(fault_server.url, max_batch_size=7)
    for index in range(30):
        client.add_measurement(point(index, 'one' if index % 3 else 'two'))
    assert client.flush().result(timeout=10)

    requests = fault_server.requests
    assert all(len(request.lines) <= 7 for request in requests)
    assert sum(len(request.lines) for request in requests) == 30
    for request in requests:
        assert request.query['precision'] == 'n'
        assert request.headers['user-agent'].startswith('sprockets-influxdb/')
    assert indexes(influxdb, 'one') == [i for i in range(30) if i % 3]
    assert indexes(influxdb, 'two') == list(range(0, 30, 3))


def test_max_clients_bounds_requests_in_flight(
    bare_fault_server: FaultServer, client_factory: Factory
) -> None:
    bare_fault_server.set_rule(lambda request: Response(204, delay=0.2))
    client = client_factory(
        bare_fault_server.url, max_batch_size=1, max_clients=2
    )
    for index in range(6):
        client.add_measurement(point(index))
    assert client.flush().result(timeout=10)
    arrivals = sorted(
        request.arrived for request in bare_fault_server.requests
    )
    assert len(arrivals) == 6
    # Never three requests within one server delay of each other.
    assert all(
        later - earlier >= 0.15
        for earlier, later in zip(arrivals, arrivals[2:])
    )


def test_stopped_and_restarted_server_loses_nothing(
    influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('db')
    client = client_factory(
        influxdb.url, trigger_size=50, submission_interval=50
    )
    total = 3000
    restarted = threading.Event()

    def produce() -> None:
        for index in range(total):
            client.add_measurement(point(index))
            if index % 100 == 0:
                time.sleep(0.01)

    producer = threading.Thread(target=produce)
    producer.start()
    wait_for(lambda: influxdb.count('db', 'm') > 0, message='first writes')
    influxdb.stop()
    wait_for(lambda: client.stats().retries > 0, message='a failed write')
    influxdb.start()
    restarted.set()
    producer.join()
    assert client.flush().result(timeout=30)
    assert indexes(influxdb) == list(range(total))
    stats = client.stats()
    assert stats.written >= total
    assert stats.dropped_total == 0


def test_frozen_server_times_out_then_delivers(
    influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('db')
    client = client_factory(influxdb.url, request_timeout=0.3, trigger_size=1)
    client.add_measurement(point(0))
    assert client.flush().result(timeout=10)
    influxdb.freeze()
    try:
        for index in range(1, 50):
            client.add_measurement(point(index))
        assert client.flush(timeout=1).result(timeout=10) is False
        stats = client.stats()
        assert stats.retries >= 1
        assert 'timed out' in (stats.last_error or '')
    finally:
        influxdb.thaw()
    assert client.flush().result(timeout=30)
    assert indexes(influxdb) == list(range(50))


def test_one_bad_line_among_thousands(
    fault_server: FaultServer,
    influxdb: InfluxServer,
    client_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    influxdb.create_database('db')
    influxdb.write('db', 'm i=0i 1')  # `i` is an integer field from now on
    client = client_factory(fault_server.url, max_batch_size=5000)
    bad = 3217
    for index in range(1, 5001):
        measurement = point(index)
        if index == bad:
            measurement.set_field('i', float(index))  # a type conflict
        client.add_measurement(measurement)
    with caplog.at_level(logging.ERROR, logger='sprockets_influxdb'):
        assert client.flush().result(timeout=30)

    stored = indexes(influxdb)
    assert stored == [0] + [i for i in range(1, 5001) if i != bad]
    stats = client.stats()
    assert stats.dropped['rejected'] == 1
    assert stats.written == 4999
    rejected = [r for r in caplog.records if 'rejected a line' in r.message]
    assert len(rejected) == 1
    assert 'field type conflict' in rejected[0].message
    assert f'i={bad}.0' in rejected[0].message
    # Halving finds it in two requests per level: never one per line.
    assert len(fault_server.requests) <= 1 + 2 * 13


def test_eight_threads_adding_concurrently(
    influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('db')
    client = client_factory(
        influxdb.url, trigger_size=1000, max_buffer_size=100_000
    )
    per_thread = 2500

    def produce(thread: int) -> None:
        for index in range(per_thread):
            client.add_measurement(point(thread * per_thread + index))

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.flush().result(timeout=30)
    assert indexes(influxdb) == list(range(8 * per_thread))
    stats = client.stats()
    assert stats.added == stats.written == 8 * per_thread


def test_overflow_keeps_the_newest_and_reports_the_drops(
    influxdb: InfluxServer,
    client_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    influxdb.create_database('db')
    influxdb.stop()
    client = client_factory(
        influxdb.url, max_buffer_size=100, submission_interval=20
    )
    with caplog.at_level(logging.WARNING, logger='sprockets_influxdb'):
        for index in range(300):
            client.add_measurement(point(index))
        wait_for(
            lambda: (
                client.stats().buffered == 100
                and client.stats().in_flight == 0
            ),
            message='the buffer to settle',
        )
    assert client.stats().dropped['overflow'] == 200
    assert any('buffer is full' in r.message for r in caplog.records)
    influxdb.start()
    assert client.flush().result(timeout=30)
    assert indexes(influxdb) == list(range(200, 300))
    stats = client.stats()
    assert stats.added == stats.written + stats.dropped_total == 300


def test_shutdown_with_the_server_down_is_bounded_and_reports_losses(
    influxdb: InfluxServer,
    client_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    influxdb.create_database('db')
    client = client_factory(influxdb.url)
    client.add_measurement(point(0))
    assert client.flush().result(timeout=10)
    influxdb.stop()  # it was reached before: worth waiting for
    for index in range(1, 11):
        client.add_measurement(point(index))
    with caplog.at_level(logging.WARNING, logger='sprockets_influxdb'):
        future = client.shutdown(timeout=0.5)
        assert future.result(timeout=5) is False
    assert client.stats().dropped['shutdown'] == 10
    # One error says how many and why.
    (error,) = [r for r in caplog.records if r.levelname == 'ERROR']
    assert error.getMessage().startswith(
        f'Shut down with 10 measurements not delivered to InfluxDB at '
        f'{influxdb.url}/write (ConnectError: '
    )
    assert error.getMessage().endswith(
        'written 1, dropped in all 10 (shutdown)'
    )
    # A second call is harmless and gives the same answer.
    assert client.shutdown().result(timeout=1) is False


def test_a_server_never_reached_is_not_waited_for_at_shutdown(
    client_factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    nobody = f'http://127.0.0.1:{free_port()}'
    client = client_factory(nobody)
    for index in range(3):
        client.add_measurement(point(index))
    # A plain flush waits for its timeout: the server may be starting.
    assert client.flush(timeout=0.3).result(timeout=10) is False
    # Stopping (or an application's lifespan) gives up after the first
    # connection refused, well before a deadline of a minute.
    assert client.flush(timeout=60, wait_for_server=False).result(10) is False
    with caplog.at_level(logging.ERROR, logger='sprockets_influxdb'):
        assert client.shutdown(timeout=60).result(timeout=10) is False
    (error,) = [r for r in caplog.records if r.levelname == 'ERROR']
    assert '3 measurements not delivered' in error.getMessage()
    assert client.stats().dropped['shutdown'] == 3


def test_measurements_after_shutdown_are_counted_with_one_warning(
    influxdb: InfluxServer,
    client_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    influxdb.create_database('db')
    client = client_factory(influxdb.url)
    client.add_measurement(point(0))
    assert client.shutdown().result(timeout=10) is True
    with caplog.at_level(logging.WARNING, logger='sprockets_influxdb'):
        for index in range(1, 101):
            client.add_measurement(point(index))
    warnings = [r for r in caplog.records if 'after shutdown' in r.message]
    assert len(warnings) == 1
    stats = client.stats()
    assert stats.dropped['shutdown'] == 100
    assert stats.added == 101
    assert indexes(influxdb) == [0]


def test_flush_times_out_when_the_server_is_down(
    influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.stop()
    client = client_factory(influxdb.url)
    client.add_measurement(point(0))
    assert client.flush(timeout=0.3).result(timeout=5) is False
    assert client.stats().buffered + client.stats().in_flight == 1


def test_429_with_retry_after_is_honoured(
    fault_server: FaultServer, influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('db')
    fault_server.script(
        Response(429, b'{"error":"slow down"}', {'Retry-After': '1'})
    )
    client = client_factory(fault_server.url, trigger_size=1)
    client.add_measurement(point(0))
    wait_for(lambda: influxdb.count('db', 'm') == 1, message='the retry')
    first, second = fault_server.requests[:2]
    assert first.status == 429
    assert second.arrived - first.arrived >= 0.9
    assert client.stats().retries == 1


def test_500_is_retried_and_new_measurements_are_accepted_meanwhile(
    fault_server: FaultServer, influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('db')
    fault_server.script(
        Response.error(500, 'engine trouble'),
        Response.error(503, 'still trouble'),
    )
    client = client_factory(fault_server.url, trigger_size=1)
    client.add_measurement(point(0))
    wait_for(lambda: client.stats().retries >= 1, message='a retry')
    client.add_measurement(point(1))
    assert client.flush().result(timeout=10)
    assert indexes(influxdb) == [0, 1]
    stats = client.stats()
    assert stats.retries == 2
    assert 'still trouble' in (stats.last_error or '')


def test_413_from_a_scripted_server_splits_the_batch(
    fault_server: FaultServer, influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('db')
    fault_server.set_rule(
        lambda request: (
            Response.error(413, 'too large')
            if len(request.lines) > 10
            else None
        )
    )
    client = client_factory(fault_server.url)
    for index in range(50):
        client.add_measurement(point(index))
    assert client.flush().result(timeout=10)
    assert indexes(influxdb) == list(range(50))
    assert fault_server.requests[0].status == 413
    assert client.stats().dropped_total == 0


def test_413_from_a_real_server_splits_and_a_huge_line_is_dropped(
    influxdb_factory: typing.Callable[..., InfluxServer],
    client_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = influxdb_factory(max_body_size=4000)
    server.create_database('db')
    client = client_factory(server.url)
    for index in range(200):
        client.add_measurement(point(index))
    huge = point(1000)
    huge.set_field('text', 'x' * 5000)
    client.add_measurement(huge)
    with caplog.at_level(logging.ERROR, logger='sprockets_influxdb'):
        assert client.flush().result(timeout=30)
    assert indexes(server) == list(range(200))
    assert client.stats().dropped['rejected'] == 1
    assert any('too large' in r.message for r in caplog.records)


def test_a_missing_database_is_retried_without_blocking_others(
    influxdb: InfluxServer,
    client_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    influxdb.create_database('present')
    client = client_factory(influxdb.url, trigger_size=1)
    with caplog.at_level(logging.ERROR, logger='sprockets_influxdb'):
        client.add_measurement(point(0, 'absent'))
        client.add_measurement(point(1, 'present'))
        wait_for(
            lambda: influxdb.count('present', 'm') == 1,
            message='the other database',
        )
        wait_for(lambda: client.stats().retries >= 2, message='retries')
    errors = [r for r in caplog.records if "'absent'" in r.message]
    assert errors
    assert 'database not found' in errors[0].message
    assert len(errors) < client.stats().retries
    influxdb.create_database('absent')
    assert client.flush().result(timeout=10)
    assert indexes(influxdb, 'absent') == [0]


def test_flush_cuts_a_long_backoff_short(
    fault_server: FaultServer, influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('db')
    fault_server.script(
        Response(503, b'{"error":"later"}', {'Retry-After': '600'})
    )
    client = client_factory(fault_server.url, trigger_size=1)
    client.add_measurement(point(0))
    wait_for(lambda: client.stats().retries == 1, message='the backoff')
    assert client.flush().result(timeout=10) is True
    assert indexes(influxdb) == [0]


def test_bad_credentials_are_retried_until_fixed(
    influxdb_factory: typing.Callable[..., InfluxServer],
    client_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = influxdb_factory(auth_enabled=True)
    server.create_admin('admin', 'right')
    server.create_database('db')
    client = client_factory(
        server.url,
        auth_username='admin',
        auth_password='wrong',
        trigger_size=1,
    )
    with caplog.at_level(logging.ERROR, logger='sprockets_influxdb'):
        client.add_measurement(point(0))
        wait_for(lambda: client.stats().retries >= 1, message='a 401')
    assert '401' in (client.stats().last_error or '')
    assert all('wrong' not in r.getMessage() for r in caplog.records)
    client.configure(password='right')
    assert client.flush().result(timeout=10)
    assert indexes(server) == [0]


def test_gzip_bodies(
    fault_server: FaultServer, influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('db')
    client = client_factory(fault_server.url, gzip=True)
    for index in range(100):
        client.add_measurement(point(index))
    assert client.flush().result(timeout=10)
    assert fault_server.requests[0].headers['content-encoding'] == 'gzip'
    assert indexes(influxdb) == list(range(100))


def test_precision_microseconds_is_sent_as_u(
    fault_server: FaultServer, influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('db')
    client = client_factory(fault_server.url, precision='us')
    measurement = point(0)
    measurement.set_timestamp(1_700_000_000.123456)
    client.add_measurement(measurement)
    assert client.flush().result(timeout=10)
    assert fault_server.requests[0].query['precision'] == 'u'
    result = influxdb.query('SELECT * FROM m', db='db', epoch='u')
    assert result['results'][0]['series'][0]['values'][0][0] == (
        1_700_000_000_123_456
    )


def test_sampling_keeps_each_measurement_independently(
    influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('db')
    client = client_factory(influxdb.url, sample_probability=0.5)
    for index in range(2000):
        client.add_measurement(point(index))
    assert client.flush().result(timeout=10)
    stored = influxdb.count('db', 'm')
    stats = client.stats()
    # Binomial(2000, 0.5): the standard deviation is about 22.
    assert 800 < stored < 1200
    assert stats.dropped['sampled'] == 2000 - stored
    client.configure(sample_probability=0)
    client.add_measurement(point(5000))
    assert client.flush().result(timeout=10)
    assert influxdb.count('db', 'm') == stored


def test_flush_is_awaitable_from_asyncio(
    influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('db')
    client = client_factory(influxdb.url)

    async def main() -> bool:
        client.add_measurement(point(0))
        return await client.flush()

    assert asyncio.run(main()) is True
    assert indexes(influxdb) == [0]


def test_disabled_client_accepts_and_discards(
    bare_fault_server: FaultServer, client_factory: Factory
) -> None:
    client = client_factory(bare_fault_server.url, enabled=False)
    client.add_measurement(point(0))
    assert client.flush().result(timeout=1) is True
    assert bare_fault_server.requests == []


def test_non_default_clients_add_their_base_tags(
    influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('db')
    client = client_factory(influxdb.url, base_tags={'region': 'eu', 'a': 'b'})
    client.add_measurement(point(0, a='mine'))
    assert client.flush().result(timeout=10)
    (row,) = influxdb.rows('db', 'm')
    assert (row['region'], row['a']) == ('eu', 'mine')


def test_fault_server_forwards_by_default(fault_server: FaultServer) -> None:
    # The scripted server stands in front of the real one: unscripted
    # requests reach it, so the fault tests above read real rows.
    fault_server.script(FORWARD)
    assert fault_server.pending == 1


def test_the_buffer_bound_is_on_the_total(
    influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('db')
    influxdb.stop()
    client = client_factory(
        influxdb.url, max_buffer_size=100, trigger_size=100
    )
    for index in range(100):
        client.add_measurement(point(index))
    # The first 100 were taken by the writer, failed and wait for a retry.
    wait_for(lambda: client.stats().retries >= 1, message='a failed write')
    for index in range(100, 250):
        client.add_measurement(point(index))
    wait_for(
        lambda: (
            client.stats().buffered <= 100 and client.stats().in_flight == 0
        ),
        message='the total to come back under the bound',
    )
    assert client.stats().buffered == 100
    influxdb.start()
    assert client.flush().result(timeout=30)
    assert indexes(influxdb) == list(range(150, 250))


def test_a_value_put_directly_that_cannot_be_written_is_dropped_alone(
    influxdb: InfluxServer,
    client_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    influxdb.create_database('db')
    client = client_factory(influxdb.url)
    bad = point(1)
    with pytest.raises(ValueError, match='is not finite'):
        bad.timestamp = float('inf')  # checked as set_timestamp() does
    bad.fields['i'] = float('inf')  # a plain dict: not checked here
    with caplog.at_level(logging.ERROR, logger='sprockets_influxdb'):
        client.add_measurement(point(0))
        client.add_measurement(bad)
        client.add_measurement(point(2))
        assert client.flush().result(timeout=10)
    assert indexes(influxdb) == [0, 2]
    assert client.stats().dropped['invalid'] == 1
    assert any('cannot store' in r.message for r in caplog.records)
    client.add_measurement(point(3))
    assert client.flush().result(timeout=10)
    assert indexes(influxdb) == [0, 2, 3]


@pytest.mark.parametrize('unique', [True, False])
def test_points_of_one_series_at_one_time_are_kept_apart(
    influxdb: InfluxServer,
    client_factory: Factory,
    caplog: pytest.LogCaptureFixture,
    unique: bool,
) -> None:
    influxdb.create_database('db')
    client = client_factory(
        influxdb.url, precision='ms', unique_timestamps=unique
    )
    with caplog.at_level(logging.WARNING, logger='sprockets_influxdb'):
        for index in range(7):
            measurement = point(index, endpoint='/')
            # The same millisecond, to be kept apart as the library's own.
            measurement.set_timestamp(1_700_000_000.5, unique=True)
            client.add_measurement(measurement)
        assert client.flush().result(timeout=10)
    rows = influxdb.rows('db', 'm')
    if unique:
        # One millisecond apart, at most four past their own time: the
        # last two are dropped, counted and reported, not moved further.
        assert [row['i'] for row in rows] == [0, 1, 2, 3, 4]
        assert [row['time'] for row in rows] == [
            1_700_000_000_500 + offset for offset in range(5)
        ]
        assert client.stats().dropped['collision'] == 2
        assert any(
            'would have replaced another point of its series' in record.message
            for record in caplog.records
        )
    else:  # InfluxDB keeps the last point of a series at one time
        assert [row['i'] for row in rows] == [6]
        assert client.stats().dropped['collision'] == 0


def test_a_new_precision_applies_to_lines_already_encoded(
    influxdb: InfluxServer, client_factory: Factory
) -> None:
    influxdb.create_database('db')
    influxdb.stop()
    client = client_factory(influxdb.url, precision='ms')
    for index in range(3):
        measurement = point(index)
        measurement.set_timestamp(1_700_000_000.123 + index)
        client.add_measurement(measurement)
    # Encoded at ms and kept while the server is down (waiting, or in a
    # retry under way when the flush gave up)...
    assert client.flush(timeout=0.5).result(timeout=5) is False
    stats = client.stats()
    assert stats.buffered + stats.in_flight == 3
    # ... then written at s: the times are converted, truncated.
    client.configure(precision='s')
    influxdb.start()
    assert client.flush().result(timeout=30)
    rows = influxdb.rows('db', 'm')
    assert [(row['time'], row['i']) for row in rows] == [
        (1_700_000_000_000, 0),
        (1_700_000_001_000, 1),
        (1_700_000_002_000, 2),
    ]
