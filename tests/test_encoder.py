"""Which encoder the writer uses, and what one bad entry costs.

The compiled encoder leaves measurements of unusual types to the Python
one; an exception from it (a tag value whose hash raises, say) used to
turn it off for the rest of the process, about 3 times slower per point.
"""

from __future__ import annotations

import logging

import pytest

from sprockets_influxdb import Client, Measurement, line_protocol
from tests.servers import InfluxServer

GOOD = 100_000


class HashRaises(str):
    """A tag value whose hash raises, as no encoder can cope with."""

    def __hash__(self) -> int:
        raise RuntimeError('this tag value cannot be hashed')

    __eq__ = str.__eq__


def record(client: Client, index: int) -> None:
    measurement = Measurement('db', 'cpu')
    measurement.set_tag('host', f'host-{index % 100}')
    measurement.set_field('usage', index * 0.5)
    measurement.set_field('count', index)
    client.add_measurement(measurement)


def test_the_compiled_encoder_is_the_one_in_use() -> None:
    # The suite is run with the package built (.ci/bootstrap); without
    # the extension, everything below would be measured in Python.
    assert line_protocol.ENCODER == 'compiled'
    assert line_protocol.MISSING is None
    client = Client('http://127.0.0.1:9/write', tag_hostname=False)
    try:
        assert client.stats().encoder == 'compiled'
    finally:
        client.shutdown(0).result()


def test_one_bad_entry_costs_only_itself(
    influxdb: InfluxServer, caplog: pytest.LogCaptureFixture
) -> None:
    influxdb.create_database('db')
    client = Client(influxdb.url, tag_hostname=False, max_buffer_size=2 * GOOD)
    bad = Measurement('db', 'cpu')
    bad.set_tag('host', 'placeholder')
    bad.set_field('count', -1)
    bad.tags['host'] = HashRaises('bad')
    with caplog.at_level(logging.ERROR, logger='sprockets_influxdb'):
        client.add_measurement(bad)
        for index in range(GOOD):
            record(client, index)
        assert client.flush(120).result() is True
    stats = client.stats()
    client.shutdown(10).result()
    assert influxdb.count('db', 'cpu') == GOOD
    assert stats.written == GOOD
    assert stats.dropped['invalid'] == 1
    # The first point of each of the 100 series goes through Python (the
    # compiled encoder only reuses line heads it has seen).
    assert stats.encoded['compiled'] >= GOOD - 100
    assert stats.encoded['python'] <= 100
    messages = [entry.getMessage() for entry in caplog.records]
    assert any(
        'cannot be written' in text and 'cannot be hashed' in text
        for text in messages
    ), messages
    assert not any('from now on' in text for text in messages)
