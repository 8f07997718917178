"""The pytest plugin of sprockets-influxdb: the ``influxdb_capture`` fixture.

Registered through the ``pytest11`` entry point, so installing the package
is all it takes:

.. code-block:: python

    def test_an_item_is_recorded(influxdb_capture):
        response = app.test_client().get('/items/42')
        (measurement,) = influxdb_capture.find(endpoint='/items/<int:item_id>')
        assert measurement.fields['item_id'] == 42

See :mod:`sprockets_influxdb.testing`.
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
