"""The InfluxDB 2.x and 3 write APIs, against the official clients.

No InfluxDB 2 or 3 server can be installed on these machines.  What
stands in for them: the requests of the official clients
(``influxdb-client``, ``influxdb3-python``), captured by a loopback
server, which this library's must equal in method, path, query,
authorization and body; and the servers' documented error answers
(:mod:`tests.reference`), played back by the scripted server.
VictoriaMetrics, a real server, answers the v1 and v2 APIs in
``tests/test_victoria*.py``.
"""

from __future__ import annotations

import logging
import typing

import pytest

from sprockets_influxdb import Client, Measurement, Settings
from tests import reference
from tests.helpers import run_script
from tests.servers import FaultServer, RecordedRequest, Response

PRECISION = {'ns': 'n', 'us': 'u', 'ms': 'ms', 's': 's'}
# The reference point's time in seconds: exact to the microsecond as a
# float; at ns the library writes these digits, not the reference's.
SECONDS = 1_700_000_000.123456


def reference_point(database: str) -> Measurement:
    measurement = Measurement(database, reference.MEASUREMENT)
    # Only the reference point's tags, not the host's.
    measurement.tags.clear()
    for key, value in reference.TAGS.items():
        measurement.set_tag(key, value)
    for key, value in reference.FIELDS.items():
        measurement.set_field(key, typing.cast(typing.Any, value))
    measurement.set_timestamp(SECONDS)
    return measurement


def write_reference_point(
    server: FaultServer, database: str, **settings: typing.Any
) -> RecordedRequest:
    before = len(server.requests)
    client = Client(server.url, tag_hostname=False, **settings)
    try:
        client.add_measurement(reference_point(database))
        assert client.flush(10).result() is True
    finally:
        client.shutdown(5).result()
    (request,) = server.requests[before:]
    return request


def same_point(ours: str, theirs: str, precision: str) -> None:
    name, tags, fields, time = reference.parse_line(ours)
    assert (name, tags, fields) == reference.parse_line(theirs)[:3]
    if precision != 'ns':
        assert time == reference.parse_line(theirs)[3]


def scheme(request: RecordedRequest) -> str:
    return request.headers['authorization'].split(' ', 1)[0]


@pytest.mark.parametrize('gzip', [False, True])
@pytest.mark.parametrize('precision', reference.PRECISIONS)
def test_v2_requests_equal_influxdb_client(
    bare_fault_server: FaultServer, precision: str, gzip: bool
) -> None:
    theirs = reference.capture_v2(bare_fault_server, precision, gzip)
    ours = write_reference_point(
        bare_fault_server,
        reference.BUCKET,
        api='v2',
        token=reference.TOKEN,
        org=reference.ORG,
        precision=PRECISION[precision],
        gzip=gzip,
    )
    assert (ours.method, ours.path) == (theirs.method, theirs.path)
    assert ours.path == '/api/v2/write'
    assert ours.query_items == theirs.query_items
    assert ours.headers['authorization'] == theirs.headers['authorization']
    assert ours.headers.get('content-encoding') == theirs.headers.get(
        'content-encoding'
    )
    assert ours.headers['content-type'].startswith('text/plain')
    same_point(ours.text, theirs.text, precision)


@pytest.mark.parametrize(
    ('no_sync', 'accept_partial'),
    [(None, None), (True, None), (None, False), (True, False)],
)
@pytest.mark.parametrize('precision', reference.PRECISIONS)
def test_v3_requests_equal_influxdb3_python(
    bare_fault_server: FaultServer,
    precision: str,
    no_sync: bool | None,
    accept_partial: bool | None,
) -> None:
    theirs = reference.capture_v3(
        bare_fault_server,
        precision,
        use_v2_api=False,
        no_sync=no_sync,
        accept_partial=accept_partial,
        auth_scheme='Bearer',
        org=reference.ORG,
    )
    options: dict[str, bool] = {}
    if no_sync is not None:
        options['no_sync'] = no_sync
    if accept_partial is not None:
        options['accept_partial'] = accept_partial
    ours = write_reference_point(
        bare_fault_server,
        reference.DATABASE,
        api='v3',
        token=reference.TOKEN,
        org=reference.ORG,
        precision=PRECISION[precision],
        **options,
    )
    assert (ours.method, ours.path) == (theirs.method, theirs.path)
    assert ours.path == '/api/v3/write_lp'
    # The same parameters; the order differs and means nothing.
    assert sorted(ours.query_items) == sorted(theirs.query_items)
    assert ours.headers['authorization'] == theirs.headers['authorization']
    assert scheme(ours) == 'Bearer'
    same_point(ours.text, theirs.text, precision)


@pytest.mark.parametrize(
    ('api', 'path'),
    [('v1', '/write'), ('v2', '/api/v2/write'), ('v3', '/api/v3/write_lp')],
)
def test_gzip_for_every_api(
    bare_fault_server: FaultServer, api: str, path: str
) -> None:
    request = write_reference_point(
        bare_fault_server, 'db', api=api, token='t', gzip=True, precision='u'
    )
    assert request.path == path
    assert request.headers['content-encoding'] == 'gzip'
    same_point(request.text, reference.reference_line('us'), 'us')


def record(client: Client, database: str, count: int) -> None:
    for index in range(count):
        measurement = Measurement(database, 'cpu')
        measurement.set_tag('host', f'h{index % 10}')
        measurement.set_field('index', index)
        client.add_measurement(measurement)


def refuse(numbers: set[int], partial: bool = True) -> typing.Any:
    """A rule answering InfluxDB 3's 400 naming lines (from 1) it got."""

    def rule(request: RecordedRequest) -> Response:
        lines = request.lines
        if partial:
            refused = [
                (number, lines[number - 1], 'invalid column type')
                for number in sorted(numbers)
                if number <= len(lines)
            ]
            if not refused:
                return Response(204)
            return reference.v3_partial_write(refused)
        for number, line in enumerate(lines, 1):
            if any(f' index={n}i ' in line for n in bad):
                return reference.v3_parse_failure(number, line, 'bad')
        return Response(204)

    bad: list[int] = []
    return rule, bad


def test_a_v3_partial_write_drops_exactly_the_lines_listed(
    bare_fault_server: FaultServer, caplog: pytest.LogCaptureFixture
) -> None:
    rule, _ = refuse({2, 2500, 5000})
    bare_fault_server.set_rule(rule)
    client = Client(
        bare_fault_server.url,
        api='v3',
        token='secret-token-v3',
        tag_hostname=False,
        max_batch_size=5000,
    )
    with caplog.at_level(logging.ERROR, logger='sprockets_influxdb'):
        record(client, 'db', 5000)
        client.flush(10).result()
    stats = client.stats()
    client.shutdown(5).result()
    (request,) = bare_fault_server.requests
    assert len(request.lines) == 5000
    assert stats.requests == 1
    assert stats.written == 4997
    assert stats.dropped['rejected'] == 3
    assert stats.buffered == 0
    rejected = [
        r.getMessage()
        for r in caplog.records
        if 'rejected a line' in r.getMessage()
    ]
    assert len(rejected) == 3
    assert all("database 'db'" in text for text in rejected)
    assert 'secret-token-v3' not in caplog.text


def test_v3_without_partial_writes_sends_the_good_lines_again(
    bare_fault_server: FaultServer,
) -> None:
    rule, bad = refuse(set(), partial=False)
    bad.extend([3, 7])
    bare_fault_server.set_rule(rule)
    client = Client(
        bare_fault_server.url,
        api='v3',
        token='t',
        accept_partial=False,
        tag_hostname=False,
    )
    record(client, 'db', 10)
    client.flush(10).result()
    stats = client.stats()
    client.shutdown(5).result()
    requests = bare_fault_server.requests
    assert {r.query['accept_partial'] for r in requests} == {'false'}
    # Each answer names the first bad line: the lines before it (which
    # the server parsed) are sent again, then those after it.
    assert [len(r.lines) for r in requests] == [10, 3, 6, 3, 2]
    assert stats.written == 8
    assert stats.dropped['rejected'] == 2


def test_v3_without_partial_writes_keeps_lines_beyond_the_budget(
    bare_fault_server: FaultServer,
) -> None:
    rule, bad = refuse(set(), partial=False)
    bad.extend(range(0, 1000, 10))  # 100 bad lines in 1,000
    bare_fault_server.set_rule(rule)
    client = Client(
        bare_fault_server.url,
        api='v3',
        token='t',
        accept_partial=False,
        tag_hostname=False,
        backoff_base=0.001,
        backoff_max=0.002,
    )
    record(client, 'db', 1000)
    assert client.flush(30).result() is True
    stats = client.stats()
    client.shutdown(5).result()
    # No good line is given up: they are sent again with a new budget.
    assert (stats.written, stats.dropped['rejected']) == (900, 100)
    assert stats.retries >= 1


def test_a_v3_400_not_about_lines_stored_nothing(
    bare_fault_server: FaultServer,
) -> None:
    bare_fault_server.set_rule(
        lambda request: Response(400, 'unsupported path requested')
    )
    client = Client(
        bare_fault_server.url, api='v3', token='t', tag_hostname=False
    )
    record(client, 'db', 100)
    client.flush(10).result()
    stats = client.stats()
    client.shutdown(5).result()
    assert (stats.written, stats.dropped['rejected']) == (0, 100)


def test_a_v3_partial_write_listing_lines_as_the_server_renders_them(
    bare_fault_server: FaultServer,
) -> None:
    """``original_line`` is the server's rendering: the number is trusted."""

    def rule(request: RecordedRequest) -> Response:
        return reference.v3_partial_write(
            [(n, f'cpu index={n}', 'invalid column type') for n in (5, 9)]
        )

    bare_fault_server.set_rule(rule)
    client = Client(
        bare_fault_server.url, api='v3', token='t', tag_hostname=False
    )
    record(client, 'db', 1000)
    client.flush(10).result()
    stats = client.stats()
    client.shutdown(5).result()
    assert len(bare_fault_server.requests) == 1
    assert (stats.written, stats.dropped['rejected']) == (998, 2)


def test_a_v2_422_partial_write_is_counted_as_the_server_says(
    bare_fault_server: FaultServer,
) -> None:
    """InfluxDB 2.x answers 422 when its engine refused points.

    Like InfluxDB 1.x, it says how many (``dropped=N``) but not which:
    they are found by halving, and nothing is retried for ever.
    """
    bad = (' index=7i ', ' index=50i ', ' index=93i ')

    def rule(request: RecordedRequest) -> Response:
        refused = [
            line for line in request.lines if any(b in line for b in bad)
        ]
        if not refused:
            return Response(204)
        return reference.v2_error(
            422,
            'unprocessable entity',
            'failure writing points to database: partial write: field '
            'type conflict: input field "index" on measurement "cpu" is '
            f'type integer, already exists as type float '
            f'dropped={len(refused)}',
        )

    bare_fault_server.set_rule(rule)
    client = Client(
        bare_fault_server.url, api='v2', token='t', tag_hostname=False
    )
    record(client, 'db', 100)
    assert client.flush(10).result() is True
    stats = client.stats()
    client.shutdown(5).result()
    assert (stats.written, stats.dropped['rejected']) == (97, 3)
    assert stats.retries == 0


@pytest.mark.parametrize('token', ['tok-5e1\n', 'tok-5e1\xa0x', 'tok 5e1'])
def test_a_token_that_cannot_be_a_header_is_refused_unseen(token: str) -> None:
    stripped = token.strip()
    if stripped == 'tok-5e1':
        settings = Settings.resolve(environ={'INFLUXDB_TOKEN': token})
        assert settings.token == 'tok-5e1'
        return
    with pytest.raises(ValueError, match='INFLUXDB_TOKEN holds') as error:
        Settings.resolve(environ={'INFLUXDB_TOKEN': token})
    assert '5e1' not in str(error.value)


def test_a_v2_partial_write_naming_every_refused_line(
    bare_fault_server: FaultServer,
) -> None:
    def rule(request: RecordedRequest) -> Response:
        lines = request.lines
        return reference.v2_error(
            400,
            'invalid',
            f'partial write error ({len(lines) - 1} written): unable to '
            f"parse '{lines[1]}': field type conflict",
        )

    bare_fault_server.set_rule(rule)
    client = Client(
        bare_fault_server.url, api='v2', token='t', tag_hostname=False
    )
    record(client, 'db', 100)
    client.flush(10).result()
    stats = client.stats()
    client.shutdown(5).result()
    assert len(bare_fault_server.requests) == 1
    assert (stats.written, stats.dropped['rejected']) == (99, 1)


@pytest.mark.parametrize(
    'error', ['unauthorized', 'bucket_not_found', 'org_not_found']
)
def test_v2_auth_and_unknown_buckets_keep_the_data_and_retry(
    bare_fault_server: FaultServer,
    caplog: pytest.LogCaptureFixture,
    error: str,
) -> None:
    bare_fault_server.script(reference.V2_ERRORS[error])
    client = Client(
        bare_fault_server.url,
        api='v2',
        token='never-logged-token',
        org='acme',
        bucket='metrics',
        tag_hostname=False,
        backoff_base=0.01,
        backoff_max=0.05,
    )
    with caplog.at_level(logging.WARNING, logger='sprockets_influxdb'):
        record(client, 'db', 10)
        assert client.flush(10).result() is True
    stats = client.stats()
    client.shutdown(5).result()
    first, second = bare_fault_server.requests
    assert first.body == second.body
    assert (
        first.query
        == second.query
        == {
            'org': 'acme',
            'bucket': 'metrics',
            'precision': 'ns',
        }
    )
    assert (stats.written, stats.retries) == (10, 1)
    (failure,) = [r for r in caplog.records if 'failed' in r.getMessage()]
    text = failure.getMessage()
    assert "bucket 'metrics' of organization 'acme'" in text
    assert 'never-logged-token' not in caplog.text


@pytest.mark.parametrize('error', ['rate_limited', 'unavailable'])
def test_v2_retry_after_is_honoured(
    bare_fault_server: FaultServer,
    caplog: pytest.LogCaptureFixture,
    error: str,
) -> None:
    bare_fault_server.script(reference.V2_ERRORS[error])
    client = Client(
        bare_fault_server.url,
        api='v2',
        token='t',
        tag_hostname=False,
        backoff_base=0.001,
        backoff_max=0.002,
    )
    with caplog.at_level(logging.WARNING, logger='sprockets_influxdb'):
        record(client, 'db', 5)
        assert client.flush(10).result() is True
    client.shutdown(5).result()
    first, second = bare_fault_server.requests
    assert second.arrived - first.arrived >= 1.0
    assert 'retrying in 1.0 s' in caplog.text


def test_v2_413_splits_the_batch(bare_fault_server: FaultServer) -> None:
    bare_fault_server.script(reference.V2_ERRORS['too_large'])
    client = Client(
        bare_fault_server.url, api='v2', token='t', tag_hostname=False
    )
    record(client, 'db', 10)
    assert client.flush(10).result() is True
    stats = client.stats()
    client.shutdown(5).result()
    assert [len(r.lines) for r in bare_fault_server.requests] == [10, 5, 5]
    assert stats.written == 10


def test_the_official_clients_variables_are_read() -> None:
    settings = Settings.resolve(
        environ={
            'INFLUXDB_V2_URL': 'https://eu-central-1.example.com',
            'INFLUXDB_V2_TOKEN': 'v2-token',
            'INFLUXDB_V2_ORG': 'acme',
            'INFLUXDB_V2_BUCKET': 'metrics',
        }
    )
    assert settings.api == 'v2'
    assert settings.url == 'https://eu-central-1.example.com/api/v2/write'
    assert (settings.token, settings.org, settings.bucket) == (
        'v2-token',
        'acme',
        'metrics',
    )
    settings = Settings.resolve(
        environ={
            'INFLUXDB3_HOST_URL': 'http://influxdb3:8181',
            'INFLUXDB3_AUTH_TOKEN': 'v3-token',
            'INFLUXDB3_DATABASE_NAME': 'metrics',
        }
    )
    assert settings.api == 'v3'
    assert settings.url == 'http://influxdb3:8181/api/v3/write_lp'
    assert (settings.token, settings.bucket) == ('v3-token', 'metrics')


def test_ours_win_over_the_official_clients_variables() -> None:
    settings = Settings.resolve(
        environ={
            'INFLUXDB_URL': 'http://ours:8086',
            'INFLUXDB_TOKEN': 'ours',
            'INFLUXDB_BUCKET': 'ours',
            'INFLUXDB_V2_URL': 'http://theirs:8086',
            'INFLUXDB_V2_TOKEN': 'theirs',
            'INFLUXDB_V2_BUCKET': 'theirs',
        }
    )
    assert settings.url == 'http://ours:8086/api/v2/write'
    assert (settings.token, settings.bucket) == ('ours', 'ours')


@pytest.mark.parametrize(
    ('given', 'api', 'url'),
    [
        ({}, 'v1', 'http://h:8086/write'),
        ({'token': 't'}, 'v2', 'http://h:8086/api/v2/write'),
        ({'token': 't', 'api': 'v1'}, 'v1', 'http://h:8086/write'),
        ({'api': 'v3'}, 'v3', 'http://h:8086/api/v3/write_lp'),
        ({'url': 'http://h:8086/write', 'token': 't'}, 'v1', None),
        ({'url': 'http://h:8086/api/v3/write_lp'}, 'v3', None),
        (
            {'url': 'http://vm:8480/insert/0/influx', 'api': 'v2'},
            'v2',
            'http://vm:8480/insert/0/influx/api/v2/write',
        ),
    ],
)
def test_the_api_is_chosen(
    given: dict[str, str], api: str, url: str | None
) -> None:
    arguments = {'url': 'http://h:8086', **given}
    settings = Settings.resolve(environ={}, **arguments)
    assert settings.api == api
    assert settings.url == (url or arguments['url'])
    assert settings.server_url == arguments['url'].removesuffix(
        settings.url[len(settings.server_url) :]
    )


def test_an_unknown_api_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match='INFLUXDB_API must be one of'):
        Settings.resolve(environ={'INFLUXDB_API': 'v4'})


def test_the_token_is_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    token = 'tok-7f3a9c-secret'
    client = Client('http://127.0.0.1:9', api='v2', token=token, org='acme')
    with caplog.at_level(logging.DEBUG):
        record(client, 'db', 1)
        client.flush(1, wait_for_server=False).result()
        shown = [repr(client), repr(client.settings), repr(client.stats())]
        client.shutdown(0).result()
    assert all(token not in text for text in shown)
    assert token not in caplog.text


@pytest.mark.parametrize('api', ['v2', 'v3'])
def test_precisions_an_api_lacks_are_refused_by_name(api: str) -> None:
    with pytest.raises(ValueError, match=f"precision 'h' .* the {api} write"):
        Settings.resolve(environ={}, api=api, precision='h')
    with pytest.raises(ValueError, match="INFLUXDB_PRECISION 'm'"):
        Settings.resolve(
            environ={'INFLUXDB_PRECISION': 'm', 'INFLUXDB_API': api}
        )
    assert Settings.resolve(environ={}, api='v1', precision='h').precision


def test_v1_with_a_token_sends_it(bare_fault_server: FaultServer) -> None:
    request = write_reference_point(
        bare_fault_server, 'db', api='v1', token='v1-token'
    )
    assert request.path == '/write'
    assert request.headers['authorization'] == 'Token v1-token'
    request = write_reference_point(
        bare_fault_server,
        'db',
        api='v1',
        auth_username='u',
        auth_password='p',
    )
    assert request.headers['authorization'] == 'Basic dTpw'


@pytest.mark.parametrize(
    'error', ['unauthorized', 'forbidden', 'database_not_found']
)
def test_v3_auth_and_unknown_databases_keep_the_data_and_retry(
    bare_fault_server: FaultServer,
    caplog: pytest.LogCaptureFixture,
    error: str,
) -> None:
    bare_fault_server.script(reference.V3_ERRORS[error])
    client = Client(
        bare_fault_server.url,
        api='v3',
        token='never-logged-v3',
        tag_hostname=False,
        backoff_base=0.01,
        backoff_max=0.05,
    )
    with caplog.at_level(logging.WARNING, logger='sprockets_influxdb'):
        record(client, 'metrics', 10)
        assert client.flush(10).result() is True
    stats = client.stats()
    client.shutdown(5).result()
    first, second = bare_fault_server.requests
    assert first.body == second.body
    assert (stats.written, stats.retries, stats.dropped_total) == (10, 1, 0)
    (failure,) = [r for r in caplog.records if 'failed' in r.getMessage()]
    assert "database 'metrics'" in failure.getMessage()
    assert 'never-logged-v3' not in caplog.text


def test_install_says_which_write_api() -> None:
    result = run_script(
        """
        import logging
        import sprockets_influxdb as influxdb
        logging.basicConfig(level=logging.INFO)
        influxdb.install()
        influxdb.shutdown(0).result()
        """,
        env={
            'INFLUXDB_URL': 'http://127.0.0.1:9',
            'INFLUXDB_TOKEN': 'tok-4d1e9b',
        },
    )
    assert result.returncode == 0, result.stderr
    assert (
        'writing to http://127.0.0.1:9/api/v2/write (v2 write API)'
        in result.stderr
    )
    assert 'tok-4d1e9b' not in result.stderr
