"""What the official InfluxDB 2 and 3 clients send, and make of errors.

These pin the wire format of ``influxdb-client`` and ``influxdb3-python``
(see tests/reference.py): an upgrade of either that changes what it sends
fails here first.
"""

from __future__ import annotations

import gzip
import json
import typing

import httpx
import pytest

# The test extra installs the official clients: missing, this module fails.
from influxdb_client_3.exceptions import (
    InfluxDBPartialWriteError as PartialWriteError,
)

from tests import reference
from tests.reference import (
    BUCKET,
    DATABASE,
    ORG,
    PRECISIONS,
    TOKEN,
    V2_ERRORS,
    V3_ERRORS,
    V3_PRECISION,
)
from tests.servers import FaultServer, Response


@pytest.fixture
def capture() -> typing.Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


# -- influxdb-client (InfluxDB 2.x) ------------------------------------------


@pytest.mark.parametrize('precision', PRECISIONS)
def test_v2_request(capture: FaultServer, precision: str) -> None:
    request = reference.capture_v2(capture, precision)
    assert request.method == 'POST'
    assert request.path == '/api/v2/write'
    assert request.query_items == [
        ('org', ORG),
        ('bucket', BUCKET),
        ('precision', precision),
    ]
    assert request.headers['authorization'] == f'Token {TOKEN}'
    assert request.headers['content-type'] == 'text/plain'
    assert request.headers['accept'] == 'application/json'
    assert request.headers['accept-encoding'] == 'identity'
    assert 'content-encoding' not in request.headers
    assert request.headers['user-agent'].startswith('influxdb-client-python/')
    assert request.body == reference.reference_line(precision).encode()


def test_v2_gzip(capture: FaultServer) -> None:
    request = reference.capture_v2(capture, gzip=True)
    assert request.query_items == [
        ('org', ORG),
        ('bucket', BUCKET),
        ('precision', 'ns'),
    ]
    assert request.headers['content-encoding'] == 'gzip'
    assert request.headers['accept-encoding'] == 'identity'
    assert request.headers['content-type'] == 'text/plain'
    assert gzip.decompress(request.body) == reference.reference_line().encode()
    assert request.text == reference.reference_line()


def test_v2_org_id_sent_as_org(capture: FaultServer) -> None:
    # An organization ID goes in ``org`` too, never ``orgID``.
    request = reference.capture_v2(capture, org='0123456789abcdef')
    assert request.query_items[0] == ('org', '0123456789abcdef')
    assert 'orgID' not in request.query


def test_v2_empty_org_sent_empty(capture: FaultServer) -> None:
    request = reference.capture_v2(capture, org='')
    assert request.query_items[0] == ('org', '')


def test_v2_no_org_refused_before_sending(capture: FaultServer) -> None:
    with pytest.raises(ValueError, match='org'):
        reference.capture_v2(capture, org=None)
    assert capture.requests == []


# -- influxdb3-python (InfluxDB 3) -------------------------------------------


@pytest.mark.parametrize('precision', PRECISIONS)
def test_v3_default_is_the_v2_endpoint(
    capture: FaultServer, precision: str
) -> None:
    request = reference.capture_v3(capture, precision)
    assert request.method == 'POST'
    assert request.path == '/api/v2/write'
    assert request.query_items == [
        ('org', 'default'),
        ('bucket', DATABASE),
        ('precision', precision),
    ]
    assert request.headers['authorization'] == f'Token {TOKEN}'
    assert request.headers['content-type'] == 'text/plain; charset=utf-8'
    assert request.headers['accept'] == 'application/json'
    assert 'content-encoding' not in request.headers
    assert request.headers['user-agent'].startswith('influxdb3-python/')
    assert request.body == reference.reference_line(precision).encode()


@pytest.mark.parametrize('precision', PRECISIONS)
def test_v3_write_lp(capture: FaultServer, precision: str) -> None:
    request = reference.capture_v3(capture, precision, use_v2_api=False)
    assert request.method == 'POST'
    assert request.path == '/api/v3/write_lp'
    assert request.query_items == [
        ('org', 'default'),
        ('db', DATABASE),
        ('precision', V3_PRECISION[precision]),
    ]
    assert request.headers['authorization'] == f'Token {TOKEN}'
    assert request.headers['content-type'] == 'text/plain; charset=utf-8'
    assert request.headers['accept'] == 'application/json'
    assert request.body == reference.reference_line(precision).encode()


def test_v3_write_lp_options(capture: FaultServer) -> None:
    request = reference.capture_v3(
        capture, use_v2_api=False, no_sync=True, accept_partial=False
    )
    assert request.query_items == [
        ('org', 'default'),
        ('db', DATABASE),
        ('precision', 'nanosecond'),
        ('no_sync', 'true'),
        ('accept_partial', 'false'),
    ]


def test_v3_write_lp_sends_only_what_differs_from_the_server(
    capture: FaultServer,
) -> None:
    # accept_partial=true and no_sync=false are the server's defaults:
    # the client leaves them out.
    request = reference.capture_v3(
        capture, use_v2_api=False, no_sync=False, accept_partial=True
    )
    names = [name for name, _value in request.query_items]
    assert names == ['org', 'db', 'precision']


def test_v3_no_sync_needs_the_v3_endpoint(capture: FaultServer) -> None:
    with pytest.raises(ValueError, match='no_sync'):
        reference.capture_v3(capture, no_sync=True)
    assert capture.requests == []


@pytest.mark.parametrize('use_v2_api', [True, False])
def test_v3_bearer(capture: FaultServer, use_v2_api: bool) -> None:
    request = reference.capture_v3(
        capture, use_v2_api=use_v2_api, auth_scheme='Bearer'
    )
    assert request.headers['authorization'] == f'Bearer {TOKEN}'


def test_v3_org(capture: FaultServer) -> None:
    assert reference.capture_v3(capture, org='').query_items[0] == ('org', '')
    request = reference.capture_v3(capture, org=ORG, use_v2_api=False)
    assert request.query_items[0] == ('org', ORG)


@pytest.mark.parametrize('use_v2_api', [True, False])
def test_v3_gzip(capture: FaultServer, use_v2_api: bool) -> None:
    request = reference.capture_v3(capture, gzip=True, use_v2_api=use_v2_api)
    assert request.headers['content-encoding'] == 'gzip'
    assert request.headers['accept-encoding'] == 'identity'
    assert request.text == reference.reference_line()


def test_capture_without_a_server() -> None:
    assert reference.capture_v2().body == reference.reference_line().encode()
    assert reference.capture_v3().path == '/api/v2/write'


# -- the documented error answers, as the capture server sends them ----------


def test_v2_error_answers(capture: FaultServer) -> None:
    capture.script(V2_ERRORS['bucket_not_found'])
    answer = httpx.post(f'{capture.url}/api/v2/write', content=b'x')
    assert answer.status_code == 404
    assert answer.content == (
        b'{"code":"not found","message":"bucket \\"x\\" not found"}'
    )
    assert answer.headers['content-type'] == 'application/json; charset=utf-8'
    assert answer.headers['x-platform-error-code'] == 'not found'


def test_v3_partial_write_answer(capture: FaultServer) -> None:
    # Byte for byte the body of influxdb3_server's write_lp_tests.
    capture.script(V3_ERRORS['partial_write'])
    answer = httpx.post(f'{capture.url}/api/v3/write_lp', content=b'x')
    assert answer.status_code == 400
    assert answer.content == (
        b'{"error":"partial write of line protocol occurred",'
        b'"data":[{"original_line":"cpu,host=a val= 123",'
        b'"line_number":2,"error_message":"No fields were provided"}]}'
    )
    assert 'content-type' not in answer.headers


def test_v3_partial_write_builder() -> None:
    response = reference.v3_partial_write(
        [(2, 'b x', 'bad'), (5, 'e y', 'worse')]
    )
    assert response.status == 400
    assert not response.guess_content_type
    assert json.loads(response.body) == {
        'error': 'partial write of line protocol occurred',
        'data': [
            {'original_line': 'b x', 'line_number': 2, 'error_message': 'bad'},
            {
                'original_line': 'e y',
                'line_number': 5,
                'error_message': 'worse',
            },
        ],
    }


def test_v3_unauthorized_is_empty(capture: FaultServer) -> None:
    capture.script(V3_ERRORS['unauthorized'])
    answer = httpx.post(f'{capture.url}/api/v3/write_lp', content=b'x')
    assert answer.status_code == 401
    assert answer.content == b''
    assert 'content-type' not in answer.headers


def test_query_items_keep_order_blanks_and_repeats(
    capture: FaultServer,
) -> None:
    httpx.post(f'{capture.url}/w?b=2&a=&b=1&c=%20x', content=b'')
    (request,) = capture.wait_for_requests(1)
    assert request.query_items == [
        ('b', '2'),
        ('a', ''),
        ('b', '1'),
        ('c', ' x'),
    ]
    assert request.query == {'b': '1', 'a': '', 'c': ' x'}


# -- what the clients do with them -------------------------------------------

V2_STATUSES = {
    'partial_write': 400,
    'invalid': 400,
    'unauthorized': 401,
    'bucket_not_found': 404,
    'org_not_found': 404,
    'too_large': 413,
    'rate_limited': 429,
    'unavailable': 503,
}


@pytest.mark.parametrize('name', sorted(V2_ERRORS))
def test_v2_client_raises_once(capture: FaultServer, name: str) -> None:
    attempt = reference.attempt_v2(V2_ERRORS[name], capture)
    assert len(attempt.requests) == 1  # never retried
    assert attempt.error_type == 'influxdb_client.rest.ApiException'
    error = typing.cast(typing.Any, attempt.error)
    assert error.status == V2_STATUSES[name]
    expected = V2_ERRORS[name].headers.get('Retry-After')
    assert error.retry_after == expected


@pytest.mark.parametrize('name', sorted(V2_ERRORS))
@pytest.mark.parametrize('use_v2_api', [True, False])
def test_v3_client_raises_once_on_v2_answers(
    capture: FaultServer, name: str, use_v2_api: bool
) -> None:
    attempt = reference.attempt_v3(
        V2_ERRORS[name], capture, use_v2_api=use_v2_api
    )
    assert len(attempt.requests) == 1
    assert attempt.error_type == (
        'influxdb_client_3.write_client.write_exceptions.ApiException'
    )
    error = typing.cast(typing.Any, attempt.error)
    assert error.status == V2_STATUSES[name]


@pytest.mark.parametrize('use_v2_api', [True, False])
def test_v3_client_partial_write(
    capture: FaultServer, use_v2_api: bool
) -> None:
    response = reference.v3_partial_write(
        [(2, 'b x', 'bad'), (5, 'e y', 'worse')]
    )
    attempt = reference.attempt_v3(response, capture, use_v2_api=use_v2_api)
    assert len(attempt.requests) == 1
    error = attempt.error
    assert isinstance(error, PartialWriteError)
    assert [
        (line.line_number, line.original_line, line.error_message)
        for line in error.line_errors
    ] == [(2, 'b x', 'bad'), (5, 'e y', 'worse')]
    assert str(error) == (
        'partial write of line protocol occurred:\n'
        '\tline 2: bad (b x)\n'
        '\tline 5: worse (e y)'
    )


@pytest.mark.parametrize(
    ('name', 'status'),
    [
        ('unauthorized', 401),
        ('forbidden', 403),
        ('database_not_found', 404),
    ],
)
def test_v3_client_raises_once_on_v3_answers(
    capture: FaultServer, name: str, status: int
) -> None:
    attempt = reference.attempt_v3(V3_ERRORS[name], capture, use_v2_api=False)
    assert len(attempt.requests) == 1
    error = typing.cast(typing.Any, attempt.error)
    assert error.status == status
    assert not isinstance(error, PartialWriteError)


def test_v3_client_parse_failure(capture: FaultServer) -> None:
    # accept_partial=false: one object, not a list; the client makes it
    # the same structured error, with one line.
    attempt = reference.attempt_v3(
        V3_ERRORS['parse_failure'],
        capture,
        use_v2_api=False,
        accept_partial=False,
    )
    assert len(attempt.requests) == 1
    assert attempt.requests[0].query['accept_partial'] == 'false'
    error = attempt.error
    assert isinstance(error, PartialWriteError)
    assert [
        (line.line_number, line.original_line, line.error_message)
        for line in error.line_errors
    ] == [(1, 'cpu,host=a val= 123', 'No fields were provided')]
    assert error.response.status == 400


def test_v2_client_sync_does_not_retry_5xx(capture: FaultServer) -> None:
    attempt = reference.attempt_v2(Response(500), capture)
    assert len(attempt.requests) == 1


@pytest.mark.parametrize('status', [429, 500, 503])
def test_v2_batching_retries_429_and_5xx(
    capture: FaultServer, status: int
) -> None:
    attempt = reference.attempt_v2_batching(
        Response(status), capture, max_retries=2
    )
    assert len(attempt.requests) == 3
    error = typing.cast(typing.Any, attempt.error)
    assert error.status == status
    # The same request each time.
    assert len({(r.target, r.body) for r in attempt.requests}) == 1


@pytest.mark.parametrize(
    'name', ['invalid', 'unauthorized', 'bucket_not_found', 'too_large']
)
def test_v2_batching_drops_4xx(capture: FaultServer, name: str) -> None:
    attempt = reference.attempt_v2_batching(V2_ERRORS[name], capture)
    assert len(attempt.requests) == 1
    error = typing.cast(typing.Any, attempt.error)
    assert error.status == V2_STATUSES[name]


# -- helpers -----------------------------------------------------------------


def test_parse_line() -> None:
    line = 'cpu,host=a,region=eu usage=0.5,count=3i,ok=true,msg="hi" 17'
    assert reference.parse_line(line) == (
        'cpu',
        {'host': 'a', 'region': 'eu'},
        {'usage': '0.5', 'count': '3i', 'ok': 'true', 'msg': '"hi"'},
        '17',
    )
    assert reference.parse_line(line) == reference.parse_line(
        'cpu,region=eu,host=a count=3i,msg="hi",ok=true,usage=0.5 17'
    )
    quoted = r'm\ x,t\,1=a\ b f="x, y=\"z\"",g=1i'
    assert reference.parse_line(quoted) == (
        r'm\ x',
        {r't\,1': r'a\ b'},
        {'f': r'"x, y=\"z\""', 'g': '1i'},
        '',
    )


def test_reference_line_is_the_brief_point() -> None:
    brief = (
        'cpu,host=a,region=eu usage=0.5,count=3i,ok=true,msg="hi" '
        f'{reference.TIMESTAMP_NS}'
    )
    assert reference.parse_line(brief) == reference.parse_line(
        reference.reference_line()
    )
