"""The framework-neutral request recorder, and its measurement."""

from __future__ import annotations

import ast
import inspect
import os
import re
import time
import typing

import pytest

from sprockets_influxdb import Client, Measurement, clock
from sprockets_influxdb.request_metrics import (
    OTHER_METHOD,
    UNMATCHED,
    RequestRecorder,
)
from tests.helpers import ROOT, run_script
from tests.servers import InfluxServer


@pytest.fixture
def recorded() -> list[Measurement]:
    return []


@pytest.fixture
def recorder(recorded: list[Measurement]) -> RequestRecorder:
    return RequestRecorder('db', 'web', add_measurement=recorded.append)


def test_a_request_becomes_one_measurement(
    recorder: RequestRecorder, recorded: list[Measurement]
) -> None:
    record = recorder.start('GET', '/items/3')
    assert record is not None
    record.measurement.set_tag('customer', 'acme')
    record.finish(
        200, endpoint='/items/{id}', handler='app.items', content_length=12
    )
    (measurement,) = recorded
    assert (measurement.database, measurement.name) == ('db', 'web')
    tags = measurement.tags
    assert {key: tags[key] for key in tags if key != 'hostname'} == {
        'method': 'GET',
        'endpoint': '/items/{id}',
        'handler': 'app.items',
        'status_code': '200',
        'status_class': '2xx',
        'customer': 'acme',
    }
    assert measurement.fields['content_length'] == 12
    duration = measurement.fields['duration']
    assert isinstance(duration, float)
    assert duration >= 0


class Seconds(float):
    """A float of another class, as numpy's float64 is."""


def test_a_request_dated_back_to_its_arrival_is_timed_at_it(
    recorder: RequestRecorder, recorded: list[Measurement]
) -> None:
    """An integration that learns of a request late and knows when it
    arrived (as Tornado's server does) gets that moment as the point's
    time, on the process's lattice, and the wait in its duration."""
    arrived = time.time() - 0.25
    record = recorder.start('GET', '/items/3')
    assert record is not None
    for bad in (float('nan'), float('inf'), -1.0, 0.0, 1e12, '1700000000'):
        with pytest.raises(ValueError, match='arrived'):
            record.date_back(0.25, arrived=bad)  # type: ignore[arg-type]
    # Any real number of seconds, numpy's float64 as much as a float.
    record.date_back(0.25, arrived=Seconds(arrived))
    record.finish(200, endpoint='/items/{id}', handler=None, content_length=0)
    (measurement,) = recorded
    assert measurement.time_ns == clock.align(int(arrived * 1e9))
    duration = measurement.fields['duration']
    assert isinstance(duration, float)
    assert duration >= 0.25


def test_finishing_twice_records_once(
    recorder: RequestRecorder, recorded: list[Measurement]
) -> None:
    record = recorder.start('GET')
    assert record is not None
    record.finish(200, endpoint='/', handler='h', content_length=0)
    record.finish(500, endpoint='/', handler='h', content_length=0)
    assert len(recorded) == 1
    assert recorded[0].tags['status_code'] == '200'


def test_an_exception_is_a_500_with_its_class(
    recorder: RequestRecorder, recorded: list[Measurement]
) -> None:
    record = recorder.start('POST')
    assert record is not None
    record.finish(
        200,
        endpoint=None,
        handler=None,
        content_length=5,
        error=KeyError('x'),
    )
    tags = recorded[0].tags
    assert (tags['status_code'], tags['status_class']) == ('500', '5xx')
    assert tags['error'] == 'builtins.KeyError'
    assert tags['endpoint'] == UNMATCHED
    assert 'handler' not in tags


def test_a_client_that_went_away_is_a_499(
    recorder: RequestRecorder, recorded: list[Measurement]
) -> None:
    record = recorder.start('GET')
    assert record is not None
    record.finish(
        200, endpoint='/', handler='h', content_length=3, disconnected=True
    )
    assert recorded[0].tags['status_code'] == '499'
    assert recorded[0].tags['status_class'] == '4xx'


def test_excluded_paths(recorded: list[Measurement]) -> None:
    recorder = RequestRecorder(
        'db', exclude_paths=[r'/health', r'/static/'], add_measurement=print
    )
    assert recorder.start('GET', '/healthz') is None
    assert recorder.start('GET', '/static/app.js') is None
    assert recorder.start('GET', '/api/health') is not None


def test_the_measurement_name_defaults_to_service_then_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv('SERVICE', raising=False)
    assert RequestRecorder('db').measurement == 'request'
    monkeypatch.setenv('SERVICE', 'billing')
    assert RequestRecorder('db').measurement == 'billing'
    assert RequestRecorder('db', 'explicit').measurement == 'explicit'


@pytest.mark.parametrize(
    ('arguments', 'match'),
    [
        ({'database': ''}, 'database'),
        ({'database': 'db', 'measurement': '#x'}, 'measurement name'),
        ({'database': 'db', 'exclude_paths': ['(']}, 'exclude_paths'),
    ],
)
def test_bad_settings_are_clear_errors(
    arguments: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        RequestRecorder(**arguments)  # type: ignore[arg-type]


def test_recording_never_fails_the_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(measurement: Measurement) -> None:
        raise RuntimeError('no room')

    recorder = RequestRecorder('db', add_measurement=broken)
    record = recorder.start('GET')
    assert record is not None
    record.finish(200, endpoint='/', handler='h', content_length=0)
    assert 'Could not record a request measurement' in caplog.text


def test_methods_no_client_can_make_a_series_of(
    recorder: RequestRecorder, recorded: list[Measurement]
) -> None:
    methods = ['GET', 'PATCH', 'FOOBAR1', 'FOOBAR2', 'get', 'FOO\\', 'X' * 60]
    for method in methods:
        record = recorder.start(method)
        assert record is not None
        record.finish(405, endpoint=None, handler=None, content_length=0)
    assert [measurement.tags['method'] for measurement in recorded] == [
        'GET',
        'PATCH',
        OTHER_METHOD,
        OTHER_METHOD,
        OTHER_METHOD,
        OTHER_METHOD,
        OTHER_METHOD,
    ]


def test_more_methods_by_argument_or_environment(
    monkeypatch: pytest.MonkeyPatch, recorded: list[Measurement]
) -> None:
    monkeypatch.setenv('INFLUXDB_HTTP_METHODS', 'PROPFIND, PURGE')
    by_environment = RequestRecorder('db', add_measurement=recorded.append)
    assert {'PROPFIND', 'PURGE', 'GET'} <= by_environment.methods
    by_argument = RequestRecorder(
        'db', add_measurement=recorded.append, methods=['MKCOL']
    )
    assert 'MKCOL' in by_argument.methods
    assert 'PROPFIND' not in by_argument.methods
    for recorder in (by_environment, by_argument):
        for method in ('PROPFIND', 'MKCOL'):
            record = recorder.start(method)
            assert record is not None
            record.finish(200, endpoint='/', handler='h', content_length=0)
    assert [measurement.tags['method'] for measurement in recorded] == [
        'PROPFIND',
        OTHER_METHOD,
        OTHER_METHOD,
        'MKCOL',
    ]


@pytest.mark.parametrize('method', ['BAD METHOD', 'A' * 33, '', 'FOO\\'])
def test_a_method_that_is_no_token_is_refused(method: str) -> None:
    with pytest.raises(ValueError, match=r'methods: .* is not an HTTP method'):
        RequestRecorder('db', methods=[method])


def test_a_bad_method_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv('INFLUXDB_HTTP_METHODS', 'PROPFIND,BAD METHOD')
    with pytest.raises(
        ValueError, match="INFLUXDB_HTTP_METHODS: 'BAD METHOD' is not"
    ):
        RequestRecorder('db')


def test_failures_are_logged_briefly_and_rarely(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(measurement: Measurement) -> None:
        raise ValueError('x' * 10_000)

    recorder = RequestRecorder('db', add_measurement=broken)
    for _ in range(100):
        record = recorder.start('GET')
        assert record is not None
        record.finish(200, endpoint='/', handler='h', content_length=0)
    errors = [r for r in caplog.records if r.levelname == 'ERROR']
    assert len(errors) == 1
    assert len(errors[0].getMessage()) < 400
    assert '(10000 characters)' in errors[0].getMessage()
    assert errors[0].exc_info is None


def nested_repetition(pattern: str) -> bool:
    """Whether a regular expression repeats something that repeats: what
    makes a backtracking matcher take exponential time (``(a+)+``)."""
    try:
        import re._parser as parser  # type: ignore[import-not-found]
    except ImportError:  # Python < 3.11
        import sre_parse as parser

    def walk(items: typing.Any, inside: bool) -> bool:
        for op, value in items:
            if op in (parser.MAX_REPEAT, parser.MIN_REPEAT):
                _, high, body = value
                many = high > 1  # MAXREPEAT (unbounded) included
                if (inside and many) or walk(body, inside or many):
                    return True
            elif op == parser.SUBPATTERN:
                if walk(value[-1], inside):
                    return True
            elif op == parser.BRANCH and any(
                walk(branch, inside) for branch in value[1]
            ):
                return True
        return False

    return walk(parser.parse(pattern), False)


def test_no_default_or_example_excludes_with_a_pathological_expression() -> (
    None
):
    assert nested_repetition(r'(a+)+$')
    assert nested_repetition(r'/((a|aa)*)*x')
    assert not nested_repetition(r'/(\w|\d)*x*/health$')
    default = inspect.signature(RequestRecorder).parameters['exclude_paths']
    assert default.default == ()
    patterns: list[str] = []
    for folder, suffix in (('docs', '.rst'), ('integrations', '.py')):
        for name in sorted(os.listdir(os.path.join(ROOT, folder))):
            if not name.endswith(suffix):
                continue
            with open(os.path.join(ROOT, folder, name)) as file:
                text = file.read()
            for found in re.findall(
                r'(?:exclude_paths=|EXCLUDE_PATHS: )(\[[^\]]*\])', text
            ):
                patterns.extend(ast.literal_eval(found))
    assert patterns  # the docs do show some
    assert [p for p in patterns if nested_repetition(p)] == []


def test_requests_share_no_tags_and_keep_no_later_change(
    influxdb: InfluxServer,
) -> None:
    """What a request queues is its own, however the tags are shared.

    Requests whose handlers set no tag queue the tags of their kind of
    request, made once; one whose handler sets a tag must not add it to
    the others, and changes made to a measurement after its request was
    recorded must not reach InfluxDB.
    """
    influxdb.create_database('shared')
    client = Client(url=influxdb.url)
    recorder = RequestRecorder(
        'shared', 'web', add_measurement=client.add_measurement
    )
    try:
        records = [recorder.start('GET') for _ in range(4)]
        for item, record in enumerate(records, 1):
            assert record is not None
            record.measurement.set_field('item', item)
        assert records[1] is not None
        records[1].measurement.set_tag('customer', 'acme')
        for record in records[:3]:
            assert record is not None
            record.finish(
                200, endpoint='/items', handler='app.items', content_length=7
            )
        assert records[3] is not None
        records[3].finish(
            404, endpoint=None, handler='app.missing', content_length=0
        )
        # Changed after being recorded: not sent.
        assert records[0] is not None
        records[0].measurement.set_tag('customer', 'late')
        records[0].measurement.fields['item'] = 99
        assert client.flush(timeout=30).result(timeout=60)
    finally:
        client.shutdown(timeout=10).result(timeout=30)
    rows = sorted(
        influxdb.rows('shared', 'web'), key=lambda row: int(row['item'])
    )
    assert [
        (
            row['item'],
            row.get('customer'),
            row['endpoint'],
            row.get('handler'),
            row['status_code'],
            row['content_length'],
        )
        for row in rows
    ] == [
        (1, None, '/items', 'app.items', '200', 7),
        (2, 'acme', '/items', 'app.items', '200', 7),
        (3, None, '/items', 'app.items', '200', 7),
        (4, None, UNMATCHED, None, '404', 0),
    ]


def test_new_base_tags_reach_the_requests_that_follow(
    influxdb: InfluxServer,
) -> None:
    """Requests before install() and after it carry the base tags of then.

    The default client made on first use takes its base tags from the
    environment (``ENVIRONMENT``); install() then gives it others.
    """
    influxdb.create_database('shared')
    result = run_script(
        f"""
        import sprockets_influxdb as influxdb
        from sprockets_influxdb.request_metrics import RequestRecorder

        recorder = RequestRecorder('shared', 'web')

        def serve(environment):
            for _ in range(2):
                record = recorder.start('GET')
                record.measurement.set_field('expected', environment)
                record.finish(
                    200, endpoint='/', handler='app.home', content_length=1
                )

        serve('staging')
        influxdb.install(
            url={influxdb.url!r}, base_tags={{'environment': 'production'}}
        )
        serve('production')
        assert influxdb.shutdown().result()
        """,
        {'INFLUXDB_URL': influxdb.url, 'ENVIRONMENT': 'staging'},
    )
    assert result.returncode == 0, result.stderr
    rows = influxdb.rows('shared', 'web')
    assert sorted(row['expected'] for row in rows) == [
        'production',
        'production',
        'staging',
        'staging',
    ]
    assert all(row['environment'] == row['expected'] for row in rows)


RECORDING_SCRIPT = """
import json
import sys

import sprockets_influxdb as influxdb
from sprockets_influxdb import request_metrics
from sprockets_influxdb.request_metrics import UNMATCHED, RequestRecorder

influxdb.install(url=sys.argv[1])
recorder = RequestRecorder('modes', sys.argv[2])
# method, status, endpoint, handler, content length, error, went away,
# a field and a tag of the handler's, ended a second before it started
CASES = [
    ('GET', 200, '/items/{id}', 'app.items', 7, None, False, None, None, 0),
    ('GET', 200, '/items/{id}', 'app.items', 7, None, False, 3, None, 0),
    ('POST', 201, '/items', 'app.create', 0, None, False, None, 'acme', 0),
    ('GET', 404, None, 'app.missing', 9, None, False, None, None, 0),
    ('GET', 405, UNMATCHED, 'app.items', 0, None, False, None, None, 0),
    ('GET', 200, '/slow', 'app.slow', 100, None, True, None, None, 0),
    ('BREW', 418, '/pot', 'app.pot', 0, None, False, None, None, 0),
    ('GET', 200, '/boom', 'app.boom', 0, KeyError, False, 4, None, 0),
    ('PUT', 503, '/down', 'app.down', 12.0, None, False, None, None, 0),
    ('GET', 204, '/early', 'app.early', 0, None, False, None, None, 1),
    ('GET', 200, '/items/{id}', 'app.items', 7, None, False, None, None, 0),
]
for case in CASES:
    method, status, endpoint, handler, length, error, gone = case[:7]
    field, tag, early = case[7:]
    record = recorder.start(method)
    if field is not None:
        record.measurement.set_field('item', field)
    if tag is not None:
        record.measurement.set_tag('customer', tag)
    record.finish(
        status,
        endpoint=endpoint,
        handler=handler,
        content_length=length,
        error=error,
        disconnected=gone,
        ended=record.started - 1.0 if early else None,
    )
    # Changed once recorded: not sent.
    record.measurement.set_field('item', -1)
    record.measurement.set_tag('late', 'yes')
assert influxdb.shutdown().result()
print(json.dumps({
    'compiled': type(record).__mro__[1] is not object,
    'stats': influxdb.default_client().stats().added,
}))
"""


def test_the_compiled_record_stores_what_the_python_one_does(
    influxdb: InfluxServer,
) -> None:
    """The compiled ``RequestRecord._finish`` and the Python one agree.

    The same requests, recorded by a process with the compiled extension
    and by one in pure Python mode, become the same rows: the common case
    (done in C) and the others (left to Python) alike.
    """
    import json

    influxdb.create_database('modes')
    answers = {}
    for pure, name in (('0', 'compiled'), ('1', 'python')):
        result = run_script(
            RECORDING_SCRIPT,
            {'SPROCKETS_INFLUXDB_PURE_PYTHON': pure, 'INFLUXDB_TAGS': ''},
            args=(influxdb.url, name),
        )
        assert result.returncode == 0, result.stderr
        answers[name] = json.loads(result.stdout)
    assert answers['python']['compiled'] is False
    # The extension is built wherever the tests run (see test_speedups).
    assert answers['compiled']['compiled'] is True
    assert answers['compiled']['stats'] == answers['python']['stats'] == 11

    def rows(name: str) -> list[dict[str, object]]:
        found = influxdb.rows('modes', name)
        durations = [row.pop('duration') for row in found]
        for row in found:
            del row['time']
        # The request that ended before it started lasted 0 seconds.
        assert [d == 0 for d in durations] == [False] * 9 + [True, False]
        return found

    stored = rows('compiled')
    assert stored == rows('python')
    assert [
        (row['method'], row['status_code'], row['endpoint'], row['handler'])
        for row in stored
    ] == [
        ('GET', '200', '/items/{id}', 'app.items'),
        ('GET', '200', '/items/{id}', 'app.items'),
        ('POST', '201', '/items', 'app.create'),
        ('GET', '404', UNMATCHED, None),
        ('GET', '405', UNMATCHED, None),
        ('GET', '499', '/slow', 'app.slow'),
        (OTHER_METHOD, '418', '/pot', 'app.pot'),
        ('GET', '500', '/boom', 'app.boom'),
        ('PUT', '503', '/down', 'app.down'),
        ('GET', '204', '/early', 'app.early'),
        ('GET', '200', '/items/{id}', 'app.items'),
    ]
    assert [row.get('item') for row in stored] == [None, 3] + [None] * 5 + [
        4,
        None,
        None,
        None,
    ]
    assert [row.get('customer') for row in stored] == [None, None, 'acme'] + [
        None
    ] * 8
    assert all(row.get('late') is None for row in stored)
    assert stored[7]['error'] == 'builtins.KeyError'
    assert stored[8]['content_length'] == 12


def test_a_request_that_cannot_be_recorded_is_reported_and_served(
    influxdb: InfluxServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure in the request path's common case is logged, not raised.

    A route template that is no valid Unicode (a framework's bug, say)
    cannot be a tag: the request is logged as not recorded and the next
    ones are.
    """
    influxdb.create_database('broken')
    client = Client(url=influxdb.url)
    recorder = RequestRecorder(
        'broken', 'web', add_measurement=client.add_measurement
    )
    try:
        record = recorder.start('GET')
        assert record is not None
        record.finish(
            200, endpoint='/bad\ud800', handler='app.bad', content_length=1
        )
        assert record.finished
        assert (
            'Could not record a request measurement: ValueError: tag value'
            in caplog.text
        )
        record = recorder.start('GET')
        assert record is not None
        record.finish(
            200, endpoint='/good', handler='app.good', content_length=2
        )
        assert client.flush(timeout=30).result(timeout=60)
    finally:
        client.shutdown(timeout=10).result(timeout=30)
    assert [
        (row['endpoint'], row['content_length'])
        for row in influxdb.rows('broken', 'web')
    ] == [('/good', 2)]


RELEASE_SCRIPT = """
import gc
import json

from sprockets_influxdb.request_metrics import RequestRecord, RequestRecorder

recorded = []
released = []
recorder = RequestRecorder('db', 'web', add_measurement=recorded.append)


class Record(RequestRecord):
    __slots__ = ('name', 'other')

    def _released(self):
        released.append(self.name)
        if self.name == 'raises':
            raise RuntimeError('never printed')
        self.finish(200, endpoint='/', handler='h', content_length=0)


def make(name, finished):
    record = Record(recorder, 'GET')
    record.name = name
    if finished:
        record.finish(201, endpoint='/', handler='h', content_length=0)
    return record


make('finished', True)
make('unfinished', False)
make('raises', False)
cycle = make('in a cycle', False)
cycle.other = [cycle]
del cycle
gc.collect()
plain = RequestRecord(recorder, 'GET')  # the base's own: nothing
del plain
print(json.dumps({
    'compiled': RequestRecord.__mro__[1] is not object,
    'released': released,
    'statuses': sorted(m.tags['status_code'] for m in recorded),
}))
"""


def test_a_record_freed_unfinished_is_handed_to_released_once() -> None:
    """A record freed before it was finished goes to its ``_released``.

    The WSGI middleware records an unread, unclosed response that way.
    A finished record is not handed over, an exception raised there is
    neither raised nor printed, and a record in a reference cycle goes
    the same way: alike in the compiled and pure Python modes.
    """
    import json

    answers = {}
    for pure in ('0', '1'):
        result = run_script(
            RELEASE_SCRIPT, {'SPROCKETS_INFLUXDB_PURE_PYTHON': pure}
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == ''
        answers[pure] = json.loads(result.stdout)
    assert answers['0'].pop('compiled') is True
    assert answers['1'].pop('compiled') is False
    assert (
        answers['0']
        == answers['1']
        == {
            'released': ['unfinished', 'raises', 'in a cycle'],
            'statuses': ['200', '200', '201'],
        }
    )


def test_what_a_recorder_is_set_to_is_what_requests_get() -> None:
    """A recorder's names, methods and exclusions, set after it was made.

    Compiled, they are fields of its base that the request path reads
    directly; a subclass that makes one a property is read through it.
    Either way each request gets what the recorder says when it arrives.
    """
    from sprockets_influxdb import buffer
    from sprockets_influxdb.wsgi import InfluxDBMiddleware

    client = Client(
        url='http://127.0.0.1:9/',
        submission_interval=10**9,
        trigger_size=10**9,
        max_buffer_size=10**9,
        shutdown_timeout=0,
        tag_hostname=False,
    )

    def app(
        environ: dict[str, typing.Any], start_response: typing.Any
    ) -> list[bytes]:
        start_response('200 OK', [('Content-Length', '2')])
        return [b'ok']

    middleware = InfluxDBMiddleware(
        app, database='db', measurement='web', client=client
    )

    def start_response(
        status: str, headers: object, exc_info: object = None
    ) -> typing.Callable[[bytes], object]:
        return len

    def serve(method: str, path: str = '/') -> list[tuple[object, ...]]:
        environ = {'REQUEST_METHOD': method, 'PATH_INFO': path}
        body = middleware(environ, start_response)
        assert list(body) == [b'ok']
        close = getattr(body, 'close', None)
        if close is not None:
            close()
        return [
            (database, name, tags['method'])
            for _, database, name, tags, _, _ in buffer.entries(
                client._buffer.take()
            )
        ]

    class Renamed(RequestRecorder):
        @property
        def measurement(self) -> str:
            return 'by-property'

        @measurement.setter
        def measurement(self, value: str) -> None:
            pass

    try:
        assert serve('POST') == [('db', 'web', 'POST')]
        recorder = middleware.recorder
        assert recorder is not None
        recorder.database = 'other'
        recorder.measurement = 'renamed'
        recorder.methods = frozenset({'GET'})
        assert serve('POST') == [('other', 'renamed', OTHER_METHOD)]
        assert serve('GET') == [('other', 'renamed', 'GET')]
        recorder._excluded = [re.compile('/health')]
        assert serve('GET', '/health') == []
        assert serve('GET', '/items') == [('other', 'renamed', 'GET')]
        middleware.recorder = Renamed(
            'third', 'ignored', add_measurement=client.add_measurement
        )
        assert serve('GET') == [('third', 'by-property', 'GET')]
    finally:
        client.shutdown().result(timeout=30)
