"""Tornado integration: :class:`InfluxDBMixin` records every request.

.. code-block:: python

    import sprockets_influxdb as influxdb
    from sprockets_influxdb.tornado import NotFoundHandler
    from tornado import web

    class RequestHandler(influxdb.InfluxDBMixin, web.RequestHandler):
        def get(self):
            self.influxdb.set_tag('customer', 'acme')  # optional extras
            self.write({'hello': 'world'})

    app = web.Application(
        [(r'/', RequestHandler)],
        default_handler_class=NotFoundHandler,
        **{influxdb.REQUEST_DATABASE: 'example', 'service': 'example'},
    )

Each request gives one measurement (see
:mod:`sprockets_influxdb.request_metrics`), named after the ``service``
application setting (else the ``SERVICE`` environment variable, else
``request``) and written to the database of the
:data:`~sprockets_influxdb.REQUEST_DATABASE` setting.  The ``endpoint`` tag
is the URL pattern of the innermost matching rule, without its trailing
``$``; ``duration`` runs from the arrival of the request until the last
byte of the response is handed to the connection, so a handler that
flushes several times is timed in full; ``content_length`` counts the body
bytes written to the connection.

A request is recorded as the last byte of its response is handed to the
connection, before the connection can have sent it: when the body written
reaches the ``Content-Length`` declared (Tornado declares it for every
response it buffers), else when the handler finishes the response.  So a
response a client received in full is recorded already, whatever happens
to the process next (a Ctrl-C right after, say).
"""

from __future__ import annotations

import logging
import time
import weakref
from asyncio import Future
from typing import Any, Callable

from tornado import httputil, routing, web

from sprockets_influxdb import REQUEST_DATABASE
from sprockets_influxdb.measurement import Measurement
from sprockets_influxdb.request_metrics import (
    UNMATCHED,
    RequestRecord,
    RequestRecorder,
    stand_in,
)

__all__ = ['EXCLUDE_PATHS', 'METHODS', 'InfluxDBMixin', 'NotFoundHandler']

LOGGER = logging.getLogger('sprockets_influxdb')

#: Application setting: regular expressions of paths not to record.
EXCLUDE_PATHS = 'sprockets_influxdb.exclude_paths'

#: Application setting: HTTP methods recorded as they are beside the
#: standard ones (default: the ``INFLUXDB_HTTP_METHODS`` environment
#: variable); any other is recorded as ``_OTHER``.
METHODS = 'sprockets_influxdb.methods'

_recorders: weakref.WeakKeyDictionary[web.Application, RequestRecorder | None]
_recorders = weakref.WeakKeyDictionary()


def _recorder(application: web.Application) -> RequestRecorder | None:
    try:
        return _recorders[application]
    except KeyError:
        pass
    settings = application.settings
    database = settings.get(REQUEST_DATABASE)
    recorder: RequestRecorder | None = None
    if not database:
        LOGGER.error(
            'The Tornado application setting %r (sprockets_influxdb.'
            'REQUEST_DATABASE) is not set: requests are served but not '
            'recorded',
            REQUEST_DATABASE,
        )
    else:
        try:
            recorder = RequestRecorder(
                database,
                settings.get('service'),
                settings.get(EXCLUDE_PATHS, ()),
                methods=settings.get(METHODS),
            )
        except ValueError:
            LOGGER.exception(
                'Invalid sprockets_influxdb settings: requests are served '
                'but not recorded'
            )
    _recorders[application] = recorder
    return recorder


def _pattern(
    router: routing.RuleRouter, request: httputil.HTTPServerRequest
) -> str | None:
    """The pattern of the innermost rule that matches *request*."""
    for rule in router.rules:
        if rule.matcher.match(request) is None:
            continue
        pattern = None
        if isinstance(rule.matcher, routing.PathMatches):
            pattern = rule.matcher.regex.pattern
        if isinstance(rule.target, routing.RuleRouter):
            inner = _pattern(rule.target, request)
            if inner is not None:
                return inner
        if pattern is not None or not isinstance(
            rule.target, routing.RuleRouter
        ):
            return pattern
    return None


class _CountingConnection(httputil.HTTPConnection):
    """Wraps a request's connection: counts the body bytes written.

    It also records the request as the last byte is handed over.
    """

    def __init__(self, connection: Any, complete: Callable[[], None]) -> None:
        self._connection = connection
        self._complete: Callable[[], None] | None = complete
        self._declared: int | None = None
        self.body_bytes = 0
        #: :func:`time.monotonic` when the response was complete.
        self.finished: float | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def set_close_callback(self, callback: Any) -> None:
        # Called twice per request: spared the __getattr__ detour.
        self._connection.set_close_callback(callback)

    def _last_bytes(self) -> None:
        """The response is complete: record it before it leaves."""
        complete = self._complete
        if complete is not None:
            self._complete = None  # and no cycle with the handler left
            self.finished = time.monotonic()
            complete()

    def write_headers(
        self,
        start_line: Any,
        headers: httputil.HTTPHeaders,
        chunk: bytes | None = None,
    ) -> Future[None]:
        declared = headers.get('Content-Length')
        if declared is not None and declared.isdigit():
            self._declared = int(declared)
        if chunk:
            self.body_bytes += len(chunk)
        if self._declared is not None and self.body_bytes >= self._declared:
            self._last_bytes()
        result: Future[None] = self._connection.write_headers(
            start_line, headers, chunk
        )
        return result

    def write(self, chunk: bytes) -> Future[None]:
        self.body_bytes += len(chunk)
        if self._declared is not None and self.body_bytes >= self._declared:
            self._last_bytes()
        result: Future[None] = self._connection.write(chunk)
        return result

    def finish(self) -> None:
        self._last_bytes()
        self._connection.finish()

    def forget(self) -> None:
        """Record nothing more (the request was recorded another way)."""
        self._complete = None


class InfluxDBMixin:
    """Record each request of a :class:`tornado.web.RequestHandler`.

    List it before :class:`~tornado.web.RequestHandler` in the bases.
    During the request, :attr:`influxdb` is the measurement the request
    becomes: add tags and fields to it.  An exception that escapes the
    handler is recorded once, as 500 with its class as the ``error`` tag;
    an :class:`~tornado.web.HTTPError` is recorded with its status.  A
    client that goes away first is recorded as 499.  When the application
    setting :data:`~sprockets_influxdb.REQUEST_DATABASE` is missing, an
    error is logged and requests are served unrecorded.

    .. attribute:: influxdb
       :type: sprockets_influxdb.Measurement

       The measurement of the current request.
    """

    influxdb: Measurement
    application: web.Application
    request: httputil.HTTPServerRequest

    def __init__(
        self,
        application: web.Application,
        request: httputil.HTTPServerRequest,
        **kwargs: Any,
    ) -> None:
        self._influxdb_error: BaseException | None = None
        self._influxdb_record: RequestRecord | None = None
        self._influxdb_connection: _CountingConnection | None = None
        recorder = _recorder(application)
        record = None
        if recorder is not None:
            record = recorder.start(request.method or 'GET', request.path)
        if record is None:
            # Excluded or unrecorded: handlers may still use the attribute.
            self.influxdb = stand_in(
                recorder.database if recorder else None,
                recorder.measurement if recorder else None,
            )
        else:
            # The handler is made once the request has arrived (and its
            # body, unless streamed): date the start back to its arrival.
            record.date_back(request.request_time())
            self.influxdb = record.measurement
            if request.connection is not None:
                counting = _CountingConnection(
                    request.connection, self._influxdb_complete
                )
                request.connection = counting
                self._influxdb_connection = counting
        self._influxdb_record = record
        super().__init__(application, request, **kwargs)  # type: ignore[call-arg]

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Remember an exception that escaped the handler, then log it."""
        if value is not None and not isinstance(value, web.HTTPError):
            self._influxdb_error = value
        super().log_exception(typ, value, tb)  # type: ignore[misc]

    def on_finish(self) -> None:
        """Record the request, then run any ``on_finish`` further down.

        The connection has usually recorded it already.
        """
        self._influxdb_finish(disconnected=False)
        super().on_finish()  # type: ignore[misc]

    def on_connection_close(self) -> None:
        """Record a request whose client went away before it finished."""
        self._influxdb_finish(disconnected=True)
        super().on_connection_close()  # type: ignore[misc]

    def _influxdb_complete(self) -> None:
        self._influxdb_finish(disconnected=False)

    def _influxdb_finish(self, disconnected: bool) -> None:
        record = self._influxdb_record
        if record is None or record.finished:
            return
        connection = self._influxdb_connection
        if connection is not None:
            connection.forget()
        try:
            self._influxdb_record_request(record, disconnected)
        except Exception as error:
            # Recording must never disturb the application.
            record.recorder.report_failure(
                'Could not record a request measurement', error
            )

    def _influxdb_record_request(
        self, record: RequestRecord, disconnected: bool
    ) -> None:
        connection = self._influxdb_connection
        status = self.get_status()  # type: ignore[attr-defined]
        endpoint = None
        if status != 405:
            pattern = _pattern(self.application.default_router, self.request)
            if pattern is not None:
                endpoint = pattern[:-1] if pattern.endswith('$') else pattern
        record.finish(
            status,
            endpoint=endpoint or UNMATCHED,
            handler=f'{type(self).__module__}.{type(self).__qualname__}',
            content_length=connection.body_bytes if connection else 0,
            error=self._influxdb_error,
            disconnected=disconnected,
            ended=connection.finished if connection else None,
        )


class NotFoundHandler(InfluxDBMixin, web.RequestHandler):
    """Answer 404 to requests no rule matched, and record them.

    Use it as the application's ``default_handler_class`` setting, so that
    unrouted requests are recorded with the ``endpoint`` tag
    :data:`~sprockets_influxdb.request_metrics.UNMATCHED`.
    """

    def prepare(self) -> None:
        """Answer 404 whatever the method."""
        raise web.HTTPError(404)
