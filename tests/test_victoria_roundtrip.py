"""The module-level API into VictoriaMetrics, through the v1 and v2 write
APIs, read back through its export API with exact values.

Each case runs as a script in a fresh interpreter, as
``tests/test_module_api.py`` does, configured the way a user configures it
(``INFLUXDB_URL``, ``INFLUXDB_API``, ...).  VictoriaMetrics stores field
``f`` of measurement ``m`` as the series ``m_f``, the tags as labels and,
through v1 only, the database as the label ``db`` (see
:class:`tests.servers.VictoriaServer`): the ``db`` label is what shows
which API carried the points.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.helpers import run_script
from tests.servers import Series, VictoriaServer

WORKERS = 4
PER_WORKER = 250
# A name, a tag value and a field key that line protocol escapes.
NAME = 'job run'
KIND = 'a,b=c d'

RECORD = f"""
import json, sys, threading
import sprockets_influxdb as influxdb

base = int(sys.argv[1])

def record(worker):
    database = 'alpha' if worker % 2 == 0 else 'beta'
    for index in range({PER_WORKER}):
        measurement = influxdb.Measurement(database, {NAME!r})
        measurement.set_tags({{'worker': str(worker), 'kind': {KIND!r}}})
        measurement.set_field('count', index - 100)
        measurement.set_field('load', index / 8)
        measurement.set_field('ok', index % 3 == 0)
        measurement.set_field('x=y z', worker * 1000 + index)
        # index milliseconds after *base*, plus 0.4 ms that the server
        # truncates: never on a millisecond's edge, whatever the float.
        measurement.set_timestamp(base + index / 1000 + 0.0004)
        influxdb.add_measurement(measurement)

influxdb.install()
threads = [
    threading.Thread(target=record, args=(worker,))
    for worker in range({WORKERS})
]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
delivered = influxdb.shutdown().result(30)
stats = influxdb.stats()
print(json.dumps({{
    'delivered': delivered,
    'added': stats.added,
    'written': stats.written,
    'dropped': stats.dropped_total,
    'failed_requests': stats.failed_requests,
}}))
"""


def expected_ms(base: int, index: int, precision: str) -> int:
    """The time the server keeps for point *index*: truncated to the
    library's precision, then to the millisecond."""
    exact_ms = base * 1000 + index
    if precision == 's':
        return exact_ms // 1000 * 1000
    return exact_ms


def fields(worker: int, index: int) -> dict[str, float]:
    return {
        'count': index - 100,
        'load': index / 8,
        'ok': 1.0 if index % 3 == 0 else 0.0,
        'x=y z': worker * 1000 + index,
    }


def settings_for(api: str, server: VictoriaServer) -> dict[str, str]:
    """The variables a user sets to write through *api*."""
    if api == 'v1':
        return {'INFLUXDB_URL': server.url, 'INFLUXDB_API': 'v1'}
    # As an InfluxDB 2.x user configures it: a token (VictoriaMetrics
    # without -httpAuth.* ignores it) chooses v2 on its own, and an org.
    return {
        'INFLUXDB_URL': server.url,
        'INFLUXDB_TOKEN': 'not-checked',
        'INFLUXDB_ORG': 'shop',
    }


@pytest.mark.parametrize('precision', ['n', 'u', 'ms', 's'])
@pytest.mark.parametrize('api', ['v1', 'v2'])
def test_module_api_points_read_back_exactly(
    victoria: VictoriaServer, api: str, precision: str
) -> None:
    # Recent enough for the retention (a month), in the past.
    base = int(time.time()) - 600
    env = {
        **settings_for(api, victoria),
        'INFLUXDB_PRECISION': precision,
        'INFLUXDB_MAX_BATCH_SIZE': '300',
        'ENVIRONMENT': 'ci',
    }
    result = run_script(RECORD, env, args=[str(base)])
    assert result.returncode == 0, result.stderr
    total = WORKERS * PER_WORKER
    assert json.loads(result.stdout) == {
        'delivered': True,
        'added': total,
        'written': total,
        'dropped': 0,
        'failed_requests': 0,
    }, result.stderr

    found = victoria.series()
    assert sum(len(series.values) for series in found) == total * 4
    hostname = socket.gethostname()
    expected = []
    for worker in range(WORKERS):
        labels = {
            'worker': str(worker),
            'kind': KIND,
            'hostname': hostname,
            'environment': 'ci',
        }
        if api == 'v1':
            labels['db'] = 'alpha' if worker % 2 == 0 else 'beta'
        for field in ('count', 'load', 'ok', 'x=y z'):
            points = sorted(
                (
                    expected_ms(base, index, precision),
                    fields(worker, index)[field],
                )
                for index in range(PER_WORKER)
            )
            expected.append(
                Series(
                    f'{NAME}_{field}',
                    labels,
                    [value for _, value in points],
                    [stamp for stamp, _ in points],
                )
            )
    expected.sort(key=lambda s: (s.name, sorted(s.labels.items())))
    assert [(s.name, s.labels) for s in found] == [
        (s.name, s.labels) for s in expected
    ]
    for got, want in zip(found, expected):
        assert got.points == want.points, (got.name, got.labels)


def test_v2_named_by_the_url_path_and_v1_side_by_side(
    victoria: VictoriaServer,
) -> None:
    """``INFLUXDB_URL`` ending in ``/api/v2/write`` chooses v2 with no other
    setting; the same script through ``/write`` lands with its ``db``."""
    base = int(time.time()) - 300
    for url, environment in (
        (f'{victoria.url}/api/v2/write', 'v2'),
        (f'{victoria.url}/write', 'v1'),
    ):
        result = run_script(
            RECORD,
            {'INFLUXDB_URL': url, 'ENVIRONMENT': environment},
            args=[str(base)],
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)['written'] == WORKERS * PER_WORKER
    found = victoria.series(f'{{__name__="{NAME}_count", worker="1"}}')
    assert [(s.labels['environment'], s.labels.get('db')) for s in found] == [
        ('v1', 'beta'),
        ('v2', None),
    ]
    for series in found:
        assert series.points == [
            (base * 1000 + index, index - 100) for index in range(PER_WORKER)
        ]
