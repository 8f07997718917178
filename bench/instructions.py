"""Instructions per request of each integration, counted by callgrind.

A profiling aid, not one of ``bench/run``'s benchmarks: on a shared
machine, wall-clock timings of a few microseconds are noise, while the
number of instructions a request executes is the same from run to run.

For each framework and contender (the applications of
``bench/_served_app.py``: ``GET /items/42``, bare or with this library's
integration), the script runs a child process under ``valgrind
--tool=callgrind`` twice, serving *N* and then *2N* requests in-process
(Tornado: its HTTP server and a keep-alive client on loopback in one event
loop; Starlette and FastAPI: the ASGI callable awaited directly; Flask: the
WSGI callable called directly), and divides the difference of the two
instruction counts by *N*: start-up and import cost cancel out.  The
library's client is pointed at an unreachable address with a huge
interval, trigger size and buffer: nothing is written, so what is counted
is the request path, the writer thread's work apart (the buffer is emptied
every 100 requests, as the writer would, so that it does not grow).  The
contender ``ours+writer`` counts the writer's work on each point too, its
HTTP exchange apart: every 100 requests what was buffered is taken,
encoded and joined into a body, as the writer does.  For Tornado, 2.2.1's
mixin (``historical``) is counted as well: it encodes each point on the
request's thread, so it compares with ``ours+writer``.

The children run with address-space randomization off (``setarch -R``,
when util-linux has it): with it on, the same run moves by a few thousand
instructions per request from one start to the next, as hash tables and
allocations land differently.  ``--functions K`` also prints, for each
contender against ``bare``, the *K* functions whose own instructions per
request grew most (and those that shrank most), from ``callgrind_annotate``
of the same runs: where the added instructions are.

.. code-block:: console

   $ python bench/instructions.py                      # every framework
   $ python bench/instructions.py --only tornado -n 1000
   $ python bench/instructions.py --only flask --functions 25

Needs valgrind (Debian: ``apt-get install valgrind``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

FRAMEWORKS = ('tornado', 'starlette', 'fastapi', 'flask')
BATCH = 100  # requests between two emptyings of the client's buffer


def drain() -> None:
    """Empty the default client's buffer, as its writer would.

    Nothing is delivered here: without this the buffer would grow with the
    requests, and the garbage collector's work with it.
    """
    module = sys.modules.get('sprockets_influxdb')
    client = getattr(module, '_default', None)
    if client is None:
        return
    if os.environ.get(ENCODE) != '1':
        client._buffer.clear()
        return
    # The writer's work per point, its HTTP exchange apart: take what is
    # buffered, encode it a slice at a time and join each database's lines
    # into a body (what a batch of the default trigger size costs a point).
    from sprockets_influxdb.writer import _body

    writer = client._writer
    settings = client.settings
    writer._take_buffer(settings)
    while writer._encode_slice(settings):
        pass
    for target in writer._targets.values():
        _body(list(target.lines))
        target.lines.clear()
        target.sequences.clear()
    client._counters.backlog = 0


PATH = '/items/42'
HUGE = str(10**9)
# Set in the child counting ``ours+writer``: drain() encodes.
ENCODE = 'INSTRUCTIONS_ENCODE'


def serve_tornado(warm_up: int, number: int) -> None:
    """Serve *warm_up*, then *number* requests over loopback in one loop."""
    import _served_app
    from tornado import httpserver, netutil, web

    handler = _served_app.tornado_handler()
    application = web.Application(
        [(r'/items/(?P<item_id>\d+)', handler)], **_served_app.SETTINGS
    )
    request = (
        f'GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: b\r\n\r\n'
    ).encode()

    async def main() -> None:
        sockets = netutil.bind_sockets(0, '127.0.0.1')
        server = httpserver.HTTPServer(application)
        server.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection('127.0.0.1', port)

        async def serve(count: int) -> None:
            for index in range(count):
                if index % BATCH == 0:
                    drain()
                writer.write(request)
                head = await reader.readuntil(b'\r\n\r\n')
                start = head.lower().index(b'content-length:') + 15
                length = int(head[start : head.index(b'\r\n', start)])
                await reader.readexactly(length)

        await serve(warm_up)
        gc.collect()
        gc.freeze()
        await serve(number)
        writer.close()
        server.stop()

    asyncio.run(main())


def serve_asgi(app: Any, number: int) -> None:
    """Await the ASGI application *number* times."""
    scope = {
        'type': 'http',
        'asgi': {'version': '3.0', 'spec_version': '2.3'},
        'http_version': '1.1',
        'method': 'GET',
        'scheme': 'http',
        'path': PATH,
        'raw_path': PATH.encode(),
        'root_path': '',
        'query_string': b'',
        'headers': [(b'host', b'127.0.0.1:8000'), (b'user-agent', b'b')],
        'client': ('127.0.0.1', 50000),
        'server': ('127.0.0.1', 8000),
    }
    message = {'type': 'http.request', 'body': b'', 'more_body': False}

    async def receive() -> dict[str, Any]:
        return message

    async def send(message: Any) -> None:
        if message['type'] == 'http.response.start':
            assert message['status'] == 200, message

    async def main() -> None:
        for index in range(number):
            if index % BATCH == 0:
                drain()
            request = scope.copy()
            request['state'] = {}
            await app(request, receive, send)

    asyncio.run(main())


def serve_wsgi(app: Any, number: int) -> None:
    """Call the WSGI application *number* times, as a server does."""
    environ = {
        'REQUEST_METHOD': 'GET',
        'SCRIPT_NAME': '',
        'PATH_INFO': PATH,
        'QUERY_STRING': '',
        'SERVER_NAME': '127.0.0.1',
        'SERVER_PORT': '8000',
        'SERVER_PROTOCOL': 'HTTP/1.1',
        'REMOTE_ADDR': '127.0.0.1',
        'HTTP_HOST': '127.0.0.1:8000',
        'wsgi.version': (1, 0),
        'wsgi.url_scheme': 'http',
        'wsgi.input': io.BytesIO(b''),
        'wsgi.errors': sys.stderr,
        'wsgi.multithread': False,
        'wsgi.multiprocess': False,
        'wsgi.run_once': False,
    }

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        assert status.startswith('200'), status
        return None

    for index in range(number):
        if index % BATCH == 0:
            drain()
        body = app(environ.copy(), start_response)
        for _chunk in body:
            pass
        close = getattr(body, 'close', None)
        if close is not None:
            close()


def child(framework: str, number: int) -> None:
    """Serve *number* requests (the process valgrind runs).

    After 200 requests of warm-up, the objects made so far are frozen out
    of the garbage collector's reach (:func:`gc.freeze`): a full collection
    then walks only what the requests left, not every imported module, so
    that its cost does not fall in one of the two runs and not the other.
    """
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if framework == 'tornado':
        serve_tornado(200, number)
        return
    import _served_app

    serve = serve_wsgi if framework == 'flask' else serve_asgi
    serve(_served_app.app, 200)
    gc.collect()
    gc.freeze()
    serve(_served_app.app, number)


def own_costs(out: str) -> dict[str, int]:
    """Each function's own instructions in the callgrind file *out*."""
    done = subprocess.run(
        ['callgrind_annotate', '--auto=no', '--threshold=100', out],
        capture_output=True,
        text=True,
        check=True,
    )
    costs: dict[str, int] = {}
    for line in done.stdout.splitlines():
        found = re.match(
            r'\s*([\d,]+) \([ \d.]+%\)\s+(\S.*?)(?: \[.*)?$', line
        )
        if found is None or '=>' in line or 'PROGRAM TOTALS' in line:
            continue
        # Paths shortened to what follows the CPython source tree.
        name = re.sub(r'^.*/Python-3[.\d]*/', '', found.group(2))
        costs[name] = costs.get(name, 0) + int(found.group(1).replace(',', ''))
    return costs


def count(
    framework: str,
    contender: str,
    number: int,
    functions: dict[str, int] | None = None,
) -> int:
    """Instructions of a child serving *number* requests (each function's
    own, into *functions* when given)."""
    env = dict(
        os.environ,
        SERVED_FRAMEWORK=framework,
        SERVED_CONTENDER=contender.removesuffix('+writer'),
        INFLUXDB_URL='http://127.0.0.1:9',
        INFLUXDB_INTERVAL=HUGE,
        INFLUXDB_TRIGGER_SIZE=HUGE,
        INFLUXDB_MAX_BUFFER_SIZE=HUGE,
        INFLUXDB_SHUTDOWN_TIMEOUT='0',
        PYTHONHASHSEED='0',
    )
    if contender.endswith('+writer'):
        env[ENCODE] = '1'
    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, 'callgrind.out')
        aslr_off = ['setarch', '-R'] if shutil.which('setarch') else []
        done = subprocess.run(
            [
                *aslr_off,
                'valgrind',
                '--tool=callgrind',
                f'--callgrind-out-file={out}',
                sys.executable,
                os.path.abspath(__file__),
                '--child',
                framework,
                str(number),
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        found = re.search(r'Collected : (\d+)', done.stderr)
        if found is None:
            raise SystemExit(done.stderr[-3000:])
        if functions is not None:
            functions.update(own_costs(out))
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-n', '--number', type=int, default=1000)
    parser.add_argument('--only', action='append', default=[])
    parser.add_argument(
        '--contenders',
        help='default: bare,ours, and for Tornado ours+writer (the '
        "writer's encoding of each point counted too) and historical "
        "(2.2.1's mixin, when bench/run installed it)",
    )
    parser.add_argument(
        '--functions',
        type=int,
        default=0,
        metavar='K',
        help='the K functions whose own instructions grew most, and '
        "shrank most, over bare's",
    )
    parser.add_argument('--child', nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    if shutil.which('valgrind') is None:
        raise SystemExit('valgrind is missing (apt-get install valgrind)')
    frameworks = [
        name for value in args.only for name in value.split(',') if name
    ] or list(FRAMEWORKS)
    number = args.number
    for framework in frameworks:
        contenders = contenders_of(framework, args.contenders)
        per_request = {}
        by_function: dict[str, dict[str, float]] = {}
        for contender in contenders:
            few: dict[str, int] = {}
            many: dict[str, int] = {}
            wanted = args.functions > 0
            small = count(
                framework, contender, number, few if wanted else None
            )
            large = count(
                framework, contender, 2 * number, many if wanted else None
            )
            per_request[contender] = (large - small) / number
            by_function[contender] = {
                name: (many.get(name, 0) - few.get(name, 0)) / number
                for name in set(few) | set(many)
            }
        line = ', '.join(
            f'{name} {value:,.0f}' for name, value in per_request.items()
        )
        bare = per_request.get('bare')
        extra = ''
        if bare is not None:
            extra = '; added: ' + ', '.join(
                f'{name} {value - bare:+,.0f}'
                for name, value in per_request.items()
                if name != 'bare'
            )
        ours = per_request.get('ours+writer', per_request.get('ours'))
        historical = per_request.get('historical')
        if bare is not None and ours is not None and historical is not None:
            ratio = (historical - bare) / max(ours - bare, 1.0)
            extra += f' (historical/ours: {ratio:.1f}x)'
        print(f'{framework}: instructions per request: {line}{extra}')
        if args.functions and 'bare' in by_function:
            print_functions(by_function, args.functions)


def print_functions(by_function: dict[str, dict[str, float]], k: int) -> None:
    """Per contender, the *k* functions whose own instructions per request
    grew most over bare's, and the *k* that shrank most."""
    bare = by_function['bare']
    for contender, costs in by_function.items():
        if contender == 'bare':
            continue
        added = sorted(
            (
                (costs.get(name, 0.0) - bare.get(name, 0.0), name)
                for name in set(costs) | set(bare)
            ),
            reverse=True,
        )
        print(f'  {contender}: own instructions per request over bare')
        for index, (value, name) in enumerate(added):
            if index == k and len(added) > 2 * k:
                print('    ...')
            if (index < k or index >= len(added) - k) and abs(value) >= 1:
                print(f'    {value:+9,.0f}  {name}')


def contenders_of(framework: str, asked: str | None) -> list[str]:
    """The contenders to count for *framework*.

    :param asked: the ``--contenders`` option, if given
    """
    if asked:
        return asked.split(',')
    from _common import HISTORICAL_PATH

    if framework == 'tornado' and HISTORICAL_PATH.is_file():
        # 2.2.1's mixin encodes each point on the request's thread, ours in
        # the writer's: compared with ours+writer.
        return ['bare', 'ours', 'ours+writer', 'historical']
    return ['bare', 'ours']


if __name__ == '__main__':
    main()
