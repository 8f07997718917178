"""Tornado requests of every shape, through the Tornado mixin.

A plain response, a path parameter, a nested router, a host rule, a
streamed response, a response whose handler declares its Content-Length
and writes it in parts, a compressed one, HEAD, 404 through
``NotFoundHandler``, 405, ``HTTPError``, an uncaught exception, a handler
that reads its measurement in ``initialize()`` or tags it, an excluded
path, and the same handler class routed twice.  Served by Tornado's
HTTP server on loopback, asked by its HTTP client.

Used by the test that compares the compiled Tornado record with the pure
Python one (``tests/integrations/test_tornado.py``) and by the one that
runs the compiled record under AddressSanitizer (``tests/test_speedups.py``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any
from unittest.mock import ANY

from tornado import httpclient, httpserver, routing, web

from sprockets_influxdb import REQUEST_DATABASE, InfluxDBMixin
from sprockets_influxdb.tornado import EXCLUDE_PATHS, NotFoundHandler, _Record

Outcome = list[Any]  # [status, body length]

UNMATCHED = '<unmatched>'

#: (method, endpoint, status_code, content_length, error, handler) of each
#: request of REQUESTS that is recorded, in order (ANY: Tornado's own error
#: page, whose text depends on its version).  Each content length is also
#: checked against the body the client received.
EXPECTED = [
    ('GET', '/', '200', 18, None, 'Index'),
    ('GET', '/', '200', 18, None, 'Index'),
    ('HEAD', UNMATCHED, '405', 0, None, None),  # Index has no head()
    ('GET', '/items/([0-9]+)', '200', 12, None, 'Item'),
    ('GET', '/api/users/([0-9]+)', '200', 11, None, 'User'),
    ('GET', '/stream', '200', 44, None, 'Stream'),  # compressed
    ('GET', '/declared', '200', 6, None, 'Declared'),
    ('GET', '/big', '200', 39, None, 'Big'),  # compressed
    ('GET', UNMATCHED, '404', ANY, None, None),
    ('POST', UNMATCHED, '405', ANY, None, None),
    ('GET', '/teapot', '418', ANY, None, 'Teapot'),
    ('GET', '/error', '500', ANY, 'builtins.KeyError', 'Error'),
    ('GET', '/early', '200', 5, None, 'Early'),
    ('GET', '/tagged', '200', 6, None, 'Tagged'),
    ('GET', '/again', '200', 18, None, 'Index'),
    ('GET', '/', '200', 18, None, 'Index'),
]


class Index(InfluxDBMixin, web.RequestHandler):
    def get(self) -> None:
        self.write({'hello': 'world'})


class Item(InfluxDBMixin, web.RequestHandler):
    def get(self, item_id: str) -> None:
        self.write({'item': int(item_id)})


class User(InfluxDBMixin, web.RequestHandler):
    def get(self, user_id: str) -> None:
        self.write({'user': int(user_id)})


class Stream(InfluxDBMixin, web.RequestHandler):
    async def get(self) -> None:
        for part in ('ab', 'cd', 'ef'):
            self.write(part)
            await self.flush()


class Declared(InfluxDBMixin, web.RequestHandler):
    async def get(self) -> None:
        self.set_header('Content-Type', 'application/octet-stream')
        self.set_header('Content-Length', '6')  # not compressed
        self.write('abc')
        await self.flush()
        self.write('def')


class Big(InfluxDBMixin, web.RequestHandler):
    def get(self) -> None:
        self.set_header('Content-Type', 'text/plain')
        self.write('x' * 4000)  # compressed


class Teapot(InfluxDBMixin, web.RequestHandler):
    def get(self) -> None:
        raise web.HTTPError(418)


class Error(InfluxDBMixin, web.RequestHandler):
    def get(self) -> None:
        raise KeyError('boom')


class Early(InfluxDBMixin, web.RequestHandler):
    def initialize(self) -> None:
        self.influxdb.set_field('early', 1)

    def get(self) -> None:
        self.write('early')


class Tagged(InfluxDBMixin, web.RequestHandler):
    def get(self) -> None:
        self.influxdb.set_tag('customer', 'acme')
        self.write('tagged')


class Health(InfluxDBMixin, web.RequestHandler):
    def get(self) -> None:
        self.write('ok')


REQUESTS = [
    ('GET', '/'),
    ('GET', '/'),
    ('HEAD', '/'),
    ('GET', '/items/42'),
    ('GET', '/api/users/7'),
    ('GET', '/stream'),
    ('GET', '/declared'),
    ('GET', '/big'),
    ('GET', '/nothing'),
    ('POST', '/'),
    ('GET', '/teapot'),
    ('GET', '/error'),
    ('GET', '/early'),
    ('GET', '/tagged'),
    ('GET', '/health'),
    ('GET', '/again'),
    ('GET', '/'),
]


def received(outcomes: list[Outcome]) -> list[int]:
    """The body length the client received for each recorded request.

    (0 for HEAD; the excluded path is not recorded.)
    """
    return [
        0 if method == 'HEAD' else length
        for (method, path), (_, length) in zip(REQUESTS, outcomes)
        if path != '/health'
    ]


def compiled() -> bool:
    """Whether the Tornado record has the compiled base."""
    return any(cls.__name__ == 'TornadoRecordBase' for cls in _Record.__mro__)


def make_app(database: str, service: str) -> web.Application:
    """The application."""
    return web.Application(
        [
            (r'/', Index),
            (r'/items/([0-9]+)', Item),
            (
                routing.PathMatches(r'/api/.*'),
                [(r'/api/users/([0-9]+)', User)],
            ),
            (r'/stream', Stream),
            (r'/declared', Declared),
            (r'/big', Big),
            (r'/teapot', Teapot),
            (r'/error', Error),
            (r'/early', Early),
            (r'/tagged', Tagged),
            (r'/health', Health),
            (r'/again', Index),
        ],
        default_handler_class=NotFoundHandler,
        compress_response=True,
        **{
            REQUEST_DATABASE: database,
            'service': service,
            EXCLUDE_PATHS: [r'/health'],
        },
    )


async def serve_all(database: str, service: str) -> list[Outcome]:
    """Serve REQUESTS on loopback, recorded into *service*."""
    logging.getLogger('tornado.access').disabled = True
    logging.getLogger('tornado.application').disabled = True
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(16)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    server = httpserver.HTTPServer(make_app(database, service))
    server.add_sockets([listener])
    client = httpclient.AsyncHTTPClient(force_instance=True)
    outcomes = []
    try:
        for method, path in REQUESTS:
            response = await client.fetch(
                f'http://127.0.0.1:{port}{path}',
                method=method,
                body=b'' if method == 'POST' else None,
                headers={'Accept-Encoding': 'gzip'},
                raise_error=False,
                decompress_response=False,
            )
            outcomes.append([response.code, len(response.body)])
    finally:
        client.close()
        server.stop()
        await server.close_all_connections()
    await asyncio.sleep(0)
    return outcomes
