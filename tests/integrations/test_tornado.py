"""The Tornado mixin over real HTTP, read back from a real InfluxDB."""

from __future__ import annotations

import socket
import typing

import httpx
import pytest

from tests.helpers import run_script
from tests.integrations.apps import AppServer
from tests.servers import InfluxServer, free_port

HANDLERS = 'integrations.tornado_app'


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


def test_every_case_of_the_schema(
    served: tuple[AppServer, InfluxServer],
) -> None:
    app, influxdb = served
    responses = {
        'plain': app.client.get('/'),
        'path parameter': app.client.get('/items/42'),
        'nested router': app.client.get('/api/users/7'),
        'host rule': app.client.get('/stats', headers={'Host': 'admin.local'}),
        'teapot': app.client.get('/teapot'),
        'error': app.client.get('/error'),
        'stream': app.client.get('/stream'),
        'unrouted': app.client.get('/no/such/page'),
        'method': app.client.post('/', content=b''),
    }
    output = app.stop()
    assert [response.status_code for response in responses.values()] == [
        200,
        200,
        200,
        200,
        418,
        500,
        200,
        404,
        405,
    ], output
    rows = influxdb.rows('tornado', 'shop')
    # The readiness probe of the fixture was a GET / as well.
    assert len(rows) == len(responses) + 1, output
    by_endpoint: dict[tuple[str, str, str], list[dict[str, object]]] = {}
    for row in rows:
        key = (
            str(row['endpoint']),
            str(row['method']),
            str(row['status_code']),
        )
        by_endpoint.setdefault(key, []).append(row)

    def one(
        endpoint: str, status: int, method: str = 'GET'
    ) -> dict[str, object]:
        found = by_endpoint[endpoint, method, str(status)]
        return found[-1]

    hostname = socket.gethostname()
    for row in rows:
        assert row['hostname'] == hostname
        assert row['environment'] == 'test'
        assert isinstance(row['duration'], float)
        assert 'remote_ip' not in row
        assert row['status_class'] == f'{str(row["status_code"])[0]}xx'

    plain = one('/', 200)
    assert plain['handler'] == 'integrations.tornado_app.IndexHandler' or (
        plain['handler'] == '__main__.IndexHandler'
    )
    assert plain['content_length'] == len(responses['plain'].content)
    assert plain.get('error') is None

    item = one('/items/(?P<item_id>\\d+)', 200)
    assert item['item_id'] == 42
    assert item['content_length'] == len(responses['path parameter'].content)

    user = one('/api/users/(\\d+)', 200)
    assert str(user['handler']).endswith('.UserHandler')

    stats = one('/stats', 200)
    assert str(stats['handler']).endswith('.StatsHandler')

    teapot = one('/teapot', 418)
    assert teapot['status_class'] == '4xx'
    assert teapot.get('error') is None

    error = one('/error', 500)
    assert error['error'] == 'builtins.ValueError'
    assert error['content_length'] == len(responses['error'].content)

    stream = one('/stream', 200)
    assert stream['content_length'] == len(responses['stream'].content) == 24
    assert isinstance(stream['duration'], float)
    assert stream['duration'] >= 0.2  # three chunks, 0.1 s apart

    unrouted = one('<unmatched>', 404)
    assert unrouted['handler'] == 'sprockets_influxdb.tornado.NotFoundHandler'

    method = one('<unmatched>', 405, 'POST')
    assert method['status_class'] == '4xx'


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
