"""VictoriaMetrics as a second real server: how it maps line protocol.

These pin what the library relies on when it writes to VictoriaMetrics
through the InfluxDB v1 and v2 write APIs; the full list of findings is
in the docstring of :class:`tests.servers.VictoriaServer`.
"""

from __future__ import annotations

import math
import socket
import time
import typing

import httpx
import pytest

from tests.servers import (
    LOCALHOST,
    Series,
    VictoriaServer,
    VictoriaServerError,
)


def recent_s() -> int:
    """A timestamp in seconds that the server keeps (within retention)."""
    return int(time.time()) - 60


def only(found: list[Series]) -> Series:
    assert len(found) == 1, found
    return found[0]


# -- the server itself --------------------------------------------------------


def test_starts_and_answers_health_and_ping(victoria: VictoriaServer) -> None:
    assert victoria.running
    assert victoria.url == f'http://127.0.0.1:{victoria.port}'
    health = httpx.get(f'{victoria.url}/health')
    assert (health.status_code, health.text) == (200, 'OK')
    ping = httpx.get(f'{victoria.url}/ping')
    assert ping.status_code == 204
    assert 'X-Influxdb-Version' not in ping.headers
    assert victoria.series() == []


def test_restart_keeps_data_and_port(victoria: VictoriaServer) -> None:
    port = victoria.port
    victoria.write(f'm v=1 {recent_s()}', precision='s')
    victoria.flush()
    victoria.restart()
    assert victoria.port == port
    assert [s.values for s in victoria.series('m_v')] == [[1.0]]


def test_freeze_and_thaw(victoria: VictoriaServer) -> None:
    victoria.freeze()
    assert victoria.frozen
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f'{victoria.url}/health', timeout=0.2)
    victoria.thaw()
    assert not victoria.frozen
    assert httpx.get(f'{victoria.url}/health').status_code == 200


def test_stopped_server_refuses(victoria: VictoriaServer) -> None:
    victoria.stop()
    assert not victoria.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f'{victoria.url}/health')


def test_start_failure_is_loud_with_the_log(victoria_path: str) -> None:
    with socket.socket() as taken:
        taken.bind((LOCALHOST, 0))
        taken.listen()
        server = VictoriaServer(
            port=taken.getsockname()[1], executable=victoria_path
        )
        try:
            with pytest.raises(VictoriaServerError) as info:
                server.start()
        finally:
            server.close()
    message = str(info.value)
    assert 'exited with status' in message
    assert 'address already in use' in message


def test_wait_for_points_times_out_with_what_it_found(
    victoria: VictoriaServer,
) -> None:
    victoria.write(f'm v=1 {recent_s()}', precision='s')
    with pytest.raises(TimeoutError, match='1 of 2 samples'):
        victoria.wait_for_points('m_v', 2, timeout=0.1)
    assert len(victoria.wait_for_points('m_v', 1)) == 1


# -- v1 and v2 writes, read back exactly --------------------------------------


@pytest.mark.parametrize('path', ['/write', '/influx/write'])
def test_v1_write_reads_back_exactly(
    victoria: VictoriaServer, path: str
) -> None:
    ts = recent_s()
    line = (
        'http\\ req,host=a\\ b,path=/x\\,y '
        f'load=0.25,count=3i,big=42u,neg=-7i,ok=true,bad=F {ts}123456789'
    )
    response = victoria.post(path, line, {'db': 'app', 'precision': 'ns'})
    assert response.status_code == 204, response.text
    assert response.headers['X-Influxdb-Version'] == '1.8.0'
    labels = {'db': 'app', 'host': 'a b', 'path': '/x,y'}
    ms = ts * 1000 + 123
    assert victoria.series('{db="app"}') == [
        Series('http req_bad', labels, [0.0], [ms]),
        Series('http req_big', labels, [42.0], [ms]),
        Series('http req_count', labels, [3.0], [ms]),
        Series('http req_load', labels, [0.25], [ms]),
        Series('http req_neg', labels, [-7.0], [ms]),
        Series('http req_ok', labels, [1.0], [ms]),
    ]


@pytest.mark.parametrize('path', ['/api/v2/write', '/influx/api/v2/write'])
def test_v2_write_ignores_org_and_bucket(
    victoria: VictoriaServer, path: str
) -> None:
    ts = recent_s()
    params = {'org': 'acme', 'bucket': 'app', 'precision': 's'}
    response = victoria.post(path, f'm,host=a v=1.5 {ts}', params)
    assert response.status_code == 204, response.text
    assert victoria.series() == [
        Series('m_v', {'host': 'a'}, [1.5], [ts * 1000])
    ]


def test_v2_write_takes_db_and_needs_no_org_or_bucket(
    victoria: VictoriaServer,
) -> None:
    ts = recent_s()
    with_db = victoria.post('/api/v2/write', f'a v=1 {ts}', {'db': 'x'})
    bare = victoria.post('/api/v2/write', f'b v=2 {ts}')
    assert (with_db.status_code, bare.status_code) == (204, 204)
    assert victoria.series() == [
        Series('a_v', {'db': 'x'}, [1.0], [ts * 1000]),
        Series('b_v', {}, [2.0], [ts * 1000]),
    ]


def test_string_fields_become_numbers_or_zero(
    victoria: VictoriaServer,
) -> None:
    ts = recent_s()
    victoria.write(f'm a="12.5",b="abc",c="" {ts}', precision='s')
    assert [(s.name, s.values) for s in victoria.series()] == [
        ('m_a', [12.5]),
        ('m_b', [0.0]),
        ('m_c', [0.0]),
    ]


def test_values_are_float64_with_about_12_digits(
    victoria: VictoriaServer,
) -> None:
    ts = recent_s()
    lines = [
        f'm,i=short v=12345.678 {ts}',
        f'm,i=pi v={math.pi!r} {ts}',
        f'm,i=int v={2**53 + 1}i {ts}',
        f'm,i=inf v=inf {ts}',
    ]
    victoria.write(lines, precision='s')
    got = {s.labels['i']: s.values for s in victoria.series('m_v')}
    assert got == {
        'short': [12345.678],
        'pi': [3.141592653589],
        'int': [float(2**53)],
        'inf': [math.inf],
    }


# -- timestamps ---------------------------------------------------------------


@pytest.mark.parametrize('path', ['/write', '/api/v2/write'])
@pytest.mark.parametrize(
    ('precision', 'suffix'),
    [
        ('ns', '123456789'),
        ('us', '123456'),
        ('u', '123456'),
        ('ms', '123'),
        ('s', ''),
    ],
)
def test_precision_is_taken_as_given(
    victoria: VictoriaServer, path: str, precision: str, suffix: str
) -> None:
    ts = recent_s()
    response = victoria.post(
        path, f'm v=1 {ts}{suffix}', {'precision': precision}
    )
    assert response.status_code == 204
    expected = ts * 1000 + (int(suffix[:3]) if suffix else 0)
    assert only(victoria.series('m_v')).timestamps == [expected]


def test_explicit_precision_drops_other_magnitudes(
    victoria: VictoriaServer,
) -> None:
    ts = recent_s()
    # Seconds sent as milliseconds are before the retention: dropped.
    response = victoria.post('/write', f'm v=1 {ts}', {'precision': 'ms'})
    assert response.status_code == 204
    assert victoria.series() == []
    assert 'too small timestamp' in victoria.log_tail()


@pytest.mark.parametrize('precision', [None, 'n', 'nanoseconds'])
def test_unknown_or_missing_precision_guesses_the_unit(
    victoria: VictoriaServer, precision: str | None
) -> None:
    ts = recent_s()
    params = {} if precision is None else {'precision': precision}
    lines = [
        f'm,d=10 v=1 {ts}',
        f'm,d=13 v=1 {ts}123',
        f'm,d=16 v=1 {ts}123456',
        f'm,d=19 v=1 {ts}123456789',
    ]
    assert victoria.post('/write', lines, params).status_code == 204
    got = {s.labels['d']: s.timestamps for s in victoria.series('m_v')}
    ms = ts * 1000
    assert got == {
        '10': [ms],
        '13': [ms + 123],
        '16': [ms + 123],
        '19': [ms + 123],
    }


def test_nanoseconds_are_truncated_to_the_millisecond(
    victoria: VictoriaServer,
) -> None:
    ts = recent_s()
    victoria.write(f'm v=1 {ts}999999999', precision='ns')
    assert only(victoria.series()).timestamps == [ts * 1000 + 999]


def test_points_within_one_millisecond_are_all_kept(
    victoria: VictoriaServer,
) -> None:
    ts = recent_s()
    lines = [
        f'm,k=a v=1 {ts}000000001',
        f'm,k=a v=2 {ts}000000002',
        f'm,k=a v=3 {ts}000999999',
        f'm,k=a v=4 {ts}001000000',
    ]
    victoria.write(lines, precision='ns')
    ms = ts * 1000
    assert only(victoria.series()).points == [
        (ms, 1.0),
        (ms, 2.0),
        (ms, 3.0),
        (ms + 1, 4.0),
    ]


def test_dedup_flag_keeps_one_point_per_millisecond(
    victoria_factory: typing.Callable[..., VictoriaServer],
) -> None:
    server = victoria_factory(extra_args=['-dedup.minScrapeInterval=1ms'])
    ts = recent_s()
    server.write([f'm v={i} {ts}00000000{i}' for i in (1, 2, 3)], 'x', 'ns')
    assert len(only(server.series()).values) == 1


def test_points_outside_retention_are_dropped_with_204(
    victoria: VictoriaServer,
) -> None:
    old = recent_s() - 40 * 86400
    response = victoria.post('/write', f'm v=1 {old}', {'precision': 's'})
    assert response.status_code == 204
    assert victoria.series() == []


# -- bodies, errors and auth --------------------------------------------------


def test_bad_line_answers_204_and_keeps_the_good_ones(
    victoria: VictoriaServer,
) -> None:
    ts = recent_s()
    lines = [f'good v=1 {ts}', 'this is bad', f'good v=2 {ts + 1}']
    response = victoria.post('/write', lines, {'precision': 's'})
    assert (response.status_code, response.text) == (204, '')
    assert only(victoria.series()).values == [1.0, 2.0]
    assert 'cannot unmarshal InfluxDB line "this is bad"' in (
        victoria.log_tail()
    )


def test_crlf_line_endings_are_accepted(victoria: VictoriaServer) -> None:
    ts = recent_s()
    body = f'm,k=a v=1 {ts}\r\nm,k=b v=2 {ts}\r\n'
    victoria.post('/write', body, {'precision': 's'})
    assert [s.values for s in victoria.series()] == [[1.0], [2.0]]


@pytest.mark.parametrize('path', ['/write', '/api/v2/write'])
def test_gzip_bodies(victoria: VictoriaServer, path: str) -> None:
    ts = recent_s()
    response = victoria.post(
        path, f'm v=7 {ts}', {'precision': 's'}, compress=True
    )
    assert response.status_code == 204
    assert only(victoria.series()).values == [7.0]
    broken = victoria.post(
        path, f'm v=8 {ts}', headers={'Content-Encoding': 'gzip'}
    )
    assert broken.status_code == 400
    assert broken.headers['Content-Type'].startswith('text/plain')
    assert 'cannot read gzipped influx line protocol data' in broken.text


def test_auth_headers_are_ignored_by_default(
    victoria: VictoriaServer,
) -> None:
    ts = recent_s()
    response = victoria.post(
        '/write',
        f'm v=1 {ts}',
        {'precision': 's', 'u': 'x', 'p': 'y'},
        headers={'Authorization': 'Token nonsense'},
    )
    assert response.status_code == 204
    assert only(victoria.series()).values == [1.0]


def test_http_auth_wants_basic_auth_on_writes_only(
    victoria_factory: typing.Callable[..., VictoriaServer],
) -> None:
    server = victoria_factory(http_auth=('user', 'secret'))
    url = f'{server.url}/write'
    body = f'm v=1 {recent_s()}'
    refused = [
        httpx.post(url, content=body),
        httpx.post(url, params={'u': 'user', 'p': 'secret'}, content=body),
        httpx.post(
            url, headers={'Authorization': 'Token secret'}, content=body
        ),
        httpx.post(
            url, headers={'Authorization': 'Bearer secret'}, content=body
        ),
        httpx.post(url, auth=('user', 'wrong'), content=body),
    ]
    assert [r.status_code for r in refused] == [401] * 5
    assert refused[0].headers['WWW-Authenticate'] == (
        'Basic realm="VictoriaMetrics"'
    )
    accepted = httpx.post(
        url, params={'precision': 's'}, auth=('user', 'secret'), content=body
    )
    assert accepted.status_code == 204
    assert httpx.get(f'{server.url}/ping').status_code == 204
    assert httpx.get(f'{server.url}/health').status_code == 200
    assert only(server.series()).values == [1.0]


def test_naming_flags(
    victoria_factory: typing.Callable[..., VictoriaServer],
) -> None:
    server = victoria_factory(
        extra_args=[
            '-influxMeasurementFieldSeparator=.',
            '-influxDBLabel=database',
        ]
    )
    ts = recent_s()
    server.write(f'm v=1 {ts}', db='app', precision='s')
    assert server.series() == [
        Series('m.v', {'database': 'app'}, [1.0], [ts * 1000])
    ]


@pytest.mark.parametrize(
    'path',
    [
        '/insert/0/influx/write',
        '/insert/0/influx/api/v2/write',
        '/api/v2/ping',
        '/api/v3/write_lp',
    ],
)
def test_paths_the_single_node_binary_does_not_serve(
    victoria: VictoriaServer, path: str
) -> None:
    response = victoria.post(path, f'm v=1 {recent_s()}')
    assert response.status_code == 400
    assert 'unsupported path requested' in response.text
