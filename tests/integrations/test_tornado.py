"""The Tornado mixin over real HTTP, read back from a real InfluxDB."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import socket
import sys
import time
import typing

import httpx
import pytest

from tests.docs import code_blocks
from tests.helpers import (
    both_modes,
    request_summary,
    run_in_both_modes,
    run_script,
)
from tests.integrations.apps import (
    AppServer,
    drive,
    serve_then_signal,
    stored_times,
)
from tests.servers import InfluxServer, free_port


@pytest.fixture
def served(
    influxdb: InfluxServer,
) -> typing.Iterator[tuple[AppServer, InfluxServer]]:
    influxdb.create_database('tornado')
    app = AppServer(
        ['{python}', 'integrations/tornado_app.py', '--port', '{port}'],
        influxdb,
        'tornado',
        env={'SERVICE': 'shop', 'ENVIRONMENT': 'test'},
    )
    try:
        yield app, influxdb
    finally:
        app.stop()


APP = 'integrations.tornado_app'
CASES = [
    # name, method, path, headers, endpoint, status, handler, error
    ('plain', 'GET', '/', {}, '/', 200, f'{APP}.IndexHandler', None),
    (
        'path parameter',
        'GET',
        '/items/42',
        {},
        '/items/(?P<item_id>\\d+)',
        200,
        f'{APP}.ItemHandler',
        None,
    ),
    (
        'nested router',
        'GET',
        '/api/users/7',
        {},
        '/api/users/(\\d+)',
        200,
        f'{APP}.UserHandler',
        None,
    ),
    (
        'host rule',
        'GET',
        '/stats',
        {'Host': 'admin.local'},
        '/stats',
        200,
        f'{APP}.StatsHandler',
        None,
    ),
    (
        'teapot',
        'GET',
        '/teapot',
        {},
        '/teapot',
        418,
        f'{APP}.TeapotHandler',
        None,
    ),
    (
        'uncaught exception',
        'GET',
        '/error',
        {},
        '/error',
        500,
        f'{APP}.ErrorHandler',
        'builtins.ValueError',
    ),
    (
        'stream',
        'GET',
        '/stream',
        {},
        '/stream',
        200,
        f'{APP}.StreamHandler',
        None,
    ),
    (
        'unrouted',
        'GET',
        '/no/such/page',
        {},
        '<unmatched>',
        404,
        None,  # no route served it: no handler either
        None,
    ),
    (
        'method not allowed',
        'DELETE',
        '/',
        {},
        '<unmatched>',
        405,
        None,
        None,
    ),
]


def test_one_endpoint_under_load_keeps_every_request_apart(
    influxdb: InfluxServer,
) -> None:
    """Default settings: every request is a row, at a time of the server
    process's own (its process id in the last three digits), within the
    time the request took.

    Both kinds of handler: one that asks for its measurement (a field of
    its own) and one that never does, whose request is queued without
    one ever being made.
    """
    influxdb.create_database('tornado')
    app = AppServer(
        ['{python}', 'integrations/tornado_app.py', '--port', '{port}'],
        influxdb,
        'tornado',
        env={'SERVICE': 'shop'},
        defaults=True,
    )
    try:
        before = time.time_ns()
        answered = drive(app.url, '/items/1', 2000)
        answered += drive(app.url, '/api/users/7', 2000)
        after = time.time_ns()
    finally:
        output = app.stop()
    assert answered == 4000
    for endpoint in ('/items/(?P<item_id>\\d+)', '/api/users/(\\d+)'):
        times = stored_times(influxdb, 'tornado', endpoint)
        assert len(times) == 2000, (endpoint, output)
        assert {stamp % 1000 for stamp in times} == {app.process.pid % 1000}
        assert before <= min(times), endpoint
        assert max(times) <= after, endpoint


def test_every_case_of_the_schema(
    served: tuple[AppServer, InfluxServer],
) -> None:
    app, influxdb = served
    responses = {}
    for name, method, path, headers, *_ in CASES:
        responses[name] = app.client.request(method, path, headers=headers)
    output = app.stop()
    rows = influxdb.rows('tornado', 'shop')
    # The readiness probe of the fixture was a GET / as well.
    assert len(rows) == len(CASES) + 1, output
    # Rows come back in time order; requests of the same millisecond are
    # ordered by series: find each case by what identifies it.
    by_key = {
        (row['method'], row['endpoint'], row['status_code']): row
        for row in rows
    }
    hostname = socket.gethostname()
    for case in CASES:
        name, method, _, _, endpoint, status, handler, error = case
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
        assert isinstance(row['duration'], float)
        assert row['duration'] > 0
    stream = by_key['GET', '/stream', '200']
    assert stream['content_length'] == 24
    assert stream['duration'] >= 0.2  # type: ignore[operator]


EXAMPLE_B = """
import os

from tornado import ioloop, web

from sprockets_influxdb import InfluxDBMixin, REQUEST_DATABASE
import sprockets_influxdb as influxdb


class RequestHandler(InfluxDBMixin, web.RequestHandler):

    def get(self, *args, **kwargs):
        self.write({'hello': 'world'})


if __name__ == '__main__':
    os.environ['ENVIRONMENT'] = 'development'
    os.environ['SERVICE'] = 'example'
    application = web.Application([(r'/', RequestHandler)],
                                  **{REQUEST_DATABASE: 'example'})
    application.listen(PORT)
    influxdb.install()
    io_loop = ioloop.IOLoop.current()

    def drive():
        # Stands in for the users of the example: a few requests, then the
        # stop the example performs.
        client = httpx.AsyncClient()

        async def requests():
            for _ in range(5):
                response = await client.get('http://127.0.0.1:PORT/')
                assert response.json() == {'hello': 'world'}
            await client.aclose()
            influxdb.shutdown()
            io_loop.stop()

        io_loop.add_callback(requests)

    import httpx
    drive()
    io_loop.start()
"""


def test_example_b_records_every_request(influxdb: InfluxServer) -> None:
    influxdb.create_database('example')
    port = free_port()
    result = run_script(
        EXAMPLE_B.replace('PORT', str(port)),
        {'INFLUXDB_HOST': influxdb.host, 'INFLUXDB_PORT': str(influxdb.port)},
    )
    assert result.returncode == 0, result.stderr
    rows = influxdb.rows('example', 'example')
    assert len(rows) == 5
    for row in rows:
        assert row['environment'] == 'development'
        assert row['endpoint'] == '/'
        assert row['status_code'] == '200'
        assert row['content_length'] == len(b'{"hello": "world"}')


def test_a_missing_database_setting_is_logged_and_the_request_served(
    influxdb: InfluxServer,
) -> None:
    port = free_port()
    result = run_script(
        f"""
        import asyncio, httpx
        from tornado import web
        import sprockets_influxdb as influxdb

        class Handler(influxdb.InfluxDBMixin, web.RequestHandler):
            def get(self):
                self.influxdb.set_tag('extra', 'yes')
                self.write('ok')

        async def main():
            web.Application([(r'/', Handler)]).listen({port})
            async with httpx.AsyncClient() as client:
                response = await client.get('http://127.0.0.1:{port}/')
            print(response.status_code, response.text)

        asyncio.run(main())
        """,
        {'INFLUXDB_HOST': influxdb.host, 'INFLUXDB_PORT': str(influxdb.port)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['200', 'ok']
    assert 'sprockets_influxdb.database' in result.stderr
    assert 'not recorded' in result.stderr


def test_importing_the_package_does_not_import_tornado() -> None:
    result = run_script(
        """
        import sys
        import sprockets_influxdb
        assert 'tornado' not in sys.modules
        from sprockets_influxdb import InfluxDBMixin
        from sprockets_influxdb.tornado import InfluxDBMixin as same
        assert InfluxDBMixin is same and 'tornado' in sys.modules
        """
    )
    assert result.returncode == 0, result.stderr


def test_client_disconnect_is_recorded_as_499(influxdb: InfluxServer) -> None:
    influxdb.create_database('db')
    port = free_port()
    result = run_script(
        f"""
        import asyncio, socket
        from tornado import web
        import sprockets_influxdb as influxdb

        class Slow(influxdb.InfluxDBMixin, web.RequestHandler):
            async def get(self):
                await asyncio.sleep(1)
                self.write('late')

        async def main():
            influxdb.install(submission_interval=50)
            settings = {{influxdb.REQUEST_DATABASE: 'db'}}
            web.Application([(r'/slow', Slow)], **settings).listen({port})
            reader, writer = await asyncio.open_connection('127.0.0.1', {port})
            writer.write(b'GET /slow HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.close()
            await asyncio.sleep(1.5)
            await influxdb.shutdown()

        asyncio.run(main())
        """,
        {'INFLUXDB_HOST': influxdb.host, 'INFLUXDB_PORT': str(influxdb.port)},
    )
    assert result.returncode == 0, result.stderr
    (row,) = influxdb.rows('db', 'request')
    assert row['status_code'] == '499'
    assert row['endpoint'] == '/slow'


def test_a_request_is_timed_from_its_arrival(influxdb: InfluxServer) -> None:
    """The body arrives 0.4 s after the head: the row's time is the head's
    arrival and its duration counts the wait, whether the handler asked
    for its measurement or not (Tornado makes the handler once the body
    is in)."""
    influxdb.create_database('db')
    port = free_port()
    result = run_script(
        f"""
        import asyncio, time
        from tornado import web
        import sprockets_influxdb as influxdb

        class Plain(influxdb.InfluxDBMixin, web.RequestHandler):
            def post(self):
                self.write('ok')

        class Tagged(Plain):
            def post(self):
                self.influxdb.set_tag('asked', 'yes')
                self.write('ok')

        async def send(path):
            reader, writer = await asyncio.open_connection('127.0.0.1', {port})
            head = (f'POST {{path}} HTTP/1.1\\r\\nHost: x\\r\\n'
                    'Content-Length: 5\\r\\n\\r\\n')
            sent = time.time_ns()
            writer.write(head.encode())
            await writer.drain()
            await asyncio.sleep(0.4)
            body_sent = time.time_ns()
            writer.write(b'hello')
            await writer.drain()
            assert (await reader.readline()).startswith(b'HTTP/1.1 200')
            writer.close()
            print(path, sent, body_sent)

        async def main():
            settings = {{influxdb.REQUEST_DATABASE: 'db'}}
            web.Application(
                [(r'/plain', Plain), (r'/tagged', Tagged)], **settings
            ).listen({port})
            await send('/plain')
            await send('/tagged')
            await influxdb.shutdown()

        asyncio.run(main())
        """,
        {'INFLUXDB_HOST': influxdb.host, 'INFLUXDB_PORT': str(influxdb.port)},
    )
    assert result.returncode == 0, result.stderr
    sent = {
        path: (int(head), int(body))
        for path, head, body in (
            line.split() for line in result.stdout.splitlines()
        )
    }
    payload = influxdb.query(
        'SELECT "duration", "endpoint", "asked" FROM request', 'db', epoch='ns'
    )
    rows = {
        endpoint: (stamp, duration, asked)
        for stamp, duration, endpoint, asked in payload['results'][0][
            'series'
        ][0]['values']
    }
    assert set(rows) == {'/plain', '/tagged'}
    assert rows['/tagged'][2] == 'yes'
    for endpoint, (stamp, duration, _) in rows.items():
        head, body = sent[endpoint]
        # Stored when the head arrived, not when the handler ran.
        assert head <= stamp < head + 200_000_000, endpoint
        # Timed from there, so the wait for the body counts (within a
        # millisecond: the duration is measured on the monotonic clock).
        assert (body - stamp) / 1e9 - 0.001 <= duration < 5, endpoint
        assert body - head >= 400_000_000


@both_modes
def test_each_request_is_stored_at_its_arrival_whatever_pauses_the_process(
    influxdb: InfluxServer, pure: str
) -> None:
    """Each row's time is the request's arrival as Tornado timed it
    (``_start_time``, rounded down to the process's discriminator), exactly,
    even in a process that stalls for milliseconds now and then (long
    garbage collections here, as a large heap has; a starved CPU does the
    same).  Derived from other clock readings, a time moved by such a
    stall could land on another request's and replace its row."""
    influxdb.create_database('db')
    port = free_port()
    result = run_script(
        f"""
        import asyncio, gc, json, random, time
        from tornado import httpclient, web
        import sprockets_influxdb as influxdb
        from sprockets_influxdb import clock

        starts = []

        class Plain(influxdb.InfluxDBMixin, web.RequestHandler):
            def get(self):
                starts.append(self.request._start_time)
                self.write('ok')

        class Asked(Plain):
            def get(self):
                starts.append(self.request._start_time)
                self.influxdb.set_field('asked', True)
                self.write('ok')

        draw = random.Random(15)

        def stall(phase, info):
            # One collection in 40 takes 2 ms.
            if phase == 'start' and draw.random() < 0.025:
                time.sleep(0.002)

        async def main():
            influxdb.install(submission_interval=100)
            settings = {{influxdb.REQUEST_DATABASE: 'db'}}
            web.Application(
                [(r'/plain', Plain), (r'/asked', Asked)], **settings
            ).listen({port})
            http = httpclient.AsyncHTTPClient()
            gc.set_threshold(1)
            gc.callbacks.append(stall)
            for index in range(100):
                path = '/asked' if index % 2 else '/plain'
                await http.fetch(f'http://127.0.0.1:{port}{{path}}')
            gc.callbacks.remove(stall)
            gc.set_threshold(700)
            await influxdb.shutdown()
            arrivals = sorted(clock.align(int(at * 1e9)) for at in starts)
            print(json.dumps(arrivals))

        asyncio.run(main())
        """,
        {
            'INFLUXDB_HOST': influxdb.host,
            'INFLUXDB_PORT': str(influxdb.port),
            'SPROCKETS_INFLUXDB_PURE_PYTHON': pure,
        },
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    arrivals = json.loads(result.stdout)
    assert len(set(arrivals)) == 100
    payload = influxdb.query(
        'SELECT "duration" FROM request', 'db', epoch='ns'
    )
    stored = sorted(
        stamp for stamp, _ in payload['results'][0]['series'][0]['values']
    )
    assert stored == arrivals


@both_modes
def test_overrides_of_the_handler_and_of_other_mixins_still_run(
    influxdb: InfluxServer, pure: str
) -> None:
    """The mixin's _execute and on_finish hand over to what follows them in
    the bases: another mixin's overrides run once each, with the path's
    arguments, after the mixin added its output transform; a handler's
    on_finish that calls super() reaches them too."""
    influxdb.create_database('db')
    port = free_port()
    result = run_script(
        f"""
        import asyncio, json
        from tornado import httpclient, web
        import sprockets_influxdb as influxdb

        calls = []

        class Audit:
            def _execute(self, transforms, *args, **kwargs):
                # (Tornado hands the path's arguments over as bytes.)
                calls.append([
                    'execute', len(transforms), [a.decode() for a in args],
                    {{key: value.decode() for key, value in kwargs.items()}},
                ])
                return super()._execute(transforms, *args, **kwargs)

            def on_finish(self):
                calls.append('audit finish')
                super().on_finish()

        class Handler(influxdb.InfluxDBMixin, Audit, web.RequestHandler):
            def get(self, item_id):
                self.write(item_id)

            def on_finish(self):
                calls.append('handler finish')
                super().on_finish()

        async def main():
            influxdb.install(submission_interval=50)
            web.Application(
                [(r'/items/(?P<item_id>\\d+)', Handler)],
                **{{influxdb.REQUEST_DATABASE: 'db'}},
            ).listen({port})
            http = httpclient.AsyncHTTPClient()
            for item in ('7', '8'):
                response = await http.fetch(
                    f'http://127.0.0.1:{port}/items/{{item}}'
                )
                assert response.body.decode() == item
            await influxdb.shutdown()
            print(json.dumps(calls))

        asyncio.run(main())
        """,
        {
            'INFLUXDB_HOST': influxdb.host,
            'INFLUXDB_PORT': str(influxdb.port),
            'SPROCKETS_INFLUXDB_PURE_PYTHON': pure,
        },
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        ['execute', 1, [], {'item_id': '7'}],
        'handler finish',
        'audit finish',
        ['execute', 1, [], {'item_id': '8'}],
        'handler finish',
        'audit finish',
    ]
    rows = influxdb.rows('db', 'request')
    assert len(rows) == 2
    for row in rows:
        assert row['endpoint'] == '/items/(?P<item_id>\\d+)'
        assert row['handler'] == '__main__.Handler'
        assert row['status_code'] == '200'


def test_excluded_paths_are_not_recorded(influxdb: InfluxServer) -> None:
    influxdb.create_database('db')
    port = free_port()
    result = run_script(
        f"""
        import asyncio, httpx
        from tornado import web
        import sprockets_influxdb as influxdb
        from sprockets_influxdb.tornado import EXCLUDE_PATHS

        class Handler(influxdb.InfluxDBMixin, web.RequestHandler):
            def get(self):
                self.influxdb.set_tag('seen', 'yes')
                self.write('ok')

        async def main():
            web.Application(
                [(r'/.*', Handler)],
                **{{influxdb.REQUEST_DATABASE: 'db',
                    EXCLUDE_PATHS: [r'/health']}},
            ).listen({port})
            async with httpx.AsyncClient() as client:
                for path in ('/health', '/healthz', '/work'):
                    await client.get(f'http://127.0.0.1:{port}' + path)
            await influxdb.shutdown()

        asyncio.run(main())
        """,
        {'INFLUXDB_HOST': influxdb.host, 'INFLUXDB_PORT': str(influxdb.port)},
    )
    assert result.returncode == 0, result.stderr
    rows = influxdb.rows('db', 'request')
    assert [row['seen'] for row in rows] == ['yes']


def test_httpx_is_available_for_the_examples() -> None:
    assert httpx.__version__


def test_the_docs_example_loses_no_request_on_ctrl_c_or_sigterm(
    influxdb: InfluxServer,
) -> None:
    """Stopped right after the client read its last response, 55 times:
    every request is stored."""
    (example,) = [
        block
        for block in code_blocks('tornado.rst')
        if 'application.listen(8888)' in block
    ]
    influxdb.create_database('example')

    def run(signum: int) -> None:
        result = serve_then_signal(
            [sys.executable, '-c', example.replace('8888', '{port}')],
            {'INFLUXDB_URL': influxdb.url},
            '/',
            signum=signum,
        )
        assert result.returncode == 0, result.stdout

    signals = [signal.SIGINT] * 50 + [signal.SIGTERM] * 5
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(run, signals))
    assert influxdb.count('example', 'example') == 10 * len(signals)


def test_the_endpoint_follows_the_rules_as_they_change(
    influxdb: InfluxServer,
) -> None:
    """One class under one rule, then under a second one, then a host.

    The endpoint of a class one rule leads to is kept; rules added later
    (another path to the same class, a host rule) are taken into account.
    """
    influxdb.create_database('rules')
    port = free_port()
    result = run_script(
        f"""
        import asyncio, httpx
        from tornado import web
        import sprockets_influxdb as influxdb

        class Handler(influxdb.InfluxDBMixin, web.RequestHandler):
            def get(self, *args):
                self.write('ok')

        async def main():
            application = web.Application(
                [(r'/one/(\\d+)', Handler)],
                **{{influxdb.REQUEST_DATABASE: 'rules'}},
            )
            application.listen({port})
            base = 'http://127.0.0.1:{port}'
            async with httpx.AsyncClient() as client:
                for path in ('/one/1', '/one/2'):
                    assert (await client.get(base + path)).text == 'ok'
                application.add_handlers(r'.*', [(r'/two/(\\d+)', Handler)])
                for path in ('/one/3', '/two/4'):
                    assert (await client.get(base + path)).text == 'ok'
                application.add_handlers(
                    r'admin\\.local', [(r'/three', Handler)]
                )
                for path, host in (('/three', 'admin.local'), ('/one/5', '')):
                    headers = {{'Host': host}} if host else {{}}
                    response = await client.get(base + path, headers=headers)
                    assert response.text == 'ok'
            assert await influxdb.shutdown()

        asyncio.run(main())
        """,
        {'INFLUXDB_HOST': influxdb.host, 'INFLUXDB_PORT': str(influxdb.port)},
    )
    assert result.returncode == 0, result.stderr
    rows = influxdb.rows('rules', 'request')
    assert sorted(row['endpoint'] for row in rows) == [
        '/one/(\\d+)',
        '/one/(\\d+)',
        '/one/(\\d+)',
        '/one/(\\d+)',
        '/three',
        '/two/(\\d+)',
    ]


def test_handlers_are_freed_without_the_cycle_collector(
    influxdb: InfluxServer,
) -> None:
    """A handler with the mixin is freed as soon as its request is done.

    With the cyclic garbage collector off, handlers with the mixin, and
    the requests and responses they hold, are freed by reference counting
    as those without it are: a cycle between a handler and what the mixin
    keeps would leave them all to the collector, request after request.
    Reading ``influxdb`` in ``initialize()`` works and is recorded.
    """
    influxdb.create_database('freed')
    port = free_port()
    result = run_script(
        f"""
        import asyncio, gc, weakref
        import httpx
        from tornado import web
        import sprockets_influxdb as influxdb

        alive = weakref.WeakSet()

        class Bare(web.RequestHandler):
            def initialize(self):
                alive.add(self)

            def get(self, kind):
                if kind == 'error':
                    raise RuntimeError('boom')
                if kind == 'missing':
                    raise web.HTTPError(404)
                if kind == 'streamed':
                    self.write('a' * 10)
                    self.flush()
                self.write('ok')

            head = get

        class Recorded(influxdb.InfluxDBMixin, Bare):
            def initialize(self):
                super().initialize()
                self.influxdb.set_tag('early', 'yes')

        async def main():
            gc.disable()
            application = web.Application(
                [(r'/bare/(\\w+)', Bare), (r'/recorded/(\\w+)', Recorded)],
                **{{influxdb.REQUEST_DATABASE: 'freed'}},
            )
            application.listen({port})
            base = 'http://127.0.0.1:{port}'
            left = {{}}
            async with httpx.AsyncClient() as client:
                for prefix in ('bare', 'recorded'):
                    for kind in ('plain', 'streamed', 'error', 'missing'):
                        # Tornado 6.0 sends the chunked body of a HEAD it
                        # flushed, which spoils the next response.
                        methods = ('GET',) if kind == 'streamed' else (
                            'GET', 'HEAD'
                        )
                        for method in methods:
                            await client.request(
                                method, f'{{base}}/{{prefix}}/{{kind}}'
                            )
                            # The server's side of the exchange is over.
                            await asyncio.sleep(0.05)
                    left[prefix] = len(alive)
            print(left)
            assert left == {{'bare': 0, 'recorded': 0}}, left
            assert await influxdb.shutdown()

        asyncio.run(main())
        """,
        {'INFLUXDB_HOST': influxdb.host, 'INFLUXDB_PORT': str(influxdb.port)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rows = influxdb.rows('freed', 'request')
    assert len(rows) == 7
    assert {row['early'] for row in rows} == {'yes'}
    assert sorted(
        (row['method'], row['status_code'], row.get('error')) for row in rows
    ) == [
        ('GET', '200', None),
        ('GET', '200', None),
        ('GET', '404', None),
        ('GET', '500', 'builtins.RuntimeError'),
        ('HEAD', '200', None),
        ('HEAD', '404', None),
        ('HEAD', '500', 'builtins.RuntimeError'),
    ]


MODES_SCRIPT = """
import asyncio
import json
import sys

import sprockets_influxdb as influxdb
from tests import tornado_shapes

influxdb.install(url=sys.argv[1], tag_hostname=False)
outcomes = asyncio.run(tornado_shapes.serve_all('modes', sys.argv[2]))
assert influxdb.shutdown().result(timeout=30)
print(json.dumps({
    'compiled': tornado_shapes.compiled(),
    'outcomes': outcomes,
    'added': influxdb.stats().added,
}))
"""


def test_the_compiled_record_serves_and_stores_what_the_python_one_does(
    influxdb: InfluxServer,
) -> None:
    """The compiled Tornado record agrees with the pure Python one.

    The requests of :mod:`tests.tornado_shapes` (plain, path parameter,
    nested router, streamed, declared Content-Length written in parts,
    compressed, HEAD, 404, 405, HTTPError, an exception, a measurement
    read in ``initialize()`` or tagged, an excluded path, a handler class
    routed twice) get the same responses and give the same rows in both
    modes.
    """
    from tests import tornado_shapes

    found = run_in_both_modes(influxdb, MODES_SCRIPT)
    assert found.stderr == ''
    answers, stored = found.answers, found.rows
    assert [
        request_summary(row, handler=True) for row in stored
    ] == tornado_shapes.EXPECTED
    assert [
        row['content_length'] for row in stored
    ] == tornado_shapes.received(answers['outcomes'])
    assert [row.get('early') for row in stored].count(1) == 1
    assert [row.get('customer') for row in stored].count('acme') == 1
