"""No client can grow an application's memory or its series.

Each example application is served by its real server and sent 10,000
requests with distinct random methods after 10,000 ``GET``s: the methods
become one ``method`` value, ``_OTHER``, and the server process's memory
stays where the ``GET``s left it.  The figures are printed (``pytest -s``).
"""

from __future__ import annotations

import http.client
import random
import string
import subprocess
import sys
import textwrap
import typing

import pytest

from tests.helpers import clean_environment
from tests.integrations.apps import AppServer
from tests.servers import InfluxServer

REQUESTS = 10_000
# Distinct methods of 2,000 characters, or as long as the server takes:
# gunicorn answers 400 itself to a method of more than 20 letters.
METHOD_LENGTHS = {'uvicorn': 2000, 'tornado': 2000, 'gunicorn': 20}
MEBIBYTE = 1024 * 1024


def resident(pid: int) -> int:
    """The resident memory of a process, in bytes."""
    with open(f'/proc/{pid}/status', encoding='ascii') as status:
        for line in status:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    raise AssertionError(f'no VmRSS for {pid}')


def send(port: int, methods: typing.Iterable[str], path: str) -> int:
    """Send one request per method, a connection at a time; count them."""
    answered = 0
    connection: http.client.HTTPConnection | None = None
    for method in methods:
        for attempt in range(2):
            if connection is None:
                connection = http.client.HTTPConnection(
                    '127.0.0.1', port, timeout=30
                )
            try:
                connection.request(method, path)
                response = connection.getresponse()
                response.read()
            except (http.client.RemoteDisconnected, ConnectionError):
                # The server closed the connection after the last response.
                connection.close()
                connection = None
                if attempt:
                    raise
                continue
            answered += 1
            if response.getheader('connection', '').lower() == 'close':
                connection.close()
                connection = None
            break
    if connection is not None:
        connection.close()
    return answered


def random_methods(count: int, length: int) -> list[str]:
    rng = random.Random(2024)
    letters = string.ascii_uppercase
    return [''.join(rng.choices(letters, k=length)) for _ in range(count)]


SERVERS = {
    'uvicorn': (
        [
            '{python}',
            '-m',
            'uvicorn',
            'integrations.fastapi_app:app',
            '--port',
            '{port}',
            '--log-level',
            'error',
            # httptools, uvicorn's parser when it is installed (the bench
            # extra installs it), answers 400 to such methods itself:
            # they would never reach the application.
            '--http',
            'h11',
        ],
        'fastapi',
    ),
    'gunicorn': (
        [
            '{python}',
            'integrations/flask_app.py',
            '--port',
            '{port}',
            '--workers',
            '1',
        ],
        'flask',
    ),
    'tornado': (
        ['{python}', 'integrations/tornado_app.py', '--port', '{port}'],
        'tornado',
    ),
}


def serving_pid(app: AppServer, server: str) -> int:
    if server != 'gunicorn':
        return app.process.pid
    # The worker serves, not the master.
    result = subprocess.run(
        ['pgrep', '-P', str(app.process.pid)],
        capture_output=True,
        text=True,
        check=False,
    )
    (worker,) = result.stdout.split()
    return int(worker)


@pytest.mark.parametrize('server', sorted(SERVERS))
def test_random_methods_make_one_series_and_no_memory(
    influxdb: InfluxServer, server: str
) -> None:
    command, database = SERVERS[server]
    influxdb.create_database(database)
    app = AppServer(command, influxdb, database, env={'SERVICE': 'shop'})
    try:
        pid = serving_pid(app, server)
        assert send(app.port, ['GET'] * REQUESTS, '/items/1') == REQUESTS
        after_gets = resident(pid)
        methods = random_methods(REQUESTS, METHOD_LENGTHS[server])
        answered = send(app.port, methods, '/items/1')
        after_methods = resident(pid)
    finally:
        output = app.stop()
    growth = after_methods - after_gets
    print(
        f'\n{server}: {after_gets / MEBIBYTE:.1f} MiB after {REQUESTS} GETs, '
        f'{after_methods / MEBIBYTE:.1f} MiB after {answered} random '
        f'methods of {METHOD_LENGTHS[server]} characters '
        f'({growth / MEBIBYTE:+.1f} '
        'MiB)'
    )
    assert answered == REQUESTS
    payload = influxdb.query(
        'SHOW TAG VALUES FROM shop WITH KEY = "method"', database
    )
    values = {row[1] for row in payload['results'][0]['series'][0]['values']}
    assert values == {'GET', '_OTHER'}, output
    assert growth < 10 * MEBIBYTE


MOUNTED = """
    import os, sys, anyio
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route
    from sprockets_influxdb.asgi import InfluxDBMiddleware
    from sprockets_influxdb.testing import MemoryClient

    async def profile(request):
        return PlainTextResponse('ok')

    memory = MemoryClient()
    app = Starlette(routes=[
        Mount('/users/{uid}', routes=[Route('/profile', profile)]),
    ])
    length, middleware = int(sys.argv[1]), sys.argv[2] == 'with'
    if middleware:
        app = InfluxDBMiddleware(app, database='db', client=memory)

    async def receive():
        return {'type': 'http.request', 'body': b''}

    async def main():
        # As a server calls the application.
        for index in range(4000):
            path = f'/users/{str(index).rjust(length, "0")}/profile'
            sent = []

            async def send(message):
                sent.append(message)

            scope = {
                'type': 'http', 'asgi': {'version': '3.0'},
                'http_version': '1.1', 'method': 'GET', 'scheme': 'http',
                'path': path, 'raw_path': path.encode(), 'root_path': '',
                'query_string': b'', 'headers': [],
                'server': ('x', 80), 'client': ('y', 1234),
            }
            await app(scope, receive, send)
            assert sent[0]['status'] == 200
            memory.clear()  # what was recorded is not what is measured
        if middleware:
            assert memory.stats().written == 4000

    anyio.run(main)
    with open(f'/proc/{os.getpid()}/status') as status:
        rss = [line for line in status if line.startswith('VmRSS:')]
    print(int(rss[0].split()[1]) * 1024)
"""


def test_raw_path_parameters_of_mounts_do_not_grow_the_route_cache() -> None:
    """4,000 distinct 60 KB ids through ``Mount('/users/{uid}')``: the
    middleware takes no more memory than with short ids.

    Starlette itself takes more memory with long paths, so what is compared
    is the memory of the application served with the middleware less the
    same application served without it.
    """
    memory = {}
    for length in (8, 60_000):
        for middleware in ('with', 'without'):
            result = subprocess.run(
                [
                    sys.executable,
                    '-c',
                    textwrap.dedent(MOUNTED),
                    str(length),
                    middleware,
                ],
                env=clean_environment(),
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            memory[length, middleware] = int(result.stdout)
    taken = {
        length: memory[length, 'with'] - memory[length, 'without']
        for length in (8, 60_000)
    }
    print(
        f'\nMount: the middleware takes {taken[8] / MEBIBYTE:+.1f} MiB with '
        f'short ids, {taken[60_000] / MEBIBYTE:+.1f} MiB with 60 KB ids '
        f'(the application: {memory[8, "without"] / MEBIBYTE:.1f} and '
        f'{memory[60_000, "without"] / MEBIBYTE:.1f} MiB)'
    )
    assert taken[60_000] - taken[8] < 10 * MEBIBYTE
