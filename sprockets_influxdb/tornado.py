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
from typing import TYPE_CHECKING, Any, Union

from tornado import httputil, routing, web

from sprockets_influxdb import REQUEST_DATABASE
from sprockets_influxdb.measurement import Measurement, _compiled
from sprockets_influxdb.request_metrics import (
    OTHER_METHOD,
    UNMATCHED,
    RequestRecord,
    RequestRecorder,
    _dated_back,
    stand_in,
)

__all__ = ['EXCLUDE_PATHS', 'METHODS', 'InfluxDBMixin', 'NotFoundHandler']

LOGGER = logging.getLogger('sprockets_influxdb')

_monotonic = time.monotonic

#: Application setting: regular expressions of paths not to record.
EXCLUDE_PATHS = 'sprockets_influxdb.exclude_paths'

#: Application setting: HTTP methods recorded as they are beside the
#: standard ones (default: the ``INFLUXDB_HTTP_METHODS`` environment
#: variable); any other is recorded as ``_OTHER``.
METHODS = 'sprockets_influxdb.methods'

# The attribute of an application that holds what the mixin keeps for it.
_STATE = '_sprockets_influxdb_state'
# Entries of the per-application caches (handler classes, routers): an
# application's routing table is finite; this bounds what a program that
# makes classes or routers on the fly could make them hold.
_CACHE_LIMIT = 4096

# What a router's rules become for one handler class: the rules a request
# that reached the class may have matched, each as (the path expression
# when the rule matches paths, the matcher otherwise, the URL pattern
# without its trailing '$' or None, the router it leads to or None,
# whether its target is the class itself).
_Candidate = tuple[
    Any, Any, Union[str, None], Union[routing.RuleRouter, None], bool
]
_Candidates = tuple[int, list[_Candidate]]


class _State:
    """What the mixin keeps for an application."""

    __slots__ = ('fixed', 'names', 'recorder', 'routes')

    def __init__(self, recorder: RequestRecorder | None) -> None:
        self.recorder = recorder
        #: The dotted name of each handler class.
        self.names: dict[type, str] = {}
        #: The candidate rules of each (router, handler class).
        self.routes: dict[tuple[routing.RuleRouter, type], _Candidates] = {}
        #: The pattern of each handler class that one rule alone leads to,
        #: through at most two routers that match anything: (the first
        #: router and its number of rules then, the second router, or
        #: None, and its number of rules then, the pattern).
        self.fixed: dict[
            type,
            tuple[
                routing.RuleRouter,
                int,
                routing.RuleRouter | None,
                int,
                str | None,
            ],
        ] = {}

    def endpoint(
        self,
        router: routing.RuleRouter,
        request: httputil.HTTPServerRequest,
        cls: type,
    ) -> str | None:
        """The pattern of the rule that led *request* to *cls*.

        When a single rule leads to the class (the usual case), through at
        most two routers that match every request (the application's
        own), the pattern is kept in :attr:`fixed`, which the mixin reads
        before calling this: valid as long as none of them got new rules.
        """
        chain: list[tuple[routing.RuleRouter, int]] = []
        level = router
        while True:
            rules = level.rules
            key = (level, cls)
            entry = self.routes.get(key)
            if entry is None or entry[0] != len(rules):
                entry = self._candidates(key, rules)
            chain.append((level, len(rules)))
            candidates = entry[1]
            if len(candidates) != 1:
                break
            _, matcher, pattern, inner, direct = candidates[0]
            if direct:
                if len(chain) <= 2:
                    names = self.fixed
                    if len(names) >= _CACHE_LIMIT:
                        names.clear()
                    inner_router, inner_count = (
                        chain[1] if len(chain) == 2 else (None, 0)
                    )
                    names[cls] = (
                        chain[0][0],
                        chain[0][1],
                        inner_router,
                        inner_count,
                        pattern,
                    )
                return pattern
            if inner is None or type(matcher) is not routing.AnyMatches:
                break
            level = inner
        return self.pattern(router, request, cls)

    def name(self, cls: type) -> str:
        """The dotted name of a handler class."""
        name = self.names.get(cls)
        if name is None:
            names = self.names
            if len(names) >= _CACHE_LIMIT:
                names.clear()
            name = names[cls] = f'{cls.__module__}.{cls.__qualname__}'
        return name

    def pattern(
        self,
        router: routing.RuleRouter,
        request: httputil.HTTPServerRequest,
        cls: type,
    ) -> str | None:
        """The pattern of the innermost rule that matches *request*.

        Only the rules that could have led to *cls* are tried: a rule whose
        target is another handler class did not match, or the request would
        be served by that class.
        """
        rules = router.rules
        key = (router, cls)
        entry = self.routes.get(key)
        if entry is None or entry[0] != len(rules):
            entry = self._candidates(key, rules)
        path = request.path
        for regex, matcher, pattern, inner, _ in entry[1]:
            if regex is not None:
                if regex.match(path) is None:
                    continue
            elif matcher.match(request) is None:
                continue
            if inner is not None:
                found = self.pattern(inner, request, cls)
                if found is not None:
                    return found
                if pattern is None:
                    continue
            return pattern
        return None

    def _candidates(
        self, key: tuple[routing.RuleRouter, type], rules: list[routing.Rule]
    ) -> _Candidates:
        cls = key[1]
        candidates: list[_Candidate] = []
        for rule in rules:
            target = rule.target
            if (
                isinstance(target, type)
                and issubclass(target, web.RequestHandler)
                and target is not cls
            ):
                continue
            matcher = rule.matcher
            regex = None
            pattern = None
            if isinstance(matcher, routing.PathMatches):
                pattern = matcher.regex.pattern
                if pattern.endswith('$'):
                    pattern = pattern[:-1]
                if type(matcher) is routing.PathMatches:
                    regex = matcher.regex  # its match() is the regex's
            inner = target if isinstance(target, routing.RuleRouter) else None
            candidates.append((regex, matcher, pattern, inner, target is cls))
        entry = (len(rules), candidates)
        routes = self.routes
        if len(routes) >= _CACHE_LIMIT:
            routes.clear()
        routes[key] = entry
        return entry


def _state(application: web.Application) -> _State:
    state: _State | None = application.__dict__.get(_STATE)
    if state is not None:
        return state
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
    state = _State(recorder)
    setattr(application, _STATE, state)
    return state


def _pattern(
    router: routing.RuleRouter, request: httputil.HTTPServerRequest
) -> str | None:
    """The pattern of the innermost rule that matches *request*.

    All the rules are tried, in order (the fallback of a request that did
    not reach its handler class by routing).
    """
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


if TYPE_CHECKING:
    _RecordBase = object
else:
    # The compiled base holds the attributes and does the transforms in C,
    # and the recording for a handler class whose pattern and name are
    # kept, leaving the rest to InfluxDBMixin._influxdb_finish (see
    # _speedups.c).
    _RecordBase = object if _compiled is None else _compiled.TornadoRecordBase


class _Record(RequestRecord, _RecordBase):
    """A request to a handler: its record, and its last output transform.

    As the last of the handler's output transforms, it sees the body as it
    is handed to the connection (compressed, when a transform compresses
    it): it counts the body bytes and records the request as the last byte
    is handed over, when the body reaches the ``Content-Length`` declared,
    else when the handler finishes the response.  The handler lets go of it
    once finished (:attr:`handler` set to ``None``): a reference cycle
    between the two would leave every handler, its request and all they
    hold to the cyclic garbage collector instead of freeing them at once.
    """

    __slots__ = (
        ('body_bytes', 'declared', 'handler', 'head')
        if _compiled is None
        else ()
    )

    # Set up by _begin (no __init__: a frame less
    # per request): the RequestRecord attributes, and these.
    #: The handler, until it has finished.
    handler: InfluxDBMixin | None
    #: Whether the request is a HEAD (Tornado sends no body in answer).
    head: bool
    #: Bytes of body handed to the connection.
    body_bytes: int
    #: The Content-Length the handler declared, if any.
    declared: int | None

    if TYPE_CHECKING or _compiled is None:

        def transform_first_chunk(
            self,
            status_code: int,
            headers: httputil.HTTPHeaders,
            chunk: bytes,
            finishing: bool,
        ) -> tuple[int, httputil.HTTPHeaders, bytes]:
            """Count the first chunk; record the request if it is the last."""
            if not self.head:
                self.body_bytes += len(chunk)
            handler = self.handler
            if handler is None:
                return status_code, headers, chunk
            if finishing:
                handler._influxdb_finish(False, status_code)
            else:
                declared = headers.get('Content-Length')
                if declared is not None and declared.isdigit():
                    self.declared = int(declared)
                    if self.body_bytes >= self.declared:
                        handler._influxdb_finish(False, status_code)
            return status_code, headers, chunk

        def transform_chunk(self, chunk: bytes, finishing: bool) -> bytes:
            """Count a chunk; record the request if it is the last."""
            if not self.head:
                self.body_bytes += len(chunk)
            declared = self.declared
            handler = self.handler
            if handler is not None and (
                finishing
                or (declared is not None and self.body_bytes >= declared)
            ):
                handler._influxdb_finish(False)
            return chunk


class _Measurement:
    """The ``influxdb`` attribute of a handler whose request is not begun.

    A non-data descriptor: reading it (in ``initialize()``, say) begins the
    request, whose measurement then takes its place on the handler.
    """

    def __get__(self, handler: Any, owner: Any = None) -> Any:
        if handler is None:
            return self
        return handler._influxdb_begin()


if TYPE_CHECKING:
    _MixinBase = object
else:
    # The compiled base has _execute and on_finish in C (see _speedups.c):
    # a Python frame, a super() object and the packing of the arguments
    # less each, on every request.
    _MixinBase = object if _compiled is None else _compiled.TornadoMixinBase


class InfluxDBMixin(_MixinBase):
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

    if TYPE_CHECKING:
        influxdb: Measurement
    else:
        influxdb = _Measurement()
    application: web.Application
    request: httputil.HTTPServerRequest
    # Whether the request was begun; its record (None: not begun, excluded
    # or unrecorded); the class of an exception that escaped the handler.
    # (Class attributes, and no self.__dict__: reading that would make
    # every attribute of the handler slower to reach.)
    _influxdb_begun = False
    _influxdb_record: _Record | None = None
    _influxdb_error: type[BaseException] | None = None

    def _influxdb_begin(self) -> Measurement:
        """Begin recording the request, once; return its measurement.

        When the request is handled (``_execute``), or earlier when a
        handler reads :attr:`influxdb` first (in ``initialize()``).  The
        compiled ``_begin`` begins a request without its measurement, which
        the record makes when a handler first asks for it, here.
        """
        measurement = _begin(self)
        if measurement is None:
            record = self._influxdb_record
            assert record is not None
            measurement = record.measurement
        self.influxdb = measurement
        return measurement

    if _compiled is None or TYPE_CHECKING:
        # (Else the compiled base's, which do the same.)

        def _execute(
            self, transforms: list[Any], *args: bytes, **kwargs: bytes
        ) -> Any:
            if not self._influxdb_begun:
                _begin(self)
            # The record is the last of the output transforms.
            record = self._influxdb_record
            if record is not None:
                transforms.append(record)
            return super()._execute(transforms, *args, **kwargs)  # type: ignore[misc]

        def on_finish(self) -> None:
            """Record the request, then run any ``on_finish`` further down.

            The output transform has usually recorded it already.
            """
            record = self._influxdb_record
            if record is not None:
                if not record.finished:
                    self._influxdb_finish(False)
                # Nothing is written after finish(): break the cycle between
                # the handler and its transform, so that reference counting
                # frees the handler (Tornado breaks its own cycles likewise).
                record.handler = None
            super().on_finish()  # type: ignore[misc]

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Remember an exception that escaped the handler, then log it."""
        if value is not None and not isinstance(value, web.HTTPError):
            # Its class only: the exception, through its traceback, would
            # hold the handler in a reference cycle.
            self._influxdb_error = type(value)
        super().log_exception(typ, value, tb)  # type: ignore[misc]

    def on_connection_close(self) -> None:
        """Record a request whose client went away before it finished."""
        self._influxdb_finish(True)
        super().on_connection_close()  # type: ignore[misc]

    def _influxdb_finish(
        self, disconnected: bool, status: int | None = None
    ) -> None:
        record = self._influxdb_record
        if record is None or record.finished:
            return
        try:
            if status is None:
                status = self.get_status()  # type: ignore[attr-defined]
            cls = type(self)
            application = self.application
            state: _State = application.__dict__[_STATE]
            endpoint = None
            if status != 405:
                router = application.default_router
                if cls is application.settings.get('default_handler_class'):
                    # Reached by routing or as the fallback: try every rule.
                    pattern = _pattern(router, self.request)
                    if pattern is not None and pattern.endswith('$'):
                        pattern = pattern[:-1]
                    endpoint = pattern
                else:
                    # The pattern kept by _State.endpoint, while the
                    # routers have the rules they had then.
                    fixed = state.fixed.get(cls)
                    if (
                        fixed is not None
                        and fixed[0] is router
                        and len(router.rules) == fixed[1]
                        and (
                            fixed[2] is None or len(fixed[2].rules) == fixed[3]
                        )
                    ):
                        endpoint = fixed[4]
                    else:
                        endpoint = state.endpoint(router, self.request, cls)
            name = state.names.get(cls) or state.name(cls)
            record._finish(
                status,
                endpoint or UNMATCHED,
                name,
                record.body_bytes,
                self._influxdb_error,
                disconnected,
                None,
            )
        except Exception as error:
            # Recording must never disturb the application.
            record.recorder.report_failure(
                'Could not record a request measurement', error
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


def _begin_py(handler: InfluxDBMixin) -> Measurement:
    """Begin recording the handler's request, once; its measurement.

    (InfluxDBMixin._influxdb_begin; the compiled ``tornado_begin`` does
    the common case itself and leaves the rest to this.)
    """
    if handler._influxdb_begun:
        record = handler._influxdb_record
        if record is not None:
            # (Made now if the compiled _begin began it without.)
            return record.measurement
        return handler.influxdb
    handler._influxdb_begun = True
    application = handler.application
    request = handler.request
    state = application.__dict__.get(_STATE) or _state(application)
    recorder = state.recorder
    if recorder is None or (
        recorder._excluded and recorder.excluded(request.path)
    ):
        # Excluded or unrecorded: handlers may still use the attribute.
        measurement = stand_in(
            recorder.database if recorder else None,
            recorder.measurement if recorder else None,
        )
    else:
        # RequestRecord.__init__ and date_back(), inline: the handler
        # is made once the request has arrived (and its body, unless
        # streamed), so the start is dated back to its arrival, and
        # the measurement's time too.
        record = handler._influxdb_record = _new(_Record)
        record.recorder = recorder
        method = request.method or 'GET'
        record.method = method if method in recorder.methods else OTHER_METHOD
        ago = request.request_time()
        record.started = _monotonic() - ago
        measurement = record.measurement = Measurement(
            recorder.database, recorder.measurement
        )
        # The arrival Tornado timed, as it is: the clock's time dated back
        # by the age would add the time between the readings (a
        # preemption, a collection) and could land on another request's
        # time, replacing its point.
        start = getattr(request, '_start_time', None)
        measurement._time = _dated_back(
            measurement._time,  # type: ignore[arg-type]
            ago,
            start if type(start) is float else None,
        )
        record.finished = False
        record.handler = handler
        record.head = method == 'HEAD'
        record.body_bytes = 0
        record.declared = None
    handler.influxdb = measurement
    return measurement


# A _Record without RequestRecord.__init__ (_begin sets it up).
_new = _Record.__new__

if _compiled is None:
    _begin = _begin_py
else:
    _compiled.configure_tornado(
        _STATE, _Record, _begin_py, httputil.HTTPHeaders
    )
    _begin = _compiled.tornado_begin
