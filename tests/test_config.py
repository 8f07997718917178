"""Settings: arguments, environment variables, defaults and clear errors."""

from __future__ import annotations

import socket

import pytest

import sprockets_influxdb
from sprockets_influxdb import Client, Settings


def resolve(
    env: dict[str, str] | None = None, **arguments: object
) -> Settings:
    return Settings.resolve(environ=env or {}, **arguments)


def test_historical_defaults() -> None:
    settings = resolve()
    assert settings.enabled is True
    assert settings.url == 'http://localhost:8086/write'
    assert settings.username is None
    assert settings.password is None
    assert settings.submission_interval == 60000
    assert settings.trigger_size == 5000
    assert settings.max_batch_size == 10000
    assert settings.max_buffer_size == 25000
    assert settings.max_clients == 10
    assert settings.sample_probability == 1.0
    # Nanoseconds, not 2.x's milliseconds: the points of several processes
    # recorded in one millisecond would replace each other.
    assert settings.precision == 'n'
    assert settings.base_tags == {'hostname': socket.gethostname()}


def test_historical_environment_variables() -> None:
    settings = resolve(
        {
            'INFLUXDB_ENABLED': 'no',
            'INFLUXDB_SCHEME': 'https',
            'INFLUXDB_HOST': 'influx.example.com',
            'INFLUXDB_PORT': '8087',
            'INFLUXDB_USER': 'writer',
            'INFLUXDB_PASSWORD': 'secret',
            'INFLUXDB_INTERVAL': '250',
            'INFLUXDB_TRIGGER_SIZE': '10',
            'INFLUXDB_MAX_BATCH_SIZE': '20',
            'INFLUXDB_MAX_BUFFER_SIZE': '30',
            'INFLUXDB_SAMPLE_PROBABILITY': '0.25',
            'INFLUXDB_TAG_HOSTNAME': 'OFF',
            'ENVIRONMENT': 'staging',
        }
    )
    assert settings.enabled is False
    assert settings.url == 'https://influx.example.com:8087/write'
    assert (settings.username, settings.password) == ('writer', 'secret')
    assert settings.submission_interval == 250
    assert settings.trigger_size == 10
    assert settings.max_batch_size == 20
    assert settings.max_buffer_size == 30
    assert settings.sample_probability == 0.25
    assert settings.base_tags == {'environment': 'staging'}


def test_new_environment_variables() -> None:
    settings = resolve(
        {
            'INFLUXDB_URL': 'http://u:p%40ss@db:9999/prefix/',
            'INFLUXDB_MAX_CLIENTS': '3',
            'INFLUXDB_PRECISION': 'us',
            'INFLUXDB_REQUEST_TIMEOUT': '2.5',
            'INFLUXDB_GZIP': 'Yes',
            'INFLUXDB_RETENTION_POLICY': 'short',
        }
    )
    assert settings.url == 'http://db:9999/prefix/write'
    assert (settings.username, settings.password) == ('u', 'p@ss')
    assert settings.max_clients == 3
    assert settings.precision == 'u'
    assert settings.request_timeout == 2.5
    assert settings.gzip is True
    assert settings.retention_policy == 'short'


def test_arguments_win_over_the_environment() -> None:
    settings = resolve(
        {'INFLUXDB_INTERVAL': '250', 'INFLUXDB_URL': 'http://env:1'},
        submission_interval=5,
        url='http://arg:2/write',
    )
    assert settings.submission_interval == 5
    assert settings.url == 'http://arg:2/write'


def test_an_explicit_zero_is_a_value() -> None:
    settings = resolve(
        {'INFLUXDB_INTERVAL': '250', 'INFLUXDB_SAMPLE_PROBABILITY': '0.5'},
        submission_interval=0,
        sample_probability=0,
    )
    assert settings.submission_interval == 0
    assert settings.sample_probability == 0.0


@pytest.mark.parametrize(
    'text', ['true', 'TRUE', '1', 'yes', 'On', 'false', '0', 'NO', 'off']
)
def test_booleans(text: str) -> None:
    expected = text.lower() in ('true', '1', 'yes', 'on')
    assert resolve({'INFLUXDB_GZIP': text}).gzip is expected


@pytest.mark.parametrize(
    ('env', 'match'),
    [
        ({'INFLUXDB_ENABLED': 'maybe'}, 'INFLUXDB_ENABLED'),
        ({'INFLUXDB_TAG_HOSTNAME': 'sure'}, 'INFLUXDB_TAG_HOSTNAME'),
        ({'INFLUXDB_INTERVAL': 'soon'}, 'INFLUXDB_INTERVAL'),
        ({'INFLUXDB_INTERVAL': '-1'}, 'INFLUXDB_INTERVAL must be at least 0'),
        ({'INFLUXDB_TRIGGER_SIZE': '0'}, 'INFLUXDB_TRIGGER_SIZE'),
        ({'INFLUXDB_MAX_BATCH_SIZE': '1.5'}, 'INFLUXDB_MAX_BATCH_SIZE'),
        ({'INFLUXDB_MAX_BUFFER_SIZE': 'x'}, 'INFLUXDB_MAX_BUFFER_SIZE'),
        ({'INFLUXDB_SAMPLE_PROBABILITY': '2'}, 'INFLUXDB_SAMPLE_PROBABILITY'),
        ({'INFLUXDB_SAMPLE_PROBABILITY': 'nan'}, 'INFLUXDB_SAMPLE_PROB'),
        ({'INFLUXDB_PORT': 'http'}, 'INFLUXDB_PORT'),
        ({'INFLUXDB_SCHEME': 'ftp'}, 'INFLUXDB_SCHEME'),
        ({'INFLUXDB_URL': 'localhost:8086'}, 'INFLUXDB_URL'),
        ({'INFLUXDB_PRECISION': 'week'}, 'INFLUXDB_PRECISION'),
        ({'INFLUXDB_REQUEST_TIMEOUT': '0'}, 'INFLUXDB_REQUEST_TIMEOUT'),
    ],
)
def test_malformed_variables_name_the_variable(
    env: dict[str, str], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        resolve(env)


@pytest.mark.parametrize(
    ('arguments', 'error', 'match'),
    [
        (
            {'max_batch_size': 0},
            ValueError,
            'max_batch_size must be at least 1',
        ),
        ({'max_clients': -1}, ValueError, 'max_clients'),
        ({'max_buffer_size': '10'}, None, ''),
        ({'trigger_size': 'many'}, ValueError, 'trigger_size'),
        ({'trigger_size': [1]}, TypeError, 'trigger_size must be an integer'),
        ({'sample_probability': 1.5}, ValueError, 'sample_probability'),
        ({'sample_probability': True}, TypeError, 'sample_probability'),
        ({'url': 'ftp://x'}, ValueError, 'url'),
        ({'url': 'http://x/write?db=y'}, ValueError, 'query string'),
        ({'base_tags': {'bad': 'a\nb'}}, ValueError, 'base_tags: tag value'),
        ({'base_tags': ['x']}, TypeError, 'base_tags must be a mapping'),
        ({'colour': 'red'}, TypeError, 'unknown settings: colour'),
    ],
)
def test_bad_arguments_name_the_argument(
    arguments: dict[str, object], error: type[Exception] | None, match: str
) -> None:
    if error is None:
        resolve(**arguments)
        return
    with pytest.raises(error, match=match):
        resolve(**arguments)


def test_base_tags() -> None:
    settings = resolve(
        {'ENVIRONMENT': 'production'}, base_tags={'service': 'billing', 'n': 1}
    )
    assert settings.base_tags == {
        'hostname': socket.gethostname(),
        'environment': 'production',
        'service': 'billing',
        'n': '1',
    }


def test_credentials_never_appear_in_reprs() -> None:
    settings = resolve(url='http://user:hunter2@db:8086')
    client = Client(url='http://db:8086', auth_password='hunter2')
    assert 'hunter2' not in repr(settings)
    assert 'hunter2' not in repr(client)
    assert 'hunter2' not in repr(client.settings)
    assert 'hunter2' not in settings.url


def test_configure_validates_and_keeps_the_rest() -> None:
    client = Client(url='http://db:8086', base_tags={'service': 'x'})
    client.configure(max_batch_size=5)
    assert client.settings.max_batch_size == 5
    assert client.settings.url == 'http://db:8086/write'
    assert client.settings.base_tags['service'] == 'x'
    with pytest.raises(ValueError, match='max_batch_size'):
        client.configure(max_batch_size=0)
    assert client.settings.max_batch_size == 5


def test_the_public_names_are_exactly_all() -> None:
    exported = set(sprockets_influxdb.__all__)
    assert len(exported) == len(sprockets_influxdb.__all__)
    for name in exported:
        assert hasattr(sprockets_influxdb, name), name
    ours = {
        name
        for name, value in vars(sprockets_influxdb).items()
        if not name.startswith('_')
        and getattr(value, '__module__', '').startswith('sprockets_influxdb')
    }
    assert ours - exported == set()


def test_configure_refuses_what_applies_only_at_first_resolution() -> None:
    client = Client(url='http://db:8086')
    with pytest.raises(TypeError, match='tag_hostname applies when'):
        client.configure(tag_hostname=False)
    with pytest.raises(TypeError, match='environment applies when'):
        client.configure(environment='prod')
