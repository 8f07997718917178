"""The official InfluxDB 2 and 3 clients as the reference for the wire format.

No InfluxDB 2 or 3 server can be installed on these machines.  What stands
in for them: the official clients, ``influxdb-client`` (InfluxDB 2.x) and
``influxdb3-python`` (InfluxDB 3), write one point to a loopback
:class:`~tests.servers.FaultServer`, which records exactly what they send
(:func:`capture_v2`, :func:`capture_v3`); and the servers' error answers,
shaped exactly as their documentation and source give them
(:data:`V2_ERRORS`, :data:`V3_ERRORS`, :func:`v3_partial_write`), are
played back to the clients to see what they make of them
(:func:`attempt_v2`, :func:`attempt_v3`).

Sources of the error shapes (GitHub repository, path):

InfluxDB 2.x (OSS), every error is ``{"code": ..., "message": ...}`` with
``Content-Type: application/json; charset=utf-8`` and the code repeated in
``X-Platform-Error-Code``, as recorded from a real server in the R client's
fixture https://rdrr.io/cran/influxdbclient/src/tests/testthat/localhost-8086/api/v2/write-00506d-dfdd53-POST.R
(404, ``{"code":"not found","message":"bucket \\"no-bucket\\" not found"}``):

- influxdata/openapi ``src/oss/paths/write.yml`` and
  ``src/cloud/paths/write.yml``: the ``POST /api/v2/write`` responses: 400
  ``LineProtocolError`` with the example ``{"code": "invalid", "message":
  "partial write error (2 written): unable to parse '...': ..."}``; 401
  ``AuthorizationError``; 404 ``ResourceNotFoundError``; 413
  ``LineProtocolLengthError`` (OSS) or nginx's HTML page (Cloud); 429
  (Cloud) and 503 with ``Retry-After``, "a non-negative decimal integer
  indicating the seconds to delay", and no body.
- influxdata/openapi ``src/common/responses/AuthorizationError.yml``:
  ``{"code":"unauthorized", "message":"unauthorized access"}``; the
  server's own text in influxdata/influxdb ``http/errors.go``
  (``UnauthorizedError``).
- influxdata/influxdb ``tenant/error_bucket.go`` (``bucket %q not found``)
  and ``tenant/error_org.go`` (``organization name \\"%s\\" not found``),
  code ``not found``.
- influxdata/influxdb ``http/write_handler_test.go``: the bodies as sent,
  byte for byte: ``{"code":"invalid","message":"unable to parse 'invalid':
  missing fields"}`` (400), ``{"code":"request too large","message":"unable
  to read data: points batch is too large"}`` (413), ``{"code":"not
  found","message":"bucket not found"}`` (404).

InfluxDB 3 (Core/Enterprise), influxdata/influxdb
``influxdb3_server/src/http.rs`` (``IntoResponse for Error``,
``authenticate``) and the tests in ``influxdb3_server/src/lib.rs``
(``write_lp_tests``), and the docs page
https://docs.influxdata.com/influxdb3/core/write-data/http-api/v3-write-lp/:

- a partial write (``accept_partial=true``, the default): 400,
  ``{"error":"partial write of line protocol occurred","data":[{
  "original_line":...,"line_number":N,"error_message":...}]}``, one entry
  per refused line, in that key order, compact, **no Content-Type
  header**; ``line_number`` is **1-based** (the second line of the body is
  2);
- ``accept_partial=false``: 400, ``{"error":"parsing failed for write_lp
  endpoint","data":{...}}`` with the first bad line as one object, not a
  list, and nothing written;
- 401 (no or unknown token) and 403 (token not allowed): empty body;
- 404 for an unknown database: ``database not found "NAME"`` as plain
  text (``influxdb3_write/src/write_buffer/mod.rs``,
  ``Error::DatabaseNotFound``); Core creates missing databases on write,
  so this is rare.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import typing

from tests.servers import FaultServer, RecordedRequest, Response

if typing.TYPE_CHECKING:
    import collections.abc

__all__ = [
    'BUCKET',
    'DATABASE',
    'FIELDS',
    'MEASUREMENT',
    'ORG',
    'PRECISIONS',
    'TAGS',
    'TIMESTAMPS',
    'TOKEN',
    'V2_ERRORS',
    'V2_PRECISION',
    'V3_ERRORS',
    'V3_PRECISION',
    'Attempt',
    'attempt_v2',
    'attempt_v2_batching',
    'attempt_v3',
    'capture_v2',
    'capture_v3',
    'parse_line',
    'reference_line',
    'v2_error',
    'v3_parse_failure',
    'v3_partial_write',
]

# -- the point every client writes -------------------------------------------

MEASUREMENT = 'cpu'
TAGS = {'host': 'a', 'region': 'eu'}
FIELDS: dict[str, object] = {'usage': 0.5, 'count': 3, 'ok': True, 'msg': 'hi'}
TIMESTAMP_NS = 1_700_000_000_123_456_789
#: The point's time at each precision (truncated).
TIMESTAMPS = {
    'ns': TIMESTAMP_NS,
    'us': TIMESTAMP_NS // 1_000,
    'ms': TIMESTAMP_NS // 1_000_000,
    's': TIMESTAMP_NS // 1_000_000_000,
}
PRECISIONS = ('ns', 'us', 'ms', 's')
#: ``precision`` query value of ``/api/v2/write`` for each precision.
V2_PRECISION = {'ns': 'ns', 'us': 'us', 'ms': 'ms', 's': 's'}
#: ``precision`` query value of ``/api/v3/write_lp`` for each precision.
V3_PRECISION = {
    'ns': 'nanosecond',
    'us': 'microsecond',
    'ms': 'millisecond',
    's': 'second',
}

TOKEN = 'my-token'
ORG = 'my-org'
BUCKET = 'my-bucket'
DATABASE = 'my-db'


def reference_line(precision: str = 'ns') -> str:
    """The point as both official clients serialise it.

    Tags and fields sorted by key (the clients sort them), the time at
    ``precision``.
    """
    return (
        'cpu,host=a,region=eu count=3i,msg="hi",ok=true,usage=0.5 '
        f'{TIMESTAMPS[precision]}'
    )


def parse_line(line: str) -> tuple[str, dict[str, str], dict[str, str], str]:
    """Split one line of line protocol, unescaping nothing.

    Returns ``(measurement, tags, fields, timestamp)`` with the raw text of
    tag and field values (``3i``, ``"hi"``, ``true``), so that two lines
    can be compared whatever the order of their tags and fields.
    """
    parts = _split(line, ' ')
    if len(parts) not in (2, 3):
        raise ValueError(f'not one line of line protocol: {line!r}')
    key = _split(parts[0], ',')
    tags = dict(_pair(item) for item in key[1:])
    fields = dict(_pair(item) for item in _split(parts[1], ','))
    return key[0], tags, fields, parts[2] if len(parts) == 3 else ''


def _pair(item: str) -> tuple[str, str]:
    name, sep, value = '', '', ''
    escaped = False
    for at, char in enumerate(item):
        if escaped:
            escaped = False
        elif char == '\\':
            escaped = True
        elif char == '=':
            name, sep, value = item[:at], '=', item[at + 1 :]
            break
    if not sep:
        raise ValueError(f'no "=" in {item!r}')
    return name, value


def _split(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside double quotes and escapes."""
    parts, start, quoted, escaped = [], 0, False, False
    for at, char in enumerate(text):
        if escaped:
            escaped = False
        elif char == '\\':
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append(text[start:at])
            start = at + 1
    parts.append(text[start:])
    return parts


# -- documented error answers -------------------------------------------------

_V2_JSON = 'application/json; charset=utf-8'


def v2_error(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """An InfluxDB 2.x error answer, as its HTTP error handler sends it."""
    body = json.dumps(
        {'code': code, 'message': message}, separators=(',', ':')
    )
    return Response(
        status,
        body,
        {
            'Content-Type': _V2_JSON,
            'X-Platform-Error-Code': code,
            **(headers or {}),
        },
    )


#: InfluxDB 2.x answers to ``POST /api/v2/write``, by name.  Sources in the
#: module docstring.  ``rate_limited`` and ``unavailable`` carry
#: ``Retry-After: 1`` and no body, as documented.
V2_ERRORS: dict[str, Response] = {
    # openapi src/oss/paths/write.yml, 400 example (explicit bucket schema)
    'partial_write': v2_error(
        400,
        'invalid',
        'partial write error (2 written): unable to parse '
        '\'air_sensor,service=S1,sensor=L1 temperature="90.5",humidity=70.0 '
        '1632850122\': schema: field type for field "temperature" not '
        'permitted by schema; got String but expected Float',
    ),
    # influxdb http/write_handler_test.go, "invalid line protocol"
    'invalid': v2_error(
        400, 'invalid', "unable to parse 'invalid': missing fields"
    ),
    # openapi src/common/responses/AuthorizationError.yml
    'unauthorized': v2_error(401, 'unauthorized', 'unauthorized access'),
    # influxdb tenant/error_bucket.go ErrBucketNotFoundByName
    'bucket_not_found': v2_error(404, 'not found', 'bucket "x" not found'),
    # influxdb tenant/error_org.go OrgNotFoundByName
    'org_not_found': v2_error(
        404, 'not found', 'organization name "x" not found'
    ),
    # influxdb http/write_handler_test.go, "large requests rejected"
    'too_large': v2_error(
        413,
        'request too large',
        'unable to read data: points batch is too large',
    ),
    # openapi src/cloud/paths/write.yml 429, src/oss/paths/write.yml 503
    'rate_limited': Response(429, b'', {'Retry-After': '1'}),
    'unavailable': Response(503, b'', {'Retry-After': '1'}),
}


def v3_partial_write(
    lines: collections.abc.Iterable[tuple[int, str, str]],
) -> Response:
    """InfluxDB 3's 400 for a partial write (``accept_partial=true``).

    ``lines`` gives ``(line_number, original_line, error_message)`` for each
    refused line, ``line_number`` counted from 1 as the server does.  The
    lines not listed were stored.
    """
    data = [
        {
            'original_line': original,
            'line_number': number,
            'error_message': message,
        }
        for number, original, message in lines
    ]
    return _v3_json(
        400, {'error': 'partial write of line protocol occurred', 'data': data}
    )


def v3_parse_failure(
    line_number: int, original_line: str, error_message: str
) -> Response:
    """InfluxDB 3's 400 with ``accept_partial=false``: nothing stored."""
    data = {
        'original_line': original_line,
        'line_number': line_number,
        'error_message': error_message,
    }
    return _v3_json(
        400, {'error': 'parsing failed for write_lp endpoint', 'data': data}
    )


def _v3_json(status: int, payload: object) -> Response:
    body = json.dumps(payload, separators=(',', ':'))
    return Response(status, body, guess_content_type=False)


#: InfluxDB 3 answers to ``POST /api/v3/write_lp``, by name.  Sources in
#: the module docstring.
V3_ERRORS: dict[str, Response] = {
    # influxdb3_server/src/lib.rs write_lp_tests, the same body
    'partial_write': v3_partial_write(
        [(2, 'cpu,host=a val= 123', 'No fields were provided')]
    ),
    'parse_failure': v3_parse_failure(
        1, 'cpu,host=a val= 123', 'No fields were provided'
    ),
    'unauthorized': Response(401),
    'forbidden': Response(403),
    'database_not_found': Response(
        404, 'database not found "x"', guess_content_type=False
    ),
}


# -- running the official clients --------------------------------------------


def _v2_point(precision: str) -> typing.Any:
    import influxdb_client

    point = influxdb_client.Point(MEASUREMENT)
    for name, value in TAGS.items():
        point.tag(name, value)
    for name, value in FIELDS.items():
        point.field(name, value)
    return point.time(TIMESTAMPS[precision], precision)


def _v3_point(precision: str) -> typing.Any:
    import influxdb_client_3

    point = influxdb_client_3.Point(MEASUREMENT)
    for name, value in TAGS.items():
        point.tag(name, value)
    for name, value in FIELDS.items():
        point.field(name, value)
    return point.time(TIMESTAMPS[precision], precision)


@contextlib.contextmanager
def _server(
    server: FaultServer | None,
) -> collections.abc.Iterator[FaultServer]:
    if server is not None:
        yield server
        return
    with FaultServer() as own:
        yield own


def _new_requests(server: FaultServer, before: int) -> list[RecordedRequest]:
    return server.wait_for_requests(len(server.requests))[before:]


def _last(requests: list[RecordedRequest]) -> RecordedRequest:
    if len(requests) != 1:
        raise AssertionError(f'{len(requests)} requests, not one')
    return requests[0]


def _write_v2(
    url: str,
    *,
    precision: str,
    gzip: bool,
    org: str | None,
    bucket: str,
    token: str,
) -> None:
    import influxdb_client
    from influxdb_client.client.write_api import SYNCHRONOUS

    client = influxdb_client.InfluxDBClient(
        url=url, token=token, org=org, enable_gzip=gzip
    )
    try:
        with client.write_api(write_options=SYNCHRONOUS) as api:
            api.write(bucket=bucket, record=_v2_point(precision))
    finally:
        client.close()


def _write_v3(
    url: str,
    *,
    precision: str,
    gzip: bool,
    database: str,
    token: str,
    options: dict[str, typing.Any],
) -> None:
    import influxdb_client_3

    client = influxdb_client_3.InfluxDBClient3(
        host=url,
        token=token,
        database=database,
        enable_gzip=gzip,
        **options,
    )
    try:
        client.write(record=_v3_point(precision))
    finally:
        client.close()


def _v3_options(
    org: str | None,
    auth_scheme: str | None,
    use_v2_api: bool | None,
    no_sync: bool | None,
    accept_partial: bool | None,
) -> dict[str, typing.Any]:
    given = {
        'org': org,
        'auth_scheme': auth_scheme,
        'write_use_v2_api': use_v2_api,
        'write_no_sync': no_sync,
        'write_accept_partial': accept_partial,
    }
    return {name: value for name, value in given.items() if value is not None}


def capture_v2(
    server: FaultServer | None = None,
    precision: str = 'ns',
    gzip: bool = False,
    *,
    org: str | None = ORG,
    bucket: str = BUCKET,
    token: str = TOKEN,
) -> RecordedRequest:
    """The request ``influxdb-client`` sends to write the point.

    ``InfluxDBClient(url, token, org, enable_gzip=gzip)``,
    ``write_api(write_options=SYNCHRONOUS).write(bucket, point)`` with the
    point's time at ``precision`` (``ns``, ``us``, ``ms`` or ``s``).  The
    server (a private one when ``None``) must answer 204.
    """
    with _server(server) as capture:
        before = len(capture.requests)
        _write_v2(
            capture.url,
            precision=precision,
            gzip=gzip,
            org=org,
            bucket=bucket,
            token=token,
        )
        return _last(_new_requests(capture, before))


def capture_v3(
    server: FaultServer | None = None,
    precision: str = 'ns',
    gzip: bool = False,
    *,
    use_v2_api: bool | None = None,
    no_sync: bool | None = None,
    accept_partial: bool | None = None,
    auth_scheme: str | None = None,
    org: str | None = None,
    database: str = DATABASE,
    token: str = TOKEN,
) -> RecordedRequest:
    """The request ``influxdb3-python`` sends to write the point.

    ``InfluxDBClient3(host=url, token, database, enable_gzip=gzip, ...)``
    then ``.write(point)``.  The options left ``None`` keep the client's
    defaults; the others are passed as ``write_use_v2_api``,
    ``write_no_sync``, ``write_accept_partial``, ``auth_scheme`` and
    ``org``.  The client's default endpoint is ``/api/v2/write``;
    ``use_v2_api=False`` switches it to ``/api/v3/write_lp``.
    """
    options = _v3_options(
        org, auth_scheme, use_v2_api, no_sync, accept_partial
    )
    with _server(server) as capture:
        before = len(capture.requests)
        _write_v3(
            capture.url,
            precision=precision,
            gzip=gzip,
            database=database,
            token=token,
            options=options,
        )
        return _last(_new_requests(capture, before))


@dataclasses.dataclass
class Attempt:
    """What an official client did with a scripted answer."""

    #: Every request it sent, first to last.
    requests: list[RecordedRequest]
    #: What it raised (or reported, in batching mode); ``None`` if nothing.
    error: BaseException | None

    @property
    def error_type(self) -> str:
        """``module.Class`` of :attr:`error`, or ``''``."""
        if self.error is None:
            return ''
        kind = type(self.error)
        return f'{kind.__module__}.{kind.__qualname__}'


def _attempt(
    server: FaultServer | None,
    response: Response,
    write: typing.Callable[[str], None],
) -> Attempt:
    with _server(server) as capture:
        capture.set_rule(lambda _request: response)
        before = len(capture.requests)
        error: BaseException | None = None
        try:
            write(capture.url)
        except Exception as exc:  # what the client raises is the result
            error = exc
        finally:
            capture.set_rule(None)
        return Attempt(_new_requests(capture, before), error)


def attempt_v2(
    response: Response,
    server: FaultServer | None = None,
    **options: typing.Any,
) -> Attempt:
    """``influxdb-client`` (SYNCHRONOUS) writing the point; every request
    is answered with ``response``.  ``options`` as for :func:`capture_v2`.
    """
    kwargs = {
        'precision': 'ns',
        'gzip': False,
        'org': ORG,
        'bucket': BUCKET,
        'token': TOKEN,
        **options,
    }
    return _attempt(server, response, lambda url: _write_v2(url, **kwargs))


def attempt_v3(
    response: Response,
    server: FaultServer | None = None,
    *,
    precision: str = 'ns',
    gzip: bool = False,
    use_v2_api: bool | None = None,
    no_sync: bool | None = None,
    accept_partial: bool | None = None,
    auth_scheme: str | None = None,
    org: str | None = None,
    database: str = DATABASE,
    token: str = TOKEN,
) -> Attempt:
    """``influxdb3-python`` writing the point; every request is answered
    with ``response``.  Options as for :func:`capture_v3`.
    """
    options = _v3_options(
        org, auth_scheme, use_v2_api, no_sync, accept_partial
    )

    def write(url: str) -> None:
        _write_v3(
            url,
            precision=precision,
            gzip=gzip,
            database=database,
            token=token,
            options=options,
        )

    return _attempt(server, response, write)


def attempt_v2_batching(
    response: Response,
    server: FaultServer | None = None,
    *,
    max_retries: int = 2,
) -> Attempt:
    """``influxdb-client``'s default (batching) ``WriteApi`` writing the
    point; every request is answered with ``response``.

    Retries are made fast (``retry_interval`` 1 ms, no jitter) so that a
    test can count them: the client retries a status of 429 or more up to
    ``max_retries`` times (honouring ``Retry-After`` if there is one, so
    give none), any other error never.  The error it gives up with is
    the one passed to its error callback.
    """
    import influxdb_client
    from influxdb_client.client.write_api import WriteOptions

    errors: list[BaseException] = []

    def write(url: str) -> None:
        options = WriteOptions(
            batch_size=1,
            flush_interval=10,
            jitter_interval=0,
            retry_interval=1,
            max_retries=max_retries,
            max_retry_delay=10,
            max_retry_time=30_000,
            exponential_base=2,
        )
        client = influxdb_client.InfluxDBClient(url=url, token=TOKEN, org=ORG)
        try:
            api = client.write_api(
                write_options=options,
                error_callback=lambda _conf, _data, exc: errors.append(exc),
            )
            api.write(bucket=BUCKET, record=_v2_point('ns'))
            api.close()  # flushes, waits for the retries
        finally:
            client.close()

    attempt = _attempt(server, response, write)
    if attempt.error is None and errors:
        attempt.error = errors[-1]
    return attempt
