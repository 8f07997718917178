"""A broken or hostile server costs the client bounded memory and time.

Huge and trickling answers come from the scripted loopback server, which
counts the bytes it could send before the client went away; a hung server
is a real InfluxDB frozen with SIGSTOP.
"""

from __future__ import annotations

import logging
import typing

import pytest

from sprockets_influxdb import Client, Measurement
from tests.helpers import run_script, wait_for
from tests.servers import FaultServer, InfluxServer, Response

Factory = typing.Callable[..., Client]

HUGE = 200 * 1024 * 1024
# What the kernel's socket buffers on loopback can take in before the
# client reads anything, and then some: far below HUGE.
BUFFERED = 16 * 1024 * 1024


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


def point(index: int) -> Measurement:
    measurement = Measurement('db', 'm')
    measurement.tags.clear()
    measurement.set_field('i', index)
    return measurement


@pytest.mark.parametrize('status', [200, 400, 500])
def test_a_huge_answer_is_not_read(
    status: int, bare_fault_server: FaultServer, client_factory: Factory
) -> None:
    chunk = b'{"error":"' + b'x' * (1024 * 1024 - 10)
    huge = Response(status, chunk, {'Content-Type': 'text/plain'})
    huge.repeat = HUGE // len(chunk)
    # A 5xx is retried: each retry would read it again.
    bare_fault_server.script(*[huge] * (3 if status == 500 else 1))
    client = client_factory(bare_fault_server.url)
    client.add_measurement(point(0))
    assert client.flush(timeout=30).result(timeout=60)

    requests = bare_fault_server.requests
    answered = [request for request in requests if request.status == status]
    assert answered
    wait_for(
        lambda: all(request.finished for request in answered),
        message='the server to see the client hang up',
    )
    for request in answered:
        assert request.abandoned
        assert request.sent < BUFFERED
    stats = client.stats()
    if status == 400:
        assert stats.dropped['rejected'] == 1
    else:
        assert stats.written == 1
    if status == 500:
        assert stats.retries == 3
        assert requests[-1].status == 204


def test_a_trickling_answer_is_abandoned_at_the_deadline(
    bare_fault_server: FaultServer,
    client_factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``request_timeout`` bounds the whole request, not each read."""
    timeout = 0.5
    trickle = Response(200, b'x' * 1000, {'Content-Type': 'text/plain'})
    trickle.trickle = 0.05
    bare_fault_server.script(trickle)
    client = client_factory(bare_fault_server.url, request_timeout=timeout)
    client.add_measurement(point(0))
    with caplog.at_level(logging.WARNING, logger='sprockets_influxdb'):
        assert client.flush(timeout=20).result(timeout=30)

    first, second = bare_fault_server.requests
    finished = wait_for(
        lambda: first.finished, message='the server to see the hang-up'
    )
    assert first.abandoned
    # Coarse: the server trickles for 50 s if nobody hangs up.
    assert finished - first.arrived < 5 * timeout
    assert second.status == 204
    stats = client.stats()
    assert (stats.written, stats.retries, stats.failed_requests) == (1, 1, 1)
    (warning,) = [r for r in caplog.records if 'timed out' in r.message]
    assert f'timed out after {timeout} s' in warning.getMessage()


def test_exit_with_a_frozen_server_waits_one_window(
    influxdb: InfluxServer,
) -> None:
    """The exit hooks share one ``shutdown_timeout``, however many."""
    influxdb.create_database('db')
    influxdb.freeze()  # accepts connections, never answers
    window = 4.0
    result = run_script(
        """
        import atexit
        import time

        # Registered first, so run last, after the library's own hooks.
        atexit.register(lambda: print('end', time.monotonic(), flush=True))

        import sprockets_influxdb as influxdb

        for index in range(5):
            measurement = influxdb.Measurement('db', 'm')
            measurement.set_field('i', index)
            influxdb.add_measurement(measurement)
        print('exit', time.monotonic(), flush=True)
        """,
        env={
            'INFLUXDB_URL': influxdb.url,
            'INFLUXDB_SHUTDOWN_TIMEOUT': str(window),
        },
    )
    assert result.returncode == 0, result.stderr
    times = dict(line.split() for line in result.stdout.splitlines())
    waited = float(times['end']) - float(times['exit'])
    # One window and the hooks' grace (2 s at most), where two windows
    # were waited before; the margin is for a loaded machine.
    assert waited < 2 * window - 0.5
    assert 'Shut down with 5 measurements not delivered' in result.stderr
