"""The pytest plugin of sprockets-influxdb: the ``influxdb_capture`` fixture.

Registered through the ``pytest11`` entry point, so installing the package
is all it takes: a test that names the fixture gets a
:class:`~sprockets_influxdb.testing.MemoryClient` that is the default
client while it runs.  See :mod:`sprockets_influxdb.testing`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sprockets_influxdb.testing import MemoryClient, capture

__all__ = ['influxdb_capture']


@pytest.fixture
def influxdb_capture() -> Iterator[MemoryClient]:
    """Capture what the application records during the test.

    A :class:`~sprockets_influxdb.testing.MemoryClient` is the default
    client for the test: what is recorded is in its ``measurements``, and
    nothing waits on an InfluxDB server.
    """
    with capture() as client:
        yield client
