"""Shared pytest fixtures: real InfluxDB and VictoriaMetrics, faults."""

from __future__ import annotations

import shutil
import typing

import pytest

from tests.servers import FaultServer, InfluxServer, VictoriaServer

INFLUXD_MISSING = (
    'influxd is not installed: apt-get install influxdb (InfluxDB 1.x) '
    'so that `influxd` is on PATH; the test suite needs a real server'
)
VICTORIA_MISSING = (
    'victoria-metrics is not installed: apt-get install victoria-metrics '
    'so that `victoria-metrics` is on PATH (or run .ci/bootstrap); the test '
    'suite needs a real server'
)


@pytest.fixture(scope='session')
def influxd_path() -> str:
    """Path of the influxd binary; fails the suite when it is missing."""
    path = shutil.which('influxd')
    if path is None:
        pytest.fail(INFLUXD_MISSING, pytrace=False)
    return path


@pytest.fixture
def influxdb_factory(
    influxd_path: str,
) -> typing.Iterator[typing.Callable[..., InfluxServer]]:
    """Create and start extra :class:`InfluxServer` instances.

    Accepts the :class:`InfluxServer` keyword arguments (``auth_enabled``,
    ``max_body_size``, ``port``); every server is closed at teardown.
    """
    servers: list[InfluxServer] = []

    def factory(**kwargs: typing.Any) -> InfluxServer:
        kwargs.setdefault('executable', influxd_path)
        server = InfluxServer(**kwargs)
        servers.append(server)
        server.start()
        return server

    yield factory
    errors: list[BaseException] = []
    for server in reversed(servers):
        try:
            server.close()
        except Exception as exc:  # close the others too
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def influxdb(
    influxdb_factory: typing.Callable[..., InfluxServer],
) -> InfluxServer:
    """A started, empty, throwaway InfluxDB server."""
    return influxdb_factory()


@pytest.fixture
def fault_server(influxdb: InfluxServer) -> typing.Iterator[FaultServer]:
    """A :class:`FaultServer` forwarding to the ``influxdb`` server."""
    with FaultServer(influxdb.url) as server:
        yield server


@pytest.fixture
def bare_fault_server(influxd_path: str) -> typing.Iterator[FaultServer]:
    """A :class:`FaultServer` with no upstream (default answer: 204)."""
    with FaultServer() as server:
        yield server


@pytest.fixture(scope='session')
def victoria_path() -> str:
    """Path of the victoria-metrics binary; fails when it is missing."""
    path = shutil.which('victoria-metrics')
    if path is None:
        pytest.fail(VICTORIA_MISSING, pytrace=False)
    return path


@pytest.fixture
def victoria_factory(
    victoria_path: str,
) -> typing.Iterator[typing.Callable[..., VictoriaServer]]:
    """Create and start extra :class:`VictoriaServer` instances.

    Accepts the :class:`VictoriaServer` keyword arguments (``port``,
    ``http_auth``, ``extra_args``); every server is closed at teardown.
    """
    servers: list[VictoriaServer] = []

    def factory(**kwargs: typing.Any) -> VictoriaServer:
        kwargs.setdefault('executable', victoria_path)
        server = VictoriaServer(**kwargs)
        servers.append(server)
        server.start()
        return server

    yield factory
    errors: list[BaseException] = []
    for server in reversed(servers):
        try:
            server.close()
        except Exception as exc:  # close the others too
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def victoria(
    victoria_factory: typing.Callable[..., VictoriaServer],
) -> VictoriaServer:
    """A started, empty, throwaway single-node VictoriaMetrics server."""
    return victoria_factory()
