"""The request schema of every integration (Tornado, Starlette, FastAPI,
Flask) stored in VictoriaMetrics through the v1 and v2 write APIs, read
back through its export API.

Each example application of ``integrations/`` is served as its own
process, writing to a throwaway VictoriaMetrics; every request of a driven
set of routes must come back as its ``shop_duration`` and
``shop_content_length`` samples (VictoriaMetrics names a field ``f`` of
measurement ``m`` ``m_f``) with exactly the tags of SPEC §5 as labels,
and nothing else.  Through v1 the database is the label ``db``; through
v2 (the bucket) it is not mapped, which is what shows that the
application wrote through ``/api/v2/write``.
"""

from __future__ import annotations

import math
import socket
import time
import typing

import httpx
import pytest

from tests.integrations.apps import AppServer, drive
from tests.integrations.test_asgi import FASTAPI_CASES, STARLETTE_CASES
from tests.integrations.test_tornado import CASES as TORNADO_CASES
from tests.integrations.test_wsgi import CASES as FLASK_CASES
from tests.servers import VictoriaServer

# The routes driven through every application: name, method, path.
ROUTES = [
    ('plain', 'GET', '/'),
    ('path parameter', 'GET', '/items/42'),
    ('stream', 'GET', '/stream'),
    ('teapot', 'GET', '/teapot'),
    ('uncaught exception', 'GET', '/error'),
    ('unrouted', 'GET', '/no/such/page'),
    ('method not allowed', 'DELETE', '/'),
]
REPEAT = 3
# Then this many concurrent requests to the path parameter route.
BURST = 60


class Expected(typing.NamedTuple):
    endpoint: str
    status: int
    handler: str | None
    error: str | None


def expectations() -> dict[str, dict[str, Expected]]:
    """Per application and route name, what the tests of each
    integration against InfluxDB expect."""
    tables: dict[str, dict[str, Expected]] = {
        'tornado_app': {
            name: Expected(endpoint, status, handler, error)
            for name, _, _, _, endpoint, status, handler, error in (
                TORNADO_CASES
            )
        }
    }
    for module, cases in (
        ('starlette_app', STARLETTE_CASES),
        ('fastapi_app', FASTAPI_CASES),
        ('flask_app', FLASK_CASES),
    ):
        tables[module] = {
            name: Expected(endpoint, status, handler, error)
            for name, _, _, endpoint, status, handler, error in cases
        }
    return tables


EXPECTED = expectations()


def settings_for(api: str) -> dict[str, str]:
    """The variables the application is served with, besides the server."""
    common = {'SERVICE': 'shop', 'ENVIRONMENT': 'test'}
    if api == 'v1':
        return {**common, 'INFLUXDB_API': 'v1'}
    # As an InfluxDB 2.x user configures it; VictoriaMetrics without
    # -httpAuth.* does not check the token.
    return {
        **common,
        'INFLUXDB_API': 'v2',
        'INFLUXDB_TOKEN': 'not-checked',
        'INFLUXDB_ORG': 'shop',
    }


@pytest.mark.parametrize('api', ['v1', 'v2'])
@pytest.mark.parametrize('module', list(EXPECTED))
def test_every_request_of_the_schema_is_stored(
    victoria: VictoriaServer, module: str, api: str
) -> None:
    started = time.time()
    app = AppServer(
        ['{python}', f'integrations/{module}.py', '--port', '{port}'],
        victoria,
        module,
        env=settings_for(api),
    )
    responses: dict[str, list[httpx.Response]] = {}
    try:
        for _ in range(REPEAT):
            for name, method, path in ROUTES:
                response = app.client.request(method, path)
                responses.setdefault(name, []).append(response)
        answered = drive(app.url, '/items/42', BURST, concurrency=8)
    finally:
        output = app.stop()
    ended = time.time()
    assert answered == BURST, output

    expected = EXPECTED[module]
    hostname = socket.gethostname()
    # How many requests each route served: the readiness probe of
    # AppServer was one more GET /.
    counts = {name: REPEAT for name, _, _ in ROUTES}
    counts['plain'] += 1
    counts['path parameter'] += BURST

    labels_of: dict[str, dict[str, str]] = {}
    for name, method, _ in ROUTES:
        want = expected[name]
        statuses = {response.status_code for response in responses[name]}
        assert statuses == {want.status}, (module, name)
        labels = {
            'method': method,
            'endpoint': want.endpoint,
            'status_code': str(want.status),
            'status_class': f'{want.status // 100}xx',
            'hostname': hostname,
            'environment': 'test',
        }
        if want.handler is not None:
            labels['handler'] = want.handler
        if want.error is not None:
            labels['error'] = want.error
        if api == 'v1':
            labels['db'] = module
        labels_of[name] = labels

    found = {
        (series.name, tuple(sorted(series.labels.items()))): series
        for series in victoria.series('{__name__=~"shop_.*"}')
    }
    wanted = {
        (f'shop_{field}', tuple(sorted(labels.items())))
        for labels in labels_of.values()
        for field in ('duration', 'content_length')
    }
    item_key = (
        'shop_item_id',
        tuple(sorted(labels_of['path parameter'].items())),
    )
    wanted.add(item_key)
    assert set(found) == wanted, output

    first_ms = math.floor(started * 1000)
    last_ms = math.ceil(ended * 1000)
    for name, _, _ in ROUTES:
        key = tuple(sorted(labels_of[name].items()))
        duration = found['shop_duration', key]
        length = found['shop_content_length', key]
        assert len(duration.values) == counts[name], (module, name, output)
        # One line per request carries both fields: the same times.
        assert sorted(length.timestamps) == sorted(duration.timestamps)
        assert all(first_ms <= t <= last_ms for t in duration.timestamps)
        assert all(0 < d <= ended - started for d in duration.values), name
        sizes = {len(response.content) for response in responses[name]}
        if name == 'uncaught exception' and module in (
            'starlette_app',
            'fastapi_app',
        ):
            # Starlette's 500 page is sent outside the middleware.
            sizes = {0}
        assert set(length.values) == {float(size) for size in sizes}, name
    items = found[item_key]
    assert items.values == [42.0] * counts['path parameter']
    assert sorted(items.timestamps) == sorted(
        found['shop_duration', item_key[1]].timestamps
    )
    stream = found[
        'shop_content_length', tuple(sorted(labels_of['stream'].items()))
    ]
    assert stream.values == [24.0] * REPEAT
