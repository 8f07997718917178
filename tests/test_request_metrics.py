"""The framework-neutral request recorder, and its measurement."""

from __future__ import annotations

import pytest

from sprockets_influxdb import Measurement
from sprockets_influxdb.request_metrics import UNMATCHED, RequestRecorder


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
