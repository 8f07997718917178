"""Sanity checks for the test servers in :mod:`tests.servers`."""

from __future__ import annotations

import gzip
import threading
import time
import typing

import httpx
import pytest

from tests.servers import (
    FORWARD,
    FaultServer,
    InfluxQueryError,
    InfluxServer,
    RecordedRequest,
    Response,
)


def test_influxdb_starts_and_answers_ping(influxdb: InfluxServer) -> None:
    assert influxdb.running
    assert influxdb.url == f'http://127.0.0.1:{influxdb.port}'
    response = httpx.get(f'{influxdb.url}/ping')
    assert response.status_code == 204
    assert influxdb.databases() == []


def test_write_and_read_back(influxdb: InfluxServer) -> None:
    influxdb.create_database('x')
    assert 'x' in influxdb.databases()
    assert influxdb.rows('x', 'cpu') == []
    line = 'cpu,host=a\\ b,region=eu load=0.5,count=3i,ok=true,msg="hi" 1500'
    response = httpx.post(
        f'{influxdb.url}/write',
        params={'db': 'x', 'precision': 'ms'},
        content=line,
    )
    assert response.status_code == 204, response.text
    assert influxdb.rows('x', 'cpu') == [
        {
            'time': 1500,
            'host': 'a b',
            'region': 'eu',
            'load': 0.5,
            'count': 3,
            'ok': True,
            'msg': 'hi',
        }
    ]
    assert influxdb.count('x', 'cpu') == 1
    assert influxdb.field_types('x', 'cpu') == {
        'load': 'float',
        'count': 'integer',
        'ok': 'boolean',
        'msg': 'string',
    }
    assert influxdb.tag_keys('x', 'cpu') == {'host', 'region'}
    assert influxdb.measurements('x') == ['cpu']


def test_awkward_measurement_names(influxdb: InfluxServer) -> None:
    influxdb.create_database('x')
    influxdb.write('x', 'we\\,ird\\ "na\\me v=1i 1')
    [name] = influxdb.measurements('x')
    assert name == 'we,ird "na\\me'
    assert influxdb.rows('x', name) == [{'time': 1, 'v': 1}]


def test_query_errors_raise(influxdb: InfluxServer) -> None:
    with pytest.raises(InfluxQueryError, match='not found'):
        influxdb.rows('missing', 'cpu')
    with pytest.raises(InfluxQueryError):
        influxdb.query('SELEKT nonsense')


def test_restart_keeps_data_and_port(influxdb: InfluxServer) -> None:
    influxdb.create_database('x')
    influxdb.write('x', 'm v=1 10')
    port, url = influxdb.port, influxdb.url
    influxdb.restart()
    assert (influxdb.port, influxdb.url) == (port, url)
    assert influxdb.rows('x', 'm') == [{'time': 10, 'v': 1.0}]


def test_freeze_and_thaw(influxdb: InfluxServer) -> None:
    influxdb.freeze()
    try:
        with pytest.raises(httpx.TimeoutException):
            httpx.get(f'{influxdb.url}/ping', timeout=0.5)
    finally:
        influxdb.thaw()
    assert httpx.get(f'{influxdb.url}/ping', timeout=5).status_code == 204


def test_stopped_server_refuses(influxdb: InfluxServer) -> None:
    influxdb.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f'{influxdb.url}/ping')
    influxdb.start()
    assert httpx.get(f'{influxdb.url}/ping').status_code == 204


def test_auth_and_body_size(
    influxdb_factory: typing.Callable[..., InfluxServer],
) -> None:
    server = influxdb_factory(auth_enabled=True, max_body_size=64)
    url = server.url
    show = {'q': 'SHOW DATABASES'}
    # No users yet: InfluxDB 1.x answers 403 "create admin user first".
    assert httpx.get(f'{url}/query', params=show).status_code == 403
    server.create_admin('admin', "pa'ss")
    assert server.credentials == ('admin', "pa'ss")
    assert httpx.get(f'{url}/query', params=show).status_code == 401
    server.create_database('x')
    assert server.databases() == ['x']
    unauthenticated = httpx.post(
        f'{url}/write', params={'db': 'x'}, content=b'm v=1'
    )
    assert unauthenticated.status_code == 401
    too_big = httpx.post(
        f'{url}/write',
        params={'db': 'x'},
        content=b'm v=1\n' * 20,
        auth=('admin', "pa'ss"),
    )
    assert too_big.status_code == 413


def test_fault_server_scripted_429_then_forward(
    influxdb: InfluxServer, fault_server: FaultServer
) -> None:
    influxdb.create_database('x')
    fault_server.script(
        Response(429, b'{"error": "slow down"}', {'Retry-After': '1'}),
        FORWARD,
    )
    body = gzip.compress(b'm,t=1 v=1i 5\n\nm,t=2 v=2i 6\n')
    params = {'db': 'x', 'precision': 'ms'}
    headers = {'Content-Encoding': 'gzip'}
    with httpx.Client(base_url=fault_server.url) as client:
        first = client.post(
            '/write', params=params, content=body, headers=headers
        )
        second = client.post(
            '/write', params=params, content=body, headers=headers
        )
        third = client.get('/ping')
    assert first.status_code == 429
    assert first.headers['content-type'] == 'application/json'
    assert first.headers['retry-after'] == '1'
    assert first.json() == {'error': 'slow down'}
    assert second.status_code == 204
    assert third.status_code == 204
    assert 'x-influxdb-version' in third.headers
    first_req, second_req, third_req = fault_server.requests
    assert [r.status for r in fault_server.requests] == [429, 204, 204]
    assert first_req.method == 'POST'
    assert first_req.path == '/write'
    assert first_req.query == params
    assert first_req.headers['content-encoding'] == 'gzip'
    assert first_req.body == body
    assert first_req.lines == ['m,t=1 v=1i 5', 'm,t=2 v=2i 6']
    assert second_req.forwarded
    assert third_req.forwarded
    assert first_req.arrived <= second_req.arrived <= third_req.arrived
    assert influxdb.rows('x', 'm') == [
        {'time': 5, 't': '1', 'v': 1},
        {'time': 6, 't': '2', 'v': 2},
    ]
    fault_server.clear()
    assert fault_server.requests == []


def test_bare_fault_server_rule_and_delay(
    bare_fault_server: FaultServer,
) -> None:
    seen: list[RecordedRequest] = []

    def rule(request: RecordedRequest) -> Response | None:
        seen.append(request)
        if request.query.get('db') == 'slow':
            return Response(204, delay=1.0)
        return None

    bare_fault_server.set_rule(rule)
    bare_fault_server.script(Response(500, 'boom'))
    with httpx.Client(base_url=bare_fault_server.url) as client:
        boom = client.post('/write', params={'db': 'x'}, content=b'a')
        assert boom.status_code == 500
        assert boom.headers['content-type'] == 'text/plain'
        assert boom.text == 'boom'
        assert client.post('/write', params={'db': 'x'}).status_code == 204
        start = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            client.post('/write', params={'db': 'slow'}, timeout=0.2)
        assert time.monotonic() - start < 0.9
    assert len(seen) == 2  # the scripted response bypassed the rule
    assert [r.query['db'] for r in bare_fault_server.requests] == [
        'x',
        'x',
        'slow',
    ]


def test_fault_server_keep_alive_and_close() -> None:
    with FaultServer() as server:
        url = server.url
        with httpx.Client(base_url=url) as client:
            for _ in range(5):
                assert (
                    client.post('/write', content=b'm v=1').status_code == 204
                )
            thread_count = threading.active_count()
            server.close()
            assert threading.active_count() < thread_count
    assert len(server.requests) == 5
    with pytest.raises(httpx.ConnectError):
        httpx.get(f'{url}/ping')


def test_fault_server_upstream_down(
    influxdb: InfluxServer, fault_server: FaultServer
) -> None:
    influxdb.stop()
    response = httpx.get(f'{fault_server.url}/ping')
    assert response.status_code == 502
    assert 'upstream failed' in response.json()['error']


def test_an_app_whose_port_another_server_took_is_served_on_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The port free_port() chose is taken before the app binds it (by a
    parallel test's server): the check sees the other listener is not the
    app, and the app is started again on another port."""
    import os
    import signal
    import socket
    import sys

    from tests.integrations import apps
    from tests.servers import free_port, listens

    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = iter([port, free_port()])
        monkeypatch.setattr(apps, 'free_port', lambda: next(ports))
        server = (
            'import http.server, sys\n'
            'class H(http.server.BaseHTTPRequestHandler):\n'
            '    def do_GET(self):\n'
            '        self.send_response(200)\n'
            "        self.send_header('Content-Length', '2')\n"
            '        self.end_headers()\n'
            "        self.wfile.write(b'ok')\n"
            "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H)"
            '.serve_forever()\n'
        )
        result = apps.serve_then_signal(
            [sys.executable, '-c', server, '{port}'], {}, '/', requests=2
        )
        assert result.args[-1] != str(port)  # served on the second port
        assert result.returncode == -signal.SIGINT, result.stdout
        assert listens(os.getpid(), port)  # the other listener, untouched
