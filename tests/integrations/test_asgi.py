"""The ASGI middleware over real HTTP (uvicorn, hypercorn on trio) and in
process on both anyio backends, read back from a real InfluxDB.
"""

from __future__ import annotations

import concurrent.futures
import importlib
import logging
import signal
import socket
import sys
import typing

import anyio
import httpx
import pytest

from sprockets_influxdb import Client
from sprockets_influxdb.asgi import InfluxDBMiddleware
from tests.helpers import request_summary, run_in_both_modes, run_script
from tests.integrations.apps import (
    AppServer,
    drive,
    serve_then_signal,
    stored_times,
)
from tests.servers import InfluxServer

# name, method, path, endpoint, status, handler, error
STARLETTE = 'integrations.starlette_app'
STARLETTE_CASES = [
    ('plain', 'GET', '/', '/', 200, f'{STARLETTE}.homepage', None),
    (
        'path parameter',
        'GET',
        '/items/42',
        '/items/{item_id}',
        200,
        f'{STARLETTE}.item',
        None,
    ),
    (
        'mount',
        'GET',
        '/api/users/7',
        '/api/users/{user_id}',
        200,
        f'{STARLETTE}.user',
        None,
    ),
    (
        'mount in a mount',
        'GET',
        '/api/v2/things/x',
        '/api/v2/things/{name}',
        200,
        f'{STARLETTE}.thing',
        None,
    ),
    ('stream', 'GET', '/stream', '/stream', 200, f'{STARLETTE}.stream', None),
    (
        'background task',
        'GET',
        '/background',
        '/background',
        200,
        f'{STARLETTE}.background',
        None,
    ),
    ('teapot', 'GET', '/teapot', '/teapot', 418, f'{STARLETTE}.teapot', None),
    (
        'uncaught exception',
        'GET',
        '/error',
        '/error',
        500,
        f'{STARLETTE}.error',
        'builtins.ValueError',
    ),
    ('unrouted', 'GET', '/no/such/page', '<unmatched>', 404, None, None),
    (
        'method not allowed',
        'DELETE',
        '/',
        '<unmatched>',
        405,
        None,
        None,
    ),
]
FASTAPI = 'integrations.fastapi_app'
FASTAPI_CASES = [
    (
        'plain',
        'GET',
        '/',
        '/',
        200,
        f'{FASTAPI}.make_app.<locals>.homepage',
        None,
    ),
    (
        'path parameter',
        'GET',
        '/items/42',
        '/items/{item_id}',
        200,
        f'{FASTAPI}.make_app.<locals>.item',
        None,
    ),
    (
        'included router',
        'GET',
        '/api/users/7',
        '/api/users/{user_id}',
        200,
        f'{FASTAPI}.user',
        None,
    ),
    (
        'router in a router',
        'GET',
        '/api/v2/deep/k',
        '/api/v2/deep/{key}',
        200,
        f'{FASTAPI}.deep',
        None,
    ),
    (
        'mounted application',
        'GET',
        '/sub/things/x',
        '/sub/things/{name}',
        200,
        f'{FASTAPI}.thing',
        None,
    ),
    (
        'stream',
        'GET',
        '/stream',
        '/stream',
        200,
        f'{FASTAPI}.make_app.<locals>.stream',
        None,
    ),
    (
        'background task',
        'GET',
        '/background',
        '/background',
        200,
        f'{FASTAPI}.make_app.<locals>.background',
        None,
    ),
    (
        'teapot',
        'GET',
        '/teapot',
        '/teapot',
        418,
        f'{FASTAPI}.make_app.<locals>.teapot',
        None,
    ),
    (
        'uncaught exception',
        'GET',
        '/error',
        '/error',
        500,
        f'{FASTAPI}.make_app.<locals>.error',
        'builtins.ValueError',
    ),
    ('unrouted', 'GET', '/no/such/page', '<unmatched>', 404, None, None),
    (
        'method not allowed',
        'DELETE',
        '/',
        '<unmatched>',
        405,
        None,
        None,
    ),
]

Case = tuple[
    str, str, str, str, int, typing.Optional[str], typing.Optional[str]
]


def check_rows(
    influxdb: InfluxServer,
    database: str,
    cases: list[Case],
    responses: dict[str, httpx.Response],
    output: str,
) -> None:
    rows = influxdb.rows(database, 'shop')
    # The readiness probe of the fixture was a GET / as well.
    assert len(rows) == len(cases) + 1, output
    by_key = {
        (row['method'], row['endpoint'], row['status_code']): row
        for row in rows
    }
    hostname = socket.gethostname()
    for name, method, _, endpoint, status, handler, error in cases:
        row = by_key[method, endpoint, str(status)]
        response = responses[name]
        assert response.status_code == status, name
        expected = {
            'method': method,
            'endpoint': endpoint,
            'handler': handler,
            'status_code': str(status),
            'status_class': f'{status // 100}xx',
            'error': error,
            'hostname': hostname,
            'environment': 'test',
            'duration': row['duration'],
            'content_length': len(response.content),
            'item_id': 42 if name == 'path parameter' else None,
        }
        if name == 'uncaught exception':
            # The 500 page is sent by the server error middleware, outside.
            expected['content_length'] = 0
        assert {key: row[key] for key in row if key != 'time'} == expected, (
            name
        )
        assert isinstance(row['duration'], float)
    stream = by_key['GET', '/stream', '200']
    assert stream['content_length'] == 24
    assert stream['duration'] >= 0.2  # type: ignore[operator]
    background = by_key['GET', '/background', '200']
    assert background['duration'] < 0.3  # type: ignore[operator]


@pytest.mark.parametrize(
    ('module', 'cases'),
    [('starlette_app', STARLETTE_CASES), ('fastapi_app', FASTAPI_CASES)],
)
def test_every_case_of_the_schema_under_uvicorn(
    influxdb: InfluxServer, module: str, cases: list[Case]
) -> None:
    influxdb.create_database(module)
    app = AppServer(
        ['{python}', f'integrations/{module}.py', '--port', '{port}'],
        influxdb,
        module,
        env={'SERVICE': 'shop', 'ENVIRONMENT': 'test'},
    )
    try:
        responses = {
            name: app.client.request(method, path)
            for name, method, path, *_ in cases
        }
    finally:
        output = app.stop()
    check_rows(influxdb, module, cases, responses, output)


def test_one_endpoint_under_uvicorn_workers_loses_nothing(
    influxdb: InfluxServer,
) -> None:
    """Default settings, ``uvicorn --workers 2``: every request is a row."""
    influxdb.create_database('fastapi')
    app = AppServer(
        [
            '{python}',
            '-m',
            'uvicorn',
            'integrations.fastapi_app:app',
            '--workers',
            '2',
            '--port',
            '{port}',
            '--log-level',
            'warning',
        ],
        influxdb,
        'fastapi',
        env={'SERVICE': 'shop'},
        defaults=True,
    )
    try:
        answered = drive(app.url, '/items/1', 2000)
    finally:
        output = app.stop()
    assert answered == 2000
    times = stored_times(influxdb, 'fastapi', '/items/{item_id}')
    assert len(times) == 2000, output


def test_starlette_under_hypercorn_on_trio(influxdb: InfluxServer) -> None:
    influxdb.create_database('trio')
    app = AppServer(
        [
            '{python}',
            '-m',
            'hypercorn',
            '--worker-class',
            'trio',
            '--bind',
            '127.0.0.1:{port}',
            'integrations.starlette_app:app',
        ],
        influxdb,
        'trio',
        env={'SERVICE': 'shop', 'ENVIRONMENT': 'test'},
    )
    try:
        responses = {
            name: app.client.request(method, path)
            for name, method, path, *_ in STARLETTE_CASES
        }
    finally:
        output = app.stop()
    check_rows(influxdb, 'trio', STARLETTE_CASES, responses, output)


@pytest.fixture(params=['asyncio', 'trio'])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_in_process_on_both_backends(
    influxdb: InfluxServer, anyio_backend: str
) -> None:
    from integrations.fastapi_app import make_app

    influxdb.create_database('db')
    client = Client(influxdb.url, tag_hostname=False)
    app = InfluxDBMiddleware(
        make_app('unused'), database='db', measurement='web', client=client
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url='http://test'
    ) as http:
        assert (await http.get('/items/5')).json() == {'item_id': 5}
        assert (await http.get('/sub/things/y')).status_code == 200
    assert await client.shutdown() is True
    rows = {row['endpoint']: row for row in influxdb.rows('db', 'web')}
    # The app's own middleware (database 'unused') saw the request already
    # recorded by the outer one and let it through: recorded once.
    assert set(rows) == {'/items/{item_id}', '/sub/things/{name}'}
    assert rows['/items/{item_id}']['item_id'] == 5


@pytest.mark.anyio
async def test_lifespan_shutdown_flushes_and_websockets_pass(
    influxdb: InfluxServer, anyio_backend: str
) -> None:
    from integrations.starlette_app import make_app

    influxdb.create_database('db')
    client = Client(influxdb.url, tag_hostname=False)
    app = InfluxDBMiddleware(make_app('unused'), database='db', client=client)
    messages: list[dict[str, object]] = [
        {'type': 'lifespan.startup'},
        {'type': 'lifespan.shutdown'},
    ]
    sent: list[str] = []

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    async def send(message: dict[str, object]) -> None:
        sent.append(str(message['type']))
        if message['type'] == 'lifespan.shutdown.complete':
            # Flushed before the server hears that shutdown is complete.
            assert influxdb.count('db', 'request') == 1

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url='http://test'
    ) as http:
        assert (await http.get('/')).status_code == 200
    await app({'type': 'lifespan', 'asgi': {'version': '3.0'}}, receive, send)
    assert sent == ['lifespan.startup.complete', 'lifespan.shutdown.complete']
    client.shutdown()


def test_websockets_pass_through_untouched(influxdb: InfluxServer) -> None:
    result = run_script(
        """
        from starlette.testclient import TestClient
        import sprockets_influxdb as influxdb
        from integrations.starlette_app import make_app

        with TestClient(make_app('db')) as client:
            with client.websocket_connect('/ws') as websocket:
                websocket.send_text('hello')
                print(websocket.receive_text())
        print(influxdb.stats().added)
        """,
        {'INFLUXDB_HOST': influxdb.host, 'INFLUXDB_PORT': str(influxdb.port)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['hello', '0']


def test_client_disconnect_is_recorded_as_499(influxdb: InfluxServer) -> None:
    influxdb.create_database('db')
    app = AppServer(
        ['{python}', 'integrations/starlette_app.py', '--port', '{port}'],
        influxdb,
        'db',
    )
    try:
        with socket.create_connection(('127.0.0.1', app.port)) as raw:
            raw.sendall(b'GET /stream HTTP/1.1\r\nHost: x\r\n\r\n')
            raw.recv(1024)  # the headers and the first chunk
        anyio.run(anyio.sleep, 0.5)
    finally:
        app.stop()
    rows = {row['endpoint']: row for row in influxdb.rows('db', 'request')}
    assert rows['/stream']['status_code'] == '499'


def test_excluded_paths_are_not_recorded(influxdb: InfluxServer) -> None:
    influxdb.create_database('db')
    result = run_script(
        f"""
        import asyncio, httpx
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route
        from sprockets_influxdb import Client
        from sprockets_influxdb.asgi import InfluxDBMiddleware

        async def ok(request):
            return PlainTextResponse('ok')

        client = Client({influxdb.url!r})
        app = InfluxDBMiddleware(
            Starlette(routes=[Route('/{{path:path}}', ok)]),
            database='db', exclude_paths=[r'/health'], client=client,
        )

        async def main():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport,
                                         base_url='http://x') as http:
                for path in ('/health', '/healthz', '/work'):
                    await http.get(path)
            await client.shutdown()

        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    rows = influxdb.rows('db', 'request')
    assert [row['endpoint'] for row in rows] == ['/{path}']


@pytest.fixture
def recorded(
    influxdb: InfluxServer,
) -> typing.Iterator[tuple[Client, InfluxServer]]:
    influxdb.create_database('db')
    client = Client(influxdb.url, tag_hostname=False)
    yield client, influxdb
    client.shutdown().result(timeout=10)


def bare_starlette() -> typing.Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def fail(request: Request) -> PlainTextResponse:
        raise KeyError('missing')

    async def upload(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(len(await request.body())))

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse('hello')

    return Starlette(
        routes=[
            Route('/fail', fail),
            Route('/upload', upload, methods=['POST']),
            Route('/hello/{name}', hello, methods=['GET', 'HEAD']),
        ]
    )


@pytest.mark.anyio
async def test_wrapping_an_application_directly(
    recorded: tuple[Client, InfluxServer], anyio_backend: str
) -> None:
    from starlette.middleware.gzip import GZipMiddleware

    client, influxdb = recorded
    # Starlette's error page comes from inside: the error is still tagged;
    # a middleware in between does not hide the routes.
    app = InfluxDBMiddleware(
        GZipMiddleware(bare_starlette()), database='db', client=client
    )
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url='http://test'
    ) as http:
        assert (await http.get('/fail')).status_code == 500
        assert (await http.head('/hello/you')).status_code == 200
    assert await client.flush() is True
    rows = {row['endpoint']: row for row in influxdb.rows('db', 'request')}
    assert rows['/fail']['status_code'] == '500'
    assert rows['/fail']['error'] == 'builtins.KeyError'
    assert rows['/hello/{name}']['method'] == 'HEAD'
    assert rows['/hello/{name}']['content_length'] == 0


@pytest.mark.anyio
async def test_a_client_gone_during_an_upload_is_a_499(
    recorded: tuple[Client, InfluxServer], anyio_backend: str
) -> None:
    client, influxdb = recorded
    app = InfluxDBMiddleware(bare_starlette(), database='db', client=client)
    messages = [
        {'type': 'http.request', 'body': b'part', 'more_body': True},
        {'type': 'http.disconnect'},
    ]

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    async def send(message: dict[str, object]) -> None:
        pass

    scope = {
        'type': 'http',
        'asgi': {'version': '3.0'},
        'http_version': '1.1',
        'method': 'POST',
        'path': '/upload',
        'raw_path': b'/upload',
        'root_path': '',
        'scheme': 'http',
        'query_string': b'',
        'headers': [],
        'server': ('test', 80),
        'client': ('test', 1234),
    }
    from starlette.requests import ClientDisconnect

    with pytest.raises(ClientDisconnect):
        await app(scope, receive, send)
    assert await client.flush() is True
    (row,) = influxdb.rows('db', 'request')
    assert row['status_code'] == '499'
    assert 'error' not in row


@pytest.mark.anyio
async def test_a_missing_database_is_logged_and_requests_served(
    caplog: pytest.LogCaptureFixture, anyio_backend: str
) -> None:
    with caplog.at_level(logging.ERROR, logger='sprockets_influxdb'):
        app = InfluxDBMiddleware(bare_starlette())
    assert 'has no database' in caplog.text
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url='http://test'
    ) as http:
        assert (await http.get('/hello/x')).text == 'hello'


@pytest.mark.anyio
@pytest.mark.parametrize('module', ['fastapi_app', 'starlette_app'])
async def test_without_a_database_handlers_get_a_stand_in(
    caplog: pytest.LogCaptureFixture, module: str, anyio_backend: str
) -> None:
    """The examples' handlers use request.state.influxdb: still 200s."""
    example = importlib.import_module(f'integrations.{module}')
    with caplog.at_level(logging.ERROR, logger='sprockets_influxdb'):
        transport = httpx.ASGITransport(app=example.make_app(None))
        async with httpx.AsyncClient(
            transport=transport, base_url='http://test'
        ) as client:
            for item in range(3):
                response = await client.get(f'/items/{item}')
                assert response.status_code == 200
                assert response.json() == {'item_id': item}
    errors = [r.getMessage() for r in caplog.records]
    assert errors == [
        'InfluxDBMiddleware has no database (database=...): requests are '
        'served but not recorded'
    ]


@pytest.mark.anyio
async def test_handlers_of_excluded_paths_get_a_stand_in(
    recorded: tuple[Client, InfluxServer], anyio_backend: str
) -> None:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    client, influxdb = recorded

    async def health(request: Request) -> PlainTextResponse:
        request.state.influxdb.set_field('checks', 3)
        return PlainTextResponse('ok')

    app = InfluxDBMiddleware(
        Starlette(routes=[Route('/health', health), Route('/work', health)]),
        database='db',
        client=client,
        exclude_paths=[r'/health$'],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url='http://test'
    ) as http:
        assert (await http.get('/health')).text == 'ok'
        assert (await http.get('/work')).text == 'ok'
    assert await client.flush() is True
    assert [row['endpoint'] for row in influxdb.rows('db', 'request')] == [
        '/work'
    ]


def http_scope(path: str, **extra: object) -> dict[str, object]:
    return {
        'type': 'http',
        'asgi': {'version': '3.0', 'spec_version': '2.4'},
        'http_version': '1.1',
        'method': 'GET',
        'path': path,
        'raw_path': path.encode(),
        'root_path': '',
        'scheme': 'http',
        'query_string': b'',
        'headers': [],
        'server': ('test', 80),
        'client': ('test', 1234),
        **extra,
    }


@pytest.mark.anyio
async def test_a_send_refused_by_the_server_is_a_499_and_pathsend_counts(
    recorded: tuple[Client, InfluxServer],
    anyio_backend: str,
    tmp_path: typing.Any,
) -> None:
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Route

    client, influxdb = recorded
    document = tmp_path / 'document.txt'
    document.write_bytes(b'x' * 1234)

    async def file(request: typing.Any) -> FileResponse:
        return FileResponse(document)

    app = InfluxDBMiddleware(
        Starlette(routes=[Route('/file', file)]), database='db', client=client
    )

    async def stream(scope: object, receive: object, send: typing.Any) -> None:
        await send({'type': 'http.response.start', 'status': 200})
        for _ in range(3):
            await send(
                {
                    'type': 'http.response.body',
                    'body': b'chunk',
                    'more_body': True,
                }
            )
        await send({'type': 'http.response.body', 'body': b''})

    streaming = InfluxDBMiddleware(stream, database='db', client=client)

    async def receive() -> dict[str, object]:
        await anyio.sleep(1)
        return {'type': 'http.disconnect'}

    sent: list[dict[str, object]] = []

    async def gone(message: dict[str, object]) -> None:
        if message['type'] == 'http.response.body':
            raise OSError('the client went away')  # as ASGI 2.4 servers do
        sent.append(message)

    with pytest.raises(OSError, match='went away'):
        await streaming(http_scope('/stream'), receive, gone)

    async def keep(message: dict[str, object]) -> None:
        sent.append(message)

    await app(
        http_scope('/file', extensions={'http.response.pathsend': {}}),
        receive,
        keep,
    )
    # Starlette sends the path when the server offers it (0.38 and newer);
    # either way the file's size is what the client gets.
    import starlette

    if tuple(map(int, starlette.__version__.split('.')[:2])) >= (0, 38):
        assert sent[-1]['type'] == 'http.response.pathsend'
    assert await client.flush() is True
    rows = {row['endpoint']: row for row in influxdb.rows('db', 'request')}
    assert rows['<unmatched>']['status_code'] == '499'  # no routes: a raw app
    assert rows['<unmatched>']['content_length'] == 0
    assert rows['/file']['status_code'] == '200'
    assert rows['/file']['content_length'] == 1234


#: The FastAPI example served by uvicorn, as its docs say.
UVICORN_COMMAND = [
    sys.executable,
    '-m',
    'uvicorn',
    'integrations.fastapi_app:app',
    '--port',
    '{port}',
    '--log-level',
    'warning',
]


def test_uvicorn_stopped_right_after_the_last_response_loses_nothing(
    influxdb: InfluxServer,
) -> None:
    """SIGTERM as soon as the client read its tenth response, 50 times."""
    influxdb.create_database('fastapi')

    def run(_: int) -> None:
        result = serve_then_signal(
            UVICORN_COMMAND,
            {
                'INFLUXDB_URL': influxdb.url,
                'REQUEST_DATABASE': 'fastapi',
                'SERVICE': 'shop',
            },
            '/items/1',
            signum=signal.SIGTERM,
        )
        assert 'not delivered' not in result.stdout, result.stdout

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(run, range(50)))
    assert influxdb.count('fastapi', 'shop') == 500


def test_uvicorn_stopped_with_influxdb_down_says_what_it_lost(
    influxdb: InfluxServer,
) -> None:
    """uvicorn ends the process with the signal after the lifespan
    shutdown, so no exit hook runs: the lifespan says what is lost."""
    influxdb.stop()
    result = serve_then_signal(
        UVICORN_COMMAND,
        {'INFLUXDB_URL': influxdb.url, 'REQUEST_DATABASE': 'fastapi'},
        '/items/1',
        requests=20,
        signum=signal.SIGTERM,
    )
    assert result.returncode == -signal.SIGTERM, result.stdout
    errors = [
        line
        for line in result.stdout.splitlines()
        if 'not delivered to InfluxDB' in line
    ]
    assert len(errors) == 1, result.stdout
    assert errors[0].startswith(
        f'20 measurements not delivered to InfluxDB at {influxdb.url}/write '
        'when the application shut down (ConnectError: '
    ), errors


MODES_SCRIPT = """
import asyncio
import json
import sys

import sprockets_influxdb as influxdb
from sprockets_influxdb.asgi import InfluxDBMiddleware
from tests import asgi_shapes

influxdb.install(url=sys.argv[1], tag_hostname=False)
outcomes = asyncio.run(asgi_shapes.serve_all('modes', sys.argv[2]))
lifespan = asyncio.run(
    asgi_shapes.lifespan(
        InfluxDBMiddleware(
            asgi_shapes.plain, database='modes', measurement=sys.argv[2]
        )
    )
)
assert influxdb.shutdown().result(timeout=30)
print(json.dumps({
    'compiled': asgi_shapes.compiled(),
    'outcomes': outcomes,
    'lifespan': lifespan,
    'added': influxdb.stats().added,
}))
"""


def test_the_compiled_record_serves_and_stores_what_the_python_one_does(
    influxdb: InfluxServer,
) -> None:
    """The compiled ASGI middleware and record agree with pure Python.

    The requests of :mod:`tests.asgi_shapes` (FastAPI routes, an included
    router, errors, 404 and 405; a Starlette mount, stream and refused
    send; plain applications sending messages of every shape, a client
    gone, a cancelled request, an excluded path, nested middleware, a
    scope without a root path) give the server the same messages and
    exceptions, and the same rows, in both modes.
    """
    from tests import asgi_shapes

    found = run_in_both_modes(influxdb, MODES_SCRIPT)
    # The one failure of a route lookup, reported once, alike.
    assert found.stderr == (
        'Could not find the route of a request: RuntimeError: no truth\n'
    )
    answers, stored = found.answers, found.rows
    assert [request_summary(row) for row in stored] == asgi_shapes.EXPECTED
    errors = [outcome[1] for outcome in answers['outcomes']]
    # The refused send's error reaches the server (as an OSError, or
    # inside an exception group with older Starlette).
    refused = asgi_shapes.REQUESTS.index(
        ('starlette', 'GET', '/stream', 'refused')
    )
    assert errors[refused] is not None
    assert {'KeyError', 'CancelledError', 'RuntimeError'} <= set(errors)
    assert answers['lifespan'] == [
        'lifespan.startup.complete',
        'lifespan.shutdown.complete',
    ]
