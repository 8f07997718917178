"""WSGI integration: :class:`InfluxDBMiddleware` records every request.

For Flask and any WSGI application, under any WSGI server (threads,
gunicorn workers, ``--preload`` included):

.. code-block:: python

    from flask import Flask
    from sprockets_influxdb.wsgi import InfluxDBMiddleware

    app = Flask(__name__)
    app.wsgi_app = InfluxDBMiddleware(app.wsgi_app, database='example')

Wrapping the Flask application itself works as well.  Each request gives
one measurement (see :mod:`sprockets_influxdb.request_metrics`).  The
``endpoint`` tag is the URL rule (``/items/<int:item_id>``): Flask's matched
rule, or for another application the match of the werkzeug
:class:`~werkzeug.routing.Map` given as ``url_map``; requests no rule
matched (404, 405) get :data:`~sprockets_influxdb.request_metrics.UNMATCHED`.

A request is recorded as soon as the last byte of its response is handed
to the server, before the server can have sent it: when the bytes the
application yielded reach the ``Content-Length`` it declared (before that
last chunk is handed over), else when its body is exhausted.  So a
response a client received in full is recorded already, whatever happens
to the process next.  ``duration`` ends then, so streamed responses are
timed in full; ``content_length`` counts the bytes the application yielded
or passed to ``write()`` (0 for ``HEAD``).  A response the server closes
before its end is recorded then: as 499 when the server stopped because
sending failed (the client went away), else with the status the
application gave; one neither exhausted nor closed (a test client that
only looked at the status) is recorded with that status when it is
released.  A response built on the server's ``wsgi.file_wrapper`` is passed
through untouched (so the server can send the file its own way): its
``content_length`` is the one its headers declare, and it is recorded when
the application returns it.

Handlers reach the measurement as
``environ['sprockets_influxdb.measurement']``, also for a request that is
not recorded (an excluded path, no database): a stand-in then.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map

from sprockets_influxdb import stop_signals
from sprockets_influxdb.client import Client
from sprockets_influxdb.measurement import Measurement, _compiled
from sprockets_influxdb.request_metrics import (
    OTHER_METHOD,
    UNMATCHED,
    RequestRecord,
    middleware_recorder,
    stand_in,
)

__all__ = ['ENVIRON_KEY', 'InfluxDBMiddleware', 'post_worker_init']

LOGGER = logging.getLogger('sprockets_influxdb')

_monotonic = time.monotonic

#: The ``environ`` key of the request's measurement.
ENVIRON_KEY = 'sprockets_influxdb.measurement'

# Where Flask's uncaught exception is kept for the middleware.
_ERROR_KEY = 'sprockets_influxdb.error'
# Where werkzeug's request objects (Flask's among them) put themselves.
_REQUEST_KEY = 'werkzeug.request'
# No rule known (yet).
_UNKNOWN: Any = object()

ExcInfo = tuple[type[BaseException], BaseException, Optional[TracebackType]]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


if TYPE_CHECKING:
    _MiddlewareBase = object
else:
    # The compiled base holds app and recorder and does the call in C for
    # the common case, leaving the rest to _call_py (see _speedups.c).
    _MiddlewareBase = (
        object if _compiled is None else _compiled.WSGIMiddlewareBase
    )


class InfluxDBMiddleware(_MiddlewareBase):
    """Record each request of a WSGI application.

    :param app: the WSGI application: a Flask application, its
        ``wsgi_app``, or any other
    :param database: the database measurements are written to
    :param measurement: the measurement name (default: the ``SERVICE``
        environment variable, else ``request``)
    :param exclude_paths: regular expressions of paths not to record
    :param client: the :class:`~sprockets_influxdb.Client` to write with
        (default: the module-level default client)
    :param url_map: the werkzeug :class:`~werkzeug.routing.Map` to find the
        URL rule of a request with, for applications other than Flask
    :param methods: HTTP methods to record as they are beside the standard
        ones (default: the ``INFLUXDB_HTTP_METHODS`` environment variable);
        any other is recorded as ``_OTHER``
    :raises ValueError: for an invalid measurement name, regular
        expression or method

    Without a database, an error is logged once and requests are served
    unrecorded, with a stand-in measurement for the handlers.
    """

    def __init__(
        self,
        app: WSGIApp,
        database: str | None = None,
        measurement: str | None = None,
        exclude_paths: Iterable[str] = (),
        client: Client | None = None,
        url_map: Map | None = None,
        methods: Iterable[str] | None = None,
    ) -> None:
        self.app = app
        self.client = client
        self._flask = _find_flask(app)
        self.url_map = url_map or getattr(self._flask, 'url_map', None)
        self._handlers: dict[str, str] = {}
        # (rule, its text, handler name) per rule matched, by identity.
        self._rules: dict[int, tuple[Any, str, str | None]] = {}
        self.recorder = middleware_recorder(
            database, measurement, exclude_paths, client, methods
        )
        self._database = database
        self._measurement = measurement
        self._signals = self._flask is not None and _watch_exceptions(
            self._flask
        )

    def _call_py(
        self, environ: dict[str, Any], start_response: StartResponse
    ) -> Iterable[bytes]:
        """Handle one request (the compiled base's call, in Python)."""
        if ENVIRON_KEY in environ:  # recorded by another one further out
            return self.app(environ, start_response)
        recorder = self.recorder
        if recorder is None or (
            recorder._excluded
            and recorder.excluded(environ.get('PATH_INFO', ''))
        ):
            environ[ENVIRON_KEY] = stand_in(self._database, self._measurement)
            return self.app(environ, start_response)
        # RequestRecord.__init__ and the rest of the setup, inline.
        request = _new(_Request)
        request.recorder = recorder
        method = environ.get('REQUEST_METHOD', 'GET')
        request.method = method if method in recorder.methods else OTHER_METHOD
        request.started = _monotonic()
        environ[ENVIRON_KEY] = request.measurement = Measurement(
            recorder.database, recorder.measurement
        )
        request.finished = False
        request.middleware = self
        request.environ = environ
        request.start_response = start_response
        request.status = 500
        request.body_bytes = 0
        request.declared = None
        request.rule = _UNKNOWN
        try:
            result = self.app(environ, request.start)
        except BaseException as error:
            request.complete(error if isinstance(error, Exception) else None)
            raise
        file_wrapper = environ.get('wsgi.file_wrapper')
        if file_wrapper is not None and (
            isinstance(file_wrapper, type) and isinstance(result, file_wrapper)
        ):
            return self._file_response(request, result)
        request.result = result
        return request

    def _file_response(
        self, request: _Request, result: Iterable[bytes]
    ) -> Iterable[bytes]:
        """Record a response built on the server's ``wsgi.file_wrapper``.

        The server sends such a file its own way (sendfile): it is handed
        over as it is, with the length its headers declare.
        """
        declared = request.declared
        # (A length no file has is not recorded: 0.)
        request.body_bytes = (
            declared if declared is not None and 0 <= declared < 2**63 else 0
        )
        request.complete(None)
        return result

    if TYPE_CHECKING or _compiled is None:
        __call__ = _call_py

    def endpoint(
        self, environ: dict[str, Any], rule: Any = _UNKNOWN
    ) -> tuple[str | None, str | None]:
        """The URL rule and the handler's name of a served request.

        :param environ: the request's environment, after the application
            ran
        :param rule: the rule the application matched (Flask's
            ``request.url_rule``, ``None`` for none); when not given, the
            request is matched against the ``url_map``
        :returns: ``(rule, handler)``, ``None`` for what is not known
        """
        if rule is _UNKNOWN:
            rule = None
            if self.url_map is not None:
                try:
                    rule, _ = self.url_map.bind_to_environ(environ).match(
                        return_rule=True
                    )
                except HTTPException:  # 404, 405, a redirect
                    rule = None
        if rule is None:
            return None, None
        cached = self._rules.get(id(rule))
        if cached is not None and cached[0] is rule:
            return cached[1], cached[2]
        text = rule.rule
        name = self._handler_name(rule.endpoint)
        rules = self._rules
        if len(rules) >= _CACHE_LIMIT:
            rules.clear()
        rules[id(rule)] = (rule, text, name)
        return text, name

    def _handler_name(self, endpoint: Any) -> str | None:
        if not isinstance(endpoint, str):
            return _dotted(endpoint) if callable(endpoint) else None
        name = self._handlers.get(endpoint)
        if name is None:
            views = getattr(self._flask, 'view_functions', {})
            view = views.get(endpoint)
            # Class-based views: the class, not the function as_view made.
            view = getattr(view, 'view_class', view)
            name = _dotted(view) if view is not None else endpoint
            self._handlers[endpoint] = name
        return name


def post_worker_init(worker: object) -> None:
    """A gunicorn server hook: have the worker's stop signals deliver.

    Needed with ``--preload`` and ``gthread`` workers only.  A gthread
    worker handling a terminal's ``SIGINT`` and its master's ``SIGQUIT``
    together can hang in gunicorn's handler until the master kills it; a
    worker's handlers are made after the middleware was, so unless this
    hook runs, what that worker buffered is lost then.  Without
    ``--preload``, the middleware made in each worker sees to it itself
    (:mod:`sprockets_influxdb.stop_signals`).  In ``gunicorn.conf.py``:

    .. code-block:: python

        from sprockets_influxdb.wsgi import post_worker_init

    :param worker: the gunicorn worker, in whose main thread it runs
    """
    stop_signals.watch()


def _dotted(handler: Any) -> str:
    return (
        f'{getattr(handler, "__module__", "")}.'
        f'{getattr(handler, "__qualname__", type(handler).__name__)}'
    )


def _find_flask(app: Any) -> Any:
    """The Flask application at the end of a chain of WSGI middleware.

    ``app`` is a Flask application, its bound ``wsgi_app``, or middleware
    (``ProxyFix`` and the like) that keeps what it wraps as ``app`` or
    ``wsgi_app``.
    """
    for _ in range(32):
        if app is None or hasattr(app, 'view_functions'):
            return app
        app = (
            getattr(app, '__self__', None)
            or getattr(app, 'app', None)
            or getattr(app, 'wsgi_app', None)
        )
    return None


_MARK = 'sprockets_influxdb'
# Rules cached (an application's URL map is finite; this bounds one that
# makes rules on the fly).
_CACHE_LIMIT = 4096


def _watch_exceptions(flask_app: Any) -> bool:
    """Have Flask's signal tell the middleware of uncaught exceptions.

    Flask turns them into 500 responses itself: they never reach the
    middleware.

    :returns: whether Flask's signals work (before Flask 2.3 they need the
        ``blinker`` package)
    """
    extensions = getattr(flask_app, 'extensions', None)
    if isinstance(extensions, dict) and extensions.get(_MARK):
        return True
    from flask import got_request_exception, request

    def error(sender: Any, exception: BaseException, **_: Any) -> None:
        request.environ[_ERROR_KEY] = exception

    try:
        got_request_exception.connect(error, flask_app, weak=False)
    except RuntimeError:  # Flask < 2.3 without blinker
        LOGGER.warning(
            'Flask signals need the blinker package: uncaught exceptions '
            'are recorded as 500 without the error tag'
        )
        return False
    if isinstance(extensions, dict):
        extensions[_MARK] = True
    return True


if TYPE_CHECKING:
    _RequestBase = object
else:
    # The compiled base holds the attributes and does start, the iteration,
    # close and complete in C for the common case, leaving the rest to the
    # _py methods below (see _speedups.c).
    _RequestBase = object if _compiled is None else _compiled.WSGIRecordBase


class _Request(RequestRecord, _RequestBase):
    """One request going through the middleware, and its response body.

    The request's :class:`~sprockets_influxdb.request_metrics.RequestRecord`
    and the response iterable the server gets: one object per request.
    The body is counted, and the request recorded once the last byte is
    out.  The server iterates over it and then closes it; a test client
    may do neither.

    With the compiled extension, ``start``, the iteration, ``close`` and
    ``complete`` are its base's, which hands what it does not do itself to
    the ``_py`` methods here; in pure Python mode they are these methods.
    """

    __slots__ = (
        (
            'body_bytes',
            'declared',
            'environ',
            'middleware',
            'result',
            'rule',
            'start_response',
            'status',
            'write',
        )
        if _compiled is None
        else ()
    )

    # Set up by InfluxDBMiddleware.__call__ (no __init__: a frame less
    # per request): the RequestRecord attributes, and these.
    #: The middleware serving the request.
    middleware: InfluxDBMiddleware
    #: The request's WSGI environment.
    environ: dict[str, Any]
    #: The server's start_response.
    start_response: StartResponse
    #: The status the application gave (500 until it gives one).
    status: int
    #: Bytes of body the application yielded or wrote.
    body_bytes: int
    #: The Content-Length the application declared, if any.
    declared: int | None
    #: The rule the application matched, once it has answered.
    rule: Any
    #: The application's response iterable, once it returned one.
    result: Iterable[bytes]
    #: The server's write callable, once the application started.
    write: Callable[[bytes], object]

    def _start_py(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = None,
    ) -> Callable[[bytes], object]:
        """The ``start_response`` the application is given."""
        self.status = int(status[:3])
        declared: int | None = None
        for name, value in headers:
            if name == 'Content-Length' or name.lower() == 'content-length':
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
                break
        self.write = self.start_response(status, headers, exc_info)
        self.declared = declared
        # A werkzeug request (Flask's) is in the environ until the
        # application returns: the rule it matched, if it is Flask's.
        request = self.environ.get(_REQUEST_KEY)
        if request is not None:
            rule = getattr(request, 'url_rule', _UNKNOWN)
            if rule is not _UNKNOWN:
                self.rule = rule
        return self.counting_write

    def counting_write(self, data: bytes) -> object:
        """The legacy ``write()`` callable: its bytes count too."""
        self.body_bytes += len(data)
        return self.write(data)

    def _complete_py(
        self, error: BaseException | None, gone: bool = False
    ) -> None:
        """Record the request, once, with what the middleware saw.

        :param error: the exception that escaped the application, if any
        :param gone: whether the server stopped because sending failed
        """
        if self.finished:
            return
        environ = self.environ
        rule = self.rule
        endpoint: str | None
        handler: str | None
        try:
            cached = (
                None
                if rule is None or rule is _UNKNOWN
                else self.middleware._rules.get(id(rule))
            )
            if cached is not None and cached[0] is rule:
                endpoint, handler = cached[1], cached[2]
            else:
                endpoint, handler = self.middleware.endpoint(environ, rule)
        except Exception as failure:
            self.recorder.report_failure(
                'Could not find the URL rule of a request', failure
            )
            endpoint = handler = None
        if error is None:
            error = environ.get(_ERROR_KEY)
        self._finish(
            self.status,
            endpoint or UNMATCHED,
            handler,
            0 if self.method == 'HEAD' else self.body_bytes,
            error,
            gone,
            None,
        )

    def _iter_py(self) -> Iterator[bytes]:
        try:
            for chunk in self.result:
                self.body_bytes += len(chunk)
                declared = self.declared
                if (
                    declared is not None
                    and self.body_bytes >= declared
                    and not self.finished
                ):
                    # The last chunk: recorded before the server has it.
                    self.complete(None)
                yield chunk
        except GeneratorExit:
            raise
        except Exception as error:
            self.complete(error)
            raise
        if not self.finished:  # no Content-Length reached
            self.complete(None)

    def _close_py(self) -> None:
        """Close the application's iterable, then record the request."""
        if self.finished:
            # Recorded at its last byte already (the usual case).
            close = getattr(self.result, 'close', None)
            if close is not None:
                close()
            return
        # Closed by a server whose sending failed: the exception is still
        # on its way (a server closes the response in a finally clause).
        sending_failed = sys.exc_info()[0] is not None
        error: BaseException | None = None
        try:
            close = getattr(self.result, 'close', None)
            if close is not None:
                close()
        except Exception as caught:
            error = caught
            raise
        finally:
            if not self.finished:
                # A HEAD response may go unread.
                gone = (
                    error is None and sending_failed and self.method != 'HEAD'
                )
                self.complete(error, gone=gone)

    def _released(self) -> None:
        """Record a response neither exhausted nor closed when it is freed.

        A test client that only looked at the status does that: recorded
        with the status the application gave.  (Called for an unfinished
        record only; what it raises is ignored.)
        """
        self.complete(None)

    if TYPE_CHECKING or _compiled is None:
        start = _start_py
        complete = _complete_py
        __iter__ = _iter_py
        close = _close_py


# A _Request without RequestRecord.__init__ (InfluxDBMiddleware._call_py
# sets it up).
_new = _Request.__new__

if _compiled is not None:
    _compiled.configure_wsgi(
        _UNKNOWN,
        _ERROR_KEY,
        _REQUEST_KEY,
        ENVIRON_KEY,
        _Request,
    )
