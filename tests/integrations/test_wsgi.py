"""The WSGI middleware: Flask under gunicorn (forked workers), and any
WSGI application in process, read back from a real InfluxDB.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import typing

import pytest
from werkzeug.routing import Map, Rule
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Response

from sprockets_influxdb import Client
from sprockets_influxdb.wsgi import ENVIRON_KEY, InfluxDBMiddleware
from tests.helpers import (
    request_summary,
    run_in_both_modes,
    run_script,
    wait_for,
)
from tests.integrations.apps import (
    AppServer,
    drive,
    serve_then_signal,
    stored_times,
)
from tests.servers import InfluxServer

FLASK = 'integrations.flask_app'
# name, method, path, endpoint, status, handler, error
CASES = [
    ('plain', 'GET', '/', '/', 200, f'{FLASK}.homepage', None),
    (
        'path parameter',
        'GET',
        '/items/42',
        '/items/<int:item_id>',
        200,
        f'{FLASK}.item',
        None,
    ),
    (
        'blueprint',
        'GET',
        '/api/users/7',
        '/api/users/<user_id>',
        200,
        f'{FLASK}.user',
        None,
    ),
    ('stream', 'GET', '/stream', '/stream', 200, f'{FLASK}.stream', None),
    ('file', 'GET', '/source', '/source', 200, f'{FLASK}.source', None),
    ('teapot', 'GET', '/teapot', '/teapot', 418, f'{FLASK}.teapot', None),
    (
        'uncaught exception',
        'GET',
        '/error',
        '/error',
        500,
        f'{FLASK}.error',
        'builtins.ValueError',
    ),
    ('unrouted', 'GET', '/no/such/page', '<unmatched>', 404, None, None),
    ('method not allowed', 'DELETE', '/', '<unmatched>', 405, None, None),
]


def gunicorn(
    influxdb: InfluxServer,
    database: str,
    worker_class: str,
    workers: int = 3,
    threads: int = 1,
    *,
    defaults: bool = False,
) -> AppServer:
    return AppServer(
        [
            '{python}',
            'integrations/flask_app.py',
            '--port',
            '{port}',
            '--workers',
            str(workers),
            '--worker-class',
            worker_class,
            '--threads',
            str(threads),
        ],
        influxdb,
        database,
        env={'SERVICE': 'shop', 'ENVIRONMENT': 'test'},
        defaults=defaults,
    )


@pytest.mark.parametrize('worker_class', ['sync', 'gthread'])
def test_every_request_under_gunicorn_with_preload(
    influxdb: InfluxServer, worker_class: str
) -> None:
    influxdb.create_database('flask')
    app = gunicorn(influxdb, 'flask', worker_class)
    try:
        responses = {
            name: app.client.request(method, path)
            for name, method, path, *_ in CASES
        }
        for index in range(60):
            app.client.get(f'/items/{1000 + index}')
    finally:
        output = app.stop()
    rows = influxdb.rows('flask', 'shop')
    # The readiness probe, the cases, the burst: every one, from every
    # worker, delivered when gunicorn stopped them.
    assert len(rows) == 1 + len(CASES) + 60, output
    by_key = {
        (row['method'], row['endpoint'], row['status_code']): row
        for row in rows
        if row.get('item_id') in (None, 42)
    }
    hostname = socket.gethostname()
    for name, method, _, endpoint, status, handler, error in CASES:
        row = by_key[method, endpoint, str(status)]
        response = responses[name]
        assert response.status_code == status, name
        assert {key: row[key] for key in row if key != 'time'} == {
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
        }, name
    assert by_key['GET', '/stream', '200']['duration'] >= 0.2  # type: ignore[operator]
    items = sorted(
        int(row['item_id'])  # type: ignore[call-overload]
        for row in rows
        if row.get('item_id') not in (None, 42)
    )
    assert items == list(range(1000, 1060))


@pytest.mark.parametrize(
    ('worker_class', 'workers', 'threads'),
    [('sync', 4, 1), ('gthread', 2, 8)],
)
def test_one_endpoint_under_load_from_every_worker_loses_nothing(
    influxdb: InfluxServer, worker_class: str, workers: int, threads: int
) -> None:
    """Default settings: every request of one series is one row."""
    influxdb.create_database('flask')
    app = gunicorn(
        influxdb, 'flask', worker_class, workers, threads, defaults=True
    )
    try:
        answered = drive(app.url, '/items/1', 2000)
        pids = worker_pids(app.process.pid)
    finally:
        output = app.stop()
    assert answered == 2000
    times = stored_times(influxdb, 'flask', '/items/<int:item_id>')
    assert len(times) == 2000, output
    # Each worker's times end in its own process id.
    assert {stamp % 1000 for stamp in times} <= {pid % 1000 for pid in pids}


def test_a_killed_worker_is_replaced_and_the_new_one_records(
    influxdb: InfluxServer,
) -> None:
    influxdb.create_database('flask')
    app = gunicorn(influxdb, 'flask', 'sync', workers=2)
    try:
        master = app.process.pid
        workers = wait_for(
            lambda: len(worker_pids(master)) == 2 and worker_pids(master),
            message='both workers to boot',
        )
        os.kill(workers[0], signal.SIGKILL)
        wait_for(
            lambda: (
                len(worker_pids(master)) == 2
                and workers[0] not in worker_pids(master)
            ),
            message='gunicorn to replace the worker',
        )
        for index in range(40):
            assert app.client.get(f'/items/{2000 + index}').status_code == 200
    finally:
        output = app.stop()
    items = sorted(
        int(row['item_id'])  # type: ignore[call-overload]
        for row in influxdb.rows('flask', 'shop')
        if row.get('item_id') is not None
    )
    assert items == list(range(2000, 2040)), output


def worker_pids(master: int) -> list[int]:
    result = subprocess.run(
        ['pgrep', '-P', str(master)],
        capture_output=True,
        text=True,
        check=False,
    )
    return [int(pid) for pid in result.stdout.split()]


def test_client_disconnect_is_recorded_as_499(influxdb: InfluxServer) -> None:
    influxdb.create_database('flask')
    app = gunicorn(influxdb, 'flask', 'sync', workers=1)
    try:
        with socket.create_connection(('127.0.0.1', app.port)) as raw:
            raw.sendall(b'GET /stream HTTP/1.1\r\nHost: x\r\n\r\n')
            raw.recv(64)
            raw.setsockopt(
                socket.SOL_SOCKET,
                socket.SO_LINGER,
                b'\x01\x00\x00\x00\x00\x00\x00\x00',
            )
        time.sleep(0.5)
    finally:
        app.stop()
    rows = {row['endpoint']: row for row in influxdb.rows('flask', 'shop')}
    assert rows['/stream']['status_code'] == '499'


# In process: any WSGI application, and Flask wired both ways.


@pytest.fixture
def client(influxdb: InfluxServer) -> typing.Iterator[Client]:
    influxdb.create_database('db')
    client = Client(influxdb.url, tag_hostname=False)
    yield client
    client.shutdown().result(timeout=10)


def call(app: typing.Any, path: str, method: str = 'GET') -> tuple[str, bytes]:
    environ = EnvironBuilder(path=path, method=method).get_environ()
    started: list[str] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: object = None
    ) -> typing.Callable[[bytes], None]:
        started.append(status)
        return lambda data: None

    result = app(environ, start_response)
    try:
        body = b''.join(result)
    finally:
        close = getattr(result, 'close', None)
        if close is not None:
            close()
    return started[-1], body


def rows_by_endpoint(
    influxdb: InfluxServer, client: Client
) -> dict[str, dict[str, object]]:
    assert client.flush().result(timeout=10)
    return {row['endpoint']: row for row in influxdb.rows('db', 'request')}  # type: ignore[misc]


def test_any_wsgi_app_with_a_werkzeug_map(
    influxdb: InfluxServer, client: Client
) -> None:
    url_map = Map([Rule('/books/<int:book>', endpoint='book')])

    def app(
        environ: dict[str, object], start_response: typing.Any
    ) -> typing.Any:
        adapter = url_map.bind_to_environ(environ)
        try:
            _, arguments = adapter.match()
        except Exception as error:
            return Response('no', status=getattr(error, 'code', 500))(
                environ, start_response
            )
        environ[ENVIRON_KEY].set_tag('shelf', 'top')  # type: ignore[attr-defined]
        return Response(f'book {arguments["book"]}')(environ, start_response)

    wrapped = InfluxDBMiddleware(
        app, database='db', client=client, url_map=url_map
    )
    assert call(wrapped, '/books/3') == ('200 OK', b'book 3')
    assert call(wrapped, '/nope')[0].startswith('404')
    rows = rows_by_endpoint(influxdb, client)
    assert rows['/books/<int:book>']['shelf'] == 'top'
    assert rows['/books/<int:book>']['content_length'] == 6
    assert rows['<unmatched>']['status_code'] == '404'


def test_flask_wrapped_whole_finds_the_rule(
    influxdb: InfluxServer, client: Client
) -> None:
    from integrations.flask_app import make_app

    flask_app = make_app('unused')
    wrapped = InfluxDBMiddleware(flask_app, database='db', client=client)
    assert call(wrapped, '/items/5')[0] == '200 OK'
    rows = rows_by_endpoint(influxdb, client)
    # The app's own middleware let the request through: recorded once.
    assert list(rows) == ['/items/<int:item_id>']
    assert rows['/items/<int:item_id>']['item_id'] == 5


def test_errors_raised_by_a_plain_app_are_recorded_and_raised(
    influxdb: InfluxServer, client: Client
) -> None:
    def broken(environ: object, start_response: typing.Any) -> typing.Any:
        raise LookupError('nothing here')

    def broken_later(
        environ: object, start_response: typing.Any
    ) -> typing.Any:
        start_response('200 OK', [('Content-Type', 'text/plain')])
        yield b'first '
        raise TimeoutError('stalled')

    with pytest.raises(LookupError):
        call(InfluxDBMiddleware(broken, database='db', client=client), '/a')
    with pytest.raises(TimeoutError):
        call(
            InfluxDBMiddleware(broken_later, database='db', client=client),
            '/b',
        )
    assert client.flush().result(timeout=10)
    rows = influxdb.rows('db', 'request')
    assert sorted((row['status_code'], row['error']) for row in rows) == [
        ('500', 'builtins.LookupError'),
        ('500', 'builtins.TimeoutError'),
    ]


def test_start_response_with_exc_info_and_excluded_paths(
    influxdb: InfluxServer, client: Client
) -> None:
    def app(
        environ: dict[str, object], start_response: typing.Any
    ) -> typing.Any:
        try:
            raise RuntimeError('late')
        except RuntimeError:
            import sys

            start_response('503 Service Unavailable', [], sys.exc_info())
        return [b'down']

    wrapped = InfluxDBMiddleware(
        app, database='db', client=client, exclude_paths=[r'/health']
    )
    assert call(wrapped, '/health') == ('503 Service Unavailable', b'down')
    assert call(wrapped, '/work') == ('503 Service Unavailable', b'down')
    rows = influxdb.rows('db', 'request')
    assert client.flush().result(timeout=10)
    rows = influxdb.rows('db', 'request')
    assert [(row['status_code'], row['content_length']) for row in rows] == [
        ('503', 4)
    ]


def test_app_factories_proxies_and_class_based_views(
    influxdb: InfluxServer, client: Client
) -> None:
    import gc

    from flask import Flask
    from flask.views import MethodView
    from werkzeug.middleware.proxy_fix import ProxyFix

    class Item(MethodView):
        def get(self, item_id: int) -> str:
            return str(item_id)

    for number in range(30):
        # A new application each time, as test suites make them: some
        # reuse the memory (and id) of one collected before.
        flask_app = Flask(f'app{number}')
        flask_app.add_url_rule(
            '/items/<int:item_id>', view_func=Item.as_view('item')
        )
        flask_app.wsgi_app = ProxyFix(flask_app.wsgi_app)  # type: ignore[method-assign]
        flask_app.wsgi_app = InfluxDBMiddleware(  # type: ignore[method-assign]
            flask_app.wsgi_app, database='db', client=client
        )
        assert call(flask_app, f'/items/{number}') == (
            '200 OK',
            str(number).encode(),
        )
        del flask_app
        gc.collect()
    assert client.flush().result(timeout=10)
    rows = influxdb.rows('db', 'request')
    assert len(rows) == 30
    assert {(row['endpoint'], row['handler']) for row in rows} == {
        (
            '/items/<int:item_id>',
            f'{__name__}.test_app_factories_proxies_and_class_based_views'
            '.<locals>.Item',
        )
    }


def test_flask_test_client_records_every_request_as_served(
    influxdb: InfluxServer,
) -> None:
    """However a test reads the response, the request is recorded once,
    with the status the application gave (never 499)."""
    influxdb.create_database('flask')
    result = run_script(
        """
        import sprockets_influxdb as influxdb
        from integrations.flask_app import make_app

        app = make_app('flask')
        client = app.test_client()
        assert client.get('/items/1').data == b'{"item_id":1}\\n'
        assert client.get('/items/2').status_code == 200  # body unread
        response = client.get('/items/3')
        response.close()  # closed unread
        with client:
            assert client.get('/items/4').status_code == 200
        with app.test_client() as other:
            assert other.get('/items/5').get_json() == {'item_id': 5}
        streamed = client.get('/stream')
        assert streamed.status_code == 200
        del streamed  # a streamed body, unread and released
        client.get('/stream').close()  # a streamed body, closed unread
        print(influxdb.stats().added)
        assert influxdb.shutdown().result(timeout=10)
        """,
        env={'INFLUXDB_URL': influxdb.url, 'SERVICE': 'shop'},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['7']
    rows = influxdb.rows('flask', 'shop')
    assert sorted(
        (row['endpoint'], row['status_code'], row['item_id']) for row in rows
    ) == [
        ('/items/<int:item_id>', '200', 1),
        ('/items/<int:item_id>', '200', 2),
        ('/items/<int:item_id>', '200', 3),
        ('/items/<int:item_id>', '200', 4),
        ('/items/<int:item_id>', '200', 5),
        ('/stream', '200', None),
        ('/stream', '200', None),
    ]


def test_without_a_database_requests_are_served_with_a_stand_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from integrations.flask_app import make_app

    app = make_app('flask')
    app.wsgi_app = InfluxDBMiddleware(  # type: ignore[method-assign]
        app.wsgi_app.app,
        database=None,  # type: ignore[attr-defined]
    )
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger='sprockets_influxdb'):
        for item in range(3):
            response = client.get(f'/items/{item}')
            assert response.status_code == 200
            assert response.get_json() == {'item_id': item}
    errors = [r for r in caplog.records if r.levelname == 'ERROR']
    assert [r.getMessage() for r in errors] == [
        'InfluxDBMiddleware has no database (database=...): requests are '
        'served but not recorded'
    ]


def test_gunicorn_stopped_right_after_the_last_response_loses_nothing(
    influxdb: InfluxServer,
) -> None:
    """SIGTERM as soon as the client read its tenth response, 50 times."""
    influxdb.create_database('flask')

    def run(_: int) -> None:
        result = serve_then_signal(
            [
                sys.executable,
                '-m',
                'gunicorn',
                '--preload',
                '--workers',
                '2',
                '--bind',
                '127.0.0.1:{port}',
                'integrations.flask_app:app',
            ],
            {
                'INFLUXDB_URL': influxdb.url,
                'REQUEST_DATABASE': 'flask',
                'SERVICE': 'shop',
            },
            '/items/1',
            signum=signal.SIGTERM,
        )
        assert result.returncode == 0, result.stdout

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(run, range(50)))
    assert influxdb.count('flask', 'shop') == 500


def gunicorn_command(worker_class: str, *options: str) -> list[str]:
    """gunicorn serving the example, 2 workers, on ``{port}``."""
    return [
        sys.executable,
        '-m',
        'gunicorn',
        '--workers',
        '2',
        '--worker-class',
        worker_class,
        *options,
        '--bind',
        '127.0.0.1:{port}',
        'integrations.flask_app:app',
    ]


@pytest.mark.parametrize('worker_class', ['sync', 'gthread'])
def test_workers_recycled_by_max_requests_lose_nothing(
    influxdb: InfluxServer, worker_class: str
) -> None:
    """``--max-requests 20``: each worker exits after 20 requests and
    gunicorn starts another; what each one recorded is stored."""
    database = f'recycled_{worker_class}'
    influxdb.create_database(database)
    result = serve_then_signal(
        gunicorn_command(worker_class, '--max-requests', '20'),
        {
            'INFLUXDB_URL': influxdb.url,
            'REQUEST_DATABASE': database,
            'SERVICE': 'shop',
        },
        '/items/1',
        requests=100,
        signum=signal.SIGTERM,
    )
    assert result.returncode == 0, result.stdout
    assert result.stdout.count('Autorestarting worker') >= 4, result.stdout
    assert influxdb.count(database, 'shop') == 100, result.stdout


@pytest.mark.parametrize('preload', [False, True], ids=['', 'preload'])
def test_ctrl_c_on_gunicorn_gthread_loses_nothing(
    influxdb: InfluxServer, preload: bool, tmp_path: pathlib.Path
) -> None:
    """A terminal's Ctrl-C: SIGINT to gunicorn's process group, 6 times.

    The master then sends its workers SIGQUIT.  A gthread worker handling
    both at once deadlocks in gunicorn's handler (a bare Flask app's does
    too), and so does one whose main thread held its pool's lock when the
    SIGINT came, until the master kills it at its graceful timeout: what
    that worker buffered must have been delivered already.  With ``--preload``,
    the documented line in ``gunicorn.conf.py`` sees to it.
    """
    config = tmp_path / 'gunicorn.conf.py'
    config.write_text('from sprockets_influxdb.wsgi import post_worker_init\n')
    database = 'ctrl_c_preload' if preload else 'ctrl_c'
    influxdb.create_database(database)
    killed = 0
    for _ in range(6):
        result = serve_then_signal(
            gunicorn_command(
                'gthread',
                '--threads',
                '4',
                '--graceful-timeout',
                '2',
                *(['--preload', '--config', str(config)] if preload else []),
            ),
            {
                'INFLUXDB_URL': influxdb.url,
                'REQUEST_DATABASE': database,
                'SERVICE': 'shop',
            },
            '/items/1',
            requests=40,
            terminal=True,
        )
        killed += 'SIGKILL' in result.stdout
        assert influxdb.count(database, 'shop') % 40 == 0, result.stdout
    assert influxdb.count(database, 'shop') == 240, f'{killed} killed'


MODES_SCRIPT = """
import json
import sys

import sprockets_influxdb as influxdb
from tests import wsgi_shapes

influxdb.install(url=sys.argv[1], tag_hostname=False)
outcomes, closed = wsgi_shapes.serve_all('modes', sys.argv[2])
assert influxdb.shutdown().result(timeout=30)
print(json.dumps({
    'compiled': wsgi_shapes.compiled(),
    'outcomes': outcomes,
    'closed': closed,
    'added': influxdb.stats().added,
}))
"""


def test_the_compiled_record_serves_and_stores_what_the_python_one_does(
    influxdb: InfluxServer,
) -> None:
    """The compiled WSGI record and the pure Python one agree.

    The requests of :mod:`tests.wsgi_shapes` (Flask, ``start_response``
    called in other shapes, a plain application with statuses, headers and
    bodies of every shape, errors at each step, a server whose sending
    fails, a response only looked at, ``write()``, a file wrapper) give the
    server the same statuses, bodies and exceptions, and the same rows, in
    both modes.
    """
    from tests import wsgi_shapes

    found = run_in_both_modes(influxdb, MODES_SCRIPT)
    assert found.stderr == ''
    answers, stored = found.answers, found.rows
    assert [request_summary(row) for row in stored] == wsgi_shapes.EXPECTED
    errors = [outcome[2] for outcome in answers['outcomes']]
    assert errors.count('BrokenPipeError') == 3
    assert 'KeyError' not in errors  # Flask answered 500 itself
    assert {'ValueError', 'TypeError', 'RuntimeError', 'SystemExit'} <= set(
        errors
    )
    # The iterable of /closing closed once each time, gone or not.
    assert answers['closed'] == [1, 1]
