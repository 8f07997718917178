"""Request metrics: one measurement per HTTP request, for every framework.

The Tornado mixin, the ASGI middleware and the WSGI middleware all describe
a request to a :class:`RequestRecorder` and let it build the measurement, so
that one request gives the same line whichever framework served it:

* tags ``method`` (one of :data:`STANDARD_METHODS` or of the methods
  added by a setting, else :data:`OTHER_METHOD`), ``endpoint`` (the route
  template, or :data:`UNMATCHED`), ``handler``, ``status_code``,
  ``status_class`` and, when an exception escaped, ``error``; plus the base
  tags.  None of them takes its value from what a client sends, so no
  client can make a series of its own;
* fields ``duration`` (seconds, monotonic clock, from the start of the
  request to the last byte of the response) and ``content_length`` (bytes of
  body actually sent).

This module imports no web framework.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Callable

from sprockets_influxdb import measurement as _measurement_module
from sprockets_influxdb import stop_signals
from sprockets_influxdb._logging import Throttle, shorten
from sprockets_influxdb.clock import arrival, give_back
from sprockets_influxdb.measurement import Measurement, _compiled

if TYPE_CHECKING:
    from sprockets_influxdb.client import Client

__all__ = [
    'METHODS_VARIABLE',
    'OTHER_METHOD',
    'STANDARD_METHODS',
    'UNMATCHED',
    'RequestRecord',
    'RequestRecorder',
    'middleware_recorder',
    'stand_in',
]

LOGGER = logging.getLogger('sprockets_influxdb')

#: The ``endpoint`` of requests that matched no route (404 and 405
#: included): never the raw path, which would make the tag unbounded.
UNMATCHED = '<unmatched>'

#: The status recorded for a client that went away before the response was
#: complete (nginx's convention).
CLIENT_CLOSED_REQUEST = 499

#: The methods recorded as they are: those of RFC 9110 and ``PATCH``.
STANDARD_METHODS = frozenset(
    {
        'GET',
        'HEAD',
        'POST',
        'PUT',
        'DELETE',
        'CONNECT',
        'OPTIONS',
        'TRACE',
        'PATCH',
    }
)

#: The ``method`` tag of a request with any other method (OpenTelemetry's
#: convention): a client sending ``FOOBAR1``, ``FOOBAR2``... makes no new
#: series.
OTHER_METHOD = '_OTHER'

#: The environment variable of methods to record beside the standard ones,
#: separated by commas (``PROPFIND,PURGE``).
METHODS_VARIABLE = 'INFLUXDB_HTTP_METHODS'

# A method is an RFC 9110 token; longer ones are not worth a series.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")

_monotonic = time.monotonic
_STATUS_CLASSES = {code: f'{code // 100}xx' for code in range(100, 600)}
# The tags a request is given, validated, per (method, endpoint, handler,
# status): values from bounded sets (the methods, the application's routes
# and handlers, the statuses it answers with), and at most this many kept.
_TAG_CACHE_LIMIT = 4096
_REQUEST_TAG_KEYS = (
    'method',
    'endpoint',
    'handler',
    'status_code',
    'status_class',
)


def _default_measurement() -> str:
    return os.environ.get('SERVICE') or 'request'


def _methods(extra: Iterable[str] | None) -> frozenset[str]:
    """The standard methods and *extra* (default: from the environment)."""
    name = 'methods'
    if extra is None:
        name = METHODS_VARIABLE
        text = os.environ.get(METHODS_VARIABLE, '')
        extra = [part.strip() for part in text.split(',') if part.strip()]
    elif isinstance(extra, str):
        raise ValueError(f'{name} must be a list of methods, not {extra!r}')
    methods = set(STANDARD_METHODS)
    for method in extra:
        if not isinstance(method, str) or not _TOKEN.fullmatch(method):
            raise ValueError(
                f'{name}: {method!r} is not an HTTP method (a token of at '
                "most 32 letters, digits and !#$%&'*+.^_`|~-)"
            )
        methods.add(method)
    return frozenset(methods)


def stand_in(
    database: str | None = None, name: str | None = None
) -> Measurement:
    """A measurement handlers may use for a request that is not recorded.

    For an excluded path, or an integration without a database: handlers
    reach the request's measurement the same way, and what they set on it
    goes nowhere.

    :param database: the database it would have gone to
    :param name: the measurement name it would have had
    """
    return Measurement(database or 'unrecorded', name or 'request')


def _adds_plainly(recorder: RequestRecorder, client: Client) -> bool:
    """Whether the library's own ``add_measurement`` would queue for *client*.

    Not when a test mocked it on the client or its class, or, for the
    default client, the package's: the request's measurement is then
    handed to the mock.
    """
    own = recorder._own_adds
    method = client.add_measurement
    if (
        getattr(method, '__func__', None) is not own[0]
        or getattr(method, '__self__', None) is not client
    ):
        return False
    package = recorder._package
    return package is None or package.add_measurement is own[1]


if TYPE_CHECKING:
    _RecorderBase = object
else:
    # The compiled base keeps the attributes read for every request in C
    # fields (see RecorderBase in _speedups.c); they read and set as usual.
    _RecorderBase = object if _compiled is None else _compiled.RecorderBase


class RequestRecorder(_RecorderBase):
    """Turns what a server knows about requests into measurements.

    One recorder is made per application (middleware instance, Tornado
    application); it holds no per-request state.

    :param database: the database request measurements are written to
    :param measurement: the measurement name (default: the ``SERVICE``
        environment variable, else ``request``)
    :param exclude_paths: regular expressions; a request whose path matches
        one of them (:func:`re.match`, from the start) is not recorded
    :param add_measurement: what to hand finished measurements to (default:
        :func:`sprockets_influxdb.add_measurement`, the default client)
    :param methods: methods to record as they are beside
        :data:`STANDARD_METHODS` (default: those of the
        ``INFLUXDB_HTTP_METHODS`` environment variable); any other is
        recorded as :data:`OTHER_METHOD`
    :raises ValueError: for an empty database, an invalid measurement name,
        an invalid regular expression or an invalid method

    The expressions of *exclude_paths* run on the path of every request,
    which the client chooses: use expressions that take linear time
    (no nested repetition such as ``(a+)+``).
    """

    def __init__(
        self,
        database: str,
        measurement: str | None = None,
        exclude_paths: Iterable[str] = (),
        add_measurement: Callable[[Measurement], None] | None = None,
        methods: Iterable[str] | None = None,
    ) -> None:
        if not isinstance(database, str) or not database:
            raise ValueError(
                f'database must be a non-empty str, not {database!r}'
            )
        name = measurement or _default_measurement()
        Measurement(database, name)  # validates the name
        patterns = []
        for pattern in exclude_paths:
            try:
                patterns.append(re.compile(pattern))
            except re.error as error:
                raise ValueError(
                    f'exclude_paths: {pattern!r} is not a regular '
                    f'expression: {error}'
                ) from None
        self.database = database
        self.measurement = name
        self.methods = _methods(methods)
        self._excluded = patterns
        # The logging of each kind of failure.
        self._failures: dict[str, Throttle] = {}
        # The request tags of each (method, endpoint, handler, status):
        # the tags to set and the tags to remove (an empty value or None).
        self._tag_sets: dict[
            tuple[str, str, str | None, int],
            tuple[dict[str, str], tuple[str, ...]],
        ] = {}
        # The whole tags of each, for a measurement that still has the
        # base tags it started with (the default tags dict they are for,
        # and the tags): shared by every such request, never changed.
        self._whole_tags: dict[
            tuple[str, str, str | None, int],
            tuple[dict[str, str], dict[str, str]],
        ] = {}
        # A client's own add_measurement is done here without its frame
        # (see RequestRecord.finish): that client, or the package, whose
        # default client is looked up per request (install() replaces it).
        # A test's mock of add_measurement (on that client, its class or the
        # package) is called instead, found per request by comparing with
        # the library's own functions.
        import sprockets_influxdb
        from sprockets_influxdb.client import Client

        self._own_adds: tuple[Any, Any] = sprockets_influxdb._own_adds
        self._client: Client | None = None
        self._package: Any = None
        if add_measurement is None:
            add_measurement = sprockets_influxdb.add_measurement
            self._package = sprockets_influxdb
        else:
            owner = getattr(add_measurement, '__self__', None)
            if isinstance(owner, Client) and (
                getattr(add_measurement, '__func__', None) is self._own_adds[0]
            ):
                self._client = owner
        self._add = add_measurement

    def __repr__(self) -> str:
        return f'<RequestRecorder {self.database!r} {self.measurement!r}>'

    def report_failure(self, what: str, error: BaseException) -> None:
        """Log that something went wrong recording a request.

        What goes wrong can come from what a client sent: each kind of
        failure is logged at most every 5 seconds, with the number left
        out meanwhile, and its text is cut short; the traceback goes to
        the DEBUG level.

        :param what: what could not be done
        :param error: the exception
        """
        throttle = self._failures.get(what)
        if throttle is None:
            throttle = self._failures.setdefault(what, Throttle())
        more = throttle.allow()
        if more is None:
            return
        LOGGER.error(
            '%s: %s: %s%s',
            what,
            type(error).__name__,
            shorten(str(error)),
            more,
        )
        LOGGER.debug('%s', what, exc_info=error)

    def _request_tags(
        self, key: tuple[str, str, str | None, int]
    ) -> tuple[dict[str, str], tuple[str, ...]]:
        """Validate the tags of a kind of request once: (set, removed).

        :raises ValueError: for a value a tag cannot carry
        """
        method, endpoint, handler, status = key
        scratch = Measurement(self.database, self.measurement)
        tags = scratch.tags
        tags.clear()
        set_tag = scratch.set_tag
        set_tag('method', method)
        set_tag('endpoint', endpoint)
        set_tag('handler', handler)
        set_tag('status_code', str(status))
        set_tag('status_class', _STATUS_CLASSES.get(status, 'other'))
        removed = tuple(name for name in _REQUEST_TAG_KEYS if name not in tags)
        entry = (tags, removed)
        cache = self._tag_sets
        if len(cache) >= _TAG_CACHE_LIMIT:
            cache.clear()
        cache[key] = entry
        return entry

    def _whole(
        self, key: tuple[str, str, str | None, int], base: dict[str, str]
    ) -> dict[str, str]:
        """The tags of a kind of request on top of *base*, kept for reuse.

        :param key: (method, endpoint, handler, status)
        :param base: the default tags (the dict itself: a new one is made
            whenever they change)
        """
        entry = self._tag_sets.get(key)
        if entry is None:
            entry = self._request_tags(key)
        whole = dict(base)
        whole.update(entry[0])
        for name in entry[1]:
            whole.pop(name, None)
        cache = self._whole_tags
        if len(cache) >= _TAG_CACHE_LIMIT:
            cache.clear()
        cache[key] = (base, whole)
        return whole

    def excluded(self, path: str) -> bool:
        """Tell whether requests for *path* are left unrecorded.

        :param path: the request path
        """
        return any(pattern.match(path) for pattern in self._excluded)

    def start(self, method: str, path: str = '') -> RequestRecord | None:
        """Begin recording a request, when the server receives it.

        :param method: the HTTP method
        :param path: the request path, only used for :meth:`excluded`
        :returns: the record to finish, or ``None`` for an excluded path
        """
        if self._excluded and self.excluded(path):
            return None
        return RequestRecord(self, method)


def middleware_recorder(
    database: str | None,
    measurement: str | None,
    exclude_paths: Iterable[str],
    client: Client | None,
    methods: Iterable[str] | None = None,
) -> RequestRecorder | None:
    """The recorder of an ``InfluxDBMiddleware``, or ``None`` without one.

    Without a database, an error is logged and the middleware serves
    requests unrecorded: a failed request would be worse than a missing
    metric.

    :param database: the database measurements are written to
    :param measurement: the measurement name
    :param exclude_paths: regular expressions of paths not to record
    :param client: the client to write with (default: the default client)
    :param methods: methods to record beside the standard ones
    :returns: the recorder, or ``None`` when there is no database
    :raises ValueError: for an invalid measurement name, expression or
        method
    """
    if not database:
        LOGGER.error(
            'InfluxDBMiddleware has no database (database=...): '
            'requests are served but not recorded'
        )
        return None
    # Built at import, in a worker's main thread: its stop signals are
    # watched even when requests are recorded in other threads (gunicorn
    # gthread).
    stop_signals.watch()
    recorder = RequestRecorder(
        database,
        measurement,
        exclude_paths,
        add_measurement=client.add_measurement if client else None,
        methods=methods,
    )
    from sprockets_influxdb.client import Client

    if isinstance(client, Client):
        # Its add_measurement is looked up per request, not kept: one a
        # test mocks later is called, and one mocked while the middleware
        # was made is not kept after the test (a MemoryClient's own is
        # called as well).
        recorder._client = client
    return recorder


if TYPE_CHECKING:
    _RecordBase = object
else:
    # The compiled base holds the attributes and does _finish() for the
    # common case, leaving the rest to _finish_py (see _speedups.c).
    _RecordBase = object if _compiled is None else _compiled.RequestRecordBase
if _compiled is not None:
    _compiled.configure_requests(UNMATCHED, OTHER_METHOD, Measurement)


def _dated_back(moment: int, seconds: float, arrived: float | None) -> int:
    """The time of the point of a request the library learnt of late.

    :param moment: the clock's time of its measurement, which nothing read
        (given back when another time is chosen)
    :param seconds: how long ago the request arrived
    :param arrived: when it arrived (:func:`time.time`), or ``None``
    :returns: the arrival on the process's lattice
        (:func:`~sprockets_influxdb.clock.arrival`); else, or on a clock
        coarser than a microsecond, *moment* moved back by whole
        microseconds, so that it still ends in the discriminator
    """
    stamp = None if arrived is None else arrival(arrived)
    if stamp is None:
        return moment - int(seconds * 1e6) * 1000
    if stamp != moment:
        give_back(moment)
    return stamp


class RequestRecord(_RecordBase):
    """One request being recorded; see :meth:`RequestRecorder.start`.

    Handlers add their own tags and fields to :attr:`measurement` while the
    request runs.  :meth:`finish` records it once; later calls do nothing.

    .. attribute:: recorder
       :type: RequestRecorder

       The recorder that started it.

    .. attribute:: method
       :type: str

       The ``method`` tag: the HTTP method, or :data:`OTHER_METHOD` for one
       the recorder does not record as it is.

    .. attribute:: started
       :type: float

       :func:`time.monotonic` at the start of the request (see
       :meth:`date_back`).

    .. attribute:: measurement
       :type: sprockets_influxdb.Measurement

       The measurement the request becomes.

    .. attribute:: finished
       :type: bool

       Whether :meth:`finish` was called.
    """

    __slots__ = (
        ('finished', 'measurement', 'method', 'recorder', 'started')
        if _compiled is None
        else ()
    )

    def __init__(self, recorder: RequestRecorder, method: str) -> None:
        self.recorder = recorder
        self.method = method if method in recorder.methods else OTHER_METHOD
        self.started = _monotonic()
        self.measurement = Measurement(recorder.database, recorder.measurement)
        self.finished = False

    def date_back(
        self, seconds: float, *, arrived: float | None = None
    ) -> None:
        """Move the start of the request back to its arrival.

        For an integration that learns of a request after it arrived.  The
        measurement's time moves back too and stays a time the library
        chose (kept apart from the other points of its series).

        :param seconds: how long ago the request arrived
        :param arrived: when it arrived, on the system clock
            (:func:`time.time`), when the server timed it: the
            measurement's time is then that moment exactly, rounded down to
            the process's discriminator
            (:func:`~sprockets_influxdb.clock.arrival`; on a system clock
            coarser than a microsecond, as without it).
            Without it, the time is the clock's less *seconds*, which also
            moves it by whatever passed between the two readings (a
            preemption, a long garbage collection): enough, now and then,
            to land on another request's time and replace its point.
        :raises ValueError: when *arrived* is not a finite time after 1970
            and before 2262
        """
        if arrived is not None and (
            not isinstance(arrived, (int, float))
            or isinstance(arrived, bool)
            or not 1e-6 <= arrived < 9.2e9
        ):
            raise ValueError(
                f'arrived must be a time.time() value, not {arrived!r}'
            )
        self.started -= seconds
        measurement = self.measurement
        # The clock's time of its creation, an int (no handler ran yet).
        measurement._time = _dated_back(
            measurement._time,  # type: ignore[arg-type]
            seconds,
            None if arrived is None else float(arrived),
        )

    def finish(
        self,
        status: int,
        *,
        endpoint: str | None,
        handler: str | None,
        content_length: int,
        error: BaseException | type[BaseException] | None = None,
        disconnected: bool = False,
        ended: float | None = None,
    ) -> None:
        """Record the request, once.

        The request's tags and fields are set on :attr:`measurement`,
        which is handed to the recorder's ``add_measurement``; except
        that, for a :class:`~sprockets_influxdb.Client` of the library's
        own class while it accepts everything, a measurement with no tag
        of the handlers' is queued as it would be, but without changing
        :attr:`measurement` and with tags shared by the requests of its
        kind (the request path's fast case).

        :param status: the status sent (or that would have been sent)
        :param endpoint: the route template as the framework declares it,
            or ``None`` when no route matched
        :param handler: dotted name of the handler class or view function
        :param content_length: bytes of body actually sent
        :param error: the exception that escaped the application, if any:
            the request is recorded as 500 with its class as ``error``
        :param disconnected: the client went away before the response was
            complete: recorded as 499
        :param ended: when the last byte was handed to the server
            (:func:`time.monotonic`; default: now)
        """
        self._finish(
            status,
            endpoint,
            handler,
            content_length,
            error,
            disconnected,
            ended,
        )

    def _finish_py(
        self,
        status: int,
        endpoint: str | None,
        handler: str | None,
        content_length: int,
        error: BaseException | type[BaseException] | None,
        disconnected: bool,
        ended: float | None,
    ) -> None:
        """:meth:`finish`, its arguments by position (the integrations').

        The compiled base's ``_finish`` does the common case itself and
        calls this for the rest.
        """
        if self.finished:
            return
        self.finished = True
        end = _monotonic() if ended is None else ended
        if error is not None:
            status = 500
        elif disconnected:
            status = CLIENT_CLOSED_REQUEST
        measurement = self.measurement
        recorder = self.recorder
        try:
            # A request no route served has no handler either, whatever
            # answered it (a 404 handler, a 405 from the route's methods).
            if endpoint is None or endpoint == UNMATCHED:
                endpoint = UNMATCHED
                handler = None
            key = (self.method, endpoint, handler, status)
            duration = end - self.started
            if not duration > 0.0:
                duration = 0.0
            if type(content_length) is not int:
                content_length = int(content_length)
            client = recorder._client
            if client is None and recorder._package is not None:
                client = recorder._package._default
            base = _measurement_module._default_tags
            plain = (
                client is not None
                and client._open_plain
                and _adds_plainly(recorder, client)
            )
            if (
                error is None
                and plain
                and client is not None
                and measurement.tags == base
            ):
                # The common case: the handlers set no tag, the client is
                # a plain one and open.  What add_measurement would queue,
                # without copying the tags (the whole tags of this kind of
                # request, made once) nor changing the measurement.
                whole = recorder._whole_tags.get(key)
                if whole is not None and whole[0] is base:
                    tags = whole[1]
                else:
                    tags = recorder._whole(key, base)
                given = measurement.fields
                values: dict[str, object] = dict(given) if given else {}
                values['duration'] = duration
                values['content_length'] = content_length
                signal = client._put(
                    measurement.database,
                    measurement.name,
                    tags,
                    values,
                    measurement._time,
                )
                if signal:
                    client._signalled(signal)
                return
            entry = recorder._tag_sets.get(key)
            if entry is None:
                entry = recorder._request_tags(key)
            tags = measurement.tags
            tags.update(entry[0])
            for name in entry[1]:
                tags.pop(name, None)
            if error is not None:
                kind = error if isinstance(error, type) else type(error)
                measurement.set_tag(
                    'error', f'{kind.__module__}.{kind.__qualname__}'
                )
            fields = measurement.fields
            fields['duration'] = duration
            fields['content_length'] = content_length
            if plain and client is not None:
                # Client.add_measurement, without its frame: the fields
                # are there, intake is open.
                signal = client._add(measurement)
                if signal:
                    client._signalled(signal)
            elif recorder._package is not None:
                # The package's add_measurement as it is now: a test's
                # mock of it, or the library's own for the default client.
                recorder._package.add_measurement(measurement)
            elif recorder._client is not None:
                recorder._client.add_measurement(measurement)
            else:
                recorder._add(measurement)
        except Exception as failure:
            # Recording must never fail a request.
            recorder.report_failure(
                'Could not record a request measurement', failure
            )

    def _released(self) -> None:
        """Called when the record is freed before it was finished.

        Nothing by default; an integration whose requests can end that
        way (a WSGI response neither exhausted nor closed) records the
        request here.  Exceptions it raises are ignored.
        """

    if _compiled is None:
        _finish = _finish_py

        def __del__(self) -> None:
            # The compiled base does this in C, without a frame for a
            # finished record.
            # (A record whose __init__ failed has no finished flag.)
            if not getattr(self, 'finished', True):
                with contextlib.suppress(Exception):
                    self._released()
