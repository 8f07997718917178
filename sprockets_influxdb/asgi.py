"""ASGI integration: :class:`InfluxDBMiddleware` records every request.

A pure ASGI middleware (no per-request state on the instance; ``send`` and
``receive`` wrapped per request), for Starlette, FastAPI and any ASGI
application, on asyncio or trio:

.. code-block:: python

    from fastapi import FastAPI
    from sprockets_influxdb.asgi import InfluxDBMiddleware

    app = FastAPI()
    app.add_middleware(InfluxDBMiddleware, database='example')

Each HTTP request gives one measurement (see
:mod:`sprockets_influxdb.request_metrics`).  The ``endpoint`` tag is the
route template as the application declares it, mount prefixes and included
routers included (``/api/items/{item_id}``), found in the application's
routes once it has routed the request; requests no route fully matched
(404, 405) get :data:`~sprockets_influxdb.request_metrics.UNMATCHED`.

A request is recorded as its last body chunk (or its ``pathsend``) is
handed to the server, before the server can have sent it: a response a
client received in full is recorded already, whatever happens to the
process next.  (A 5xx response is recorded once the application returns or
raises, so that the error an error middleware raises after sending its page
is its ``error`` tag.)  ``duration`` ends then, so a streaming response is
timed in full and background tasks are not counted.  Handlers reach the
measurement as ``request.state.influxdb``, also for a request that is not
recorded (an excluded path, no database): a stand-in then.  Websocket
scopes pass through untouched; at lifespan shutdown the client is flushed,
and what could not be delivered is reported in an error.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, Callable

from starlette.routing import BaseRoute, Host, Match, Mount, compile_path

from sprockets_influxdb.client import Client
from sprockets_influxdb.measurement import Measurement, _compiled
from sprockets_influxdb.request_metrics import (
    OTHER_METHOD,
    UNMATCHED,
    RequestRecord,
    middleware_recorder,
    stand_in,
)

__all__ = ['InfluxDBMiddleware']

_monotonic = time.monotonic

LOGGER = logging.getLogger('sprockets_influxdb')

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Set in the scope of a request being recorded, so that a second
# middleware further in (a mounted sub-application's) passes it through.
_RECORDING = 'sprockets_influxdb.recording'
_CACHE_LIMIT = 4096
# A root path holds the raw path parameters of the mounts a request went
# through (``Mount('/users/{uid}')``): long ones are not cached.
_CACHED_ROOT_PATH = 256
# Not looked for yet.
_UNKNOWN = object()


if TYPE_CHECKING:
    _MiddlewareBase = object
    _ResponderBase = object
else:
    # The compiled bases hold the attributes, set a request's record up
    # (_begin) and do its send and complete in C for the common case,
    # leaving the rest to the _py methods below (see _speedups.c).
    _MiddlewareBase = (
        object if _compiled is None else _compiled.ASGIMiddlewareBase
    )
    _ResponderBase = object if _compiled is None else _compiled.ASGIRecordBase


class InfluxDBMiddleware(_MiddlewareBase):
    """Record each HTTP request of an ASGI application.

    :param app: the ASGI application
    :param database: the database measurements are written to
    :param measurement: the measurement name (default: the ``SERVICE``
        environment variable, else ``request``)
    :param exclude_paths: regular expressions of paths not to record
    :param client: the :class:`~sprockets_influxdb.Client` to write with
        (default: the module-level default client)
    :param methods: HTTP methods to record as they are beside the standard
        ones (default: the ``INFLUXDB_HTTP_METHODS`` environment variable);
        any other is recorded as ``_OTHER``
    :raises ValueError: for an invalid measurement name, regular
        expression or method, when the application starts

    Without a database, an error is logged once and requests are served
    unrecorded, with a stand-in measurement for the handlers: a failed
    request would be worse than a missing metric.
    """

    def __init__(
        self,
        app: ASGIApp,
        database: str | None = None,
        measurement: str | None = None,
        exclude_paths: Iterable[str] = (),
        client: Client | None = None,
        methods: Iterable[str] | None = None,
    ) -> None:
        self.app = app
        self.client = client
        self._templates: dict[tuple[int, int, str], tuple[object, str]] = {}
        self._handlers: dict[int, tuple[object, str]] = {}
        # Per route reached (by identity, with the root path it was reached
        # through): (route, template, endpoint, handler name).
        self._routes: dict[
            tuple[int, int, str], tuple[object, str, object, str | None]
        ] = {}
        self._owner: object = _UNKNOWN
        self.recorder = middleware_recorder(
            database, measurement, exclude_paths, client, methods
        )
        self._database = database
        self._measurement = measurement

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Handle one ASGI connection."""
        responder = self._begin(scope, receive, send)
        if responder is not None:
            try:
                await self.app(scope, responder.receive, responder.send)
            except BaseException as error:
                responder.complete(
                    error if isinstance(error, Exception) else None
                )
                raise
            if not responder.finished:
                responder.complete(None)
            return
        if scope['type'] == 'lifespan':
            send = self._lifespan_send(send)
        await self.app(scope, receive, send)

    def _begin_py(
        self, scope: Scope, receive: Receive, send: Send
    ) -> _Responder | None:
        """The record of an HTTP request to record, set up; else ``None``.

        An HTTP request not recorded (an excluded path, no database) gets
        a stand-in measurement for its handlers.  (The compiled base's
        ``_begin`` does the common case itself.)
        """
        if scope['type'] != 'http' or _RECORDING in scope:
            return None
        recorder = self.recorder
        if recorder is None or (
            recorder._excluded and recorder.excluded(scope['path'])
        ):
            # Not recorded: the handlers still find a measurement.
            state = scope.setdefault('state', {})
            if isinstance(state, dict):
                state['influxdb'] = stand_in(self._database, self._measurement)
            return None
        # RequestRecord.__init__ and the rest of the setup, inline.
        responder = _new(_Responder)
        responder.recorder = recorder
        method = scope['method']
        responder.method = (
            method if method in recorder.methods else OTHER_METHOD
        )
        responder.started = _monotonic()
        measurement = responder.measurement = Measurement(
            recorder.database, recorder.measurement
        )
        responder.finished = False
        responder.middleware = self
        responder.scope = scope
        responder.downstream_receive = receive
        responder.downstream_send = send
        responder.path = scope['path']
        responder.root_path = scope.get('root_path', '')
        responder.root = scope.get('app')
        responder.status = 500
        responder.body_bytes = 0
        responder.disconnected = False
        responder.ended = None
        scope[_RECORDING] = True
        state = scope.get('state')
        if state is None:
            scope['state'] = {'influxdb': measurement}
        elif isinstance(state, dict):
            state['influxdb'] = measurement
        return responder

    if TYPE_CHECKING or _compiled is None:
        _begin = _begin_py

    def _lifespan_send(self, send: Send) -> Send:
        async def lifespan_send(message: Message) -> None:
            if message['type'] in (
                'lifespan.shutdown.complete',
                'lifespan.shutdown.failed',
            ):
                await self._flush()
            await send(message)

        return lifespan_send

    async def _flush(self) -> None:
        client = self.client
        if client is None:
            import sprockets_influxdb

            client = sprockets_influxdb.default_client()
        # Bounded like a shutdown: the server must not wait on InfluxDB,
        # nor on a server that was never there (a test without one).
        future = client.flush(
            timeout=client.settings.shutdown_timeout, wait_for_server=False
        )
        try:
            delivered = await future
        except Exception:  # pragma: no cover - never fail the shutdown
            LOGGER.exception('Could not flush at lifespan shutdown')
            return
        if not delivered:
            # Servers often end the process right after (uvicorn raises
            # its signal again): this may be the last word.
            stats = client.stats()
            LOGGER.error(
                '%d measurements not delivered to InfluxDB at %s when the '
                'application shut down (%s): lost if the process ends now',
                stats.buffered + stats.in_flight,
                client.settings.url,
                stats.last_error or 'no time left',
            )

    def endpoint(
        self, root: object, original: Scope, scope: Scope
    ) -> str | None:
        """The route template of a routed request, or ``None``.

        :param root: the application whose routes to search
        :param original: the scope of the request as it was before routing
        :param scope: the scope after routing
        """
        routes = getattr(root, 'routes', None)
        if not routes:
            return None
        route = scope.get('route')
        if route is None or isinstance(route, (Mount, Host)):
            # No route recorded by the router (older Starlette), or only a
            # mount: search the routes as the router does.
            return _template(routes, dict(original), '')
        # The router recorded the innermost route: the template is the
        # mounts it sits in and its own, the same for every request that
        # reaches it through the same mounts.
        # FastAPI's included routers record their routes with the path
        # relative to the router, and the full one in this context.
        context = _fastapi_context(scope)
        owner = route if context is None else context
        root_path = scope.get('root_path', '')
        key = (id(root), id(owner), root_path)
        cached = self._templates.get(key)
        if cached is not None and cached[0] is owner:
            return cached[1]
        prefix, level = _mounts(routes, dict(original))
        path_format = getattr(context, 'path_format', None)
        if not isinstance(path_format, str):
            match, _ = route.matches(level)
            path_format = getattr(route, 'path_format', None)
            if match is not Match.FULL or path_format is None:
                return None
        template = f'{prefix}{path_format}'
        if len(root_path) <= _CACHED_ROOT_PATH:
            if len(self._templates) >= _CACHE_LIMIT:
                self._templates.clear()
            self._templates[key] = (owner, template)
        return template

    def _route(
        self, root: object, path: str, root_path: str, scope: Scope
    ) -> tuple[str | None, str | None]:
        """(template, handler name) of a routed request, cached per route.

        :param root: the application whose routes to search
        :param path: the request's path before routing
        :param root_path: its root path before routing
        :param scope: the scope after routing
        """
        route = scope.get('route')
        handler = scope.get('endpoint')
        key: tuple[int, int, str] | None = None
        owner = None
        if route is not None:
            fastapi = scope.get('fastapi')
            context = (
                fastapi.get('effective_route_context')
                if type(fastapi) is dict
                else None
            )
            owner = route if context is None else context
            key = (id(root), id(owner), root_path)
            cached = self._routes.get(key)
            if (
                cached is not None
                and cached[0] is owner
                and cached[2] is handler
            ):
                return cached[1], cached[3]
        original = {
            name: scope[name]
            for name in ('type', 'method', 'headers')
            if name in scope
        }
        original['path'] = path
        if root_path or 'root_path' in scope:
            original['root_path'] = root_path
        template = self.endpoint(root, original, scope)
        name = None if handler is None else self.handler_name(handler)
        if (
            key is not None
            and template is not None
            and len(root_path) <= _CACHED_ROOT_PATH
            and not isinstance(route, (Mount, Host))
        ):
            routes = self._routes
            if len(routes) >= _CACHE_LIMIT:
                routes.clear()
            routes[key] = (owner, template, handler, name)
        return template, name

    def _routes_owner(self) -> object:
        if self._owner is _UNKNOWN:
            self._owner = _routes_owner(self.app)
        return self._owner

    def handler_name(self, handler: object) -> str:
        """The dotted name of an endpoint function or class.

        :param handler: what the router called
        """
        cached = self._handlers.get(id(handler))
        if cached is not None and cached[0] is handler:
            return cached[1]
        name = (
            f'{getattr(handler, "__module__", "")}.'
            f'{getattr(handler, "__qualname__", type(handler).__name__)}'
        )
        if len(self._handlers) >= _CACHE_LIMIT:
            self._handlers.clear()
        self._handlers[id(handler)] = (handler, name)
        return name


def _file_size(path: object) -> int:
    try:
        return os.stat(path).st_size  # type: ignore[arg-type]
    except (OSError, TypeError, ValueError):
        return 0


def _fastapi_context(scope: Scope) -> object | None:
    fastapi = scope.get('fastapi')
    if isinstance(fastapi, dict):
        return fastapi.get('effective_route_context')
    return None


def _routes_owner(app: object) -> object:
    """The first application down a chain of middleware that has routes."""
    for _ in range(32):
        if app is None or hasattr(app, 'routes'):
            break
        app = getattr(app, 'app', None)
    return app


def _mounts(
    routes: Iterable[BaseRoute], scope: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """Follow the mounts a request goes through: (prefix, inner scope)."""
    prefix = ''
    descended = True
    while descended:
        descended = False
        for route in routes:
            match, child = route.matches(scope)
            if match is not Match.FULL:
                continue
            if isinstance(route, (Mount, Host)):
                if isinstance(route, Mount):
                    prefix += compile_path(route.path)[1]
                scope = {**scope, **child}
                routes = route.routes
                descended = True
            break
    return prefix, scope


def _template(
    routes: Iterable[BaseRoute], scope: dict[str, Any], prefix: str
) -> str | None:
    """Walk the routes as the router does; return the full template."""
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, (Mount, Host)):
            if match is not Match.FULL:
                continue
            mount = prefix
            if isinstance(route, Mount):
                mount += compile_path(route.path)[1]
                if not route.routes:  # an application without routes
                    return f'{mount}/{{path}}'
            # The router stops at the first full match of a mount: so do
            # we, even when nothing inside matches.
            return _template(route.routes, {**scope, **child}, mount)
        if match is Match.FULL:
            path_format = getattr(route, 'path_format', None)
            return None if path_format is None else prefix + path_format
    return None


class _Responder(RequestRecord, _ResponderBase):
    """The state of one HTTP request going through the middleware.

    The request's :class:`~sprockets_influxdb.request_metrics.RequestRecord`
    itself: one object per request.

    With the compiled extension, ``send`` and ``complete`` are its base's,
    which hands what it does not do itself to the ``_py`` methods here; in
    pure Python mode they are these methods.
    """

    __slots__ = (
        (
            'body_bytes',
            'disconnected',
            'downstream_receive',
            'downstream_send',
            'ended',
            'middleware',
            'path',
            'root',
            'root_path',
            'scope',
            'status',
        )
        if _compiled is None
        else ()
    )

    # Set up by InfluxDBMiddleware._begin (no __init__: a frame less
    # per request): the RequestRecord attributes, and these.
    #: The middleware serving the request.
    middleware: InfluxDBMiddleware
    #: The request's scope (routing changes it in place).
    scope: Scope
    #: The server's receive and send.
    downstream_receive: Receive
    downstream_send: Send
    #: The path and root path before routing: what the routes match.
    path: str
    root_path: str
    #: The application whose routes route the request (a mounted
    #: Starlette application puts itself in the scope later).
    root: object
    #: The status the application gave (500 until it gives one).
    status: int
    #: Bytes of body handed to the server.
    body_bytes: int
    #: Whether the client went away before the response was complete.
    disconnected: bool
    #: When the last of the response was handed to the server, once it
    #: was.
    ended: float | None

    async def receive(self) -> Message:
        """The ``receive`` the application is given."""
        message = await self.downstream_receive()
        if message['type'] == 'http.disconnect' and self.ended is None:
            self.disconnected = True
        return message

    def _send_py(self, message: Message) -> Awaitable[None]:
        """The ``send`` the application is given.

        The last of a response under 500, the usual case, is recorded and
        handed to the server without a coroutine of the middleware's own:
        a client gone while it is sent got the whole response.
        """
        if (
            message['type'] == 'http.response.body'
            and not message.get('more_body', False)
            and self.status < 500
        ):
            self.body_bytes += len(message.get('body', b''))
            self.ended = _monotonic()
            self.complete(None)
            return self.downstream_send(message)
        return self._send(message)

    async def _send(self, message: Message) -> None:
        kind = message['type']
        if kind == 'http.response.body':
            size = len(message.get('body', b''))
            if message.get('more_body', False):
                try:
                    await self.downstream_send(message)
                except OSError:
                    # ASGI 2.4 servers raise OSError once the client has
                    # gone.
                    self.disconnected = True
                    raise
                self.body_bytes += size  # once the server took it
                return
            # The last of a 5xx response (send() takes the others): it
            # waits for the error that may follow (see below).
            self.body_bytes += size
            self.ended = _monotonic()
        elif kind == 'http.response.start':
            self.status = int(message['status'])
        elif kind == 'http.response.pathsend':
            # The server sends the file itself: the last of the body.
            self.body_bytes += _file_size(message.get('path'))
            self.ended = _monotonic()
            if self.status < 500:
                self.complete(None)
        else:
            await self.downstream_send(message)
            return
        try:
            await self.downstream_send(message)
        except OSError:
            self.disconnected = True
            raise

    # When the last of the response is about to be handed to the server
    # (send() above), the request is recorded, before the server has it:
    # once the client has the whole response, the measurement is in the
    # buffer whatever happens to the process; and background tasks run
    # after this.  It is complete then: a client that closes while the
    # server sends this last chunk did get the whole response.  But an
    # error page may come from an error middleware further in, which
    # raises the error right after: a 5xx waits for it.

    def _complete_py(self, error: BaseException | None) -> None:
        """Record the request, once, with what the middleware saw.

        :param error: the exception that escaped the application, if any
        """
        if self.finished:
            return
        middleware = self.middleware
        scope = self.scope
        endpoint = name = None
        try:
            # 405: the path matched, the method did not: no route served it.
            if self.status != 405:
                endpoint, name = middleware._route(
                    self.root or middleware._routes_owner(),
                    self.path,
                    self.root_path,
                    scope,
                )
        except Exception as failure:
            self.recorder.report_failure(
                'Could not find the route of a request', failure
            )
            endpoint = None
        # Went away before the response was complete (what was sent after,
        # an error page say, never reached the client).
        gone = self.disconnected
        self._finish(
            self.status,
            endpoint or UNMATCHED,
            name,
            # Servers send no body in answer to HEAD.
            0 if scope.get('method') == 'HEAD' else self.body_bytes,
            # An error raised because the client went away (reading the
            # body, say) is the client's doing: a 499, not a 500.
            None if gone else error,
            gone,
            self.ended,
        )

    if TYPE_CHECKING or _compiled is None:
        send = _send_py
        complete = _complete_py


# A _Responder without RequestRecord.__init__ (InfluxDBMiddleware._begin
# sets it up).
_new = _Responder.__new__


async def _awaiting(awaitable: Awaitable[None]) -> None:
    """Await what a server's ``send`` returned that is no coroutine."""
    await awaitable


if _compiled is not None:
    _compiled.configure_asgi(_RECORDING, _UNKNOWN, _Responder, _awaiting)
