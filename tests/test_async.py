"""Awaiting flush() and shutdown() from both anyio backends."""

from __future__ import annotations

import pytest

from sprockets_influxdb import Client, Measurement
from tests.servers import InfluxServer


@pytest.fixture(params=['asyncio', 'trio'])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_flush_and_shutdown_are_awaitable(
    influxdb: InfluxServer, anyio_backend: str
) -> None:
    influxdb.create_database('db')
    client = Client(influxdb.url, tag_hostname=False)
    measurement = Measurement('db', anyio_backend)
    measurement.set_field('value', 1)
    client.add_measurement(measurement)
    assert await client.flush() is True
    measurement.set_field('value', 2)
    measurement.set_timestamp(measurement.timestamp + 1)
    client.add_measurement(measurement)
    assert await client.shutdown() is True
    values = [row['value'] for row in influxdb.rows('db', anyio_backend)]
    assert values == [1, 2]
