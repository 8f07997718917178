"""WSGI requests of every shape, through the WSGI middleware.

Flask, a layer that calls ``start_response`` in other shapes, and a plain
application: statuses, headers and bodies of every shape, errors raised by
the application at each step, a server whose sending fails, a response
only looked at, ``write()``, a file wrapper.  Served in-process by a small
server function that records what a server would see.

Used by the test that compares the compiled WSGI record with the pure
Python one (``tests/integrations/test_wsgi.py``) and by the one that runs
the compiled record under AddressSanitizer (``tests/test_speedups.py``).
"""

from __future__ import annotations

import gc
import io
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from flask import Flask
from werkzeug.routing import Map, Rule
from werkzeug.test import EnvironBuilder

from sprockets_influxdb import Client
from sprockets_influxdb.wsgi import InfluxDBMiddleware, _Request

Outcome = list[Any]  # [statuses and writes seen, chunks, exception name]

FLASK_RULE = '/items/<int:item_id>'
UNMATCHED = '<unmatched>'

#: (method, endpoint, status_code, content_length, error) of each request
#: of REQUESTS, in order.
EXPECTED = [
    ('GET', FLASK_RULE, '200', 15, None),
    ('HEAD', FLASK_RULE, '200', 0, None),
    ('GET', FLASK_RULE, '200', 0, None),  # only looked at: nothing read
    ('GET', FLASK_RULE, '200', 15, None),
    ('GET', '/boom', '500', 265, 'builtins.KeyError'),
    ('GET', '/stream', '200', 5, None),
    ('GET', '/stream', '499', 2, None),
    ('GET', UNMATCHED, '404', 207, None),
    ('POST', UNMATCHED, '405', 153, None),
    ('_OTHER', UNMATCHED, '405', 153, None),
    ('GET', FLASK_RULE, '200', 14, None),
    ('GET', '/stream', '200', 5, None),
    ('GET', '/plain', '200', 5, None),
    ('GET', '/declared-early', '200', 4, None),
    ('GET', '/lower', '200', 3, None),
    ('GET', '/int-length', '200', 4, None),
    ('GET', '/lists', '201', 2, None),
    ('GET', '/unicode-name', '202', 2, None),
    ('GET', '/bad-status', '500', 0, 'builtins.ValueError'),
    ('GET', '/space-status', '20', 1, None),
    ('GET', '/bytes-status', '203', 1, None),
    ('GET', '/empty', '204', 0, None),
    # A length int() reads, in every form it takes: reached at 4 bytes of 6.
    ('GET', '/length-signed', '200', 4, None),
    ('GET', '/length-spaced', '200', 4, None),
    ('GET', '/length-digits', '200', 4, None),
    ('GET', '/length-18-digits', '200', 4, None),
    ('GET', '/length-19-digits', '200', 4, None),
    ('GET', '/length-underscore', '200', 6, None),  # 1_0: never reached
    ('GET', '/length-big', '200', 6, None),  # beyond 64 bits: never reached
    ('GET', '/length-hex', '200', 6, None),  # not a number: none declared
    ('GET', '/not-iterable', '500', 0, 'builtins.TypeError'),
    ('GET', '/no-len', '500', 0, 'builtins.TypeError'),
    ('HEAD', '/plain', '200', 0, None),
    ('GET', '/plain', '200', 0, None),
    ('GET', '/plain', '200', 5, None),
    ('GET', '/declared-early', '499', 2, None),
    ('GET', '/write', '200', 5, None),
    ('GET', '/exc-info', '500', 0, None),
    ('GET', '/raise-midway', '500', 1, 'builtins.RuntimeError'),
    ('GET', '/closing', '200', 4, None),
    ('GET', '/closing', '499', 2, None),
    ('GET', '/file', '200', 7, None),
    ('GET', '/exit', '500', 0, None),
    ('GET', '/close-none', '200', 2, None),
    ('GET', '/file-huge', '200', 0, None),
]

PLAIN: dict[str, tuple[Any, Any, Any]] = {
    '/plain': ('200 OK', [('Content-Length', '5')], [b'hello']),
    '/declared-early': (
        '200 OK',
        [('Content-Length', '3')],
        [b'ab', b'cd', b'ef'],
    ),
    '/lower': ('200 OK', [('content-length', 'abc')], [b'xyz']),
    '/int-length': ('200 OK', [('Content-Length', 4)], [b'abcd']),
    '/lists': ('201 Created', [['Content-Length', '2']], [b'ok']),
    '/unicode-name': ('202 Accepted', [('\u00c7ontent-Length', '9')], [b'ok']),
    '/bad-status': ('abc', [], [b'x']),
    '/space-status': (' 20 x', [], [b'x']),
    '/bytes-status': (b'203 Non', [], [b'x']),
    '/empty': ('204 No Content', [('Content-Length', '0')], []),
    **{
        path: ('200 OK', [('Content-Length', length)], [b'ab', b'cd', b'ef'])
        for path, length in [
            ('/length-signed', '+3'),
            ('/length-spaced', ' 3 '),
            ('/length-digits', '\u0663'),  # ARABIC-INDIC DIGIT THREE
            ('/length-18-digits', '0' * 17 + '3'),
            ('/length-19-digits', '0' * 18 + '3'),
            ('/length-underscore', '1_0'),
            ('/length-big', '9' * 19),
            ('/length-hex', '0x3'),
        ]
    },
    '/not-iterable': ('200 OK', [], 5),
    '/no-len': ('200 OK', [], [3]),
}

REQUESTS = [
    ('flask', 'GET', '/items/42', 'full'),
    ('flask', 'HEAD', '/items/42', 'full'),
    ('flask', 'GET', '/items/43', 'status'),
    ('flask', 'GET', '/items/44', 'next'),
    ('flask', 'GET', '/boom', 'full'),
    ('flask', 'GET', '/stream', 'full'),
    ('flask', 'GET', '/stream', 'gone'),
    ('flask', 'GET', '/nothing', 'full'),
    ('flask', 'POST', '/items/1', 'full'),
    ('flask', 'BREW', '/items/2', 'full'),
    ('odd', 'GET', '/items/7', 'full'),
    ('odd', 'GET', '/stream', 'full'),
    *[('plain', 'GET', path, 'full') for path in PLAIN],
    ('plain', 'HEAD', '/plain', 'full'),
    ('plain', 'GET', '/plain', 'status'),
    ('plain', 'GET', '/plain', 'next'),
    ('plain', 'GET', '/declared-early', 'gone'),
    ('plain', 'GET', '/write', 'full'),
    ('plain', 'GET', '/exc-info', 'full'),
    ('plain', 'GET', '/raise-midway', 'full'),
    ('plain', 'GET', '/closing', 'full'),
    ('plain', 'GET', '/closing', 'gone'),
    ('plain', 'GET', '/file', 'full'),
    ('plain', 'GET', '/exit', 'full'),
    ('plain', 'GET', '/close-none', 'full'),
    ('plain', 'GET', '/file-huge', 'full'),
]


def compiled() -> bool:
    """Whether the WSGI record has the compiled base."""
    return any(cls.__name__ == 'WSGIRecordBase' for cls in _Request.__mro__)


def make_site() -> Flask:
    """The Flask application."""
    site = Flask('modes')

    @site.route(FLASK_RULE, methods=['GET', 'HEAD'])
    def item(item_id: int) -> Any:
        return {'item_id': item_id}

    @site.get('/boom')
    def boom() -> Any:
        raise KeyError('boom')

    @site.get('/stream')
    def stream() -> Any:
        return site.response_class(
            iter([b'ab', b'cde']), mimetype='text/plain'
        )

    return site


def odd(app: Any) -> Any:
    """A layer that calls start_response with lists and exc_info by name."""

    def inner(environ: dict[str, Any], start_response: Any) -> Any:
        def start(status: str, headers: Any, exc_info: Any = None) -> Any:
            return start_response(
                status, [list(pair) for pair in headers], exc_info=exc_info
            )

        return app(environ, start)

    return inner


class Closing:
    """A response iterable that counts the calls of its close()."""

    def __init__(self, parts: list[bytes], closed: list[int]) -> None:
        self.parts = parts
        self.count = 0
        self.closed = closed

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.parts)

    def close(self) -> None:
        self.count += 1
        self.closed.append(self.count)


class NoClose(list[bytes]):
    """A response list whose close attribute is None."""

    close = None


class FileWrapper:
    """The server's ``wsgi.file_wrapper``."""

    def __init__(self, file: io.BytesIO, block_size: int = 8192) -> None:
        self.file = file

    def __iter__(self) -> Iterator[bytes]:
        return iter([self.file.read()])


def midway() -> Iterator[bytes]:
    """A body that fails after its first chunk."""
    yield b'a'
    raise RuntimeError('midway')


def make_plain(closed: list[int]) -> Callable[..., Any]:
    """The plain WSGI application."""

    def plain(environ: dict[str, Any], start_response: Any) -> Any:
        path = environ['PATH_INFO']
        if path == '/write':
            write = start_response('200 OK', [])
            write(b'abc')
            return [b'de']
        if path == '/exc-info':
            start_response(
                '500 Oops', [('Content-Length', '0')], exc_info=None
            )
            return []
        if path == '/raise-midway':
            start_response('200 OK', [])
            return midway()
        if path == '/closing':
            start_response('200 OK', [('Content-Length', '4')])
            return Closing([b'ab', b'cd'], closed)
        if path == '/exit':  # no Exception: recorded without an error
            raise SystemExit(3)
        if path == '/close-none':  # close is None: not called
            start_response('200 OK', [('Content-Length', '2')])
            return NoClose([b'ok'])
        if path == '/file-huge':  # a length no file has: recorded as 0
            start_response('200 OK', [('Content-Length', '9' * 30)])
            return environ['wsgi.file_wrapper'](io.BytesIO(b'content'))
        if path == '/file':
            start_response('200 OK', [('Content-Length', '7')])
            return environ['wsgi.file_wrapper'](io.BytesIO(b'content'))
        status, headers, body = PLAIN[path]
        start_response(status, headers)
        return body

    return plain


def serve(app: Any, method: str, path: str, how: str) -> Outcome:
    """One request, as a server (or a test client) would serve it.

    :param how: ``full`` (iterated and closed), ``next`` (the same with
        ``next()``), ``gone`` (sending fails after the first chunk) or
        ``status`` (only the status looked at, the response dropped)
    """
    environ = EnvironBuilder(path=path, method=method).get_environ()
    environ['wsgi.file_wrapper'] = FileWrapper
    seen: list[object] = []

    def start_response(
        status: str, headers: object, *exc_info: object
    ) -> Callable[[bytes], None]:
        seen.append(str(status))
        seen.append(f'{2 + len(exc_info)} arguments')
        return lambda data: seen.append(len(data))

    body: list[bytes] = []
    try:
        result: Iterable[bytes] = app(environ, start_response)
        if how == 'status':
            del result
            gc.collect()
            return [seen, [], None]
        try:
            if how == 'next':
                iterator = iter(result)
                while True:
                    try:
                        body.append(next(iterator))
                    except StopIteration:
                        break
            else:
                for chunk in result:
                    body.append(chunk)
                    if how == 'gone':
                        raise BrokenPipeError('client went away')
        finally:
            close = getattr(result, 'close', None)
            if close is not None:
                close()
    except (Exception, SystemExit) as error:
        return [seen, [repr(part) for part in body], type(error).__name__]
    return [seen, [repr(part) for part in body], None]


def serve_all(
    database: str, measurement: str, client: Client | None = None
) -> tuple[list[Outcome], list[int]]:
    """Serve REQUESTS, recorded into *measurement*.

    :param client: the client of the middleware (default: the default one)
    :returns: the outcome of each request, and the calls of close() that
        the application's iterables saw
    """
    closed: list[int] = []
    site = make_site()
    rules = Map(
        [
            Rule(path, endpoint=path[1:])
            for path in [
                *PLAIN,
                '/write',
                '/exc-info',
                '/raise-midway',
                '/closing',
                '/file',
                '/exit',
                '/close-none',
                '/file-huge',
            ]
        ]
    )
    settings: dict[str, Any] = {
        'database': database,
        'measurement': measurement,
        'client': client,
    }
    apps = {
        'flask': InfluxDBMiddleware(site.wsgi_app, **settings),
        'odd': InfluxDBMiddleware(odd(site.wsgi_app), **settings),
        'plain': InfluxDBMiddleware(
            make_plain(closed), url_map=rules, **settings
        ),
    }
    # Flask logs the exception of /boom: not to the test's output.
    site.logger.disabled = True
    outcomes = [
        serve(apps[app], method, path, how)
        for app, method, path, how in REQUESTS
    ]
    sys.stderr.flush()
    return outcomes, closed
