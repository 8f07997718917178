"""sprockets_influxdb.testing: what an application records, in its tests.

Each framework is exercised with its own test client, the way its users
test; the measurements captured are exactly those of the requests made.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
import typing

import pytest

import sprockets_influxdb
from sprockets_influxdb.testing import MemoryClient, capture
from tests.helpers import both_modes, clean_environment, run_in_mode
from tests.servers import InfluxServer

FLASK = 'integrations.flask_app'


def schema(measurement: sprockets_influxdb.Measurement) -> dict[str, object]:
    tags = measurement.tags
    return {
        'name': measurement.name,
        'database': measurement.database,
        'method': tags['method'],
        'endpoint': tags['endpoint'],
        'status_code': tags['status_code'],
        'item_id': measurement.fields.get('item_id'),
    }


def test_the_fixture_captures_a_flask_test_client_request(
    influxdb_capture: MemoryClient,
) -> None:
    from integrations.flask_app import make_app

    client = make_app('shop').test_client()
    assert client.get('/items/42').get_json() == {'item_id': 42}
    assert client.get('/teapot').status_code == 418
    assert [schema(m) for m in influxdb_capture.measurements] == [
        {
            'name': 'request',
            'database': 'shop',
            'method': 'GET',
            'endpoint': '/items/<int:item_id>',
            'status_code': '200',
            'item_id': 42,
        },
        {
            'name': 'request',
            'database': 'shop',
            'method': 'GET',
            'endpoint': '/teapot',
            'status_code': '418',
            'item_id': None,
        },
    ]
    assert influxdb_capture.stats().written == 2


@pytest.mark.parametrize('module', ['fastapi_app', 'starlette_app'])
def test_the_fixture_captures_starlette_test_client_requests(
    influxdb_capture: MemoryClient, module: str
) -> None:
    from starlette.testclient import TestClient

    example = __import__(f'integrations.{module}', fromlist=['make_app'])
    with TestClient(example.make_app('shop')) as client:
        assert client.get('/items/7').json() == {'item_id': 7}
    (measurement,) = influxdb_capture.find(method='GET')
    assert schema(measurement)['endpoint'] == '/items/{item_id}'
    assert measurement.fields['item_id'] == 7


@pytest.mark.anyio
async def test_the_fixture_captures_httpx_asgi_transport_requests(
    influxdb_capture: MemoryClient, anyio_backend: str
) -> None:
    import httpx

    from integrations.fastapi_app import make_app

    transport = httpx.ASGITransport(app=make_app('shop'))
    async with httpx.AsyncClient(
        transport=transport, base_url='http://test'
    ) as client:
        assert (await client.get('/items/3')).json() == {'item_id': 3}
        assert (await client.get('/no/such/page')).status_code == 404
    assert [
        (m.tags['endpoint'], m.tags['status_code'])
        for m in influxdb_capture.measurements
    ] == [('/items/{item_id}', '200'), ('<unmatched>', '404')]


@pytest.fixture
def anyio_backend() -> str:
    return 'asyncio'


def test_capture_for_a_tornado_async_http_test_case() -> None:
    from tornado.testing import AsyncHTTPTestCase

    from integrations.tornado_app import make_app

    captured: list[MemoryClient] = []

    class ItemTest(AsyncHTTPTestCase):
        def get_app(self) -> typing.Any:
            return make_app('shop')

        def test_item(self) -> None:
            with capture() as influxdb:
                response = self.fetch('/items/42')
            assert response.code == 200
            captured.append(influxdb)

    result = ItemTest('test_item').run()
    assert result is not None
    assert result.wasSuccessful(), result.errors
    (influxdb,) = captured
    (measurement,) = influxdb.measurements
    assert measurement.tags['endpoint'] == '/items/(?P<item_id>\\d+)'
    assert measurement.tags['status_code'] == '200'


def test_a_memory_client_given_to_a_middleware() -> None:
    from flask import Flask

    from sprockets_influxdb.wsgi import InfluxDBMiddleware

    memory = MemoryClient(base_tags={'service': 'shop'})
    app = Flask(__name__)
    app.add_url_rule('/', 'home', lambda: 'ok')
    app.wsgi_app = InfluxDBMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, database='db', client=memory, measurement='web'
    )
    assert app.test_client().get('/').data == b'ok'
    (measurement,) = memory.measurements
    tags = dict(measurement.tags)
    assert tags.pop('hostname') == socket.gethostname()
    assert tags == {
        'endpoint': '/',
        'handler': 'tests.test_testing.'
        'test_a_memory_client_given_to_a_middleware.<locals>.<lambda>',
        'method': 'GET',
        'service': 'shop',  # the client's base tag, added as it writes
        'status_class': '2xx',
        'status_code': '200',
    }
    (line,) = memory.lines('ms')
    assert line.startswith('web,endpoint=/,handler=')
    assert line.endswith(f',content_length=2i {measurement.time_ns // 10**6}')


def test_what_cannot_be_written_is_dropped_and_counted(
    influxdb_capture: MemoryClient, caplog: pytest.LogCaptureFixture
) -> None:
    good = sprockets_influxdb.Measurement('db', 'm')
    good.set_field('f', 1)
    bad = sprockets_influxdb.Measurement('db', 'm')
    bad.fields['f'] = float('nan')  # put directly: not checked then
    sprockets_influxdb.add_measurement(good)
    sprockets_influxdb.add_measurement(bad)
    with pytest.raises(ValueError, match='no fields'):
        sprockets_influxdb.add_measurement(
            sprockets_influxdb.Measurement('db', 'm')
        )
    assert influxdb_capture.measurements[0].fields == {'f': 1}
    stats = influxdb_capture.stats()
    assert (stats.added, stats.written, stats.dropped['invalid']) == (2, 1, 1)
    assert 'cannot be written' in caplog.text
    assert sprockets_influxdb.flush().result(timeout=1) is True


def test_capture_restores_the_default_client() -> None:
    before = sprockets_influxdb.default_client()
    with capture() as memory:
        assert sprockets_influxdb.default_client() is memory
        with capture() as inner:
            assert sprockets_influxdb.default_client() is inner
        assert sprockets_influxdb.default_client() is memory
    assert sprockets_influxdb.default_client() is before


APP_TEST = """
    import json, time

    from fastapi.testclient import TestClient

    from integrations.fastapi_app import make_app


    def test_an_item():
        start = time.monotonic()
        with TestClient(make_app('example')) as client:
            assert client.get('/items/1').json() == {'item_id': 1}
        with open('timings.json', 'w') as file:
            json.dump({'test': time.monotonic() - start,
                       'ended': time.time()}, file)
"""


def test_a_fastapi_test_does_not_wait_for_an_absent_server(
    tmp_path: typing.Any,
) -> None:
    """No server, no setting: the test takes no longer than it would with
    the library, and the process ends at once after it."""
    with socket.socket() as probe:
        if probe.connect_ex(('127.0.0.1', 8086)) == 0:
            pytest.fail('this test needs nothing listening on localhost:8086')
    (tmp_path / 'test_app.py').write_text(textwrap.dedent(APP_TEST))
    result = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider'],
        cwd=tmp_path,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    exited = time.time()
    assert result.returncode == 0, result.stdout + result.stderr
    timings = json.loads((tmp_path / 'timings.json').read_text())
    # The lifespan flush used to wait 5 s, and the exit hooks 5 s each: the
    # test takes what it takes without the library (the bound),
    # and the end of pytest and of the interpreter no waiting either.
    assert timings['test'] < 0.5, timings
    assert exited - timings['ended'] < 3.0, exited - timings['ended']
    # It says what it could not deliver, once.
    assert 1 <= result.stderr.count('not delivered to InfluxDB') <= 2


# A test that mocks add_measurement, the way tests of the historical
# package did (``mock.patch('sprockets_influxdb.add_measurement')``), or
# the default client's (on the client or on its class), sees every request
# measurement in the mock, also after the compiled caches were warmed by
# earlier requests; nothing mocked, requests are written as before.
MOCKED = """
import json
from unittest import mock

from starlette.testclient import TestClient
from tornado.testing import AsyncHTTPTestCase

import sprockets_influxdb as influxdb
from sprockets_influxdb import Client, clock
from integrations import flask_app, starlette_app, tornado_app


def summary(mocked):
    return [
        [m.database, m.tags['endpoint'], m.tags['status_code'],
         'duration' in m.fields]
        for ((m,), _) in mocked.call_args_list
    ]


def rounds(get):
    for _ in range(3):
        get()
    seen = []
    with mock.patch('sprockets_influxdb.add_measurement') as on_module:
        get()
    seen.append(summary(on_module))
    with mock.patch.object(influxdb.default_client(),
                           'add_measurement') as on_client:
        get()
    seen.append(summary(on_client))
    with mock.patch.object(Client, 'add_measurement') as on_class:
        get()
    seen.append(summary(on_class))
    get()
    return seen


seen = {}
# A middleware given a client, made while a test mocked its
# add_measurement: the mock sees that test's request, not later ones.
from flask import Flask
from sprockets_influxdb.wsgi import InfluxDBMiddleware

given = Flask('given')
given.get('/items/<int:item_id>')(lambda item_id: {'item_id': item_id})
with mock.patch.object(Client, 'add_measurement') as while_made:
    given.wsgi_app = InfluxDBMiddleware(
        given.wsgi_app, database='given', client=influxdb.default_client()
    )
    given.test_client().get('/items/42')
given.test_client().get('/items/42')
seen['given'] = [summary(while_made)] + rounds(
    lambda: given.test_client().get('/items/42')
)
flask = flask_app.make_app('flask').test_client()
seen['flask'] = rounds(lambda: flask.get('/items/42'))
with TestClient(starlette_app.make_app('starlette')) as starlette:
    seen['starlette'] = rounds(lambda: starlette.get('/items/42'))


class Tornado(AsyncHTTPTestCase):
    def get_app(self):
        return tornado_app.make_app('tornado')

    def test_requests(self):
        seen['tornado'] = rounds(lambda: self.fetch('/items/42'))


result = Tornado('test_requests').run()
assert result.wasSuccessful(), result.errors


# A handler that never asks for its measurement: the request is queued
# without one made, unless something is mocked.
class TornadoPlain(AsyncHTTPTestCase):
    def get_app(self):
        return tornado_app.make_app('tornado_plain')

    def test_requests(self):
        seen['tornado_plain'] = rounds(lambda: self.fetch('/'))


result = TornadoPlain('test_requests').run()
assert result.wasSuccessful(), result.errors
print(json.dumps({
    'compiled': clock.COMPILED,
    'seen': seen,
    'delivered': influxdb.shutdown().result(timeout=30),
}))
"""


@both_modes
def test_a_mock_of_add_measurement_sees_every_request(
    influxdb: InfluxServer, pure: str
) -> None:
    endpoints = {
        'given': '/items/<int:item_id>',
        'flask': '/items/<int:item_id>',
        'starlette': '/items/{item_id}',
        'tornado': '/items/(?P<item_id>\\d+)',
        'tornado_plain': '/',
    }
    for database in endpoints:
        influxdb.create_database(database)
    answer = run_in_mode(
        MOCKED, pure, {'INFLUXDB_TAGS': '', 'INFLUXDB_URL': influxdb.url}
    )
    assert answer['delivered'] is True, answer
    for database, endpoint in endpoints.items():
        one = [[database, endpoint, '200', True]]
        if database == 'given':
            # A middleware given the default client sees the mocks of the
            # client and of its class, not the module's.
            assert answer['seen'][database] == [one, [], one, one], answer
            # The one after the mock made with it, the 3 warm-up requests,
            # the one under the module's mock, the last one.
            assert len(influxdb.rows(database, 'request')) == 6, database
            continue
        assert answer['seen'][database] == [one, one, one], database
        # Only the requests made while nothing was mocked were written.
        assert len(influxdb.rows(database, 'request')) == 4, database
