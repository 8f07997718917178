"""ASGI requests of every shape, through the ASGI middleware.

FastAPI (routes, an included router, errors, 404 and 405), Starlette
(a mount, a streamed response, a file), and plain ASGI applications
sending messages of every shape: ``more_body`` given as ``0``, no body,
an error status, a mapping that is not a dict, a server whose send fails,
a client that went away, an exception that is not an ``Exception``,
a middleware inside another, excluded paths and lifespan messages.  Driven
in-process by a small server function that records what a server would
see.

Used by the test that compares the compiled ASGI record with the pure
Python one (``tests/integrations/test_asgi.py``) and by the one that runs
the compiled record under AddressSanitizer (``tests/test_speedups.py``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Mount, Route

from sprockets_influxdb import Client
from sprockets_influxdb.asgi import InfluxDBMiddleware, _Responder

Outcome = list[Any]  # [message types and statuses sent, exception name]

UNMATCHED = '<unmatched>'

#: (method, endpoint, status_code, content_length, error) of each request
#: of REQUESTS that is recorded, in order.
EXPECTED = [
    ('GET', '/items/{item_id}', '200', 13, None),
    ('GET', '/items/{item_id}', '200', 13, None),
    ('HEAD', UNMATCHED, '405', 0, None),
    ('POST', UNMATCHED, '405', 31, None),
    ('GET', UNMATCHED, '404', 22, None),
    ('GET', '/boom', '500', 0, 'builtins.KeyError'),
    ('GET', '/api/users/{user_id}', '200', 6, None),
    ('GET', '/api/users/{user_id}', '200', 6, None),
    ('_OTHER', UNMATCHED, '405', 31, None),
    ('GET', '/mounted/hello', '200', 5, None),
    ('GET', '/mounted/hello', '200', 5, None),
    ('GET', '/stream', '200', 6, None),
    ('GET', '/stream', '499', 0, None),
    ('GET', UNMATCHED, '200', 2, None),
    ('GET', UNMATCHED, '200', 0, None),
    ('GET', UNMATCHED, '503', 4, None),
    ('GET', UNMATCHED, '200', 3, None),
    ('GET', UNMATCHED, '200', 6, None),
    ('GET', UNMATCHED, '499', 4, None),
    ('GET', UNMATCHED, '500', 0, None),
    ('GET', UNMATCHED, '500', 0, 'builtins.RuntimeError'),
    ('GET', UNMATCHED, '201', 2, None),
    ('GET', '/items/{item_id}', '200', 13, None),
    ('GET', UNMATCHED, '201', 2, None),
    ('GET', '/items/{item_id}', '499', 0, None),
    ('GET', UNMATCHED, '499', 0, None),
    ('GET', UNMATCHED, '200', 6, None),
    ('GET', UNMATCHED, '200', 0, None),
    ('GET', UNMATCHED, '200', 4, None),
    ('GET', UNMATCHED, '200', 6, None),
]


class Message(Mapping[str, Any]):
    """A message that is a mapping but not a dict."""

    def __init__(self, **values: Any) -> None:
        self.values = values

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


class NoTruth:
    """An object whose truth cannot be told."""

    def __bool__(self) -> bool:
        raise RuntimeError('no truth')


def compiled() -> bool:
    """Whether the ASGI record has the compiled base."""
    return any(cls.__name__ == 'ASGIRecordBase' for cls in _Responder.__mro__)


def make_fastapi() -> FastAPI:
    """The FastAPI application."""
    app = FastAPI()
    users = APIRouter(prefix='/users')

    @app.get('/items/{item_id}')
    async def item(item_id: int) -> dict[str, int]:
        return {'item_id': item_id}

    @app.get('/boom')
    async def boom() -> None:
        raise KeyError('boom')

    @users.get('/{user_id}')
    async def user(user_id: str) -> str:
        return user_id + '!'

    app.include_router(users, prefix='/api')
    return app


def make_starlette() -> Starlette:
    """The Starlette application: a mount and a streamed response."""

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse('hello')

    async def stream(request: Any) -> StreamingResponse:
        async def parts() -> Any:
            yield b'abc'
            yield b'def'

        return StreamingResponse(parts())

    return Starlette(
        routes=[
            Mount('/mounted', routes=[Route('/hello', hello)]),
            Route('/stream', stream),
        ]
    )


async def plain(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A plain ASGI application: each path sends another shape."""
    if scope['type'] == 'lifespan':
        while True:
            message = await receive()
            if message['type'] == 'lifespan.startup':
                await send({'type': 'lifespan.startup.complete'})
            else:
                await send({'type': 'lifespan.shutdown.complete'})
                return
    path = scope['path']
    start = {'type': 'http.response.start', 'status': 200, 'headers': []}
    if path == '/zero':  # more_body given as 0
        await send(start)
        await send(
            {'type': 'http.response.body', 'body': b'ok', 'more_body': 0}
        )
    elif path == '/no-body':
        await send(start)
        await send({'type': 'http.response.body'})
    elif path == '/error-status':
        await send({**start, 'status': 503})
        await send({'type': 'http.response.body', 'body': b'down'})
    elif path == '/mapping':
        await send(Message(**start))
        await send(Message(type='http.response.body', body=b'map'))
    elif path == '/chunks':
        await send(start)
        await send(
            {'type': 'http.response.body', 'body': b'abc', 'more_body': True}
        )
        await send({'type': 'http.response.body', 'body': b'def'})
    elif path == '/gone':
        message = await receive()
        assert message['type'] == 'http.disconnect'
        await send(start)
        await send({'type': 'http.response.body', 'body': b'late'})
    elif path == '/cancelled':
        raise asyncio.CancelledError
    elif path == '/by-hand':
        # The start's awaitable driven by hand, as trio and Python 3.12's
        # interpreter drive it: send(), then StopIteration.
        sending = send(start)
        try:
            sending.send(None)  # type: ignore[attr-defined]
        except StopIteration:
            pass
        else:
            raise AssertionError('the start did not go through at once')
        await send({'type': 'http.response.body', 'body': b'hand'})
    elif path == '/raises':
        await send(start)
        raise RuntimeError('plain')
    elif path == '/excluded':
        await send(start)
        await send({'type': 'http.response.body', 'body': b'skip'})
    else:
        await send({**start, 'status': 201})
        await send({'type': 'http.response.body', 'body': b'ok'})


REQUESTS = [
    ('fastapi', 'GET', '/items/1', 'full'),
    ('fastapi', 'GET', '/items/2', 'full'),
    ('fastapi', 'HEAD', '/items/3', 'full'),
    ('fastapi', 'POST', '/items/4', 'full'),
    ('fastapi', 'GET', '/nothing', 'full'),
    ('fastapi', 'GET', '/boom', 'full'),
    ('fastapi', 'GET', '/api/users/ann', 'full'),
    ('fastapi', 'GET', '/api/users/bob', 'full'),
    ('fastapi', 'BREW', '/items/5', 'full'),
    ('starlette', 'GET', '/mounted/hello', 'full'),
    ('starlette', 'GET', '/mounted/hello', 'full'),
    ('starlette', 'GET', '/stream', 'full'),
    ('starlette', 'GET', '/stream', 'refused'),
    ('plain', 'GET', '/zero', 'full'),
    ('plain', 'GET', '/no-body', 'full'),
    ('plain', 'GET', '/error-status', 'full'),
    ('plain', 'GET', '/mapping', 'full'),
    ('plain', 'GET', '/chunks', 'full'),
    ('plain', 'GET', '/gone', 'gone'),
    ('plain', 'GET', '/cancelled', 'full'),
    ('plain', 'GET', '/raises', 'full'),
    ('plain', 'GET', '/excluded', 'full'),
    ('nested', 'GET', '/other', 'full'),
    ('bare-scope', 'GET', '/items/6', 'bare'),
    # An application in the scope whose truth cannot be told: the route
    # lookup fails, is reported, and the request recorded unmatched.
    ('plain', 'GET', '/other', 'no-truth'),
    # The server's send fails for the start of the response (the client
    # has gone), and a server whose send returns a future, not a
    # coroutine.
    ('fastapi', 'GET', '/items/7', 'refused-start'),
    ('plain', 'GET', '/chunks', 'refused-start'),
    ('plain', 'GET', '/chunks', 'future'),
    # The server's send for the start never returns: the request is
    # cancelled while it waits.
    ('plain', 'GET', '/chunks', 'stalled'),
    # The start's awaitable driven by hand, and the whole request with a
    # trace function set (the interpreter then resumes with send()).
    ('plain', 'GET', '/by-hand', 'full'),
    ('plain', 'GET', '/chunks', 'traced'),
]


async def serve(app: Any, method: str, path: str, how: str) -> Outcome:
    """One request, as a server would serve it.

    :param how: ``full``, ``refused`` (the server's send fails for the
        body, as ASGI 2.4 servers do once the client has gone),
        ``refused-start`` (it fails for the start of the response too),
        ``future`` (the server's send returns a future, done soon after),
        ``traced`` (served with a trace function set), ``stalled`` (it
        never returns: the request is cancelled after 50 ms), ``gone``
        (the client has gone before the response), ``bare`` (a scope
        without a root path) or ``no-truth`` (an application in the scope
        whose truth cannot be told)
    """
    scope: dict[str, Any] = {
        'type': 'http',
        'asgi': {'version': '3.0'},
        'http_version': '1.1',
        'method': method,
        'scheme': 'http',
        'path': path,
        'raw_path': path.encode(),
        'root_path': '',
        'query_string': b'',
        'headers': [(b'host', b'test')],
        'server': ('test', 80),
        'client': ('test', 1234),
    }
    if how == 'bare':
        del scope['root_path']
    elif how == 'no-truth':
        scope['app'] = NoTruth()
    sent: list[Any] = []
    received: list[str] = []

    async def receive() -> dict[str, Any]:
        if how == 'gone':
            return {'type': 'http.disconnect'}
        if received:  # the client waits for the response
            await asyncio.Event().wait()
        received.append('http.request')
        return {'type': 'http.request', 'body': b'', 'more_body': False}

    async def send(message: Mapping[str, Any]) -> None:
        if how == 'refused' and message['type'] == 'http.response.body':
            raise OSError('the client went away')
        if how == 'refused-start':
            raise OSError('the client went away')
        if how == 'stalled':
            await asyncio.Event().wait()
        sent.append(message['type'])
        if 'status' in message:
            sent.append(message['status'])

    def send_future(message: Mapping[str, Any]) -> asyncio.Future[None]:
        sent.append(message['type'])
        done = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(done.set_result, None)
        return done

    tracer = sys.gettrace()
    if how == 'traced' and tracer is None:
        sys.settrace(lambda *_: None)
    try:
        served = app(scope, receive, send_future if how == 'future' else send)
        await (asyncio.wait_for(served, 0.05) if how == 'stalled' else served)
    except (Exception, asyncio.CancelledError) as error:
        return [sent, type(error).__name__]
    finally:
        sys.settrace(tracer)
    return [sent, None]


async def lifespan(app: Any) -> list[str]:
    """Start the application up and shut it down: what it sent."""
    incoming = iter(
        [{'type': 'lifespan.startup'}, {'type': 'lifespan.shutdown'}]
    )
    sent: list[str] = []

    async def receive() -> dict[str, Any]:
        return next(incoming)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message['type'])

    await app({'type': 'lifespan', 'asgi': {'version': '3.0'}}, receive, send)
    return sent


async def serve_all(
    database: str, measurement: str, client: Client | None = None
) -> list[Outcome]:
    """Serve REQUESTS, recorded into *measurement*.

    :param client: the client of the middleware (default: the default one)
    :returns: the outcome of each request
    """
    settings: dict[str, Any] = {
        'database': database,
        'measurement': measurement,
        'client': client,
    }
    fastapi = make_fastapi()
    fastapi.add_middleware(InfluxDBMiddleware, **settings)
    apps = {
        'fastapi': fastapi,
        'starlette': InfluxDBMiddleware(make_starlette(), **settings),
        'plain': InfluxDBMiddleware(
            plain, exclude_paths=['/excluded'], **settings
        ),
        # A second middleware inside the first: recorded once.
        'nested': InfluxDBMiddleware(
            InfluxDBMiddleware(plain, **settings), **settings
        ),
        'bare-scope': InfluxDBMiddleware(make_fastapi(), **settings),
    }
    return [
        await serve(apps[app], method, path, how)
        for app, method, path, how in REQUESTS
    ]
