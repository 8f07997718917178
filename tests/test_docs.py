"""Every code example of the documentation runs, as its reader would.

Each Python example of ``docs/`` has a harness here: complete programs run
as they are, against a real InfluxDB; fragments run after a prelude that
defines what the surrounding text assumes (an ``app``, the ``routes``),
followed by an epilogue that drives them the way the text says (a request
through the application) and checks what was recorded.  The examples of
the testing page are test modules: pytest runs them.  A new example
without a harness fails :func:`test_every_example_has_a_harness`.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import sys
import textwrap
import typing

import pytest

from tests.docs import code_blocks
from tests.helpers import ROOT, clean_environment
from tests.servers import InfluxServer, free_port


class Harness(typing.NamedTuple):
    """How to run one example: ``prelude + example + epilogue``."""

    #: Text the example contains (so that a harness follows its example).
    contains: str
    prelude: str = ''
    epilogue: str = ''
    #: Where the example is run instead, when it is not run here.
    elsewhere: str = ''
    #: ``(database, measurement, points)`` stored once the example ended.
    stored: tuple[str, str, int] | None = None


# Epilogues: drive an application the example built, under capture().
ASGI_REQUEST = """
from starlette.testclient import TestClient
from sprockets_influxdb.testing import capture

with capture() as recorded, TestClient(app) as client:
    assert client.get('{path}').status_code == {status}
(measurement,) = recorded.measurements
assert measurement.tags['endpoint'] == '{endpoint}', measurement.tags
"""

WSGI_REQUEST = """
from werkzeug.test import Client as TestClient
from sprockets_influxdb.testing import capture

with capture() as recorded:
    response = TestClient({app}).get('{path}')
    assert response.status_code == {status}, response.status
(measurement,) = recorded.measurements
assert measurement.tags['endpoint'] == '{endpoint}', measurement.tags
"""

TORNADO_REQUEST = """
import asyncio
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from sprockets_influxdb.testing import capture


async def fetch_all():
    port = {port}
    {app}.listen(port, '127.0.0.1')
    codes = []
    for path in {paths!r}:
        try:
            response = await AsyncHTTPClient().fetch(
                f'http://127.0.0.1:{{port}}{{path}}')
            codes.append(response.code)
        except HTTPClientError as error:
            codes.append(error.code)
    return codes

with capture() as recorded:
    codes = asyncio.run(fetch_all())
endpoints = [m.tags['endpoint'] for m in recorded.measurements]
"""

FLASK_APP = """
from flask import Flask

app = Flask(__name__)


@app.get('/')
def home():
    return 'ok'
"""

FASTAPI_APP = """
from fastapi import FastAPI, Request

from sprockets_influxdb.asgi import InfluxDBMiddleware

app = FastAPI()
app.add_middleware(InfluxDBMiddleware, database='example')
"""

SEARCH_INDEX = """
class Results(list):
    cached = True

    def page(self, number):
        return {'page': number, 'results': list(self)}


class Index:
    def search(self, q):
        return Results([q, q])


class AsyncIndex:
    async def search(self, q):
        return Results([q, q])
"""


# The servers page: each server's ``install(...)`` gives the settings its
# ``export`` lines give, and sends the request that server expects.
SAME_AS_VARIABLES = """
from sprockets_influxdb import Settings

settings = influxdb.default_client().settings
expected = Settings.resolve(environ={variables!r})
for name in ('url', 'api', 'username', 'password', 'token', 'org', 'bucket',
             'precision', 'accept_partial', 'no_sync'):
    assert getattr(settings, name) == getattr(expected, name), name
"""

REQUEST_SENT = """
from tests.servers import FaultServer

with FaultServer() as server:
    influxdb.default_client().configure(url=server.url + '{prefix}')
    measurement = influxdb.Measurement('example', 'cpu')
    measurement.set_field('usage', 0.5)
    influxdb.add_measurement(measurement)
    assert influxdb.flush(timeout=10).result()
    (request,) = server.requests
assert request.path == '{path}', request.path
assert request.query == {query!r}, request.query
scheme = request.headers.get('authorization', '').split(' ')[0]
assert scheme == '{scheme}', scheme
"""

VICTORIA_STORED = """
from tests.servers import VictoriaServer

with VictoriaServer() as victoria:
    influxdb.default_client().configure(url=victoria.url)
    measurement = influxdb.Measurement('app', 'http')
    measurement.set_tag('host', 'a')
    measurement.set_field('duration', 0.25)
    measurement.set_field('status', 200)
    influxdb.add_measurement(measurement)
    assert influxdb.flush(timeout=10).result()
    found = victoria.series('{db="app"}')
assert [(s.name, s.labels['host'], s.values) for s in found] == [
    ('http_duration', 'a', [0.25]),
    ('http_status', 'a', [200.0]),
], found
"""


def _server(
    index: int, contains: str, prelude: str = '', **request: object
) -> Harness:
    """The harness of the servers page's *index*-th ``install(...)``.

    :param request: ``prefix``, ``path``, ``query`` and ``scheme`` of the
        request it sends; without them, it writes to VictoriaMetrics
    """
    block = code_blocks('servers.rst', 'console')[index]
    variables = dict(
        line.removeprefix('$ export ').split('=', 1)
        for line in block.splitlines()
        if line.startswith('$ export ')
    )
    epilogue = SAME_AS_VARIABLES.format(variables=variables)
    if request:
        epilogue += REQUEST_SENT.format(**request)
    else:
        epilogue += VICTORIA_STORED
    return Harness(contains, prelude=prelude, epilogue=epilogue)


V2_QUERY = {'org': 'acme', 'bucket': 'metrics', 'precision': 'ns'}


def _home_route(kind: str) -> str:
    if kind == 'fastapi':
        return "\n@app.get('/')\nasync def home():\n    return 'ok'\n"
    return "\n@app.get('/')\ndef home():\n    return 'ok'\n"


# A gunicorn --preload worker: the library made first, then the worker's
# handlers, then the hook of gunicorn.conf.py (the example) runs.
WORKER_HANDLERS = """
import signal
import sprockets_influxdb as influxdb
influxdb.install()
ran = []
signal.signal(signal.SIGTERM, lambda signum, frame: ran.append(signum))
"""
STOP_SIGNAL_DELIVERS = """
import threading
import time
measurement = influxdb.Measurement('example', 'worker')
measurement.set_field('n', 1)
threading.Thread(target=influxdb.add_measurement, args=(measurement,)).start()
post_worker_init(None)
time.sleep(0.2)
assert influxdb.stats().written == 0
signal.raise_signal(signal.SIGTERM)
assert ran == [signal.SIGTERM]
deadline = time.monotonic() + 10
while influxdb.stats().written == 0 and time.monotonic() < deadline:
    time.sleep(0.01)
assert influxdb.stats().written == 1
"""


HARNESSES: dict[str, list[Harness]] = {
    'benchmarks.rst': [
        Harness(
            '_speedups.encode_slice(values',
            # What it timed encodes every point as Python does.
            epilogue="outputs = {'db': [[], [], {}]}\n"
            'assert _speedups.encode_slice(\n'
            "    values, 0, len(values), 'n', None, outputs\n"
            ') == len(values)\n'
            "assert outputs['db'][1][0] == line_protocol.encode_python(\n"
            "    'request', tags, values[4], values[5], 'n', {}\n"
            '), outputs\n',
        ),
    ],
    'api.rst': [
        Harness(
            'web.Application(routes',
            prelude='from tornado import web\n'
            'from sprockets_influxdb import REQUEST_DATABASE\n'
            'routes = []\n',
        ),
    ],
    'asgi.rst': [
        Harness(
            'app.add_middleware(InfluxDBMiddleware',
            epilogue=_home_route('fastapi')
            + ASGI_REQUEST.format(path='/', status=200, endpoint='/'),
        ),
        Harness(
            'middleware=[Middleware(InfluxDBMiddleware',
            prelude='from starlette.responses import PlainTextResponse\n'
            'from starlette.routing import Route\n\n'
            'async def home(request):\n'
            "    return PlainTextResponse('ok')\n\n"
            "routes = [Route('/', home)]\n",
            epilogue=ASGI_REQUEST.format(path='/', status=200, endpoint='/'),
        ),
        Harness(
            'app = InfluxDBMiddleware(app',
            prelude='from starlette.applications import Starlette\n'
            'from starlette.responses import PlainTextResponse\n'
            'from starlette.routing import Route\n'
            'from sprockets_influxdb.asgi import InfluxDBMiddleware\n\n'
            'async def home(request):\n'
            "    return PlainTextResponse('ok')\n\n"
            "app = Starlette(routes=[Route('/', home)])\n",
            epilogue=ASGI_REQUEST.format(path='/', status=200, endpoint='/'),
        ),
        Harness(
            'request.state.influxdb.set_field',
            prelude=FASTAPI_APP,
            epilogue=ASGI_REQUEST.format(
                path='/items/3', status=200, endpoint='/items/{item_id}'
            )
            + "assert measurement.fields['item_id'] == 3\n",
        ),
        Harness(
            "metrics = influxdb.Client('http://metrics.example.com:8086'",
            prelude='from fastapi import FastAPI\n'
            'from sprockets_influxdb.asgi import InfluxDBMiddleware\n'
            'app = FastAPI()\n',
            epilogue=_home_route('fastapi')
            + 'from starlette.testclient import TestClient\n'
            'with TestClient(app) as client:\n'
            "    assert client.get('/').status_code == 200\n"
            'assert metrics.stats().added == 1\n'
            'assert metrics.stats().buffered == 1  # no such host\n',
        ),
        Harness(
            "@app.get('/search')",
            prelude=FASTAPI_APP + SEARCH_INDEX + 'index = AsyncIndex()\n',
            epilogue=ASGI_REQUEST.format(
                path='/search?q=x', status=200, endpoint='/search'
            )
            + "assert measurement.tags['cache'] == 'hit'\n"
            "assert measurement.fields['results'] == 2\n",
        ),
        Harness(
            "if scope['type'] == 'lifespan':",
            epilogue='from starlette.testclient import TestClient\n'
            'from sprockets_influxdb.asgi import InfluxDBMiddleware\n'
            "with TestClient(InfluxDBMiddleware(app, database='db')):\n"
            '    pass  # the lifespan starts and ends\n',
        ),
    ],
    'gunicorn.rst': [
        Harness(
            'import post_worker_init',
            prelude=WORKER_HANDLERS,
            epilogue=STOP_SIGNAL_DELIVERS,
            stored=('example', 'worker', 1),
        ),
    ],
    'https.rst': [
        Harness(
            'ssl_context=context',
            elsewhere='tests/test_tls.py::test_the_documented_ssl_context',
        ),
    ],
    'shutdown.rst': [
        Harness(
            'delivered = influxdb.flush().result()',
            prelude='import asyncio\n'
            'from tornado import gen, ioloop\n'
            'import sprockets_influxdb as influxdb\n',
            epilogue='assert delivered is True\n'
            'assert asyncio.run(deliver()) is True\n'
            'assert ioloop.IOLoop.current().run_sync(deliver_the_old_way)\n',
        ),
    ],
    'index.rst': [
        Harness(
            "influxdb.install(base_tags={'service': 'billing'})",
            prelude='import time\n\ndef run_query():\n    time.sleep(0.001)\n',
            epilogue='assert influxdb.stats().written == 1\n',
        ),
        Harness(
            'delivered = influxdb.flush(timeout=10).result()',
            prelude='import asyncio\nimport sprockets_influxdb as influxdb\n',
            epilogue='assert delivered is True\n'
            'assert asyncio.run(deliver()) is True\n',
        ),
        Harness(
            'influxdb.install(io_loop=io_loop)',
            # Delivered as the interpreter exits, the loop being stopped.
            stored=('example', 'measurement-name', 1),
        ),
        Harness(
            'class RequestHandler(influxdb.InfluxDBMixin',
            epilogue=TORNADO_REQUEST.format(
                app='application', port='{port}', paths=['/']
            )
            + "assert codes == [200] and endpoints == ['/']\n"
            "assert recorded.measurements[0].name == 'example'\n",
        ),
        Harness(
            'app.add_middleware(InfluxDBMiddleware',
            epilogue=_home_route('fastapi')
            + ASGI_REQUEST.format(path='/', status=200, endpoint='/'),
        ),
        Harness(
            'app.wsgi_app = InfluxDBMiddleware(app.wsgi_app',
            epilogue=_home_route('flask')
            + WSGI_REQUEST.format(
                app='app', path='/', status=200, endpoint='/'
            ),
        ),
        Harness(
            "audit = influxdb.Client('https://audit.example.com:8086'",
            prelude='import sprockets_influxdb as influxdb\n'
            "secret = 's3cret'\n"
            "measurement = influxdb.Measurement('audit', 'login')\n"
            "measurement.set_field('user', 'alice')\n",
            epilogue="assert audit.stats().dropped['shutdown'] == 1\n",
        ),
    ],
    'line-protocol.rst': [
        Harness(
            "influxdb.Measurement('example', 'http request')",
            prelude='import sprockets_influxdb as influxdb\n'
            "influxdb.install(tag_hostname=False, environment='')\n",
            epilogue='assert measurement.marshall() == (\n'
            r"    'http\\ request,method=GET,status_code=200 duration=0.0123,'"
            '\n'
            "    'content_length=512i,cached=false 1700000000123'\n"
            ')\n',
        ),
    ],
    'quickstart.rst': [
        Harness(caption_contains, elsewhere='tests/test_quickstart.py')
        for caption_contains in (
            'class Hello(influxdb.InfluxDBMixin',
            'app.add_middleware(InfluxDBMiddleware',
            'app.wsgi_app = InfluxDBMiddleware',
        )
    ],
    'reliability.rst': [
        Harness(
            'def log_stats(interval=60.0):',
            epilogue='assert influxdb.stats().written == 0\n',
        ),
        Harness(
            'async def influxdb_health(request):',
            epilogue="""
from starlette.testclient import TestClient

with TestClient(app) as client:
    response = client.get('/health/influxdb')
    assert response.status_code == 200, response.text
    assert response.json()['buffered'] == 0, response.json()
    assert client.get('/health/nothing').status_code == 404
assert influxdb.stats().added == 0
""",
        ),
    ],
    'request-metrics.rst': [
        Harness(
            'class ItemHandler(influxdb.InfluxDBMixin',
            prelude='from tornado import web\n'
            'import sprockets_influxdb as influxdb\n'
            'cached = False\n\n'
            'async def load(item_id):\n'
            "    return {'item_id': int(item_id)}\n",
            epilogue='application = web.Application(\n'
            r"    [(r'/items/(\d+)', ItemHandler)],"
            '\n'
            "    **{influxdb.REQUEST_DATABASE: 'shop'})\n"
            + TORNADO_REQUEST.format(
                app='application', port='{port}', paths=['/items/3']
            )
            + 'assert codes == [200]\n'
            '(measurement,) = recorded.measurements\n'
            "assert measurement.tags['cache'] == 'miss'\n"
            "assert measurement.fields['item_id'] == 3\n"
            "assert measurement.fields['db_time'] >= 0\n",
        ),
        Harness(
            "recorder = RequestRecorder('example', 'shop'",
            prelude=textwrap.dedent(
                """
                class Route:
                    template = '/items/{id}'
                    view_name = 'shop.views.item'


                class Response:
                    status = 200


                class App:
                    def match(self, request):
                        return Route() if request.path != '/nope' else None

                    def handle(self, request, route=None):
                        if route is None:
                            return Response()
                        request.influxdb.set_field('seen', True)
                        return Response()


                class Server:
                    body_bytes_sent = 0

                    def send(self, response):
                        self.body_bytes_sent = 12


                class Request:
                    method = 'GET'

                    def __init__(self, path):
                        self.path = path


                app, server = App(), Server()
                """
            ),
            epilogue='from sprockets_influxdb.testing import capture\n'
            'with capture() as recorded:\n'
            "    for path in ('/items/1', '/health', '/nope'):\n"
            '        serve(Request(path))\n'
            "assert [(m.tags['endpoint'], m.fields['content_length'])\n"
            '        for m in recorded.measurements] == [\n'
            "    ('/items/{id}', 12), ('<unmatched>', 12)]\n",
        ),
    ],
    'testing.rst': [
        Harness('def test_an_item_is_recorded(influxdb_capture)'),
        Harness('async def test_an_unknown_page_is_recorded'),
        Harness('class ItemTest(testing.AsyncHTTPTestCase)'),
        Harness('def test_the_request_is_stored()'),
        Harness('class MockedTest(testing.AsyncHTTPTestCase)'),
    ],
    'tornado.rst': [
        Harness(
            'class ItemHandler(influxdb.InfluxDBMixin, web.RequestHandler)',
            epilogue=TORNADO_REQUEST.format(
                app='application', port='{port}', paths=['/items/3']
            )
            + 'assert codes == [200], codes\n'
            "assert endpoints == [r'/items/(\\d+)'], endpoints\n"
            "assert recorded.measurements[0].database == 'example'\n",
        ),
        Harness(
            'io_loop.asyncio_loop.add_signal_handler(signum, io_loop.stop)',
            elsewhere='tests/integrations/test_tornado.py::'
            'test_the_docs_example_loses_no_request_on_ctrl_c_or_sigterm',
        ),
        Harness(
            'default_handler_class=NotFoundHandler',
            prelude='from tornado import web\n\n'
            'class Home(web.RequestHandler):\n'
            '    def get(self):\n'
            "        self.write('ok')\n\n"
            "routes = [(r'/', Home), (r'/health', Home)]\n",
            epilogue=TORNADO_REQUEST.format(
                app='application',
                port='{port}',
                paths=['/health', '/no/such/page'],
            )
            + 'assert codes == [200, 404], codes\n'
            "assert endpoints == ['<unmatched>'], endpoints\n"
            "assert recorded.measurements[0].database == 'metrics'\n",
        ),
    ],
    # The docstrings the documentation renders.
    'servers.rst': [
        _server(
            0,
            "install('http://influxdb:8086', 'writer', password)",
            prelude="password = 's3cret'\n",
            prefix='',
            path='/write',
            query={'db': 'example', 'precision': 'n'},
            scheme='Basic',
        ),
        _server(
            1,
            "'http://localhost:8086', token=token, org='acme'",
            prelude="token = 'my-token'\n",
            prefix='',
            path='/api/v2/write',
            query=V2_QUERY,
            scheme='Token',
        ),
        _server(
            2,
            "'https://us-east-1-1.aws.cloud2.influxdata.com',",
            prelude="token = 'my-token'\n",
            prefix='',
            path='/api/v2/write',
            query=V2_QUERY,
            scheme='Token',
        ),
        _server(
            3,
            "install('http://localhost:8181/api/v3/write_lp', token=token)",
            prelude="token = 'my-token'\n",
            prefix='',
            path='/api/v3/write_lp',
            query={'db': 'example', 'precision': 'nanosecond'},
            scheme='Bearer',
        ),
        _server(
            4,
            "install('https://cluster-id.a.influxdb.io', token=token)",
            prelude="token = 'my-token'\n",
            prefix='',
            path='/api/v2/write',
            query={'bucket': 'example', 'precision': 'ns'},
            scheme='Token',
        ),
        _server(5, "install('http://victoria:8428')"),
        _server(
            6,
            "install('http://vminsert:8480/insert/0/influx')",
            prefix='/insert/0/influx',
            path='/insert/0/influx/write',
            query={'db': 'example', 'precision': 'n'},
            scheme='',
        ),
    ],
    'sprockets_influxdb/__init__.py': [
        Harness(
            "influxdb.install(base_tags={'service': 'billing'})",
            stored=('example', 'measurement-name', 1),
        ),
    ],
    'sprockets_influxdb/asgi.py': [
        Harness(
            'app.add_middleware(InfluxDBMiddleware',
            epilogue=_home_route('fastapi')
            + ASGI_REQUEST.format(path='/', status=200, endpoint='/'),
        ),
    ],
    'sprockets_influxdb/measurement.py': [
        Harness(
            "influxdb.Measurement('example', 'measurement-name')",
            stored=('example', 'measurement-name', 1),
        ),
        Harness(
            "with measurement.duration('query_time'):",
            prelude='import time\n'
            'import sprockets_influxdb as influxdb\n'
            "measurement = influxdb.Measurement('example', 'query')\n\n"
            'def run_query():\n'
            '    time.sleep(0.01)\n',
            epilogue="assert measurement.fields['query_time'] >= 0.01\n",
        ),
    ],
    'sprockets_influxdb/tornado.py': [
        Harness(
            "self.influxdb.set_tag('customer', 'acme')",
            epilogue=TORNADO_REQUEST.format(
                app='app', port='{port}', paths=['/', '/nowhere']
            )
            + 'assert codes == [200, 404], codes\n'
            "assert endpoints == ['/', '<unmatched>'], endpoints\n"
            "assert recorded.measurements[0].tags['customer'] == 'acme'\n",
        ),
    ],
    'sprockets_influxdb/wsgi.py': [
        Harness(
            'app.wsgi_app = InfluxDBMiddleware(app.wsgi_app',
            epilogue=_home_route('flask')
            + WSGI_REQUEST.format(
                app='app', path='/', status=200, endpoint='/'
            ),
        ),
        Harness(
            'import post_worker_init',
            prelude=WORKER_HANDLERS,
            epilogue=STOP_SIGNAL_DELIVERS,
            stored=('example', 'worker', 1),
        ),
    ],
    'wsgi.rst': [
        Harness(
            'app.wsgi_app = InfluxDBMiddleware(app.wsgi_app',
            epilogue=_home_route('flask')
            + WSGI_REQUEST.format(
                app='app', path='/', status=200, endpoint='/'
            ),
        ),
        Harness(
            "application = InfluxDBMiddleware(app, database='example')",
            prelude=FLASK_APP
            + 'from sprockets_influxdb.wsgi import InfluxDBMiddleware\n',
            epilogue=WSGI_REQUEST.format(
                app='application', path='/', status=200, endpoint='/'
            ),
        ),
        Harness(
            "Rule('/books/<int:book_id>'",
            prelude='from werkzeug.wrappers import Response\n'
            'from sprockets_influxdb.wsgi import InfluxDBMiddleware\n\n'
            'def shop_app(environ, start_response):\n'
            "    return Response('a book')(environ, start_response)\n",
            epilogue=WSGI_REQUEST.format(
                app='application',
                path='/books/3',
                status=200,
                endpoint='/books/<int:book_id>',
            ),
        ),
        Harness(
            "request.environ[ENVIRON_KEY].set_field('item_id', item_id)",
            prelude=FLASK_APP
            + 'from sprockets_influxdb.wsgi import InfluxDBMiddleware\n'
            "app.wsgi_app = InfluxDBMiddleware(app.wsgi_app, database='db')\n",
            epilogue=WSGI_REQUEST.format(
                app='app',
                path='/items/42',
                status=200,
                endpoint='/items/<int:item_id>',
            )
            + "assert measurement.fields['item_id'] == 42\n",
        ),
        Harness(
            'app.wsgi_app = ProxyFix(app.wsgi_app)   # outside it',
            prelude=FLASK_APP
            + 'from werkzeug.middleware.proxy_fix import ProxyFix\n'
            'from sprockets_influxdb.wsgi import InfluxDBMiddleware\n',
            epilogue=WSGI_REQUEST.format(
                app='app', path='/', status=200, endpoint='/'
            ),
        ),
        Harness(
            "application = InfluxDBMiddleware(app, database='example')",
            prelude=FLASK_APP
            + 'from werkzeug.middleware.proxy_fix import ProxyFix\n'
            'from sprockets_influxdb.wsgi import InfluxDBMiddleware\n',
            epilogue=WSGI_REQUEST.format(
                app='application', path='/', status=200, endpoint='/'
            ),
        ),
        Harness(
            "metrics = influxdb.Client('http://metrics.example.com:8086'",
            prelude=FLASK_APP
            + 'from sprockets_influxdb.wsgi import InfluxDBMiddleware\n',
            epilogue='assert app.test_client().get("/").data == b"ok"\n'
            'assert metrics.stats().added == 1\n',
        ),
        Harness(
            "@app.get('/search')",
            prelude=FLASK_APP + SEARCH_INDEX + 'index = Index()\n'
            'from sprockets_influxdb.wsgi import InfluxDBMiddleware\n'
            "app.wsgi_app = InfluxDBMiddleware(app.wsgi_app, database='db')\n",
            epilogue=WSGI_REQUEST.format(
                app='app', path='/search?q=x', status=200, endpoint='/search'
            )
            + "assert measurement.tags['cache'] == 'hit'\n"
            "assert measurement.fields['results'] == 2\n",
        ),
    ],
}

PAGES = sorted(
    name
    for name in os.listdir(os.path.join(ROOT, 'docs'))
    if name.endswith('.rst')
) + sorted(
    f'sprockets_influxdb/{name}'
    for name in os.listdir(os.path.join(ROOT, 'sprockets_influxdb'))
    if name.endswith('.py')
)


def test_every_example_has_a_harness() -> None:
    for page in PAGES:
        blocks = code_blocks(page)
        harnesses = HARNESSES.get(page, [])
        assert len(blocks) == len(harnesses), (
            f'{page} has {len(blocks)} Python examples and '
            f'{len(harnesses)} harnesses in tests/test_docs.py'
        )
        for block, harness in zip(blocks, harnesses):
            assert harness.contains in block, (page, harness.contains)


def environment(influxdb: InfluxServer) -> dict[str, str]:
    return clean_environment(INFLUXDB_URL=influxdb.url)


EXAMPLES = [
    (page, index)
    for page, harnesses in sorted(HARNESSES.items())
    if page != 'testing.rst'
    for index, harness in enumerate(harnesses)
    if not harness.elsewhere
]


@pytest.mark.parametrize(('page', 'index'), EXAMPLES)
def test_the_example_runs(
    influxdb: InfluxServer, page: str, index: int
) -> None:
    for database in ('example', 'db', 'shop', 'metrics', 'audit'):
        influxdb.create_database(database)
    harness = HARNESSES[page][index]
    block = code_blocks(page)[index]
    source = '\n'.join(
        (
            harness.prelude,
            block,
            harness.epilogue.replace('{port}', str(free_port())),
        )
    )
    result = subprocess.run(
        [sys.executable, '-c', source],
        env=environment(influxdb),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f'{source}\n{result.stderr}'
    if harness.stored is not None:
        database, measurement, points = harness.stored
        assert influxdb.count(database, measurement) == points


def test_the_testing_page_examples_pass(
    influxdb: InfluxServer, tmp_path: typing.Any
) -> None:
    """They are test modules: pytest runs them, as their reader would."""
    for index, block in enumerate(code_blocks('testing.rst')):
        (tmp_path / f'test_example_{index}.py').write_text(block)
    result = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider'],
        cwd=tmp_path,
        env=environment(influxdb),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.search(r'\b(\d+) passed\b', result.stdout)
    assert passed is not None, result.stdout
    assert int(passed.group(1)) >= 7, result.stdout


def test_the_configuration_page_shows_the_errors_given() -> None:
    """``>>> install()   # with VARIABLE=value`` and the error it gives."""
    (session,) = code_blocks('configuration.rst', 'pycon')
    lines = session.splitlines()
    calls = [
        (line, lines[number + 1])
        for number, line in enumerate(lines)
        if line.startswith('>>> ')
    ]
    assert len(calls) == 6

    def check(call: tuple[str, str]) -> None:
        line, expected = call
        code, _, comment = line[4:].partition('#')
        environ = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith('INFLUXDB_')
        }
        environ['PYTHONPATH'] = ROOT
        variable = re.fullmatch(r'\s*with (\w+)=(.*)', comment)
        if variable:
            environ[variable.group(1)] = variable.group(2).strip()
        result = subprocess.run(
            [
                sys.executable,
                '-c',
                'from sprockets_influxdb import install\n'
                f'try:\n    {code.strip()}\n'
                'except Exception as error:\n'
                "    print(f'{type(error).__name__}: {error}')\n",
            ],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.stdout.strip() == expected, (line, result.stderr)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(check, calls))


def test_the_readme_example_runs(influxdb: InfluxServer) -> None:
    with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as file:
        readme = file.read()
    (example,) = re.findall(r'```python\n(.*?)```', readme, re.DOTALL)
    influxdb.create_database('example')
    result = subprocess.run(
        [sys.executable, '-c', example],
        env=environment(influxdb),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert influxdb.count('example', 'measurement-name') == 1
