"""Property tests: whatever the encoder accepts, a real InfluxDB stores and
reads back with the same values and types; whatever it refuses is something
line protocol cannot carry.
"""

from __future__ import annotations

import itertools
import math
import shutil
import typing

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sprockets_influxdb import Client, Measurement, line_protocol
from tests.servers import InfluxServer

# Characters line protocol treats specially, and any other unicode.
SPECIAL = ',= "\\#\'{}\t'
CONTROL = '\x00\n\r\x1b\x7f'
printable = st.characters(codec='utf-8', exclude_categories=('Cc', 'Cs'))
# Mostly values the server must store; some that must be refused.
text = st.text(
    alphabet=st.one_of(printable, printable, st.sampled_from(SPECIAL)),
    min_size=1,
    max_size=12,
)
any_text = st.text(
    alphabet=st.one_of(
        st.characters(codec='utf-8'),
        st.sampled_from(SPECIAL + CONTROL),
    ),
    max_size=12,
)
field_values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(
        alphabet=st.one_of(
            st.characters(codec='utf-8'), st.sampled_from(SPECIAL + CONTROL)
        ),
        max_size=20,
    ),
)


def cannot_be_carried(value: str, kind: str) -> bool:
    """An independent statement of what line protocol cannot represent."""
    if not value or value.endswith('\\'):
        return True
    if any(ord(char) < 0x20 or char == '\x7f' for char in value):
        return True
    if any(a == '\\' and b in ',= "' for a, b in zip(value, value[1:])):
        return True
    if kind == 'name' and value.startswith('#'):
        return True
    return kind in ('tag key', 'field key') and value == 'time'


@given(value=any_text)
def test_what_is_refused_is_what_line_protocol_cannot_carry(
    value: str,
) -> None:
    checks = {
        'name': line_protocol.escape_measurement,
        'tag key': line_protocol.escape_tag_key,
        'tag value': line_protocol.escape_tag_value,
        'field key': line_protocol.escape_field_key,
    }
    for kind, check in checks.items():
        refused = cannot_be_carried(value, kind)
        try:
            check(value)
        except ValueError:
            assert refused, (kind, value)
        else:
            assert not refused, (kind, value)


@pytest.fixture(scope='module')
def server() -> typing.Iterator[InfluxServer]:
    if shutil.which('influxd') is None:
        pytest.fail('influxd is not installed: apt-get install influxdb')
    with InfluxServer() as influxd:
        yield influxd


@pytest.fixture(scope='module')
def client(server: InfluxServer) -> typing.Iterator[Client]:
    client = Client(server.url, tag_hostname=False, submission_interval=60000)
    yield client
    client.shutdown().result(timeout=10)


databases = itertools.count()


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    name=text,
    tags=st.dictionaries(text, text, max_size=4),
    fields=st.dictionaries(text, field_values, min_size=1, max_size=4),
    timestamp=st.floats(min_value=0, max_value=4_000_000_000),
)
def test_what_is_accepted_reads_back_identically(
    server: InfluxServer,
    client: Client,
    name: str,
    tags: dict[str, str],
    fields: dict[str, object],
    timestamp: float,
) -> None:
    # SELECT * cannot tell a tag from a field of the same name.
    tags = {key: value for key, value in tags.items() if key not in fields}
    try:
        measurement = Measurement('db', name)
        measurement.tags.clear()
    except ValueError:
        assert cannot_be_carried(name, 'name')
        event('refused: name')
        return
    assert not cannot_be_carried(name, 'name')
    for key, value in tags.items():
        try:
            measurement.set_tag(key, value)
        except ValueError:
            assert cannot_be_carried(key, 'tag key') or cannot_be_carried(
                value, 'tag value'
            )
            event('refused: tag')
            return
        assert not cannot_be_carried(key, 'tag key')
        assert not cannot_be_carried(value, 'tag value')
    for key, field in fields.items():
        try:
            measurement.set_field(key, field)  # type: ignore[arg-type]
        except ValueError:
            assert cannot_be_carried(key, 'field key')
            event('refused: field key')
            return
        assert not cannot_be_carried(key, 'field key')
    measurement.set_timestamp(timestamp)

    event('sent to the server')
    database = f'prop{next(databases)}'
    server.create_database(database)
    measurement.database = database
    client.add_measurement(measurement)
    assert client.flush().result(timeout=10)
    assert client.stats().dropped_total == 0

    rows = server.rows(database, name)
    assert len(rows) == 1, (measurement.marshall(), rows)
    row = rows[0]
    assert row.pop('time') == int(measurement.marshall().rsplit(' ', 1)[1]), (
        measurement.marshall()
    )
    expected: dict[str, object] = dict(fields)
    expected.update(tags)
    assert set(row) == set(expected), measurement.marshall()
    for key, value in expected.items():
        stored = row[key]
        if isinstance(value, float):
            assert isinstance(stored, (int, float))
            assert math.isclose(stored, value, rel_tol=0, abs_tol=0) or (
                stored == value
            ), (key, value, stored)
        else:
            assert stored == value, (key, value, stored)
            assert type(stored) is type(value), (key, value, stored)
    types = server.field_types(database, name)
    names = {bool: 'boolean', int: 'integer', float: 'float', str: 'string'}
    assert types == {key: names[type(value)] for key, value in fields.items()}
